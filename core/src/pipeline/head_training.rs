//! Phase 2 of a seed: the AdapterPooler trained on hidden states streamed from the frozen
//! extraction-point checkpoint (nothing stored: one batch of hidden states at a time).

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::Tensor;

use super::batch::{Padding, make_batch};
use super::context::{RunContext, SeedFiles, gather, read_json, save_phase};
use super::finetune::Finetuned;
use super::progress::Progress;
use super::trainer::{LoopSpec, LossCurve, train_loop};
use crate::bert::Bert;
use crate::error::Result;
use crate::head::{AdapterPooler, AdapterPoolerConfig};
use crate::task_model::{BertTaskModel, Targets, head_loss};
use crate::train::Checkpoint;

/// A seed's trained head, and the frozen encoder that feeds it.
pub(super) struct TrainedHead<B: crate::TrainBackend> {
    pub model: AdapterPooler<B::InnerBackend>,
    pub config: AdapterPoolerConfig,
    pub curve: LossCurve,
    /// The extraction-point encoder in the float type the head reads
    /// (`HeadConfig::encoder_dtype`); its hidden states reach the head as f32.
    pub encoder: Bert<B::InnerBackend>,
    /// How the head's inputs are padded (fixed length for position-specific heads).
    pub padding: Padding,
    /// Seconds of head training in this process (`None` when it was done before).
    pub seconds: Option<f64>,
}

/// Trains (or resumes, or finds done) seed `seed`'s AdapterPooler on `bert_extract`'s hidden
/// states.
pub(super) fn train_head<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    files: &SeedFiles,
    finetuned: &Finetuned<B>,
    bert_extract: &BertTaskModel<B::InnerBackend>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<TrainedHead<B>> {
    let cfg = ctx.config;
    // The same checkpoint in the float type asked for (bf16 on a GPU halves its memory
    // traffic); the head itself always sees f32.
    let encoder = bert_extract
        .bert
        .clone()
        .with_float_dtype(cfg.head.encoder_dtype.float_dtype());
    let config = ctx.head_config(&finetuned.bert_config);
    let padding = ctx.head_padding(&config);
    B::seed(device, seed.wrapping_add(1));
    let skeleton: AdapterPooler<B> = config.init(device);
    if let (true, Some(curve)) = (
        files.head.exists(),
        read_json::<LossCurve>(&files.head_loss)?,
    ) {
        let bytes = crate::error::read_file(&files.head)?;
        let model = Checkpoint::load_module(skeleton.valid(), &bytes, device, &files.head)?;
        return Ok(TrainedHead {
            model,
            config,
            curve,
            encoder,
            padding,
            seconds: None,
        });
    }
    let started = Instant::now();
    let spec = LoopSpec {
        name: format!("seed {seed} AdapterPooler"),
        lr: cfg.head.lr,
        warmup_ratio: cfg.head.warmup_ratio,
        batch_size: cfg.head.batch_size,
        epochs: cfg.head.epochs,
        seed: seed.wrapping_add(1),
        optimizer: cfg.head.optimizer,
        checkpoint_every: cfg.checkpoint_every,
        checkpoint: files.head_checkpoint.clone(),
        milestones: vec![],
    };
    let samples = &ctx.data.train;
    let (head, curve) = train_loop(
        skeleton,
        &spec,
        samples.len(),
        device,
        progress,
        |head: &AdapterPooler<B>, idx| {
            let (input, targets) =
                make_batch::<B::InnerBackend>(&gather(samples, idx), padding, device);
            let mask = input.attention_mask.clone();
            // Frozen BERT on the inner backend: no graph, no gradient, no dropout.
            let states: Vec<Tensor<B, 3>> = encoder
                .forward(input)
                .hidden_states_f32()
                .into_iter()
                .map(Tensor::from_inner)
                .collect();
            let targets = Targets::<B>::from_inner(targets);
            let out = head.forward_by(&states, Tensor::from_inner(mask), cfg.head.path);
            head_loss(out, &targets)
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let paths = [files.head.as_path(), files.head_loss.as_path()];
    save_phase(&head, &curve, paths, &spec, seconds, progress)?;
    Ok(TrainedHead {
        model: head.valid(),
        config,
        curve,
        encoder,
        padding,
        seconds: Some(seconds),
    })
}
