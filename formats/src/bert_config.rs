//! `config.json` of a Hugging Face BERT checkpoint, validated: every option we do not implement
//! is an error rather than a silent guess.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result, parse_json, read_text};

/// Mirrors the fields of Hugging Face's `BertConfig` that change the computation. Defaults are
/// Hugging Face's, so a minimal `config.json` means the same thing here as in transformers.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct BertConfig {
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: String,
    #[serde(default = "defaults::dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "defaults::dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "defaults::type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "defaults::position_embedding_type")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub is_decoder: bool,
}

mod defaults {
    pub fn vocab_size() -> usize {
        30522
    }
    pub fn hidden_size() -> usize {
        768
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn hidden_act() -> String {
        "gelu".into()
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn max_position_embeddings() -> usize {
        512
    }
    pub fn type_vocab_size() -> usize {
        2
    }
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }
    pub fn position_embedding_type() -> String {
        "absolute".into()
    }
}

/// The feed-forward activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact erf form.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        Self::from_json(path, &text)
    }

    /// Parses and validates config text; `path` only names the source in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let config: BertConfig = parse_json(path, text)?;
        config
            .validate()
            .map_err(|what| Error::invalid(path, what))?;
        Ok(config)
    }

    /// Checks that the options describe a model this crate computes exactly.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(model_type) = &self.model_type
            && model_type != "bert"
        {
            return Err(format!(
                "model_type \"{model_type}\" is not supported (only \"bert\"; RoBERTa-style models offset position ids differently)"
            ));
        }
        if Activation::from_hf_name(&self.hidden_act).is_none() {
            return Err(format!(
                "hidden_act \"{}\" is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh, relu)",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type \"{}\" is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.is_decoder {
            return Err(
                "is_decoder = true is not supported (BERTVision uses the bidirectional encoder)"
                    .into(),
            );
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(format!(
                "layer_norm_eps must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    pub fn activation(&self) -> Activation {
        Activation::from_hf_name(&self.hidden_act).expect("validated in from_json")
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Number of hidden-state tensors the encoder returns: embeddings + one per layer.
    pub fn num_hidden_states(&self) -> usize {
        self.num_hidden_layers + 1
    }

    /// Parameters of the encoder (embeddings, layers, pooler when present), for reporting shares.
    pub fn num_params(&self, with_pooler: bool) -> usize {
        let h = self.hidden_size;
        let i = self.intermediate_size;
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        let layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h;
        let pooler = if with_pooler { h * h + h } else { 0 };
        embeddings + self.num_hidden_layers * layer + pooler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BertConfig> {
        BertConfig::from_json(Path::new("config.json"), text)
    }

    #[test]
    fn defaults_are_bert_base() {
        let c = parse("{}").unwrap();
        assert_eq!(
            (c.hidden_size, c.num_hidden_layers, c.num_attention_heads),
            (768, 12, 12)
        );
        // bert-base-uncased has 109,482,240 parameters with its pooler.
        assert_eq!(c.num_params(true), 109_482_240);
    }

    #[test]
    fn unsupported_options_are_errors() {
        let e = parse(r#"{"hidden_act": "swish"}"#).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("hidden_act \"swish\""),
            "{e}"
        );
        let e = parse(r#"{"position_embedding_type": "relative_key"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("position_embedding_type"), "{e}");
        let e = parse(r#"{"hidden_size": 100, "num_attention_heads": 12}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a multiple"), "{e}");
        let e = parse(r#"{"model_type": "roberta"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("roberta"), "{e}");
    }

    #[test]
    fn malformed_json_names_line() {
        let e = parse("{\n\"hidden_size\": \"big\"\n}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config.json:2:"), "{e}");
    }
}
