//! Hidden states of a frozen checkpoint kept in memory (`--cache-gib`), so that every head
//! epoch after the first, and every further head on the same checkpoint (`search`'s trials),
//! reads them instead of running the encoder again; BERT's own outputs on the evaluation
//! splits are kept too. Without a cache (or when a split's states exceed its budget) the heads
//! read streamed states, as before; the two differ only by float rounding (states computed in
//! other batches).
//!
//! Each example keeps the positions the head reads: its own tokens (padding is masked for
//! every head but `Flatten`), or all `max_len` positions for `Flatten`, whose weights see the
//! padding too. A batch is rebuilt by zero-padding to the batch's length.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::batch::{Padding, make_batch};
use super::data::Sample;
use super::evaluate::EvalOutputs;
use super::progress::Progress;
use crate::bert::{Bert, EncoderDtype};
use crate::error::Result;

/// What a cached entry was computed from: the checkpoint file, the encoder's float type, the
/// samples (their count and identity) and whether they were padded to a fixed length.
#[derive(Debug, Clone, PartialEq)]
pub struct StatesKey {
    pub checkpoint: PathBuf,
    pub dtype: EncoderDtype,
    pub split: String,
    pub fixed: Option<usize>,
    pub samples: (usize, u64),
}

impl StatesKey {
    /// The key of `samples` (split `split`) through the checkpoint `checkpoint`.
    pub fn new(
        checkpoint: &std::path::Path,
        dtype: EncoderDtype,
        split: &str,
        samples: &[Sample],
        fixed: Option<usize>,
    ) -> Self {
        StatesKey {
            checkpoint: checkpoint.to_path_buf(),
            dtype,
            split: split.to_string(),
            fixed,
            samples: (samples.len(), super::sample::dataset_key(samples)),
        }
    }
}

/// Every hidden state of a list of samples, per sample `[states, len, hidden]`.
pub struct SplitStates {
    per_sample: Vec<(usize, Vec<f32>)>,
    num_states: usize,
    hidden: usize,
}

impl SplitStates {
    /// The states of the samples `indices` as `num_states` tensors `[batch, seq, hidden]`,
    /// zero past each sample's kept positions.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        seq: usize,
        device: &B::Device,
    ) -> Vec<Tensor<B, 3>> {
        let (h, n) = (self.hidden, indices.len());
        (0..self.num_states)
            .map(|layer| {
                let mut out = vec![0.0f32; n * seq * h];
                for (row, &i) in indices.iter().enumerate() {
                    let (len, values) = &self.per_sample[i];
                    let keep = (*len).min(seq);
                    let from = &values[layer * len * h..][..keep * h];
                    out[row * seq * h..][..keep * h].copy_from_slice(from);
                }
                Tensor::from_data(TensorData::new(out, [n, seq, h]), device)
            })
            .collect()
    }
}

enum Entry {
    States(Rc<SplitStates>),
    Outputs(Rc<EvalOutputs>),
}

/// The cache: entries kept until their bytes would pass the budget, the oldest dropped first.
pub struct HiddenCache {
    budget: usize,
    entries: RefCell<Vec<(StatesKey, Entry, usize)>>,
}

impl HiddenCache {
    pub fn new(budget_gib: f64) -> Self {
        HiddenCache {
            budget: (budget_gib.max(0.0) * (1u64 << 30) as f64) as usize,
            entries: RefCell::new(Vec::new()),
        }
    }

    /// Makes room for `bytes`, dropping the oldest entries; false when they exceed the budget.
    fn make_room(&self, bytes: usize) -> bool {
        if bytes > self.budget {
            return false;
        }
        let mut entries = self.entries.borrow_mut();
        while entries.iter().map(|e| e.2).sum::<usize>() + bytes > self.budget {
            entries.remove(0);
        }
        true
    }

    fn find<T>(&self, key: &StatesKey, pick: impl Fn(&Entry) -> Option<T>) -> Option<T> {
        let entries = self.entries.borrow();
        entries
            .iter()
            .find(|(k, ..)| k == key)
            .and_then(|e| pick(&e.1))
    }

    /// The states of `samples` through `encoder`, computed on first use; `None` when they
    /// would exceed the budget (the caller streams them).
    #[allow(clippy::too_many_arguments)]
    pub fn states<B: crate::KernelBackend>(
        &self,
        key: &StatesKey,
        encoder: &Bert<B>,
        samples: &[Sample],
        padding: Padding,
        batch_size: usize,
        device: &B::Device,
        progress: &mut dyn Progress,
    ) -> Option<Rc<SplitStates>> {
        let pick = |e: &Entry| match e {
            Entry::States(s) => Some(s.clone()),
            Entry::Outputs(_) => None,
        };
        if let Some(found) = self.find(key, pick) {
            return Some(found);
        }
        let num_states = encoder.encoder.layer.len() + 1;
        let hidden = encoder.embeddings.word_embeddings.weight.dims()[1];
        let kept = |s: &Sample| padding.fixed.unwrap_or(s.encoded.len());
        let bytes = samples.iter().map(kept).sum::<usize>() * num_states * hidden * 4;
        if !self.make_room(bytes) {
            progress.log(&format!(
                "{}: hidden states of {:.2} GiB exceed --cache-gib; streaming them",
                key.split,
                bytes as f64 / (1u64 << 30) as f64
            ));
            return None;
        }
        let label = format!("hidden states to memory ({})", key.split);
        progress.start(&label, samples.len() as u64, "examples");
        let mut per_sample = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(batch_size.max(1)) {
            let refs: Vec<&Sample> = chunk.iter().collect();
            let (input, _) = make_batch::<B>(&refs, padding, device);
            let states = encoder.forward(input).hidden_states_f32();
            let [_, seq, _] = states[0].dims();
            let layers: Vec<Vec<f32>> = states
                .into_iter()
                .map(|t| t.into_data().to_vec::<f32>().expect("f32 states"))
                .collect();
            for (row, sample) in chunk.iter().enumerate() {
                let len = kept(sample).min(seq);
                let mut values = Vec::with_capacity(num_states * len * hidden);
                for layer in &layers {
                    values.extend_from_slice(&layer[row * seq * hidden..][..len * hidden]);
                }
                per_sample.push((len, values));
            }
            progress.inc(chunk.len() as u64);
        }
        progress.finish();
        let states = Rc::new(SplitStates {
            per_sample,
            num_states,
            hidden,
        });
        let entry = (key.clone(), Entry::States(states.clone()), bytes);
        self.entries.borrow_mut().push(entry);
        Some(states)
    }

    /// A model's outputs on a split, computed by `compute` on first use.
    pub fn outputs(
        &self,
        key: &StatesKey,
        compute: impl FnOnce() -> Result<EvalOutputs>,
    ) -> Result<EvalOutputs> {
        let pick = |e: &Entry| match e {
            Entry::Outputs(o) => Some(o.clone()),
            Entry::States(_) => None,
        };
        if let Some(found) = self.find(key, pick) {
            return Ok((*found).clone());
        }
        let outputs = compute()?;
        let bytes = outputs_bytes(&outputs);
        if self.make_room(bytes) {
            let entry = (key.clone(), Entry::Outputs(Rc::new(outputs.clone())), bytes);
            self.entries.borrow_mut().push(entry);
        }
        Ok(outputs)
    }
}

fn outputs_bytes(outputs: &EvalOutputs) -> usize {
    4 * match outputs {
        EvalOutputs::Probs(p) => p.iter().map(Vec::len).sum(),
        EvalOutputs::Scores(s) => s.len(),
        EvalOutputs::Spans(s) => s.iter().map(|(a, b)| a.len() + b.len()).sum(),
    }
}
