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

/// The process whose temporary file `name` is (`.NAME.tmp-PID`, as [`temp_path`] names them).
fn temp_owner(name: &str) -> Option<u32> {
    let (stem, pid) = name.rsplit_once(".tmp-")?;
    if !stem.starts_with('.') || stem.len() < 2 {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is alive; `true` where that cannot be known, so that nothing of a
/// live process is ever removed.
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes what processes that died part-way through a write left in `dir` and its sub-folders
/// (four levels: a run's `seed-N/export/bert/`): only our temporary names, only of dead
/// processes. A run calls it when it claims its folder; the files it removes are counted.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    fn walk(dir: &Path, depth: usize, removed: &mut usize) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match temp_owner(&name) {
                Some(pid) if !process_alive(pid) => {
                    let gone = if is_dir {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    gone.map_err(|e| Error::io(&path, e))?;
                    *removed += 1;
                }
                Some(_) => {}
                None if is_dir && depth > 0 => walk(&path, depth - 1, removed)?,
                None => {}
            }
        }
        Ok(())
    }
    let mut removed = 0;
    walk(dir, 4, &mut removed)?;
    Ok(removed)
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

/// The file a [`WorkLock`] locks, in the folder it claims.
pub const WORK_LOCK_FILE: &str = "worker.lock";

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
        let path = dir.join(WORK_LOCK_FILE);
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
    let bytes = safetensors::tensor::serialize(views, metadata)
        .map_err(|e| Error::usage(format!("safetensors serialisation failed: {e}")))?;
    canonical_safetensors("tensors", &bytes)
}

/// The same safetensors file with its header's keys in sorted order, so that equal tensors
/// give equal bytes: safetensors writes `__metadata__` from a `HashMap`, whose order differs
/// from process to process. The data is untouched (its offsets are relative to the header's
/// end); the header is padded with spaces to a multiple of 8 bytes, as the format writes it.
pub fn canonical_safetensors(name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    use std::collections::BTreeMap;
    let bad = |what: &str| Error::usage(format!("{name}: serialised safetensors {what}"));
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("too short"))?;
    let header_len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad("header"))?;
    let header = bytes
        .get(8..8 + header_len)
        .ok_or_else(|| bad("header past the end"))?;
    let data = &bytes[8 + header_len..];
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|_| bad("header not JSON"))?;
    if let Some(meta) = entries.get_mut("__metadata__") {
        let sorted: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(meta.take()).map_err(|_| bad("metadata"))?;
        *meta = serde_json::to_value(sorted).map_err(|_| bad("metadata"))?;
    }
    let mut text = serde_json::to_vec(&entries).map_err(|_| bad("header"))?;
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + text.len() + data.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    Ok(out)
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
    let bytes = safetensors::serialize(views, meta.metadata().clone())
        .map_err(|e| Error::invalid(name, format!("could not write f16 tensors: {e}")))?;
    canonical_safetensors(&name.display().to_string(), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata in any insertion order gives the same bytes, which safetensors still reads.
    #[test]
    fn safetensors_bytes_do_not_depend_on_the_metadata_order() {
        let data = [1.0f32, 2.0, 3.0];
        let tensor = || NamedTensor::F32 {
            shape: vec![3],
            data: &data,
        };
        let keys = ["producer", "format", "version", "a", "zz"];
        let write = |order: &[&str]| {
            let meta = order
                .iter()
                .map(|k| (k.to_string(), format!("{k}-value")))
                .collect();
            safetensors_bytes(&[("w", tensor()), ("b", tensor())], Some(meta)).unwrap()
        };
        let first = write(&keys);
        for _ in 0..8 {
            assert_eq!(write(&keys), first);
        }
        let mut reversed = keys;
        reversed.reverse();
        assert_eq!(write(&reversed), first);
        let (n, meta) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(n % 8, 0);
        assert_eq!(meta.metadata().as_ref().unwrap()["zz"], "zz-value");
        let read = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(
            read.tensor("b").unwrap().data(),
            read.tensor("w").unwrap().data()
        );
    }

    /// Only our temporary names of dead processes go, at any depth the run uses; a live
    /// process's (this one's) and other files stay.
    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("bv-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nested = dir.join("seed-1/export/bert");
        std::fs::create_dir_all(&nested).unwrap();
        // Above Linux's largest PID (2^22): no process has it.
        let dead = ".bert-extract.bin.tmp-4999999";
        let mine = format!(".results.json.tmp-{}", std::process::id());
        for name in [dead, mine.as_str(), "notes.tmp-4999999", "results.json"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        std::fs::write(nested.join(".model.safetensors.tmp-4999999"), b"x").unwrap();
        std::fs::create_dir_all(dir.join(".staging.tmp-4999999/inner")).unwrap();
        assert_eq!(remove_stale_temps(&dir).unwrap(), 3);
        let left = |p: &Path| p.exists();
        assert!(!left(&dir.join(dead)) && !left(&dir.join(".staging.tmp-4999999")));
        assert!(!left(&nested.join(".model.safetensors.tmp-4999999")));
        assert!(left(&dir.join(&mine)) && left(&dir.join("notes.tmp-4999999")));
        assert!(left(&dir.join("results.json")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
