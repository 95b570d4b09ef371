//! A task's examples as model inputs: tokenised samples with targets, through the registry.

use std::path::{Path, PathBuf};

use super::config::RunConfig;
use super::validation::{VALIDATION, split_validation, validation_articles};
use crate::error::{Error, Result};
use crate::squad::{FeatureConfig, SquadDataset, SquadExample, SquadFeature, featurize};
use crate::tasks::glue::{self, Label};
use crate::tasks::{TaskKind, TaskSpec};
use crate::tokenize::{BertTokenizer, Encoded};
use crate::wording::count;

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

/// What a run folder's data is (`data.json`): where (absolute paths) and what (every split's
/// size and the hash of its examples' tokens and targets, after the slices), so that a resumed
/// run on other files, or on the same files changed, is refused instead of mixing results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataRecord {
    pub source: DataSource,
    /// `None` in records from before the hashes were kept (a bare `DataSource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<std::collections::BTreeMap<String, super::results::SplitInfo>>,
}

impl DataRecord {
    /// `data` loaded from `source`.
    pub fn of(source: &DataSource, data: &TaskData) -> Self {
        DataRecord {
            source: source.absolute(),
            splits: Some(data.split_infos()),
        }
    }

    /// Reads `path` (`None` when there is none), in either format: a record, or an older
    /// version's bare source.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum OnDisk {
            Record(DataRecord),
            Source(DataSource),
        }
        Ok(
            super::context::read_json::<OnDisk>(path)?.map(|on_disk| match on_disk {
                OnDisk::Record(record) => record,
                OnDisk::Source(source) => DataRecord {
                    source,
                    splits: None,
                },
            }),
        )
    }

    /// How `loaded` differs from this record's splits (`None`: the same, or nothing recorded),
    /// naming each split that changed with its two sizes and hashes.
    pub fn changed_splits(&self, loaded: &DataRecord) -> Option<String> {
        let (Some(old), Some(new)) = (&self.splits, &loaded.splits) else {
            return None;
        };
        let mut changes = Vec::new();
        for name in old
            .keys()
            .chain(new.keys().filter(|k| !old.contains_key(*k)))
        {
            let show = |info: Option<&super::results::SplitInfo>| {
                info.map_or("none".to_string(), |i| {
                    format!("{} examples, hash {}", i.examples, i.key)
                })
            };
            let (was, is) = (old.get(name), new.get(name));
            if was != is {
                changes.push(format!("{name}: {} → {}", show(was), show(is)));
            }
        }
        (!changes.is_empty()).then(|| changes.join("; "))
    }
}

impl TaskData {
    /// Every split's size and identity: `train` as loaded (before `--train-fraction`), then the
    /// evaluation splits (`validation` first when held out).
    pub fn split_infos(&self) -> std::collections::BTreeMap<String, super::results::SplitInfo> {
        use super::results::SplitInfo;
        std::iter::once(("train".to_string(), SplitInfo::of(&self.train)))
            .chain(
                self.eval
                    .iter()
                    .map(|s| (s.name.clone(), SplitInfo::of(&s.samples))),
            )
            .collect()
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

/// A SQuAD split's windows as samples (the span target is the window's label).
pub(crate) fn squad_samples(features: &[SquadFeature]) -> Vec<Sample> {
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

/// Loads and tokenises a task's training and evaluation data; with a `validation_fraction`, the
/// validation split is carved from the training data (after `limit_train`) and listed first.
pub fn load_task_data(
    task: &TaskSpec,
    source: &DataSource,
    tokenizer: &mut BertTokenizer,
    config: &RunConfig,
) -> Result<TaskData> {
    let data = load_by_kind(task, source, tokenizer, config)?;
    // Every phase reads at least one batch of every split (its outputs are indexed by split).
    let splits = std::iter::once(("train", data.train.len()))
        .chain(data.eval.iter().map(|s| (s.name.as_str(), s.samples.len())));
    for (name, len) in splits {
        if len == 0 {
            return Err(Error::usage(format!(
                "{}: its {name} split has no examples left (after --limit-train/--limit-eval/--validation-fraction)",
                task.name
            )));
        }
    }
    Ok(data)
}

fn load_by_kind(
    task: &TaskSpec,
    source: &DataSource,
    tokenizer: &mut BertTokenizer,
    config: &RunConfig,
) -> Result<TaskData> {
    match (task.kind, source) {
        (TaskKind::Span, DataSource::Glue { .. }) => Err(Error::usage(format!(
            "{} needs --train-file/--eval-file or --data (SQuAD JSON), not --data-dir",
            task.name
        ))),
        (TaskKind::Span, _) => load_squad(source, tokenizer, config),
        (_, DataSource::Glue { dir }) => load_glue(task, dir, tokenizer, config),
        (_, _) => Err(Error::usage(format!(
            "{} is a GLUE task: give --data-dir",
            task.name
        ))),
    }
}

fn load_glue(
    task: &TaskSpec,
    dir: &Path,
    tokenizer: &mut BertTokenizer,
    config: &RunConfig,
) -> Result<TaskData> {
    let mut notes = Vec::new();
    let dir = glue_task_dir(task, dir);
    let train = glue::load_train(task, &dir)?;
    notes.push(train.summary());
    let max_len = config.max_len;
    let mut train_samples = glue_samples(task, &train, tokenizer, max_len, config.limit_train)?;
    let mut eval = Vec::new();
    if let Some(fraction) = config.validation_fraction {
        let (kept, held) = split_validation(train_samples, fraction);
        notes.push(format!(
            "validation: {} of {} training examples held out (--validation-fraction {fraction}, stratified by label)",
            held.len(),
            kept.len() + held.len()
        ));
        train_samples = kept;
        eval.push(EvalSplit {
            name: VALIDATION.into(),
            samples: held,
            squad: None,
        });
    }
    for (name, split) in glue::load_dev(task, &dir)? {
        notes.push(split.summary());
        eval.push(EvalSplit {
            name: name.to_string(),
            samples: glue_samples(task, &split, tokenizer, max_len, config.limit_eval)?,
            squad: None,
        });
    }
    Ok(TaskData {
        train: train_samples,
        eval,
        notes,
    })
}

/// A SQuAD split: its windows as samples, with the examples and windows post-processing needs.
fn squad_split(
    name: &str,
    set: SquadDataset,
    tokenizer: &mut BertTokenizer,
    config: &FeatureConfig,
) -> Result<EvalSplit> {
    let examples = set.examples();
    let features = featurize(&examples, tokenizer, config)?;
    Ok(EvalSplit {
        name: name.into(),
        samples: squad_samples(&features),
        squad: Some((set, examples, features)),
    })
}

/// Holds whole articles of `train` out for validation (see [`validation_articles`]).
fn split_articles(train: SquadDataset, fraction: f64) -> (SquadDataset, SquadDataset) {
    let key = dataset_titles_key(&train);
    let held = validation_articles(train.articles.len(), fraction, key);
    let (out, stay): (Vec<_>, Vec<_>) =
        (train.articles.iter().cloned().enumerate()).partition(|(i, _)| held.contains(i));
    let part = |articles: Vec<(usize, _)>| SquadDataset {
        path: train.path.clone(),
        version: train.version.clone(),
        articles: articles.into_iter().map(|(_, a)| a).collect(),
    };
    (part(stay), part(out))
}

/// FNV-1a over the articles' titles: which articles a SQuAD file has.
fn dataset_titles_key(set: &SquadDataset) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in set.articles.iter().flat_map(|a| a.title.bytes().chain([0])) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn load_squad(
    source: &DataSource,
    tokenizer: &mut BertTokenizer,
    config: &RunConfig,
) -> Result<TaskData> {
    let (train_set, eval_set) = match source {
        DataSource::SquadFiles { train, eval } => {
            (SquadDataset::load(train)?, SquadDataset::load(eval)?)
        }
        DataSource::SquadSplit {
            data,
            eval_articles,
        } => SquadDataset::load(data)?.split_by_article(*eval_articles)?,
        DataSource::Glue { .. } => {
            return Err(Error::usage(
                "SQuAD needs --data or --train-file/--eval-file",
            ));
        }
    };
    let mut train_set = limit_squad(&train_set, config.limit_train);
    let eval_set = limit_squad(&eval_set, config.limit_eval);
    let features = FeatureConfig {
        max_len: config.max_len,
        ..config.squad_features
    };
    let mut eval = Vec::new();
    let mut notes = Vec::new();
    if let Some(fraction) = config.validation_fraction {
        let (kept, held) = split_articles(train_set, fraction);
        train_set = kept;
        let split = squad_split(VALIDATION, held, tokenizer, &features)?;
        notes.push(squad_note(
            "validation (--validation-fraction, whole articles)",
            &split,
        ));
        eval.push(split);
    }
    let train_examples = train_set.examples();
    let train_features = featurize(&train_examples, tokenizer, &features)?;
    let dev = squad_split("dev", eval_set, tokenizer, &features)?;
    notes.insert(
        0,
        format!(
            "SQuAD train: {}, {}, {}; {}",
            count(train_set.articles.len(), "article"),
            count(train_examples.len(), "question"),
            count(train_features.len(), "window"),
            squad_note("eval", &dev)
        ),
    );
    eval.push(dev);
    Ok(TaskData {
        train: squad_samples(&train_features),
        eval,
        notes,
    })
}

/// "name: A articles, Q questions, W windows".
fn squad_note(name: &str, split: &EvalSplit) -> String {
    let (articles, questions) = split.squad.as_ref().map_or((0, 0), |(set, examples, _)| {
        (set.articles.len(), examples.len())
    });
    format!(
        "{name}: {}, {}, {}",
        count(articles, "article"),
        count(questions, "question"),
        count(split.samples.len(), "window")
    )
}
