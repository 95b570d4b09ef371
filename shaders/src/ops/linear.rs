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
            weight: weight_gradient(x.reshape([batch * seq, inputs]), rows.clone()),
            bias: rows.sum_dim(0).reshape([outputs]),
        }
    }

    /// Rows per part of a split weight gradient ([`weight_gradient`]).
    pub const SPLIT_PART_ROWS: usize = 1024;
    /// The largest weight (`in·out` elements) whose gradient is split: a small output over many
    /// rows.
    pub const SPLIT_MAX_OUTPUT: usize = 1 << 17;

    /// `xᵀ·grad` over `[rows, in]` and `[rows, out]`. A small `[in, out]` over many rows (the
    /// AdapterPooler's adapter: 384·32 over every token of every layer, ~86k rows at batch 32 of
    /// 384 tokens) is split into parts of [`SPLIT_PART_ROWS`] rows, one batched matmul summed
    /// over the parts: as one product its few output tiles would each loop over every row, a
    /// handful of a GPU's cores busy (issue #20; CubeCL's matmul does not split the inner
    /// dimension itself). Rows past the last whole part are added as one more product.
    pub fn weight_gradient<B: Backend>(x: Tensor<B, 2>, grad: Tensor<B, 2>) -> Tensor<B, 2> {
        let [rows, inputs] = x.dims();
        let outputs = grad.dims()[1];
        let parts = rows / SPLIT_PART_ROWS;
        if parts < 8 || inputs * outputs > SPLIT_MAX_OUTPUT {
            return x.transpose().matmul(grad);
        }
        let whole = parts * SPLIT_PART_ROWS;
        let split = x
            .clone()
            .slice(0..whole)
            .reshape([parts, SPLIT_PART_ROWS, inputs])
            .swap_dims(1, 2)
            .matmul(
                grad.clone()
                    .slice(0..whole)
                    .reshape([parts, SPLIT_PART_ROWS, outputs]),
            )
            .sum_dim(0)
            .reshape([inputs, outputs]);
        match whole < rows {
            true => {
                split
                    + x.slice(whole..rows)
                        .transpose()
                        .matmul(grad.slice(whole..rows))
            }
            false => split,
        }
    }
}
