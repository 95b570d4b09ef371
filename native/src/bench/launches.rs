//! `bench --count-launches`: CubeCL's launch log (`bertvision_shaders::launches`), installed
//! once before any CubeCL runtime starts, in builds with a CubeCL backend (`cuda`, `wgpu`).

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod log {
    use std::sync::OnceLock;

    use bertvision_shaders::launches::LaunchLog;

    static LOG: OnceLock<LaunchLog> = OnceLock::new();

    /// Turns the launch log on (a file beside the process's temporary files).
    pub fn install() -> anyhow::Result<()> {
        let path =
            std::env::temp_dir().join(format!("bertvision-launches-{}.log", std::process::id()));
        let log =
            LaunchLog::install(&path).map_err(|e| anyhow::anyhow!("--count-launches: {e}"))?;
        let _ = LOG.set(log);
        Ok(())
    }

    /// Launches so far, when the log is on.
    pub fn count() -> Option<usize> {
        LOG.get().map(LaunchLog::count)
    }

    /// Removes the log file once the rows are measured.
    pub fn remove() {
        if let Some(log) = LOG.get() {
            log.remove();
        }
    }
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
mod log {
    /// A build without CubeCL: `validate` refused the flag already (host devices only).
    pub fn install() -> anyhow::Result<()> {
        anyhow::bail!(
            "--count-launches: this build has no CubeCL backend (build with --features cuda or wgpu)"
        )
    }

    pub fn count() -> Option<usize> {
        None
    }

    pub fn remove() {}
}

pub use log::{count, install, remove};
