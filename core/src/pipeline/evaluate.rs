//! Model outputs on an evaluation split, the ensembles of two models' outputs, and the
//! registry's metrics on them.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, activation::softmax};

use super::batch::{Padding, make_batch};
use super::config::EnsembleRule;
use super::context::RunContext;
use super::data::{EvalSplit, Sample, Target};
use super::eval_peers::{EvalPeers, bert_on_peers};
use super::methods::SplitMetrics;
use super::progress::{NoProgress, Progress};
use crate::bert::BertInput;
use crate::error::{Error, Result};
use crate::head::HeadOutput;
use crate::metrics::glue::{accuracy, f1_binary, matthews, pearson, spearman};
use crate::squad::{PostprocessConfig, SquadPredictions, evaluate, postprocess};
use crate::task_model::BertTaskModel;
use crate::tasks::{MetricKind, TaskSpec};

/// A model's outputs on every sample of a split.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalOutputs {
    /// Class probabilities per example.
    Probs(Vec<Vec<f32>>),
    /// Regression outputs.
    Scores(Vec<f32>),
    /// Start/end logits per window (the window's tokens only).
    Spans(Vec<(Vec<f32>, Vec<f32>)>),
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

/// Collects one model's outputs batch by batch.
#[derive(Default)]
struct Collector {
    probs: Vec<Vec<f32>>,
    scores: Vec<f32>,
    spans: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Collector {
    fn push<B: Backend>(&mut self, output: HeadOutput<B>, chunk: &[Sample]) {
        match output {
            HeadOutput::Logits(logits) => {
                let [n, c] = logits.dims();
                if matches!(chunk[0].target, Target::Score(_)) {
                    self.scores.extend(to_vec(logits.reshape([n * c])));
                } else {
                    let p = to_vec(softmax(logits, 1));
                    self.probs.extend(p.chunks(c).map(<[f32]>::to_vec));
                }
            }
            HeadOutput::Span { start, end } => {
                let [_, seq] = start.dims();
                let s = to_vec(start);
                let e = to_vec(end);
                for (i, sample) in chunk.iter().enumerate() {
                    // Positions past the window's end are padding.
                    let len = sample.encoded.len();
                    self.spans.push((
                        s[i * seq..i * seq + len].to_vec(),
                        e[i * seq..i * seq + len].to_vec(),
                    ));
                }
            }
        }
    }

    fn finish(self) -> EvalOutputs {
        if !self.spans.is_empty() {
            EvalOutputs::Spans(self.spans)
        } else if !self.scores.is_empty() {
            EvalOutputs::Scores(self.scores)
        } else {
            EvalOutputs::Probs(self.probs)
        }
    }
}

/// Runs `forward` over `samples` in batches and collects probabilities (or scores, or span
/// logits) of each output it returns, so models sharing an encoder pass share one forward.
pub fn predict<B: Backend>(
    samples: &[Sample],
    batch_size: usize,
    padding: Padding,
    device: &B::Device,
    progress: &mut dyn Progress,
    label: &str,
    mut forward: impl FnMut(BertInput<B>) -> Vec<HeadOutput<B>>,
) -> Vec<EvalOutputs> {
    progress.start(label, samples.len() as u64, "examples");
    let mut collectors: Vec<Collector> = Vec::new();
    for chunk in samples.chunks(batch_size.max(1)) {
        let refs: Vec<&Sample> = chunk.iter().collect();
        let (input, _) = make_batch::<B>(&refs, padding, device);
        let outputs = forward(input);
        collectors.resize_with(outputs.len(), Collector::default);
        for (collector, output) in collectors.iter_mut().zip(outputs) {
            collector.push(output, chunk);
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    collectors.into_iter().map(Collector::finish).collect()
}

/// BERT's scores on every evaluation split, for the evaluation-only points of fine-tuning (no
/// predictions written, no progress shown: it runs inside the fine-tuning bar).
pub(crate) fn score_bert<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    bert: &BertTaskModel<B::InnerBackend>,
    device: &B::Device,
) -> Result<SplitMetrics> {
    let mut scores = SplitMetrics::new();
    let peers = EvalPeers::new(ctx.devices, device);
    for split in &ctx.data.eval {
        let bs = ctx.config.eval_batch_size;
        let outputs = bert_on_peers(
            &peers,
            &split.samples,
            (bs, ctx.padding()),
            &mut NoProgress,
            "",
            bert,
        )?;
        let scored = score(ctx.task, split, &outputs, &ctx.config.squad_postprocess)?;
        scores.insert(split.name.clone(), scored.metrics);
    }
    Ok(scores)
}

/// Softmax over one window's positions.
pub(crate) fn window_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|x| x / sum).collect()
}

fn combine(a: f32, b: f32, rule: EnsembleRule) -> f32 {
    match rule {
        EnsembleRule::Max => a.max(b),
        EnsembleRule::Mean => 0.5 * (a + b),
    }
}

/// Combines two models' outputs; `None` where the rule has no meaning (max of two regressions).
pub fn ensemble(a: &EvalOutputs, b: &EvalOutputs, rule: EnsembleRule) -> Option<EvalOutputs> {
    match (a, b) {
        (EvalOutputs::Probs(x), EvalOutputs::Probs(y)) => Some(EvalOutputs::Probs(
            x.iter()
                .zip(y)
                .map(|(p, q)| {
                    p.iter()
                        .zip(q)
                        .map(|(&u, &v)| combine(u, v, rule))
                        .collect()
                })
                .collect(),
        )),
        (EvalOutputs::Scores(x), EvalOutputs::Scores(y)) => match rule {
            EnsembleRule::Mean => Some(EvalOutputs::Scores(
                x.iter().zip(y).map(|(u, v)| 0.5 * (u + v)).collect(),
            )),
            EnsembleRule::Max => None,
        },
        (EvalOutputs::Spans(x), EvalOutputs::Spans(y)) => {
            // Softmax per window, combine, decode in log space (span score = log p_start + log p_end).
            let mix = |p: &[f32], q: &[f32]| {
                let (p, q) = (window_softmax(p), window_softmax(q));
                p.iter()
                    .zip(&q)
                    .map(|(&u, &v)| combine(u, v, rule).ln())
                    .collect::<Vec<f32>>()
            };
            Some(EvalOutputs::Spans(
                x.iter()
                    .zip(y)
                    .map(|((s1, e1), (s2, e2))| (mix(s1, s2), mix(e1, e2)))
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// Metrics of one split, and the per-example predictions to write.
pub struct SplitEvaluation {
    pub metrics: BTreeMap<String, f64>,
    /// GLUE: predicted label index or score per example. SQuAD: the official files' content.
    pub predictions: serde_json::Value,
    pub squad_predictions: Option<SquadPredictions>,
}

/// The index of the largest value: the decision of a classifier (the last of equal values, as
/// `Iterator::max_by` keeps it).
pub(crate) fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Scores `outputs` on `split` with the task's metrics.
pub fn score(
    task: &TaskSpec,
    split: &EvalSplit,
    outputs: &EvalOutputs,
    post: &PostprocessConfig,
) -> Result<SplitEvaluation> {
    let mut metrics = BTreeMap::new();
    match outputs {
        EvalOutputs::Probs(probs) => {
            let pred: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
            let gold: Vec<usize> = split
                .samples
                .iter()
                .map(|s| match s.target {
                    Target::Class(c) => c,
                    _ => 0,
                })
                .collect();
            for m in task.metrics {
                let v = match m {
                    MetricKind::Accuracy => accuracy(&pred, &gold),
                    MetricKind::F1 => f1_binary(&pred, &gold, 1),
                    MetricKind::Matthews => matthews(&pred, &gold),
                    _ => continue,
                };
                metrics.insert(m.name().to_string(), v);
            }
            Ok(SplitEvaluation {
                metrics,
                predictions: serde_json::json!(pred),
                squad_predictions: None,
            })
        }
        EvalOutputs::Scores(scores) => {
            let x: Vec<f64> = scores.iter().map(|&v| v as f64).collect();
            let y: Vec<f64> = split
                .samples
                .iter()
                .map(|s| match s.target {
                    Target::Score(v) => v as f64,
                    _ => 0.0,
                })
                .collect();
            metrics.insert("pearson".into(), pearson(&x, &y));
            metrics.insert("spearman".into(), spearman(&x, &y));
            Ok(SplitEvaluation {
                metrics,
                predictions: serde_json::json!(scores),
                squad_predictions: None,
            })
        }
        EvalOutputs::Spans(spans) => {
            let (dataset, examples, features) = split
                .squad
                .as_ref()
                .ok_or_else(|| Error::usage("span outputs on a split without SQuAD examples"))?;
            let predictions = postprocess(examples, features, spans, post);
            // With na_prob the evaluator also reports best_exact/best_f1: the score at the best
            // no-answer threshold, which shows whether spans rank well when the null decision fails.
            let na = predictions.na_probs();
            let m = evaluate(dataset, &predictions.answer_map(), Some(&na))?;
            let v = serde_json::to_value(&m).expect("plain data");
            for (k, x) in v.as_object().expect("object") {
                if let Some(x) = x.as_f64() {
                    metrics.insert(k.clone(), x);
                }
            }
            Ok(SplitEvaluation {
                metrics,
                predictions: serde_json::Value::Null,
                squad_predictions: Some(predictions),
            })
        }
    }
}
