//! Which Burn backend runs a command. Each backend is compiled in by a cargo feature; the
//! command line picks one at run time with `--device`.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceArg {
    /// Burn's ndarray backend (multi-threaded CPU).
    Cpu,
    /// NVIDIA GPU through CubeCL/CUDA (build with `--features cuda`).
    Cuda,
    /// Vulkan/Metal/DX12 through wgpu (build with `--features wgpu`).
    Wgpu,
}

/// The float type the encoder's weights and activations are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DtypeArg {
    F32,
    /// bfloat16: for a frozen encoder on a GPU (CUDA); on CPUs only the Flex backend has it.
    Bf16,
    /// float16: GPUs only.
    F16,
}

impl DtypeArg {
    pub fn float_dtype(self) -> burn::tensor::FloatDType {
        match self {
            DtypeArg::F32 => burn::tensor::FloatDType::F32,
            DtypeArg::Bf16 => burn::tensor::FloatDType::BF16,
            DtypeArg::F16 => burn::tensor::FloatDType::F16,
        }
    }

    /// ndarray computes in f32/f64 only; refuse early instead of failing inside a kernel.
    pub fn check_device(self, device: DeviceArg) -> anyhow::Result<()> {
        if self != DtypeArg::F32 && device == DeviceArg::Cpu {
            anyhow::bail!(
                "--dtype {self:?}: the CPU backend computes in f32 only; use --device cuda"
            );
        }
        Ok(())
    }
}

/// CubeCL panics deep inside device setup when there is no driver; say it in one line instead.
#[cfg(feature = "cuda")]
pub fn require_nvidia_driver() -> anyhow::Result<()> {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        Ok(())
    } else {
        anyhow::bail!(
            "--device cuda: no NVIDIA driver on this machine (/dev/nvidiactl is missing); use --device cpu"
        )
    }
}

#[cfg(feature = "ndarray")]
pub type CpuBackend = burn::backend::NdArray<f32>;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32, i32>;
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu<f32, i32>;

/// Calls `$body` with a type alias `$B` for the chosen backend and `$device` bound to its
/// device; a backend not compiled in is an error naming the feature to build with.
#[macro_export]
macro_rules! with_backend {
    ($arg:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $arg {
            $crate::backend::DeviceArg::Cpu => {
                #[cfg(feature = "ndarray")]
                {
                    type $B = $crate::backend::CpuBackend;
                    let $device = burn::backend::ndarray::NdArrayDevice::Cpu;
                    $body
                }
                #[cfg(not(feature = "ndarray"))]
                {
                    Err(anyhow::anyhow!("--device cpu: this binary was built without the `ndarray` feature"))
                }
            }
            $crate::backend::DeviceArg::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    $crate::backend::require_nvidia_driver()?;
                    type $B = $crate::backend::CudaBackend;
                    let $device = burn::backend::cuda::CudaDevice::default();
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    Err(anyhow::anyhow!("--device cuda: this binary was built without CUDA; rebuild with `cargo build --release --features cuda`"))
                }
            }
            $crate::backend::DeviceArg::Wgpu => {
                #[cfg(feature = "wgpu")]
                {
                    type $B = $crate::backend::WgpuBackend;
                    let $device = burn::backend::wgpu::WgpuDevice::default();
                    $body
                }
                #[cfg(not(feature = "wgpu"))]
                {
                    Err(anyhow::anyhow!("--device wgpu: this binary was built without wgpu; rebuild with `cargo build --release --features wgpu`"))
                }
            }
        }
    }};
}
