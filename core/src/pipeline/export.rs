//! Exported weights the web app (and Hugging Face transformers) can load: the fine-tuned BERT as
//! a standard Hugging Face directory (`config.json`, `model.safetensors` with `bert.*` and
//! `classifier.*`/`qa_outputs.*` names, `tokenizer.json`), and the AdapterPooler as
//! `head.safetensors` + `head.json`.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{
    BurnToPyTorchAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};

use crate::bert::BertConfig;
use crate::bert::weights::{LAYER_REMAPS, ToF32Adapter, apply_store, check_header};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::head::{AdapterPooler, AdapterPoolerConfig};
use crate::safetensors_header::SafetensorsHeader;
use crate::task_model::BertTaskModel;

/// Our module paths back to Hugging Face names, applied in order on save.
const TO_HF: [(&str, &str); 4] = [
    (r"\.layer_norm\.(weight|gamma)$", ".LayerNorm.weight"),
    (r"\.layer_norm\.(bias|beta)$", ".LayerNorm.bias"),
    (r"\.attention\.self_attn\.", ".attention.self."),
    (r"^classifier\.", "CLASSIFIER."),
];

/// What `config.json` gains so a reader knows the head.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskHeadInfo {
    pub task: String,
    pub span: bool,
    pub num_outputs: usize,
}

/// The store's file, byte-identical for equal weights (`fsutil::canonical_safetensors`).
fn bytes_of(store: &SafetensorsStore, what: &str) -> Result<Vec<u8>> {
    let bytes = store
        .get_bytes()
        .map_err(|e| Error::usage(format!("{what} could not be serialised: {e}")))?;
    crate::fsutil::canonical_safetensors(what, &bytes)
}

/// Writes `dir/config.json`, `dir/model.safetensors` and `dir/tokenizer.json`.
pub fn export_bert<B: Backend>(
    model: &BertTaskModel<B>,
    config: &BertConfig,
    info: &TaskHeadInfo,
    tokenizer_json: &Path,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let head_name = if info.span {
        "qa_outputs."
    } else {
        "classifier."
    };
    let mut store = TO_HF
        .iter()
        .fold(SafetensorsStore::from_bytes(None), |s, (from, to)| {
            s.with_key_remapping(*from, *to)
        })
        .with_key_remapping(r"^CLASSIFIER\.", head_name)
        .with_to_adapter(BurnToPyTorchAdapter);
    model
        .save_into(&mut store)
        .map_err(|e| Error::usage(format!("exporting BERT failed: {e}")))?;
    write_atomic(&dir.join("model.safetensors"), &bytes_of(&store, "BERT")?)?;
    let mut json = serde_json::to_value(config).expect("plain data");
    json["architectures"] = serde_json::json!([if info.span {
        "BertForQuestionAnswering"
    } else {
        "BertForSequenceClassification"
    }]);
    json["num_labels"] = serde_json::json!(if info.span { 2 } else { info.num_outputs });
    json["bertvision"] = serde_json::to_value(info).expect("plain data");
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )?;
    let tokenizer = crate::error::read_file(tokenizer_json)?;
    write_atomic(&dir.join("tokenizer.json"), &tokenizer)?;
    Ok(())
}

/// Loads a task model exported by [`export_bert`] (or any `BertFor{SequenceClassification,
/// QuestionAnswering}` checkpoint with `bert.` names), from a file or bytes.
pub fn load_task_model<B: Backend>(
    config: &BertConfig,
    info: &TaskHeadInfo,
    name: &Path,
    bytes: Vec<u8>,
    device: &B::Device,
) -> Result<BertTaskModel<B>> {
    let header = SafetensorsHeader::from_bytes(name, &bytes)?;
    let with_pooler = check_header(name, &header, config)?;
    let head_name = if info.span {
        "qa_outputs"
    } else {
        "classifier"
    };
    if !header.tensors.contains_key(&format!("{head_name}.weight")) {
        return Err(Error::invalid(
            name,
            format!(
                "no `{head_name}.weight`: not a {} checkpoint of this task",
                if info.span {
                    "question-answering"
                } else {
                    "classification"
                }
            ),
        ));
    }
    let bert = crate::bert::Bert::<B>::init(config, with_pooler, device);
    let mut model = BertTaskModel::new(bert, config, info.num_outputs, info.span, device);
    let store = LAYER_REMAPS.iter().fold(
        SafetensorsStore::from_bytes(Some(bytes)),
        |s, (from, to)| s.with_key_remapping(*from, *to),
    );
    let mut store = store
        .with_key_remapping(format!("^{head_name}\\."), "classifier.")
        .with_from_adapter(ToF32Adapter.chain(PyTorchToBurnAdapter));
    apply_store(&mut model, &mut store, name)?;
    Ok(model)
}

/// Writes `head.safetensors` (Burn layout) and `head.json` (its configuration).
pub fn export_head<B: Backend>(
    head: &AdapterPooler<B>,
    config: &AdapterPoolerConfig,
    dir: &Path,
) -> Result<()> {
    let mut store = SafetensorsStore::from_bytes(None);
    head.save_into(&mut store)
        .map_err(|e| Error::usage(format!("exporting the head failed: {e}")))?;
    write_atomic(
        &dir.join("head.safetensors"),
        &bytes_of(&store, "the head")?,
    )?;
    write_atomic(
        &dir.join("head.json"),
        serde_json::to_string_pretty(config)
            .expect("json")
            .as_bytes(),
    )
}

/// Loads a head written by [`export_head`].
pub fn load_head<B: Backend>(
    config: &AdapterPoolerConfig,
    name: &Path,
    bytes: Vec<u8>,
    device: &B::Device,
) -> Result<AdapterPooler<B>> {
    SafetensorsHeader::from_bytes(name, &bytes)?;
    let mut head = config.init::<B>(device);
    apply_store(
        &mut head,
        &mut SafetensorsStore::from_bytes(Some(bytes)).with_from_adapter(ToF32Adapter),
        name,
    )?;
    Ok(head)
}

/// Phase 4 of a seed: BERT at the last extraction point with its task head as a Hugging Face
/// directory (`seed-N/export/bert/`) and its AdapterPooler beside it, for `answer`, `predict`
/// and the browser app.
pub(super) fn export_seed<B: Backend>(
    ctx: &super::context::RunContext<'_>,
    files: &super::files::SeedFiles,
    bert: &BertTaskModel<B>,
    bert_config: &BertConfig,
    head: &AdapterPooler<B>,
    head_config: &AdapterPoolerConfig,
) -> Result<()> {
    let info = TaskHeadInfo {
        task: ctx.task.name.to_string(),
        span: ctx.span(),
        num_outputs: ctx.task.num_outputs(),
    };
    if ctx.export_bert {
        export_bert(
            bert,
            bert_config,
            &info,
            &ctx.model_dir.tokenizer,
            &files.export.join("bert"),
        )?;
    }
    export_head(head, head_config, &files.export)
}
