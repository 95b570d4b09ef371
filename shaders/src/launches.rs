//! Counting the kernels CubeCL launches (issue #20's proxy for GPU time where no GPU is lent):
//! CubeCL's profiling logger at its `minimal` level writes one `Executing <kernel>` line per
//! launch, on CUDA and on wgpu alike. [`LaunchLog::install`] turns it on, keeping everything else
//! of the configuration CubeCL would read itself (`cubecl.toml`, `CUBECL_*` variables), so the
//! compilation and autotune caches stay as they are. It must run before any CubeCL runtime
//! starts: CubeCL reads its configuration once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cubecl::config::profiling::ProfilingLogLevel;
use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

/// The launch log of this process.
#[derive(Debug, Clone)]
pub struct LaunchLog {
    path: PathBuf,
}

impl LaunchLog {
    /// Logs every launch of this process to `path` (emptied first). An error when CubeCL's
    /// configuration was already read or set (a runtime started before).
    pub fn install(path: &Path) -> Result<Self, String> {
        let config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        Self::install_with(path, config)
    }

    /// [`Self::install`] on top of `config` instead of what CubeCL would read.
    pub fn install_with(path: &Path, mut config: CubeClRuntimeConfig) -> Result<Self, String> {
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return Err(
                "CubeCL's configuration was already read: count launches from the start".into(),
            );
        }
        std::fs::write(path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
        config.profiling.logger.level = ProfilingLogLevel::Minimal;
        config.profiling.logger.file = Some(path.to_path_buf());
        config.profiling.logger.append = true;
        CubeClRuntimeConfig::set(config);
        Ok(LaunchLog {
            path: path.to_path_buf(),
        })
    }

    /// Removes the log file.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Launches logged so far. CubeCL's logger writes from its own thread: call it after the
    /// device is synchronised; it waits until the count has held for 100 ms (at most 10 s).
    pub fn count(&self) -> usize {
        let read = || {
            std::fs::read_to_string(&self.path)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("Executing "))
                .count()
        };
        let start = Instant::now();
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = read();
            if now == last || start.elapsed() > Duration::from_secs(10) {
                return now;
            }
            last = now;
        }
    }

    /// The kernels launched after the first `from` lines, by name, most launched first.
    pub fn kernels_since(&self, from: usize) -> Vec<(String, usize)> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        let launches = text.lines().filter_map(|l| l.strip_prefix("Executing "));
        for name in launches.skip(from) {
            *counts.entry(name.to_string()).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }
}
