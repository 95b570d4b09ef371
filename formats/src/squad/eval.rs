//! The official SQuAD 2.0 evaluation (`evaluate-v2.0.py`), re-implemented to give the same
//! numbers: answer normalisation (lower case, drop ASCII punctuation, drop the articles
//! a/an/the at word boundaries, collapse white space), EM and bag-of-tokens F1 maximised over the
//! gold answers (an unanswerable question's only gold answer is ""), the HasAns/NoAns breakdown,
//! the `na_prob > 1.0` rule for the main numbers, and the best-threshold search over `na_prob`.
//! Sums run in the evaluator's order (dataset order) so results agree to the last bits.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::data::SquadDataset;
use crate::error::{Error, Result, read_text};

/// The evaluator's default `--na-prob-thresh`.
pub const NA_PROB_THRESH: f64 = 1.0;

/// The official output keys, in the official order; HasAns/NoAns only when such questions exist,
/// `best_*` only with `na_prob`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SquadMetrics {
    pub exact: f64,
    pub f1: f64,
    pub total: usize,
    #[serde(rename = "HasAns_exact", skip_serializing_if = "Option::is_none")]
    pub has_ans_exact: Option<f64>,
    #[serde(rename = "HasAns_f1", skip_serializing_if = "Option::is_none")]
    pub has_ans_f1: Option<f64>,
    #[serde(rename = "HasAns_total", skip_serializing_if = "Option::is_none")]
    pub has_ans_total: Option<usize>,
    #[serde(rename = "NoAns_exact", skip_serializing_if = "Option::is_none")]
    pub no_ans_exact: Option<f64>,
    #[serde(rename = "NoAns_f1", skip_serializing_if = "Option::is_none")]
    pub no_ans_f1: Option<f64>,
    #[serde(rename = "NoAns_total", skip_serializing_if = "Option::is_none")]
    pub no_ans_total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_exact: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_exact_thresh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_f1_thresh: Option<f64>,
}

/// Python's `str.split()` white space: Unicode White_Space plus the ASCII separators 0x1C–0x1F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `\w` in a Unicode pattern.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// The official `normalize_answer`.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: Vec<char> = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // re.sub(r'\b(a|an|the)\b', ' ', text)
    let mut out = String::with_capacity(no_punc.len());
    let mut i = 0;
    while i < no_punc.len() {
        let boundary_before = i == 0 || !is_word(no_punc[i - 1]);
        let matched = boundary_before
            .then(|| {
                ARTICLES.iter().find(|article| {
                    let len = article.len();
                    i + len <= no_punc.len()
                        && no_punc[i..i + len].iter().copied().eq(article.chars())
                        && (i + len == no_punc.len() || !is_word(no_punc[i + len]))
                })
            })
            .flatten();
        match matched {
            Some(article) => {
                out.push(' ');
                i += article.len();
            }
            None => {
                out.push(no_punc[i]);
                i += 1;
            }
        }
    }
    out.split(is_py_space)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn get_tokens(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    normalize_answer(s)
        .split(is_py_space)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn compute_exact(gold: &str, pred: &str) -> f64 {
    f64::from(u8::from(normalize_answer(gold) == normalize_answer(pred)))
}

pub fn compute_f1(gold: &str, pred: &str) -> f64 {
    let gold_toks = get_tokens(gold);
    let pred_toks = get_tokens(pred);
    if gold_toks.is_empty() || pred_toks.is_empty() {
        return f64::from(u8::from(gold_toks == pred_toks));
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &gold_toks {
        *counts.entry(t).or_default() += 1;
    }
    let mut num_same = 0i64;
    for t in &pred_toks {
        if let Some(c) = counts.get_mut(t.as_str())
            && *c > 0
        {
            *c -= 1;
            num_same += 1;
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = 1.0 * num_same as f64 / pred_toks.len() as f64;
    let recall = 1.0 * num_same as f64 / gold_toks.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// Evaluates `predictions` (question id → answer text, "" for no answer) against `dataset`.
/// `na_probs` (question id → probability of no answer), when given, applies the 1.0 threshold
/// and adds the best-threshold search. A question without a prediction is an error.
pub fn evaluate(
    dataset: &SquadDataset,
    predictions: &HashMap<String, String>,
    na_probs: Option<&[(String, f64)]>,
) -> Result<SquadMetrics> {
    let mut qids = Vec::new(); // dataset order
    let mut has_ans = HashMap::new();
    let mut exact_raw = HashMap::new();
    let mut f1_raw = HashMap::new();
    let mut missing = Vec::new();
    for qa in dataset
        .articles
        .iter()
        .flat_map(|a| &a.paragraphs)
        .flat_map(|p| &p.qas)
    {
        has_ans.insert(qa.id.as_str(), !qa.answers.is_empty());
        let mut golds: Vec<&str> = qa
            .answers
            .iter()
            .map(|a| a.text.as_str())
            .filter(|t| !normalize_answer(t).is_empty())
            .collect();
        if golds.is_empty() {
            golds.push("");
        }
        let Some(pred) = predictions.get(&qa.id) else {
            missing.push(qa.id.clone());
            continue;
        };
        let exact = golds
            .iter()
            .map(|g| compute_exact(g, pred))
            .fold(f64::MIN, f64::max);
        let f1 = golds
            .iter()
            .map(|g| compute_f1(g, pred))
            .fold(f64::MIN, f64::max);
        exact_raw.insert(qa.id.as_str(), exact);
        f1_raw.insert(qa.id.as_str(), f1);
        qids.push(qa.id.as_str());
    }
    if !missing.is_empty() {
        return Err(Error::usage(format!(
            "{} question(s) of {} have no prediction (first: {})",
            missing.len(),
            dataset.path.display(),
            missing[0]
        )));
    }

    let na_map: HashMap<&str, f64> = na_probs
        .map(|v| v.iter().map(|(k, p)| (k.as_str(), *p)).collect())
        .unwrap_or_default();
    fn thresholded<'q>(
        raw: &HashMap<&'q str, f64>,
        na_map: &HashMap<&str, f64>,
        has_ans: &HashMap<&str, bool>,
    ) -> HashMap<&'q str, f64> {
        raw.iter()
            .map(|(&q, &s)| {
                let pred_na = na_map.get(q).copied().unwrap_or(0.0) > NA_PROB_THRESH;
                (
                    q,
                    if pred_na {
                        f64::from(u8::from(!has_ans[q]))
                    } else {
                        s
                    },
                )
            })
            .collect()
    }
    let exact = thresholded(&exact_raw, &na_map, &has_ans);
    let f1 = thresholded(&f1_raw, &na_map, &has_ans);
    let mean = |scores: &HashMap<&str, f64>, list: &[&str]| {
        100.0 * list.iter().map(|q| scores[q]).sum::<f64>() / list.len() as f64
    };

    let has: Vec<&str> = qids.iter().copied().filter(|q| has_ans[q]).collect();
    let no: Vec<&str> = qids.iter().copied().filter(|q| !has_ans[q]).collect();
    let mut metrics = SquadMetrics {
        exact: mean(&exact, &qids),
        f1: mean(&f1, &qids),
        total: qids.len(),
        has_ans_exact: (!has.is_empty()).then(|| mean(&exact, &has)),
        has_ans_f1: (!has.is_empty()).then(|| mean(&f1, &has)),
        has_ans_total: (!has.is_empty()).then_some(has.len()),
        no_ans_exact: (!no.is_empty()).then(|| mean(&exact, &no)),
        no_ans_f1: (!no.is_empty()).then(|| mean(&f1, &no)),
        no_ans_total: (!no.is_empty()).then_some(no.len()),
        best_exact: None,
        best_exact_thresh: None,
        best_f1: None,
        best_f1_thresh: None,
    };
    if let Some(na) = na_probs {
        let (be, bet) = find_best_thresh(predictions, &exact_raw, na, &has_ans);
        let (bf, bft) = find_best_thresh(predictions, &f1_raw, na, &has_ans);
        metrics.best_exact = Some(be);
        metrics.best_exact_thresh = Some(bet);
        metrics.best_f1 = Some(bf);
        metrics.best_f1_thresh = Some(bft);
    }
    Ok(metrics)
}

/// The official `find_best_thresh`: walk questions by increasing `na_prob` (stable for ties, in
/// the na_prob file's order), predicting "no answer" for everything after the threshold.
fn find_best_thresh(
    preds: &HashMap<String, String>,
    scores: &HashMap<&str, f64>,
    na_probs: &[(String, f64)],
    has_ans: &HashMap<&str, bool>,
) -> (f64, f64) {
    let num_no_ans = has_ans.values().filter(|h| !**h).count() as f64;
    let mut cur = num_no_ans;
    let mut best = cur;
    let mut best_thresh = 0.0;
    let mut order: Vec<&(String, f64)> = na_probs.iter().collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (qid, p) in order {
        let Some(&score) = scores.get(qid.as_str()) else {
            continue;
        };
        let diff = if has_ans[qid.as_str()] {
            score
        } else if preds.get(qid).is_some_and(|t| !t.is_empty()) {
            -1.0
        } else {
            0.0
        };
        cur += diff;
        if cur > best {
            best = cur;
            best_thresh = *p;
        }
    }
    (100.0 * best / scores.len() as f64, best_thresh)
}

/// Reads `predictions.json` (`{"id": "answer", ...}`).
pub fn load_predictions(path: &Path) -> Result<HashMap<String, String>> {
    let text = read_text(path)?;
    crate::error::parse_json(path, &text)
}

/// Reads `na_prob.json` (`{"id": p, ...}`), keeping the file's order (the threshold search
/// breaks ties by it, as the official script does).
pub fn load_na_probs(path: &Path) -> Result<Vec<(String, f64)>> {
    let text = read_text(path)?;
    let ordered: OrderedMap = crate::error::parse_json(path, &text)?;
    Ok(ordered.0)
}

struct OrderedMap(Vec<(String, f64)>);

impl<'de> serde::Deserialize<'de> for OrderedMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object mapping question ids to numbers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedMap, A::Error> {
                let mut v = Vec::new();
                while let Some((k, p)) = map.next_entry::<String, f64>()? {
                    v.push((k, p));
                }
                Ok(OrderedMap(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_follows_the_official_rules() {
        assert_eq!(
            normalize_answer("The  Quick, brown fox!"),
            "quick brown fox"
        );
        assert_eq!(normalize_answer("an apple a day"), "apple day");
        assert_eq!(normalize_answer("theater anatomy"), "theater anatomy");
        assert_eq!(normalize_answer("...!?"), "");
        assert_eq!(normalize_answer("l'amour"), "lamour");
        assert_eq!(normalize_answer("Café  ÉCOLE"), "café école");
        assert_eq!(normalize_answer("a_the"), "athe");
        assert_eq!(normalize_answer("«the» end"), "« » end");
    }

    #[test]
    fn f1_is_bag_of_tokens() {
        assert_eq!(compute_f1("the cat sat", "cat sat down"), 0.8);
        assert_eq!(compute_f1("", ""), 1.0);
        assert_eq!(compute_f1("", "cat"), 0.0);
        assert_eq!(compute_f1("a", "the"), 1.0); // both normalise to nothing
        assert_eq!(compute_exact("The Cat.", "cat"), 1.0);
    }
}
