//! From start/end logits to answers, the standard way (Google's BERT `run_squad`, Hugging Face's
//! `postprocess_qa_predictions`): per window, the `n_best` highest start and end logits; spans
//! inside the context, end ≥ start, at most `max_answer_len` tokens; span score = start + end
//! logit. The null score is start[CLS] + end[CLS], the minimum over the example's windows. The
//! answer is "" when null score − best span score > `null_threshold`.

use std::collections::HashMap;

use super::features::{SquadFeature, span_text};
use bertvision_formats::squad::data::SquadExample;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PostprocessConfig {
    pub n_best: usize,
    pub max_answer_len: usize,
    pub null_threshold: f64,
}

impl Default for PostprocessConfig {
    fn default() -> Self {
        PostprocessConfig {
            n_best: 20,
            max_answer_len: 30,
            null_threshold: 0.0,
        }
    }
}

/// One example's decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SquadPrediction {
    pub id: String,
    /// "" for no answer.
    pub text: String,
    /// The best span's text even when "no answer" won.
    pub best_span: String,
    /// Where the best span lies: context characters `[from, to)`, and the window and its
    /// token indices `[start, end]` (`None` when no window offered a valid span).
    pub best_span_at: Option<SpanLocation>,
    pub best_span_score: f64,
    pub null_score: f64,
    /// `sigmoid(null_score − best_span_score)`: in (0, 1), higher means "no answer"; this is what
    /// `na_prob.json` holds (the official evaluator wants values it compares with 1.0).
    pub na_prob: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpanLocation {
    pub char_from: usize,
    pub char_to: usize,
    /// Index into the feature slice given to [`postprocess`].
    pub feature: usize,
    pub start_token: usize,
    pub end_token: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SquadPredictions {
    pub predictions: Vec<SquadPrediction>,
}

impl SquadPredictions {
    /// `predictions.json`: `{"id": "answer"}`.
    pub fn answers_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .predictions
            .iter()
            .map(|p| (p.id.clone(), p.text.clone().into()))
            .collect();
        serde_json::to_string_pretty(&map).expect("strings serialise")
    }

    /// `na_prob.json`: `{"id": p}`.
    pub fn na_prob_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .predictions
            .iter()
            .map(|p| (p.id.clone(), p.na_prob.into()))
            .collect();
        serde_json::to_string_pretty(&map).expect("numbers serialise")
    }

    pub fn answer_map(&self) -> HashMap<String, String> {
        self.predictions
            .iter()
            .map(|p| (p.id.clone(), p.text.clone()))
            .collect()
    }

    pub fn na_probs(&self) -> Vec<(String, f64)> {
        self.predictions
            .iter()
            .map(|p| (p.id.clone(), p.na_prob))
            .collect()
    }
}

fn top_indexes(logits: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.truncate(n);
    idx
}

/// The valid spans of one example over its windows, in the order they were found, and its
/// null score (start[CLS] + end[CLS], the minimum over the windows) with those two logits.
struct ExampleSpans {
    null_score: f64,
    null_logits: (f32, f32),
    spans: Vec<Span>,
}

struct Span {
    score: f64,
    start_logit: f32,
    end_logit: f32,
    text: String,
    at: SpanLocation,
}

fn example_spans(
    example: &SquadExample,
    feature_ids: &[usize],
    features: &[SquadFeature],
    logits: &[(Vec<f32>, Vec<f32>)],
    config: &PostprocessConfig,
) -> ExampleSpans {
    let mut out = ExampleSpans {
        null_score: f64::INFINITY,
        null_logits: (0.0, 0.0),
        spans: Vec::new(),
    };
    for &fi in feature_ids {
        let feature = &features[fi];
        let (start_logits, end_logits) = &logits[fi];
        let len = feature.encoded.len();
        let feature_null = f64::from(start_logits[0]) + f64::from(end_logits[0]);
        if feature_null < out.null_score {
            out.null_score = feature_null;
            out.null_logits = (start_logits[0], end_logits[0]);
        }
        for &s in &top_indexes(&start_logits[..len], config.n_best) {
            for &e in &top_indexes(&end_logits[..len], config.n_best) {
                if !feature.is_context(s)
                    || !feature.is_context(e)
                    || e < s
                    || e - s + 1 > config.max_answer_len
                {
                    continue;
                }
                out.spans.push(Span {
                    score: f64::from(start_logits[s]) + f64::from(end_logits[e]),
                    start_logit: start_logits[s],
                    end_logit: end_logits[e],
                    text: span_text(example, feature, s, e),
                    at: SpanLocation {
                        char_from: feature.encoded.offsets[s].0,
                        char_to: feature.encoded.offsets[e].1,
                        feature: fi,
                        start_token: s,
                        end_token: e,
                    },
                });
            }
        }
    }
    out
}

/// Feature indices per example.
fn windows_by_example(examples: &[SquadExample], features: &[SquadFeature]) -> Vec<Vec<usize>> {
    let mut by_example: Vec<Vec<usize>> = vec![Vec::new(); examples.len()];
    for (i, f) in features.iter().enumerate() {
        by_example[f.example].push(i);
    }
    by_example
}

/// `logits[i]` holds the (start, end) logits of `features[i]`, one value per token of its window.
pub fn postprocess(
    examples: &[SquadExample],
    features: &[SquadFeature],
    logits: &[(Vec<f32>, Vec<f32>)],
    config: &PostprocessConfig,
) -> SquadPredictions {
    assert_eq!(
        features.len(),
        logits.len(),
        "one pair of logit vectors per feature"
    );
    let by_example = windows_by_example(examples, features);
    let mut predictions = Vec::with_capacity(examples.len());
    for (example, feature_ids) in examples.iter().zip(by_example) {
        let found = example_spans(example, &feature_ids, features, logits, config);
        // The first of equal scores wins.
        let best = found
            .spans
            .into_iter()
            .fold(None::<Span>, |best, s| match best {
                Some(b) if s.score <= b.score => Some(b),
                _ => Some(s),
            });
        let null_score = found.null_score;
        let (best_span_score, best_span, best_span_at) = match best {
            Some(s) => (s.score, s.text, Some(s.at)),
            None => (f64::NEG_INFINITY, String::new(), None),
        };
        let diff = null_score - best_span_score;
        let text = if best_span.is_empty() || diff > config.null_threshold {
            String::new()
        } else {
            best_span.clone()
        };
        predictions.push(SquadPrediction {
            id: example.id.clone(),
            text,
            best_span,
            best_span_at,
            best_span_score,
            null_score,
            na_prob: 1.0 / (1.0 + (-diff).exp()),
        });
    }
    SquadPredictions { predictions }
}

/// One entry of `nbest_predictions.json`, as Google's `run_squad` writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NBestEntry {
    pub text: String,
    /// Softmax over the kept entries' scores (start + end logit), the null entry included.
    pub probability: f64,
    pub start_logit: f32,
    pub end_logit: f32,
}

/// Question id → its best `n_best` distinct answer texts, highest score first, and the null
/// answer `""` (from the window with the lowest null score).
pub type NBest = std::collections::BTreeMap<String, Vec<NBestEntry>>;

/// The n-best answers of every example (the spans [`postprocess`] chooses from).
pub fn nbest(
    examples: &[SquadExample],
    features: &[SquadFeature],
    logits: &[(Vec<f32>, Vec<f32>)],
    config: &PostprocessConfig,
) -> NBest {
    let by_example = windows_by_example(examples, features);
    let mut out = NBest::new();
    for (example, feature_ids) in examples.iter().zip(by_example) {
        let found = example_spans(example, &feature_ids, features, logits, config);
        let mut spans = found.spans;
        // Stable: the first of equal scores stays first, as in `postprocess`.
        spans.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<(f64, NBestEntry)> = Vec::new();
        for s in spans {
            if kept.len() == config.n_best {
                break;
            }
            if !s.text.is_empty() && kept.iter().all(|(_, k)| k.text != s.text) {
                let entry = NBestEntry {
                    text: s.text,
                    probability: 0.0,
                    start_logit: s.start_logit,
                    end_logit: s.end_logit,
                };
                kept.push((s.score, entry));
            }
        }
        let (null_start, null_end) = found.null_logits;
        let null = NBestEntry {
            text: String::new(),
            probability: 0.0,
            start_logit: null_start,
            end_logit: null_end,
        };
        kept.push((found.null_score, null));
        kept.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top = kept[0].0;
        let total: f64 = kept.iter().map(|(s, _)| (s - top).exp()).sum();
        let entries = kept
            .into_iter()
            .map(|(score, entry)| NBestEntry {
                probability: (score - top).exp() / total,
                ..entry
            })
            .collect();
        out.insert(example.id.clone(), entries);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::Encoded;

    /// `[CLS] q [SEP] c0 c1 c2 c3 [SEP]` over the context "aa bb cc dd".
    fn setup() -> (Vec<SquadExample>, Vec<SquadFeature>) {
        let example = SquadExample {
            id: "q".into(),
            title: "t".into(),
            question: "q".into(),
            context: "aa bb cc dd".into(),
            answers: vec![],
        };
        let seq = vec![
            None,
            Some(0),
            None,
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            None,
        ];
        let offsets = vec![
            (0, 0),
            (0, 1),
            (0, 0),
            (0, 2),
            (3, 5),
            (6, 8),
            (9, 11),
            (0, 0),
        ];
        let feature = SquadFeature {
            example: 0,
            encoded: Encoded {
                ids: vec![0; 8],
                type_ids: vec![0; 8],
                offsets,
                sequence_ids: seq,
                tokens: vec![String::new(); 8],
            },
            start: 0,
            end: 0,
        };
        (vec![example], vec![feature])
    }

    fn run(start: Vec<f32>, end: Vec<f32>, config: PostprocessConfig) -> SquadPrediction {
        let (ex, f) = setup();
        postprocess(&ex, &f, &[(start, end)], &config)
            .predictions
            .remove(0)
    }

    #[test]
    fn best_span_inside_the_context_wins_over_a_weaker_null() {
        // The question token (index 1) has the highest logits but is not context.
        let p = run(
            vec![0.0, 9.0, 0.0, 1.0, 5.0, 0.0, 0.0, 0.0],
            vec![0.0, 9.0, 0.0, 0.0, 1.0, 4.0, 0.0, 0.0],
            PostprocessConfig::default(),
        );
        assert_eq!(p.text, "bb cc");
        let at = p.best_span_at.expect("a span");
        assert_eq!(
            (at.char_from, at.char_to, at.start_token, at.end_token),
            (3, 8, 4, 5)
        );
        assert_eq!(p.best_span_score, 9.0);
        assert_eq!(p.null_score, 0.0);
        assert!(p.na_prob < 0.01);
    }

    #[test]
    fn null_wins_when_it_beats_the_span_by_more_than_the_threshold() {
        let start = vec![6.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        let end = vec![1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        let p = run(start.clone(), end.clone(), PostprocessConfig::default());
        assert_eq!((p.text.as_str(), p.best_span.as_str()), ("", "bb"));
        // null 7 - span 4 = 3: a threshold of 3 keeps the span.
        let p = run(
            start,
            end,
            PostprocessConfig {
                null_threshold: 3.0,
                ..Default::default()
            },
        );
        assert_eq!(p.text, "bb");
    }

    #[test]
    fn max_answer_length_and_order_are_respected() {
        // Best pair is end before start; next is a 4-token span, too long for max_answer_len 3.
        let start = vec![0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 4.0, 0.0];
        let end = vec![0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.5, 0.0];
        let p = run(
            start,
            end,
            PostprocessConfig {
                max_answer_len: 3,
                ..Default::default()
            },
        );
        assert_eq!(p.text, "dd");
    }
}
