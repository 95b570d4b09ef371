//! The ops BERTVision hands to its backend, each with a plain-Burn reference, and the kernels
//! behind them: CubeCL (one source for CUDA and WebGPU) and CPU kernels for Flex.
//!
//! # Layout: one folder per layer, imports only downwards
//!
//! | folder | what | imports |
//! |---|---|---|
//! | `ops/` | one trait per op (linear, GELU, dropout, attention, the fused AdapterPooler head) whose provided methods are the op's reference in Burn's ops; [`KernelBackend`], the one bound the models need | Burn |
//! | `cpu/` | CPU kernels on plain `f32` slices (feature `flex`) | nothing of this crate |
//! | `cube/` | CubeCL kernels (feature `cubecl`) | nothing of this crate |
//! | `launches.rs` | counting CubeCL's kernel launches (CubeCL's profiling log; feature `cubecl`) | nothing of this crate |
//! | `backend/` | each backend's overrides: `flex.rs` (tensors ↔ `cpu/`), `cube.rs` (`CubeBackend` and `Fusion` launching `cube/`), `autodiff.rs` (`Autodiff<B>`: one node per kernel, its backward from `B`), `ndarray.rs` | `ops/`, `cpu/`, `cube/` |
//!
//! # Which implementation runs
//!
//! | backend | linear, GELU, dropout | attention | AdapterPooler head |
//! |---|---|---|---|
//! | Flex (f32) | `cpu/` kernels | `cpu/` kernels (mask shared by heads) | `cpu/` linear and GELU kernels (one shared adapter), else reference |
//! | Flex (bf16/f16), ndarray | reference | reference (`module::attention`) | reference |
//! | CubeCL (CUDA, wgpu), `Fusion` of it | reference | frozen: `cube/` kernel (key bias, no per-query mask); fine-tuning: reference | `cube/` kernels |
//! | `Autodiff<B>` | `B`'s kernel as one node with its backward where `B` has one (`KERNEL`), else the reference under Burn's autodiff | the same | `B`'s forward, backward from recomputed activations |
//!
//! "Reference" is the op trait's provided method: Burn's own tensor ops. Every kernel is tested
//! against it (`shaders/tests/`: the CubeCL kernels on Burn's wgpu backend over lavapipe with the
//! `wgpu-tests` feature, the CPU kernels on Flex), and the encoder built on them against Hugging
//! Face transformers (`tests/tests/parity.rs`).

pub mod ops;

#[cfg(feature = "flex")]
pub mod cpu;

#[cfg(feature = "cubecl")]
mod cube;

// A log file: not in the browser.
#[cfg(all(feature = "cubecl", not(target_arch = "wasm32")))]
pub mod launches;

mod backend;

pub use ops::KernelBackend;
pub use ops::adamw::{AdamWInputs, AdamWOps, AdamWScalars, AdamWSettings, Moments};
pub use ops::adapter_head::{AdapterHeadOps, ShapeError, adapter_head, check_shapes};
pub use ops::attention::{
    AttentionDropout, AttentionInput, AttentionMask, AttentionOps, AttentionResiduals, MaskLayout,
    key_padding_mask, padding_bias,
};
pub use ops::dropout::DropoutOps;
pub use ops::gelu::GeluOps;
pub use ops::linear::{LinearGrads, LinearOps};
pub use ops::tensor::to_dtype;
