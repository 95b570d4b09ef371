//! The encoder's linear layers, `x·weight + bias`, and their gradients.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A backend's linear layer. The provided methods are the reference ([`reference`]).
pub trait LinearOps: Backend {
    /// Whether [`Self::encoder_linear`] and [`Self::encoder_linear_backward`] are this crate's
    /// kernels. Either way `Autodiff<Self>` records a layer with a bias as one node with that
    /// backward: one weight-gradient matmul over every token of the batch.
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

    /// `x·weight + bias` as one 2-D matmul over every token, `[batch·seq, in]·[in, out]`. Not
    /// Burn's `module::linear` (what `burn::nn::Linear` runs): that multiplies `[batch, seq,
    /// in]` by the weight broadcast over the batch, which CubeCL runs as one matmul per
    /// sequence and autotunes under a key that ignores the batch (issue #20).
    pub fn linear<B: Backend>(
        x: Tensor<B, 3>,
        weight: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, inputs] = x.dims();
        let [_, outputs] = weight.dims();
        let rows = x.reshape([batch * seq, inputs]).matmul(weight);
        let rows = match bias {
            Some(bias) => rows + bias.unsqueeze::<2>(),
            None => rows,
        };
        rows.reshape([batch, seq, outputs])
    }

    /// The gradients as 2-D matmuls over every token of the batch at once.
    pub fn linear_backward<B: Backend>(
        x: Tensor<B, 3>,
        weight: Tensor<B, 2>,
        grad: Tensor<B, 3>,
        input_grad: bool,
    ) -> LinearGrads<B> {
        let [batch, seq, inputs] = x.dims();
        let [_, outputs] = weight.dims();
        let rows = grad.reshape([batch * seq, outputs]);
        LinearGrads {
            input: input_grad.then(|| {
                let input = rows.clone().matmul(weight.transpose());
                input.reshape([batch, seq, inputs])
            }),
            weight: x
                .reshape([batch * seq, inputs])
                .transpose()
                .matmul(rows.clone()),
            bias: rows.sum_dim(0).reshape([outputs]),
        }
    }
}
