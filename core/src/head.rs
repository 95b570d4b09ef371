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

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    Span,
    Flatten,
    MaskedMean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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

impl<B: Backend> HeadOutput<B> {
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

impl<B: Backend> AdapterPooler<B> {
    /// Per-token features `[batch, seq, L·A (+hidden)]` from the hidden states (each `[batch, seq, hidden]`).
    pub fn token_features(&self, hidden_states: &[Tensor<B, 3>]) -> Tensor<B, 3> {
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
            .map(|(i, h)| gelu(self.adapter[i.min(self.adapter.len() - 1)].forward(h.clone())))
            .collect();
        if self.skip_last_layer {
            parts.push(hidden_states.last().expect("hidden states").clone());
        }
        Tensor::cat(parts, 2)
    }

    /// `attention_mask` is `[batch, seq]`, 1 for real tokens; only `MaskedMean` uses it.
    pub fn forward(
        &self,
        hidden_states: &[Tensor<B, 3>],
        attention_mask: Tensor<B, 2, Int>,
    ) -> HeadOutput<B> {
        let features = self.token_features(hidden_states);
        let [batch, seq, width] = features.dims();
        match self.kind {
            HeadKind::Span => {
                let logits = self.head.forward(features); // [b, s, 2]
                let start = logits.clone().narrow(2, 0, 1).reshape([batch, seq]);
                let end = logits.narrow(2, 1, 1).reshape([batch, seq]);
                HeadOutput::span_masked(start, end, attention_mask)
            }
            HeadKind::Flatten => {
                HeadOutput::Logits(self.head.forward(features.reshape([batch, seq * width])))
            }
            HeadKind::MaskedMean => {
                let mask = attention_mask.float().reshape([batch, seq, 1]);
                let count = mask.clone().sum_dim(1).clamp_min(1.0); // [b, 1, 1]
                let pooled = (features * mask)
                    .sum_dim(1)
                    .div(count)
                    .reshape([batch, width]);
                HeadOutput::Logits(self.head.forward(pooled))
            }
        }
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
}
