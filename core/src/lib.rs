//! BERTVision, backend-generic: a BERT encoder that returns every layer's hidden states, loaded
//! from Hugging Face checkpoints, with the tokenisation, data and metrics around it.
//!
//! Nothing here assumes a device or a command line; see `ARCHITECTURE.md` for how the crates fit.

pub mod bert;
pub mod error;
pub mod fsutil;
pub mod head;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod pretrained;
pub mod safetensors_header;
pub mod squad;
pub mod task_model;
pub mod tasks;
pub mod tokenize;
pub mod train;

pub use error::{Error, Result};
