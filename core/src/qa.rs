//! One question about one passage, asked the way the browser demo and `bertvision answer` ask
//! it: the passage cut into the same doc-stride windows as evaluation, one encoder pass feeding
//! both BERT's span head and the AdapterPooler, and three decisions — BERT, BERTVision and their
//! ensemble (mean of the per-window probabilities, as in evaluation).
//!
//! Reading tensors back is left to the caller ([`QaModels::forward`] returns tensors): the
//! browser must read them asynchronously, native code may block.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::bert::{BertConfig, BertInput};
use crate::error::{Error, Result};
use crate::head::{AdapterPooler, AdapterPoolerConfig, HeadKind, HeadOutput};
use crate::pipeline::config::EnsembleRule;
use crate::pipeline::evaluate::{EvalOutputs, ensemble, window_softmax};
use crate::pipeline::export::{TaskHeadInfo, load_head, load_task_model};
use crate::squad::postprocess::{SquadPrediction, postprocess};
use crate::squad::{FeatureConfig, PostprocessConfig, SquadExample, SquadFeature, featurize};
use crate::task_model::BertTaskModel;
use crate::tokenize::{BertTokenizer, Encoded, TokenBatch};

/// One file of an export: the name used in messages and its bytes.
#[derive(Debug, Clone)]
pub struct NamedBytes {
    pub name: PathBuf,
    pub bytes: Vec<u8>,
}

impl NamedBytes {
    pub fn new(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Self {
        NamedBytes {
            name: name.into(),
            bytes,
        }
    }

    fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.bytes)
            .map_err(|_| Error::invalid(&self.name, "is not UTF-8 text"))
    }
}

/// The files `bertvision run` exports for one seed (`export/bert/*`, `export/head.*`).
#[derive(Debug, Clone)]
pub struct ExportFiles {
    pub config: NamedBytes,
    pub model: NamedBytes,
    pub tokenizer: NamedBytes,
    pub head: NamedBytes,
    pub head_config: NamedBytes,
}

impl ExportFiles {
    /// File names inside an export folder, relative to it.
    pub const NAMES: [&'static str; 5] = [
        "bert/config.json",
        "bert/model.safetensors",
        "bert/tokenizer.json",
        "head.safetensors",
        "head.json",
    ];

    /// The five files, in the order of [`Self::NAMES`].
    pub fn files(&self) -> [&NamedBytes; 5] {
        [
            &self.config,
            &self.model,
            &self.tokenizer,
            &self.head,
            &self.head_config,
        ]
    }

    /// Reads an export folder from disk.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let read = |rel: &str| -> Result<NamedBytes> {
            let path = dir.join(rel);
            Ok(NamedBytes::new(&path, crate::error::read_file(&path)?))
        };
        Ok(ExportFiles {
            config: read(Self::NAMES[0])?,
            model: read(Self::NAMES[1])?,
            tokenizer: read(Self::NAMES[2])?,
            head: read(Self::NAMES[3])?,
            head_config: read(Self::NAMES[4])?,
        })
    }
}

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
    /// Validates and loads an export; every error names the file at fault.
    pub fn load(files: ExportFiles, device: &B::Device) -> Result<Self> {
        let config_text = files.config.text()?;
        let config = BertConfig::from_json(&files.config.name, config_text)?;
        let info: TaskHeadInfo = serde_json::from_str::<serde_json::Value>(config_text)
            .ok()
            .and_then(|v| v.get("bertvision").cloned())
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| {
                Error::invalid(
                    &files.config.name,
                    "has no `bertvision` section: not a model exported by `bertvision run`",
                )
            })?;
        if !info.span {
            return Err(Error::invalid(
                &files.config.name,
                format!(
                    "is a `{}` classification export; question answering needs a SQuAD export",
                    info.task
                ),
            ));
        }
        let head_config: AdapterPoolerConfig =
            crate::error::parse_json(&files.head_config.name, files.head_config.text()?)?;
        if head_config.kind != HeadKind::Span
            || head_config.hidden_size != config.hidden_size
            || head_config.num_states != config.num_hidden_states()
        {
            return Err(Error::invalid(
                &files.head_config.name,
                format!(
                    "describes a {:?} head over {} states of width {}; the BERT in {} needs a span head over {} states of width {}",
                    head_config.kind,
                    head_config.num_states,
                    head_config.hidden_size,
                    files.config.name.display(),
                    config.num_hidden_states(),
                    config.hidden_size
                ),
            ));
        }
        let tokenizer = BertTokenizer::from_bytes(&files.tokenizer.name, &files.tokenizer.bytes)?;
        let bert = load_task_model(&config, &info, &files.model.name, files.model.bytes, device)?;
        let head = load_head(&head_config, &files.head.name, files.head.bytes, device)?;
        Ok(QaModels {
            bert,
            head,
            config,
            head_config,
            tokenizer,
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
