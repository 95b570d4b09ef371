//! File output that never leaves a half-written file under its final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary sibling a file is written to before it is renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// An exclusive claim on a piece of work (a seed's folder) held by this process.
///
/// It is an advisory OS file lock, so it is released when the process exits — a killed worker
/// never leaves a stale claim behind — and several processes started with the same command can
/// share one run folder: each takes the seeds nobody holds, then waits for the rest.
#[derive(Debug)]
pub struct WorkLock {
    _file: std::fs::File,
}

impl WorkLock {
    fn open(dir: &Path) -> Result<(std::fs::File, PathBuf)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("worker.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok((file, path))
    }

    /// Claims `dir` now, or returns `None` when another process holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<WorkLock>> {
        let (file, path) = Self::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(WorkLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Waits until `dir` is free (its holder finished or died), then claims it.
    pub fn acquire(dir: &Path) -> Result<WorkLock> {
        let (file, path) = Self::open(dir)?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(WorkLock { _file: file })
    }
}

/// A tensor to be written to a safetensors file.
pub enum NamedTensor<'a> {
    F32 { shape: Vec<usize>, data: &'a [f32] },
    I64 { shape: Vec<usize>, data: &'a [i64] },
}

/// Serialises tensors to safetensors bytes (little endian, as the format requires).
pub fn safetensors_bytes(
    tensors: &[(&str, NamedTensor<'_>)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| match t {
            NamedTensor::F32 { shape, data } => (
                name.to_string(),
                Dtype::F32,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            NamedTensor::I64 { shape, data } => (
                name.to_string(),
                Dtype::I64,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::usage(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, metadata)
        .map_err(|e| Error::usage(format!("safetensors serialisation failed: {e}")))
}

/// The same safetensors file with every F32 tensor stored as F16 (half the download for the
/// browser; loaders cast back to f32). Other dtypes and the metadata are kept.
pub fn safetensors_to_f16(name: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    use safetensors::SafeTensors;
    use safetensors::tensor::{Dtype, TensorView};
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::invalid(name, format!("not a safetensors file: {e}")))?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::invalid(name, format!("not a safetensors file: {e}")))?;
    let converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(key, view)| {
            let data = if view.dtype() == Dtype::F32 {
                view.data()
                    .chunks_exact(4)
                    .flat_map(|c| {
                        half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .to_le_bytes()
                    })
                    .collect()
            } else {
                view.data().to_vec()
            };
            let dtype = if view.dtype() == Dtype::F32 {
                Dtype::F16
            } else {
                view.dtype()
            };
            (key, dtype, view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = converted
        .iter()
        .map(|(k, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::invalid(name, format!("tensor {k}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, meta.metadata().clone())
        .map_err(|e| Error::invalid(name, format!("could not write f16 tensors: {e}")))
}
