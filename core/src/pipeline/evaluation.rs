//! Phase 3 of a seed: every method on every evaluation split — BERT at the extraction point and
//! at the end, BERTVision, and their ensembles — scored with the task's metrics, with the
//! predictions written in the official formats.

use std::collections::{BTreeMap, HashMap};

use super::context::{RunContext, SeedFiles, SquadRow, write_json};
use super::data::EvalSplit;
use super::evaluate::{EvalOutputs, ensemble, predict, score};
use super::head_training::TrainedHead;
use super::methods::{BERT_EXTRACT, BERT_FINAL, BERTVISION, MetricTable, ensemble_name};
use super::progress::Progress;
use crate::bert::BertInput;
use crate::error::Result;
use crate::fsutil::write_atomic;
use crate::head::HeadOutput;
use crate::task_model::BertTaskModel;

/// What a seed's evaluation gives.
pub(super) struct SeedEvaluation {
    pub metrics: MetricTable,
    pub squad_examples: BTreeMap<String, Vec<SquadRow>>,
}

/// Evaluates `[BERT at the extraction point, BERT final]` and `head` on every split of the run.
pub(super) fn evaluate_seed<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    files: &SeedFiles,
    bert: [&BertTaskModel<B::InnerBackend>; 2],
    head: &TrainedHead<B>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<SeedEvaluation> {
    let mut evaluation = SeedEvaluation {
        metrics: BTreeMap::new(),
        squad_examples: BTreeMap::new(),
    };
    for split in &ctx.data.eval {
        let outputs = split_outputs(ctx, seed, split, bert, head, device, progress);
        let mut squad_answers: Vec<(String, HashMap<String, String>)> = Vec::new();
        for (method, out) in &outputs {
            let scored = score(ctx.task, split, out, &ctx.config.squad_postprocess)?;
            let base = files.predictions.join(format!("{method}.{}", split.name));
            let file = |suffix: &str| base.with_extension(format!("{}.{suffix}", split.name));
            if let Some(sp) = &scored.squad_predictions {
                squad_answers.push((method.clone(), sp.answer_map()));
                write_atomic(&file("predictions.json"), sp.answers_json().as_bytes())?;
                write_atomic(&file("na_prob.json"), sp.na_prob_json().as_bytes())?;
            } else {
                write_json(&file("json"), &scored.predictions)?;
            }
            evaluation
                .metrics
                .entry(method.clone())
                .or_default()
                .insert(split.name.clone(), scored.metrics);
        }
        if let Some((_, examples, _)) = &split.squad {
            let rows = squad_rows(examples, &squad_answers);
            evaluation.squad_examples.insert(split.name.clone(), rows);
        }
    }
    Ok(evaluation)
}

/// Every method's outputs on one split, in the order of the results' method keys.
fn split_outputs<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    split: &EvalSplit,
    [bert_extract, bert_final]: [&BertTaskModel<B::InnerBackend>; 2],
    head: &TrainedHead<B>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Vec<(String, EvalOutputs)> {
    let cfg = ctx.config;
    let name = &split.name;
    type Forward<'f, B> = &'f mut dyn FnMut(BertInput<B>) -> Vec<HeadOutput<B>>;
    let mut run = |label: String, padding, forward: Forward<'_, B::InnerBackend>| {
        let samples = &split.samples;
        predict(
            samples,
            cfg.eval_batch_size,
            padding,
            device,
            progress,
            &label,
            forward,
        )
    };
    let label = format!("seed {seed} eval BERT final ({name})");
    let final_out = run(label, ctx.padding(), &mut |input| {
        vec![bert_final.forward(input).1]
    })
    .remove(0);
    // BERT at the extraction point and BERTVision read the same hidden states: one pass serves
    // both unless the head needs its own (fixed) padding or its encoder another float type.
    let shared_pass = head.padding == ctx.padding() && cfg.head.encoder_dtype.is_f32();
    let extract_label = format!("seed {seed} eval BERT at {} epochs", cfg.extract_at);
    let (extract_out, bv_out) = if shared_pass {
        let label = format!("{extract_label} + BERTVision ({name})");
        let mut both = run(label, ctx.padding(), &mut |input| {
            let mask = input.attention_mask.clone();
            let (states, task_out) = bert_extract.forward(input);
            let bv = head
                .model
                .forward_by(&states.hidden_states, mask, cfg.head.path);
            vec![task_out, bv]
        });
        let bv = both.remove(1);
        (both.remove(0), bv)
    } else {
        let extract = run(
            format!("{extract_label} ({name})"),
            ctx.padding(),
            &mut |input| vec![bert_extract.forward(input).1],
        )
        .remove(0);
        let label = format!("seed {seed} eval BERTVision ({name})");
        let bv = run(label, head.padding, &mut |input| {
            let mask = input.attention_mask.clone();
            let states = head.encoder.forward(input).hidden_states_f32();
            vec![head.model.forward_by(&states, mask, cfg.head.path)]
        })
        .remove(0);
        (extract, bv)
    };
    let mut outputs: Vec<(String, EvalOutputs)> = vec![
        (BERT_EXTRACT.into(), extract_out.clone()),
        (BERT_FINAL.into(), final_out),
        (BERTVISION.into(), bv_out.clone()),
    ];
    for &rule in &cfg.ensemble {
        if let Some(e) = ensemble(&extract_out, &bv_out, rule) {
            outputs.push((ensemble_name(rule), e));
        }
    }
    outputs
}

/// One row per evaluated question: gold answers and each method's answer.
fn squad_rows(
    examples: &[crate::squad::SquadExample],
    answers: &[(String, HashMap<String, String>)],
) -> Vec<SquadRow> {
    examples
        .iter()
        .map(|e| SquadRow {
            id: e.id.clone(),
            question: e.question.clone(),
            gold: e.answers.iter().map(|(text, _)| text.clone()).collect(),
            context_words: e.context.split_whitespace().count(),
            answers: answers
                .iter()
                .map(|(method, map)| (method.clone(), map.get(&e.id).cloned().unwrap_or_default()))
                .collect(),
        })
        .collect()
}
