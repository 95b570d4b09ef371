//! A search's folder: `search.json` (the settings a resumed search must match), one run folder
//! per trial (`trial-0007/`, its proposed settings in `params.json` once claimed), and
//! `trials.jsonl`, one line per finished trial, appended under a lock so that several processes
//! can share the folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sampler::Algorithm;
use super::space::{Dimension, Params};
use crate::error::{Error, Result};
use crate::fsutil::{WorkLock, write_atomic};

/// What a search is: a resumed search with other settings is refused (more trials are not
/// "other settings").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// The finished run the trials start from (absolute).
    pub from: PathBuf,
    pub space: Vec<Dimension>,
    pub algorithm: Algorithm,
    pub seed: u64,
    /// TPE's random trials before it models the history.
    pub startup_trials: usize,
    /// The method whose validation score is maximised (`bertvision`, `bert_final`, …).
    pub objective: String,
    /// The task's metric of that method (its first: accuracy, f1, mcc, pearson; SQuAD's f1).
    pub metric: String,
    /// The run's seeds each trial trains (the objective is their mean).
    pub seeds: Vec<u64>,
    /// Fine-tuning trials: the share of the training data each fine-tunes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// Whether the trials fine-tune (a fine-tuning setting is in the space) or train heads on
    /// the run's checkpoints.
    pub finetunes: bool,
}

/// One finished trial, a line of `trials.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub trial: usize,
    pub params: Params,
    /// The objective's metric on the validation split, mean over the trial's seeds (`None`: not
    /// a number, e.g. a diverged head's correlation).
    pub validation: Option<f64>,
    /// The same method and metric on dev: reported, never searched on.
    pub dev: Option<f64>,
    /// Seconds the trial took in the process that finished it.
    pub seconds: f64,
    /// The trial's run folder, relative to the search folder.
    pub folder: String,
}

pub struct SearchDir {
    pub dir: PathBuf,
}

impl SearchDir {
    /// Makes `dir` the folder of `settings`' search: a new folder gets `search.json`; one of the
    /// same search is resumed; one of another is refused, naming what differs.
    pub fn claim(dir: &Path, settings: &SearchSettings) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("search.json");
        let json = serde_json::to_string_pretty(settings).expect("plain data");
        match crate::pipeline::context::read_json::<SearchSettings>(&path)? {
            None => write_atomic(&path, json.as_bytes())?,
            Some(existing) if existing == *settings => {}
            Some(existing) => {
                let old = serde_json::to_value(&existing).expect("plain data");
                let new = serde_json::to_value(settings).expect("plain data");
                let keys: Vec<String> = new
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| old.get(k.as_str()) != Some(v))
                    .map(|(k, _)| k.clone())
                    .collect();
                return Err(Error::usage(format!(
                    "{} holds another search (differs in {}); use another --out or delete it",
                    dir.display(),
                    keys.join(", ")
                )));
            }
        }
        Ok(SearchDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn trial_dir(&self, trial: usize) -> PathBuf {
        self.dir.join(trial_folder(trial))
    }

    /// The finished trials, in the order they finished; a line that does not parse (a write
    /// cut by a crash) is refused by name.
    pub fn finished(&self) -> Result<Vec<TrialRecord>> {
        let path = self.dir.join("trials.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| {
                    Error::invalid(&path, format!("line {}: not a trial record ({e})", i + 1))
                })
            })
            .collect()
    }

    /// Appends `record` as one line, under the folder's lock (several processes append).
    pub fn append(&self, record: &TrialRecord) -> Result<()> {
        let _lock = WorkLock::acquire(&self.dir)?;
        let path = self.dir.join("trials.jsonl");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let line = serde_json::to_string(record).expect("plain data") + "\n";
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(&path, e))
    }

    /// The settings proposed to `trial` before (it was claimed, then interrupted).
    pub fn proposed(&self, trial: usize) -> Result<Option<Params>> {
        crate::pipeline::context::read_json(&self.trial_dir(trial).join("params.json"))
    }

    pub fn propose(&self, trial: usize, params: &Params) -> Result<()> {
        let path = self.trial_dir(trial).join("params.json");
        let json = serde_json::to_string_pretty(params).expect("plain data");
        write_atomic(&path, json.as_bytes())
    }
}

pub fn trial_folder(trial: usize) -> String {
    format!("trial-{trial:04}")
}
