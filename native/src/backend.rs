//! Which Burn backend runs a command. Each backend is compiled in by a cargo feature; the
//! command line picks one at run time with `--device`.

use bertvision_core::bert::{EncoderDtype, EncoderKernels};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceArg {
    /// The CPU through Burn's pure-Rust Flex backend (the browser app's fallback too) with this
    /// project's CPU kernels: the same numbers on every run with the same seed, bf16/f16
    /// available.
    Cpu,
    /// The CPU through Burn's ndarray backend (multi-threaded; with `--features openblas`, BLAS
    /// matmuls). Not bit-reproducible across runs (`docs/performance.md`, "Determinism").
    Ndarray,
    /// NVIDIA GPU through CubeCL/CUDA (build with `--features cuda`).
    Cuda,
    /// Vulkan/Metal/DX12 through wgpu (build with `--features wgpu`).
    Wgpu,
}

impl DeviceArg {
    /// Whether tensors live in host memory (the CPU backends).
    pub fn is_host(self) -> bool {
        matches!(self, DeviceArg::Cpu | DeviceArg::Ndarray)
    }

    /// The device and the Burn backend behind it, for logs and reports ("cpu (flex)").
    pub fn label(self) -> &'static str {
        match self {
            DeviceArg::Cpu => "cpu (flex)",
            DeviceArg::Ndarray => "cpu (ndarray)",
            DeviceArg::Cuda => "cuda (CubeCL)",
            DeviceArg::Wgpu => "wgpu (CubeCL)",
        }
    }
}

/// The encoder's ops where no gradient flows, unless `--encoder-kernels` says: the backend's own
/// where they were measured faster and checked against transformers (Flex with this project's
/// CPU kernels, minilm-l6: 3.0x Burn's ops at 128 tokens, 3.8x at 384; `docs/performance.md`),
/// Burn's ops elsewhere. On CUDA (H200, f32) the autotune picks Burn's separate-ops fallback over
/// the flash kernels, and the native path ran at 0.82-0.88x of Burn's ops.
pub fn default_encoder_kernels(device: DeviceArg) -> EncoderKernels {
    match device {
        DeviceArg::Cpu => EncoderKernels::Native,
        DeviceArg::Ndarray | DeviceArg::Cuda | DeviceArg::Wgpu => EncoderKernels::Burn,
    }
}

/// ndarray computes in f32/f64 only, and WGSL has no bf16: refuse another float type for `flag`
/// (`--encoder-dtype`, `--precision`) early instead of failing inside a kernel.
pub fn check_float_type(flag: &str, dtype: EncoderDtype, device: DeviceArg) -> anyhow::Result<()> {
    if !dtype.is_f32() && device == DeviceArg::Ndarray {
        anyhow::bail!(
            "{flag} {}: the ndarray backend computes in f32 only; use --device cpu or cuda",
            dtype.name()
        );
    }
    if dtype == EncoderDtype::Bf16 && device == DeviceArg::Wgpu {
        anyhow::bail!("{flag} bf16: WebGPU shaders (WGSL) have no bf16; use f32 on --device wgpu");
    }
    Ok(())
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

#[cfg(feature = "flex")]
pub type CpuBackend = burn::backend::Flex<f32, i32>;
#[cfg(feature = "ndarray")]
pub type NdarrayBackend = burn::backend::NdArray<f32>;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32, i32>;
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu<f32, i32>;

/// Calls `$body` with a type alias `$B` for the chosen backend and `$device` bound to its
/// device; a backend not compiled in is an error naming the feature to build with.
/// (Declared with `#[macro_use]` first in `main.rs`, so every command module sees it.)
macro_rules! with_backend {
    ($arg:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $arg {
            crate::backend::DeviceArg::Cpu => {
                #[cfg(feature = "flex")]
                {
                    type $B = crate::backend::CpuBackend;
                    let $device = burn::backend::flex::FlexDevice;
                    $body
                }
                #[cfg(not(feature = "flex"))]
                {
                    Err(anyhow::anyhow!("--device cpu: this binary was built without the `flex` feature"))
                }
            }
            crate::backend::DeviceArg::Ndarray => {
                #[cfg(feature = "ndarray")]
                {
                    type $B = crate::backend::NdarrayBackend;
                    let $device = burn::backend::ndarray::NdArrayDevice::Cpu;
                    $body
                }
                #[cfg(not(feature = "ndarray"))]
                {
                    Err(anyhow::anyhow!("--device ndarray: this binary was built without the `ndarray` feature"))
                }
            }
            crate::backend::DeviceArg::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    crate::backend::require_nvidia_driver()?;
                    type $B = crate::backend::CudaBackend;
                    let $device = burn::backend::cuda::CudaDevice::default();
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    Err(anyhow::anyhow!("--device cuda: this binary was built without CUDA; rebuild with `cargo build --release --features cuda`"))
                }
            }
            crate::backend::DeviceArg::Wgpu => {
                #[cfg(feature = "wgpu")]
                {
                    type $B = crate::backend::WgpuBackend;
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

/// `--devices`: the backend and the peers of a data-parallel run. `cpu:2` is two peers on the
/// CPU (each a thread; the way to test data parallelism without GPUs), `cuda:0,1,2,3` four
/// GPUs by index, `cuda:1` GPU 1 alone.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicesArg {
    pub kind: DeviceArg,
    pub set: bertvision_core::train::DeviceSet,
}

impl DevicesArg {
    /// The backend a command runs on: `--devices`' kind when given, else `--device`.
    pub fn backend(devices: Option<&DevicesArg>, device: DeviceArg) -> DeviceArg {
        devices.map_or(device, |d| d.kind)
    }

    /// The peers of `--devices` (empty when not given: the one device).
    pub fn peers(devices: Option<&DevicesArg>) -> bertvision_core::train::DeviceSet {
        devices.map(|d| d.set.clone()).unwrap_or_default()
    }
}

/// At most this many peers: one thread and one model copy each.
const MAX_PEERS: usize = 64;

impl std::str::FromStr for DevicesArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, list) = text
            .split_once(':')
            .ok_or("write KIND:LIST, e.g. cpu:2 or cuda:0,1,2,3")?;
        let kind = DeviceArg::from_str(kind, true)
            .map_err(|_| format!("unknown device kind {kind:?} (cpu, ndarray, cuda or wgpu)"))?;
        let numbers = list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("{n:?} is not a device number"))
            })
            .collect::<Result<Vec<u16>, String>>()?;
        let indices = if kind.is_host() {
            // The CPU is one device: the number says how many peers share it.
            match numbers.as_slice() {
                [n] if (1..=MAX_PEERS as u16).contains(n) => (0..*n).collect(),
                _ => {
                    return Err(format!(
                        "{text}: give the number of CPU peers, 1 to {MAX_PEERS}"
                    ));
                }
            }
        } else {
            let mut sorted = numbers.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != numbers.len() || numbers.len() > MAX_PEERS {
                return Err(format!(
                    "{text}: each device at most once, at most {MAX_PEERS}"
                ));
            }
            numbers
        };
        Ok(DevicesArg {
            kind,
            set: bertvision_core::train::DeviceSet {
                indices,
                cluster: None,
            },
        })
    }
}

/// `--node-id K --num-nodes N --coordinator HOST:PORT`: this process is node K of N training
/// one model (the same command on each node, each with its own --out; node 0 listens at the
/// coordinator's address, the others connect to it).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// This node's number, 0 to --num-nodes − 1 (node 0 listens at --coordinator).
    #[arg(long, requires = "num_nodes", default_value_t = 0)]
    pub node_id: u32,
    /// Machines (processes) training together: the same command on each (its own --node-id
    /// and --out, the same --devices count), which step on the sum of every node's gradients.
    #[arg(long, requires = "coordinator")]
    pub num_nodes: Option<u32>,
    /// HOST:PORT of node 0, where the nodes meet (node 0 listens at its port).
    #[arg(long, requires = "num_nodes")]
    pub coordinator: Option<String>,
}

impl ClusterArgs {
    /// The cluster asked for (`None`: one machine).
    pub fn cluster(&self) -> anyhow::Result<Option<bertvision_core::train::Cluster>> {
        let (Some(nodes), Some(coordinator)) = (self.num_nodes, &self.coordinator) else {
            return Ok(None);
        };
        if !(1..=1024).contains(&nodes) {
            anyhow::bail!("--num-nodes {nodes}: give 1 to 1024 machines");
        }
        if self.node_id >= nodes {
            anyhow::bail!(
                "--node-id {}: nodes are numbered 0 to {} (--num-nodes {nodes})",
                self.node_id,
                nodes - 1
            );
        }
        bertvision_core::train::cluster::coordinator_port(coordinator)?;
        if nodes == 1 {
            return Ok(None);
        }
        Ok(Some(bertvision_core::train::Cluster {
            node: self.node_id,
            nodes,
            coordinator: coordinator.clone(),
        }))
    }
}
