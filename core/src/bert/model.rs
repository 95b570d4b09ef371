//! The BERT encoder, written layer by layer so that every layer's output is available.
//!
//! Field names follow Hugging Face's parameter names (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self_attn.query`, ...), so a checkpoint maps onto this tree with
//! three renames only (see [`super::weights`]). BERT is post-LN: each sub-layer adds its residual
//! and then normalises.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::{gelu, gelu_approximate, relu, softmax, tanh};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Int, Tensor};

use bertvision_shaders::attention::{EncoderBackend, EncoderKernels, key_padding_mask};

use super::config::{Activation, BertConfig};

/// Value added to attention scores of padding keys; Hugging Face uses the dtype's minimum.
const MASKED_SCORE: f32 = f32::MIN;

/// Token ids of a (padded) batch; all three are `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct BertInput<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub token_type_ids: Tensor<B, 2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct BertOutput<B: Backend> {
    /// `num_hidden_layers + 1` tensors of shape `[batch, seq, hidden]`: index 0 is the embedding
    /// output (after its LayerNorm), index `i` the output of encoder layer `i` (1-based). This is
    /// Hugging Face's `hidden_states` tuple.
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// `tanh(dense(hidden[:, 0]))`, `[batch, hidden]`, when the checkpoint has a pooler.
    pub pooled: Option<Tensor<B, 2>>,
}

impl<B: Backend> BertOutput<B> {
    /// The last encoder layer's output, `[batch, seq, hidden]`.
    pub fn last_hidden_state(&self) -> Tensor<B, 3> {
        self.hidden_states
            .last()
            .expect("at least the embedding output")
            .clone()
    }

    /// All hidden states stacked as `[batch, layers + 1, seq, hidden]`.
    pub fn stacked(&self) -> Tensor<B, 4> {
        Tensor::stack(self.hidden_states.clone(), 1)
    }

    /// The hidden states as f32, whatever dtype the encoder ran in (a no-op for f32): what the
    /// AdapterPooler reads.
    pub fn hidden_states_f32(self) -> Vec<Tensor<B, 3>> {
        self.hidden_states
            .into_iter()
            .map(|h| h.cast(FloatDType::F32))
            .collect()
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let [_, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_type_ids);
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// Query/key/value projections (`attention.self` in Hugging Face; `self` is a Rust keyword).
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub dropout: Dropout,
    #[module(skip)]
    pub num_heads: usize,
}

impl<B: Backend> BertSelfAttention<B> {
    pub fn forward(&self, x: Tensor<B, 3>, mask: &AttentionMask<B>) -> Tensor<B, 3> {
        let [batch, seq, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let heads = |t: Tensor<B, 3>| {
            t.reshape([batch, seq, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        match mask {
            // Each projection is split into heads as soon as it is made: on Burn's fusion
            // backends the order of the ops decides which kernels are fused and compiled (with
            // q, k and v projected first, the forced-WebGPU browser test on SwiftShader ran over
            // its 120-s limit twice; in this order its forward took 49.8 s and 46.9 s).
            AttentionMask::Bias {
                kernels: Some(kernels),
                padding: Some(padding),
                ..
            } if let Some(attend) = kernels.training_attention => {
                let q = dense(&self.query, x.clone(), mask);
                let k = dense(&self.key, x.clone(), mask);
                let v = dense(&self.value, x, mask);
                attend(
                    q,
                    k,
                    v,
                    padding.clone(),
                    self.num_heads,
                    1.0 - self.dropout.prob,
                )
            }
            AttentionMask::Bias { bias, .. } => {
                let q = heads(dense(&self.query, x.clone(), mask));
                let k = heads(dense(&self.key, x.clone(), mask));
                let v = heads(dense(&self.value, x, mask));
                let scores =
                    q.matmul(k.transpose()).div_scalar((head_dim as f64).sqrt()) + bias.clone();
                let context = dropout(&self.dropout, softmax(scores, 3), mask).matmul(v);
                context.swap_dims(1, 2).reshape([batch, seq, hidden])
            }
            AttentionMask::Blocked { padding, kernels } => {
                let q = dense(&self.query, x.clone(), mask);
                let k = dense(&self.key, x.clone(), mask);
                let v = dense(&self.value, x, mask);
                (kernels.self_attention)(q, k, v, padding.clone(), self.num_heads)
            }
        }
    }
}

/// How self-attention is computed where no gradient flows (evaluation, the frozen encoder that
/// feeds the AdapterPooler). Under autodiff this setting does not apply: the encoder runs the
/// backend's training attention where it has one (Flex: `bertvision_shaders::cpu::training`, with
/// dropout and its own backward), else the explicit ops with dropout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKernel {
    /// Scores, additive padding bias, softmax and the value product as separate tensor ops: the
    /// `[batch, heads, seq, seq]` scores are materialised in every layer.
    #[default]
    Explicit,
    /// The backend's frozen-encoder kernels (`bertvision_shaders::attention`): on Flex (CPU) this
    /// project's attention, GELU and linear-layer kernels (`bertvision_shaders::cpu`: every
    /// (sequence, head) in parallel, no head split or merge copies, keys cut at the last real
    /// one, vectorised softmax and GELU, one gemm per linear layer over the whole batch); on
    /// CubeCL backends Burn's `module::attention`, which autotunes between a flash-attention
    /// kernel and the separate ops, and Burn's other ops. Padding is passed as a boolean mask,
    /// since CubeCL's flash kernel ignores an additive bias.
    Fused,
}

impl AttentionKernel {
    pub fn is_explicit(&self) -> bool {
        *self == AttentionKernel::Explicit
    }

    /// The name used on the command line and in config.json.
    pub fn name(self) -> &'static str {
        match self {
            AttentionKernel::Explicit => "explicit",
            AttentionKernel::Fused => "fused",
        }
    }
}

/// The padding mask in the form the chosen attention kernel reads, built once per forward and
/// shared by every layer, with the backend kernels the layers use.
#[derive(Debug, Clone)]
pub enum AttentionMask<B: Backend> {
    /// Explicit attention (the form that applies attention dropout).
    Bias {
        /// `[batch, 1, 1, seq]`: 0 for real keys, a large negative value for padding keys.
        bias: Tensor<B, 4>,
        /// Under autodiff, the backend's linear-layer, GELU and dropout kernels, which carry
        /// their own backward (`bertvision_shaders`' autodiff ops: CPU kernels on Flex, Burn's
        /// ops elsewhere); `None` where no gradient is recorded, so that the explicit forward
        /// stays Burn's ops throughout (the reference the fused path is checked against).
        kernels: Option<EncoderKernels<B>>,
        /// Where those kernels include fine-tuning's attention (Flex): the key-padding mask it
        /// reads, in its layout.
        padding: Option<Tensor<B, 4, Bool>>,
    },
    /// True where the key is padding, laid out as the backend's attention reads it, and the
    /// backend's frozen-encoder kernels that read it (`bertvision_shaders::attention`).
    Blocked {
        padding: Tensor<B, 4, Bool>,
        kernels: EncoderKernels<B>,
    },
}

/// `dense` + dropout, then LayerNorm of (that + residual).
#[derive(Module, Debug)]
pub struct BertDenseNorm<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertDenseNorm<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        residual: Tensor<B, 3>,
        mask: &AttentionMask<B>,
    ) -> Tensor<B, 3> {
        self.layer_norm
            .forward(dropout(&self.dropout, dense(&self.dense, x, mask), mask) + residual)
    }
}

impl<B: Backend> AttentionMask<B> {
    /// The backend kernels this forward's layers use, if any.
    fn kernels(&self) -> Option<&EncoderKernels<B>> {
        match self {
            AttentionMask::Blocked { kernels, .. } => Some(kernels),
            AttentionMask::Bias { kernels, .. } => kernels.as_ref(),
        }
    }
}

/// A linear layer of the encoder: the backend's kernel where the mask carries them, Burn's
/// `Linear` otherwise.
fn dense<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>, mask: &AttentionMask<B>) -> Tensor<B, 3> {
    match mask.kernels() {
        Some(kernels) => (kernels.linear)(
            x,
            linear.weight.val(),
            linear.bias.as_ref().map(|b| b.val()),
        ),
        None => linear.forward(x),
    }
}

/// Dropout through the backend's mask kernel where the mask carries kernels (under autodiff:
/// on Flex a parallel generator instead of Burn's one-element-at-a-time draws), Burn's `Dropout`
/// otherwise. The same values either way: the input times a Bernoulli(1 − p) draw times 1/(1 − p).
fn dropout<B: Backend, const D: usize>(
    dropout: &Dropout,
    x: Tensor<B, D>,
    mask: &AttentionMask<B>,
) -> Tensor<B, D> {
    match mask {
        // Only the explicit path's kernels are ever set under autodiff; evaluation (the fused
        // path's `Blocked` included) has no dropout.
        AttentionMask::Bias {
            kernels: Some(kernels),
            ..
        } if dropout.prob > 0.0 => {
            let shape = x.shape();
            let keep =
                (kernels.dropout_mask)(shape.num_elements(), 1.0 - dropout.prob, &x.device());
            x * keep.reshape(shape)
        }
        _ => dropout.forward(x),
    }
}

#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub self_attn: BertSelfAttention<B>,
    pub output: BertDenseNorm<B>,
}

#[derive(Module, Debug)]
pub struct BertIntermediate<B: Backend> {
    pub dense: Linear<B>,
    #[module(skip)]
    pub activation: Activation,
}

impl<B: Backend> BertIntermediate<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.activate(self.dense.forward(x))
    }

    /// The activation alone, in Burn's ops.
    fn activate(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.activation {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_approximate(x),
            Activation::Relu => relu(x),
        }
    }
}

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertDenseNorm<B>,
}

impl<B: Backend> BertLayer<B> {
    pub fn forward(&self, x: Tensor<B, 3>, mask: &AttentionMask<B>) -> Tensor<B, 3> {
        let context = self.attention.self_attn.forward(x.clone(), mask);
        let attended = self.attention.output.forward(context, x, mask);
        let inner = match mask.kernels() {
            Some(kernels) => {
                let x = dense(&self.intermediate.dense, attended.clone(), mask);
                match self.intermediate.activation {
                    Activation::Gelu => (kernels.gelu)(x),
                    _ => self.intermediate.activate(x),
                }
            }
            None => self.intermediate.forward(attended.clone()),
        };
        self.output.forward(inner, attended, mask)
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder<B: Backend> {
    pub layer: Vec<BertLayer<B>>,
}

#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: Linear<B>,
}

impl<B: Backend> BertPooler<B> {
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, dim] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([batch, dim]);
        tanh(self.dense.forward(first))
    }
}

#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub encoder: BertEncoder<B>,
    pub pooler: Option<BertPooler<B>>,
    /// Not a weight: how the encoder runs where no gradient is recorded.
    #[module(skip)]
    attention_kernel: AttentionKernel,
}

impl<B: Backend> Bert<B> {
    /// A model with freshly initialised weights (for benchmarks of shapes we have no weights for,
    /// and as the skeleton that a checkpoint is loaded into).
    pub fn init(config: &BertConfig, with_pooler: bool, device: &B::Device) -> Self {
        let h = config.hidden_size;
        let norm = || {
            LayerNormConfig::new(h)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let hidden_dropout = || DropoutConfig::new(config.hidden_dropout_prob).init();
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let layer = (0..config.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attn: BertSelfAttention {
                        query: linear(h, h),
                        key: linear(h, h),
                        value: linear(h, h),
                        dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                        num_heads: config.num_attention_heads,
                    },
                    output: BertDenseNorm {
                        dense: linear(h, h),
                        layer_norm: norm(),
                        dropout: hidden_dropout(),
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(h, config.intermediate_size),
                    activation: config.activation(),
                },
                output: BertDenseNorm {
                    dense: linear(config.intermediate_size, h),
                    layer_norm: norm(),
                    dropout: hidden_dropout(),
                },
            })
            .collect();
        Bert {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(config.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(config.max_position_embeddings, h)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(config.type_vocab_size, h).init(device),
                layer_norm: norm(),
                dropout: hidden_dropout(),
            },
            encoder: BertEncoder { layer },
            pooler: with_pooler.then(|| BertPooler {
                dense: linear(h, h),
            }),
            attention_kernel: AttentionKernel::Explicit,
        }
    }

    /// The same encoder with every weight cast to `dtype`: its forward then runs, and returns
    /// hidden states, in that dtype. Meant for a frozen encoder on a GPU (bf16 extraction);
    /// Burn has no autocast, so LayerNorm and softmax run in `dtype` too.
    pub fn with_float_dtype(self, dtype: FloatDType) -> Self {
        self.map(&mut CastWeights(dtype))
    }

    /// How attention runs where no gradient is recorded.
    pub fn attention_kernel(&self) -> AttentionKernel {
        self.attention_kernel
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.layer.len()
    }

    pub fn hidden_size(&self) -> usize {
        self.embeddings.word_embeddings.weight.dims()[1]
    }

    pub fn max_positions(&self) -> usize {
        self.embeddings.position_embeddings.weight.dims()[0]
    }
}

impl<B: EncoderBackend> Bert<B> {
    /// Runs the encoder and returns every layer's hidden states (see [`BertOutput`]).
    pub fn forward(&self, input: BertInput<B>) -> BertOutput<B> {
        let mut x = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids);
        let mask = self.attention_mask(input.attention_mask, x.dtype().into());
        let mut hidden_states = Vec::with_capacity(self.encoder.layer.len() + 1);
        hidden_states.push(x.clone());
        for layer in &self.encoder.layer {
            x = layer.forward(x, &mask);
            hidden_states.push(x.clone());
        }
        let pooled = self.pooler.as_ref().map(|p| p.forward(x));
        BertOutput {
            hidden_states,
            pooled,
        }
    }

    /// The padding mask for this forward: the fused kernel only where no gradient is recorded
    /// (it has no dropout), the additive bias otherwise, with the backend's linear and GELU
    /// kernels under autodiff.
    fn attention_mask(
        &self,
        attention_mask: Tensor<B, 2, Int>,
        dtype: FloatDType,
    ) -> AttentionMask<B> {
        let heads = self
            .encoder
            .layer
            .first()
            .map_or(1, |layer| layer.attention.self_attn.num_heads);
        match self.attention_kernel {
            AttentionKernel::Fused if !B::ad_enabled(&attention_mask.device()) => {
                let kernels = EncoderKernels::<B>::of_backend();
                AttentionMask::Blocked {
                    padding: key_padding_mask(attention_mask, heads, kernels.mask_layout),
                    kernels,
                }
            }
            _ => {
                let kernels =
                    B::ad_enabled(&attention_mask.device()).then(EncoderKernels::<B>::of_backend);
                let padding = kernels
                    .filter(|k| k.training_attention.is_some())
                    .map(|k| key_padding_mask(attention_mask.clone(), heads, k.mask_layout));
                AttentionMask::Bias {
                    bias: attention_mask_bias(attention_mask).cast(dtype),
                    kernels,
                    padding,
                }
            }
        }
    }

    /// The same encoder run by `kernel` where no gradient is recorded.
    pub fn with_attention_kernel(mut self, kernel: AttentionKernel) -> Self {
        self.attention_kernel = kernel;
        self
    }
}

/// The float type a frozen encoder computes in (`f32` everywhere unless asked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The name used on the command line and in config.json.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

/// Casts float parameters, keeping their ids (so optimizer state and records still match).
struct CastWeights(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.0), mapper)
    }
}

/// `[batch, seq]` 1/0 mask to the additive `[batch, 1, 1, seq]` bias of the attention scores.
pub fn attention_mask_bias<B: Backend>(attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 4> {
    let [batch, seq] = attention_mask.dims();
    let padding = attention_mask.equal_elem(0);
    Tensor::<B, 2>::zeros([batch, seq], &padding.device())
        .mask_fill(padding, MASKED_SCORE)
        .reshape([batch, 1, 1, seq])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::TensorData;

    /// Two layers, two heads, no dropout (so that autodiff forwards can be compared exactly).
    fn tiny_config() -> BertConfig {
        BertConfig::from_json(
            std::path::Path::new("tiny/config.json"),
            r#"{"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 32, "vocab_size": 64, "max_position_embeddings": 32,
                "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}"#,
        )
        .unwrap()
    }

    /// Two sequences, the second padded after 5 of its 9 tokens.
    fn padded_input<B: Backend>(device: &B::Device) -> BertInput<B> {
        let ids: Vec<i64> = (0..18).map(|i| 1 + (i * 7) % 60).collect();
        let mask: Vec<i64> = (0..18).map(|i| i64::from(i < 9 || i % 9 < 5)).collect();
        let make = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [2, 9]), device);
        BertInput {
            input_ids: make(ids),
            token_type_ids: make(vec![0; 18]),
            attention_mask: make(mask),
        }
    }

    fn values<B: Backend>(out: BertOutput<B>) -> Vec<f32> {
        out.stacked().into_data().to_vec::<f32>().unwrap()
    }

    /// The choice is not a weight: it must survive what the pipeline does to a model (inner
    /// backend, checkpoint load, dtype cast), or the fused kernel would silently go unused.
    #[test]
    fn the_attention_kernel_survives_valid_load_and_cast() {
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        let trained = Bert::<Autodiff<Flex>>::init(&tiny_config(), false, &device)
            .with_attention_kernel(AttentionKernel::Fused);
        assert_eq!(trained.attention_kernel(), AttentionKernel::Fused);
        let inner = trained.valid();
        assert_eq!(inner.attention_kernel(), AttentionKernel::Fused);
        let loaded = Bert::<Flex>::init(&tiny_config(), false, &device)
            .with_attention_kernel(AttentionKernel::Fused)
            .load_record(inner.clone().into_record());
        assert_eq!(loaded.attention_kernel(), AttentionKernel::Fused);
        let cast = inner.with_float_dtype(FloatDType::BF16);
        assert_eq!(cast.attention_kernel(), AttentionKernel::Fused);
    }

    /// Where a gradient is recorded the fused setting changes nothing (the explicit ops, with
    /// dropout, run); where none is, the fused kernel gives the explicit result on a padded batch.
    #[test]
    fn fused_attention_applies_only_without_gradients_and_matches_the_explicit_ops() {
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        let explicit = Bert::<Autodiff<Flex>>::init(&tiny_config(), false, &device);
        let input = padded_input::<Autodiff<Flex>>(&device);
        // Parameters are initialised lazily on first use: run the model before cloning it, so
        // that both copies hold the same weights.
        let want = values(explicit.forward(input.clone()));
        let fused = explicit
            .clone()
            .with_attention_kernel(AttentionKernel::Fused);
        assert_eq!(want, values(fused.forward(input)));
        let input = padded_input::<Flex>(&device);
        let want = values(explicit.valid().forward(input.clone()));
        let got = values(fused.valid().forward(input));
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-5,
            "fused vs explicit: max abs difference {worst}"
        );
    }

    /// Fine-tuning on Flex runs the linear layers through this project's kernels and their
    /// backward (`bertvision_shaders`' autodiff ops); NdArray has no kernels and runs Burn's ops.
    /// The same weights, input and loss must give the same gradients. ReLU, not GELU: Burn's
    /// default `gelu_backward` (NdArray's, CubeCL's) is the derivative of GELU's tanh
    /// approximation, 2.6e-4 to 6.3e-4 of the largest gradient off here; the GELU kernel's
    /// backward is checked against Flex's exact one in `shaders/tests/cpu_kernels.rs`.
    #[test]
    fn kernel_gradients_under_autodiff_match_burns_ops() {
        use burn::backend::NdArray;
        use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        let mut config = tiny_config();
        config.hidden_act = "relu".to_string();
        let flex = Bert::<Autodiff<Flex>>::init(&config, true, &device);
        // Materialise the lazily initialised weights, then carry them over to NdArray.
        let _ = flex.forward(padded_input(&device));
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = recorder.record(flex.clone().into_record(), ()).unwrap();
        let ndarray_device = Default::default();
        let ndarray = Bert::<Autodiff<NdArray<f32>>>::init(&config, true, &ndarray_device)
            .load_record(recorder.load(bytes, &ndarray_device).unwrap());

        fn gradients<B: burn::tensor::backend::AutodiffBackend + EncoderBackend>(
            model: &Bert<B>,
            device: &B::Device,
        ) -> Vec<Vec<f32>> {
            let out = model.forward(padded_input(device));
            let last = out.last_hidden_state();
            let probe = Tensor::<B, 3>::from_data(
                TensorData::new(
                    (0..last.shape().num_elements())
                        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                        .collect::<Vec<_>>(),
                    last.dims(),
                ),
                device,
            );
            let grads = (last * probe).sum().backward();
            let layer = &model.encoder.layer[0];
            let grad2 = |t: Tensor<B, 2>| t.grad(&grads).unwrap().into_data().to_vec().unwrap();
            let grad1 = |t: Tensor<B, 1>| t.grad(&grads).unwrap().into_data().to_vec().unwrap();
            vec![
                grad2(layer.attention.self_attn.query.weight.val()),
                grad2(layer.intermediate.dense.weight.val()),
                grad1(layer.intermediate.dense.bias.as_ref().unwrap().val()),
                grad2(layer.output.dense.weight.val()),
                grad1(layer.attention.output.dense.bias.as_ref().unwrap().val()),
                grad2(model.embeddings.word_embeddings.weight.val()),
            ]
        }
        let (got, want) = (
            gradients(&flex, &device),
            gradients(&ndarray, &ndarray_device),
        );
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // Both backends in f32 with their own matmul, softmax and LayerNorm: seen up to 5e-5
            // of the largest gradient (a gradient off by 0.1% fails).
            assert!(
                worst <= 1e-4 * scale.max(1.0),
                "gradient {i}: max abs difference {worst} (largest gradient {scale})"
            );
        }
    }

    /// Dropout under autodiff on Flex comes from the parallel mask kernel, seeded from Flex's
    /// generator: the same seed gives the same forward, another seed another one.
    #[test]
    fn kernel_dropout_follows_the_backend_seed() {
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        let mut config = tiny_config();
        config.hidden_dropout_prob = 0.1;
        config.attention_probs_dropout_prob = 0.1;
        let model = Bert::<Autodiff<Flex>>::init(&config, false, &device);
        // Initialise the (lazy) weights before seeding, so that every run draws only dropout.
        let _ = model.forward(padded_input(&device));
        let run = |seed| {
            Autodiff::<Flex>::seed(&device, seed);
            values(model.forward(padded_input(&device)))
        };
        let first = run(7);
        assert!(first == run(7), "the same seed gave another forward");
        assert!(first != run(8), "another seed gave the same forward");
        // Without autodiff there is no dropout, on either path.
        let frozen = model.valid();
        let input = padded_input::<Flex>(&device);
        let explicit = values(frozen.forward(input.clone()));
        let fused = frozen.with_attention_kernel(AttentionKernel::Fused);
        Flex::seed(&device, 9);
        let once = values(fused.forward(input.clone()));
        Flex::seed(&device, 10);
        assert!(
            once == values(fused.forward(input)),
            "dropout in evaluation"
        );
        let worst = explicit
            .iter()
            .zip(&once)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-5,
            "fused vs explicit: max abs difference {worst}"
        );
    }
}
