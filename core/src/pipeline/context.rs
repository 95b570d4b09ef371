//! What the phases of a seed share: the run's context, the seed's files, the seed's result, and
//! reading and writing them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::batch::Padding;
use super::config::RunConfig;
use super::data::{Sample, TaskData};
use super::methods::MetricTable;
use super::progress::Progress;
use super::trainer::{LoopSpec, LossCurve};
use crate::bert::BertConfig;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::head::{AdapterPoolerConfig, HeadKind};
use crate::models::ModelDir;
use crate::tasks::{TaskKind, TaskSpec};
use crate::train::Checkpoint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub metrics: MetricTable,
    pub finetune_loss: LossCurve,
    pub head_loss: LossCurve,
    /// Seconds per phase (fine-tuning, head training, evaluation, export) of the last process
    /// that ran it; a resumed phase counts only its own process's time.
    pub wall_seconds: BTreeMap<String, f64>,
    /// Each hidden-state layer's weight in the AdapterPooler, embeddings first
    /// (`AdapterPooler::layer_share`).
    #[serde(default)]
    pub head_layer_share: Vec<f64>,
    /// SQuAD splits: one row per question with every method's answer.
    #[serde(default)]
    pub squad_examples: BTreeMap<String, Vec<SquadRow>>,
    /// What each point of the curves cost: fine-tuning steps and seconds up to it, and the
    /// seconds of the head trained there on all the data (where one was).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub costs: Vec<PointCost>,
    /// The loss curves of the heads other than `head_loss`'s, by method key
    /// (`bertvision@0.5`, `bertvision@1/0.1`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub head_losses: BTreeMap<String, LossCurve>,
    /// `--select-best`: every point's scores and the one kept as `bert_final`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<super::selection::Selection>,
}

/// The cost of one point of a seed's curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointCost {
    /// Epochs of fine-tuning.
    pub at: f64,
    pub finetune_steps: usize,
    /// Seconds of fine-tuning up to the point, over every process that worked on it (`None`
    /// where the fine-tuning was timed by an older version).
    pub finetune_seconds: Option<f64>,
    /// Seconds of training the head on all the data at this point (`None`: no head here).
    pub head_seconds: Option<f64>,
}

/// One evaluated SQuAD question and what each method answered ("" = no answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SquadRow {
    pub id: String,
    pub question: String,
    /// Gold answers; empty for unanswerable questions.
    pub gold: Vec<String>,
    /// Length of the passage in white-space separated words.
    pub context_words: usize,
    pub answers: BTreeMap<String, String>,
}

/// Everything a seed needs.
#[derive(Clone, Copy)]
pub struct RunContext<'a> {
    pub config: &'a RunConfig,
    pub task: &'static TaskSpec,
    pub model_dir: &'a ModelDir,
    pub data: &'a TaskData,
    /// The seed's training examples: all of `data.train`, or its `--train-fraction` sample.
    pub train: &'a [Sample],
    pub pad_id: u32,
    /// Batch lengths are rounded up to a multiple of this (1 on CPU; larger on GPUs).
    pub pad_multiple: usize,
    pub out_dir: &'a Path,
    /// `train-head`: the run folder whose fine-tuning (checkpoints, times, scores) is read
    /// instead of fine-tuning again.
    pub from_run: Option<&'a Path>,
    /// Hidden states kept in memory across head epochs and trials (`None`: streamed).
    pub hidden_cache: Option<&'a super::hidden_cache::HiddenCache>,
    /// Whether the export holds BERT too (`RunRequest::export_bert`).
    pub export_bert: bool,
    /// The peers fine-tuning runs on (`RunRequest::devices`).
    pub devices: &'a crate::train::DeviceSet,
}

impl RunContext<'_> {
    pub fn seed_dir(&self, seed: u64) -> PathBuf {
        self.out_dir.join(format!("seed-{seed}"))
    }

    /// Where the seed's BERT checkpoints are: its own folder, or the run's for `train-head`.
    pub fn checkpoint_dir(&self, seed: u64) -> PathBuf {
        self.from_run
            .unwrap_or(self.out_dir)
            .join(format!("seed-{seed}"))
    }

    pub fn head_config(&self, bert: &BertConfig) -> AdapterPoolerConfig {
        let h = &self.config.head;
        AdapterPoolerConfig {
            hidden_size: bert.hidden_size,
            num_states: bert.num_hidden_states(),
            adapter_size: h.adapter_size,
            kind: if self.span() { HeadKind::Span } else { h.kind },
            num_outputs: self.task.num_outputs(),
            max_len: self.config.max_len,
            shared_adapter: h.shared_adapter,
            skip_last_layer: h.skip_last_layer,
            layer_mix: h.layer_mix,
        }
    }

    pub(super) fn padding(&self) -> Padding {
        Padding {
            pad_id: self.pad_id,
            fixed: None,
            multiple: self.pad_multiple,
        }
    }

    /// Heads with position-specific weights see every input padded to the fixed length.
    pub(super) fn head_padding(&self, head: &AdapterPoolerConfig) -> Padding {
        Padding {
            fixed: (head.kind == HeadKind::Flatten).then_some(self.config.max_len),
            ..self.padding()
        }
    }

    pub(super) fn span(&self) -> bool {
        self.task.kind == TaskKind::Span
    }
}

pub(super) fn gather<'s>(samples: &'s [Sample], indices: &[usize]) -> Vec<&'s Sample> {
    indices.iter().map(|&i| &samples[i]).collect()
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(crate::error::parse_json(path, &text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(value)
            .expect("plain data")
            .as_bytes(),
    )
}

/// Writes a finished phase's module and loss curve, then drops its resumable checkpoint (only
/// now, so a kill in between still finds it).
pub(super) fn save_phase<B: Backend, M: burn::module::Module<B>>(
    module: &M,
    curve: &LossCurve,
    [module_path, loss_path]: [&Path; 2],
    spec: &LoopSpec,
    seconds: f64,
    progress: &mut dyn Progress,
) -> Result<()> {
    write_atomic(module_path, &Checkpoint::module_bytes(module)?)?;
    write_json(loss_path, curve)?;
    spec.discard_checkpoint();
    progress.log(&format!(
        "{}: {} steps ({seconds:.1} s), loss {:.4} -> {:.4}",
        spec.name, curve.steps, curve.first_tenth, curve.last_tenth
    ));
    Ok(())
}
