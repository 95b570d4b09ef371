//! `results.json`: what `bertvision run` writes for one task over its seeds, and what the
//! browser's comparison page reads. One type for both sides, so they cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::context::SeedResult;
use crate::bert::BertConfig;
use crate::error::{Error, Result};

/// Changes whenever a reader of an older file would misread a newer one (or the reverse).
/// Version 2 added per-seed `head_layer_share` and `squad_examples`.
pub const RESULTS_FORMAT: &str = "bertvision-results/2";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// As given to `--model`.
    pub spec: String,
    pub dir: String,
    pub config: BertConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterCounts {
    pub bert: usize,
    pub head: usize,
    pub head_share_of_bert: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub format: String,
    pub task: String,
    pub model: ModelInfo,
    pub device: String,
    pub config: RunConfig,
    /// `train-head`: the run folder whose fine-tuning these heads read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_run: Option<String>,
    /// Method key → what it is.
    pub methods: BTreeMap<String, String>,
    pub parameters: ParameterCounts,
    pub data_notes: Vec<String>,
    /// Every split's size and identity (a hash of its examples' tokens and targets): `train` as
    /// loaded (before `--train-fraction`), `validation` when held out, the evaluation splits.
    /// Runs and trials on the same data show the same keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub splits: BTreeMap<String, SplitInfo>,
    pub seeds: Vec<SeedResult>,
    /// method → split → metric → mean/sd over seeds.
    pub summary: SummaryTable,
    /// Seconds per phase, summed over seeds.
    pub wall_seconds: BTreeMap<String, f64>,
    pub versions: BTreeMap<String, String>,
}

/// One split's size and identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub examples: usize,
    /// `sample::dataset_key` in hex.
    pub key: String,
}

impl SplitInfo {
    pub fn of(samples: &[super::data::Sample]) -> Self {
        SplitInfo {
            examples: samples.len(),
            key: format!("{:016x}", super::sample::dataset_key(samples)),
        }
    }
}

impl RunResults {
    /// Parses a `results.json`; a file of another format version is refused by name.
    pub fn parse(name: &Path, text: &str) -> Result<Self> {
        let value: serde_json::Value = crate::error::parse_json(name, text)?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != RESULTS_FORMAT {
            return Err(Error::invalid(
                name,
                if format.is_empty() {
                    format!(
                        "has no `format` field: not a results.json of `bertvision run` (expected {RESULTS_FORMAT})"
                    )
                } else {
                    format!(
                        "is in format {format}, this version reads {RESULTS_FORMAT}: rerun `bertvision run` to rewrite it"
                    )
                },
            ));
        }
        crate::error::parse_json(name, text)
    }
}

/// Mean, sample standard deviation and count of one metric over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

/// method → split → metric → summary over seeds.
pub type SummaryTable = BTreeMap<String, BTreeMap<String, BTreeMap<String, Summary>>>;

/// Each metric's [`Summary`] over `seeds`.
pub fn summarise(seeds: &[SeedResult]) -> SummaryTable {
    let mut values: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for s in seeds {
        for (method, splits) in &s.metrics {
            for (split, ms) in splits {
                for (metric, v) in ms {
                    values
                        .entry((method.clone(), split.clone(), metric.clone()))
                        .or_default()
                        .push(*v);
                }
            }
        }
    }
    let mut out = SummaryTable::new();
    for ((method, split, metric), v) in values {
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        out.entry(method)
            .or_default()
            .entry(split)
            .or_default()
            .insert(metric, Summary { mean, sd, n });
    }
    out
}

/// Exact match and F1 (0–100, the official definitions) of one method over a set of rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SliceScore {
    pub count: usize,
    pub exact: f64,
    pub f1: f64,
}

/// Scores `method`'s answers on `rows` the way the official SQuAD 2.0 script does (best over
/// gold answers; an unanswerable question scores 1 only for the empty answer).
pub fn slice_score(rows: &[&super::context::SquadRow], method: &str) -> SliceScore {
    use crate::squad::eval::{compute_exact, compute_f1};
    let (mut exact, mut f1) = (0.0, 0.0);
    for row in rows {
        let pred = row.answers.get(method).map_or("", String::as_str);
        let golds: Vec<&str> = if row.gold.is_empty() {
            vec![""]
        } else {
            row.gold.iter().map(String::as_str).collect()
        };
        exact += golds
            .iter()
            .map(|g| compute_exact(g, pred))
            .fold(0.0, f64::max);
        f1 += golds
            .iter()
            .map(|g| compute_f1(g, pred))
            .fold(0.0, f64::max);
    }
    let n = rows.len().max(1) as f64;
    SliceScore {
        count: rows.len(),
        exact: 100.0 * exact / n,
        f1: 100.0 * f1 / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::context::SquadRow;

    fn row(gold: &[&str], bert: &str) -> SquadRow {
        SquadRow {
            id: "x".into(),
            question: "q".into(),
            gold: gold.iter().map(|s| s.to_string()).collect(),
            context_words: 10,
            answers: [("bert".to_string(), bert.to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn slice_scores_follow_the_official_rules() {
        // Hand-checked: "the Normans" vs gold "Normans" normalises to equal (article dropped);
        // "in France" vs "France": F1 = 2·(1/1·1/2)/(1+1/2) = 2/3 ("in" is not removed).
        let rows = [
            row(&["Normans", "the Normans people"], "the Normans"),
            row(&["France"], "in France"),
            row(&[], ""),
            row(&[], "something"),
        ];
        let refs: Vec<&SquadRow> = rows.iter().collect();
        let s = slice_score(&refs, "bert");
        assert_eq!(s.count, 4);
        assert!((s.exact - 50.0).abs() < 1e-9);
        assert!((s.f1 - 100.0 * (1.0 + 2.0 / 3.0 + 1.0) / 4.0).abs() < 1e-9);
    }

    #[test]
    fn old_or_foreign_results_are_refused_by_name() {
        let err = RunResults::parse(Path::new("r.json"), r#"{"format":"bertvision-results/1"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.json") && err.contains("bertvision-results/1"),
            "{err}"
        );
        let err = RunResults::parse(Path::new("r.json"), "{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `format`"), "{err}");
        let err = RunResults::parse(Path::new("r.json"), "[1,")
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.json"), "{err}");
    }
}
