//! CubeCL kernels: one source compiled for CUDA and for WebGPU. Launched by `backend/cube.rs`:
//! the fused AdapterPooler head (`adapter_head.rs`), AdamW's one-pass update (`adamw.rs`) and
//! the frozen encoder's self-attention (`attention.rs`).

pub mod adamw;
pub mod adapter_head;
pub mod attention;
