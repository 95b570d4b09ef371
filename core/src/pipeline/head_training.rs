//! Phase 2 of a seed: AdapterPoolers trained on hidden states streamed from a frozen
//! extraction-point checkpoint (one batch of hidden states at a time, or all of them kept in
//! memory with `--cache-gib`), one on all the training data and one per `--head-train-fraction`.

use std::path::Path;

use burn::module::{AutodiffModule, Module};
use burn::tensor::Tensor;

use super::batch::{Padding, make_batch};
use super::context::{RunContext, gather, read_json, save_phase};
use super::data::Sample;
use super::files::{SeedFiles, update_map};
use super::finetune::Finetuned;
use super::hidden_cache::{SplitStates, StatesKey};
use super::methods::{BERTVISION, method_at};
use super::progress::Progress;
use super::sample::{dataset_key, fraction_indices};
use super::trainer::{LoopSpec, LossCurve, train_loop_on};
use crate::bert::Bert;
use crate::error::Result;
use crate::head::{AdapterPooler, HeadPath};
use crate::task_model::{Targets, head_loss};
use crate::train::{Checkpoint, Shard};

/// One trained head.
pub(super) struct TrainedHead<B: crate::TrainBackend> {
    pub model: AdapterPooler<B::InnerBackend>,
    /// The share of the training data it saw.
    pub fraction: f64,
    /// Its results key at its point (`bertvision@p`, `bertvision@p/f`).
    pub key: String,
    pub curve: LossCurve,
    /// Seconds of training in this process (`None`: trained before, read back).
    pub seconds_here: Option<f64>,
}

/// Where a head's training batches come from: the samples (a sample of the training data, at
/// `rows` of it), and their hidden states, read from the cache or computed by the frozen
/// checkpoint on the peer's device.
struct HeadInputs<'a, B: crate::TrainBackend> {
    samples: &'a [Sample],
    rows: Option<&'a [usize]>,
    padding: Padding,
    cached: Option<&'a SplitStates>,
    /// The frozen encoder on each distinct device of the peers.
    encoders: Vec<(B::Device, Bert<B::InnerBackend>)>,
    path: HeadPath,
}

impl<B: crate::TrainBackend> HeadInputs<'_, B> {
    fn encoders_on(
        encoder: &Bert<B::InnerBackend>,
        devices: &[B::Device],
    ) -> Vec<(B::Device, Bert<B::InnerBackend>)> {
        let mut encoders: Vec<(B::Device, Bert<B::InnerBackend>)> = Vec::new();
        for device in devices {
            if !encoders.iter().any(|(d, _)| d == device) {
                encoders.push((device.clone(), encoder.clone().to_device(device)));
            }
        }
        encoders
    }

    /// The head's loss on one peer's shard of a batch (the whole batch on one device), padded
    /// as the whole batch.
    fn loss(&self, head: &AdapterPooler<B>, shard: &Shard<'_>, device: &B::Device) -> Tensor<B, 1> {
        let padding = self.padding.of_batch(&gather(self.samples, shard.batch));
        let (input, targets) =
            make_batch::<B::InnerBackend>(&gather(self.samples, shard.indices), padding, device);
        let mask = input.attention_mask.clone();
        // Frozen BERT on the inner backend: no graph, no gradient, no dropout.
        let states = match self.cached {
            Some(states) => {
                let at = |i: &usize| self.rows.map_or(*i, |r| r[*i]);
                let places: Vec<usize> = shard.indices.iter().map(at).collect();
                states.batch(&places, mask.dims()[1], device)
            }
            None => {
                let (_, encoder) = self
                    .encoders
                    .iter()
                    .find(|(d, _)| d == device)
                    .expect("an encoder on every peer's device");
                encoder.forward(input).hidden_states_f32()
            }
        };
        let states: Vec<Tensor<B, 3>> = states.into_iter().map(Tensor::from_inner).collect();
        let targets = Targets::<B>::from_inner(targets);
        let out = head.forward_by(&states, Tensor::from_inner(mask), self.path);
        head_loss(out, &targets)
    }
}

/// Trains (or resumes, or finds done) the head of seed `seed` at `point` on the share
/// `fraction` of the training data, from the hidden states of `encoder` (the point's checkpoint
/// in the float type the head reads; they reach the head as f32).
#[allow(clippy::too_many_arguments)]
pub(super) fn train_head<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    files: &SeedFiles,
    finetuned: &Finetuned<B>,
    (encoder, checkpoint): (&Bert<B::InnerBackend>, &Path),
    (point, fraction): (f64, f64),
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<TrainedHead<B>> {
    let cfg = ctx.config;
    let config = ctx.head_config(&finetuned.bert_config);
    let padding = ctx.head_padding(&config);
    let phase = files.head(point, fraction);
    let key = method_at(BERTVISION, point, fraction);
    // The same initial head at every point and fraction: the curves compare like with like.
    // Drawn now, not on the first read (which a peer group makes at its start, one device at
    // its first step, after reseeding): the same head on any number of devices.
    B::seed(device, seed.wrapping_add(1));
    let skeleton: AdapterPooler<B> = config.init(device).with_precision(cfg.precision);
    crate::train::initialize_now(&skeleton);
    if let (true, Some(curve)) = (phase.model.exists(), read_json::<LossCurve>(&phase.loss)?) {
        let bytes = crate::error::read_file(&phase.model)?;
        let model = Checkpoint::load_module(skeleton.valid(), &bytes, device, &phase.model)?;
        return Ok(TrainedHead {
            model,
            fraction,
            key,
            curve,
            seconds_here: None,
        });
    }
    // The sample's places in the training data, which the cached states are indexed by.
    let rows = (fraction < 1.0)
        .then(|| fraction_indices(seed, fraction, ctx.train.len(), dataset_key(ctx.train)));
    let sampled: Vec<Sample>;
    let samples: &[Sample] = match &rows {
        Some(rows) => {
            sampled = rows.iter().map(|&i| ctx.train[i].clone()).collect();
            &sampled
        }
        None => ctx.train,
    };
    let cached = ctx.hidden_cache.and_then(|cache| {
        let dtype = cfg.head.encoder_dtype;
        let key = StatesKey::new(checkpoint, dtype, "train", ctx.train, padding.fixed);
        let batch = cfg.eval_batch_size;
        cache.states(&key, encoder, ctx.train, padding, batch, device, progress)
    });
    let spec = LoopSpec {
        name: match key.split_once('@') {
            Some((_, at)) if cfg.extract_at.len() > 1 || fraction < 1.0 => {
                format!("seed {seed} AdapterPooler @{at}")
            }
            _ => format!("seed {seed} AdapterPooler"),
        },
        lr: cfg.head.lr,
        warmup_ratio: cfg.head.warmup_ratio,
        batch_size: cfg.head.batch_size,
        epochs: cfg.head.epochs,
        seed: seed.wrapping_add(1),
        optimizer: cfg.head.optimizer.for_precision(cfg.precision),
        checkpoint_every: cfg.checkpoint_every,
        checkpoint: phase.checkpoint.clone(),
        milestones: vec![],
        log: Some((files.metrics_log.clone(), key.clone())),
        evaluated_at: vec![],
    };
    let devices = ctx.devices.devices(device);
    let inputs = HeadInputs::<B> {
        samples,
        rows: rows.as_deref(),
        padding,
        cached: cached.as_deref(),
        encoders: HeadInputs::<B>::encoders_on(encoder, &devices),
        path: cfg.head.path,
    };
    let shard_loss = |head: &AdapterPooler<B>, shard: &Shard<'_>, device: &B::Device| {
        inputs.loss(head, shard, device)
    };
    let started = std::time::Instant::now();
    let (head, curve, seconds) = train_loop_on(
        skeleton,
        &spec,
        samples.len(),
        (ctx.devices, &devices),
        progress,
        &shard_loss,
        |_, _, _, _| Ok(true),
    )?;
    let paths = [phase.model.as_path(), phase.loss.as_path()];
    save_phase(&head, &curve, paths, &spec, seconds, progress)?;
    update_map(&files.head_times, key.clone(), seconds)?;
    Ok(TrainedHead {
        model: head.valid(),
        fraction,
        key,
        curve,
        seconds_here: Some(started.elapsed().as_secs_f64()),
    })
}
