//! Helpers shared by the end-to-end tests: where the real models and the shared data are.

use std::path::PathBuf;
use std::process::{Command, Output};

use bertvision_core::models::{ModelDir, default_cache_dir, known_model, model_cache_path};

/// The unpacked directory of a known model. The models are fetched by
/// `cargo run -p bertvision -- fetch-models` (the README's test command does it).
pub fn model_dir(name: &str) -> ModelDir {
    let model = known_model(name).unwrap_or_else(|| panic!("unknown model {name}"));
    let path = model_cache_path(&default_cache_dir(), model);
    ModelDir::open(&path).unwrap_or_else(|e| {
        panic!("{e}\nthe real models are needed: run `cargo run -p bertvision -- fetch-models` (or scripts/test.sh) first")
    })
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `../shared/data` beside the project (or `$BERTVISION_DATA`).
pub fn shared_data() -> PathBuf {
    std::env::var_os("BERTVISION_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"))
}

/// A file committed under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(rel)
}

/// Command-line arguments from string literals.
pub fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Runs a command that must succeed; on failure the assertion shows its stderr.
pub fn succeed(command: &mut Command) -> Output {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a command that must be refused the way every bad input is: exit code 1 and one line of
/// stderr holding each of `expected`; returns that line.
pub fn refused(command: &mut Command, expected: &[&str]) -> String {
    let out = command.output().expect("the command starts");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected {e:?} in: {stderr}");
    }
    stderr
}

/// Starts `command` (its output discarded) and kills it (SIGKILL) as soon as `now()` holds, or
/// lets it end after five minutes at most; whether it was still running when killed.
pub fn kill_when(command: &mut Command, now: impl Fn() -> bool) -> bool {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the command starts");
    let started = Instant::now();
    let mut killed = false;
    while started.elapsed() < Duration::from_secs(300) {
        if now() {
            killed = child.try_wait().unwrap().is_none();
            let _ = child.kill();
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    killed
}
