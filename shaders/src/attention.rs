//! The BERT encoder's backend kernels, and the padding masks Burn's attention kernels read.
//!
//! [`EncoderBackend`] is what the encoder hands its self-attention, linear layers, GELU and
//! dropout masks to. Its provided methods are Burn's ops (`module::attention`, `linear`,
//! `gelu`, `random`); Flex overrides them with this crate's CPU kernels (`cpu.rs`).
//!
//! - Where no gradient flows (core's `AttentionKernel::Fused`: evaluation, the encoder feeding
//!   the AdapterPooler), all of them run, self-attention included.
//! - Under autodiff (fine-tuning), `Autodiff<B>` (`autodiff.rs`) runs self-attention with
//!   dropout, the linear layers, GELU and dropout masks through `B`'s kernels with their
//!   backward ([`EncoderBackend::attention_train_backward`],
//!   [`EncoderBackend::encoder_linear_backward`], [`EncoderBackend::encoder_gelu_backward`])
//!   where `B` has CPU kernels, and Burn's own autodiff ops elsewhere.
//!
//! The mask is ours whichever kernel reads it, and Burn 0.21's backends disagree on the masks
//! their attention reads correctly:
//!
//! - Flex (CPU) accepts a mask broadcast over heads and reads it without copying it per head;
//!   expanding it to every head first cost most of what its fused attention saved (README,
//!   "Speed"). Our CPU kernel reads the same mask.
//! - CubeCL's flash kernels (CUDA, wgpu) read the mask as a dense `[batch, heads, seq, seq]`
//!   buffer: handed a broadcast (stride-0) view they silently compute unmasked attention — found
//!   by `tests/attention.rs` on wgpu, max error 0.68 against the formula. They also ignore an
//!   additive bias, so the mask must be boolean.
//!
//! [`EncoderBackend::MASK_LAYOUT`] records which form each backend gets, and
//! [`key_padding_mask`] builds it; the tests check the pair on every backend we can run here.

use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Distribution, Int, Tensor, TensorPrimitive};

/// How a key-padding mask is laid out for a backend's attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskLayout {
    /// `[batch, 1, seq, seq]`: one mask read by every head.
    SharedAcrossHeads,
    /// `[batch, heads, seq, seq]`, written out in memory (not a broadcast view).
    PerHead,
}

/// A backend's kernels for the BERT encoder: self-attention without dropout (for the frozen
/// encoder), with the mask layout that attention reads correctly; self-attention with dropout,
/// linear layers, GELU and dropout masks, with their backward (for `Autodiff<Self>`). The
/// provided methods are Burn's own ops; Flex overrides them in f32 with this crate's CPU kernels
/// (`cpu.rs`).
pub trait EncoderBackend: Backend {
    const MASK_LAYOUT: MaskLayout = MaskLayout::SharedAcrossHeads;

    /// Whether the methods below are this crate's CPU kernels rather than Burn's ops (in f32);
    /// reported by `bench`.
    const HAS_CPU_KERNELS: bool = false;

    /// Whether fine-tuning's self-attention ([`Self::training_self_attention`]) is an autodiff
    /// node with this crate's kernels (`Autodiff<Flex>`); core's encoder runs Burn's explicit
    /// ops otherwise.
    const HAS_TRAINING_ATTENTION: bool = false;

    /// Multi-head self-attention without dropout, `softmax(q·kᵀ/√head_dim + padding)·v`, over
    /// `[batch, seq, heads·head_dim]` projections and back in that layout. `padding` is
    /// [`key_padding_mask`] in [`Self::MASK_LAYOUT`].
    fn self_attention(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        padding: Tensor<Self, 4, Bool>,
        heads: usize,
    ) -> Tensor<Self, 3> {
        burn_self_attention(query, key, value, padding, heads)
    }

    /// `x·weight + bias` over `[batch, seq, in]` with Burn's `[in, out]` weight layout.
    fn encoder_linear(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 3> {
        burn::tensor::module::linear(x, weight, bias)
    }

    /// BERT's exact (erf) GELU.
    fn encoder_gelu(x: Tensor<Self, 3>) -> Tensor<Self, 3> {
        burn::tensor::activation::gelu(x)
    }

    /// Dropout's keep mask for `len` elements, scaled: `1/keep` with probability `keep`, else 0
    /// (what Burn's `Dropout` multiplies by). Drawn from the backend's generator.
    fn encoder_dropout_mask(len: usize, keep: f64, device: &Self::Device) -> Tensor<Self, 1> {
        Tensor::<Self, 1>::random([len], Distribution::Bernoulli(keep), device)
            .mul_scalar(1.0 / keep)
    }

    /// Fine-tuning's self-attention: `softmax(q·kᵀ/√head_dim + padding)` with dropout (keep
    /// probability `keep`; none at 1), times `v`, over `[batch, seq, heads·head_dim]`
    /// projections. Only called where [`Self::HAS_TRAINING_ATTENTION`].
    fn training_self_attention(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        padding: Tensor<Self, 4, Bool>,
        heads: usize,
        keep: f64,
    ) -> Tensor<Self, 3> {
        Self::attention_train_forward(query, key, value, padding, heads, keep).0
    }

    /// [`Self::training_self_attention`] with what its backward needs.
    fn attention_train_forward(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        padding: Tensor<Self, 4, Bool>,
        heads: usize,
        keep: f64,
    ) -> (Tensor<Self, 3>, AttentionResiduals<Self>) {
        burn_attention_train_forward(query, key, value, padding, heads, keep)
    }

    /// The gradients at the query, key and value of [`Self::attention_train_forward`] for `grad`
    /// at its output.
    fn attention_train_backward(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        residuals: AttentionResiduals<Self>,
        grad: Tensor<Self, 3>,
        heads: usize,
    ) -> [Tensor<Self, 3>; 3] {
        burn_attention_train_backward(query, key, value, residuals, grad, heads)
    }

    /// The gradients of [`Self::encoder_linear`] (with a bias) for `grad` at its output: at the
    /// input only when `input_grad`. Used by `Autodiff<B>`'s linear layers where `B` has CPU
    /// kernels.
    fn encoder_linear_backward(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        grad: Tensor<Self, 3>,
        input_grad: bool,
    ) -> LinearGrads<Self> {
        burn_linear_backward(x, weight, grad, input_grad)
    }

    /// The gradient of [`Self::encoder_gelu`] at `x` for `grad` at its output.
    fn encoder_gelu_backward(x: Tensor<Self, 3>, grad: Tensor<Self, 3>) -> Tensor<Self, 3> {
        burn_gelu_backward(x, grad)
    }
}

/// [`EncoderBackend::encoder_gelu_backward`] in Burn's op.
pub fn burn_gelu_backward<B: Backend>(x: Tensor<B, 3>, grad: Tensor<B, 3>) -> Tensor<B, 3> {
    Tensor::from_primitive(TensorPrimitive::Float(B::gelu_backward(
        x.into_primitive().tensor(),
        grad.into_primitive().tensor(),
    )))
}

/// What fine-tuning's attention keeps for its backward.
#[derive(Debug, Clone)]
pub struct AttentionResiduals<B: Backend> {
    /// The softmax's output before dropout, `[batch, heads, seq, seq]`.
    pub probs: Tensor<B, 4>,
    /// The key-padding mask the forward read.
    pub padding: Tensor<B, 4, Bool>,
    pub dropout: AttentionDropout<B>,
}

/// The dropout applied to the attention probabilities, as the backward needs it.
#[derive(Debug, Clone)]
pub enum AttentionDropout<B: Backend> {
    None,
    /// The scaled keep mask, `[batch, heads, seq, seq]` (Burn's ops keep it).
    Mask(Tensor<B, 4>),
    /// The seed of the CPU kernels' counter-based mask (`cpu::DropoutStream`), which their
    /// backward makes again instead of keeping it.
    Seed {
        seed: u64,
        keep: f64,
    },
}

/// [`EncoderBackend::attention_train_forward`] in Burn's ops: the explicit attention of core's
/// encoder under autodiff, dropout mask from [`EncoderBackend::encoder_dropout_mask`].
pub fn burn_attention_train_forward<B: EncoderBackend>(
    query: Tensor<B, 3>,
    key: Tensor<B, 3>,
    value: Tensor<B, 3>,
    padding: Tensor<B, 4, Bool>,
    heads: usize,
    keep: f64,
) -> (Tensor<B, 3>, AttentionResiduals<B>) {
    let [batch, seq, hidden] = query.dims();
    let split = |t: Tensor<B, 3>| {
        t.reshape([batch, seq, heads, hidden / heads])
            .swap_dims(1, 2)
    };
    let device = query.device();
    let bias = Tensor::<B, 4>::zeros(padding.dims(), &device).mask_fill(padding.clone(), f32::MIN);
    let scores = split(query)
        .matmul(split(key).transpose())
        .div_scalar(((hidden / heads) as f64).sqrt())
        + bias;
    let probs = burn::tensor::activation::softmax(scores, 3);
    let dropout = if keep < 1.0 {
        let mask = B::encoder_dropout_mask(batch * heads * seq * seq, keep, &device)
            .reshape([batch, heads, seq, seq]);
        AttentionDropout::Mask(mask)
    } else {
        AttentionDropout::None
    };
    let dropped = match &dropout {
        AttentionDropout::Mask(mask) => probs.clone() * mask.clone(),
        _ => probs.clone(),
    };
    let out = dropped
        .matmul(split(value))
        .swap_dims(1, 2)
        .reshape([batch, seq, hidden]);
    (
        out,
        AttentionResiduals {
            probs,
            padding,
            dropout,
        },
    )
}

/// [`EncoderBackend::attention_train_backward`] in Burn's ops.
///
/// # Panics
/// On residuals with a dropout seed: those are the CPU kernels' own, which make the mask again.
pub fn burn_attention_train_backward<B: Backend>(
    query: Tensor<B, 3>,
    key: Tensor<B, 3>,
    value: Tensor<B, 3>,
    residuals: AttentionResiduals<B>,
    grad: Tensor<B, 3>,
    heads: usize,
) -> [Tensor<B, 3>; 3] {
    let [batch, seq, hidden] = query.dims();
    let split = |t: Tensor<B, 3>| {
        t.reshape([batch, seq, heads, hidden / heads])
            .swap_dims(1, 2)
    };
    let merge = |t: Tensor<B, 4>| t.swap_dims(1, 2).reshape([batch, seq, hidden]);
    let scale = 1.0 / ((hidden / heads) as f64).sqrt();
    let (q, k, v, g) = (split(query), split(key), split(value), split(grad));
    let probs = residuals.probs;
    let mask = match residuals.dropout {
        AttentionDropout::None => None,
        AttentionDropout::Mask(mask) => Some(mask),
        AttentionDropout::Seed { .. } => panic!("dropout seeds are the CPU kernels' residuals"),
    };
    let dropped = match &mask {
        Some(mask) => probs.clone() * mask.clone(),
        None => probs.clone(),
    };
    let dv = dropped.transpose().matmul(g.clone());
    let dprobs = g.matmul(v.transpose());
    let dprobs = match mask {
        Some(mask) => dprobs * mask,
        None => dprobs,
    };
    let row_dot = (dprobs.clone() * probs.clone()).sum_dim(3);
    let dscores = probs * (dprobs - row_dot);
    let dq = dscores.clone().matmul(k).mul_scalar(scale);
    let dk = dscores.transpose().matmul(q).mul_scalar(scale);
    [merge(dq), merge(dk), merge(dv)]
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

/// [`EncoderBackend::encoder_linear_backward`] in Burn's ops.
pub fn burn_linear_backward<B: Backend>(
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

/// [`EncoderBackend::self_attention`] through Burn's `module::attention`: the projections
/// are split into heads (`[batch, heads, seq, head_dim]`) and merged back.
pub fn burn_self_attention<B: Backend>(
    query: Tensor<B, 3>,
    key: Tensor<B, 3>,
    value: Tensor<B, 3>,
    padding: Tensor<B, 4, Bool>,
    heads: usize,
) -> Tensor<B, 3> {
    let [batch, seq, hidden] = query.dims();
    let split = |t: Tensor<B, 3>| {
        t.reshape([batch, seq, heads, hidden / heads])
            .swap_dims(1, 2)
    };
    // The default scale is 1/sqrt(head_dim).
    attention(
        split(query),
        split(key),
        split(value),
        Some(padding),
        None,
        AttentionModuleOptions::default(),
    )
    .swap_dims(1, 2)
    .reshape([batch, seq, hidden])
}

/// [`EncoderBackend::self_attention`] as a function pointer.
pub type SelfAttentionFn<B> =
    fn(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 4, Bool>, usize) -> Tensor<B, 3>;

/// [`EncoderBackend::encoder_linear`] as a function pointer.
pub type LinearFn<B> = fn(Tensor<B, 3>, Tensor<B, 2>, Option<Tensor<B, 1>>) -> Tensor<B, 3>;

/// A backend's encoder kernels as plain function pointers, so that code generic over any
/// `Backend` can call them once they are chosen: core's `Bert::forward` picks them and hands
/// them to its layers with the padding mask.
pub struct EncoderKernels<B: Backend> {
    pub mask_layout: MaskLayout,
    pub self_attention: SelfAttentionFn<B>,
    pub gelu: fn(Tensor<B, 3>) -> Tensor<B, 3>,
    pub linear: LinearFn<B>,
    pub dropout_mask: DropoutMaskFn<B>,
    /// [`EncoderBackend::training_self_attention`], where the backend has that kernel.
    pub training_attention: Option<TrainingAttentionFn<B>>,
}

/// [`EncoderBackend::training_self_attention`] as a function pointer.
pub type TrainingAttentionFn<B> =
    fn(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 4, Bool>, usize, f64) -> Tensor<B, 3>;

/// [`EncoderBackend::encoder_dropout_mask`] as a function pointer.
pub type DropoutMaskFn<B> = fn(usize, f64, &burn::tensor::Device<B>) -> Tensor<B, 1>;

impl<B: EncoderBackend> EncoderKernels<B> {
    pub fn of_backend() -> Self {
        EncoderKernels {
            mask_layout: B::MASK_LAYOUT,
            self_attention: B::self_attention,
            gelu: B::encoder_gelu,
            linear: B::encoder_linear,
            dropout_mask: B::encoder_dropout_mask,
            training_attention: B::HAS_TRAINING_ATTENTION
                .then_some(B::training_self_attention as TrainingAttentionFn<B>),
        }
    }
}

// Not derived: a derive would ask `B: Clone`/`Debug` of the backend type.
impl<B: Backend> Clone for EncoderKernels<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for EncoderKernels<B> {}

impl<B: Backend> std::fmt::Debug for EncoderKernels<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderKernels")
            .field("mask_layout", &self.mask_layout)
            .finish_non_exhaustive()
    }
}

/// `[batch, seq]` 1/0 attention mask (1 = real token) to the boolean mask of `module::attention`:
/// true where the key is padding, the same for every query (and head).
pub fn key_padding_mask<B: Backend>(
    attention_mask: Tensor<B, 2, Int>,
    heads: usize,
    layout: MaskLayout,
) -> Tensor<B, 4, Bool> {
    let [batch, seq] = attention_mask.dims();
    let padding = attention_mask.equal_elem(0);
    match layout {
        MaskLayout::SharedAcrossHeads => padding
            .reshape([batch, 1, 1, seq])
            .expand([batch, 1, seq, seq]),
        // A broadcast add into a fresh dense buffer: `expand` alone would give a stride-0 view.
        MaskLayout::PerHead => {
            Tensor::<B, 4, Int>::zeros([batch, heads, seq, seq], &padding.device())
                .add(padding.int().reshape([batch, 1, 1, seq]))
                .greater_elem(0)
        }
    }
}

#[cfg(feature = "flex")]
impl EncoderBackend for burn::backend::Flex {
    const HAS_CPU_KERNELS: bool = true;

    fn self_attention(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        padding: Tensor<Self, 4, Bool>,
        heads: usize,
    ) -> Tensor<Self, 3> {
        use crate::cpu::flex;
        if flex::is_f32(&query) && flex::is_f32(&key) && flex::is_f32(&value) {
            flex::self_attention(query, key, value, padding, heads)
        } else {
            burn_self_attention(query, key, value, padding, heads)
        }
    }

    fn encoder_linear(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 3> {
        use crate::cpu::flex;
        if flex::is_f32(&x) && flex::is_f32(&weight) && bias.as_ref().is_none_or(flex::is_f32) {
            flex::linear(x, weight, bias)
        } else {
            burn::tensor::module::linear(x, weight, bias)
        }
    }

    fn encoder_gelu(x: Tensor<Self, 3>) -> Tensor<Self, 3> {
        if crate::cpu::flex::is_f32(&x) {
            crate::cpu::flex::gelu(x)
        } else {
            burn::tensor::activation::gelu(x)
        }
    }

    fn encoder_dropout_mask(len: usize, keep: f64, device: &Self::Device) -> Tensor<Self, 1> {
        crate::cpu::flex::dropout_mask(len, keep, device)
    }

    fn attention_train_forward(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        padding: Tensor<Self, 4, Bool>,
        heads: usize,
        keep: f64,
    ) -> (Tensor<Self, 3>, AttentionResiduals<Self>) {
        use crate::cpu::flex;
        if flex::is_f32(&query) && flex::is_f32(&key) && flex::is_f32(&value) {
            flex::attention_train_forward(query, key, value, padding, heads, keep)
        } else {
            burn_attention_train_forward(query, key, value, padding, heads, keep)
        }
    }

    fn attention_train_backward(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        residuals: AttentionResiduals<Self>,
        grad: Tensor<Self, 3>,
        heads: usize,
    ) -> [Tensor<Self, 3>; 3] {
        use crate::cpu::flex;
        let kernel = flex::is_f32(&query) && flex::is_f32(&grad);
        kernel
            .then(|| {
                flex::attention_train_backward(
                    query.clone(),
                    key.clone(),
                    value.clone(),
                    &residuals,
                    grad.clone(),
                    heads,
                )
            })
            .flatten()
            .unwrap_or_else(|| {
                burn_attention_train_backward(query, key, value, residuals, grad, heads)
            })
    }

    fn encoder_linear_backward(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        grad: Tensor<Self, 3>,
        input_grad: bool,
    ) -> LinearGrads<Self> {
        use crate::cpu::flex;
        if flex::is_f32(&x) && flex::is_f32(&weight) && flex::is_f32(&grad) {
            flex::linear_backward(x, weight, grad, input_grad)
        } else {
            burn_linear_backward(x, weight, grad, input_grad)
        }
    }

    fn encoder_gelu_backward(x: Tensor<Self, 3>, grad: Tensor<Self, 3>) -> Tensor<Self, 3> {
        use crate::cpu::flex;
        if flex::is_f32(&x) && flex::is_f32(&grad) {
            flex::gelu_backward(x, grad)
        } else {
            burn_gelu_backward(x, grad)
        }
    }
}

// burn-ndarray has no attention kernel of its own: the separate-ops fallback, which broadcasts.
#[cfg(feature = "ndarray")]
impl EncoderBackend for burn::backend::NdArray<f32> {}

#[cfg(feature = "ndarray")]
impl EncoderBackend for burn::backend::NdArray<f32, i32> {}

#[cfg(feature = "cubecl")]
mod cube {
    use super::{EncoderBackend, MaskLayout};
    use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
    use burn_fusion::{Fusion, FusionBackend};

    impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> EncoderBackend
        for CubeBackend<R, F, I, BT>
    {
        const MASK_LAYOUT: MaskLayout = MaskLayout::PerHead;
    }

    impl<B: FusionBackend + EncoderBackend> EncoderBackend for Fusion<B> {
        const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
    }
}
