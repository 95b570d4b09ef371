//! Phase 3 of a seed: every method on every evaluation split — BERT at each point and at the
//! end, BERTVision (every head), and their ensembles — scored with the task's metrics, with the
//! predictions written in the official formats.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Int, Tensor};

use super::batch::Padding;
use super::context::{RunContext, SquadRow, write_json};
use super::data::EvalSplit;
use super::eval_peers::{EvalPeers, bert_on_peers, predict_on_peers};
use super::evaluate::{EvalOutputs, ensemble, predict, score};
use super::files::SeedFiles;
use super::head_training::TrainedHead;
use super::hidden_cache::StatesKey;
use super::methods::{
    BERT, BERT_EXTRACT, BERT_FINAL, BERTVISION, MetricTable, SplitMetrics, ensemble_name, method_at,
};
use super::progress::Progress;
use crate::bert::{Bert, EncoderDtype};
use crate::error::Result;
use crate::fsutil::write_atomic;
use crate::head::AdapterPooler;
use crate::task_model::BertTaskModel;
use crate::wording::epochs;

/// Each method's answers (question id → text), per method key.
type Answers = Vec<(String, HashMap<String, String>)>;

/// What a seed's evaluation collects: every method's metrics, and (SQuAD) the answers of the
/// run's main methods per split, for the per-question table.
#[derive(Default)]
pub(super) struct SeedEvaluation {
    pub metrics: MetricTable,
    answers: BTreeMap<String, Answers>,
}

impl SeedEvaluation {
    /// Scores `out` on `split` under every key in `keys`, and writes its predictions under
    /// each; the answers under a main key (one without a point: `bertvision`, `bert_final`) go
    /// to the per-question table.
    fn record(
        &mut self,
        ctx: &RunContext<'_>,
        files: &SeedFiles,
        split: &EvalSplit,
        keys: &[String],
        out: &EvalOutputs,
    ) -> Result<()> {
        let scored = score(ctx.task, split, out, &ctx.config.squad_postprocess)?;
        for key in keys {
            let base =
                files
                    .predictions
                    .join(format!("{}.{}", key.replace('/', "-of-"), split.name));
            let file = |suffix: &str| base.with_extension(format!("{}.{suffix}", split.name));
            if let Some(sp) = &scored.squad_predictions {
                if !key.contains('@') {
                    let entry = self.answers.entry(split.name.clone()).or_default();
                    entry.push((key.clone(), sp.answer_map()));
                }
                write_atomic(&file("predictions.json"), sp.answers_json().as_bytes())?;
                write_atomic(&file("na_prob.json"), sp.na_prob_json().as_bytes())?;
            } else {
                write_json(&file("json"), &scored.predictions)?;
            }
            self.metrics
                .entry(key.clone())
                .or_default()
                .insert(split.name.clone(), scored.metrics.clone());
        }
        Ok(())
    }

    /// BERT's scores at a point measured during fine-tuning, under `bert@p`.
    pub fn add_scores(&mut self, key: String, scores: &SplitMetrics) {
        self.metrics.entry(key).or_default().extend(scores.clone());
    }

    /// One row per evaluated SQuAD question of every split, with the main methods' answers.
    pub fn squad_examples(&self, ctx: &RunContext<'_>) -> BTreeMap<String, Vec<SquadRow>> {
        let mut rows = BTreeMap::new();
        for split in &ctx.data.eval {
            if let (Some((_, examples, _)), Some(answers)) =
                (&split.squad, self.answers.get(&split.name))
            {
                rows.insert(split.name.clone(), squad_rows(examples, answers));
            }
        }
        rows
    }
}

/// BERT at the end of fine-tuning, as `bert_final` and `bert@<epochs>`; only as `bert_final`
/// when `--select-best` chose an earlier point (`is_end` false).
pub(super) fn evaluate_final<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    (seed, files): (u64, &SeedFiles),
    (bert_final, checkpoint, is_end): (&BertTaskModel<B::InnerBackend>, &Path, bool),
    evaluation: &mut SeedEvaluation,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<()> {
    let mut keys = vec![BERT_FINAL.to_string()];
    if is_end {
        keys.push(method_at(BERT, ctx.config.finetune.epochs, 1.0));
    }
    let peers = EvalPeers::new(ctx.devices, device);
    for split in &ctx.data.eval {
        let label = format!("seed {seed} eval BERT final ({})", split.name);
        let out = bert_outputs(ctx, split, checkpoint, || {
            let batches = (ctx.config.eval_batch_size, ctx.padding());
            bert_on_peers(
                &peers,
                &split.samples,
                batches,
                progress,
                &label,
                bert_final,
            )
        })?;
        evaluation.record(ctx, files, split, &keys, &out)?;
    }
    Ok(())
}

/// A point's models: BERT with its task head, the encoder in the float type the heads read,
/// the heads and how their inputs are padded.
pub(super) struct PointModels<'m, B: crate::TrainBackend> {
    pub point: f64,
    /// The point's checkpoint file (what cached states and outputs are keyed by).
    pub checkpoint: &'m Path,
    pub bert: &'m BertTaskModel<B::InnerBackend>,
    pub encoder: &'m Bert<B::InnerBackend>,
    pub heads: &'m [TrainedHead<B>],
    pub head_padding: Padding,
}

/// Every method at one point, on every split: `bert@p`, each head's `bertvision@p[/f]` and the
/// ensembles with BERT; at the run's last point also under the main keys (`bert_extract`,
/// `bertvision`, `ensemble_*`).
pub(super) fn evaluate_point<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    (seed, files): (u64, &SeedFiles),
    models: &PointModels<'_, B>,
    evaluation: &mut SeedEvaluation,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<()> {
    let point = models.point;
    let last = point == ctx.config.last_point();
    let main = |key: &str, fraction: f64| (last && fraction == 1.0).then(|| key.to_string());
    for split in &ctx.data.eval {
        let (bert_out, head_outs) = point_outputs(ctx, seed, split, models, device, progress)?;
        let keys: Vec<String> = [Some(method_at(BERT, point, 1.0)), main(BERT_EXTRACT, 1.0)]
            .into_iter()
            .flatten()
            .collect();
        evaluation.record(ctx, files, split, &keys, &bert_out)?;
        for (head, out) in models.heads.iter().zip(&head_outs) {
            let keys: Vec<String> = [Some(head.key.clone()), main(BERTVISION, head.fraction)]
                .into_iter()
                .flatten()
                .collect();
            evaluation.record(ctx, files, split, &keys, out)?;
            for &rule in &ctx.config.ensemble {
                let Some(combined) = ensemble(&bert_out, out, rule) else {
                    continue;
                };
                let name = ensemble_name(rule);
                let keys: Vec<String> = [
                    Some(method_at(&name, point, head.fraction)),
                    main(&name, head.fraction),
                ]
                .into_iter()
                .flatten()
                .collect();
                evaluation.record(ctx, files, split, &keys, &combined)?;
            }
        }
    }
    Ok(())
}

/// BERT's and every head's outputs at a point on one split. BERT and the heads read the same
/// hidden states: one encoder pass serves all unless the heads need their own (fixed) padding or
/// their encoder another float type.
fn point_outputs<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    split: &EvalSplit,
    models: &PointModels<'_, B>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<(EvalOutputs, Vec<EvalOutputs>)> {
    if let Some(outputs) = cached_point_outputs(ctx, seed, split, models, device, progress) {
        return outputs;
    }
    let cfg = ctx.config;
    let (name, samples, path) = (&split.name, &split.samples, cfg.head.path);
    let peers = EvalPeers::new(ctx.devices, device);
    let batches = |padding| (cfg.eval_batch_size, padding);
    let heads: Vec<AdapterPooler<B::InnerBackend>> =
        models.heads.iter().map(|h| h.model.clone()).collect();
    let run_heads = |heads: &[AdapterPooler<_>], states: &[_], mask: &Tensor<_, 2, Int>| {
        let run = |h: &AdapterPooler<_>| h.forward_by(states, mask.clone(), path);
        heads.iter().map(run).collect::<Vec<_>>()
    };
    let bert_label = format!("seed {seed} eval BERT at {}", epochs(models.point));
    let shared_pass = models.head_padding == ctx.padding() && cfg.head.encoder_dtype.is_f32();
    if shared_pass {
        let label = format!("{bert_label} + BERTVision ({name})");
        let both = (models.bert.clone(), heads);
        let mut outs = predict_on_peers(
            &peers,
            samples,
            batches(ctx.padding()),
            progress,
            &label,
            &both,
            |(bert, heads), d| (bert.clone().to_device(d), on_device(heads, d)),
            |(bert, heads), input| {
                let mask = input.attention_mask.clone();
                let (states, task_out) = bert.forward(input);
                let heads_out = run_heads(heads, &states.hidden_states, &mask);
                std::iter::once(task_out).chain(heads_out).collect()
            },
        )?;
        let bert = outs.remove(0);
        return Ok((bert, outs));
    }
    let label = format!("{bert_label} ({name})");
    let batching = batches(ctx.padding());
    let bert = bert_on_peers(&peers, samples, batching, progress, &label, models.bert)?;
    let label = format!(
        "seed {seed} eval BERTVision at {} ({name})",
        epochs(models.point)
    );
    let both = (models.encoder.clone(), heads);
    let heads = predict_on_peers(
        &peers,
        samples,
        batches(models.head_padding),
        progress,
        &label,
        &both,
        |(encoder, heads), d| (encoder.clone().to_device(d), on_device(heads, d)),
        |(encoder, heads), input| {
            let mask = input.attention_mask.clone();
            let states = encoder.forward(input).hidden_states_f32();
            run_heads(heads, &states, &mask)
        },
    )?;
    Ok((bert, heads))
}

/// Copies of `heads` on `device`.
fn on_device<B: burn::tensor::backend::Backend>(
    heads: &[AdapterPooler<B>],
    device: &B::Device,
) -> Vec<AdapterPooler<B>> {
    heads.iter().map(|h| h.clone().to_device(device)).collect()
}

/// BERT's outputs on `split` from the checkpoint `checkpoint`: kept in the hidden-state cache
/// when there is one (a trial of `search` then scores BERT once per split, not once per trial).
fn bert_outputs(
    ctx: &RunContext<'_>,
    split: &EvalSplit,
    checkpoint: &Path,
    compute: impl FnOnce() -> Result<EvalOutputs>,
) -> Result<EvalOutputs> {
    match ctx.hidden_cache {
        Some(cache) => {
            let name = format!("BERT on {}", split.name);
            let key = StatesKey::new(checkpoint, EncoderDtype::F32, &name, &split.samples, None);
            cache.outputs(&key, compute)
        }
        None => compute(),
    }
}

/// [`point_outputs`] from the hidden-state cache: BERT's outputs kept (computed over the peers
/// the first time), the heads on kept states (on this thread: the encoder, the costly part,
/// does not run again); `None` without a cache or when the split's states do not fit it.
fn cached_point_outputs<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    split: &EvalSplit,
    models: &PointModels<'_, B>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Option<Result<(EvalOutputs, Vec<EvalOutputs>)>> {
    let cache = ctx.hidden_cache?;
    let cfg = ctx.config;
    let (samples, padding) = (&split.samples, models.head_padding);
    let dtype = cfg.head.encoder_dtype;
    let key = StatesKey::new(
        models.checkpoint,
        dtype,
        &split.name,
        samples,
        padding.fixed,
    );
    let bs = cfg.eval_batch_size;
    let states = cache.states(&key, models.encoder, samples, padding, bs, device, progress)?;
    let bert_label = format!("seed {seed} eval BERT at {}", epochs(models.point));
    let bert = bert_outputs(ctx, split, models.checkpoint, || {
        let label = format!("{bert_label} ({})", split.name);
        let peers = EvalPeers::new(ctx.devices, device);
        let batching = (bs, ctx.padding());
        bert_on_peers(&peers, samples, batching, progress, &label, models.bert)
    });
    let bert = match bert {
        Ok(bert) => bert,
        Err(e) => return Some(Err(e)),
    };
    let label = format!(
        "seed {seed} eval BERTVision at {} ({}, kept states)",
        epochs(models.point),
        split.name
    );
    // `predict` walks the samples in order, one batch after the other.
    let mut next = 0;
    let heads = predict(samples, bs, padding, device, progress, &label, |input| {
        let mask = input.attention_mask.clone();
        let [n, seq] = mask.dims();
        let rows: Vec<usize> = (next..next + n).collect();
        next += n;
        let states = states.batch(&rows, seq, device);
        let heads = models.heads.iter();
        heads
            .map(|h| h.model.forward_by(&states, mask.clone(), cfg.head.path))
            .collect()
    });
    Some(Ok((bert, heads)))
}

/// One row per evaluated question: gold answers and each method's answer.
fn squad_rows(examples: &[crate::squad::SquadExample], answers: &Answers) -> Vec<SquadRow> {
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
