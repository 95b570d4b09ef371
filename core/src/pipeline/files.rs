//! Where a seed keeps its files, and the times its phases took (`seed-N/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::context::{read_json, write_json};
use super::methods::point_label;
use crate::error::Result;

/// A training phase's files: the trained module, its loss curve, its resumable checkpoint.
pub(super) struct PhaseFiles {
    pub model: PathBuf,
    pub loss: PathBuf,
    pub checkpoint: PathBuf,
}

/// One seed's files. BERT's checkpoints live in `checkpoints` (the run's seed folder; for
/// `train-head` the run it reads from), everything else in `dir`.
pub(super) struct SeedFiles {
    pub dir: PathBuf,
    checkpoints: PathBuf,
    last_point: f64,
    pub bert_final: PathBuf,
    /// `--select-best`: the best checkpoint so far, the end-of-training model, and the choice.
    pub bert_best: PathBuf,
    pub bert_end: PathBuf,
    pub selection: PathBuf,
    /// Every loss and evaluation as it happens (`metrics.jsonl`, [`super::metrics_log`]).
    pub metrics_log: PathBuf,
    pub finetune: PhaseFiles,
    /// BERT's scores at the evaluation-only points of fine-tuning (`--eval-every-epochs`).
    pub finetune_evals: PathBuf,
    /// Steps and seconds of fine-tuning at every point ([`FinetuneTimes`]).
    pub finetune_times: PathBuf,
    /// Seconds of every head trained here, by method key.
    pub head_times: PathBuf,
    pub predictions: PathBuf,
    pub export: PathBuf,
    pub result: PathBuf,
}

impl SeedFiles {
    pub fn new(dir: PathBuf, checkpoints: PathBuf, last_point: f64) -> Self {
        let at = |name: &str| checkpoints.join(name);
        SeedFiles {
            bert_final: at("bert-final.bin"),
            bert_best: at("bert-best.bin"),
            bert_end: at("bert-end.bin"),
            selection: at("selection.json"),
            metrics_log: dir.join("metrics.jsonl"),
            finetune: PhaseFiles {
                model: at("bert-final.bin"),
                loss: at("finetune-loss.json"),
                checkpoint: at("finetune.ckpt"),
            },
            finetune_evals: at("finetune-evals.json"),
            finetune_times: at("finetune-times.json"),
            head_times: dir.join("head-times.json"),
            predictions: dir.join("predictions"),
            export: dir.join("export"),
            result: dir.join("result.json"),
            last_point,
            checkpoints,
            dir,
        }
    }

    /// BERT with its task head after `point` epochs: `bert-extract.bin` for the last point (the
    /// name from before several points were possible), `bert-at-<p>.bin` for the others.
    pub fn bert_at(&self, point: f64) -> PathBuf {
        if point == self.last_point {
            self.checkpoints.join("bert-extract.bin")
        } else {
            self.checkpoints
                .join(format!("bert-at-{}.bin", point_label(point)))
        }
    }

    /// The head trained at `point` on the share `fraction` of the training data: the old names
    /// (`head-final.bin`, `head-loss.json`, `head.ckpt`) for the last point on all the data.
    pub fn head(&self, point: f64, fraction: f64) -> PhaseFiles {
        let stem = match (point == self.last_point, fraction == 1.0) {
            (true, true) => {
                return PhaseFiles {
                    model: self.dir.join("head-final.bin"),
                    loss: self.dir.join("head-loss.json"),
                    checkpoint: self.dir.join("head.ckpt"),
                };
            }
            (_, true) => format!("head-at-{}", point_label(point)),
            _ => format!(
                "head-at-{}-of-{}",
                point_label(point),
                point_label(fraction)
            ),
        };
        PhaseFiles {
            model: self.dir.join(format!("{stem}.bin")),
            loss: self.dir.join(format!("{stem}-loss.json")),
            checkpoint: self.dir.join(format!("{stem}.ckpt")),
        }
    }
}

/// Where fine-tuning stood when it passed a point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointTime {
    pub step: usize,
    /// Seconds of fine-tuning up to that step, over every process.
    pub seconds: f64,
}

/// Fine-tuning's time at every point of the curves, by point label.
pub(super) type FinetuneTimes = BTreeMap<String, PointTime>;

/// A JSON map read from `path` (empty when the file does not exist yet).
pub(super) fn read_map<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<BTreeMap<String, T>> {
    Ok(read_json(path)?.unwrap_or_default())
}

/// Sets `key` in the JSON map at `path` (read, changed, written atomically).
pub(super) fn update_map<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    key: String,
    value: T,
) -> Result<()> {
    let mut map: BTreeMap<String, T> = read_map(path)?;
    map.insert(key, value);
    write_json(path, &map)
}
