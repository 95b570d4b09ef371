//! Phase 1 of a seed: fine-tune BERT with its task head, keeping the checkpoint at the
//! extraction point and the final one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;

use super::batch::make_batch;
use super::context::{RunContext, SeedFiles, gather, read_json, save_phase};
use super::progress::Progress;
use super::trainer::{LoopSpec, LossCurve, train_loop};
use crate::bert::BertConfig;
use crate::error::{Error, Result};
use crate::pretrained::Pretrained;
use crate::task_model::{BertTaskModel, head_loss};
use crate::train::Checkpoint;

/// A seed's fine-tuning, done: the loss curve and what loading its checkpoints needs.
pub(super) struct Finetuned<B: crate::TrainBackend> {
    pub loss: LossCurve,
    pub bert_config: BertConfig,
    /// The task model's structure on the inner backend, which checkpoints are loaded into.
    skeleton: BertTaskModel<B::InnerBackend>,
}

impl<B: crate::TrainBackend> Finetuned<B> {
    /// A kept checkpoint (`SeedFiles::bert_extract`, `bert_final`) on the inner backend.
    pub fn load(&self, path: &Path, device: &B::Device) -> Result<BertTaskModel<B::InnerBackend>> {
        Checkpoint::load_module(
            self.skeleton.clone(),
            &crate::error::read_file(path)?,
            device,
            path,
        )
    }
}

/// The task model with the pre-trained encoder and a fresh head (seeded by the backend).
fn fresh_task_model<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    device: &B::Device,
) -> Result<(BertTaskModel<B>, BertConfig)> {
    let pretrained = Pretrained::<B>::load(ctx.model_dir, device)?;
    let model = BertTaskModel::new(
        pretrained
            .bert
            .with_encoder_kernels(ctx.config.encoder_kernels),
        &pretrained.config,
        ctx.task.num_outputs(),
        ctx.span(),
        device,
    );
    Ok((model, pretrained.config))
}

/// Fine-tunes (or resumes, or finds done) seed `seed`'s BERT; the seconds of a fine-tuning run
/// in this process go to `wall["finetune"]`.
pub(super) fn finetune<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    files: &SeedFiles,
    device: &B::Device,
    progress: &mut dyn Progress,
    wall: &mut BTreeMap<String, f64>,
) -> Result<Finetuned<B>> {
    let cfg = ctx.config;
    B::seed(device, seed);
    let (skeleton, bert_config) = fresh_task_model::<B>(ctx, device)?;
    let n_train = ctx.data.train.len();
    if n_train == 0 {
        return Err(Error::usage("no training examples"));
    }
    let mut spec = LoopSpec {
        name: format!("seed {seed} fine-tune"),
        lr: cfg.finetune.lr,
        warmup_ratio: cfg.finetune.warmup_ratio,
        batch_size: cfg.finetune.batch_size,
        epochs: cfg.finetune.epochs,
        seed,
        optimizer: cfg.finetune.optimizer,
        checkpoint_every: cfg.checkpoint_every,
        checkpoint: files.finetune_checkpoint.clone(),
        milestones: vec![],
    };
    let per_epoch = spec.steps_per_epoch(n_train);
    let total = spec.total_steps(n_train);
    let extract_step = ((cfg.extract_at * per_epoch as f64).round() as usize).clamp(1, total);
    spec.milestones = vec![(extract_step, files.bert_extract.clone())];
    let done = files.bert_final.exists() && files.bert_extract.exists();
    let loss = match (done, read_json::<LossCurve>(&files.finetune_loss)?) {
        (true, Some(curve)) => curve,
        _ => {
            let started = Instant::now();
            let samples = &ctx.data.train;
            let (model, curve) = train_loop(
                skeleton.clone(),
                &spec,
                n_train,
                device,
                progress,
                |model: &BertTaskModel<B>, idx| {
                    let (input, targets) =
                        make_batch::<B>(&gather(samples, idx), ctx.padding(), device);
                    head_loss(model.forward(input).1, &targets)
                },
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let paths = [files.bert_final.as_path(), files.finetune_loss.as_path()];
            save_phase(&model, &curve, paths, &spec, seconds, progress)?;
            wall.insert("finetune".to_string(), seconds);
            curve
        }
    };
    Ok(Finetuned {
        loss,
        bert_config,
        skeleton: skeleton.valid(),
    })
}
