//! Checks of one setting's value from what it means, each naming the flag that sets it. Every
//! command runs its checks before it reads a model or data and before it writes anything
//! (`RunConfig::validate` for `run`, `train-head` and `search`'s trials; each other command's
//! `validate` in `native`), so a bad value costs one line and no work.

use std::path::Path;

use crate::error::{Error, Result};

fn refuse<T>(message: String) -> Result<T> {
    Err(Error::usage(message))
}

/// A finite number above zero (learning rates, lengths in epochs).
pub fn positive(flag: &str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        refuse(format!("{flag} must be positive, got {value}"))
    }
}

/// A finite number of at least zero (weight decay, a clip where 0 disables it, a GiB budget).
pub fn non_negative(flag: &str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        refuse(format!(
            "{flag} must be a number of at least 0, got {value}"
        ))
    }
}

/// Any finite number (thresholds on score differences).
pub fn finite(flag: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        refuse(format!("{flag} must be a finite number, got {value}"))
    }
}

/// A count of at least `min`.
pub fn at_least(flag: &str, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        refuse(format!("{flag} must be at least {min}, got {value}"))
    }
}

/// A share of some data: in (0, 1], or in (0, 1) when all of it makes no sense.
pub fn share(flag: &str, value: f64, one_allowed: bool) -> Result<()> {
    let ok = value > 0.0 && (value < 1.0 || (one_allowed && value == 1.0));
    match (ok, one_allowed) {
        (true, _) => Ok(()),
        (false, true) => refuse(format!("{flag} {value}: a share of the data, in (0, 1]")),
        (false, false) => refuse(format!("{flag} {value}: a share of the data, in (0, 1)")),
    }
}

/// A text the model reads: empty text has no tokens to read.
pub fn not_empty(flag: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        refuse(format!("{flag}: the text is empty"))
    } else {
        Ok(())
    }
}

/// Tokens per sequence: `needed` is the least that holds the special tokens and one token of
/// each text (3 for one text, 5 for a pair: `[CLS] a [SEP] b [SEP]`), `positions` the model's.
pub fn sequence_length(flag: &str, value: usize, needed: usize, positions: usize) -> Result<()> {
    if value < needed {
        return refuse(format!(
            "{flag} {value} cannot hold a sequence: it needs at least {needed} tokens ([CLS], [SEP] and a token of each text)"
        ));
    }
    if value > positions {
        return refuse(format!(
            "{flag} {value} exceeds the model's {positions} positions"
        ));
    }
    Ok(())
}

/// SQuAD windows: the question (cut to `max_query` tokens), three special tokens and at least
/// one passage token must fit in `max_len`, and consecutive windows must advance (`doc_stride`
/// of at least 1) by less than a window's passage, so that windows overlap and none is skipped.
pub fn squad_windows(
    length_flag: &str,
    max_len: usize,
    doc_stride: usize,
    max_query: usize,
) -> Result<()> {
    at_least("--doc-stride", doc_stride, 1)?;
    at_least("--max-query-length", max_query, 1)?;
    let passage = max_len.saturating_sub(max_query + 3);
    if passage == 0 {
        return refuse(format!(
            "{length_flag} {max_len} leaves no room for the passage beside a {max_query}-token question (--max-query-length) and 3 special tokens"
        ));
    }
    // `featurize` asks the same (its windows step by less than a window's passage).
    if doc_stride >= passage {
        return refuse(format!(
            "--doc-stride {doc_stride} is not shorter than a window's {passage} passage tokens ({length_flag} {max_len} − --max-query-length {max_query} − 3): tokens between windows would never be read"
        ));
    }
    Ok(())
}

/// A folder (`dir`) or a non-empty file the command will read.
pub fn existing(flag: &str, path: &Path, dir: bool) -> Result<()> {
    let problem = match std::fs::metadata(path) {
        Err(_) => "no such file or folder",
        Ok(m) if dir && !m.is_dir() => "is a file, not a folder",
        Ok(m) if !dir && m.is_dir() => "is a folder, not a file",
        Ok(m) if !dir && m.len() == 0 => "is empty",
        Ok(_) => return Ok(()),
    };
    refuse(format!("{flag} {}: {problem}", path.display()))
}

/// A file the command will write: not an existing folder, and under a folder (or a place one can
/// be created) rather than under a file. Checked before the work, so an hour of work is not lost
/// to a typo in the output's name.
pub fn output_file(flag: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        return refuse(format!(
            "{flag} {}: is a folder; give the file's name",
            path.display()
        ));
    }
    parents_are_folders(flag, path)
}

/// A folder the command will write into: not an existing file, nor under one.
pub fn output_dir(flag: &str, path: &Path) -> Result<()> {
    if path.exists() && !path.is_dir() {
        return refuse(format!(
            "{flag} {}: is a file, not a folder",
            path.display()
        ));
    }
    parents_are_folders(flag, path)
}

fn parents_are_folders(flag: &str, path: &Path) -> Result<()> {
    let file_above = path
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.exists() && !a.is_dir());
    match file_above {
        Some(file) => refuse(format!(
            "{flag} {}: {} is a file, not a folder",
            path.display(),
            file.display()
        )),
        None => Ok(()),
    }
}

/// This machine's memory in bytes (`None` where it cannot be read: nothing is refused then).
pub fn machine_memory() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// A lower bound on the bytes one sequence of `len` tokens needs in a forward pass: the f32
/// attention scores of every head (`heads × len²`) and the hidden states of every layer and the
/// embeddings (`states × len × hidden`), which the head reads. Training needs more.
pub fn activation_bytes_per_sequence(
    len: usize,
    heads: usize,
    states: usize,
    hidden: usize,
) -> f64 {
    let len = len as f64;
    4.0 * len * (heads as f64 * len + states as f64 * hidden as f64)
}

/// `bytes` (a lower bound on what `what` allocates) must fit in `available` bytes; else the
/// flags named in `what` are refused instead of an allocation abort part-way through.
pub fn fits(what: &str, bytes: f64, available: Option<u64>) -> Result<()> {
    match available {
        Some(total) if bytes > total as f64 => {
            let gib = |b: f64| b / f64::from(1u32 << 30);
            refuse(format!(
                "{what} needs at least {:.1} GiB, more than this machine's {:.1} GiB",
                gib(bytes),
                gib(total as f64)
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("bv-checks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn each_check_names_its_flag_and_takes_the_edges_it_means() {
        let msg = |r: Result<()>| r.unwrap_err().to_string();
        assert!(msg(positive("--lr", f64::NAN)).contains("--lr"));
        assert!(positive("--lr", 1e-9).is_ok() && positive("--lr", 0.0).is_err());
        assert!(non_negative("--x", 0.0).is_ok() && non_negative("--x", -0.1).is_err());
        assert!(finite("--t", -3.0).is_ok() && finite("--t", f64::INFINITY).is_err());
        assert!(share("--f", 1.0, true).is_ok() && share("--f", 1.0, false).is_err());
        assert!(share("--f", f64::NAN, true).is_err());
        assert!(msg(at_least("--n", 0, 1)).contains("--n must be at least 1, got 0"));
        assert!(sequence_length("--max-length", 5, 5, 512).is_ok());
        assert!(sequence_length("--max-length", 4, 5, 512).is_err());
        assert!(sequence_length("--max-length", 513, 5, 512).is_err());
        assert!(squad_windows("--max-length", 384, 128, 64).is_ok());
        assert!(msg(squad_windows("--max-length", 67, 1, 64)).contains("no room"));
        assert!(squad_windows("--max-length", 69, 1, 64).is_ok());
        assert!(squad_windows("--max-length", 68, 1, 64).is_err());
        assert!(msg(squad_windows("--max-length", 100, 40, 64)).contains("--doc-stride 40"));
        assert!(fits("x", 2.0, Some(1)).is_err() && fits("x", 2.0, None).is_ok());
        assert!(not_empty("--text", " \n").is_err());
        let dir = tempfile_dir();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(msg(output_file("--out", &dir)).contains("is a folder"));
        assert!(msg(output_file("--out", &file.join("x.json"))).contains("is a file"));
        assert!(output_file("--out", &dir.join("new/x.json")).is_ok());
        assert!(output_dir("--out", &file).is_err() && output_dir("--out", &dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
