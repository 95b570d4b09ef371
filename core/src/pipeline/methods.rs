//! The keys of the methods in a run's results.

use std::collections::BTreeMap;

use super::config::EnsembleRule;

/// Method names used as keys of the results.
pub const BERT_EXTRACT: &str = "bert_extract";
pub const BERT_FINAL: &str = "bert_final";
pub const BERTVISION: &str = "bertvision";

/// method → split → metric → value.
pub type MetricTable = BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>;

/// The results key of an ensemble rule's method, e.g. `ensemble_max`.
pub fn ensemble_name(rule: EnsembleRule) -> String {
    format!("ensemble_{}", rule.name())
}
