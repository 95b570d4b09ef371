//! BERTVision, backend-generic: a BERT encoder that returns every layer's hidden states, loaded
//! from Hugging Face checkpoints, with the tokenisation, data and metrics around it.
//!
//! Nothing here assumes a device or a command line; see `ARCHITECTURE.md` for how the crates fit.

pub mod bert;
pub mod checks;
pub mod data_roots;
pub mod fsutil;
pub mod head;
pub mod inference;
pub mod models;
pub mod pipeline;
pub mod predict;
pub mod pretrained;
/// Hyper-parameter search (native only: trials are processes sharing a folder).
#[cfg(not(target_arch = "wasm32"))]
pub mod search;
pub mod squad;
pub mod task_model;
pub mod tokenize;
pub mod train;

// The file readers live in `bertvision-formats` (fuzzed without tensor code); their old paths stay.
pub use bertvision_formats::{error, metrics, safetensors_header, tasks, wording};
pub use error::{Error, Result};

/// A backend the models run on: every op of `bertvision-shaders` (the encoder's linear layers,
/// GELU, dropout and attention, the fused AdapterPooler head), each the backend's kernel where it
/// has one and the op's plain-Burn reference elsewhere.
pub use bertvision_shaders::KernelBackend;

/// A backend the pipeline trains on: autodiff, with the ops on it and on its inner backend.
pub trait TrainBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: KernelBackend> + KernelBackend
{
}

impl<B> TrainBackend for B
where
    B: burn::tensor::backend::AutodiffBackend + KernelBackend,
    B::InnerBackend: KernelBackend,
{
}

/// Flex draws random numbers (seeded initialisation, lazily initialised parameters) from one
/// process-wide generator, and the test harness runs tests on several threads: a unit test that
/// seeds it and expects the same draws twice holds this lock, as does every test that draws.
#[cfg(test)]
pub(crate) static FLEX_RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The guard of [`FLEX_RNG_LOCK`], also after another test panicked while holding it.
#[cfg(test)]
pub(crate) fn lock_flex_rng() -> std::sync::MutexGuard<'static, ()> {
    FLEX_RNG_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The largest absolute difference between two equally long slices (0 for empty ones).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}
