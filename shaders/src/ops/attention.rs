//! The encoder's multi-head self-attention: without dropout for the frozen encoder, with dropout
//! (and its backward) for fine-tuning, and the padding masks each reads.
//!
//! The mask is ours whichever kernel reads it, and Burn 0.21's backends disagree on the masks
//! their attention reads correctly:
//!
//! - Flex (CPU) accepts a mask broadcast over heads and reads it without copying it per head;
//!   expanding it to every head first cost most of what its fused attention saved
//!   (`docs/performance.md`). Our CPU kernel reads the same mask.
//! - CubeCL's flash kernels (CUDA, wgpu) read the mask as a dense `[batch, heads, seq, seq]`
//!   buffer: handed a broadcast (stride-0) view they silently compute unmasked attention — found
//!   by `tests/attention.rs` on wgpu, max error 0.68 against the formula. They also ignore an
//!   additive bias, so the mask must be boolean. So the CubeCL backends run their own kernel for
//!   the frozen encoder instead (`cube/attention.rs`), which reads the `[batch, 1, 1, seq]` key
//!   bias ([`padding_bias`]); `MASK_LAYOUT` still says how Burn's op must get the boolean mask.
//!
//! [`AttentionOps::MASK_LAYOUT`] records which form each backend gets, and
//! [`AttentionOps::encoder_attention_mask`] builds it; the tests check the pair on every backend we can
//! run here.

use burn::tensor::backend::Backend;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, FloatDType, Int, Tensor};

use super::dropout::DropoutOps;
use super::tensor::to_dtype;

/// Value added to attention scores of padding keys; Hugging Face uses the dtype's minimum.
pub const MASKED_SCORE: f32 = f32::MIN;

/// How a key-padding mask is laid out for a backend's attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskLayout {
    /// `[batch, 1, seq, seq]`: one mask read by every head.
    SharedAcrossHeads,
    /// `[batch, heads, seq, seq]`, written out in memory (not a broadcast view).
    PerHead,
}

/// A batch's key padding in the form an attention path reads; built once per forward pass and
/// shared by every layer.
#[derive(Debug, Clone)]
pub enum AttentionMask<B: Backend> {
    /// `[batch, 1, 1, seq]`, added to the scores: 0 for real keys, [`MASKED_SCORE`] for padding,
    /// in the encoder's float type. What the explicit ops (the references) read.
    Bias(Tensor<B, 4>),
    /// True where the key is padding, laid out as [`AttentionOps::MASK_LAYOUT`] says: what the
    /// backends' attention kernels read.
    Padding(Tensor<B, 4, Bool>),
}

/// One self-attention call's inputs.
#[derive(Debug, Clone)]
pub struct AttentionInput<B: Backend> {
    /// The query, key and value projections, `[batch, seq, heads·head_dim]` each.
    pub query: Tensor<B, 3>,
    pub key: Tensor<B, 3>,
    pub value: Tensor<B, 3>,
    pub mask: AttentionMask<B>,
    pub heads: usize,
}

/// What fine-tuning's attention keeps for its backward.
#[derive(Debug, Clone)]
pub struct AttentionResiduals<B: Backend> {
    /// The softmax's output before dropout, `[batch, heads, seq, seq]`.
    pub probs: Tensor<B, 4>,
    /// The mask the forward read.
    pub mask: AttentionMask<B>,
    pub dropout: AttentionDropout<B>,
}

/// The dropout applied to the attention probabilities, as the backward needs it.
#[derive(Debug, Clone)]
pub enum AttentionDropout<B: Backend> {
    None,
    /// The scaled keep mask, `[batch, heads, seq, seq]` (the reference keeps it).
    Mask(Tensor<B, 4>),
    /// The seed of the CPU kernels' counter-based mask (`cpu::DropoutStream`), which their
    /// backward makes again instead of keeping it.
    Seed {
        seed: u64,
        keep: f64,
        /// The mask's first element: where this batch's rows start in the whole batch
        /// (`ops::dropout::StepKey`), times a row's elements.
        first: u64,
    },
}

/// A backend's self-attention. The provided methods are the reference ([`reference`]).
pub trait AttentionOps: DropoutOps {
    /// Whether fine-tuning's attention ([`Self::encoder_attention_train_forward`] and
    /// [`Self::encoder_attention_train_backward`]) is this crate's kernel (then `Autodiff<Self>`
    /// records it as one node with that backward).
    const KERNEL: bool = false;

    /// The layout of the [`AttentionMask::Padding`] this backend's [`Self::encoder_attention`] reads.
    const MASK_LAYOUT: MaskLayout = MaskLayout::SharedAcrossHeads;

    /// Whether [`Self::encoder_attention`] reads the `[batch, 1, 1, seq]` key bias
    /// ([`padding_bias`]: the CubeCL backends' own kernel) rather than a boolean padding mask
    /// in [`Self::MASK_LAYOUT`].
    const FROZEN_KEY_BIAS: bool = false;

    /// The mask [`Self::encoder_attention`] (or, when `training`, [`Self::encoder_attention_train`]) reads, from
    /// a `[batch, seq]` 1/0 attention mask (1 = real token); `dtype` is the encoder's float type.
    fn encoder_attention_mask(
        attention_mask: Tensor<Self, 2, Int>,
        heads: usize,
        dtype: FloatDType,
        training: bool,
    ) -> AttentionMask<Self> {
        if training || Self::FROZEN_KEY_BIAS {
            AttentionMask::Bias(padding_bias(attention_mask, dtype))
        } else {
            AttentionMask::Padding(key_padding_mask(attention_mask, heads, Self::MASK_LAYOUT))
        }
    }

    /// `softmax(q·kᵀ/√head_dim + padding)·v`, no dropout, back in `[batch, seq, hidden]`.
    fn encoder_attention(input: AttentionInput<Self>) -> Tensor<Self, 3> {
        reference::attention(input)
    }

    /// Fine-tuning's attention: the same with dropout on the probabilities (keep probability
    /// `keep`; none at 1), the masks drawn from [`DropoutOps::encoder_dropout_mask`].
    fn encoder_attention_train(input: AttentionInput<Self>, keep: f64) -> Tensor<Self, 3> {
        Self::encoder_attention_train_forward(input, keep).0
    }

    /// [`Self::encoder_attention_train`] with what its backward needs.
    fn encoder_attention_train_forward(
        input: AttentionInput<Self>,
        keep: f64,
    ) -> (Tensor<Self, 3>, AttentionResiduals<Self>) {
        reference::attention_train_forward(input, keep)
    }

    /// The gradients at the query, key and value of [`Self::encoder_attention_train_forward`] for
    /// `grad` at its output.
    fn encoder_attention_train_backward(
        input: AttentionInput<Self>,
        residuals: AttentionResiduals<Self>,
        grad: Tensor<Self, 3>,
    ) -> [Tensor<Self, 3>; 3] {
        reference::attention_train_backward(input, residuals, grad)
    }
}

/// `[batch, seq]` 1/0 attention mask (1 = real token) to the additive `[batch, 1, 1, seq]` bias
/// of the scores ([`AttentionMask::Bias`]).
pub fn padding_bias<B: Backend>(
    attention_mask: Tensor<B, 2, Int>,
    dtype: FloatDType,
) -> Tensor<B, 4> {
    let [batch, seq] = attention_mask.dims();
    let padding = attention_mask.equal_elem(0);
    Tensor::<B, 2>::zeros([batch, seq], &padding.device())
        .mask_fill(padding, MASKED_SCORE)
        .reshape([batch, 1, 1, seq])
        .cast(dtype)
}

/// `[batch, seq]` 1/0 attention mask (1 = real token) to the boolean mask of `module::attention`
/// ([`AttentionMask::Padding`]): true where the key is padding, the same for every query (and
/// head).
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

/// The op in Burn's tensor ops.
pub mod reference {
    use super::*;

    /// `[batch, seq, heads·head_dim]` → `[batch, heads, seq, head_dim]`.
    pub fn split_heads<B: Backend>(t: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
        let [batch, seq, hidden] = t.dims();
        t.reshape([batch, seq, heads, hidden / heads])
            .swap_dims(1, 2)
    }

    /// `[batch, heads, seq, head_dim]` → `[batch, seq, heads·head_dim]`.
    pub fn merge_heads<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, heads, seq, head_dim] = t.dims();
        t.swap_dims(1, 2).reshape([batch, seq, heads * head_dim])
    }

    /// The additive bias of a mask (`[batch, 1 or heads, seq, seq]` when made from padding), in
    /// f32 like the softmax that reads it.
    fn bias_of<B: Backend>(mask: AttentionMask<B>) -> Tensor<B, 4> {
        match mask {
            AttentionMask::Bias(bias) => bias,
            AttentionMask::Padding(padding) => {
                Tensor::<B, 4>::zeros(padding.dims(), &padding.device())
                    .mask_fill(padding, MASKED_SCORE)
                    .cast(FloatDType::F32)
            }
        }
    }

    /// Explicit attention on split heads: the probabilities `softmax(q·kᵀ/√head_dim + bias)`
    /// and the context `(probs ⊙ keep)·v`, `keep` being a scaled dropout mask (`None`: no
    /// dropout). The separate-ops formula every path is checked against.
    ///
    /// The two matmuls run in the inputs' float type and the softmax in f32 whatever it is
    /// (as PyTorch's autocast and flash kernels do): with bf16/f16 inputs the scores are cast
    /// up, and the probabilities (returned in f32) cast down for the value product. In f32
    /// every cast is skipped.
    pub fn explicit<B: Backend>(
        query: Tensor<B, 4>,
        key: Tensor<B, 4>,
        value: Tensor<B, 4>,
        bias: Tensor<B, 4>,
        keep: Option<Tensor<B, 4>>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let head_dim = query.dims()[3];
        let dtype = value.dtype().into();
        let scores = query
            .matmul(key.transpose())
            .div_scalar((head_dim as f64).sqrt());
        let scores = to_dtype(scores, FloatDType::F32) + to_dtype(bias, FloatDType::F32);
        let probs = burn::tensor::activation::softmax(scores, 3);
        let dropped = match keep {
            Some(keep) => probs.clone() * keep,
            None => probs.clone(),
        };
        (to_dtype(dropped, dtype).matmul(value), probs)
    }

    /// [`AttentionOps::encoder_attention`] through Burn's `module::attention` (its default scale is
    /// 1/√head_dim; CubeCL autotunes it between flash kernels and the separate ops).
    pub fn attention<B: Backend>(input: AttentionInput<B>) -> Tensor<B, 3> {
        let AttentionInput {
            query,
            key,
            value,
            mask,
            heads,
        } = input;
        let (padding, bias) = match mask {
            AttentionMask::Padding(padding) => (Some(padding), None),
            AttentionMask::Bias(bias) => (None, Some(bias)),
        };
        merge_heads(burn_attention(
            split_heads(query, heads),
            split_heads(key, heads),
            split_heads(value, heads),
            padding,
            bias,
            AttentionModuleOptions::default(),
        ))
    }

    /// [`AttentionOps::encoder_attention`] as the explicit ops: what a backend whose kernel
    /// reads the key bias ([`padding_bias`]) runs for inputs its kernel does not take (Burn's
    /// `module::attention` on CubeCL may pick a flash kernel, which ignores an additive bias).
    pub fn explicit_attention<B: Backend>(input: AttentionInput<B>) -> Tensor<B, 3> {
        let AttentionInput {
            query,
            key,
            value,
            mask,
            heads,
        } = input;
        let [q, k, v] = [query, key, value].map(|t| split_heads(t, heads));
        merge_heads(explicit(q, k, v, bias_of(mask), None).0)
    }

    /// [`AttentionOps::encoder_attention_train_forward`] as the explicit ops, the dropout mask from
    /// [`DropoutOps::encoder_dropout_mask`] (kept for the backward).
    pub fn attention_train_forward<B: DropoutOps>(
        input: AttentionInput<B>,
        keep: f64,
    ) -> (Tensor<B, 3>, AttentionResiduals<B>) {
        let AttentionInput {
            query,
            key,
            value,
            mask,
            heads,
        } = input;
        let [batch, seq, _] = query.dims();
        let device = query.device();
        let bias = bias_of(mask.clone());
        let dropout = if keep < 1.0 {
            let mask = B::encoder_dropout_mask(batch, heads * seq * seq, keep, &device)
                .reshape([batch, heads, seq, seq]);
            AttentionDropout::Mask(mask)
        } else {
            AttentionDropout::None
        };
        let kept = match &dropout {
            AttentionDropout::Mask(mask) => Some(mask.clone()),
            _ => None,
        };
        let (q, k, v) = (
            split_heads(query, heads),
            split_heads(key, heads),
            split_heads(value, heads),
        );
        let (context, probs) = explicit(q, k, v, bias, kept);
        let residuals = AttentionResiduals {
            probs,
            mask,
            dropout,
        };
        (merge_heads(context), residuals)
    }

    /// [`AttentionOps::encoder_attention_train_backward`] as the explicit ops.
    ///
    /// # Panics
    /// On residuals with a dropout seed: those are the CPU kernels' own, which make the mask
    /// again.
    pub fn attention_train_backward<B: Backend>(
        input: AttentionInput<B>,
        residuals: AttentionResiduals<B>,
        grad: Tensor<B, 3>,
    ) -> [Tensor<B, 3>; 3] {
        let AttentionInput {
            query,
            key,
            value,
            heads,
            ..
        } = input;
        let head_dim = query.dims()[2] / heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        // As in the forward ([`explicit`]): matmuls in the inputs' float type, the softmax's
        // gradient in f32 (the probabilities' type).
        let dtype: FloatDType = value.dtype().into();
        let [q, k, v, g] = [query, key, value, grad].map(|t| split_heads(t, heads));
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
        let dv = to_dtype(dropped, dtype).transpose().matmul(g.clone());
        let dprobs = to_dtype(g.matmul(v.transpose()), FloatDType::F32);
        let dprobs = match mask {
            Some(mask) => dprobs * mask,
            None => dprobs,
        };
        let row_dot = (dprobs.clone() * probs.clone()).sum_dim(3);
        let dscores = to_dtype(probs * (dprobs - row_dot), dtype);
        let dq = dscores.clone().matmul(k).mul_scalar(scale);
        let dk = dscores.transpose().matmul(q).mul_scalar(scale);
        [dq, dk, dv].map(merge_heads)
    }
}
