//! The keys of the methods in a run's results.

use std::collections::BTreeMap;

use super::config::EnsembleRule;

/// Method names used as keys of the results.
pub const BERT_EXTRACT: &str = "bert_extract";
pub const BERT_FINAL: &str = "bert_final";
pub const BERTVISION: &str = "bertvision";

/// split → metric → value.
pub type SplitMetrics = BTreeMap<String, BTreeMap<String, f64>>;

/// method → split → metric → value.
pub type MetricTable = BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>;

/// The metric a task is judged by (curves, `--select-best`, `search`): the task's first for
/// GLUE (accuracy, f1, matthews, pearson), SQuAD's F1.
pub fn main_metric(task: &crate::tasks::TaskSpec) -> &'static str {
    match task.kind {
        crate::tasks::TaskKind::Span => "f1",
        _ => task.metrics.first().map_or("accuracy", |m| m.name()),
    }
}

/// The keys of a run's main methods (the same at a point: `bertvision@0.5`).
pub fn main_keys() -> Vec<String> {
    let ensembles = [EnsembleRule::Max, EnsembleRule::Mean].map(ensemble_name);
    [BERTVISION, BERT_EXTRACT, BERT_FINAL]
        .map(String::from)
        .into_iter()
        .chain(ensembles)
        .collect()
}

/// The results key of an ensemble rule's method, e.g. `ensemble_max`.
pub fn ensemble_name(rule: EnsembleRule) -> String {
    format!("ensemble_{}", rule.name())
}

/// BERT at an extraction or evaluation point (`bert@p`); the other methods at a point reuse
/// the keys above (`bertvision@p`, `ensemble_max@p`, …).
pub const BERT: &str = "bert";

/// A point written as given on the command line: `1` for one epoch, `0.25` for a quarter.
pub fn point_label(point: f64) -> String {
    format!("{point}")
}

/// `method@p`, or `method@p/f` for a head trained on the share `f` of the training data (all of
/// it: no suffix).
pub fn method_at(method: &str, point: f64, fraction: f64) -> String {
    if fraction == 1.0 {
        format!("{method}@{}", point_label(point))
    } else {
        format!("{method}@{}/{}", point_label(point), point_label(fraction))
    }
}

/// A results key split into its method, point and fraction: `bertvision@0.5/0.1` gives
/// `("bertvision", Some(0.5), 0.1)`; keys without a point (`bert_final`) give `None`.
pub fn parse_method_key(key: &str) -> (&str, Option<f64>, f64) {
    let Some((method, rest)) = key.split_once('@') else {
        return (key, None, 1.0);
    };
    let (point, fraction) = rest.split_once('/').unwrap_or((rest, "1"));
    match (point.parse(), fraction.parse()) {
        (Ok(p), Ok(f)) => (method, Some(p), f),
        _ => (key, None, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_keys_round_trip() {
        assert_eq!(method_at(BERTVISION, 0.3, 1.0), "bertvision@0.3");
        assert_eq!(method_at(BERTVISION, 1.0, 0.1), "bertvision@1/0.1");
        assert_eq!(method_at("ensemble_mean", 2.0, 1.0), "ensemble_mean@2");
        for (key, want) in [
            ("bertvision@0.3", ("bertvision", Some(0.3), 1.0)),
            ("bertvision@1/0.1", ("bertvision", Some(1.0), 0.1)),
            ("bert_final", ("bert_final", None, 1.0)),
            ("bert@x", ("bert@x", None, 1.0)),
        ] {
            assert_eq!(parse_method_key(key), want, "{key}");
        }
    }
}
