//! The encoder's forward pass: the choice of ops every layer of one pass shares, and each
//! layer's forward.
//!
//! BERT is post-LN: each sub-layer adds its residual and then normalises. Every linear layer,
//! GELU, dropout and attention goes through [`EncoderPass`]: Burn's ops (the reference), or the
//! backend's ops (`KernelBackend`, with dropout under autodiff).

use burn::nn::{Dropout, Linear};
use burn::tensor::activation::{gelu, gelu_approximate, relu};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor};

use bertvision_shaders::ops::attention::reference::{explicit, merge_heads, split_heads};
use bertvision_shaders::{AttentionInput, AttentionMask};
use bertvision_shaders::{KernelBackend, padding_bias, to_dtype};

use bertvision_formats::bert_config::Activation;

use super::model::{
    Bert, BertDenseNorm, BertInput, BertIntermediate, BertLayer, BertOutput, BertSelfAttention,
};
use super::options::EncoderKernels;

/// Which ops one forward pass runs and the padding mask they read: chosen once per forward by
/// `Bert::forward`, read by every layer.
#[derive(Debug, Clone)]
pub enum EncoderPass<B: Backend> {
    /// Burn's tensor ops where no gradient is recorded (`EncoderKernels::Burn`): the reference.
    /// `bias` is the additive padding bias `[batch, 1, 1, seq]` of the scores.
    Burn { bias: Tensor<B, 4> },
    /// The backend's ops where no gradient is recorded (`EncoderKernels::Native`): no dropout.
    Frozen { mask: AttentionMask<B> },
    /// The backend's ops under autodiff (fine-tuning), with dropout; the linear layers and
    /// attention multiply in `compute` (f32, or bf16/f16 for mixed precision).
    Training {
        mask: AttentionMask<B>,
        compute: FloatDType,
    },
}

impl<B: KernelBackend> EncoderPass<B> {
    /// A linear layer, its output in `dtype`: Burn's `Linear`, or the backend's op (in mixed
    /// precision its output is cast from the compute type to `dtype`; elsewhere `dtype` is the
    /// input's and nothing is cast).
    fn linear_into(&self, linear: &Linear<B>, x: Tensor<B, 3>, dtype: FloatDType) -> Tensor<B, 3> {
        match self {
            EncoderPass::Burn { .. } => linear.forward(x),
            _ => to_dtype(self.linear_compute(linear, x), dtype),
        }
    }

    /// The backend's linear layer with its output left in the type it multiplies in
    /// ([`linear_in`] at the pass's compute type).
    fn linear_compute(&self, linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear_in(linear, x, self.mixed())
    }

    /// The float type mixed-precision training multiplies in; `None` where the tensors' own
    /// type is used (every frozen pass).
    fn mixed(&self) -> Option<FloatDType> {
        match self {
            EncoderPass::Training { compute, .. } => Some(*compute),
            _ => None,
        }
    }

    /// Dropout, only under autodiff: [`train_dropout`]. Where no gradient is recorded dropout
    /// is the identity, as Burn's.
    fn dropout<const D: usize>(&self, dropout: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            EncoderPass::Training { .. } => train_dropout(dropout, x),
            _ => x,
        }
    }
}

/// A linear layer through the backend's op, multiplying in `compute` when given (mixed
/// precision: the input, weight and bias cast to it by differentiable casts, so the weight's
/// gradient comes back in the weight's f32, the master copy), else in the tensors' own type.
/// The output stays in the type it was multiplied in. The weight is read before the bias, as
/// Burn's `Linear` does (a fresh module draws its parameters when first read).
pub(crate) fn linear_in<B: KernelBackend>(
    linear: &Linear<B>,
    x: Tensor<B, 3>,
    compute: Option<FloatDType>,
) -> Tensor<B, 3> {
    let weight = linear.weight.val();
    let bias = linear.bias.as_ref().map(|b| b.val());
    match compute {
        Some(compute) => B::encoder_linear(
            to_dtype(x, compute),
            to_dtype(weight, compute),
            bias.map(|b| to_dtype(b, compute)),
        ),
        None => B::encoder_linear(x, weight, bias),
    }
}

/// Burn's `Dropout` through the backend's mask (`DropoutOps`): the identity where no gradient
/// is recorded; else the input times the scaled keep mask, row by row of the batch's first
/// dimension (on Flex a parallel counter-based generator keyed by the step, so that a
/// data-parallel peer's shard gets exactly its rows of the batch's mask; the same distribution
/// as Burn's `Dropout`). Every dropout of the task models goes through here.
pub fn train_dropout<B: KernelBackend, const D: usize>(
    dropout: &Dropout,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    if dropout.prob == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    let shape = x.shape();
    let rows = x.dims()[0];
    let row_len = shape.num_elements() / rows.max(1);
    let keep = B::encoder_dropout_mask(rows, row_len, 1.0 - dropout.prob, &x.device());
    x * keep.reshape(shape)
}

impl<B: KernelBackend> BertSelfAttention<B> {
    pub fn forward(&self, x: Tensor<B, 3>, pass: &EncoderPass<B>) -> Tensor<B, 3> {
        let heads = self.num_heads;
        match pass {
            // Each projection is split into heads as soon as it is made: on Burn's fusion
            // backends the order of the ops decides which kernels are fused and compiled (with
            // q, k and v projected first, the forced-WebGPU browser test on SwiftShader ran over
            // its 120-s limit twice; in this order its forward took 49.8 s and 46.9 s).
            EncoderPass::Burn { bias } => {
                let q = split_heads(self.query.forward(x.clone()), heads);
                let k = split_heads(self.key.forward(x.clone()), heads);
                let v = split_heads(self.value.forward(x), heads);
                merge_heads(explicit(q, k, v, bias.clone(), None).0)
            }
            EncoderPass::Frozen { mask } => B::encoder_attention(self.input(x, mask, pass)),
            EncoderPass::Training { mask, .. } => {
                B::encoder_attention_train(self.input(x, mask, pass), 1.0 - self.dropout.prob)
            }
        }
    }

    /// The projections and mask the backend's attention reads.
    fn input(
        &self,
        x: Tensor<B, 3>,
        mask: &AttentionMask<B>,
        pass: &EncoderPass<B>,
    ) -> AttentionInput<B> {
        AttentionInput {
            query: pass.linear_compute(&self.query, x.clone()),
            key: pass.linear_compute(&self.key, x.clone()),
            value: pass.linear_compute(&self.value, x),
            mask: mask.clone(),
            heads: self.num_heads,
        }
    }
}

impl<B: KernelBackend> BertDenseNorm<B> {
    /// LayerNorm of (dropout(dense(x)) + residual), in the residual's float type (`x` may be in
    /// mixed precision's compute type).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        residual: Tensor<B, 3>,
        pass: &EncoderPass<B>,
    ) -> Tensor<B, 3> {
        let dense = pass.linear_into(&self.dense, x, residual.dtype().into());
        let projected = pass.dropout(&self.dropout, dense);
        self.layer_norm.forward(projected + residual)
    }
}

impl<B: KernelBackend> BertIntermediate<B> {
    /// The feed-forward expansion and its activation; GELU through the backend's op on the
    /// backend's path, in the input's float type (f32 in mixed precision, as the residual
    /// stream: only the matmuls run in the compute type).
    pub fn forward(&self, x: Tensor<B, 3>, pass: &EncoderPass<B>) -> Tensor<B, 3> {
        let dtype = x.dtype().into();
        let x = pass.linear_into(&self.dense, x, dtype);
        match (pass, self.activation) {
            (EncoderPass::Burn { .. }, _) => activate(self.activation, x),
            (_, Activation::Gelu) => B::encoder_gelu(x),
            (_, activation) => activate(activation, x),
        }
    }
}

/// An activation in Burn's ops.
fn activate<B: Backend>(activation: Activation, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match activation {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
    }
}

impl<B: KernelBackend> BertLayer<B> {
    pub fn forward(&self, x: Tensor<B, 3>, pass: &EncoderPass<B>) -> Tensor<B, 3> {
        let context = self.attention.self_attn.forward(x.clone(), pass);
        let attended = self.attention.output.forward(context, x, pass);
        let inner = self.intermediate.forward(attended.clone(), pass);
        self.output.forward(inner, attended, pass)
    }
}

impl<B: KernelBackend> Bert<B> {
    /// Runs the encoder and returns every layer's hidden states (see [`BertOutput`]).
    pub fn forward(&self, input: BertInput<B>) -> BertOutput<B> {
        let mut x = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids);
        let pass = self.pass(input.attention_mask, x.dtype().into());
        let mut hidden_states = Vec::with_capacity(self.encoder.layer.len() + 1);
        hidden_states.push(x.clone());
        for layer in &self.encoder.layer {
            x = layer.forward(x, &pass);
            hidden_states.push(x.clone());
        }
        let pooled = self.pooler.as_ref().map(|p| p.forward(x));
        BertOutput {
            hidden_states,
            pooled,
        }
    }

    /// This forward's ops and the padding mask they read: the backend's with dropout under
    /// autodiff, else the ones [`Self::encoder_kernels`] names.
    fn pass(&self, attention_mask: Tensor<B, 2, Int>, dtype: FloatDType) -> EncoderPass<B> {
        let heads = self
            .encoder
            .layer
            .first()
            .map_or(1, |layer| layer.attention.self_attn.num_heads);
        let training = B::ad_enabled(&attention_mask.device());
        match (training, self.encoder_kernels()) {
            (true, _) => EncoderPass::Training {
                mask: B::encoder_attention_mask(attention_mask, heads, dtype, true),
                compute: self.precision().float_dtype(),
            },
            (false, EncoderKernels::Native) => EncoderPass::Frozen {
                mask: B::encoder_attention_mask(attention_mask, heads, dtype, false),
            },
            (false, EncoderKernels::Burn) => EncoderPass::Burn {
                bias: padding_bias(attention_mask, dtype),
            },
        }
    }
}
