//! The encoder's linear layers, `x·weight + bias`, and their gradients.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A backend's linear layer. The provided methods are the reference ([`reference`]).
pub trait LinearOps: Backend {
    /// Whether [`Self::encoder_linear`] and [`Self::encoder_linear_backward`] are this crate's kernels (then
    /// `Autodiff<Self>` records the layer as one node with that backward).
    const KERNEL: bool = false;

    /// `x·weight + bias` over `[batch, seq, in]` with Burn's `[in, out]` weight layout.
    fn encoder_linear(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 3> {
        reference::linear(x, weight, bias)
    }

    /// The gradients of [`Self::encoder_linear`] (with a bias) for `grad` at its output; the one at the
    /// input only when `input_grad`.
    fn encoder_linear_backward(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        grad: Tensor<Self, 3>,
        input_grad: bool,
    ) -> LinearGrads<Self> {
        reference::linear_backward(x, weight, grad, input_grad)
    }
}

/// The gradients of a linear layer `x·weight + bias`.
#[derive(Debug, Clone)]
pub struct LinearGrads<B: Backend> {
    /// `[batch, seq, in]`, when asked for.
    pub input: Option<Tensor<B, 3>>,
    /// `[in, out]`.
    pub weight: Tensor<B, 2>,
    /// `[out]`.
    pub bias: Tensor<B, 1>,
}

/// The op in Burn's tensor ops.
pub mod reference {
    use super::*;

    /// Burn's `module::linear` (what `burn::nn::Linear` runs).
    pub fn linear<B: Backend>(
        x: Tensor<B, 3>,
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    ) -> Tensor<B, 3> {
        burn::tensor::module::linear(x, weight, bias)
    }

    /// The gradients as matmuls over every token of the batch at once.
    pub fn linear_backward<B: Backend>(
        x: Tensor<B, 3>,
        weight: Tensor<B, 2>,
        grad: Tensor<B, 3>,
        input_grad: bool,
    ) -> LinearGrads<B> {
        let [batch, seq, inputs] = x.dims();
        let [_, outputs] = weight.dims();
        let rows = grad.clone().reshape([batch * seq, outputs]);
        LinearGrads {
            input: input_grad.then(|| grad.matmul(weight.transpose().unsqueeze::<3>())),
            weight: x
                .reshape([batch * seq, inputs])
                .transpose()
                .matmul(rows.clone()),
            bias: rows.sum_dim(0).reshape([outputs]),
        }
    }
}
