//! The ops a backend runs for BERTVision, one trait per op. Each trait's provided methods are the
//! op's plain-Burn reference (Burn's own tensor ops); a backend with a kernel for the op
//! overrides them (`crate::backend`) and says so in the trait's `KERNEL` constant.
//!
//! | op | trait | kernels |
//! |---|---|---|
//! | linear layer and its gradients | [`linear::LinearOps`] | Flex: `cpu::linear` |
//! | exact GELU and its derivative | [`gelu::GeluOps`] | Flex: `cpu::gelu` |
//! | dropout keep masks | [`dropout::DropoutOps`] | Flex: `cpu::dropout` |
//! | multi-head self-attention (frozen, and with dropout for fine-tuning) | [`attention::AttentionOps`] | Flex: `cpu::attention*`; CubeCL: `cube::attention` (frozen, on the key bias) |
//! | the fused AdapterPooler head | [`adapter_head::AdapterHeadOps`] | Flex: `cpu::linear` + `cpu::gelu` (one shared adapter); CubeCL: `cube::adapter_head` |
//! | AdamW's update of one parameter | [`adamw::AdamWOps`] | Flex: `cpu::adamw` |
//!
//! `Autodiff<B>` implements every trait too: where `B` has a kernel it records one autodiff node
//! whose backward is `B`'s backward method; elsewhere it runs the reference under Burn's own
//! autodiff.

pub mod adamw;
pub mod adapter_head;
pub mod attention;
pub mod dropout;
pub mod gelu;
pub mod linear;
pub(crate) mod tensor;

/// Every op of this crate: the one bound BERTVision's models need of a backend. Implemented for
/// every backend that implements the op traits (all of Burn's that this project builds: Flex,
/// ndarray, CubeCL's CUDA and wgpu, with and without `Fusion` and `Autodiff`).
pub trait KernelBackend:
    linear::LinearOps
    + gelu::GeluOps
    + dropout::DropoutOps
    + attention::AttentionOps
    + adapter_head::AdapterHeadOps
    + adamw::AdamWOps
{
}

impl<B> KernelBackend for B where
    B: linear::LinearOps
        + gelu::GeluOps
        + dropout::DropoutOps
        + attention::AttentionOps
        + adapter_head::AdapterHeadOps
        + adamw::AdamWOps
{
}
