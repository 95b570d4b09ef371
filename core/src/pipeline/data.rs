//! A task's examples as model inputs: tokenised samples with targets, through the registry.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::squad::{FeatureConfig, SquadDataset, SquadExample, SquadFeature, featurize};
use crate::tasks::glue::{self, Label};
use crate::tasks::{TaskKind, TaskSpec};
use crate::tokenize::{BertTokenizer, Encoded};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    Class(usize),
    Score(f32),
    Span { start: usize, end: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub encoded: Encoded,
    pub target: Target,
}

/// One evaluation split: samples, plus the SQuAD examples and windows post-processing needs.
#[derive(Debug, Clone)]
pub struct EvalSplit {
    pub name: String,
    pub samples: Vec<Sample>,
    pub squad: Option<(SquadDataset, Vec<SquadExample>, Vec<SquadFeature>)>,
}

#[derive(Debug, Clone)]
pub struct TaskData {
    pub train: Vec<Sample>,
    pub eval: Vec<EvalSplit>,
    /// Lines describing what was read (counts, skipped rows), for the log and results.
    pub notes: Vec<String>,
}

/// Where a task's files are (a run writes it to `data.json`, so that `train-head` reads the same).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// A GLUE folder holding `<TASK>/train.tsv`, `<TASK>/dev.tsv`, ... (or the task folder itself).
    Glue { dir: PathBuf },
    /// SQuAD: separate train and evaluation files.
    SquadFiles { train: PathBuf, eval: PathBuf },
    /// SQuAD: one file split by article (the last `eval_articles` articles are held out).
    SquadSplit { data: PathBuf, eval_articles: usize },
}

impl DataSource {
    /// The same source with absolute paths, `..` and links resolved where the file exists (as
    /// recorded beside a run, and compared: one file reached by two paths is the same data).
    pub fn absolute(&self) -> DataSource {
        let abs = |p: &PathBuf| {
            p.canonicalize()
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.clone())
        };
        match self {
            DataSource::Glue { dir } => DataSource::Glue { dir: abs(dir) },
            DataSource::SquadFiles { train, eval } => DataSource::SquadFiles {
                train: abs(train),
                eval: abs(eval),
            },
            DataSource::SquadSplit {
                data,
                eval_articles,
            } => DataSource::SquadSplit {
                data: abs(data),
                eval_articles: *eval_articles,
            },
        }
    }
}

fn glue_task_dir(task: &TaskSpec, dir: &Path) -> PathBuf {
    let nested = dir.join(task.name);
    if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

fn glue_samples(
    task: &TaskSpec,
    split: &glue::GlueSplit,
    tokenizer: &mut BertTokenizer,
    max_len: usize,
    limit: Option<usize>,
) -> Result<Vec<Sample>> {
    split
        .examples
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|e| {
            let encoded = tokenizer.encode(&e.text_a, e.text_b.as_deref(), Some(max_len))?;
            let target = match (&e.label, task.kind) {
                (Label::Class(c), _) => Target::Class(*c),
                (Label::Score(s), _) => Target::Score(*s),
            };
            Ok(Sample { encoded, target })
        })
        .collect()
}

fn squad_samples(features: &[SquadFeature]) -> Vec<Sample> {
    features
        .iter()
        .map(|f| Sample {
            encoded: f.encoded.clone(),
            target: Target::Span {
                start: f.start,
                end: f.end,
            },
        })
        .collect()
}

/// Keeps the first `limit` questions of a SQuAD dataset (whole paragraphs are kept intact in
/// the file order; the cut falls between questions).
fn limit_squad(dataset: &SquadDataset, limit: Option<usize>) -> SquadDataset {
    let Some(limit) = limit else {
        return dataset.clone();
    };
    let mut out = dataset.clone();
    let mut left = limit;
    for article in &mut out.articles {
        for paragraph in &mut article.paragraphs {
            let keep = paragraph.qas.len().min(left);
            paragraph.qas.truncate(keep);
            left -= keep;
        }
        article.paragraphs.retain(|p| !p.qas.is_empty());
    }
    out.articles.retain(|a| !a.paragraphs.is_empty());
    out
}

/// Loads and tokenises a task's training and evaluation data.
pub fn load_task_data(
    task: &TaskSpec,
    source: &DataSource,
    tokenizer: &mut BertTokenizer,
    max_len: usize,
    squad_features: &FeatureConfig,
    limit_train: Option<usize>,
    limit_eval: Option<usize>,
) -> Result<TaskData> {
    let mut notes = Vec::new();
    match (task.kind, source) {
        (TaskKind::Span, DataSource::Glue { .. }) => Err(Error::usage(format!(
            "{} needs --train-file/--eval-file or --data (SQuAD JSON), not --data-dir",
            task.name
        ))),
        (TaskKind::Span, _) => {
            let (train_set, eval_set) = match source {
                DataSource::SquadFiles { train, eval } => {
                    (SquadDataset::load(train)?, SquadDataset::load(eval)?)
                }
                DataSource::SquadSplit {
                    data,
                    eval_articles,
                } => SquadDataset::load(data)?.split_by_article(*eval_articles)?,
                DataSource::Glue { .. } => unreachable!(),
            };
            let train_set = limit_squad(&train_set, limit_train);
            let eval_set = limit_squad(&eval_set, limit_eval);
            let config = FeatureConfig {
                max_len,
                ..*squad_features
            };
            let train_examples = train_set.examples();
            let train_features = featurize(&train_examples, tokenizer, &config)?;
            let eval_examples = eval_set.examples();
            let eval_features = featurize(&eval_examples, tokenizer, &config)?;
            notes.push(format!(
                "SQuAD train: {} articles, {} questions, {} windows; eval: {} articles, {} questions, {} windows",
                train_set.articles.len(),
                train_examples.len(),
                train_features.len(),
                eval_set.articles.len(),
                eval_examples.len(),
                eval_features.len()
            ));
            Ok(TaskData {
                train: squad_samples(&train_features),
                eval: vec![EvalSplit {
                    name: "dev".into(),
                    samples: squad_samples(&eval_features),
                    squad: Some((eval_set, eval_examples, eval_features)),
                }],
                notes,
            })
        }
        (_, DataSource::Glue { dir }) => {
            let dir = glue_task_dir(task, dir);
            let train = glue::load_train(task, &dir)?;
            notes.push(train.summary());
            let train_samples = glue_samples(task, &train, tokenizer, max_len, limit_train)?;
            let mut eval = Vec::new();
            for (name, split) in glue::load_dev(task, &dir)? {
                notes.push(split.summary());
                eval.push(EvalSplit {
                    name: name.to_string(),
                    samples: glue_samples(task, &split, tokenizer, max_len, limit_eval)?,
                    squad: None,
                });
            }
            Ok(TaskData {
                train: train_samples,
                eval,
                notes,
            })
        }
        (_, _) => Err(Error::usage(format!(
            "{} is a GLUE task: give --data-dir",
            task.name
        ))),
    }
}
