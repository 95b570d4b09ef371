//! The file to predict as model inputs: a GLUE TSV (labelled, or GLUE's label-free test layout)
//! tokenised as the run tokenised its task, or a SQuAD JSON cut into the evaluation's windows.

use std::path::Path;

use crate::error::{Error, Result};
use crate::pipeline::data::{EvalSplit, Sample, Target};
use crate::squad::{FeatureConfig, SquadDataset, featurize};
use crate::tasks::glue::{self, Label};
use crate::tasks::{TaskKind, TaskSpec};
use crate::tokenize::BertTokenizer;

/// What is predicted: the samples (with the SQuAD examples post-processing needs), whether the
/// file has labels to score against, and (GLUE) each row's submission index.
pub struct PredictInput {
    pub split: EvalSplit,
    pub labelled: bool,
    /// GLUE: the `index` of every row, in order. Empty for SQuAD.
    pub indexes: Vec<String>,
    /// GLUE: the file name GLUE's submission zip expects for this input (`RTE.tsv`, `MNLI-m.tsv`).
    pub submission: Option<&'static str>,
    /// One line describing what was read.
    pub note: String,
}

/// Reads `path` as an input of `task`, `max_len` tokens per input (per window for SQuAD).
pub fn read_input(
    task: &TaskSpec,
    path: &Path,
    tokenizer: &mut BertTokenizer,
    max_len: usize,
    features: &FeatureConfig,
) -> Result<PredictInput> {
    if task.kind == TaskKind::Span {
        return read_squad(
            path,
            tokenizer,
            &FeatureConfig {
                max_len,
                ..*features
            },
        );
    }
    let inputs = glue::load_inputs(task, path)?;
    let samples = inputs
        .rows
        .iter()
        .map(|row| {
            let encoded = tokenizer.encode(&row.text_a, row.text_b.as_deref(), Some(max_len))?;
            let target = match row.label {
                Some(Label::Class(c)) => Target::Class(c),
                Some(Label::Score(s)) => Target::Score(s),
                None if task.kind == TaskKind::Regression => Target::Score(0.0),
                None => Target::Class(0),
            };
            Ok(Sample { encoded, target })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut note = format!(
        "{}: {} rows, {}",
        path.display(),
        samples.len(),
        if inputs.labelled {
            "labelled"
        } else {
            "no labels (GLUE's test layout)"
        }
    );
    if !inputs.skipped.is_empty() {
        note.push_str(&format!(
            ", {} malformed rows skipped as the official reader does",
            inputs.skipped.len()
        ));
    }
    Ok(PredictInput {
        split: EvalSplit {
            name: "input".into(),
            samples,
            squad: None,
        },
        labelled: inputs.labelled,
        indexes: inputs.rows.into_iter().map(|r| r.index).collect(),
        submission: submission_file(task, path),
        note,
    })
}

fn read_squad(
    path: &Path,
    tokenizer: &mut BertTokenizer,
    features: &FeatureConfig,
) -> Result<PredictInput> {
    let dataset = SquadDataset::load(path)?;
    let examples = dataset.examples();
    if examples.is_empty() {
        return Err(Error::invalid(path, "no questions to predict in the file"));
    }
    // SQuAD files always carry answer lists; one with no answer anywhere is a file of questions.
    let labelled = examples.iter().any(|e| !e.answers.is_empty());
    let windows = featurize(&examples, tokenizer, features)?;
    let note = format!(
        "{}: {} questions, {} windows, {}",
        path.display(),
        examples.len(),
        windows.len(),
        if labelled {
            "with answers"
        } else {
            "no answers anywhere: not scored"
        }
    );
    let samples = crate::pipeline::data::squad_samples(&windows);
    Ok(PredictInput {
        split: EvalSplit {
            name: "input".into(),
            samples,
            squad: Some((dataset, examples, windows)),
        },
        labelled,
        indexes: Vec::new(),
        submission: None,
        note,
    })
}

/// The submission file for an input file: the registry's by GLUE's file name (`test_matched`
/// → `MNLI-m.tsv`); a dev file by its suffix (`dev_mismatched` → `MNLI-mm.tsv`); else the
/// task's first.
pub fn submission_file(task: &TaskSpec, path: &Path) -> Option<&'static str> {
    let stem = path.file_stem()?.to_str()?;
    let by_name = task.submissions.iter().find(|s| s.input == stem);
    let by_suffix = || {
        let suffix = stem.rsplit('_').next()?;
        (task.submissions.iter()).find(|s| s.input.strip_prefix("test_") == Some(suffix))
    };
    let chosen = by_name.or_else(by_suffix).or(task.submissions.first())?;
    Some(chosen.file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::task;

    #[test]
    fn submission_files_follow_glue_names() {
        let mnli = task("MNLI").unwrap();
        let name = |p: &str| submission_file(mnli, Path::new(p));
        assert_eq!(name("glue/MNLI/test_matched.tsv"), Some("MNLI-m.tsv"));
        assert_eq!(name("test_mismatched.tsv"), Some("MNLI-mm.tsv"));
        assert_eq!(name("dev_mismatched.tsv"), Some("MNLI-mm.tsv"));
        assert_eq!(name("diagnostic.tsv"), Some("AX.tsv"));
        assert_eq!(name("AX.tsv"), Some("AX.tsv"));
        let rte = task("RTE").unwrap();
        assert_eq!(submission_file(rte, Path::new("dev.tsv")), Some("RTE.tsv"));
        assert_eq!(
            submission_file(task("SQuAD2").unwrap(), Path::new("d.json")),
            None
        );
    }
}
