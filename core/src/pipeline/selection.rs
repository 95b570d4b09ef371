//! `--select-best validation`: BERT scored on the validation split at every point of its curve
//! during fine-tuning, the best checkpoint kept as `bert_final` (the end-of-training model in
//! `bert-end.bin`), and `--early-stop-patience`'s stop. The choice is written as it is made
//! (`selection.json`), so a resumed fine-tuning continues it.

use serde::{Deserialize, Serialize};

use super::methods::SplitMetrics;

/// A scored point of fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredPoint {
    /// The point's label (epochs).
    pub at: String,
    pub step: usize,
    pub scores: SplitMetrics,
}

/// The selection so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub split: String,
    pub metric: String,
    /// Every scored point, in order.
    pub points: Vec<ScoredPoint>,
    /// The best point's label (the first of equal scores).
    pub best: Option<String>,
    /// The point after which fine-tuning stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_after: Option<String>,
}

impl Selection {
    pub fn new(split: &str, metric: &str) -> Self {
        Selection {
            split: split.to_string(),
            metric: metric.to_string(),
            points: Vec::new(),
            best: None,
            stopped_after: None,
        }
    }

    /// A point's score on the selection split (NaN counts as worst).
    pub fn value(&self, point: &ScoredPoint) -> f64 {
        let v = point
            .scores
            .get(&self.split)
            .and_then(|m| m.get(&self.metric));
        v.copied()
            .filter(|v| v.is_finite())
            .unwrap_or(f64::NEG_INFINITY)
    }

    pub fn scored(&self, label: &str) -> Option<&ScoredPoint> {
        self.points.iter().find(|p| p.at == label)
    }

    pub fn best_point(&self) -> Option<&ScoredPoint> {
        self.best.as_deref().and_then(|b| self.scored(b))
    }

    /// Adds a point; whether it is the new best.
    pub fn observe(&mut self, point: ScoredPoint) -> bool {
        let better = match self.best_point() {
            None => true,
            Some(best) => self.value(&point) > self.value(best),
        };
        if better {
            self.best = Some(point.at.clone());
        }
        self.points.push(point);
        better
    }

    /// Scored points after the best one.
    pub fn since_best(&self) -> usize {
        let best = self.best.as_deref();
        match self.points.iter().position(|p| Some(p.at.as_str()) == best) {
            Some(i) => self.points.len() - 1 - i,
            None => self.points.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: &str, v: f64) -> ScoredPoint {
        let metrics = [("accuracy".to_string(), v)].into_iter().collect();
        ScoredPoint {
            at: at.into(),
            step: 0,
            scores: [("validation".to_string(), metrics)].into_iter().collect(),
        }
    }

    #[test]
    fn the_first_best_is_kept_and_patience_counts_after_it() {
        let mut s = Selection::new("validation", "accuracy");
        assert!(s.observe(point("0.5", 0.6)));
        assert!(s.observe(point("1", 0.7)));
        assert!(
            !s.observe(point("1.5", 0.7)),
            "a tie keeps the earlier point"
        );
        assert!(!s.observe(point("2", f64::NAN)));
        assert_eq!(s.best.as_deref(), Some("1"));
        assert_eq!(s.since_best(), 2);
    }
}
