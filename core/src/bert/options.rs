//! How the encoder runs where no gradient is recorded: whose ops, and in which float type. Both
//! are settings of a run (`config.json`) and flags of the command line.

use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// Whose ops the encoder runs where no gradient flows (evaluation, the frozen encoder that feeds
/// the AdapterPooler). Under autodiff (fine-tuning) this setting does not apply: the encoder
/// always runs the backend's ops with dropout there (on Flex this project's training kernels,
/// elsewhere Burn's ops).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EncoderKernels {
    /// Burn's tensor ops: linear layers, GELU, and attention as scores, additive padding bias,
    /// softmax and the value product (the `[batch, heads, seq, seq]` scores materialised in
    /// every layer). The reference the other path is checked against.
    #[default]
    #[serde(alias = "explicit")]
    #[cfg_attr(feature = "clap", value(alias = "explicit"))]
    Burn,
    /// The backend's own encoder kernels (`bertvision_shaders`' op traits): on Flex (CPU) this
    /// project's attention, linear-layer and GELU kernels (every (sequence, head) in parallel,
    /// no head split or merge copies, keys cut at the last real one, one gemm per linear layer
    /// over the whole batch); on CubeCL backends this project's attention kernel
    /// (`shaders/src/cube/attention.rs`: one launch per layer reading the projections where they
    /// lie and the `[batch, seq]` key bias, an online softmax, no `[batch, heads, seq, seq]`
    /// buffer).
    #[serde(alias = "fused")]
    #[cfg_attr(feature = "clap", value(alias = "fused"))]
    Native,
}

impl EncoderKernels {
    pub fn is_burn(&self) -> bool {
        *self == EncoderKernels::Burn
    }

    /// The name used on the command line and in config.json.
    pub fn name(self) -> &'static str {
        match self {
            EncoderKernels::Burn => "burn",
            EncoderKernels::Native => "native",
        }
    }
}

/// The float type of a frozen encoder: its weights, activations and hidden states (`f32`
/// everywhere unless asked; the AdapterPooler always receives f32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EncoderDtype {
    #[default]
    F32,
    /// bfloat16: for a frozen encoder on a GPU (CUDA), or on `--device cpu`.
    Bf16,
    /// float16: GPUs (and `--device cpu`).
    F16,
}

impl EncoderDtype {
    pub fn float_dtype(self) -> FloatDType {
        match self {
            EncoderDtype::F32 => FloatDType::F32,
            EncoderDtype::Bf16 => FloatDType::BF16,
            EncoderDtype::F16 => FloatDType::F16,
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == EncoderDtype::F32
    }

    /// The name used on the command line and in config.json.
    pub fn name(self) -> &'static str {
        match self {
            EncoderDtype::F32 => "f32",
            EncoderDtype::Bf16 => "bf16",
            EncoderDtype::F16 => "f16",
        }
    }
}
