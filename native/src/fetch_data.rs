//! `bertvision fetch-data`: GLUE's tasks and SQuAD 2.0 from their official hosts (the table in
//! `bertvision_formats::tasks::downloads`) into `<cache>/data`, where `run` and `predict` look
//! for data after `$BERTVISION_DATA`.
//!
//! Downloads go to `<cache>/downloads/<name>.part` and resume from where they stopped (an HTTP
//! Range request; a server that ignores it is read from the start again). A data folder is built
//! in a staging folder, every file checked (sha256 or official row count), then renamed into
//! place with a marker written last: nothing ever sits under the final name unchecked. A file
//! that fails its check is removed with its download, so the next try fetches it anew.
//! `$BERTVISION_DATA_MIRROR` replaces the official hosts (scheme and host) by another base URL.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertvision_core::data_roots::{DATA_MARKER, data_cache_dir};
use bertvision_core::tasks::downloads::{
    DATA_SETS, DataSet, Download, FileCheck, Unpack, check_rows_or_questions, data_set, mrpc_split,
};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::fetch::{agent, hex};

/// Base URL replacing the official hosts (a mirror, or a local server in tests).
const MIRROR_ENV: &str = "BERTVISION_DATA_MIRROR";

#[derive(Debug, clap::Args)]
pub struct FetchDataArgs {
    /// Tasks to fetch (repeatable): CoLA, SST-2, MRPC, STS-B, QQP, MNLI (with GLUE's diagnostic
    /// set AX), QNLI, RTE, WNLI, SQuAD2, AX, or all.
    #[arg(long = "task", default_value = "all")]
    pub tasks: Vec<String>,
}

/// What one data set's folder holds, for the summary.
struct Fetched {
    set: &'static DataSet,
    folder: PathBuf,
    /// "fetched" or "cached".
    state: &'static str,
}

pub fn main(args: &FetchDataArgs, cache_dir: &Path) -> Result<()> {
    let sets = chosen_sets(&args.tasks)?;
    let root = data_cache_dir(cache_dir);
    let downloads = cache_dir.join("downloads");
    let mut fetched = Vec::new();
    for set in sets {
        fetched.push(ensure_data_set(set, &root, &downloads)?);
    }
    print_summary(&fetched);
    Ok(())
}

/// The data sets named (`all`: every one), each with its companions, once each.
fn chosen_sets(names: &[String]) -> Result<Vec<&'static DataSet>> {
    let mut sets: Vec<&'static DataSet> = Vec::new();
    for name in names {
        let more = if name.eq_ignore_ascii_case("all") {
            DATA_SETS.iter().collect()
        } else {
            let known: Vec<&str> = DATA_SETS.iter().map(|d| d.name).collect();
            data_set(name)
                .with_context(|| {
                    format!("--task {name}: unknown (known: {}, all)", known.join(", "))
                })?
                .with_companions()
        };
        for set in more {
            if !sets.iter().any(|s| s.name == set.name) {
                sets.push(set);
            }
        }
    }
    Ok(sets)
}

/// The data set's folder under `root`, fetched and checked unless a complete one is there.
fn ensure_data_set(set: &'static DataSet, root: &Path, downloads: &Path) -> Result<Fetched> {
    let folder = root.join(set.folder);
    if folder.join(DATA_MARKER).is_file() {
        return Ok(Fetched {
            set,
            folder,
            state: "cached",
        });
    }
    std::fs::create_dir_all(downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    let files = (set.downloads.iter())
        .map(|d| download(d, downloads))
        .collect::<Result<Vec<_>>>()?;
    let staging = bertvision_core::fsutil::temp_path(&folder);
    let built = build_folder(set, &files, &staging);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&staging);
        for file in &files {
            let _ = std::fs::remove_file(file);
        }
        return Err(e.context(format!(
            "{}: nothing was written to {}; the download was removed, run `bertvision fetch-data --task {}` again",
            set.name,
            folder.display(),
            set.name
        )));
    }
    if folder.exists() {
        std::fs::remove_dir_all(&folder)
            .with_context(|| format!("replacing incomplete {}", folder.display()))?;
    }
    std::fs::rename(&staging, &folder)
        .with_context(|| format!("moving into {}", folder.display()))?;
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    Ok(Fetched {
        set,
        folder,
        state: "fetched",
    })
}

/// The official URL, or the same path and query under `$BERTVISION_DATA_MIRROR`.
fn mirrored(url: &str) -> String {
    let Some(base) = std::env::var(MIRROR_ENV).ok().filter(|b| !b.is_empty()) else {
        return url.to_string();
    };
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    format!("{}{path}", base.trim_end_matches('/'))
}

/// `dir/<name>`, downloaded (resuming `<name>.part` when a previous try stopped).
fn download(d: &Download, dir: &Path) -> Result<PathBuf> {
    let done = dir.join(d.name);
    if done.is_file() {
        return Ok(done);
    }
    let part = dir.join(format!("{}.part", d.name));
    let have = part.metadata().map_or(0, |m| m.len());
    let url = mirrored(d.url);
    let agent = agent()?;
    let get = || agent.get(&url).header("Accept-Encoding", "identity");
    let mut response = match have {
        0 => get().call(),
        // A part the server will not resume (416: the file changed, or the part is whole) is
        // dropped and the file read from the start.
        _ => match get().header("Range", format!("bytes={have}-")).call() {
            Err(ureq::Error::StatusCode(416)) => get().call(),
            other => other,
        },
    }
    .with_context(|| format!("downloading {url}"))?;
    let resumed = have > 0 && response.status().as_u16() == 206;
    let start = if resumed { have } else { 0 };
    let length = (response.headers().get("content-length"))
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let total = length.map(|n| n + start);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .with_context(|| format!("writing {}", part.display()))?;
    let bar = ProgressBar::new(total.unwrap_or(0)).with_message(d.name.to_string());
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("static template"),
    );
    bar.set_position(start);
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut written = start;
    let mut chunk = vec![0u8; 1 << 16];
    let stopped = |written: u64, why: String| {
        let of = total.map_or(String::new(), |t| format!(" of {t}"));
        anyhow::anyhow!(
            "{url}: the download stopped at {written}{of} bytes ({why}); {} is kept: run fetch-data again to resume",
            part.display()
        )
    };
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => return Err(stopped(written, e.to_string())),
        };
        if n == 0 {
            break;
        }
        file.write_all(&chunk[..n])
            .with_context(|| format!("writing {}", part.display()))?;
        written += n as u64;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    if total.is_some_and(|t| t != written) {
        return Err(stopped(written, "the connection closed early".into()));
    }
    file.sync_all()?;
    std::fs::rename(&part, &done).with_context(|| format!("moving into {}", done.display()))?;
    Ok(done)
}

/// The data set's files in `staging`, checked, with the marker last.
fn build_folder(set: &DataSet, downloads: &[PathBuf], staging: &Path) -> Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)?;
    }
    std::fs::create_dir_all(staging).with_context(|| format!("creating {}", staging.display()))?;
    unpack(set, downloads, staging)?;
    let mut checked = Vec::new();
    for file in set.files {
        let path = staging.join(file.name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let digest = hex(&Sha256::digest(&bytes));
        let how = match file.check {
            FileCheck::Sha256(pinned) if pinned != digest => bail!(
                "{}: sha256 {digest} is not the pinned {pinned} of the official file (corrupt download?)",
                file.name
            ),
            FileCheck::Sha256(_) => "sha256 pinned".to_string(),
            check => {
                check_rows_or_questions(check, &bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.name))?;
                format!("{} (official count)", count_words(check))
            }
        };
        checked.push(serde_json::json!({"file": file.name, "sha256": digest, "check": how}));
    }
    let sources: Vec<&str> = set.downloads.iter().map(|d| d.url).collect();
    let marker = serde_json::json!({"data_set": set.name, "sources": sources, "files": checked});
    std::fs::write(
        staging.join(DATA_MARKER),
        serde_json::to_string_pretty(&marker)?,
    )?;
    Ok(())
}

fn count_words(check: FileCheck) -> String {
    match check {
        FileCheck::Rows { rows, .. } => format!("{rows} rows"),
        FileCheck::Questions(q) => format!("{q} questions"),
        FileCheck::Sha256(_) => "sha256".into(),
    }
}

/// The downloads turned into the listed files of `staging`.
fn unpack(set: &DataSet, downloads: &[PathBuf], staging: &Path) -> Result<()> {
    match set.unpack {
        Unpack::Zip { prefix } => {
            let zip = &downloads[0];
            let file = std::fs::File::open(zip)?;
            let mut archive = zip::ZipArchive::new(file)
                .with_context(|| format!("{}: not a zip archive", zip.display()))?;
            for f in set.files {
                let member = format!("{prefix}{}", f.name);
                let mut entry = archive
                    .by_name(&member)
                    .with_context(|| format!("{}: no member {member}", zip.display()))?;
                let out = staging.join(f.name);
                let mut to = std::fs::File::create(&out)?;
                std::io::copy(&mut entry, &mut to)
                    .with_context(|| format!("{}: member {member} is corrupt", zip.display()))?;
            }
        }
        Unpack::AsIs => {
            for (d, path) in set.downloads.iter().zip(downloads) {
                std::fs::copy(path, staging.join(d.name))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
        Unpack::MrpcSplit => {
            let text = |i: usize| {
                std::fs::read_to_string(&downloads[i])
                    .with_context(|| format!("{}: not UTF-8 text", downloads[i].display()))
            };
            let split = mrpc_split(&text(0)?, &text(1)?, &text(2)?).map_err(anyhow::Error::msg)?;
            for (name, content) in ["train.tsv", "dev.tsv", "test.tsv"].iter().zip(split) {
                std::fs::write(staging.join(name), content)?;
            }
        }
    }
    Ok(())
}

fn print_summary(fetched: &[Fetched]) {
    let rows: Vec<[String; 4]> = (fetched.iter())
        .map(|f| {
            let files: Vec<String> = (f.set.files.iter())
                .map(|file| match file.check {
                    FileCheck::Sha256(_) => format!("{} (sha256)", file.name),
                    other => format!("{} ({})", file.name, count_words(other)),
                })
                .collect();
            [
                f.set.name.to_string(),
                f.state.to_string(),
                files.join(", "),
                f.folder.display().to_string(),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0).max(4), width(1).max(5), width(2).max(13));
    println!(
        "{:<w0$}  {:<w1$}  {:<w2$}  folder",
        "data", "state", "files (check)"
    );
    for [name, state, files, folder] in &rows {
        println!("{name:<w0$}  {state:<w1$}  {files:<w2$}  {folder}");
    }
}
