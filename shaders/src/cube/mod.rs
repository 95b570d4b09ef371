//! CubeCL kernels: one source compiled for CUDA and for WebGPU. Launched by `backend/cube.rs`:
//! the fused AdapterPooler head (`adapter_head.rs`) and AdamW's one-pass update (`adamw.rs`).

pub mod adamw;
pub mod adapter_head;
