//! An export folder as the inference paths read it: its five files (from disk natively, fetched
//! in the browser), checked against each other and loaded once for `answer`, `classify`,
//! `predict` and the browser app.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use crate::bert::{BertConfig, BertInput};
use crate::error::{Error, Result};
use crate::head::{AdapterPooler, AdapterPoolerConfig, HeadKind, HeadOutput};
use crate::pipeline::export::{TaskHeadInfo, load_head, load_task_model};
use crate::task_model::BertTaskModel;
use crate::tasks::TaskSpec;
use crate::tokenize::BertTokenizer;

/// One file of an export: the name used in messages and its bytes.
#[derive(Debug, Clone)]
pub struct NamedBytes {
    pub name: PathBuf,
    pub bytes: Vec<u8>,
}

impl NamedBytes {
    pub fn new(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Self {
        NamedBytes {
            name: name.into(),
            bytes,
        }
    }

    fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.bytes)
            .map_err(|_| Error::invalid(&self.name, "is not UTF-8 text"))
    }
}

/// The files `bertvision run` exports for one seed (`export/bert/*`, `export/head.*`).
#[derive(Debug, Clone)]
pub struct ExportFiles {
    pub config: NamedBytes,
    pub model: NamedBytes,
    pub tokenizer: NamedBytes,
    pub head: NamedBytes,
    pub head_config: NamedBytes,
}

impl ExportFiles {
    /// File names inside an export folder, relative to it.
    pub const NAMES: [&'static str; 5] = [
        "bert/config.json",
        "bert/model.safetensors",
        "bert/tokenizer.json",
        "head.safetensors",
        "head.json",
    ];

    /// The five files, in the order of [`Self::NAMES`].
    pub fn files(&self) -> [&NamedBytes; 5] {
        [
            &self.config,
            &self.model,
            &self.tokenizer,
            &self.head,
            &self.head_config,
        ]
    }

    /// Reads an export folder from disk.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::invalid(
                dir,
                "no export folder here (`bertvision run` writes one to <run>/seed-N/export)",
            ));
        }
        let read = |rel: &str| -> Result<NamedBytes> {
            let path = dir.join(rel);
            if !path.is_file() {
                return Err(Error::invalid(
                    &path,
                    "missing: not a complete export of `bertvision run`",
                ));
            }
            Ok(NamedBytes::new(&path, crate::error::read_file(&path)?))
        };
        Ok(ExportFiles {
            config: read(Self::NAMES[0])?,
            model: read(Self::NAMES[1])?,
            tokenizer: read(Self::NAMES[2])?,
            head: read(Self::NAMES[3])?,
            head_config: read(Self::NAMES[4])?,
        })
    }
}

/// `manifest.json`, written by `bertvision web-assets` beside a served export and read by the
/// page: each file's size and sha256 (hex) by its name in [`ExportFiles::NAMES`], which the
/// page's cached copies are checked against.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServedManifest {
    pub files: std::collections::BTreeMap<String, ServedFile>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServedFile {
    pub bytes: u64,
    pub sha256: String,
}

/// An export loaded: BERT with its task head, the AdapterPooler trained on its hidden states,
/// their configurations, the tokenizer and the task the run trained them for.
pub struct ExportedModels<B: Backend> {
    pub bert: BertTaskModel<B>,
    pub head: AdapterPooler<B>,
    pub config: BertConfig,
    pub head_config: AdapterPoolerConfig,
    pub tokenizer: BertTokenizer,
    pub info: TaskHeadInfo,
    pub task: &'static TaskSpec,
}

impl<B: crate::KernelBackend> ExportedModels<B> {
    /// Validates and loads an export of any task; every error names the file at fault.
    pub fn load(files: ExportFiles, device: &B::Device) -> Result<Self> {
        let config_text = files.config.text()?;
        let config = BertConfig::from_json(&files.config.name, config_text)?;
        let info = task_head_info(&files.config.name, config_text)?;
        let task = crate::tasks::task(&info.task)
            .map_err(|e| Error::invalid(&files.config.name, e.to_string()))?;
        let head_config: AdapterPoolerConfig =
            crate::error::parse_json(&files.head_config.name, files.head_config.text()?)?;
        check_head(&files, &config, &info, &head_config)?;
        let tokenizer = BertTokenizer::from_bytes(&files.tokenizer.name, &files.tokenizer.bytes)?;
        let bert = load_task_model(&config, &info, &files.model.name, files.model.bytes, device)?;
        let head = load_head(&head_config, &files.head.name, files.head.bytes, device)?;
        Ok(ExportedModels {
            bert,
            head,
            config,
            head_config,
            tokenizer,
            info,
            task,
        })
    }

    /// One encoder pass feeding BERT's task head and the AdapterPooler: their outputs, in that
    /// order.
    pub fn forward_outputs(&self, input: BertInput<B>) -> [HeadOutput<B>; 2] {
        let mask = input.attention_mask.clone();
        let (encoder, bert_out) = self.bert.forward(input);
        let head_out = self.head.forward(&encoder.hidden_states, mask);
        [bert_out, head_out]
    }
}

/// The `bertvision` section `bertvision run` adds to `config.json`.
fn task_head_info(name: &Path, config_text: &str) -> Result<TaskHeadInfo> {
    serde_json::from_str::<serde_json::Value>(config_text)
        .ok()
        .and_then(|v| v.get("bertvision").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            Error::invalid(
                name,
                "has no `bertvision` section: not a model exported by `bertvision run`",
            )
        })
}

/// The head must read this BERT's states and give this task's outputs.
fn check_head(
    files: &ExportFiles,
    config: &BertConfig,
    info: &TaskHeadInfo,
    head: &AdapterPoolerConfig,
) -> Result<()> {
    let span = head.kind == HeadKind::Span;
    if span == info.span
        && head.hidden_size == config.hidden_size
        && head.num_states == config.num_hidden_states()
        && (span || head.num_outputs == info.num_outputs)
    {
        return Ok(());
    }
    Err(Error::invalid(
        &files.head_config.name,
        format!(
            "describes a {:?} head with {} outputs over {} states of width {}; the BERT in {} ({} task) needs a {} head with {} outputs over {} states of width {}",
            head.kind,
            head.num_outputs,
            head.num_states,
            head.hidden_size,
            files.config.name.display(),
            info.task,
            if info.span { "span" } else { "classification" },
            info.num_outputs,
            config.num_hidden_states(),
            config.hidden_size
        ),
    ))
}
