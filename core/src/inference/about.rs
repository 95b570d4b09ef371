//! "About this model": what the browser says about a demo export — the model, its size, the
//! data it was trained on and how it scored. `bertvision web-assets` writes it as `about.json`
//! beside the served export, from the `results.json` of the run that exported it; the page shows
//! [`ModelAbout::sentence`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Method;
use crate::pipeline::report::epochs_label;
use crate::pipeline::results::RunResults;

/// What `about.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAbout {
    pub task: String,
    /// The model as named on the command line (a known model's name, else the folder's name).
    pub model: String,
    pub bert_parameters: usize,
    pub head_parameters: usize,
    /// Epochs of fine-tuning of the exported BERT (the run's last extraction point).
    pub epochs: f64,
    /// Training examples the run used (SQuAD: windows), after `--limit-train`.
    pub train_examples: Option<usize>,
    pub limit_train: Option<usize>,
    /// The run's notes on its data, with local folders cut to the file's last two parts.
    pub data_notes: Vec<String>,
    /// The split the scores are from and its size (SQuAD: windows).
    pub split: String,
    pub split_examples: Option<usize>,
    pub seed: u64,
    /// Method name (`bert`, `bertvision`, `ensemble_mean`, `ensemble_max`) → metric → value.
    pub scores: BTreeMap<String, BTreeMap<String, f64>>,
}

/// The metrics the sentence names, in order, with their labels.
fn shown_metrics(span: bool) -> &'static [(&'static str, &'static str)] {
    if span {
        &[("exact", "EM"), ("f1", "F1"), ("HasAns_f1", "HasAns F1")]
    } else {
        &[
            ("accuracy", "accuracy"),
            ("f1", "F1"),
            ("matthews", "Matthews"),
            ("pearson", "Pearson"),
            ("spearman", "Spearman"),
        ]
    }
}

impl ModelAbout {
    /// From the run's results, for the seed whose export is served; `None` when that seed has
    /// no scores in it.
    pub fn from_results(run: &RunResults, seed: u64) -> Option<Self> {
        let seed_result = run.seeds.iter().find(|s| s.seed == seed)?;
        let split = seed_result
            .metrics
            .get(Method::Bertvision.results_key())?
            .keys()
            .next()?
            .clone();
        let scores = Method::ALL
            .iter()
            .filter_map(|m| {
                let at = seed_result.metrics.get(m.results_key())?.get(&split)?;
                Some((m.name().to_string(), at.clone()))
            })
            .collect();
        Some(ModelAbout {
            task: run.task.clone(),
            model: display_model(&run.model.spec),
            bert_parameters: run.parameters.bert,
            head_parameters: run.parameters.head,
            epochs: run.config.last_point(),
            train_examples: run.splits.get("train").map(|s| s.examples),
            limit_train: run.config.limit_train,
            data_notes: run.data_notes.iter().map(|n| without_folders(n)).collect(),
            split_examples: run.splits.get(&split).map(|s| s.examples),
            split,
            seed,
            scores,
        })
    }

    fn span(&self) -> bool {
        self.task.to_lowercase().starts_with("squad")
    }

    /// One paragraph for the page: what the model is, what it was trained on, how it scored.
    pub fn sentence(&self) -> String {
        let unit = if self.span() { "windows" } else { "examples" };
        let trained = match (self.train_examples, self.limit_train) {
            (Some(n), Some(limit)) => format!(
                "{} training {unit} (limited to {} by --limit-train)",
                group_digits(n),
                group_digits(limit)
            ),
            (Some(n), None) => format!("{} training {unit}", group_digits(n)),
            (None, _) => "its training data".to_string(),
        };
        let notes = if self.data_notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.data_notes.join("; "))
        };
        let size = self
            .split_examples
            .map_or(String::new(), |n| format!(" ({} {unit})", group_digits(n)));
        let scores = self.scores_text();
        format!(
            "{model} ({bert} parameters), fine-tuned for {epochs} on {task}: {trained}{notes}; \
             its AdapterPooler adds {head} parameters ({share:.2}% of BERT). \
             On {split}{size}, seed {seed}: {scores}.",
            model = self.model,
            bert = group_digits(self.bert_parameters),
            epochs = epochs_text(self.epochs),
            task = self.task,
            head = group_digits(self.head_parameters),
            share = 100.0 * self.head_parameters as f64 / self.bert_parameters.max(1) as f64,
            split = self.split,
            seed = self.seed,
        )
    }

    /// "BERT EM 50.0 / F1 50.0 · BERTVision …", the methods in the page's order.
    fn scores_text(&self) -> String {
        let labels = [
            ("bert", "BERT"),
            ("bertvision", "BERTVision"),
            ("ensemble_mean", "ensemble (mean)"),
        ];
        labels
            .iter()
            .filter_map(|(key, label)| {
                let s = self.scores.get(*key)?;
                let parts: Vec<String> = shown_metrics(self.span())
                    .iter()
                    .filter_map(|(metric, name)| {
                        let v = s.get(*metric)?;
                        Some(if self.span() {
                            format!("{name} {v:.1}")
                        } else {
                            format!("{name} {v:.3}")
                        })
                    })
                    .collect();
                (!parts.is_empty()).then(|| format!("{label} {}", parts.join(" / ")))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

fn epochs_text(e: f64) -> String {
    let label = epochs_label(e);
    let n = label.trim_end_matches('e');
    format!("{n} epoch{}", if e == 1.0 { "" } else { "s" })
}

/// The model as named on the command line, without the folders above it.
pub fn display_model(spec: &str) -> String {
    std::path::Path::new(spec)
        .file_name()
        .map_or(spec.to_string(), |f| f.to_string_lossy().into_owned())
}

/// Every absolute path in a note cut to its last two parts (`/data/glue/RTE/train.tsv` →
/// `RTE/train.tsv`): the page is public, the machine's folders are not its business.
fn without_folders(note: &str) -> String {
    note.split(' ')
        .map(|word| {
            if word.starts_with('/') && word.matches('/').count() > 2 {
                let parts: Vec<&str> = word.rsplitn(3, '/').collect();
                format!("{}/{}", parts[1], parts[0])
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// 12770 → "12,770".
pub fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_and_digits_grouped() {
        assert_eq!(
            without_folders("/work/shared/data/glue/RTE/train.tsv: 2490 examples"),
            "RTE/train.tsv: 2490 examples"
        );
        assert_eq!(
            without_folders("SQuAD train: 2 articles"),
            "SQuAD train: 2 articles"
        );
        assert_eq!(group_digits(4385920), "4,385,920");
        assert_eq!(group_digits(999), "999");
        assert_eq!(display_model("/tmp/bv/models/minilm-l6"), "minilm-l6");
        assert_eq!(epochs_text(1.0), "1 epoch");
        assert_eq!(epochs_text(0.5), "0.5 epochs");
    }
}
