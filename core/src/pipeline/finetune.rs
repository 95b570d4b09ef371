//! Phase 1 of a seed: fine-tune BERT with its task head, keeping a checkpoint at every
//! extraction point and the final one, scoring BERT at the evaluation-only points on the way,
//! and noting the steps and seconds at every point.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;

use super::batch::make_batch;
use super::context::{RunContext, gather, read_json, save_phase};
use super::evaluate::score_bert;
use super::files::{FinetuneTimes, PointTime, SeedFiles, read_map, update_map};
use super::methods::{SplitMetrics, point_label};
use super::progress::Progress;
use super::trainer::{LoopSpec, LossCurve, train_loop};
use crate::bert::BertConfig;
use crate::error::{Error, Result};
use crate::pretrained::Pretrained;
use crate::task_model::{BertTaskModel, head_loss};
use crate::train::Checkpoint;

/// A seed's fine-tuning, done (here or by the run `train-head` reads): the loss curve, BERT's
/// scores at the evaluation-only points, the time at every point, and what loading its
/// checkpoints needs.
pub(super) struct Finetuned<B: crate::TrainBackend> {
    pub loss: LossCurve,
    pub bert_config: BertConfig,
    /// point label → split → metrics, at the `--eval-every-epochs` points that are neither
    /// extraction points nor the end.
    pub evals: BTreeMap<String, SplitMetrics>,
    pub times: FinetuneTimes,
    /// The task model's structure on the inner backend, which checkpoints are loaded into.
    skeleton: BertTaskModel<B::InnerBackend>,
}

impl<B: crate::TrainBackend> Finetuned<B> {
    /// A kept checkpoint (`SeedFiles::bert_at`, `bert_final`) on the inner backend; a missing
    /// one is refused by name (the run kept no checkpoint there, or it was deleted).
    pub fn load(&self, path: &Path, device: &B::Device) -> Result<BertTaskModel<B::InnerBackend>> {
        if !path.is_file() {
            return Err(Error::invalid(
                path,
                "missing: this run kept no such checkpoint (see its config.json's extract_at)",
            ));
        }
        Checkpoint::load_module(
            self.skeleton.clone(),
            &crate::error::read_file(path)?,
            device,
            path,
        )
    }

    /// A finished fine-tuning read back from its files, for `train-head`.
    pub fn read(ctx: &RunContext<'_>, files: &SeedFiles, device: &B::Device) -> Result<Self> {
        let (skeleton, bert_config) = fresh_task_model::<B>(ctx, device)?;
        let loss = read_json::<LossCurve>(&files.finetune.loss)?.ok_or_else(|| {
            Error::invalid(
                &files.finetune.loss,
                "missing: fine-tuning of this seed did not finish",
            )
        })?;
        Self::with_records(files, loss, bert_config, skeleton)
    }

    /// The curve and model with the scores and times the fine-tuning recorded beside them.
    fn with_records(
        files: &SeedFiles,
        loss: LossCurve,
        bert_config: BertConfig,
        skeleton: BertTaskModel<B>,
    ) -> Result<Self> {
        Ok(Finetuned {
            loss,
            bert_config,
            evals: read_map(&files.finetune_evals)?,
            times: read_map(&files.finetune_times)?,
            skeleton: skeleton.valid(),
        })
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

/// The optimizer step at which fine-tuning has run `point` epochs (at least the first step).
pub(super) fn step_at(point: f64, steps_per_epoch: usize, total: usize) -> usize {
    ((point * steps_per_epoch as f64).round() as usize).clamp(1, total)
}

/// The points of BERT's curve: every extraction point, every `--eval-every-epochs` multiple,
/// the end of fine-tuning; increasing.
pub(super) fn curve_points(ctx: &RunContext<'_>) -> Vec<f64> {
    let cfg = ctx.config;
    let epochs = cfg.finetune.epochs;
    let mut points = cfg.extract_at.clone();
    if let Some(every) = cfg.eval_every_epochs {
        // Rounded to a millionth, so that 3 × 0.1 is the point 0.3 and not 0.30000000000000004.
        let multiples = (1..).map(|k| (k as f64 * every * 1e6).round() / 1e6);
        points.extend(multiples.take_while(|&p| p <= epochs + 1e-9));
    }
    points.push(epochs);
    points.sort_by(f64::total_cmp);
    points.dedup();
    points
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
    let n_train = ctx.train.len();
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
        checkpoint: files.finetune.checkpoint.clone(),
        milestones: vec![],
    };
    let (per_epoch, total) = (spec.steps_per_epoch(n_train), spec.total_steps(n_train));
    spec.milestones = cfg
        .extract_at
        .iter()
        .map(|&p| (step_at(p, per_epoch, total), files.bert_at(p)))
        .collect();
    let done = files.bert_final.exists() && spec.milestones.iter().all(|(_, p)| p.exists());
    let loss = match (done, read_json::<LossCurve>(&files.finetune.loss)?) {
        (true, Some(curve)) => curve,
        _ => {
            let started = Instant::now();
            let samples = &ctx.train;
            let mut watcher = PointWatcher::new(ctx, files, per_epoch, total, device)?;
            let (model, curve, seconds) = train_loop(
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
                |step, seconds, model, progress| watcher.after_step(step, seconds, model, progress),
            )?;
            let paths = [files.bert_final.as_path(), files.finetune.loss.as_path()];
            save_phase(&model, &curve, paths, &spec, seconds, progress)?;
            wall.insert("finetune".to_string(), started.elapsed().as_secs_f64());
            curve
        }
    };
    Finetuned::with_records(files, loss, bert_config, skeleton)
}

/// What fine-tuning notes as it passes the points of BERT's curve: the step and seconds at each,
/// and BERT's scores at the evaluation-only ones (each written as it happens, so a killed run
/// keeps them and a resumed one skips them).
struct PointWatcher<'a, 'c, B: crate::TrainBackend> {
    ctx: &'a RunContext<'c>,
    files: &'a SeedFiles,
    device: &'a B::Device,
    /// step → the labels of the points it reaches.
    points_at: BTreeMap<usize, Vec<String>>,
    eval_only: BTreeSet<String>,
    times: FinetuneTimes,
    evaluated: BTreeSet<String>,
}

impl<'a, 'c, B: crate::TrainBackend> PointWatcher<'a, 'c, B> {
    fn new(
        ctx: &'a RunContext<'c>,
        files: &'a SeedFiles,
        per_epoch: usize,
        total: usize,
        device: &'a B::Device,
    ) -> Result<Self> {
        let mut points_at: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut eval_only = BTreeSet::new();
        for p in curve_points(ctx) {
            let label = point_label(p);
            let extraction = ctx.config.extract_at.contains(&p);
            if !extraction && p != ctx.config.finetune.epochs {
                eval_only.insert(label.clone());
            }
            points_at
                .entry(step_at(p, per_epoch, total))
                .or_default()
                .push(label);
        }
        let evals: BTreeMap<String, SplitMetrics> = read_map(&files.finetune_evals)?;
        Ok(PointWatcher {
            ctx,
            files,
            device,
            points_at,
            eval_only,
            times: read_map(&files.finetune_times)?,
            evaluated: evals.into_keys().collect(),
        })
    }

    fn after_step(
        &mut self,
        step: usize,
        seconds: f64,
        model: &BertTaskModel<B>,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let Some(labels) = self.points_at.get(&step).cloned() else {
            return Ok(());
        };
        for label in labels {
            if !self.times.contains_key(&label) {
                let time = PointTime { step, seconds };
                self.times.insert(label.clone(), time);
                update_map(&self.files.finetune_times, label.clone(), time)?;
            }
            if self.eval_only.contains(&label) && !self.evaluated.contains(&label) {
                let scores = score_bert::<B>(self.ctx, &model.valid(), self.device)?;
                progress.log(&format!(
                    "BERT after {label} epochs: {}",
                    summary_line(&scores)
                ));
                update_map(&self.files.finetune_evals, label.clone(), scores)?;
                self.evaluated.insert(label);
            }
        }
        Ok(())
    }
}

/// `dev accuracy 0.5271, …` for the log.
fn summary_line(scores: &SplitMetrics) -> String {
    scores
        .iter()
        .flat_map(|(split, metrics)| {
            metrics
                .iter()
                .take(2)
                .map(move |(m, v)| format!("{split} {m} {v:.4}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
