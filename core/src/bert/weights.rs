//! Where BERT's weights live in a Hugging Face checkpoint, and how they get into [`Bert`].
//!
//! All parameter names are here. A checkpoint may use the current names (`LayerNorm.weight`/
//! `.bias`) or the legacy ones (`LayerNorm.gamma`/`.beta`), and may carry the `bert.` prefix of
//! `BertFor*` models. Heads we do not use (`cls.*`, `qa_outputs.*`, `classifier.*`) and buffers
//! (`embeddings.position_ids`) are left alone. Before any data is read the header is checked
//! against `config.json`, so a wrong file fails with one line naming the tensor and both shapes.

use std::path::Path;

use burn::tensor::DType;
use burn::tensor::backend::Backend;
use burn_store::{
    ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot,
};

use bertvision_formats::bert_config::BertConfig;

use super::model::Bert;
use crate::error::{Error, Result};
use crate::safetensors_header::{SafetensorsHeader, TensorInfo};

/// Renames from checkpoint keys to our module paths, applied in order by burn-store: the
/// optional `bert.` prefix, then [`LAYER_REMAPS`].
const KEY_REMAPS: [(&str, &str); 4] = [
    (r"^bert\.", ""),
    LAYER_REMAPS[0],
    LAYER_REMAPS[1],
    LAYER_REMAPS[2],
];

/// Hugging Face's names inside a BERT layer to ours (LayerNorm → layer_norm, `self` → self_attn).
pub(crate) const LAYER_REMAPS: [(&str, &str); 3] = [
    (r"\.LayerNorm\.(weight|gamma)$", ".layer_norm.gamma"),
    (r"\.LayerNorm\.(bias|beta)$", ".layer_norm.beta"),
    (r"\.attention\.self\.", ".attention.self_attn."),
];

/// The encoder tensors a checkpoint must hold for `config`, under their current Hugging Face
/// names (without prefix), with their shapes as stored (Linear weights are `[out, in]`).
pub fn expected_tensors(config: &BertConfig, with_pooler: bool) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let i = config.intermediate_size;
    let mut names = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![config.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![config.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![config.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for n in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{n}");
        for proj in ["query", "key", "value"] {
            names.push((format!("{p}.attention.self.{proj}.weight"), vec![h, h]));
            names.push((format!("{p}.attention.self.{proj}.bias"), vec![h]));
        }
        names.push((format!("{p}.attention.output.dense.weight"), vec![h, h]));
        names.push((format!("{p}.attention.output.dense.bias"), vec![h]));
        names.push((format!("{p}.attention.output.LayerNorm.weight"), vec![h]));
        names.push((format!("{p}.attention.output.LayerNorm.bias"), vec![h]));
        names.push((format!("{p}.intermediate.dense.weight"), vec![i, h]));
        names.push((format!("{p}.intermediate.dense.bias"), vec![i]));
        names.push((format!("{p}.output.dense.weight"), vec![h, i]));
        names.push((format!("{p}.output.dense.bias"), vec![h]));
        names.push((format!("{p}.output.LayerNorm.weight"), vec![h]));
        names.push((format!("{p}.output.LayerNorm.bias"), vec![h]));
    }
    if with_pooler {
        names.push(("pooler.dense.weight".into(), vec![h, h]));
        names.push(("pooler.dense.bias".into(), vec![h]));
    }
    names
}

/// The names a tensor may have in a checkpoint: current or legacy LayerNorm names, with or
/// without the `bert.` prefix.
fn candidate_keys(name: &str) -> Vec<String> {
    let legacy = name
        .replace(".LayerNorm.weight", ".LayerNorm.gamma")
        .replace(".LayerNorm.bias", ".LayerNorm.beta");
    let mut keys = vec![name.to_string(), format!("bert.{name}")];
    if legacy != name {
        keys.push(legacy.clone());
        keys.push(format!("bert.{legacy}"));
    }
    keys
}

fn find<'h>(header: &'h SafetensorsHeader, name: &str) -> Option<(String, &'h TensorInfo)> {
    candidate_keys(name)
        .into_iter()
        .find_map(|k| header.tensors.get(&k).map(|info| (k, info)))
}

/// Checks a checkpoint header against `config`; returns whether it has a pooler.
pub fn check_header(path: &Path, header: &SafetensorsHeader, config: &BertConfig) -> Result<bool> {
    let with_pooler = find(header, "pooler.dense.weight").is_some();
    let mut missing = Vec::new();
    for (name, shape) in expected_tensors(config, with_pooler) {
        match find(header, &name) {
            None => missing.push(name),
            Some((key, info)) => {
                if !matches!(
                    info.dtype,
                    crate::safetensors_header::Dtype::F32
                        | crate::safetensors_header::Dtype::F16
                        | crate::safetensors_header::Dtype::BF16
                ) {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "tensor `{key}` is stored as {:?}; expected F32, F16 or BF16",
                            info.dtype
                        ),
                    ));
                }
                if info.shape != shape {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "tensor `{key}` has shape {:?} but config.json (hidden_size {}, intermediate_size {}, vocab_size {}) implies {shape:?}",
                            info.shape,
                            config.hidden_size,
                            config.intermediate_size,
                            config.vocab_size
                        ),
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        let shown = missing
            .iter()
            .take(3)
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let more = if missing.len() > 3 {
            format!(" and {} more", missing.len() - 3)
        } else {
            String::new()
        };
        return Err(Error::invalid(
            path,
            format!(
                "{} BERT tensor(s) missing: {shown}{more} (is this a BERT checkpoint matching config.json's {} layers?)",
                missing.len(),
                config.num_hidden_layers
            ),
        ));
    }
    Ok(with_pooler)
}

/// Where checkpoint bytes come from.
pub enum WeightSource<'a> {
    File(&'a Path),
    /// Bytes already in memory (the browser), with a name for error messages.
    Bytes {
        name: &'a Path,
        bytes: Vec<u8>,
    },
}

impl WeightSource<'_> {
    fn name(&self) -> &Path {
        match self {
            WeightSource::File(p) => p,
            WeightSource::Bytes { name, .. } => name,
        }
    }
}

/// Loads a BERT encoder (and pooler, if the checkpoint has one) from safetensors.
pub fn load_bert<B: Backend>(
    config: &BertConfig,
    source: WeightSource<'_>,
    device: &B::Device,
) -> Result<Bert<B>> {
    let path = source.name().to_path_buf();
    let header = match &source {
        WeightSource::File(p) => SafetensorsHeader::read(p)?,
        WeightSource::Bytes { name, bytes } => SafetensorsHeader::from_bytes(name, bytes)?,
    };
    let with_pooler = check_header(&path, &header, config)?;
    let mut model = Bert::<B>::init(config, with_pooler, device);
    let store = match source {
        WeightSource::File(p) => SafetensorsStore::from_file(p),
        WeightSource::Bytes { bytes, .. } => SafetensorsStore::from_bytes(Some(bytes)),
    };
    let mut store = KEY_REMAPS
        .iter()
        .fold(store, |s, (from, to)| s.with_key_remapping(*from, *to))
        .with_from_adapter(ToF32Adapter.chain(PyTorchToBurnAdapter));
    let applied = apply_store(&mut model, &mut store, &path)?;
    let expected = expected_tensors(config, with_pooler).len();
    if applied != expected {
        return Err(Error::invalid(
            &path,
            format!("loaded {applied} tensors, expected {expected}"),
        ));
    }
    Ok(model)
}

/// Loads `store` into `module`; every parameter must be found and fit. Returns how many were set.
pub(crate) fn apply_store<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    store: &mut SafetensorsStore,
    path: &Path,
) -> Result<usize> {
    let result = module
        .load_from(store)
        .map_err(|e| Error::invalid(path, format!("could not read tensors: {e}")))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        let detail = result
            .errors
            .iter()
            .map(|e| format!("{e:?}"))
            .chain(result.missing.iter().map(|(p, _)| format!("missing {p}")))
            .take(3)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::invalid(
            path,
            format!("weights do not fit the model: {detail}"),
        ));
    }
    Ok(result.applied.len())
}

/// Casts half-precision checkpoint tensors to f32 on load; the backend's float type decides the
/// compute precision afterwards.
#[derive(Clone)]
pub(crate) struct ToF32Adapter;

impl ModuleAdapter for ToF32Adapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if !matches!(snapshot.dtype, DType::F16 | DType::BF16 | DType::F64) {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            std::rc::Rc::new(move || Ok(data()?.convert_dtype(DType::F32))),
            DType::F32,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}
