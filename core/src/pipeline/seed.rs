//! One seed of a run: fine-tune ([`super::finetune`]); at every extraction point train the
//! heads ([`super::head_training`]) and evaluate BERT, the heads and their ensembles
//! ([`super::evaluation`]); evaluate the final BERT; export ([`super::export`]). Every phase is
//! resumable: finished phases are skipped, an interrupted one continues from its last
//! checkpoint with the same data order and dropout. For `train-head` the fine-tuning is read
//! from the run it starts from, never repeated.

use std::collections::BTreeMap;
use std::time::Instant;

use super::context::{PointCost, RunContext, SeedResult, read_json, write_json};
use super::evaluation::{PointModels, SeedEvaluation, evaluate_final, evaluate_point};
use super::export::export_seed;
use super::files::{SeedFiles, read_map};
use super::finetune::{Finetuned, curve_points, finetune, step_at};
use super::head_training::{TrainedHead, train_head};
use super::methods::{BERT, BERT_EXTRACT, BERT_FINAL, BERTVISION, method_at, point_label};
use super::progress::Progress;
use super::trainer::LossCurve;
use crate::error::{Error, Result};
use crate::task_model::BertTaskModel;

/// Runs (or resumes) one seed: fine-tune, heads and evaluation at every point, export.
pub fn run_seed<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<SeedResult> {
    let files = SeedFiles::new(
        ctx.seed_dir(seed),
        ctx.checkpoint_dir(seed),
        ctx.config.last_point(),
    );
    std::fs::create_dir_all(&files.dir).map_err(|e| Error::io(&files.dir, e))?;
    if let Some(done) = read_json::<SeedResult>(&files.result)? {
        progress.log(&format!(
            "seed {seed}: already complete ({})",
            files.result.display()
        ));
        return Ok(with_point_keys(done, ctx));
    }
    let mut wall = BTreeMap::new();
    let finetuned = match ctx.from_run {
        None => finetune::<B>(ctx, seed, &files, device, progress, &mut wall)?,
        Some(_) => Finetuned::read(ctx, &files, device)?,
    };
    let mut evaluation = SeedEvaluation::default();
    let (last_bert, last_heads) = every_point::<B>(
        ctx,
        (seed, &files),
        &finetuned,
        &mut evaluation,
        &mut wall,
        device,
        progress,
    )?;
    for (label, scores) in &finetuned.evals {
        evaluation.add_scores(format!("{BERT}@{label}"), scores);
    }
    let started = Instant::now();
    let bert_final = finetuned.load(&files.bert_final, device)?;
    let end = point_label(ctx.config.finetune.epochs);
    let selection = &finetuned.selection;
    let is_end = selection
        .as_ref()
        .is_none_or(|s| s.best.as_deref() == Some(end.as_str()));
    evaluate_final::<B>(
        ctx,
        (seed, &files),
        (&bert_final, &files.bert_final, is_end),
        &mut evaluation,
        device,
        progress,
    )?;
    *wall.entry("evaluate".to_string()).or_default() += started.elapsed().as_secs_f64();
    if let Some(end_point) = selection
        .as_ref()
        .and_then(|s| s.scored(&end))
        .filter(|_| !is_end)
    {
        // `bert_final` is an earlier point: the end model's scores, measured during
        // fine-tuning on the same splits, stay `bert@<epochs>`.
        let key = method_at(BERT, ctx.config.finetune.epochs, 1.0);
        evaluation.add_scores(key, &end_point.scores);
    }
    let started = Instant::now();
    let head_config = ctx.head_config(&finetuned.bert_config);
    let head = &last_heads[0];
    export_seed(
        ctx,
        &files,
        &last_bert,
        &finetuned.bert_config,
        &head.model,
        &head_config,
    )?;
    wall.insert("export".to_string(), started.elapsed().as_secs_f64());
    let result = SeedResult {
        seed,
        squad_examples: evaluation.squad_examples(ctx),
        metrics: evaluation.metrics,
        finetune_loss: finetuned.loss.clone(),
        head_loss: head.curve.clone(),
        wall_seconds: wall,
        head_layer_share: head.model.layer_share(&head_config),
        costs: costs(ctx, &finetuned, &files)?,
        head_losses: head_losses(ctx, &files)?,
        selection: finetuned.selection.clone(),
    };
    write_json(&files.result, &result)?;
    Ok(result)
}

/// The heads and the evaluation at every extraction point; returns the last point's BERT and
/// heads (the run's export).
#[allow(clippy::type_complexity)]
fn every_point<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    (seed, files): (u64, &super::files::SeedFiles),
    finetuned: &Finetuned<B>,
    evaluation: &mut SeedEvaluation,
    wall: &mut BTreeMap<String, f64>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<(BertTaskModel<B::InnerBackend>, Vec<TrainedHead<B>>)> {
    let cfg = ctx.config;
    let head_padding = ctx.head_padding(&ctx.head_config(&finetuned.bert_config));
    let mut last = None;
    for &point in &cfg.extract_at {
        let checkpoint = files.bert_at(point);
        let bert = finetuned.load(&checkpoint, device)?;
        // The encoder that feeds the heads: the same checkpoint, in the float type asked for
        // (bf16 on a GPU halves its memory traffic); the heads themselves always see f32.
        let encoder = bert
            .bert
            .clone()
            .with_float_dtype(cfg.head.encoder_dtype.float_dtype());
        let mut heads = Vec::new();
        for fraction in cfg.head_fractions() {
            let at = (point, fraction);
            let frozen = (&encoder, checkpoint.as_path());
            let head = train_head(ctx, seed, files, finetuned, frozen, at, device, progress)?;
            if let Some(seconds) = head.seconds_here {
                *wall.entry("head".to_string()).or_default() += seconds;
            }
            heads.push(head);
        }
        let started = Instant::now();
        let models = PointModels {
            point,
            checkpoint: &checkpoint,
            bert: &bert,
            encoder: &encoder,
            heads: &heads,
            head_padding,
        };
        evaluate_point(ctx, (seed, files), &models, evaluation, device, progress)?;
        *wall.entry("evaluate".to_string()).or_default() += started.elapsed().as_secs_f64();
        last = Some((bert, heads));
    }
    last.ok_or_else(|| Error::usage("--extract-at: give at least one point"))
}

/// Every point of BERT's curve with what it cost this seed.
fn costs<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    finetuned: &Finetuned<B>,
    files: &SeedFiles,
) -> Result<Vec<PointCost>> {
    let head_times: BTreeMap<String, f64> = read_map(&files.head_times)?;
    let batch = ctx.config.finetune.batch_size.max(1);
    let per_epoch = ctx.train.len().div_ceil(batch);
    let total = ((ctx.config.finetune.epochs * per_epoch as f64).round() as usize).max(1);
    Ok(curve_points(ctx)
        .into_iter()
        .map(|at| {
            let time = finetuned.times.get(&point_label(at));
            PointCost {
                at,
                finetune_steps: time.map_or(step_at(at, per_epoch, total), |t| t.step),
                finetune_seconds: time.map(|t| t.seconds),
                head_seconds: head_times.get(&method_at(BERTVISION, at, 1.0)).copied(),
            }
        })
        .collect())
}

/// The loss curves of every head but the main one, by method key.
fn head_losses(ctx: &RunContext<'_>, files: &SeedFiles) -> Result<BTreeMap<String, LossCurve>> {
    let cfg = ctx.config;
    let mut curves = BTreeMap::new();
    for &point in &cfg.extract_at {
        for fraction in cfg.head_fractions() {
            if point == cfg.last_point() && fraction == 1.0 {
                continue;
            }
            let path = files.head(point, fraction).loss;
            if let Some(curve) = read_json::<LossCurve>(&path)? {
                curves.insert(method_at(BERTVISION, point, fraction), curve);
            }
        }
    }
    Ok(curves)
}

/// A seed finished by a version that wrote only the main keys gets the same numbers under the
/// keys of its point (`bert@1`, `bertvision@1`, …, `bert@<epochs>`), so that it summarises with
/// newer seeds of the same configuration.
fn with_point_keys(mut done: SeedResult, ctx: &RunContext<'_>) -> SeedResult {
    if done.metrics.keys().any(|k| k.contains('@')) {
        return done;
    }
    let cfg = ctx.config;
    let last = cfg.last_point();
    let mut copies: Vec<(String, String)> = vec![
        (BERT_EXTRACT.into(), method_at(BERT, last, 1.0)),
        (BERT_FINAL.into(), method_at(BERT, cfg.finetune.epochs, 1.0)),
        (BERTVISION.into(), method_at(BERTVISION, last, 1.0)),
    ];
    for rule in &cfg.ensemble {
        let name = super::methods::ensemble_name(*rule);
        copies.push((name.clone(), method_at(&name, last, 1.0)));
    }
    for (from, to) in copies {
        if let Some(metrics) = done.metrics.get(&from).cloned() {
            done.metrics.entry(to).or_insert(metrics);
        }
    }
    done
}
