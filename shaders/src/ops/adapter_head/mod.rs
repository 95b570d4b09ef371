//! The fused AdapterPooler head: BERTVision's projection + GELU + head product in one op.
//!
//! BERTVision's head (core's `head.rs`, method.md §2) applies a Linear(hidden → A) + GELU to every
//! token of every hidden-state layer and feeds the concatenated per-token activations to a linear
//! head. Written with plain tensor ops, that materialises the `[tokens, layers, A]` activations
//! (and, under autodiff, keeps them, their GELU input and the head's input for the backward pass).
//! [`adapter_head`] computes the head's per-token output in one pass instead:
//!
//! ```text
//! out[n, c] = Σ_l Σ_a head_weight[n % P, l·A + a, c] · gelu(adapter_bias[s, a] + Σ_d features[n, l, d] · adapter_weight[s, d, a])
//! ```
//!
//! with `s = 0` for one shared adapter and `s = l` for one adapter per layer, and `P` head-weight
//! blocks (1 for heads whose weights are the same at every position; the padded length `T` for
//! the original GLUE head, whose weights depend on the position). The head's bias and the
//! pooling over tokens stay outside: they are cheap and linear. Every head kind reduces to this:
//! span logits are `out` itself, the flattened GLUE head sums `out` over positions, the masked
//! mean head averages `out` over real tokens (pooling and a linear map commute).
//!
//! Backward (the `autodiff` feature) keeps only the inputs: a second kernel recomputes the GELU
//! input per element and writes the activations and the gradient at the GELU input, and the
//! weight gradients are tuned matmuls over those. Nothing of size `[tokens, layers, A]` lives
//! between forward and backward.
//!
//! Backends: the [`AdapterHeadOps`] trait's provided methods are the plain-Burn reference
//! ([`reference`]); `CubeBackend` (CUDA, wgpu) and `Fusion<CubeBackend>` override them with the
//! CubeCL kernels (feature `cubecl`), Flex composes it of the CPU linear and GELU kernels (feature
//! `flex`; one shared adapter), `Autodiff<B>` adds the backward (feature `autodiff`), and ndarray
//! uses the reference. The kernels are written once in
//! CubeCL, so the same source runs on CUDA and on WebGPU; the tests compare them with the
//! reference on Burn's wgpu backend (feature `wgpu-tests`).

pub mod reference;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use super::tensor::{float, primitive};

/// A backend's fused AdapterPooler head. The provided methods are the reference ([`reference`]);
/// the CubeCL backends override them with the kernels of `cube/adapter_head.rs`, Flex with its
/// CPU kernels (`backend/flex.rs`).
pub trait AdapterHeadOps: Backend {
    /// Whether this backend runs this crate's kernels (else the op is the plain-Burn
    /// reference); reported by `bench` beside its fused rows.
    const KERNEL: bool = false;

    /// Per-token head output `[tokens, classes]`; shapes as in [`adapter_head`].
    fn adapter_head(
        features: FloatTensor<Self>,
        adapter_weight: FloatTensor<Self>,
        adapter_bias: FloatTensor<Self>,
        head_weight: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let out = reference::forward::<Self>(
            float(features),
            float(adapter_weight),
            float(adapter_bias),
            float(head_weight),
        );
        primitive(out)
    }

    /// For the backward pass: the activations `gelu(pre)` and the gradient at the GELU input
    /// `(Σ_c head_weight · grad_out) · gelu'(pre)`, both `[tokens, layers, A]`.
    fn adapter_head_recompute(
        features: FloatTensor<Self>,
        adapter_weight: FloatTensor<Self>,
        adapter_bias: FloatTensor<Self>,
        head_weight: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (activations, grad_pre) = reference::recompute::<Self>(
            float(features),
            float(adapter_weight),
            float(adapter_bias),
            float(head_weight),
            float(grad_out),
        );
        (primitive(activations), primitive(grad_pre))
    }
}

/// Why [`adapter_head`] refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "adapter head: {}", self.0)
    }
}

impl std::error::Error for ShapeError {}

/// Checks the shapes [`adapter_head`] takes.
pub fn check_shapes(
    features: [usize; 3],
    adapter_weight: [usize; 3],
    adapter_bias: [usize; 2],
    head_weight: [usize; 3],
) -> Result<(), ShapeError> {
    let [tokens, layers, hidden] = features;
    let [adapters, w_hidden, adapter] = adapter_weight;
    let [positions, head_in, classes] = head_weight;
    let problem = if adapters != 1 && adapters != layers {
        Some(format!(
            "{adapters} adapters for {layers} layers (want 1 or one per layer)"
        ))
    } else if w_hidden != hidden {
        Some(format!(
            "adapter weight reads {w_hidden} features, hidden states have {hidden}"
        ))
    } else if adapter_bias != [adapters, adapter] {
        Some(format!(
            "adapter bias {adapter_bias:?}, want [{adapters}, {adapter}]"
        ))
    } else if head_in != layers * adapter {
        Some(format!(
            "head weight reads {head_in} features per token, want layers × adapter = {}",
            layers * adapter
        ))
    } else if positions == 0 || tokens % positions != 0 {
        Some(format!(
            "{tokens} tokens are not whole sequences of {positions} positions"
        ))
    } else if classes == 0 || adapter == 0 || hidden == 0 {
        Some("an empty dimension".to_string())
    } else {
        None
    };
    match problem {
        Some(p) => Err(ShapeError(p)),
        None => Ok(()),
    }
}

/// The fused AdapterPooler head: per-token output `[tokens, classes]` (head bias not added).
///
/// * `features` — `[tokens, layers, hidden]`: every hidden-state layer of every token, tokens
///   flattened from `[batch, seq]`.
/// * `adapter_weight` — `[1 or layers, hidden, A]` (Burn's `Linear` layout, input first);
///   `adapter_bias` — `[1 or layers, A]`.
/// * `head_weight` — `[P, layers·A, classes]`: token `n` reads block `n % P`.
pub fn adapter_head<B: AdapterHeadOps>(
    features: Tensor<B, 3>,
    adapter_weight: Tensor<B, 3>,
    adapter_bias: Tensor<B, 2>,
    head_weight: Tensor<B, 3>,
) -> Result<Tensor<B, 2>, ShapeError> {
    check_shapes(
        features.dims(),
        adapter_weight.dims(),
        adapter_bias.dims(),
        head_weight.dims(),
    )?;
    Ok(Tensor::from_primitive(TensorPrimitive::Float(
        B::adapter_head(
            primitive(features),
            primitive(adapter_weight),
            primitive(adapter_bias),
            primitive(head_weight),
        ),
    )))
}
