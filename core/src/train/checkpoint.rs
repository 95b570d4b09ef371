//! A training checkpoint: module record, optimizer state and the position in the run, in one
//! file written atomically (temporary name, then rename), so a killed run resumes from the last
//! complete checkpoint and never from a half-written one.

use std::path::Path;

use burn::module::Module;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

const MAGIC: &[u8; 8] = b"BVCKPT01";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainPosition {
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    /// Seconds spent training up to `step`, over every process that worked on it (0 in
    /// checkpoints written before this was recorded).
    #[serde(default)]
    pub seconds: f64,
}

pub struct Checkpoint {
    pub position: TrainPosition,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

impl Checkpoint {
    pub fn module_bytes<B: Backend, M: Module<B>>(module: &M) -> Result<Vec<u8>> {
        BinBytesRecorder::<FullPrecisionSettings>::default()
            .record(module.clone().into_record(), ())
            .map_err(|e| Error::usage(format!("model could not be serialised: {e}")))
    }

    pub fn load_module<B: Backend, M: Module<B>>(
        module: M,
        bytes: &[u8],
        device: &B::Device,
        path: &Path,
    ) -> Result<M> {
        let record = BinBytesRecorder::<FullPrecisionSettings>::default()
            .load(bytes.to_vec(), device)
            .map_err(|e| Error::invalid(path, format!("model state unreadable: {e}")))?;
        Ok(module.load_record(record))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let position = serde_json::to_vec(&self.position).expect("plain data");
        let mut bytes = MAGIC.to_vec();
        for part in [&position, &self.model, &self.optimizer] {
            bytes.extend((part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        write_atomic(path, &bytes)
    }

    /// Reads a checkpoint; `None` if there is none at `path`.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let bad = |what: &str| {
            Error::invalid(
                path,
                format!("not a usable checkpoint ({what}); delete it to start over"),
            )
        };
        if !bytes.starts_with(MAGIC) {
            return Err(bad("wrong magic bytes"));
        }
        let mut rest = &bytes[MAGIC.len()..];
        let mut parts = Vec::new();
        for _ in 0..3 {
            if rest.len() < 8 {
                return Err(bad("truncated"));
            }
            // Cannot fail: 8 bytes, the length checked above.
            let n = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            // Not `8 + n`: a corrupt length near usize::MAX would wrap.
            if n > rest.len() - 8 {
                return Err(bad("truncated"));
            }
            parts.push(rest[8..8 + n].to_vec());
            rest = &rest[8 + n..];
        }
        let position = serde_json::from_slice(&parts[0]).map_err(|_| bad("position unreadable"))?;
        // Cannot fail: the loop above pushed three parts.
        let optimizer = parts.pop().unwrap();
        let model = parts.pop().unwrap();
        Ok(Some(Checkpoint {
            position,
            model,
            optimizer,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A corrupt checkpoint (cut short, or a part's length near `u64::MAX`, which `8 + n` would
    /// wrap) is refused by name, never a panic.
    #[test]
    fn a_corrupt_checkpoint_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("bv-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("phase.ckpt");
        for length in [u64::MAX, u64::MAX - 7, 1 << 40, 3] {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(length.to_le_bytes());
            bytes.extend(b"{}");
            std::fs::write(&path, &bytes).unwrap();
            let err = Checkpoint::load(&path).err().unwrap().to_string();
            assert!(
                err.contains("phase.ckpt") && err.contains("truncated"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
