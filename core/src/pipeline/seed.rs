//! One seed of a run: fine-tune ([`super::finetune`]), train the head
//! ([`super::head_training`]), evaluate ([`super::evaluation`]), export ([`super::export`]).
//! Every phase is resumable: finished phases are skipped, an interrupted one continues from its
//! last checkpoint with the same data order and dropout.

use std::collections::BTreeMap;
use std::time::Instant;

use super::context::{RunContext, SeedFiles, SeedResult, read_json, write_json};
use super::evaluation::evaluate_seed;
use super::export::export_seed;
use super::finetune::finetune;
use super::head_training::train_head;
use super::progress::Progress;
use crate::error::{Error, Result};

/// Runs (or resumes) one seed: fine-tune, head, evaluate, export.
pub fn run_seed<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<SeedResult> {
    let files = SeedFiles::new(ctx.seed_dir(seed));
    std::fs::create_dir_all(&files.dir).map_err(|e| Error::io(&files.dir, e))?;
    if let Some(done) = read_json::<SeedResult>(&files.result)? {
        progress.log(&format!(
            "seed {seed}: already complete ({})",
            files.result.display()
        ));
        return Ok(done);
    }
    let mut wall = BTreeMap::new();
    let finetuned = finetune::<B>(ctx, seed, &files, device, progress, &mut wall)?;
    let bert_extract = finetuned.load(&files.bert_extract, device)?;
    let head = train_head::<B>(
        ctx,
        seed,
        &files,
        &finetuned,
        &bert_extract,
        device,
        progress,
    )?;
    if let Some(seconds) = head.seconds {
        wall.insert("head".to_string(), seconds);
    }
    let started = Instant::now();
    let bert_final = finetuned.load(&files.bert_final, device)?;
    let evaluation = evaluate_seed(
        ctx,
        seed,
        &files,
        [&bert_extract, &bert_final],
        &head,
        device,
        progress,
    )?;
    wall.insert("evaluate".to_string(), started.elapsed().as_secs_f64());
    let started = Instant::now();
    export_seed(ctx, &files, &bert_extract, &finetuned.bert_config, &head)?;
    wall.insert("export".to_string(), started.elapsed().as_secs_f64());
    let result = SeedResult {
        seed,
        metrics: evaluation.metrics,
        finetune_loss: finetuned.loss,
        head_loss: head.curve,
        wall_seconds: wall,
        head_layer_share: head.model.layer_share(&head.config),
        squad_examples: evaluation.squad_examples,
    };
    write_json(&files.result, &result)?;
    Ok(result)
}
