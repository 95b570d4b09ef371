//! `evaluate-squad` (the official SQuAD 2.0 evaluation) and `data-report` (what the data loaders
//! read, and the SQuAD featurisation round trip).

use bertvision_core::wording::count;
use std::path::{Path, PathBuf};

use anyhow::Result;
use bertvision_core::fsutil::write_atomic;
use bertvision_core::squad::eval::{evaluate, load_na_probs, load_predictions};
use bertvision_core::squad::features::round_trip;
use bertvision_core::squad::{FeatureConfig, SquadDataset, featurize};
use bertvision_core::tasks::{TASKS, glue};
use bertvision_core::tokenize::BertTokenizer;

#[derive(Debug, clap::Args)]
pub struct EvaluateSquadArgs {
    /// The dataset (official SQuAD JSON format).
    #[arg(long)]
    pub data: PathBuf,
    /// `{"question id": "answer text"}`, "" for no answer.
    #[arg(long)]
    pub predictions: PathBuf,
    /// `{"question id": probability of no answer}`.
    #[arg(long)]
    pub na_prob: Option<PathBuf>,
    /// Also write the metrics JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Prints the official metrics JSON (and writes it to `--out` if given).
pub fn evaluate_squad(args: &EvaluateSquadArgs) -> Result<()> {
    if let Some(out) = &args.out {
        bertvision_core::checks::output_file("--out", out)?;
    }
    let dataset = SquadDataset::load(&args.data)?;
    let preds = load_predictions(&args.predictions)?;
    let na = args.na_prob.as_deref().map(load_na_probs).transpose()?;
    let out = args.out.as_deref();
    let metrics = evaluate(&dataset, &preds, na.as_deref())?;
    let json = serde_json::to_string_pretty(&metrics)?;
    println!("{json}");
    if let Some(out) = out {
        write_atomic(out, json.as_bytes())?;
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DataReportArgs {
    /// A GLUE folder (one sub-folder per task, as GLUE distributes them).
    #[arg(long)]
    pub glue_dir: Option<PathBuf>,
    /// A SQuAD 2.0 JSON file to featurise.
    #[arg(long)]
    pub squad: Option<PathBuf>,
    /// The model whose tokenizer featurises SQuAD.
    #[arg(long, default_value = "minilm-l6")]
    pub model: String,
    /// Also write the full report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Loads every GLUE task found under `--glue-dir` and featurises `--squad` with the model's
/// tokenizer, printing counts, skipped rows and the label round trip; the full report goes to
/// `--out`.
pub fn data_report(args: &DataReportArgs, cache_dir: &Path) -> Result<()> {
    if let Some(out) = &args.out {
        bertvision_core::checks::output_file("--out", out)?;
    }
    let tokenizer = match &args.squad {
        Some(_) => {
            Some(crate::fetch::resolve_model_dir(&args.model, cache_dir)?.join("tokenizer.json"))
        }
        None => None,
    };
    let (glue_dir, squad, out) = (
        args.glue_dir.as_deref(),
        args.squad.as_deref(),
        args.out.as_deref(),
    );
    let mut report = serde_json::Map::new();
    if let Some(dir) = glue_dir {
        // A wrong folder must not pass as "no data": say what was expected.
        if !TASKS
            .iter()
            .any(|t| t.is_glue() && dir.join(t.name).is_dir())
        {
            anyhow::bail!(
                "{}: no GLUE task folder here (expected sub-folders such as RTE/ or SST-2/)",
                dir.display()
            );
        }
        for task in TASKS.iter().filter(|t| t.is_glue()) {
            let task_dir = dir.join(task.name);
            if !task_dir.is_dir() {
                continue;
            }
            let mut entry = serde_json::Map::new();
            let files =
                std::iter::once(("train", task.train_file)).chain(task.dev_files.iter().copied());
            for (split, file) in files {
                let path = task_dir.join(file);
                if !path.is_file() {
                    continue;
                }
                let loaded = glue::load_tsv(task, &path)?;
                println!("{:6} {}", task.name, loaded.summary());
                entry.insert(
                    split.to_string(),
                    serde_json::json!({"examples": loaded.examples.len(), "skipped_rows": loaded.skipped.len()}),
                );
            }
            report.insert(task.name.to_string(), entry.into());
        }
    }
    if let Some(squad) = squad {
        let tokenizer_path = tokenizer.ok_or_else(|| {
            anyhow::anyhow!("--squad needs --tokenizer <tokenizer.json> (or --model)")
        })?;
        let mut tokenizer = BertTokenizer::from_file(&tokenizer_path)?;
        let dataset = SquadDataset::load(squad)?;
        let examples = dataset.examples();
        let config = FeatureConfig::default();
        let features = featurize(&examples, &mut tokenizer, &config)?;
        let rt = round_trip(&examples, &features);
        println!(
            "SQuAD  {}: {}, {} ({} unanswerable), {} of {} tokens (stride {})",
            squad.display(),
            count(dataset.articles.len(), "article"),
            count(examples.len(), "question"),
            examples.iter().filter(|e| e.is_impossible()).count(),
            count(features.len(), "window"),
            config.max_len,
            config.doc_stride
        );
        println!(
            "       labels recover {}/{} answers exactly ({:.2}%), {} after normalisation; mismatches:",
            rt.exact,
            rt.answerable,
            100.0 * rt.exact as f64 / rt.answerable.max(1) as f64,
            rt.normalized
        );
        for m in &rt.mismatches {
            println!(
                "         {} gold {:?} -> {:?}: {}",
                m.id, m.gold, m.recovered, m.reason
            );
        }
        report.insert(
            "SQuAD2".into(),
            serde_json::json!({"file": squad, "articles": dataset.articles.len(), "questions": examples.len(),
                "windows": features.len(), "feature_config": config, "round_trip": rt}),
        );
    }
    if let Some(out) = out {
        write_atomic(out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
