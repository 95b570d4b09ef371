//! Phase 1 of a seed: fine-tune BERT with its task head, keeping a checkpoint at every
//! extraction point and the final one, scoring BERT at the evaluation-only points on the way,
//! and noting the steps and seconds at every point.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;

use super::batch::make_batch;
use super::context::{RunContext, gather, read_json, save_phase, write_json};
use super::evaluate::score_bert;
use super::files::{FinetuneTimes, PointTime, SeedFiles, read_map, update_map};
use super::methods::{SplitMetrics, main_metric, point_label};
use super::metrics_log::MetricsLog;
use super::progress::Progress;
use super::selection::{ScoredPoint, Selection};
use super::trainer::{LoopSpec, LossCurve, train_loop_on};
use crate::bert::BertConfig;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::pretrained::Pretrained;
use crate::task_model::{BertTaskModel, head_loss};
use crate::train::{Checkpoint, Shard};
use crate::wording::epochs;

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
    /// `--select-best`: the points scored and the one chosen as `bert_final`.
    pub selection: Option<Selection>,
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
            selection: read_json(&files.selection)?,
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
            .with_encoder_kernels(ctx.config.encoder_kernels)
            .with_precision(ctx.config.precision),
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
        optimizer: cfg.finetune.optimizer.for_precision(cfg.precision),
        checkpoint_every: cfg.checkpoint_every,
        checkpoint: files.finetune.checkpoint.clone(),
        milestones: vec![],
        log: Some((files.metrics_log.clone(), "finetune".to_string())),
        evaluated_at: vec![],
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
            spec.evaluated_at = watcher.points_at.keys().copied().collect();
            let devices = ctx.devices.devices(device);
            let padding = ctx.padding();
            // Shared by the peers' threads: it captures the samples and the padding only.
            let shard_loss = |model: &BertTaskModel<B>, shard: &Shard<'_>, device: &B::Device| {
                let padding = padding.of_batch(&gather(samples, shard.batch));
                let (input, targets) =
                    make_batch::<B>(&gather(samples, shard.indices), padding, device);
                head_loss(model.forward(input).1, &targets)
            };
            let (model, curve, seconds) = train_loop_on(
                skeleton.clone(),
                &spec,
                n_train,
                (ctx.devices, &devices),
                progress,
                &shard_loss,
                |step, seconds, model, progress| watcher.after_step(step, seconds, model, progress),
            )?;
            let end = point_label(cfg.finetune.epochs);
            let model_path = match &watcher.selection {
                // The best point is not the end: it becomes `bert_final` (written first, so a
                // kill before the loss curve leaves the phase unfinished), the end model is kept.
                Some(s) if s.best.as_deref() != Some(end.as_str()) => {
                    let best = crate::error::read_file(&files.bert_best)?;
                    write_atomic(&files.bert_final, &best)?;
                    progress.log(&format!(
                        "seed {seed}: BERT after {} is the best on {} ({} {:.4}): kept as bert_final",
                        epochs(s.best.as_deref().unwrap_or("?")),
                        s.split,
                        s.metric,
                        s.best_point().map_or(f64::NAN, |p| s.value(p))
                    ));
                    files.bert_end.as_path()
                }
                _ => files.bert_final.as_path(),
            };
            let paths = [model_path, files.finetune.loss.as_path()];
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
    /// BERT's scores at the evaluation-only points so far (`finetune-evals.json` as read, then
    /// kept up to date here).
    evals: BTreeMap<String, SplitMetrics>,
    per_epoch: usize,
    log: MetricsLog,
    /// `--select-best`: the choice so far, and the step from which early stopping may act
    /// (every extraction point kept).
    selection: Option<Selection>,
    stop_from: usize,
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
        let cfg = &ctx.config.finetune;
        let selection = match &cfg.select_best {
            Some(split) => Some(
                read_json::<Selection>(&files.selection)?
                    .unwrap_or_else(|| Selection::new(split, main_metric(ctx.task))),
            ),
            None => None,
        };
        let extraction = ctx.config.extract_at.iter();
        let stop_from = extraction.map(|&p| step_at(p, per_epoch, total)).max();
        Ok(PointWatcher {
            per_epoch,
            log: MetricsLog::append_to(&files.metrics_log, "finetune"),
            selection,
            stop_from: stop_from.unwrap_or(0),
            ctx,
            files,
            device,
            points_at,
            eval_only,
            times: read_map(&files.finetune_times)?,
            evals,
        })
    }

    fn after_step(
        &mut self,
        step: usize,
        seconds: f64,
        model: &BertTaskModel<B>,
        progress: &mut dyn Progress,
    ) -> Result<bool> {
        let Some(labels) = self.points_at.get(&step).cloned() else {
            return Ok(true);
        };
        for label in labels {
            if !self.times.contains_key(&label) {
                let time = PointTime { step, seconds };
                self.times.insert(label.clone(), time);
                update_map(&self.files.finetune_times, label.clone(), time)?;
            }
            let eval_only = self.eval_only.contains(&label);
            let selecting = self.selection.is_some();
            if !(eval_only || selecting) {
                continue;
            }
            let scores = self.scores_at(&label, model)?;
            let epoch = step as f64 / self.per_epoch.max(1) as f64;
            self.log.eval(step, epoch, &scores)?;
            if eval_only && !self.evals.contains_key(&label) {
                progress.log(&format!(
                    "BERT after {}: {}",
                    epochs(&label),
                    summary_line(&scores)
                ));
                update_map(&self.files.finetune_evals, label.clone(), scores.clone())?;
                self.evals.insert(label.clone(), scores.clone());
            }
            if selecting && !self.select(&label, step, scores, model, progress)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// BERT's scores at a point: recorded before (a resumed run passing it again) or measured.
    fn scores_at(&self, label: &str, model: &BertTaskModel<B>) -> Result<SplitMetrics> {
        let selected = self.selection.as_ref().and_then(|s| s.scored(label));
        match (self.evals.get(label), selected) {
            (Some(scores), _) => Ok(scores.clone()),
            (None, Some(point)) => Ok(point.scores.clone()),
            (None, None) => score_bert::<B>(self.ctx, &model.valid(), self.device),
        }
    }

    /// Adds a point to the selection, keeping its checkpoint when it is the best; false when
    /// fine-tuning stops here (`--early-stop-patience`).
    fn select(
        &mut self,
        label: &str,
        step: usize,
        scores: SplitMetrics,
        model: &BertTaskModel<B>,
        progress: &mut dyn Progress,
    ) -> Result<bool> {
        let Some(selection) = self.selection.as_mut() else {
            return Ok(true);
        };
        if selection.scored(label).is_none() {
            let at = label.to_string();
            if selection.observe(ScoredPoint { at, step, scores }) {
                write_atomic(&self.files.bert_best, &Checkpoint::module_bytes(model)?)?;
            }
        }
        let patience = self.ctx.config.finetune.early_stop_patience;
        let stop = patience.is_some_and(|n| selection.since_best() >= n) && step >= self.stop_from;
        if stop {
            selection.stopped_after = Some(label.to_string());
            progress.log(&format!(
                "early stop after {}: {} points without a better {} {} (best at {})",
                epochs(label),
                selection.since_best(),
                selection.split,
                selection.metric,
                selection.best.as_deref().unwrap_or("?")
            ));
        }
        write_json(&self.files.selection, &*selection)?;
        Ok(!stop)
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
