//! The default recipe by model size, chosen by measurement where we could measure (the table
//! and its evidence: README, "Default recipes"; `results/cpu-minilm-l6-mrpc-lr/`).

use crate::bert::BertConfig;
use crate::tasks::{TaskKind, TaskSpec};

/// Fine-tuning and head settings a run starts from; every one is a flag of `bertvision run`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub lr: f64,
    pub batch_size: usize,
    pub epochs: f64,
    pub head_lr: f64,
    pub head_batch_size: usize,
    pub head_epochs: f64,
    pub adapter_size: usize,
}

impl Recipe {
    pub fn for_model(config: &BertConfig, task: &TaskSpec) -> Self {
        let span = task.kind == TaskKind::Span;
        let hidden = config.hidden_size;
        Recipe {
            // Measured on an SST-2 slice (hidden 128) and an MRPC slice (hidden 384): small
            // models need far larger steps than BERT-base's 2e-5 (the paper's values above 384).
            lr: match hidden {
                0..=128 => 1e-3,
                129..=384 => 1e-4,
                _ if span => 3e-5,
                _ => 2e-5,
            },
            batch_size: if span { 16 } else { 32 },
            epochs: 2.0,
            head_lr: 1e-3,
            head_batch_size: if span { 16 } else { 32 },
            head_epochs: 1.0,
            adapter_size: adapter_size(hidden),
        }
    }
}

/// The AdapterPooler's width A for a model's hidden size: 32 up to hidden 384 (splade-tiny,
/// minilm-l6), 64 above (bert-base and -large; the paper's value).
pub fn adapter_size(hidden_size: usize) -> usize {
    if hidden_size <= 384 { 32 } else { 64 }
}
