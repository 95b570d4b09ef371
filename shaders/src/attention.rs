//! Padding masks for Burn's own attention kernels (`burn::tensor::module::attention`).
//!
//! The BERT encoder can hand self-attention to the backend's fused attention where no gradient
//! flows (core's `AttentionKernel::Fused`). Those kernels are Burn's, not ours, but the mask we
//! feed them is ours, and Burn 0.21's backends disagree on the masks they read correctly:
//!
//! - Flex (CPU) accepts a mask broadcast over heads and reads it without copying it per head;
//!   expanding it to every head first costs most of what the fusion saves (README, "Speed").
//! - CubeCL's flash kernels (CUDA, wgpu) read the mask as a dense `[batch, heads, seq, seq]`
//!   buffer: handed a broadcast (stride-0) view they silently compute unmasked attention — found
//!   by `tests/attention.rs` on wgpu, max error 0.68 against the formula. They also ignore an
//!   additive bias, so the mask must be boolean.
//!
//! [`FusedAttentionBackend::MASK_LAYOUT`] records which form each backend gets, and
//! [`key_padding_mask`] builds it; the tests check the pair on every backend we can run here.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

/// How a key-padding mask is laid out for a backend's attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskLayout {
    /// `[batch, 1, seq, seq]`: one mask read by every head.
    SharedAcrossHeads,
    /// `[batch, heads, seq, seq]`, written out in memory (not a broadcast view).
    PerHead,
}

/// A backend whose `module::attention` the encoder may use, with the mask layout it reads
/// correctly.
pub trait FusedAttentionBackend: Backend {
    const MASK_LAYOUT: MaskLayout = MaskLayout::SharedAcrossHeads;
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
impl FusedAttentionBackend for burn::backend::Flex {}

// burn-ndarray has no attention kernel of its own: the separate-ops fallback, which broadcasts.
#[cfg(feature = "ndarray")]
impl FusedAttentionBackend for burn::backend::NdArray<f32> {}

#[cfg(feature = "ndarray")]
impl FusedAttentionBackend for burn::backend::NdArray<f32, i32> {}

#[cfg(feature = "autodiff")]
impl<B: FusedAttentionBackend, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy>
    FusedAttentionBackend for burn::backend::Autodiff<B, C>
{
    const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
}

#[cfg(feature = "cubecl")]
mod cube {
    use super::{FusedAttentionBackend, MaskLayout};
    use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
    use burn_fusion::{Fusion, FusionBackend};

    impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FusedAttentionBackend
        for CubeBackend<R, F, I, BT>
    {
        const MASK_LAYOUT: MaskLayout = MaskLayout::PerHead;
    }

    impl<B: FusionBackend + FusedAttentionBackend> FusedAttentionBackend for Fusion<B> {
        const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
    }
}
