//! BERT: config, model, weights.

pub use bertvision_formats::bert_config as config;
pub mod model;
pub mod weights;

pub use config::{Activation, BertConfig};
pub use model::{AttentionKernel, Bert, BertInput, BertOutput, Precision};
pub use weights::{WeightSource, load_bert};
