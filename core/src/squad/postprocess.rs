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
    let mut by_example: Vec<Vec<usize>> = vec![Vec::new(); examples.len()];
    for (i, f) in features.iter().enumerate() {
        by_example[f.example].push(i);
    }
    let mut predictions = Vec::with_capacity(examples.len());
    for (example, feature_ids) in examples.iter().zip(by_example) {
        let mut null_score = f64::INFINITY;
        let mut best: Option<(f64, String, SpanLocation)> = None;
        for fi in feature_ids {
            let feature = &features[fi];
            let (start_logits, end_logits) = &logits[fi];
            let len = feature.encoded.len();
            let feature_null = f64::from(start_logits[0]) + f64::from(end_logits[0]);
            null_score = null_score.min(feature_null);
            for &s in &top_indexes(&start_logits[..len], config.n_best) {
                for &e in &top_indexes(&end_logits[..len], config.n_best) {
                    if !feature.is_context(s)
                        || !feature.is_context(e)
                        || e < s
                        || e - s + 1 > config.max_answer_len
                    {
                        continue;
                    }
                    let score = f64::from(start_logits[s]) + f64::from(end_logits[e]);
                    if best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                        let at = SpanLocation {
                            char_from: feature.encoded.offsets[s].0,
                            char_to: feature.encoded.offsets[e].1,
                            feature: fi,
                            start_token: s,
                            end_token: e,
                        };
                        best = Some((score, span_text(example, feature, s, e), at));
                    }
                }
            }
        }
        let (best_span_score, best_span, best_span_at) = match best {
            Some((score, text, at)) => (score, text, Some(at)),
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
