//! One table of tasks instead of per-task copies of scripts.

use crate::error::{Error, Result};

/// A column of a TSV file: by header name, or by position for header-less files (CoLA), or the
/// last column (MNLI's `gold_label`, whose position differs between train and dev).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Named(&'static str),
    Index(usize),
    Last,
}

/// How a GLUE TSV file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsvFormat {
    pub has_header: bool,
    pub text_a: Column,
    pub text_b: Option<Column>,
    pub label: Column,
    /// The official readers (GLUE's/Hugging Face's processors) skip rows with too few columns in
    /// these files (QQP, MNLI, QNLI contain such rows). We skip them too, but count and report them.
    pub official_reader_skips_bad_rows: bool,
}

/// How GLUE's label-free `test.tsv` files are laid out: a header, an index column the submission
/// repeats, the text columns; `label` names the header column only labelled files have (`None`
/// for CoLA, whose labelled files have no header at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestFormat {
    pub index: &'static str,
    pub text_a: &'static str,
    pub text_b: Option<&'static str>,
    pub label: Option<&'static str>,
}

/// A GLUE test file and the name GLUE's submission zip expects for its predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submission {
    /// The input file's name (stem), as GLUE distributes it: `test`, `test_matched`, `AX`, ...
    pub input: &'static str,
    /// The prediction file's name inside the zip: `RTE.tsv`, `MNLI-m.tsv`, `AX.tsv`, ...
    pub file: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Label strings in the order of the model's outputs (Hugging Face's processor order).
    Classification { labels: &'static [&'static str] },
    /// One real-valued output (STS-B, scores in [0, 5]).
    Regression,
    /// Start/end token logits over a window (SQuAD 2.0; index 0, CLS, means "no answer").
    Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    CrossEntropy,
    MeanSquaredError,
    /// Mean of the start and end cross-entropies.
    SpanCrossEntropy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Accuracy,
    /// F1 of the positive class (label "1").
    F1,
    Matthews,
    Pearson,
    Spearman,
    /// SQuAD 2.0 exact match (official normalisation), 0–100.
    Exact,
    /// SQuAD 2.0 token F1, 0–100.
    SquadF1,
}

impl MetricKind {
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Accuracy => "accuracy",
            MetricKind::F1 => "f1",
            MetricKind::Matthews => "matthews",
            MetricKind::Pearson => "pearson",
            MetricKind::Spearman => "spearman",
            MetricKind::Exact => "exact",
            MetricKind::SquadF1 => "f1",
        }
    }
}

/// Everything the rest of the code needs to know about a task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskSpec {
    pub name: &'static str,
    pub kind: TaskKind,
    pub loss: Loss,
    /// Metrics reported; the first is the one model selection and summaries use.
    pub metrics: &'static [MetricKind],
    /// File names inside the task's GLUE folder (SQuAD is given as JSON paths instead).
    pub train_file: &'static str,
    /// Evaluation splits: (split name, file name). MNLI has two.
    pub dev_files: &'static [(&'static str, &'static str)],
    pub format: Option<TsvFormat>,
    /// The label-free test files' layout (GLUE tasks).
    pub test_format: Option<TestFormat>,
    /// Submission file names by input file; the first is the default.
    pub submissions: &'static [Submission],
    /// Default maximum sequence length (tokens, specials included).
    pub max_len: usize,
}

impl TaskSpec {
    pub fn num_outputs(&self) -> usize {
        match self.kind {
            TaskKind::Classification { labels } => labels.len(),
            TaskKind::Regression => 1,
            TaskKind::Span => 2,
        }
    }

    pub fn primary_metric(&self) -> MetricKind {
        self.metrics[0]
    }

    pub fn is_glue(&self) -> bool {
        self.format.is_some()
    }
}

const BINARY: &[&str] = &["0", "1"];
const ENTAILMENT: &[&str] = &["entailment", "not_entailment"];
const DEV: &[(&str, &str)] = &[("dev", "dev.tsv")];

/// A TSV layout with a header row.
const fn with_header(
    text_a: &'static str,
    text_b: Option<&'static str>,
    label: Column,
    skips: bool,
) -> TsvFormat {
    TsvFormat {
        has_header: true,
        text_a: Column::Named(text_a),
        text_b: match text_b {
            Some(b) => Some(Column::Named(b)),
            None => None,
        },
        label,
        official_reader_skips_bad_rows: skips,
    }
}

/// RTE and WNLI: `index, sentence1, sentence2, label`.
const SENTENCE_PAIR: TsvFormat = with_header(
    "sentence1",
    Some("sentence2"),
    Column::Named("label"),
    false,
);

/// A GLUE task: `train.tsv` plus its dev files; cross-entropy unless it is a regression.
const fn glue(
    name: &'static str,
    kind: TaskKind,
    metrics: &'static [MetricKind],
    dev_files: &'static [(&'static str, &'static str)],
    format: TsvFormat,
    (test_format, submissions): (TestFormat, &'static [Submission]),
    max_len: usize,
) -> TaskSpec {
    TaskSpec {
        name,
        kind,
        loss: match kind {
            TaskKind::Regression => Loss::MeanSquaredError,
            _ => Loss::CrossEntropy,
        },
        metrics,
        train_file: "train.tsv",
        dev_files,
        format: Some(format),
        test_format: Some(test_format),
        submissions,
        max_len,
    }
}

/// A test layout: `index` first, the text columns by name, the labelled files' label column.
const fn test(
    text_a: &'static str,
    text_b: Option<&'static str>,
    label: Option<&'static str>,
) -> TestFormat {
    TestFormat {
        index: "index",
        text_a,
        text_b,
        label,
    }
}

/// GLUE's `test.tsv` of a task, submitted as `file`.
const fn on_test(file: &'static str) -> Submission {
    Submission {
        input: "test",
        file,
    }
}

/// All tasks. Default lengths: 128 for GLUE as in BERT's recipe (RTE 256 for its long premises;
/// the original used 250), 384 for SQuAD.
pub const TASKS: &[TaskSpec] = &[
    glue(
        "CoLA",
        TaskKind::Classification { labels: BINARY },
        &[MetricKind::Matthews, MetricKind::Accuracy],
        DEV,
        // No header: source, label, original label, sentence.
        TsvFormat {
            has_header: false,
            text_a: Column::Index(3),
            text_b: None,
            label: Column::Index(1),
            official_reader_skips_bad_rows: false,
        },
        (test("sentence", None, None), &[on_test("CoLA.tsv")]),
        128,
    ),
    glue(
        "SST-2",
        TaskKind::Classification { labels: BINARY },
        &[MetricKind::Accuracy],
        DEV,
        with_header("sentence", None, Column::Named("label"), false),
        (
            test("sentence", None, Some("label")),
            &[on_test("SST-2.tsv")],
        ),
        128,
    ),
    glue(
        "MRPC",
        TaskKind::Classification { labels: BINARY },
        &[MetricKind::F1, MetricKind::Accuracy],
        DEV,
        with_header(
            "#1 String",
            Some("#2 String"),
            Column::Named("Quality"),
            false,
        ),
        (
            test("#1 String", Some("#2 String"), Some("Quality")),
            &[on_test("MRPC.tsv")],
        ),
        128,
    ),
    glue(
        "STS-B",
        TaskKind::Regression,
        &[MetricKind::Pearson, MetricKind::Spearman],
        DEV,
        with_header(
            "sentence1",
            Some("sentence2"),
            Column::Named("score"),
            false,
        ),
        (
            test("sentence1", Some("sentence2"), Some("score")),
            &[on_test("STS-B.tsv")],
        ),
        128,
    ),
    glue(
        "QQP",
        TaskKind::Classification { labels: BINARY },
        &[MetricKind::F1, MetricKind::Accuracy],
        DEV,
        with_header(
            "question1",
            Some("question2"),
            Column::Named("is_duplicate"),
            true,
        ),
        (
            TestFormat {
                index: "id",
                ..test("question1", Some("question2"), Some("is_duplicate"))
            },
            &[on_test("QQP.tsv")],
        ),
        128,
    ),
    glue(
        "MNLI",
        TaskKind::Classification {
            labels: &["contradiction", "entailment", "neutral"],
        },
        &[MetricKind::Accuracy],
        &[
            ("dev_matched", "dev_matched.tsv"),
            ("dev_mismatched", "dev_mismatched.tsv"),
        ],
        with_header("sentence1", Some("sentence2"), Column::Last, true),
        (
            test("sentence1", Some("sentence2"), Some("gold_label")),
            &[
                Submission {
                    input: "test_matched",
                    file: "MNLI-m.tsv",
                },
                Submission {
                    input: "test_mismatched",
                    file: "MNLI-mm.tsv",
                },
                // GLUE's diagnostic set, predicted with the MNLI model.
                Submission {
                    input: "AX",
                    file: "AX.tsv",
                },
                Submission {
                    input: "diagnostic",
                    file: "AX.tsv",
                },
            ],
        ),
        128,
    ),
    glue(
        "QNLI",
        TaskKind::Classification { labels: ENTAILMENT },
        &[MetricKind::Accuracy],
        DEV,
        with_header("question", Some("sentence"), Column::Named("label"), true),
        (
            test("question", Some("sentence"), Some("label")),
            &[on_test("QNLI.tsv")],
        ),
        128,
    ),
    glue(
        "RTE",
        TaskKind::Classification { labels: ENTAILMENT },
        &[MetricKind::Accuracy],
        DEV,
        SENTENCE_PAIR,
        (
            test("sentence1", Some("sentence2"), Some("label")),
            &[on_test("RTE.tsv")],
        ),
        256,
    ),
    glue(
        "WNLI",
        TaskKind::Classification { labels: BINARY },
        &[MetricKind::Accuracy],
        DEV,
        SENTENCE_PAIR,
        (
            test("sentence1", Some("sentence2"), Some("label")),
            &[on_test("WNLI.tsv")],
        ),
        128,
    ),
    TaskSpec {
        name: "SQuAD2",
        kind: TaskKind::Span,
        loss: Loss::SpanCrossEntropy,
        metrics: &[MetricKind::SquadF1, MetricKind::Exact],
        train_file: "train-v2.0.json",
        dev_files: &[("dev", "dev-v2.0.json")],
        format: None,
        test_format: None,
        submissions: &[],
        max_len: 384,
    },
];

/// Looks a task up by name, ignoring case and punctuation (`sst2`, `STS-B`, `squad` all work).
pub fn task(name: &str) -> Result<&'static TaskSpec> {
    let key = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let wanted = key(name);
    let wanted = if wanted == "squad" || wanted == "squadv2" {
        "squad2".to_string()
    } else {
        wanted
    };
    TASKS.iter().find(|t| key(t.name) == wanted).ok_or_else(|| {
        Error::usage(format!(
            "unknown task \"{name}\" (known: {})",
            TASKS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_forgiving_about_spelling_but_not_names() {
        assert_eq!(task("sst2").unwrap().name, "SST-2");
        assert_eq!(task("sts-b").unwrap().name, "STS-B");
        assert_eq!(task("squad").unwrap().name, "SQuAD2");
        let e = task("mnli-mm").unwrap_err().to_string();
        assert!(e.contains("unknown task") && e.contains("CoLA"), "{e}");
    }

    #[test]
    fn outputs_follow_the_kind() {
        assert_eq!(task("MNLI").unwrap().num_outputs(), 3);
        assert_eq!(task("STS-B").unwrap().num_outputs(), 1);
        assert_eq!(task("RTE").unwrap().num_outputs(), 2);
        assert_eq!(task("STS-B").unwrap().loss, Loss::MeanSquaredError);
        assert_eq!(task("CoLA").unwrap().loss, Loss::CrossEntropy);
        assert_eq!(task("SQuAD2").unwrap().loss, Loss::SpanCrossEntropy);
        assert!(
            task("QQP")
                .unwrap()
                .format
                .unwrap()
                .official_reader_skips_bad_rows
        );
        assert_eq!(TASKS.len(), 10);
    }
}
