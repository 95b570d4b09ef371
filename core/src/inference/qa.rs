//! One question about one passage, asked the way the browser demo and `bertvision answer` ask
//! it: the passage cut into the same doc-stride windows as evaluation, one encoder pass feeding
//! both BERT's span head and the AdapterPooler, and three decisions — BERT, BERTVision and their
//! ensemble (mean of the per-window probabilities, as in evaluation).
//!
//! Reading tensors back is left to the caller ([`QaModels::forward`] returns tensors): the
//! browser must read them asynchronously, native code may block.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::export::{ExportFiles, ExportedModels};
use crate::bert::{BertConfig, BertInput};
use crate::error::{Error, Result};
use crate::head::{AdapterPooler, AdapterPoolerConfig, HeadOutput};
use crate::pipeline::config::EnsembleRule;
use crate::pipeline::evaluate::{EvalOutputs, ensemble, window_softmax};
use crate::squad::postprocess::{SquadPrediction, postprocess};
use crate::squad::{FeatureConfig, PostprocessConfig, SquadExample, SquadFeature, featurize};
use crate::task_model::BertTaskModel;
use crate::tokenize::{BertTokenizer, Encoded, TokenBatch};

/// An exported SQuAD model pair: the fine-tuned BERT (with its span head) and the AdapterPooler
/// trained on that BERT's hidden states.
pub struct QaModels<B: Backend> {
    pub bert: BertTaskModel<B>,
    pub head: AdapterPooler<B>,
    pub config: BertConfig,
    pub head_config: AdapterPoolerConfig,
    pub tokenizer: BertTokenizer,
}

impl<B: crate::KernelBackend> QaModels<B> {
    /// Validates and loads a SQuAD export; every error names the file at fault.
    pub fn load(files: ExportFiles, device: &B::Device) -> Result<Self> {
        let name = files.config.name.clone();
        let models = ExportedModels::load(files, device)?;
        if !models.info.span {
            return Err(Error::invalid(
                &name,
                format!(
                    "is a `{}` classification export; question answering needs a SQuAD export (see `bertvision classify`)",
                    models.info.task
                ),
            ));
        }
        Ok(QaModels {
            bert: models.bert,
            head: models.head,
            config: models.config,
            head_config: models.head_config,
            tokenizer: models.tokenizer,
        })
    }

    /// One encoder pass; `[windows, seq]` start and end logits of BERT and of the AdapterPooler.
    pub fn forward(&self, input: BertInput<B>) -> [(Tensor<B, 2>, Tensor<B, 2>); 2] {
        let mask = input.attention_mask.clone();
        let (encoder, bert_out) = self.bert.forward(input);
        let head_out = self.head.forward(&encoder.hidden_states, mask);
        [span_of(bert_out), span_of(head_out)]
    }
}

fn span_of<B: Backend>(output: HeadOutput<B>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    match output {
        HeadOutput::Span { start, end } => (start, end),
        HeadOutput::Logits(_) => unreachable!("span models were checked at load"),
    }
}

/// A question about a passage, cut into windows and padded into one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct QaQuery {
    pub example: SquadExample,
    pub features: Vec<SquadFeature>,
    pub batch: TokenBatch,
}

impl QaQuery {
    pub fn new(
        tokenizer: &mut BertTokenizer,
        context: &str,
        question: &str,
        features: &FeatureConfig,
    ) -> Result<Self> {
        if context.trim().is_empty() || question.trim().is_empty() {
            return Err(Error::usage("both a passage and a question are needed"));
        }
        let example = SquadExample {
            id: "query".into(),
            title: String::new(),
            question: question.to_string(),
            context: context.to_string(),
            answers: Vec::new(),
        };
        let features = featurize(std::slice::from_ref(&example), tokenizer, features)?;
        let encodings: Vec<&Encoded> = features.iter().map(|f| &f.encoded).collect();
        let batch = TokenBatch::pad(&encodings, tokenizer.pad_id(), None);
        Ok(QaQuery {
            example,
            features,
            batch,
        })
    }

    /// Flat row-major `[windows, seq]` logits to one (start, end) pair per window, each cut to
    /// the window's own tokens.
    pub fn window_logits(&self, start: &[f32], end: &[f32]) -> Vec<(Vec<f32>, Vec<f32>)> {
        let seq = self.batch.seq;
        self.features
            .iter()
            .enumerate()
            .map(|(w, f)| {
                let range = w * seq..w * seq + f.encoded.len();
                (start[range.clone()].to_vec(), end[range].to_vec())
            })
            .collect()
    }
}

/// One method's decision about a query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MethodAnswer {
    /// "bert", "bertvision" or "ensemble".
    pub method: &'static str,
    pub prediction: SquadPrediction,
    /// Probability of the best span inside its window: p(start)·p(end).
    pub span_probability: f64,
    /// The window shown in the probability strip: the best span's, else the first.
    pub window: usize,
    /// Per-token start and end probabilities (softmax over the window) of that window.
    pub start_probs: Vec<f32>,
    pub end_probs: Vec<f32>,
    /// The scores decoding used, one (start, end) pair per window: logits for BERT and
    /// BERTVision, log-probabilities for the ensemble.
    pub scores: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The three decisions for one query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QaAnswers {
    pub windows: usize,
    /// Tokens of every window, for display.
    pub tokens: Vec<Vec<String>>,
    pub methods: Vec<MethodAnswer>,
}

/// Decodes BERT's and BERTVision's window logits and their mean-probability ensemble.
pub fn answer(
    query: &QaQuery,
    bert: Vec<(Vec<f32>, Vec<f32>)>,
    bertvision: Vec<(Vec<f32>, Vec<f32>)>,
    config: &PostprocessConfig,
) -> QaAnswers {
    let mixed = match ensemble(
        &EvalOutputs::Spans(bert.clone()),
        &EvalOutputs::Spans(bertvision.clone()),
        EnsembleRule::Mean,
    ) {
        Some(EvalOutputs::Spans(s)) => s,
        _ => unreachable!("the mean of two span outputs is a span output"),
    };
    let methods = [
        ("bert", bert),
        ("bertvision", bertvision),
        ("ensemble", mixed),
    ]
    .into_iter()
    .map(|(method, scores)| decide(query, method, scores, config))
    .collect();
    QaAnswers {
        windows: query.features.len(),
        tokens: query
            .features
            .iter()
            .map(|f| f.encoded.tokens.clone())
            .collect(),
        methods,
    }
}

fn decide(
    query: &QaQuery,
    method: &'static str,
    scores: Vec<(Vec<f32>, Vec<f32>)>,
    config: &PostprocessConfig,
) -> MethodAnswer {
    let prediction = postprocess(
        std::slice::from_ref(&query.example),
        &query.features,
        &scores,
        config,
    )
    .predictions
    .remove(0);
    let window = prediction.best_span_at.map_or(0, |at| at.feature);
    let start_probs = window_softmax(&scores[window].0);
    let end_probs = window_softmax(&scores[window].1);
    let span_probability = prediction.best_span_at.map_or(0.0, |at| {
        f64::from(start_probs[at.start_token]) * f64::from(end_probs[at.end_token])
    });
    MethodAnswer {
        method,
        prediction,
        span_probability,
        window,
        start_probs,
        end_probs,
        scores,
    }
}

/// A passage with its questions, offered as samples on the demo page.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DemoSample {
    pub title: String,
    pub context: String,
    pub questions: Vec<DemoQuestion>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DemoQuestion {
    pub question: String,
    /// Gold answers; empty when the question has none in the passage.
    pub answers: Vec<String>,
}

/// Up to `passages` passages (at most two per article, in file order), each with its questions.
pub fn demo_samples(dataset: &crate::squad::SquadDataset, passages: usize) -> Vec<DemoSample> {
    let mut samples: Vec<DemoSample> = Vec::new();
    for e in dataset.examples() {
        let question = DemoQuestion {
            question: e.question.clone(),
            answers: e.answers.iter().map(|(t, _)| t.clone()).collect(),
        };
        if let Some(sample) = samples.iter_mut().find(|s| s.context == e.context) {
            sample.questions.push(question);
        } else if samples.len() < passages
            && samples.iter().filter(|s| s.title == e.title).count() < 2
        {
            samples.push(DemoSample {
                title: e.title.clone(),
                context: e.context.clone(),
                questions: vec![question],
            });
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::squad::SquadDataset;
    use std::path::Path;

    #[test]
    fn demo_samples_take_at_most_two_passages_per_article_with_all_their_questions() {
        let para = |c: &str, ids: &[&str]| {
            serde_json::json!({"context": c, "qas": ids.iter().map(|id| serde_json::json!(
                {"id": id, "question": format!("q {id}?"), "is_impossible": true, "answers": []})).collect::<Vec<_>>()})
        };
        let json = serde_json::json!({"version": "v2.0", "data": [
            {"title": "A", "paragraphs": [para("a1", &["1", "2"]), para("a2", &["3"]), para("a3", &["4"])]},
            {"title": "B", "paragraphs": [para("b1", &["5"])]},
        ]});
        let dataset = SquadDataset::parse(Path::new("t.json"), &json.to_string()).unwrap();
        let samples = demo_samples(&dataset, 8);
        let contexts: Vec<&str> = samples.iter().map(|s| s.context.as_str()).collect();
        assert_eq!(contexts, ["a1", "a2", "b1"]);
        assert_eq!(samples[0].questions.len(), 2);
        assert_eq!(demo_samples(&dataset, 1).len(), 1);
    }
}
