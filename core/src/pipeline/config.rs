//! Every recipe value of a run, serialised beside its results.

use serde::{Deserialize, Serialize};

use crate::bert::{AttentionKernel, Precision};
use crate::head::{HeadKind, HeadPath, LayerMix};
use crate::squad::{FeatureConfig, PostprocessConfig};
use crate::train::OptimizerConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub lr: f64,
    pub batch_size: usize,
    /// Total fine-tuning length in epochs (may be fractional).
    pub epochs: f64,
    pub warmup_ratio: f64,
    pub optimizer: OptimizerConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    pub lr: f64,
    pub batch_size: usize,
    pub epochs: f64,
    pub warmup_ratio: f64,
    pub adapter_size: usize,
    pub kind: HeadKind,
    pub shared_adapter: bool,
    pub skip_last_layer: bool,
    pub layer_mix: LayerMix,
    pub optimizer: OptimizerConfig,
    /// The float type of the frozen encoder that feeds the head (training and prediction);
    /// BERT's own predictions stay f32. Left out of config.json when f32, so older run folders
    /// still resume.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub encoder_precision: Precision,
    /// Plain ops or the fused kernel for the head (training and prediction); left out of
    /// config.json when plain, like `encoder_precision`.
    #[serde(default, skip_serializing_if = "HeadPath::is_plain")]
    pub path: HeadPath,
}

/// How BERT's and BERTVision's probabilities are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnsembleRule {
    /// Element-wise maximum of the two softmaxes (the paper's rule).
    Max,
    /// Mean of the two probability vectors.
    Mean,
}

impl EnsembleRule {
    pub fn name(self) -> &'static str {
        match self {
            EnsembleRule::Max => "max",
            EnsembleRule::Mean => "mean",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub task: String,
    pub model: String,
    pub seeds: Vec<u64>,
    /// Maximum tokens per sequence (task default when the run was configured).
    pub max_len: usize,
    pub finetune: FinetuneConfig,
    /// The checkpoint (in epochs of fine-tuning) whose hidden states train the head.
    pub extract_at: f64,
    pub head: HeadConfig,
    pub ensemble: Vec<EnsembleRule>,
    pub eval_batch_size: usize,
    /// Optimizer steps between resumable checkpoints.
    pub checkpoint_every: usize,
    /// Use only the first N training / evaluation examples (a slice for quick runs and CI).
    pub limit_train: Option<usize>,
    pub limit_eval: Option<usize>,
    /// SQuAD: articles held out for evaluation when one file is split.
    pub eval_articles: usize,
    pub squad_features: FeatureConfig,
    pub squad_postprocess: PostprocessConfig,
    /// How the encoder's attention runs where no gradient flows (evaluation, the frozen encoder
    /// that feeds the head); fine-tuning always uses the explicit ops, which carry dropout.
    /// Left out of config.json when explicit, so older run folders still resume.
    #[serde(default, skip_serializing_if = "AttentionKernel::is_explicit")]
    pub attention: AttentionKernel,
}
