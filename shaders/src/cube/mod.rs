//! CubeCL kernels: one source compiled for CUDA and for WebGPU. Launched by `backend/cube.rs`.

pub mod adapter_head;
