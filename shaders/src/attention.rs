//! The frozen encoder's backend kernels, and the padding masks Burn's attention kernels read.
//!
//! Where no gradient flows (core's `AttentionKernel::Fused`: evaluation, the encoder feeding the
//! AdapterPooler), the BERT encoder hands self-attention, GELU and its linear layers to
//! [`FrozenEncoderBackend`]. Its provided methods are Burn's ops (`module::attention`, `gelu`,
//! `linear`); Flex overrides them with this crate's CPU kernels (`cpu.rs`).
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
//! [`FrozenEncoderBackend::MASK_LAYOUT`] records which form each backend gets, and
//! [`key_padding_mask`] builds it; the tests check the pair on every backend we can run here.

use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};

/// How a key-padding mask is laid out for a backend's attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskLayout {
    /// `[batch, 1, seq, seq]`: one mask read by every head.
    SharedAcrossHeads,
    /// `[batch, heads, seq, seq]`, written out in memory (not a broadcast view).
    PerHead,
}

/// A backend's kernels for the frozen encoder (no gradient, no dropout): its self-attention, with
/// the mask layout that attention reads correctly, its linear layers and its GELU. The provided
/// methods are Burn's own ops; Flex overrides them in f32 with this crate's CPU kernels
/// (`cpu.rs`).
pub trait FrozenEncoderBackend: Backend {
    const MASK_LAYOUT: MaskLayout = MaskLayout::SharedAcrossHeads;

    /// Whether the methods below are this crate's CPU kernels rather than Burn's ops (in f32);
    /// reported by `bench`.
    const HAS_CPU_KERNELS: bool = false;

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
}

/// [`FrozenEncoderBackend::self_attention`] through Burn's `module::attention`: the projections
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

/// [`FrozenEncoderBackend::self_attention`] as a function pointer.
pub type SelfAttentionFn<B> =
    fn(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 4, Bool>, usize) -> Tensor<B, 3>;

/// [`FrozenEncoderBackend::encoder_linear`] as a function pointer.
pub type LinearFn<B> = fn(Tensor<B, 3>, Tensor<B, 2>, Option<Tensor<B, 1>>) -> Tensor<B, 3>;

/// A backend's frozen-encoder kernels as plain function pointers, so that code generic over any
/// `Backend` can call them once they are chosen: core's `Bert::forward` picks them and hands
/// them to its layers with the padding mask.
pub struct FrozenKernels<B: Backend> {
    pub mask_layout: MaskLayout,
    pub self_attention: SelfAttentionFn<B>,
    pub gelu: fn(Tensor<B, 3>) -> Tensor<B, 3>,
    pub linear: LinearFn<B>,
}

impl<B: FrozenEncoderBackend> FrozenKernels<B> {
    pub fn of_backend() -> Self {
        FrozenKernels {
            mask_layout: B::MASK_LAYOUT,
            self_attention: B::self_attention,
            gelu: B::encoder_gelu,
            linear: B::encoder_linear,
        }
    }
}

// Not derived: a derive would ask `B: Clone`/`Debug` of the backend type.
impl<B: Backend> Clone for FrozenKernels<B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for FrozenKernels<B> {}

impl<B: Backend> std::fmt::Debug for FrozenKernels<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenKernels")
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
impl FrozenEncoderBackend for burn::backend::Flex {
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
}

// burn-ndarray has no attention kernel of its own: the separate-ops fallback, which broadcasts.
#[cfg(feature = "ndarray")]
impl FrozenEncoderBackend for burn::backend::NdArray<f32> {}

#[cfg(feature = "ndarray")]
impl FrozenEncoderBackend for burn::backend::NdArray<f32, i32> {}

#[cfg(feature = "autodiff")]
impl<B: FrozenEncoderBackend, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy>
    FrozenEncoderBackend for burn::backend::Autodiff<B, C>
{
    const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
}

#[cfg(feature = "cubecl")]
mod cube {
    use super::{FrozenEncoderBackend, MaskLayout};
    use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
    use burn_fusion::{Fusion, FusionBackend};

    impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FrozenEncoderBackend
        for CubeBackend<R, F, I, BT>
    {
        const MASK_LAYOUT: MaskLayout = MaskLayout::PerHead;
    }

    impl<B: FusionBackend + FrozenEncoderBackend> FrozenEncoderBackend for Fusion<B> {
        const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
    }
}
