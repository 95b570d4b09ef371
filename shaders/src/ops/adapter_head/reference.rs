//! The plain-Burn version of the fused head: what the kernels are tested against, and what the
//! CPU backends run. Shapes as in [`crate::adapter_head`].

use burn::tensor::Tensor;
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;

/// The GELU's input, `features · adapter_weight + adapter_bias`: `[tokens, layers, A]`.
pub fn pre_activation<B: Backend>(
    features: Tensor<B, 3>,
    adapter_weight: Tensor<B, 3>,
    adapter_bias: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [adapters, hidden, a] = adapter_weight.dims();
    let [tokens, layers, _] = features.dims();
    let projected = if adapters == 1 {
        // One 2-D product over every (token, layer) row: broadcast over tokens, it was a
        // `[layers, hidden]` product per token (1,024 of them at batch 8 × 128 tokens on the CPU).
        features
            .reshape([tokens * layers, hidden])
            .matmul(adapter_weight.reshape([hidden, a]))
            .reshape([tokens, layers, a])
    } else {
        // One adapter per layer: batch over layers.
        features
            .swap_dims(0, 1)
            .matmul(adapter_weight)
            .swap_dims(0, 1)
    };
    projected + adapter_bias.reshape([1, adapters, a])
}

/// `[tokens, layers·A]` activations times the head weight block of each token's position.
pub fn head_product<B: Backend>(
    activations: Tensor<B, 2>,
    head_weight: Tensor<B, 3>,
) -> Tensor<B, 2> {
    let [positions, width, classes] = head_weight.dims();
    let [tokens, _] = activations.dims();
    if positions == 1 {
        return activations.matmul(head_weight.reshape([width, classes]));
    }
    let sequences = tokens / positions;
    activations
        .reshape([sequences, positions, width])
        .swap_dims(0, 1) // [P, sequences, width]
        .matmul(head_weight) // [P, sequences, classes]
        .swap_dims(0, 1)
        .reshape([tokens, classes])
}

/// Per-token head output `[tokens, classes]`.
pub fn forward<B: Backend>(
    features: Tensor<B, 3>,
    adapter_weight: Tensor<B, 3>,
    adapter_bias: Tensor<B, 2>,
    head_weight: Tensor<B, 3>,
) -> Tensor<B, 2> {
    let [tokens, layers, _] = features.dims();
    let a = adapter_weight.dims()[2];
    let activations = gelu(pre_activation(features, adapter_weight, adapter_bias));
    head_product(activations.reshape([tokens, layers * a]), head_weight)
}

/// Exact GELU's derivative: Φ(x) + x·φ(x).
pub fn gelu_derivative<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cdf = (x.clone() * std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        * 0.5;
    let pdf = (x.clone().powi_scalar(2) * -0.5).exp()
        * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2);
    cdf + x * pdf
}

/// Activations and the gradient at the GELU input, `[tokens, layers, A]` each, for `grad_out`
/// `[tokens, classes]`.
pub fn recompute<B: Backend>(
    features: Tensor<B, 3>,
    adapter_weight: Tensor<B, 3>,
    adapter_bias: Tensor<B, 2>,
    head_weight: Tensor<B, 3>,
    grad_out: Tensor<B, 2>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let [tokens, layers, _] = features.dims();
    let a = adapter_weight.dims()[2];
    let pre = pre_activation(features, adapter_weight, adapter_bias);
    // d out / d activations = grad_out · head_weightᵀ, per position block.
    let grad_activations = head_product(grad_out, head_weight.swap_dims(1, 2));
    let grad_pre = grad_activations.reshape([tokens, layers, a]) * gelu_derivative(pre.clone());
    (gelu(pre), grad_pre)
}

/// Gradients of the fused head's inputs.
pub struct Gradients<B: Backend> {
    /// Only when asked for (BERTVision's features come from a frozen encoder).
    pub features: Option<Tensor<B, 3>>,
    pub adapter_weight: Tensor<B, 3>,
    pub adapter_bias: Tensor<B, 2>,
    pub head_weight: Tensor<B, 3>,
}

/// The inputs' gradients from the recomputed activations and GELU-input gradients (`[tokens,
/// layers, A]`) and the output gradient `[tokens, classes]`: matmuls and sums over tokens, each
/// gradient shaped like its input.
pub fn gradients<B: Backend>(
    features: Tensor<B, 3>,
    adapter_weight: Tensor<B, 3>,
    activations: Tensor<B, 3>,
    grad_pre: Tensor<B, 3>,
    grad_out: Tensor<B, 2>,
    positions: usize,
    want_features: bool,
) -> Gradients<B> {
    let [tokens, layers, hidden] = features.dims();
    let [adapters, _, a] = adapter_weight.dims();
    let classes = grad_out.dims()[1];
    let width = layers * a;
    let sequences = tokens / positions;
    // Head weight: Σ over the tokens of each position block of activationsᵀ · grad_out.
    let head_weight = activations
        .reshape([sequences, positions, width])
        .swap_dims(0, 1)
        .swap_dims(1, 2) // [P, width, sequences]
        .matmul(
            grad_out
                .reshape([sequences, positions, classes])
                .swap_dims(0, 1),
        ); // [P, width, C]
    if adapters == 1 {
        let rows = grad_pre.clone().reshape([tokens * layers, a]);
        Gradients {
            features: want_features
                .then(|| grad_pre.matmul(adapter_weight.clone().swap_dims(1, 2))),
            adapter_weight: crate::ops::linear::reference::weight_gradient(
                features.reshape([tokens * layers, hidden]),
                rows.clone(),
            )
            .reshape([1, hidden, a]),
            adapter_bias: rows.sum_dim(0),
            head_weight,
        }
    } else {
        let per_layer = grad_pre.swap_dims(0, 1); // [L, tokens, A]
        Gradients {
            features: want_features.then(|| {
                per_layer
                    .clone()
                    .matmul(adapter_weight.swap_dims(1, 2))
                    .swap_dims(0, 1)
            }),
            adapter_weight: features
                .swap_dims(0, 1)
                .swap_dims(1, 2)
                .matmul(per_layer.clone()), // [L, hidden, A]
            adapter_bias: per_layer.sum_dim(1).reshape([layers, a]),
            head_weight,
        }
    }
}
