//! The AdapterPooler head (BERTVision, method.md §2): a Linear(hidden → A) + GELU applied to every
//! token of every hidden-state layer, the layers' adapter outputs concatenated per token, then a
//! linear head. Layout of the per-token features: `[layer 0: a0..aA-1, layer 1: ..., (skip: last
//! layer's hidden state)]`.
//!
//! Heads:
//! * `Span` — per-token Linear(L·A → 2): start and end logits (SQuAD).
//! * `Flatten` — the original GLUE head: every token's features flattened, Linear(T·L·A → C);
//!   position-specific weights, so inputs are always padded to the fixed length T.
//! * `MaskedMean` — mean of the per-token features over real tokens (padding ignored), then
//!   Linear(L·A → C); independent of the padded length.
//!
//! Switches: adapter size A, one shared adapter or one per layer, the skip concatenation of the
//! last layer's hidden state (Gen-1), and the Tenney scalar mix (softmax(w)·γ over layers, before
//! the adapter — implemented with trainable parameters, unlike the original PyTorch port).

use bertvision_shaders::{KernelBackend, adapter_head, to_dtype};
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor};

use crate::bert::EncoderDtype;
use crate::bert::layer::linear_in;

/// How the AdapterPooler's per-token features become the task's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum HeadKind {
    /// SQuAD: start and end logits per token (chosen by the task, not a flag).
    #[cfg_attr(feature = "clap", value(skip))]
    Span,
    /// The original GLUE head: weights per position over the padded sequence.
    Flatten,
    /// Mean over the real tokens, then one linear map (padding-independent).
    MaskedMean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LayerMix {
    /// Every layer goes through the adapter (the paper's best model).
    None,
    /// Tenney et al.'s scalar mix: one mixed layer, softmax(w)·γ.
    Tenney,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterPoolerConfig {
    pub hidden_size: usize,
    /// Hidden-state tensors fed in (embeddings + layers).
    pub num_states: usize,
    pub adapter_size: usize,
    pub kind: HeadKind,
    pub num_outputs: usize,
    /// Fixed sequence length for `Flatten`.
    pub max_len: usize,
    pub shared_adapter: bool,
    pub skip_last_layer: bool,
    pub layer_mix: LayerMix,
}

impl AdapterPoolerConfig {
    /// Layers the adapter sees after the optional mix.
    pub fn adapted_layers(&self) -> usize {
        match self.layer_mix {
            LayerMix::None => self.num_states,
            LayerMix::Tenney => 1,
        }
    }

    pub fn token_features(&self) -> usize {
        self.adapted_layers() * self.adapter_size
            + if self.skip_last_layer {
                self.hidden_size
            } else {
                0
            }
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> AdapterPooler<B> {
        let n_adapters = if self.shared_adapter {
            1
        } else {
            self.adapted_layers()
        };
        let adapter = (0..n_adapters)
            .map(|_| LinearConfig::new(self.hidden_size, self.adapter_size).init(device))
            .collect();
        let head_in = match self.kind {
            HeadKind::Flatten => self.max_len * self.token_features(),
            HeadKind::Span | HeadKind::MaskedMean => self.token_features(),
        };
        let head_out = match self.kind {
            HeadKind::Span => 2,
            _ => self.num_outputs,
        };
        let (mix_weights, mix_gamma) = match self.layer_mix {
            LayerMix::None => (None, None),
            LayerMix::Tenney => (
                Some(
                    Initializer::Normal {
                        mean: 0.0,
                        std: 0.05,
                    }
                    .init([self.num_states], device),
                ),
                Some(Initializer::Ones.init([1], device)),
            ),
        };
        AdapterPooler {
            adapter,
            head: LinearConfig::new(head_in, head_out).init(device),
            mix_weights,
            mix_gamma,
            kind: self.kind,
            skip_last_layer: self.skip_last_layer,
            precision: EncoderDtype::F32,
        }
    }

    /// Trainable parameters, for reporting the head's share of BERT.
    pub fn num_params(&self) -> usize {
        let n_adapters = if self.shared_adapter {
            1
        } else {
            self.adapted_layers()
        };
        let adapters = n_adapters * (self.hidden_size * self.adapter_size + self.adapter_size);
        let head_in = match self.kind {
            HeadKind::Flatten => self.max_len * self.token_features(),
            _ => self.token_features(),
        };
        let head_out = if self.kind == HeadKind::Span {
            2
        } else {
            self.num_outputs
        };
        let mix = match self.layer_mix {
            LayerMix::None => 0,
            LayerMix::Tenney => self.num_states + 1,
        };
        adapters + head_in * head_out + head_out + mix
    }
}

#[derive(Module, Debug)]
pub struct AdapterPooler<B: Backend> {
    /// One shared Linear(hidden → A), or one per layer.
    pub adapter: Vec<Linear<B>>,
    pub head: Linear<B>,
    pub mix_weights: Option<Param<Tensor<B, 1>>>,
    pub mix_gamma: Option<Param<Tensor<B, 1>>>,
    #[module(skip)]
    pub kind: HeadKind,
    #[module(skip)]
    pub skip_last_layer: bool,
    /// Not a weight: the float type of the adapter's matmul where a gradient is recorded
    /// (mixed-precision head training; [`Self::with_precision`]).
    #[module(skip)]
    pub precision: EncoderDtype,
}

/// How the head is computed ([`AdapterPooler::forward_by`]). Both give the same numbers up to
/// the order of sums (tested); they differ in kernels and in what the backward pass keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum HeadPath {
    /// One Linear + GELU per layer, concatenated, then the head. The default: its speed on a GPU
    /// is the one measured.
    #[default]
    Plain,
    /// `bertvision_shaders::adapter_head`: projection, GELU and the head's per-token product in
    /// one CubeCL kernel on the GPU backends; on `--device cpu`, the CPU linear and GELU
    /// kernels with the activations recomputed in the backward (ndarray: the plain-Burn
    /// reference).
    Fused,
}

impl HeadPath {
    pub fn is_plain(&self) -> bool {
        *self == HeadPath::Plain
    }
}

/// What the head returns.
#[derive(Debug, Clone)]
pub enum HeadOutput<B: Backend> {
    /// `[batch, seq]` each.
    Span {
        start: Tensor<B, 2>,
        end: Tensor<B, 2>,
    },
    /// `[batch, outputs]`.
    Logits(Tensor<B, 2>),
}

/// Logit given to padding positions of span outputs, so neither the loss nor decoding sees them.
const PADDING_LOGIT: f32 = -10_000.0;

/// Mean over real tokens: `[batch, seq, width]` → `[batch, width]` (padding ignored).
fn masked_mean<B: Backend>(x: Tensor<B, 3>, attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    pool(mean_weights(attention_mask, x.dtype().into()), x)
}

/// The mean's weights `[batch, 1, seq]`: 1/count on real tokens, 0 on padding.
fn mean_weights<B: Backend>(attention_mask: Tensor<B, 2, Int>, dtype: FloatDType) -> Tensor<B, 3> {
    let [batch, seq] = attention_mask.dims();
    let mask = attention_mask.float().reshape([batch, 1, seq]);
    let count = mask.clone().sum_dim(2).clamp_min(1.0); // [b, 1, 1]
    to_dtype(mask / count, dtype)
}

/// `[batch, 1, seq] · [batch, seq, width]` → `[batch, width]`: one batched product, so the
/// backward is a product too. Written as `(x · mask).sum_dim(1)`, its backward multiplied a
/// broadcast gradient by a broadcast mask element by element through Flex's strided indices, on
/// one thread: 65% of the head step's main-thread CPU samples (minilm-l6, 128 tokens;
/// `results/cpu-2026-12-08b/README.md`).
fn pool<B: Backend>(weights: Tensor<B, 3>, x: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, width] = x.dims();
    weights.matmul(x).reshape([batch, width])
}

impl<B: Backend> HeadOutput<B> {
    /// Span output from per-token `[batch, seq, 2]` logits (start, end).
    fn span_from_logits(logits: Tensor<B, 3>, attention_mask: Tensor<B, 2, Int>) -> Self {
        let [batch, seq, _] = logits.dims();
        let start = logits.clone().narrow(2, 0, 1).reshape([batch, seq]);
        let end = logits.narrow(2, 1, 1).reshape([batch, seq]);
        Self::span_masked(start, end, attention_mask)
    }

    /// Span logits with padding positions pushed to [`PADDING_LOGIT`].
    pub fn span_masked(
        start: Tensor<B, 2>,
        end: Tensor<B, 2>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> Self {
        let padding = attention_mask.equal_elem(0);
        HeadOutput::Span {
            start: start.mask_fill(padding.clone(), PADDING_LOGIT),
            end: end.mask_fill(padding, PADDING_LOGIT),
        }
    }
}

impl<B: KernelBackend> AdapterPooler<B> {
    /// The head's output per token before its bias, `[batch, seq, outputs]`, through the fused
    /// op of `bertvision-shaders` (a CubeCL kernel on GPU backends): the `[batch, seq, layers,
    /// A]` adapter activations are never stored. `None` for the Tenney mix (its mixed layer is
    /// one small matmul anyway).
    fn fused_per_token(&self, hidden_states: &[Tensor<B, 3>]) -> Option<Tensor<B, 3>> {
        if self.mix_weights.is_some() {
            return None;
        }
        let [batch, seq, hidden] = hidden_states.first()?.dims();
        let layers = hidden_states.len();
        // Parameters are read in the plain path's order (each adapter's weight then bias, then
        // the head): Burn initialises a parameter lazily, on its first read (even of its
        // shape), so the order of first reads decides the random draws, and both paths must
        // start from the same head.
        let (adapter_weights, adapter_biases): (Vec<_>, Vec<_>) = self
            .adapter
            .iter()
            .map(|l| (l.weight.val(), l.bias.as_ref().map(|b| b.val())))
            .unzip();
        let head_weight = self.head.weight.val();
        let [_, a] = adapter_weights[0].dims();
        let [head_in, outputs] = head_weight.dims();
        let per_token = layers * a + if self.skip_last_layer { hidden } else { 0 };
        let positions = match self.kind {
            HeadKind::Flatten => seq,
            HeadKind::Span | HeadKind::MaskedMean => 1,
        };
        if head_in != positions * per_token {
            return None; // a Flatten head fed another length: the plain path reports it
        }
        let features =
            Tensor::stack::<4>(hidden_states.to_vec(), 2).reshape([batch * seq, layers, hidden]);
        let adapter_weight = Tensor::stack::<3>(adapter_weights, 0);
        let adapter_bias = Tensor::stack::<2>(
            adapter_biases
                .into_iter()
                .map(|b| b.unwrap_or_else(|| Tensor::zeros([a], &features.device())))
                .collect(),
            0,
        );
        let head_weight = head_weight.reshape([positions, per_token, outputs]);
        let mut out = adapter_head(
            features,
            adapter_weight,
            adapter_bias,
            head_weight.clone().narrow(1, 0, layers * a),
        )
        .expect("shapes derived from the head's own config"); // [batch·seq, outputs]
        if self.skip_last_layer {
            // The skip block: the last hidden state times its rows of the head weight.
            let last = hidden_states[layers - 1].clone();
            let skip_weight = head_weight.narrow(1, layers * a, hidden); // [P, hidden, outputs]
            out = out
                + if positions == 1 {
                    last.reshape([batch * seq, hidden])
                        .matmul(skip_weight.reshape([hidden, outputs]))
                } else {
                    last.swap_dims(0, 1) // [seq, batch, hidden]
                        .matmul(skip_weight)
                        .swap_dims(0, 1)
                        .reshape([batch * seq, outputs])
                };
        }
        Some(out.reshape([batch, seq, outputs]))
    }

    /// `attention_mask` is `[batch, seq]`, 1 for real tokens; only `MaskedMean` uses it.
    pub fn forward(
        &self,
        hidden_states: &[Tensor<B, 3>],
        attention_mask: Tensor<B, 2, Int>,
    ) -> HeadOutput<B> {
        self.forward_by(hidden_states, attention_mask, HeadPath::Plain)
    }

    /// [`Self::forward`] along a chosen path.
    pub fn forward_by(
        &self,
        hidden_states: &[Tensor<B, 3>],
        attention_mask: Tensor<B, 2, Int>,
        path: HeadPath,
    ) -> HeadOutput<B> {
        if path == HeadPath::Fused
            && let Some(per_token) = self.fused_per_token(hidden_states)
        {
            return self.pool_per_token(per_token, attention_mask);
        }
        let parts = self.token_feature_parts(hidden_states);
        match self.kind {
            HeadKind::Span => {
                let features = Tensor::cat(parts, 2);
                HeadOutput::span_from_logits(self.head.forward(features), attention_mask)
            }
            HeadKind::Flatten => {
                let features = Tensor::cat(parts, 2);
                let [batch, seq, width] = features.dims();
                HeadOutput::Logits(self.head.forward(features.reshape([batch, seq * width])))
            }
            HeadKind::MaskedMean => {
                // Pooling each layer's part and concatenating the pooled rows equals pooling the
                // concatenated features, without the `[batch, seq, L·A]` copy forward and the
                // strided slices of its gradient backward.
                let weights = mean_weights(attention_mask, parts[0].dtype().into());
                let pooled = parts.into_iter().map(|p| pool(weights.clone(), p));
                HeadOutput::Logits(self.head.forward(Tensor::cat(pooled.collect(), 1)))
            }
        }
    }

    /// Pooling of the fused per-token output: the head is linear, so pooling its per-token
    /// outputs equals applying it to the pooled features.
    fn pool_per_token(
        &self,
        per_token: Tensor<B, 3>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> HeadOutput<B> {
        let [batch, seq, outputs] = per_token.dims();
        let bias = |t: Tensor<B, 2>| match &self.head.bias {
            Some(b) => t + b.val().reshape([1, outputs]),
            None => t,
        };
        match self.kind {
            HeadKind::Span => {
                let logits = bias(per_token.reshape([batch * seq, outputs]));
                HeadOutput::span_from_logits(logits.reshape([batch, seq, outputs]), attention_mask)
            }
            HeadKind::Flatten => {
                HeadOutput::Logits(bias(per_token.sum_dim(1).reshape([batch, outputs])))
            }
            HeadKind::MaskedMean => {
                HeadOutput::Logits(bias(masked_mean(per_token, attention_mask)))
            }
        }
    }

    /// Per-token features `[batch, seq, L·A (+hidden)]` from the hidden states (each `[batch, seq, hidden]`).
    /// The adapter and its GELU are the backend's ops, as in the encoder: on the CPU a 2-D
    /// gemm over every token and a vectorised GELU, each with its backward (with Burn's ops,
    /// 13.5% of a head step's CPU samples were scalar `erff`; `results/cpu-2026-12-07/`).
    pub fn token_features(&self, hidden_states: &[Tensor<B, 3>]) -> Tensor<B, 3> {
        Tensor::cat(self.token_feature_parts(hidden_states), 2)
    }

    /// [`Self::token_features`] before concatenation: one `[batch, seq, A]` part per adapted
    /// layer (then the skip connection's last hidden state).
    fn token_feature_parts(&self, hidden_states: &[Tensor<B, 3>]) -> Vec<Tensor<B, 3>> {
        let mixed;
        let layers: &[Tensor<B, 3>] = match (&self.mix_weights, &self.mix_gamma) {
            (Some(w), Some(gamma)) => {
                let weights = softmax(w.val(), 0);
                let stacked: Tensor<B, 4> = Tensor::stack(hidden_states.to_vec(), 0); // [L, b, s, h]
                let l = hidden_states.len();
                let sum = (stacked * weights.reshape([l, 1, 1, 1]))
                    .sum_dim(0)
                    .squeeze_dim::<3>(0);
                mixed = [sum * gamma.val().reshape([1, 1, 1])];
                &mixed
            }
            _ => hidden_states,
        };
        let mut parts: Vec<Tensor<B, 3>> = layers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let adapter = &self.adapter[i.min(self.adapter.len() - 1)];
                let projected = linear_in(adapter, h.clone(), self.mixed(h));
                B::encoder_gelu(to_dtype(projected, h.dtype().into()))
            })
            .collect();
        if self.skip_last_layer {
            parts.push(hidden_states.last().expect("hidden states").clone());
        }
        parts
    }
}

impl<B: Backend> AdapterPooler<B> {
    /// The same head trained in mixed precision: under autodiff the adapter's matmul runs in
    /// `precision` (bf16/f16; its input, weight and bias cast down, its output back), GELU,
    /// pooling, the head's own small matmul and the loss in f32. Where no gradient is recorded
    /// (evaluation, prediction) nothing changes; the fused head path keeps its inputs' type.
    pub fn with_precision(mut self, precision: EncoderDtype) -> Self {
        self.precision = precision;
        self
    }

    /// The type the adapter multiplies in when a gradient is recorded and the head is in mixed
    /// precision; `None` elsewhere (the hidden states' own type).
    fn mixed(&self, hidden: &Tensor<B, 3>) -> Option<FloatDType> {
        let training = B::ad_enabled(&hidden.device());
        (training && !self.precision.is_f32()).then(|| self.precision.float_dtype())
    }

    /// The Tenney mix's layer weights (softmax), when the head has them.
    pub fn layer_weights(&self) -> Option<Tensor<B, 1>> {
        self.mix_weights.as_ref().map(|w| softmax(w.val(), 0))
    }

    /// How much each hidden-state layer (embeddings first) weighs in the head, summing to 1:
    /// the Tenney mix's softmax weights when there is a mix, else each layer's share of the
    /// squared weights of the head's input block that reads that layer's adapter outputs
    /// (summed over positions for `Flatten`; the skip connection's block is left out).
    pub fn layer_share(&self, config: &AdapterPoolerConfig) -> Vec<f64> {
        let to_vec = |t: Tensor<B, 1>| -> Vec<f64> {
            t.into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .expect("f64 data")
        };
        if let Some(w) = self.layer_weights() {
            return to_vec(w);
        }
        let layers = config.adapted_layers();
        let a = config.adapter_size;
        let per_token = config.token_features();
        // Rows of the head's weight: [positions × token features] for Flatten, else token features.
        let squares = to_vec(
            self.head
                .weight
                .val()
                .powi_scalar(2)
                .sum_dim(1)
                .flatten(0, 1),
        );
        let mut share = vec![0.0; layers];
        for (row, v) in squares.iter().enumerate() {
            let col = row % per_token;
            if col < layers * a {
                share[col / a] += v;
            }
        }
        let total: f64 = share.iter().sum();
        if total > 0.0 {
            share.iter_mut().for_each(|v| *v /= total);
        }
        share
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    fn config(kind: HeadKind) -> AdapterPoolerConfig {
        AdapterPoolerConfig {
            hidden_size: 8,
            num_states: 3,
            adapter_size: 4,
            kind,
            num_outputs: 2,
            max_len: 5,
            shared_adapter: true,
            skip_last_layer: false,
            layer_mix: LayerMix::None,
        }
    }

    fn inputs(seq: usize) -> (Vec<Tensor<B, 3>>, Tensor<B, 2, Int>) {
        let device = Default::default();
        let states = (0..3)
            .map(|i| {
                Tensor::<B, 3>::random(
                    [2, seq, 8],
                    burn::tensor::Distribution::Normal(i as f64, 1.0),
                    &device,
                )
            })
            .collect();
        let mask = Tensor::<B, 2, Int>::ones([2, seq], &device);
        (states, mask)
    }

    /// Mixed precision (`with_precision`): under autodiff the adapter multiplies in bf16/f16
    /// (the adapter weight's gradient moves off f32's by about their rounding and stays f32);
    /// where no gradient is recorded nothing changes. Measured: bf16 4.2e-3, f16 5.8e-4 of the
    /// largest gradient; the bounds are 1e-2 and 2e-3.
    #[test]
    fn mixed_precision_multiplies_the_adapter_in_half_types() {
        use burn::backend::{Autodiff, Flex};
        use burn::module::AutodiffModule;
        type A = Autodiff<Flex>;
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        <A as Backend>::seed(&device, 4);
        let head = config(HeadKind::MaskedMean).init::<A>(&device);
        crate::train::initialize_now(&head);
        let states: Vec<Tensor<A, 3>> = (0..3)
            .map(|i| {
                let values = (0..2 * 6 * 8).map(|j| ((j * (i + 3)) % 11) as f32 / 5.0 - 1.0);
                Tensor::from_data(TensorData::new(values.collect(), [2, 6, 8]), &device)
            })
            .collect();
        let mask = Tensor::<A, 2, Int>::ones([2, 6], &device);
        let gradient = |head: &AdapterPooler<A>| -> Vec<f32> {
            let HeadOutput::Logits(logits) = head.forward(&states, mask.clone()) else {
                unreachable!("a masked-mean head gives logits")
            };
            let grads = logits.sin().sum().backward();
            let weight = head.adapter[0].weight.val();
            weight.grad(&grads).unwrap().into_data().to_vec().unwrap()
        };
        let want = gradient(&head);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let frozen = |head: AdapterPooler<A>| match head.valid().forward(
            &states.iter().map(|s| s.clone().inner()).collect::<Vec<_>>(),
            mask.clone().inner(),
        ) {
            HeadOutput::Logits(l) => l.into_data().to_vec::<f32>().unwrap(),
            HeadOutput::Span { .. } => unreachable!("a masked-mean head gives logits"),
        };
        for (precision, bound) in [(EncoderDtype::Bf16, 1e-2), (EncoderDtype::F16, 2e-3)] {
            let mixed = head.clone().with_precision(precision);
            let worst = crate::max_abs_diff(&gradient(&mixed), &want);
            println!(
                "{}: {:.2e} of the largest gradient",
                precision.name(),
                worst / scale
            );
            assert!(
                worst > 0.0 && worst <= bound * scale,
                "{}: {worst}",
                precision.name()
            );
            assert_eq!(frozen(mixed), frozen(head.clone()), "{}", precision.name());
        }
    }

    #[test]
    fn layer_share_reads_each_layers_block_of_the_head() {
        let device = Default::default();
        for kind in [HeadKind::Span, HeadKind::Flatten, HeadKind::MaskedMean] {
            let c = config(kind);
            let mut head = c.init::<B>(&device);
            // Zero the head rows that read layer 1: features 4..8 of every position.
            let [rows, cols] = head.head.weight.dims();
            let keep: Vec<f32> = (0..rows)
                .flat_map(|r| {
                    let v = if (4..8).contains(&(r % 12)) { 0.0 } else { 1.0 };
                    std::iter::repeat_n(v, cols)
                })
                .collect();
            let keep = Tensor::<B, 1>::from_floats(keep.as_slice(), &device).reshape([rows, cols]);
            head.head.weight = Param::from_tensor(head.head.weight.val() * keep);
            let share = head.layer_share(&c);
            assert_eq!(share.len(), 3, "{kind:?}");
            assert!(
                share[1] == 0.0 && share[0] > 0.1 && share[2] > 0.1,
                "{kind:?}: {share:?}"
            );
            assert!((share.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let mut c = config(HeadKind::Span);
        c.layer_mix = LayerMix::Tenney;
        let share = c.init::<B>(&device).layer_share(&c);
        assert_eq!(share.len(), 3);
        assert!((share.iter().sum::<f64>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn shapes_and_parameter_counts() {
        let device = Default::default();
        for (kind, expected) in [
            // adapter 8*4+4 = 36; span head 12*2+2 = 26
            (HeadKind::Span, 36 + 26),
            // flatten head 5*12*2+2 = 122
            (HeadKind::Flatten, 36 + 122),
            (HeadKind::MaskedMean, 36 + 26),
        ] {
            let c = config(kind);
            let head = c.init::<B>(&device);
            assert_eq!(c.num_params(), expected);
            assert_eq!(head.num_params(), expected, "{kind:?}");
            let (states, mask) = inputs(5);
            match head.forward(&states, mask) {
                HeadOutput::Span { start, end } => {
                    assert_eq!(start.dims(), [2, 5]);
                    assert_eq!(end.dims(), [2, 5]);
                }
                HeadOutput::Logits(l) => assert_eq!(l.dims(), [2, 2]),
            }
        }
        let mut c = config(HeadKind::Span);
        c.shared_adapter = false;
        c.skip_last_layer = true;
        c.layer_mix = LayerMix::None;
        assert_eq!(c.init::<B>(&device).num_params(), c.num_params());
        c.layer_mix = LayerMix::Tenney;
        assert_eq!(c.init::<B>(&device).num_params(), c.num_params());
    }

    #[test]
    fn masked_mean_ignores_padding() {
        let device = Default::default();
        let head = config(HeadKind::MaskedMean).init::<B>(&device);
        let (states, _) = inputs(3);
        let mask = Tensor::<B, 2, Int>::from_data([[1, 1, 1], [1, 1, 1]], &device);
        let HeadOutput::Logits(short) = head.forward(&states, mask) else {
            unreachable!()
        };
        // Same tokens plus two padding positions full of garbage.
        let padded: Vec<_> = states
            .iter()
            .map(|s| {
                Tensor::cat(
                    vec![s.clone(), Tensor::<B, 3>::ones([2, 2, 8], &device) * 100.0],
                    1,
                )
            })
            .collect();
        let mask = Tensor::<B, 2, Int>::from_data([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]], &device);
        let HeadOutput::Logits(long) = head.forward(&padded, mask) else {
            unreachable!()
        };
        let diff = (short - long).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    /// The fused path (here the shaders crate's reference, with its own backward) against the
    /// plain one, for every head kind and switch: outputs and every parameter's gradient.
    /// On Flex: NdArray (and Burn's CubeCL backends) differentiate GELU with the tanh
    /// approximation's derivative (Burn 0.21's default `gelu_backward`): 2.5e-4 to 7.4e-4 off
    /// the exact one that Flex and the fused op use, in this test's cases.
    #[test]
    fn fused_path_matches_the_plain_path_with_gradients() {
        type AD = burn::backend::Autodiff<burn::backend::Flex>;
        let _rng = crate::lock_flex_rng();
        let device = Default::default();
        let flat =
            |t: Tensor<AD, 2>| -> Vec<f32> { t.inner().into_data().to_vec::<f32>().unwrap() };
        for kind in [HeadKind::Span, HeadKind::Flatten, HeadKind::MaskedMean] {
            for (shared, skip) in [(true, false), (false, false), (true, true), (false, true)] {
                let mut c = config(kind);
                c.shared_adapter = shared;
                c.skip_last_layer = skip;
                let states: Vec<Tensor<AD, 3>> = (0..3)
                    .map(|i| {
                        let normal = burn::tensor::Distribution::Normal(i as f64, 1.0);
                        Tensor::random([2, 5, 8], normal, &device)
                    })
                    .collect();
                let mask =
                    Tensor::<AD, 2, Int>::from_data([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], &device);
                // A fresh head from the same seed per path: parameters are drawn on first read,
                // so this also checks that both paths read them in the same order.
                let run = |path: HeadPath| {
                    <AD as Backend>::seed(&device, 7);
                    let head = c.init::<AD>(&device);
                    let out = match head.forward_by(&states, mask.clone(), path) {
                        HeadOutput::Span { start, end } => Tensor::cat(vec![start, end], 1),
                        HeadOutput::Logits(l) => l,
                    };
                    let [r, k] = out.dims();
                    let weights = Tensor::<AD, 1, Int>::arange(0..(r * k) as i64, &device)
                        .float()
                        .reshape([r, k])
                        .sin();
                    let grads = (out.clone() * weights).sum().backward();
                    let mut parts = vec![flat(out)];
                    for linear in head.adapter.iter().chain([&head.head]) {
                        let w = linear.weight.val().grad(&grads).expect("weight grad");
                        parts.push(w.into_data().to_vec::<f32>().unwrap());
                        let b = linear
                            .bias
                            .as_ref()
                            .unwrap()
                            .val()
                            .grad(&grads)
                            .expect("bias grad");
                        parts.push(b.into_data().to_vec::<f32>().unwrap());
                    }
                    parts
                };
                let (fused, plain) = (run(HeadPath::Fused), run(HeadPath::Plain));
                for (part, (f, p)) in fused.iter().zip(&plain).enumerate() {
                    let scale = p.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    let diff = f
                        .iter()
                        .zip(p)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        diff <= 1e-5 * scale,
                        "{kind:?} shared {shared} skip {skip} part {part}: {diff} (scale {scale})"
                    );
                }
            }
        }
    }
}
