//! A sentence, or a pair, classified (or scored, STS-B) with an exported GLUE model, the way
//! `bertvision classify` and the browser's classification page ask: tokenised as the run
//! tokenised its task (the export's maximum length), one encoder pass feeding BERT's classifier
//! and the AdapterPooler, and each method's probabilities — BERT, BERTVision and the two
//! ensembles, combined as evaluation combines them.
//!
//! As in [`super::qa`], reading tensors back is the caller's: [`ExportedModels::forward`]
//! returns tensors.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::Method;
use super::export::ExportedModels;
use crate::bert::BertInput;
use crate::error::{Error, Result};
use crate::head::{HeadKind, HeadOutput};
use crate::pipeline::evaluate::{EvalOutputs, argmax, window_softmax};
use crate::tasks::glue::{GlueInputs, Label};
use crate::tasks::{TaskKind, TaskSpec};
use crate::tokenize::TokenBatch;

impl<B: crate::KernelBackend> ExportedModels<B> {
    /// One encoder pass: `[batch, outputs]` logits (scores for a regression) of BERT and of the
    /// AdapterPooler. Span exports give their start logits only: use [`super::qa`] for them.
    pub fn forward(&self, input: BertInput<B>) -> [Tensor<B, 2>; 2] {
        self.forward_outputs(input).map(logits_of)
    }

    /// The length every input is padded to when the head has weights per position (`Flatten`);
    /// `None` when any length will do.
    pub fn fixed_length(&self) -> Option<usize> {
        (self.head_config.kind == HeadKind::Flatten).then_some(self.head_config.max_len)
    }

    /// The maximum tokens per input the run used (longer inputs are cut, longest first).
    pub fn max_length(&self) -> usize {
        self.head_config.max_len
    }
}

fn logits_of<B: Backend>(output: HeadOutput<B>) -> Tensor<B, 2> {
    match output {
        HeadOutput::Logits(logits) => logits,
        HeadOutput::Span { start, .. } => start,
    }
}

/// A sentence (pair) as one padded batch, and its tokens for display.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyQuery {
    pub batch: TokenBatch,
    pub tokens: Vec<String>,
}

impl ClassifyQuery {
    pub fn new<B: crate::KernelBackend>(
        models: &mut ExportedModels<B>,
        text: &str,
        pair: Option<&str>,
    ) -> Result<Self> {
        if models.info.span {
            return Err(Error::usage(format!(
                "the export is a {} (question answering) model: ask it with `bertvision answer`",
                models.info.task
            )));
        }
        if text.trim().is_empty() || pair.is_some_and(|p| p.trim().is_empty()) {
            return Err(Error::usage(
                "the text (and the pair, when given) must not be empty",
            ));
        }
        let (max_len, fixed) = (models.max_length(), models.fixed_length());
        let encoded = models.tokenizer.encode(text, pair, Some(max_len))?;
        let batch = TokenBatch::pad(&[&encoded], models.tokenizer.pad_id(), fixed);
        Ok(ClassifyQuery {
            batch,
            tokens: encoded.tokens,
        })
    }
}

/// One method's decision about a query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MethodDecision {
    pub method: Method,
    /// The predicted label as the task's files spell it (`entailment`, `1`), or the score.
    pub prediction: String,
    /// Per label, in the task's order: softmaxes for BERT and BERTVision, their element-wise
    /// maximum or mean for the ensembles. Empty for a regression.
    pub probabilities: Vec<f32>,
    /// The regression score (STS-B), unclipped.
    pub score: Option<f32>,
}

/// Every method's decision about one query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassifyAnswers {
    pub task: String,
    /// The task's labels, in the order of `probabilities`; empty for a regression.
    pub labels: Vec<String>,
    pub methods: Vec<MethodDecision>,
}

/// BERT's and BERTVision's logits (one example) to every method's decision.
pub fn classify(task: &TaskSpec, bert: &[f32], bertvision: &[f32]) -> ClassifyAnswers {
    let outputs = |logits: &[f32]| match task.kind {
        TaskKind::Regression => EvalOutputs::Scores(vec![logits[0]]),
        _ => EvalOutputs::Probs(vec![window_softmax(logits)]),
    };
    let (bert, head) = (outputs(bert), outputs(bertvision));
    let methods = Method::ALL
        .into_iter()
        .filter_map(|m| Some((m, m.outputs(&bert, &head)?)))
        .map(|(method, out)| decision(task, method, &out))
        .collect();
    ClassifyAnswers {
        task: task.name.to_string(),
        labels: labels(task).iter().map(|l| l.to_string()).collect(),
        methods,
    }
}

/// A sentence (pair) the browser's classification page offers, with its gold label.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassifySample {
    pub text: String,
    pub pair: Option<String>,
    /// The gold label as the task spells it, or the score; `None` for a test file.
    pub label: Option<String>,
}

/// The samples file of the classification page: the task and up to `n` rows of a GLUE file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassifySamples {
    pub task: String,
    pub samples: Vec<ClassifySample>,
}

/// The first `n` rows of a GLUE file as samples (labels spelled as the task spells them).
pub fn classify_samples(task: &TaskSpec, inputs: &GlueInputs, n: usize) -> ClassifySamples {
    let samples = (inputs.rows.iter().take(n))
        .map(|row| ClassifySample {
            text: row.text_a.clone(),
            pair: row.text_b.clone(),
            label: row.label.as_ref().map(|l| match l {
                Label::Class(c) => labels(task)[*c].to_string(),
                Label::Score(s) => format!("{s:.3}"),
            }),
        })
        .collect();
    ClassifySamples {
        task: task.name.to_string(),
        samples,
    }
}

fn labels(task: &TaskSpec) -> &'static [&'static str] {
    match task.kind {
        TaskKind::Classification { labels } => labels,
        _ => &[],
    }
}

fn decision(task: &TaskSpec, method: Method, out: &EvalOutputs) -> MethodDecision {
    match out {
        EvalOutputs::Scores(s) => MethodDecision {
            method,
            prediction: format!("{:.3}", s[0]),
            probabilities: Vec::new(),
            score: Some(s[0]),
        },
        EvalOutputs::Probs(p) => MethodDecision {
            method,
            prediction: labels(task)[argmax(&p[0])].to_string(),
            probabilities: p[0].clone(),
            score: None,
        },
        EvalOutputs::Spans(_) => unreachable!("classification outputs only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::task;

    #[test]
    fn every_method_decides_and_regressions_have_no_max_ensemble() {
        let rte = task("RTE").unwrap();
        let answers = classify(rte, &[2.0, 0.0], &[0.0, 1.0]);
        let names: Vec<&str> = answers.methods.iter().map(|m| m.method.name()).collect();
        assert_eq!(
            names,
            ["bert", "bertvision", "ensemble_max", "ensemble_mean"]
        );
        assert_eq!(answers.methods[0].prediction, "entailment");
        assert_eq!(answers.methods[1].prediction, "not_entailment");
        let mean = &answers.methods[3].probabilities;
        let bert_p0 = 1.0 / (1.0 + (-2.0f32).exp());
        let head_p0 = 1.0 / (1.0 + 1.0f32.exp());
        assert!((mean[0] - 0.5 * (bert_p0 + head_p0)).abs() < 1e-6);
        let stsb = classify(task("STS-B").unwrap(), &[4.0], &[2.0]);
        assert_eq!(stsb.methods.len(), 3);
        assert_eq!(stsb.methods[2].score, Some(3.0));
        assert!(stsb.labels.is_empty());
    }
}
