//! The readers of every file a user hands to BERTVision, with no tensor code: safetensors
//! headers, `config.json`, SQuAD 2.0 JSON, GLUE TSV; the task registry; the official metrics.
//!
//! Kept apart from `bertvision-core` so the fuzz targets (`fuzz/`) build in seconds with nightly
//! and sanitizers; core re-exports every module under its old path.

pub mod bert_config;
pub mod error;
pub mod metrics;
pub mod safetensors_header;
pub mod squad;
pub mod tasks;
pub mod wording;

pub use error::{Error, Result};
