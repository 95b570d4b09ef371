//! SQuAD examples to model inputs: the question (cut to `max_query` tokens) and overlapping
//! windows of the context, `max_len` tokens each, consecutive windows sharing `doc_stride`
//! context tokens (Hugging Face's `stride`). Training labels are start/end token indices of the
//! answer, or 0/0 (the CLS token) for unanswerable questions and for windows that do not contain
//! the whole answer.

use crate::error::{Error, Result};
use crate::tokenize::{BertTokenizer, Encoded};
use bertvision_formats::squad::data::SquadExample;
use bertvision_formats::squad::eval::normalize_answer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureConfig {
    pub max_len: usize,
    pub doc_stride: usize,
    pub max_query: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            max_len: 384,
            doc_stride: 128,
            max_query: 64,
        }
    }
}

/// One window of one example.
#[derive(Debug, Clone, PartialEq)]
pub struct SquadFeature {
    /// Index of the example in the slice given to [`featurize`].
    pub example: usize,
    pub encoded: Encoded,
    /// Label: answer start/end token, 0/0 for "no answer in this window".
    pub start: usize,
    pub end: usize,
}

impl SquadFeature {
    /// Whether token `i` belongs to the context (the only tokens an answer may use).
    pub fn is_context(&self, i: usize) -> bool {
        self.encoded.sequence_ids.get(i) == Some(&Some(1))
    }

    fn context_range(&self) -> Option<(usize, usize)> {
        let first = (0..self.encoded.len()).find(|&i| self.is_context(i))?;
        let last = (0..self.encoded.len())
            .rev()
            .find(|&i| self.is_context(i))?;
        Some((first, last))
    }
}

/// Cuts `question` after its `max_query`-th token (leading white space removed first, as the
/// Hugging Face recipe does, since it would otherwise shift the windows).
fn cut_question(tokenizer: &mut BertTokenizer, question: &str, max_query: usize) -> Result<String> {
    let question = question.trim_start();
    let tokens = tokenizer.tokens_of(question)?;
    if tokens.len() <= max_query || max_query == 0 {
        return Ok(question.to_string());
    }
    let end_char = tokens.offsets[max_query - 1].1;
    Ok(question.chars().take(end_char).collect())
}

/// Windows and labels for every example, in order.
pub fn featurize(
    examples: &[SquadExample],
    tokenizer: &mut BertTokenizer,
    config: &FeatureConfig,
) -> Result<Vec<SquadFeature>> {
    if config.max_len < config.max_query + config.doc_stride + 4 {
        return Err(Error::usage(format!(
            "max length {} leaves no room for a {}-token question and a {}-token stride",
            config.max_len, config.max_query, config.doc_stride
        )));
    }
    let mut features = Vec::new();
    for (index, example) in examples.iter().enumerate() {
        let question = cut_question(tokenizer, &example.question, config.max_query)?;
        let windows = tokenizer.encode_windows(
            &question,
            &example.context,
            config.max_len,
            config.doc_stride,
        )?;
        let gold = example.answers.first();
        for encoded in windows {
            let mut feature = SquadFeature {
                example: index,
                encoded,
                start: 0,
                end: 0,
            };
            if let (Some((text, start_char)), Some((first, last))) = (gold, feature.context_range())
            {
                let end_char = start_char + text.chars().count();
                let offsets = &feature.encoded.offsets;
                if offsets[first].0 <= *start_char && offsets[last].1 >= end_char {
                    let mut s = first;
                    while s <= last && offsets[s].0 <= *start_char {
                        s += 1;
                    }
                    let mut e = last;
                    while e >= first && offsets[e].1 >= end_char {
                        e -= 1;
                    }
                    feature.start = s - 1;
                    feature.end = e + 1;
                }
            }
            features.push(feature);
        }
    }
    Ok(features)
}

/// The context text a feature's token span `[start, end]` covers.
pub fn span_text(
    example: &SquadExample,
    feature: &SquadFeature,
    start: usize,
    end: usize,
) -> String {
    let (from, to) = (
        feature.encoded.offsets[start].0,
        feature.encoded.offsets[end].1,
    );
    example
        .context
        .chars()
        .skip(from)
        .take(to.saturating_sub(from))
        .collect()
}

/// How well the labels recover the gold answers: the check that featurisation is right.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RoundTrip {
    pub answerable: usize,
    /// Answerable questions with at least one labelled window.
    pub labelled: usize,
    /// ... whose recovered text equals the gold text exactly.
    pub exact: usize,
    /// ... equal after the official normalisation (case, punctuation, articles, spaces).
    pub normalized: usize,
    /// Every question whose recovered text differs, with the reason.
    pub mismatches: Vec<RoundTripMismatch>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoundTripMismatch {
    pub id: String,
    pub gold: String,
    pub recovered: String,
    pub reason: String,
}

/// Recovers each answerable example's answer from its labelled windows and compares.
pub fn round_trip(examples: &[SquadExample], features: &[SquadFeature]) -> RoundTrip {
    let mut report = RoundTrip::default();
    let mut first_label: Vec<Option<&SquadFeature>> = vec![None; examples.len()];
    for f in features {
        if f.start != 0 && first_label[f.example].is_none() {
            first_label[f.example] = Some(f);
        }
    }
    for (example, labelled) in examples.iter().zip(first_label) {
        let Some((gold, _)) = example.answers.first() else {
            continue;
        };
        report.answerable += 1;
        let Some(feature) = labelled else {
            report.mismatches.push(RoundTripMismatch {
                id: example.id.clone(),
                gold: gold.clone(),
                recovered: String::new(),
                reason: "no window contains the whole answer".into(),
            });
            continue;
        };
        report.labelled += 1;
        let recovered = span_text(example, feature, feature.start, feature.end);
        if &recovered == gold {
            report.exact += 1;
            report.normalized += 1;
            continue;
        }
        let reason = if normalize_answer(&recovered) == normalize_answer(gold) {
            report.normalized += 1;
            "differs only in case, punctuation, articles or spaces"
        } else if recovered.contains(gold.as_str()) {
            "the answer starts or ends inside a word piece, so the token span is wider"
        } else {
            "other"
        };
        report.mismatches.push(RoundTripMismatch {
            id: example.id.clone(),
            gold: gold.clone(),
            recovered,
            reason: reason.into(),
        });
    }
    report
}
