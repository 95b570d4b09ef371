//! `train-head`: new heads on a finished run's kept checkpoints, never fine-tuning again. The
//! run's configuration with another head (and a subset of its points and seeds) runs through
//! the same phases as `run` (`RunRequest::from_run`), in a folder of its own.

use std::path::{Path, PathBuf};

use super::config::RunConfig;
use super::context::read_json;
use super::data::{DataRecord, DataSource};
use super::files::SeedFiles;
use super::methods::point_label;
use crate::error::{Error, Result};

/// A finished run, as `train-head` reads it.
pub struct FinishedRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    /// Where its data was (`data.json`; `None` for runs from before it was recorded).
    pub data: Option<DataSource>,
}

impl FinishedRun {
    /// Reads `dir/config.json` and `dir/data.json`; a folder without a run is refused by name.
    pub fn read(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = read_json::<RunConfig>(&config_path)?.ok_or_else(|| {
            Error::invalid(
                &config_path,
                "missing: not the folder of a `bertvision run`",
            )
        })?;
        Ok(FinishedRun {
            dir: dir.to_path_buf(),
            data: DataRecord::read(&dir.join("data.json"))?.map(|r| r.source),
            config,
        })
    }

    /// `config` (the run's, its head settings changed) at the points `at` (default: all the
    /// run's) and for the seeds `seeds` (default: all), after checking that the run kept what
    /// those need: each seed's fine-tuning finished and a checkpoint at each point.
    pub fn heads_config(
        &self,
        mut config: RunConfig,
        at: Option<Vec<f64>>,
        seeds: Option<Vec<u64>>,
    ) -> Result<RunConfig> {
        let run = &self.config;
        if let Some(mut at) = at {
            at.sort_by(f64::total_cmp);
            if let Some(p) = at.iter().find(|p| !run.extract_at.contains(p)) {
                return Err(Error::usage(format!(
                    "--at {}: {} kept no checkpoint there (its points: {})",
                    point_label(*p),
                    self.dir.display(),
                    labels(&run.extract_at)
                )));
            }
            config.extract_at = at;
        }
        if let Some(seeds) = seeds {
            if let Some(s) = seeds.iter().find(|s| !run.seeds.contains(s)) {
                return Err(Error::usage(format!(
                    "--seeds {s}: {} has no seed {s} (its seeds: {:?})",
                    self.dir.display(),
                    run.seeds
                )));
            }
            config.seeds = seeds;
        }
        self.check_checkpoints(&config)?;
        Ok(config)
    }

    fn check_checkpoints(&self, config: &RunConfig) -> Result<()> {
        for &seed in &config.seeds {
            let seed_dir = self.dir.join(format!("seed-{seed}"));
            let files = SeedFiles::new(seed_dir.clone(), seed_dir, self.config.last_point());
            let needed = config.extract_at.iter().map(|&p| files.bert_at(p));
            let needed = needed.chain([files.bert_final.clone(), files.finetune.loss.clone()]);
            if let Some(missing) = needed.into_iter().find(|p| !p.is_file()) {
                return Err(Error::invalid(
                    &missing,
                    "missing: the run's fine-tuning of this seed did not finish, or its checkpoints were deleted",
                ));
            }
        }
        Ok(())
    }

    /// A folder name for heads of `config` under `RUN/heads/`: what differs from the run's
    /// configuration (`adapter_size-16`, `train_fractions-0.1,0.3`, `at-0.5`), `same` if nothing.
    pub fn heads_name(&self, config: &RunConfig) -> String {
        let run = serde_json::to_value(&self.config.head).expect("plain data");
        let new = serde_json::to_value(&config.head).expect("plain data");
        let mut parts = Vec::new();
        if let (Some(run), Some(new)) = (run.as_object(), new.as_object()) {
            for (key, value) in new {
                if run.get(key) != Some(value) {
                    parts.push(format!("{key}-{}", compact(value)));
                }
            }
            for key in run.keys().filter(|k| !new.contains_key(*k)) {
                parts.push(format!("{key}-default"));
            }
        }
        if config.extract_at != self.config.extract_at {
            parts.push(format!("at-{}", labels(&config.extract_at)));
        }
        if config.seeds != self.config.seeds {
            let seeds: Vec<String> = config.seeds.iter().map(u64::to_string).collect();
            parts.push(format!("seeds-{}", seeds.join(",")));
        }
        if parts.is_empty() {
            "same".to_string()
        } else {
            parts.join("_")
        }
    }
}

fn labels(points: &[f64]) -> String {
    let labels: Vec<String> = points.iter().map(|&p| point_label(p)).collect();
    labels.join(",")
}

/// A JSON value as a short file-name part: `16`, `0.1,0.3`, `fused`.
fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(compact).collect::<Vec<_>>().join(","),
        serde_json::Value::Number(n) => n.as_f64().map_or(n.to_string(), point_label),
        other => other.to_string().replace(['{', '}', '"', ':', ' '], ""),
    }
}
