//! The files `predict` writes, every one atomically: per method a GLUE submission file and the
//! probabilities beside it, or SQuAD's three official files; `predict.json` (the record, first)
//! and `metrics.json` (last, labelled input only) at the top.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{MethodPrediction, PredictInput, PredictRecord};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::pipeline::evaluate::{EvalOutputs, argmax};
use crate::squad::SquadPredictions;
use crate::squad::postprocess::NBest;
use crate::tasks::{TaskKind, TaskSpec};

const RECORD: &str = "predict.json";
const METRICS: &str = "metrics.json";

/// Takes `out` for this prediction: a new or empty folder, or one whose `predict.json` records
/// the same export, input and settings (a rerun replaces its files). Anything else is refused,
/// so one folder never mixes two predictions.
pub(super) fn claim_folder(out: &Path, record: &PredictRecord) -> Result<()> {
    let path = out.join(RECORD);
    match crate::pipeline::context::read_json::<PredictRecord>(&path) {
        Ok(Some(existing)) if &existing == record => return Ok(()),
        Ok(Some(existing)) => {
            return Err(Error::invalid(
                &path,
                format!(
                    "holds the predictions of {} on {} with other settings or methods; give another --out",
                    existing.export.display(),
                    existing.input.display()
                ),
            ));
        }
        Ok(None) => {}
        Err(_) => {
            return Err(Error::invalid(
                &path,
                "is not a prediction record; give another --out",
            ));
        }
    }
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if non_empty {
        return Err(Error::invalid(
            out,
            "exists and holds other files (no predict.json): give a new or empty --out",
        ));
    }
    write_json(&path, record)
}

/// `metrics.json` (method → metric → value) when the input had labels.
pub(super) fn finish_folder(out: &Path, predictions: &[MethodPrediction]) -> Result<()> {
    let metrics: serde_json::Map<String, serde_json::Value> = predictions
        .iter()
        .filter_map(|p| {
            Some((
                p.method.name().to_string(),
                serde_json::to_value(p.metrics.as_ref()?).ok()?,
            ))
        })
        .collect();
    if metrics.is_empty() {
        return Ok(());
    }
    write_json(&out.join(METRICS), &metrics)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("plain data");
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// The submission file (`index<TAB>prediction`, labels as the GLUE server wants them, STS-B
/// clipped to [0, 5]) and `outputs.tsv` (the probabilities per label, or the raw score).
pub(super) fn write_glue(
    dir: &Path,
    task: &TaskSpec,
    input: &PredictInput,
    out: &EvalOutputs,
) -> Result<Vec<PathBuf>> {
    let mut submission = String::from("index\tprediction\n");
    let mut outputs = String::from("index\tprediction");
    match (out, task.kind) {
        (EvalOutputs::Probs(probs), TaskKind::Classification { labels }) => {
            for label in labels {
                write!(outputs, "\tp_{label}").expect("string");
            }
            outputs.push('\n');
            for (index, p) in input.indexes.iter().zip(probs) {
                let label = labels[argmax(p)];
                writeln!(submission, "{index}\t{label}").expect("string");
                write!(outputs, "{index}\t{label}").expect("string");
                for v in p {
                    write!(outputs, "\t{v}").expect("string");
                }
                outputs.push('\n');
            }
        }
        (EvalOutputs::Scores(scores), _) => {
            outputs.push_str("\tscore\n");
            for (index, &s) in input.indexes.iter().zip(scores) {
                let clipped = s.clamp(0.0, 5.0);
                writeln!(submission, "{index}\t{clipped:.3}").expect("string");
                writeln!(outputs, "{index}\t{clipped:.3}\t{s}").expect("string");
            }
        }
        _ => {
            return Err(Error::usage(format!(
                "{} outputs do not fit the task",
                task.name
            )));
        }
    }
    let name = input.submission.unwrap_or("predictions.tsv");
    let files = vec![dir.join(name), dir.join("outputs.tsv")];
    write_atomic(&files[0], submission.as_bytes())?;
    write_atomic(&files[1], outputs.as_bytes())?;
    Ok(files)
}

/// SQuAD's `predictions.json`, `na_prob.json` and `nbest_predictions.json`.
pub(super) fn write_squad(
    dir: &Path,
    predictions: &SquadPredictions,
    nbest: &NBest,
) -> Result<Vec<PathBuf>> {
    let files = vec![
        dir.join("predictions.json"),
        dir.join("na_prob.json"),
        dir.join("nbest_predictions.json"),
    ];
    write_atomic(&files[0], predictions.answers_json().as_bytes())?;
    write_atomic(&files[1], predictions.na_prob_json().as_bytes())?;
    write_json(&files[2], nbest)?;
    Ok(files)
}
