//! Evaluation sharded over the peers of `--devices` and the nodes of `--num-nodes` (issue #21).
//!
//! A split is cut into the evaluation batches one device would make (`samples.chunks(batch)`),
//! and whole batches are dealt out: contiguous runs of them, one run per peer over every
//! machine (`shard_ranges`). So each batch, its padding included, is the one device's batch,
//! and the outputs are one device's bit for bit on the CPU: the number of devices changes no
//! metric. This machine's peers run on their own threads, each with its own copy of the models
//! on its device; their outputs are joined in rank order. Between machines the outputs are
//! gathered by the nodes' sum (`cluster::sum_floats_over_nodes`): each node fills its own rows
//! of a buffer of zeros, and the sum of disjoint rows is their concatenation, exactly.

use std::ops::Range;

use burn::module::Module;
use burn::tensor::backend::Backend;

use super::batch::Padding;
use super::data::{Sample, Target};
use super::evaluate::{EvalOutputs, predict};
use super::progress::Progress;
use crate::bert::BertInput;
use crate::error::{Error, Result};
use crate::head::HeadOutput;
use crate::task_model::BertTaskModel;
use crate::train::DeviceSet;
use crate::train::shard::shard_ranges;

/// The forward pass a peer runs on its copy of the models: one output per model.
type PeerForward<'f, B, M> = dyn Fn(&M, BertInput<B>) -> Vec<HeadOutput<B>> + Sync + 'f;

/// The peers an evaluation runs on: the run's `--devices` (and nodes), this machine's devices.
pub struct EvalPeers<'a, D> {
    pub set: &'a DeviceSet,
    pub devices: Vec<D>,
}

impl<'a, D: burn::tensor::backend::DeviceOps> EvalPeers<'a, D> {
    /// `set`'s peers, of `main`'s kind (`main` alone for an empty set).
    pub fn new(set: &'a DeviceSet, main: &D) -> Self {
        EvalPeers {
            set,
            devices: set.devices(main),
        }
    }

    /// The samples rank `rank` scores: whole batches of `batch_size`, as one device cuts them.
    fn samples_of(&self, rank: usize, len: usize, batch_size: usize) -> Range<usize> {
        let batches = shard_ranges(len.div_ceil(batch_size), self.set.world());
        let range = &batches[rank];
        (range.start * batch_size).min(len)..(range.end * batch_size).min(len)
    }

    /// This machine's samples (its peers' runs together).
    fn samples_here(&self, len: usize, batch_size: usize) -> Range<usize> {
        let first = self.set.first_rank();
        let last = first + self.set.peers() - 1;
        self.samples_of(first, len, batch_size).start..self.samples_of(last, len, batch_size).end
    }
}

/// [`predict`] over every peer: the outputs of every model `forward` returns, on every sample,
/// as one device computes them. `models` are on the first device; `copy_to` makes each other
/// peer's copy on its device (called on this thread, the copy then moves to the peer's).
/// Progress shows this thread's share.
#[allow(clippy::too_many_arguments)]
pub fn predict_on_peers<B: Backend, M: Send>(
    peers: &EvalPeers<'_, B::Device>,
    samples: &[Sample],
    (batch_size, padding): (usize, Padding),
    progress: &mut dyn Progress,
    label: &str,
    models: &M,
    copy_to: impl Fn(&M, &B::Device) -> M,
    forward: impl Fn(&M, BertInput<B>) -> Vec<HeadOutput<B>> + Sync,
) -> Result<Vec<EvalOutputs>> {
    let batch_size = batch_size.max(1);
    let main = &peers.devices[0];
    if !peers.set.is_parallel() {
        let run = |input| forward(models, input);
        return Ok(predict(
            samples, batch_size, padding, main, progress, label, run,
        ));
    }
    let first = peers.set.first_rank();
    let ranges: Vec<Range<usize>> = (0..peers.set.peers())
        .map(|local| peers.samples_of(first + local, samples.len(), batch_size))
        .collect();
    let copies = peers.devices[1..]
        .iter()
        .map(|d| copy_to(models, d))
        .collect();
    let parts = run_on_threads(
        peers,
        &ranges,
        samples,
        (batch_size, padding),
        (progress, label),
        (models, copies, &forward),
    )?;
    let here = join(parts);
    match &peers.set.cluster {
        None => Ok(here),
        Some(_) => gather_over_nodes(peers, samples, batch_size, here),
    }
}

/// BERT's task outputs on `samples` over the peers ([`predict_on_peers`] of one model).
pub fn bert_on_peers<B: crate::KernelBackend>(
    peers: &EvalPeers<'_, B::Device>,
    samples: &[Sample],
    batching: (usize, Padding),
    progress: &mut dyn Progress,
    label: &str,
    bert: &BertTaskModel<B>,
) -> Result<EvalOutputs> {
    let copy = |m: &BertTaskModel<B>, d: &B::Device| m.clone().to_device(d);
    let forward = |m: &BertTaskModel<B>, input| vec![m.forward(input).1];
    let outputs = predict_on_peers(
        peers, samples, batching, progress, label, bert, copy, forward,
    )?;
    // No output at all only for a split without samples, which the loaders refuse.
    let none = || Error::usage("an evaluation split without samples");
    outputs.into_iter().next().ok_or_else(none)
}

/// Each local peer's outputs on its `ranges` entry, in rank order: peer 0 on this thread with
/// `models`, the others each on a thread of its own with its entry of `copies`.
#[cfg(not(target_arch = "wasm32"))]
fn run_on_threads<B: Backend, M: Send>(
    peers: &EvalPeers<'_, B::Device>,
    ranges: &[Range<usize>],
    samples: &[Sample],
    (batch_size, padding): (usize, Padding),
    (progress, label): (&mut dyn Progress, &str),
    (models, copies, forward): (&M, Vec<M>, &PeerForward<'_, B, M>),
) -> Result<Vec<Vec<EvalOutputs>>> {
    std::thread::scope(|scope| {
        let mut threads = Vec::new();
        let others = peers.devices.iter().zip(ranges).skip(1);
        for ((device, range), copy) in others.zip(copies) {
            let shard = &samples[range.clone()];
            let thread = std::thread::Builder::new()
                .name("eval-peer".into())
                .spawn_scoped(scope, move || {
                    let run = |input| forward(&copy, input);
                    let quiet = &mut super::progress::NoProgress;
                    predict(shard, batch_size, padding, device, quiet, "", run)
                })
                .map_err(|e| Error::usage(format!("could not start an evaluation thread: {e}")))?;
            threads.push(thread);
        }
        let run = |input| forward(models, input);
        let shard = &samples[ranges[0].clone()];
        let main = &peers.devices[0];
        let mine = predict(shard, batch_size, padding, main, progress, label, run);
        let mut parts = vec![mine];
        for thread in threads {
            let outputs = thread.join().map_err(|_| {
                Error::usage("an evaluation peer failed (see the panic above)".to_string())
            })?;
            parts.push(outputs);
        }
        Ok(parts)
    })
}

#[cfg(target_arch = "wasm32")]
fn run_on_threads<B: Backend, M: Send>(
    _: &EvalPeers<'_, B::Device>,
    _: &[Range<usize>],
    _: &[Sample],
    _: (usize, Padding),
    _: (&mut dyn Progress, &str),
    _: (&M, Vec<M>, &PeerForward<'_, B, M>),
) -> Result<Vec<Vec<EvalOutputs>>> {
    Err(Error::usage(
        "evaluation over several devices needs threads: not in the browser",
    ))
}

/// The peers' outputs joined in rank order, model by model (a peer without samples returned
/// no outputs at all).
fn join(parts: Vec<Vec<EvalOutputs>>) -> Vec<EvalOutputs> {
    let models = parts.iter().map(Vec::len).max().unwrap_or(0);
    let mut joined: Vec<Option<EvalOutputs>> = vec![None; models];
    for part in parts {
        for (slot, outputs) in joined.iter_mut().zip(part) {
            match slot {
                None => *slot = Some(outputs),
                Some(before) => before.append(outputs),
            }
        }
    }
    joined.into_iter().flatten().collect()
}

/// What kind of outputs a split's samples get (see `Collector::push`).
fn kind_of(samples: &[Sample]) -> fn(Vec<Vec<f32>>) -> EvalOutputs {
    match samples.first().map(|s| &s.target) {
        Some(Target::Span { .. }) => EvalOutputs::from_span_rows,
        Some(Target::Score(_)) => |rows| EvalOutputs::Scores(rows.concat()),
        _ => EvalOutputs::Probs,
    }
}

/// Every node's outputs from this node's (`here`: its samples' outputs, model by model), by
/// three sums over the nodes: the number of models, every sample's width (floats per sample and
/// model), then the values, each node's at its samples' places and zeros elsewhere.
fn gather_over_nodes<D: burn::tensor::backend::DeviceOps>(
    peers: &EvalPeers<'_, D>,
    samples: &[Sample],
    batch_size: usize,
    here: Vec<EvalOutputs>,
) -> Result<Vec<EvalOutputs>> {
    let mine = peers.samples_here(samples.len(), batch_size);
    // Every node evaluates the same models, but a node without samples has no outputs to
    // count them by: the nodes with outputs say how many.
    let counted = vec![here.len() as f32, f32::from(u8::from(!here.is_empty()))];
    let counted = sum_over_nodes(peers, counted)?;
    let models = match counted[1] {
        0.0 => 0,
        nodes => (counted[0] / nodes).round() as usize,
    };
    let rows: Vec<Vec<Vec<f32>>> = (0..models)
        .map(|m| here.get(m).map_or_else(Vec::new, EvalOutputs::rows))
        .collect();
    let n = samples.len();
    let mut widths = vec![0f32; models * n];
    for (m, model_rows) in rows.iter().enumerate() {
        for (i, row) in model_rows.iter().enumerate() {
            widths[m * n + mine.start + i] = row.len() as f32;
        }
    }
    let widths: Vec<usize> = sum_over_nodes(peers, widths)?
        .into_iter()
        .map(|w| w as usize)
        .collect();
    let offsets: Vec<usize> = std::iter::once(0)
        .chain(widths.iter().scan(0, |at, w| {
            *at += w;
            Some(*at)
        }))
        .collect();
    let mut values = vec![0f32; offsets[models * n]];
    for (m, model_rows) in rows.iter().enumerate() {
        for (i, row) in model_rows.iter().enumerate() {
            let at = offsets[m * n + mine.start + i];
            values[at..at + row.len()].copy_from_slice(row);
        }
    }
    let values = sum_over_nodes(peers, values)?;
    let make = kind_of(samples);
    Ok((0..models)
        .map(|m| {
            let row = |i: usize| values[offsets[m * n + i]..offsets[m * n + i + 1]].to_vec();
            make((0..n).map(row).collect())
        })
        .collect())
}

#[cfg(not(target_arch = "wasm32"))]
fn sum_over_nodes<D>(peers: &EvalPeers<'_, D>, values: Vec<f32>) -> Result<Vec<f32>> {
    let cluster = peers.set.cluster.as_ref().expect("called on a cluster");
    crate::train::cluster::connect(cluster, peers.set.peers())?;
    crate::train::cluster::sum_floats_over_nodes(values)
}

#[cfg(target_arch = "wasm32")]
fn sum_over_nodes<D>(_: &EvalPeers<'_, D>, _: Vec<f32>) -> Result<Vec<f32>> {
    Err(Error::usage("several machines: not in the browser"))
}

impl EvalOutputs {
    /// Samples covered.
    pub fn len(&self) -> usize {
        match self {
            EvalOutputs::Probs(p) => p.len(),
            EvalOutputs::Scores(s) => s.len(),
            EvalOutputs::Spans(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `other`'s samples after these (an empty side takes the other's kind).
    pub fn append(&mut self, other: EvalOutputs) {
        match (self, other) {
            (EvalOutputs::Probs(a), EvalOutputs::Probs(b)) => a.extend(b),
            (EvalOutputs::Scores(a), EvalOutputs::Scores(b)) => a.extend(b),
            (EvalOutputs::Spans(a), EvalOutputs::Spans(b)) => a.extend(b),
            (_, other) if other.is_empty() => {}
            (this, other) => {
                assert!(this.is_empty(), "outputs of one split have one kind");
                *this = other;
            }
        }
    }

    /// One row of floats per sample: its probabilities, its score, or its start then end logits.
    fn rows(&self) -> Vec<Vec<f32>> {
        match self {
            EvalOutputs::Probs(p) => p.clone(),
            EvalOutputs::Scores(s) => s.iter().map(|&v| vec![v]).collect(),
            EvalOutputs::Spans(s) => s
                .iter()
                .map(|(a, b)| [a.clone(), b.clone()].concat())
                .collect(),
        }
    }

    /// [`Self::rows`] of span logits back: each row's first half the start logits.
    fn from_span_rows(rows: Vec<Vec<f32>>) -> EvalOutputs {
        EvalOutputs::Spans(
            rows.into_iter()
                .map(|mut row| {
                    let end = row.split_off(row.len() / 2);
                    (row, end)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::progress::NoProgress;
    use crate::train::Cluster;

    fn set(peers: u16, node: Option<(u32, u32)>) -> DeviceSet {
        DeviceSet {
            indices: (0..peers).collect(),
            cluster: node.map(|(node, nodes)| Cluster {
                node,
                nodes,
                coordinator: "127.0.0.1:1".into(),
            }),
        }
    }

    #[test]
    fn peers_take_whole_batches_in_order_over_every_node() {
        // 23 samples in batches of 4: 6 batches (the last of 3) over 2 nodes × 2 peers.
        let mut covered = Vec::new();
        for node in 0..2 {
            let set = set(2, Some((node, 2)));
            let peers = EvalPeers::new(&set, &burn::backend::flex::FlexDevice);
            let here = peers.samples_here(23, 4);
            let first = set.first_rank();
            let parts: Vec<_> = (first..first + 2)
                .map(|r| peers.samples_of(r, 23, 4))
                .collect();
            assert_eq!(parts[0].start, here.start);
            assert_eq!(parts[1].end, here.end);
            for part in &parts {
                assert_eq!(part.start % 4, 0, "{part:?} starts a batch");
                covered.push(part.clone());
            }
        }
        assert_eq!(covered, [0..8, 8..16, 16..20, 20..23]);
        // More peers than batches: the last peers get nothing.
        let set = set(4, None);
        let peers = EvalPeers::new(&set, &burn::backend::flex::FlexDevice);
        let parts: Vec<_> = (0..4).map(|r| peers.samples_of(r, 5, 4)).collect();
        assert_eq!(parts, [0..4, 4..5, 5..5, 5..5]);
    }

    /// A tiny random BERT scored over 1, 2 and 3 CPU peers (batches of 4 over 11 samples of
    /// different lengths: the third peer gets the short last batch): one device's probabilities
    /// and the heads' logits, bit for bit.
    #[test]
    fn peers_give_one_devices_outputs_bit_for_bit() {
        use crate::bert::{Bert, BertConfig};
        use crate::task_model::BertTaskModel;
        use crate::tokenize::Encoded;
        use burn::module::Module;
        type F = burn::backend::Flex;
        let device = burn::backend::flex::FlexDevice;
        let json = r#"{"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":2,
            "intermediate_size":64,"vocab_size":100,"max_position_embeddings":64}"#;
        let config = BertConfig::from_json(std::path::Path::new("tiny"), json).unwrap();
        let model = {
            let _rng = crate::lock_flex_rng();
            F::seed(&device, 5);
            let model = BertTaskModel::<F>::new(
                Bert::init(&config, true, &device),
                &config,
                3,
                false,
                &device,
            );
            crate::train::initialize_now(&model);
            model
        };
        let samples: Vec<Sample> = (0..11)
            .map(|i| {
                let len = 3 + (i * 5) % 17;
                Sample {
                    encoded: Encoded {
                        ids: (0..len).map(|j| ((i * 7 + j * 3) % 100) as u32).collect(),
                        type_ids: vec![0; len],
                        offsets: vec![(0, 0); len],
                        sequence_ids: vec![None; len],
                        tokens: vec![String::new(); len],
                    },
                    target: Target::Class(i % 3),
                }
            })
            .collect();
        let padding = Padding {
            pad_id: 0,
            fixed: None,
            multiple: 1,
        };
        let score = |peers: u16| {
            let set = set(peers, None);
            let peers = EvalPeers::new(&set, &device);
            predict_on_peers::<F, _>(
                &peers,
                &samples,
                (4, padding),
                &mut NoProgress,
                "",
                &model,
                |m, d| m.clone().to_device(d),
                |m, input| {
                    let (states, out) = m.forward(input);
                    let last = states.hidden_states.last().unwrap().clone();
                    let [b, _, h] = last.dims();
                    let logits = last.narrow(1, 0, 1).reshape([b, h]).narrow(1, 0, 2);
                    vec![out, HeadOutput::Logits(logits)]
                },
            )
            .unwrap()
        };
        let one = score(1);
        assert_eq!(one.len(), 2);
        assert_eq!(one[0].len(), 11);
        for peers in [2, 3] {
            assert_eq!(score(peers), one, "{peers} peers");
        }
    }

    #[test]
    fn outputs_join_in_order_and_rows_round_trip() {
        let probs = |v: &[f32]| EvalOutputs::Probs(v.iter().map(|&p| vec![p, 1.0 - p]).collect());
        let joined = join(vec![
            vec![probs(&[0.1]), EvalOutputs::Scores(vec![1.0])],
            vec![],
            vec![probs(&[0.2, 0.3]), EvalOutputs::Scores(vec![2.0, 3.0])],
        ]);
        assert_eq!(
            joined,
            [
                probs(&[0.1, 0.2, 0.3]),
                EvalOutputs::Scores(vec![1.0, 2.0, 3.0])
            ]
        );
        let spans = EvalOutputs::Spans(vec![(vec![1.0, 2.0], vec![3.0, 4.0]), (vec![], vec![])]);
        assert_eq!(EvalOutputs::from_span_rows(spans.rows()), spans);
        let mut empty = EvalOutputs::Probs(vec![]);
        empty.append(EvalOutputs::Scores(vec![5.0]));
        assert_eq!(empty, EvalOutputs::Scores(vec![5.0]));
    }
}
