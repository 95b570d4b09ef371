//! BERT: config, module tree, layers, weights, and the encoder's run-time options.

pub use bertvision_formats::bert_config as config;
pub mod layer;
pub mod model;
pub mod options;
pub mod weights;

pub use config::{Activation, BertConfig};
pub use layer::EncoderPass;
pub use model::{Bert, BertInput, BertOutput};
pub use options::{EncoderDtype, EncoderKernels};
pub use weights::{WeightSource, load_bert};
