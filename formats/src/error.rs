//! One error type for the library. Every variant names the file (or the input) it is about, so
//! the command line can print a single clear line and exit non-zero.

use std::path::{Path, PathBuf};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written. The OS error is part of the message and not also a
    /// `source`, so a chain of errors printed as one line says it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file was read but its content is wrong: `what` says what, `line` where (1-based) if known.
    #[error("{}{}: {what}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        what: String,
    },
    /// A request that cannot be satisfied, independent of any file (bad flag, unknown name, ...).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            error: source,
        }
    }

    pub fn invalid(path: impl AsRef<Path>, what: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.as_ref().to_path_buf(),
            line: None,
            what: what.into(),
        }
    }

    pub fn invalid_at(path: impl AsRef<Path>, line: usize, what: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.as_ref().to_path_buf(),
            line: Some(line),
            what: what.into(),
        }
    }

    pub fn usage(what: impl Into<String>) -> Self {
        Error::Usage(what.into())
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a whole UTF-8 text file, naming it (and the first bad byte offset) in the error.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::invalid(
            path,
            format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses JSON text, naming the file, line and column of a syntax or type error.
pub fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        Error::invalid_at(
            path,
            e.line(),
            format!("invalid JSON (column {}): {e}", e.column()),
        )
    })
}
