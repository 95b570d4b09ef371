//! BERTVision, backend-generic: a BERT encoder that returns every layer's hidden states, loaded
//! from Hugging Face checkpoints, with the tokenisation, data and metrics around it.
//!
//! Nothing here assumes a device or a command line; see `ARCHITECTURE.md` for how the crates fit.

pub mod bert;
pub mod fsutil;
pub mod head;
pub mod models;
pub mod pipeline;
pub mod pretrained;
pub mod qa;
pub mod squad;
pub mod task_model;
pub mod tokenize;
pub mod train;

// The file readers live in `bertvision-formats` (fuzzed without tensor code); their old paths stay.
pub use bertvision_formats::{error, metrics, safetensors_header, tasks};
pub use error::{Error, Result};
