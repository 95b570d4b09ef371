//! `report.md` and the method descriptions of `results.json`: what a run's numbers mean, in
//! words.

use std::collections::BTreeMap;

use super::charts::Chart;
use super::config::{EnsembleRule, RunConfig};
use super::context::SeedResult;
use super::methods::{
    BERT, BERT_EXTRACT, BERT_FINAL, BERTVISION, ensemble_name, method_at, parse_method_key,
    point_label,
};
use super::results::SummaryTable;
use crate::tasks::{TaskKind, TaskSpec};

/// A checkpoint's name in the report, e.g. "1e" for one epoch, "0.5e" for half of one.
pub fn epochs_label(e: f64) -> String {
    if e.fract() == 0.0 {
        format!("{e:.0}e")
    } else {
        format!("{e}e")
    }
}

/// Method key → what it is, for `results.json`'s `methods`: the main keys, and every key at a
/// point that the seeds hold.
pub fn method_descriptions(config: &RunConfig, seeds: &[SeedResult]) -> BTreeMap<String, String> {
    let extract = epochs_label(config.last_point());
    let mut methods: BTreeMap<String, String> = [
        (
            BERT_EXTRACT.to_string(),
            format!("BERT fine-tuned {extract} (the checkpoint the head reads)"),
        ),
        (
            BERT_FINAL.to_string(),
            match &config.finetune.select_best {
                None => format!("BERT fine-tuned {}", epochs_label(config.finetune.epochs)),
                Some(split) => format!(
                    "BERT's checkpoint best on {split} among the points of {} of fine-tuning (chosen per seed: results.json's selection)",
                    epochs_label(config.finetune.epochs)
                ),
            },
        ),
        (
            BERTVISION.to_string(),
            format!("AdapterPooler on the hidden states of BERT-{extract}"),
        ),
        (
            ensemble_name(EnsembleRule::Max),
            "element-wise max of the BERT-extract and BERTVision probabilities (the paper's rule)"
                .to_string(),
        ),
        (
            ensemble_name(EnsembleRule::Mean),
            "mean of the BERT-extract and BERTVision probabilities".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let keys = seeds.iter().flat_map(|s| s.metrics.keys());
    for key in keys.filter(|k| k.contains('@')) {
        methods
            .entry(key.clone())
            .or_insert_with(|| describe_point_key(key));
    }
    methods
}

/// What a key at a point means, in words.
fn describe_point_key(key: &str) -> String {
    let (method, point, fraction) = parse_method_key(key);
    let at = point.map_or_else(String::new, epochs_label);
    let data = if fraction < 1.0 {
        format!(", the head trained on {} of the training data", fraction)
    } else {
        String::new()
    };
    match method {
        BERT => format!("BERT fine-tuned {at}"),
        BERTVISION => format!("AdapterPooler on the hidden states of BERT-{at}{data}"),
        m if m.starts_with("ensemble_") => {
            let rule = m.trim_start_matches("ensemble_");
            format!("{rule} of the BERT-{at} and BERTVision-{at} probabilities{data}")
        }
        _ => key.to_string(),
    }
}

/// What `report_markdown` is made of.
pub struct ReportInput<'a> {
    pub task: &'a TaskSpec,
    pub config: &'a RunConfig,
    pub summary: &'a SummaryTable,
    pub bert_params: usize,
    pub head_params: usize,
    pub wall: &'a BTreeMap<String, f64>,
    pub seeds: usize,
    /// The charts written beside the report (`charts/<file>`).
    pub charts: &'a [Chart],
}

/// The run's table (mean ± sd over seeds) per evaluation split, parameter counts, wall times.
pub fn report_markdown(r: &ReportInput<'_>) -> String {
    let config = r.config;
    let mut md = format!(
        "# BERTVision on {} with {}\n\n{}: {:?}. Fine-tuning {} (lr {:.1e}, batch {}), head on BERT-{} hidden states (lr {:.1e}, {}, A = {}, {:?}).\n\n",
        r.task.name,
        config.model,
        crate::wording::count(r.seeds, "seed"),
        config.seeds,
        crate::wording::epochs(config.finetune.epochs),
        config.finetune.lr,
        config.finetune.batch_size,
        epochs_label(config.last_point()),
        config.head.lr,
        crate::wording::epochs(config.head.epochs),
        config.head.adapter_size,
        config.head.kind
    );
    let splits: Vec<&String> = r
        .summary
        .get(BERTVISION)
        .map(|s| s.keys().collect())
        .unwrap_or_default();
    for split in splits {
        md.push_str(&split_table(r, split));
        md.push_str(&points_table(r, split));
    }
    for chart in r.charts {
        md.push_str(&format!("![{}](charts/{})\n\n", chart.title, chart.file));
    }
    md.push_str(&format!(
        "AdapterPooler: {} parameters = {:.3}% of BERT's {}.\n\nWall time (s): {}\n",
        r.head_params,
        100.0 * r.head_params as f64 / r.bert_params as f64,
        r.bert_params,
        r.wall
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    md
}

/// One split's curve as a table (when there is more than one point): a row per point of
/// fine-tuning, BERT, BERTVision and the mean ensemble there, and the heads on less data.
fn points_table(r: &ReportInput<'_>, split: &str) -> String {
    let metric = super::methods::main_metric(r.task);
    let mut points: Vec<f64> = r
        .summary
        .keys()
        .filter_map(|k| parse_method_key(k).1)
        .collect();
    points.sort_by(f64::total_cmp);
    points.dedup();
    if points.len() < 2 {
        return String::new();
    }
    let fractions = &r.config.head.train_fractions;
    let mut md = format!(
        "### {split} {metric} at every point\n\n| epochs | BERT | BERTVision | Ensemble (mean) |"
    );
    for f in fractions {
        md.push_str(&format!(" BERTVision, {} of the data |", point_label(*f)));
    }
    md.push_str(&format!(
        "\n|---:|---:|---:|---:|{}\n",
        "---:|".repeat(fractions.len())
    ));
    let cell = |key: String| match r
        .summary
        .get(&key)
        .and_then(|s| s.get(split))
        .and_then(|m| m.get(metric))
    {
        Some(s) if r.seeds > 1 => format!(" {:.4} ± {:.4} |", s.mean, s.sd),
        Some(s) => format!(" {:.4} |", s.mean),
        None => " – |".to_string(),
    };
    for p in points {
        md.push_str(&format!("| {} |", point_label(p)));
        for method in [BERT, BERTVISION, "ensemble_mean"] {
            md.push_str(&cell(method_at(method, p, 1.0)));
        }
        for &f in fractions {
            md.push_str(&cell(method_at(BERTVISION, p, f)));
        }
        md.push('\n');
    }
    md.push('\n');
    md
}

/// One split's table: a row per method, a column per metric.
fn split_table(r: &ReportInput<'_>, split: &str) -> String {
    let config = r.config;
    let (bert, head) = (r.bert_params, r.head_params);
    let methods = [
        (
            BERT_EXTRACT.to_string(),
            format!("BERT-{}", epochs_label(config.last_point())),
            bert,
        ),
        (BERT_FINAL.to_string(), config.bert_final_label(), bert),
        (
            BERTVISION.to_string(),
            format!("BERTVision-{}", epochs_label(config.last_point())),
            head,
        ),
        (
            ensemble_name(EnsembleRule::Max),
            "Ensemble (max)".to_string(),
            bert + head,
        ),
        (
            ensemble_name(EnsembleRule::Mean),
            "Ensemble (mean)".to_string(),
            bert + head,
        ),
    ];
    let metric_names: Vec<&str> = if r.task.kind == TaskKind::Span {
        vec!["exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"]
    } else {
        r.task.metrics.iter().map(|m| m.name()).collect()
    };
    let mut md = format!("## {split}\n\n| method | trainable params |");
    for m in &metric_names {
        md.push_str(&format!(" {m} |"));
    }
    md.push_str("\n|---|---:|");
    md.push_str(&"---:|".repeat(metric_names.len()));
    md.push('\n');
    // Extracted at the end of fine-tuning, BERT-extract is the final model: one row, not two.
    let extracted_at_end = config.last_point() >= config.finetune.epochs;
    for (key, label, params) in &methods {
        if extracted_at_end && key == BERT_FINAL {
            continue;
        }
        let Some(ms) = r.summary.get(key).and_then(|s| s.get(split)) else {
            continue;
        };
        md.push_str(&format!("| {label} | {params} |"));
        for m in &metric_names {
            match ms.get(*m) {
                Some(s) if r.seeds > 1 => md.push_str(&format!(" {:.4} ± {:.4} |", s.mean, s.sd)),
                Some(s) => md.push_str(&format!(" {:.4} |", s.mean)),
                None => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
    md
}
