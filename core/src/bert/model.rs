//! The BERT encoder's module tree, written layer by layer so that every layer's output is
//! available (the layers' forward passes are in [`super::layer`]).
//!
//! Field names follow Hugging Face's parameter names (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self_attn.query`, ...), so a checkpoint maps onto this tree with
//! three renames only (see [`super::weights`]).

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::tanh;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor};

use bertvision_formats::bert_config::{Activation, BertConfig};

use super::options::{EncoderDtype, EncoderKernels};

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

impl<B: bertvision_shaders::KernelBackend> BertEmbeddings<B> {
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
        super::layer::train_dropout(&self.dropout, self.layer_norm.forward(x))
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

/// `dense` + dropout, then LayerNorm of (that + residual).
#[derive(Module, Debug)]
pub struct BertDenseNorm<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
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

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub intermediate: BertIntermediate<B>,
    pub output: BertDenseNorm<B>,
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
    /// Not a weight: whose ops the encoder runs where no gradient is recorded.
    #[module(skip)]
    encoder_kernels: EncoderKernels,
    /// Not a weight: the float type of the matmuls where a gradient is recorded (mixed-precision
    /// fine-tuning; the weights stay in their own type).
    #[module(skip)]
    precision: EncoderDtype,
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
            encoder_kernels: EncoderKernels::Burn,
            precision: EncoderDtype::F32,
        }
    }

    /// The same encoder with every weight cast to `dtype`: its forward then runs, and returns
    /// hidden states, in that dtype. Meant for a frozen encoder on a GPU (bf16 extraction);
    /// Burn has no autocast, so LayerNorm and softmax run in `dtype` too.
    pub fn with_float_dtype(self, dtype: FloatDType) -> Self {
        self.map(&mut CastWeights(dtype))
    }

    /// Whose ops the encoder runs where no gradient is recorded.
    pub fn encoder_kernels(&self) -> EncoderKernels {
        self.encoder_kernels
    }

    /// The same encoder run by `kernels` where no gradient is recorded.
    pub fn with_encoder_kernels(mut self, kernels: EncoderKernels) -> Self {
        self.encoder_kernels = kernels;
        self
    }

    /// The float type of the matmuls where a gradient is recorded.
    pub fn precision(&self) -> EncoderDtype {
        self.precision
    }

    /// The same encoder fine-tuned in mixed precision: under autodiff its linear layers and
    /// attention multiply in `precision` (bf16/f16) while its weights, LayerNorm, GELU, softmax
    /// and residual sums stay f32 (`EncoderPass::Training`). Where no gradient is recorded it
    /// changes nothing (the frozen encoder's type is `with_float_dtype`'s).
    pub fn with_precision(mut self, precision: EncoderDtype) -> Self {
        self.precision = precision;
        self
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

/// Casts float parameters, keeping their ids (so optimizer state and records still match).
struct CastWeights(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.0), mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::max_abs_diff;
    use bertvision_shaders::KernelBackend;
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

    /// Gradients of a fixed probe of the last hidden state at six parameters: three weights and
    /// two biases of layer 0 and the word embeddings, in f32.
    fn gradients<B: burn::tensor::backend::AutodiffBackend + KernelBackend>(
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

    /// The choice is not a weight: it must survive what the pipeline does to a model (inner
    /// backend, checkpoint load, dtype cast), or the native kernels would silently go unused.
    #[test]
    fn the_encoder_kernels_survive_valid_load_and_cast() {
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        let trained = Bert::<Autodiff<Flex>>::init(&tiny_config(), false, &device)
            .with_encoder_kernels(EncoderKernels::Native);
        assert_eq!(trained.encoder_kernels(), EncoderKernels::Native);
        let inner = trained.valid();
        assert_eq!(inner.encoder_kernels(), EncoderKernels::Native);
        let loaded = Bert::<Flex>::init(&tiny_config(), false, &device)
            .with_encoder_kernels(EncoderKernels::Native)
            .load_record(inner.clone().into_record());
        assert_eq!(loaded.encoder_kernels(), EncoderKernels::Native);
        let cast = inner.with_float_dtype(FloatDType::BF16);
        assert_eq!(cast.encoder_kernels(), EncoderKernels::Native);
    }

    /// Where a gradient is recorded the setting changes nothing (the backend's training ops run
    /// either way); where none is, the native kernels give Burn's result on a padded batch.
    #[test]
    fn native_kernels_apply_only_without_gradients_and_match_burns_ops() {
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        let burn_ops = Bert::<Autodiff<Flex>>::init(&tiny_config(), false, &device);
        let input = padded_input::<Autodiff<Flex>>(&device);
        // Parameters are initialised lazily on first use: run the model before cloning it, so
        // that both copies hold the same weights.
        let want = values(burn_ops.forward(input.clone()));
        let native = burn_ops
            .clone()
            .with_encoder_kernels(EncoderKernels::Native);
        assert_eq!(want, values(native.forward(input)));
        let input = padded_input::<Flex>(&device);
        let want = values(burn_ops.valid().forward(input.clone()));
        let got = values(native.valid().forward(input));
        let worst = max_abs_diff(&want, &got);
        assert!(
            worst < 1e-5,
            "native kernels vs Burn's ops: max abs difference {worst}"
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
        // Fixed weights: how far the two backends' f32 roundings drift apart depends on them
        // (unseeded, the weights came from whatever Flex's generator held, and a CI run drew
        // ones 1.1e-4 off, above the old bound of 1e-4).
        <Autodiff<Flex> as Backend>::seed(&device, 1);
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

        let (got, want) = (
            gradients(&flex, &device),
            gradients(&ndarray, &ndarray_device),
        );
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            let worst = max_abs_diff(got, want);
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // Both backends in f32 with their own matmul, softmax and LayerNorm. Over the seeds
            // 1 to 16 the worst absolute difference (the query weight's gradient, whose largest
            // entry was 0.25 to 0.99) was 4.3e-5 to 2.9e-4 (seed 1: 7.1e-5), so the bound is
            // 5e-4, scaled by the largest gradient where that exceeds 1.
            assert!(
                worst <= 5e-4 * scale.max(1.0),
                "gradient {i}: max abs difference {worst} (largest gradient {scale})"
            );
        }
    }

    /// Mixed precision (`with_precision`): under autodiff the matmuls run in bf16/f16 (the
    /// results move off f32's, by about their rounding), the hidden states and the weights'
    /// gradients stay f32, and where no gradient is recorded nothing changes. Measured (seed 1):
    /// bf16 6.3e-3 off in the hidden states and 6.6e-3 of the largest gradient, f16 8.1e-4 and
    /// 1.1e-3; the bounds are about three times those.
    #[test]
    fn mixed_precision_multiplies_in_half_types_and_keeps_f32_gradients() {
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        <Autodiff<Flex> as Backend>::seed(&device, 1);
        let full = Bert::<Autodiff<Flex>>::init(&tiny_config(), false, &device);
        let want_states = values(full.forward(padded_input(&device)));
        let want = gradients(&full, &device);
        let frozen = values(full.valid().forward(padded_input(&device)));
        for (precision, bound) in [(EncoderDtype::Bf16, 2e-2), (EncoderDtype::F16, 3e-3)] {
            let mixed = full.clone().with_precision(precision);
            let out = mixed.forward(padded_input(&device));
            assert_eq!(out.last_hidden_state().dtype(), burn::tensor::DType::F32);
            let states = max_abs_diff(&values(out), &want_states);
            // `gradients` reads f32 values: a gradient in another type would fail it.
            let got = gradients(&mixed, &device);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| max_abs_diff(g, w) / w.iter().fold(1e-3f32, |m, v| m.max(v.abs())))
                .fold(0.0f32, f32::max);
            println!(
                "{}: hidden states {states:.2e}, gradients {worst:.2e} of the largest",
                precision.name()
            );
            assert!(
                states > 0.0 && worst > 0.0,
                "{}: bit-equal to f32",
                precision.name()
            );
            assert!(
                states < bound * 4.0 && worst < bound,
                "{}: {states} / {worst}",
                precision.name()
            );
            let unchanged = values(mixed.valid().forward(padded_input(&device)));
            assert_eq!(
                unchanged,
                frozen,
                "{}: changed a frozen forward",
                precision.name()
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
        let burn_ops = values(frozen.forward(input.clone()));
        let native = frozen.with_encoder_kernels(EncoderKernels::Native);
        Flex::seed(&device, 9);
        let once = values(native.forward(input.clone()));
        Flex::seed(&device, 10);
        assert!(
            once == values(native.forward(input)),
            "dropout in evaluation"
        );
        let worst = max_abs_diff(&burn_ops, &once);
        assert!(
            worst < 1e-5,
            "native kernels vs Burn's ops: max abs difference {worst}"
        );
    }
}
