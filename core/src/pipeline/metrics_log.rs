//! `seed-N/metrics.jsonl`: every training step's loss and learning rate, and every evaluation of
//! BERT during fine-tuning, one JSON object per line as it happens (`pandas.read_json(path,
//! lines=True)` reads it). A resumed phase first drops its lines past the step it resumes at,
//! so that no step appears twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::methods::SplitMetrics;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// The log of one phase (`finetune`, `bertvision@1`, …) in one file.
#[derive(Debug, Clone)]
pub struct MetricsLog {
    path: PathBuf,
    phase: String,
}

impl MetricsLog {
    /// The log of `phase` at `path`, its lines past `resumed_step` dropped (all of them for a
    /// phase starting afresh).
    pub fn open(path: &Path, phase: &str, resumed_step: usize) -> Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| {
                    let Ok(v) = serde_json::from_str::<Value>(line) else {
                        return false; // a line cut by a kill
                    };
                    let step = v["step"].as_u64().unwrap_or(0) as usize;
                    v["phase"] != phase || step <= resumed_step
                })
                .collect();
            let mut out = kept.join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            if out != text {
                write_atomic(path, out.as_bytes())?;
            }
        }
        Ok(MetricsLog {
            path: path.to_path_buf(),
            phase: phase.to_string(),
        })
    }

    /// The log of `phase` at `path`, as it is (for a writer beside the phase's own).
    pub fn append_to(path: &Path, phase: &str) -> Self {
        MetricsLog {
            path: path.to_path_buf(),
            phase: phase.to_string(),
        }
    }

    fn append(&self, mut line: Value) -> Result<()> {
        line["phase"] = json!(self.phase);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(file, "{line}").map_err(|e| Error::io(&self.path, e))
    }

    /// One optimizer step.
    pub fn step(&self, step: usize, epoch: f64, loss: f32, lr: f64, seconds: f64) -> Result<()> {
        self.append(json!({
            "step": step, "epoch": epoch, "loss": loss, "lr": lr, "seconds": seconds
        }))
    }

    /// BERT's scores at a point of fine-tuning, one line per split.
    pub fn eval(&self, step: usize, epoch: f64, scores: &SplitMetrics) -> Result<()> {
        for (split, metrics) in scores {
            let mut line = json!({ "step": step, "epoch": epoch, "split": split });
            for (name, value) in metrics {
                line[name] = json!(value);
            }
            self.append(line)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_phase_drops_its_lines_past_the_resume_step() {
        let dir = std::env::temp_dir().join(format!("bv-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = MetricsLog::open(&path, "finetune", 0).unwrap();
        for step in 1..=5 {
            log.step(step, step as f64 / 5.0, 0.5, 1e-4, 1.0).unwrap();
        }
        let head = MetricsLog::open(&path, "bertvision@1", 0).unwrap();
        head.step(1, 0.1, 0.7, 1e-3, 0.1).unwrap();
        MetricsLog::open(&path, "finetune", 3).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines
                .iter()
                .all(|l| l["phase"] != "finetune" || l["step"].as_u64() <= Some(3))
        );
        assert_eq!(lines[3]["phase"], "bertvision@1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
