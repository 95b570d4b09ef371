//! `bertvision fetch-data` against a local HTTP server (127.0.0.1) standing in for GLUE's host
//! (`$BERTVISION_DATA_MIRROR`), serving archives built from the shared data: a download cut
//! short is refused and kept, then resumed with a Range request; the unpacked files are the
//! official ones (sha256) and `run` finds them in the cache with no `../shared/data` around; a
//! file that is not the official one, a corrupt archive, and MRPC built by GLUE's procedure.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bertvision_tests::{model_dir, refused, shared_data, succeed};

/// What the server serves and what it saw.
#[derive(Default)]
struct Served {
    files: HashMap<String, Vec<u8>>,
    /// Close the connection after this many bytes of a body (a download cut short).
    cut_after: Option<usize>,
    /// `path range` of every request.
    requests: Vec<String>,
}

/// A one-thread HTTP/1.1 server on 127.0.0.1: GET with `Range: bytes=N-` (416 past the end),
/// one request per connection.
struct Server {
    base: String,
    served: Arc<Mutex<Served>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(Mutex::new(Served::default()));
        let state = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = respond(stream, &state);
            }
        });
        Server { base, served }
    }

    fn serve(&self, path: &str, bytes: Vec<u8>) {
        self.served.lock().unwrap().files.insert(path.into(), bytes);
    }
}

fn respond(mut stream: TcpStream, state: &Mutex<Served>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let target = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let path = target.split('?').next().unwrap().to_string();
    let mut start = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(range) = lower.strip_prefix("range: bytes=") {
            start = range.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let mut served = state.lock().unwrap();
    served.requests.push(format!("{path} {start}"));
    let Some(body) = served.files.get(&path).cloned() else {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    if start > 0 && start >= body.len() {
        return stream.write_all(
            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let (status, from) = if start > 0 {
        let range = format!(
            "Content-Range: bytes {start}-{}/{}\r\n",
            body.len() - 1,
            body.len()
        );
        (format!("206 Partial Content\r\n{range}"), start)
    } else {
        ("200 OK\r\n".to_string(), 0)
    };
    let rest = &body[from..];
    let head = format!(
        "HTTP/1.1 {status}Content-Length: {}\r\nConnection: close\r\n\r\n",
        rest.len()
    );
    stream.write_all(head.as_bytes())?;
    let sent = served.cut_after.map_or(rest.len(), |n| n.min(rest.len()));
    stream.write_all(&rest[..sent])?;
    stream.flush()
}

/// A GLUE task zip: `<task>/<name>` for each file, deflated (or stored, to corrupt a member).
fn glue_zip(task: &str, files: &[(&str, Vec<u8>)], stored: bool) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if stored {
        zip::CompressionMethod::Stored
    } else {
        zip::CompressionMethod::Deflated
    };
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in files {
        out.start_file(format!("{task}/{name}"), options).unwrap();
        out.write_all(bytes).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn shared(rel: &str) -> Vec<u8> {
    std::fs::read(shared_data().join("glue").join(rel)).unwrap()
}

/// A label-free test file of `rows` pairs in the RTE/WNLI layout (its content is not checked,
/// only its size: no checksum of the official test files is known here).
fn test_tsv(rows: usize) -> Vec<u8> {
    let mut text = String::from("index\tsentence1\tsentence2\n");
    for i in 0..rows {
        text.push_str(&format!("{i}\tA premise number {i}.\tA hypothesis.\n"));
    }
    text.into_bytes()
}

/// A cache folder whose `models/` is the real cache's (no second download of the models).
fn cache_with_models(root: &Path) -> PathBuf {
    let cache = root.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let models = model_dir("splade-tiny")
        .root
        .parent()
        .unwrap()
        .to_path_buf();
    std::os::unix::fs::symlink(models, cache.join("models")).unwrap();
    cache
}

fn bertvision(cache: &Path, server: &Server, cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bertvision"));
    command
        .env("BERTVISION_CACHE", cache)
        .env("BERTVISION_DATA_MIRROR", &server.base)
        .env_remove("BERTVISION_DATA")
        .current_dir(cwd);
    command
}

fn fetch(cache: &Path, server: &Server, cwd: &Path, task: &str) -> Command {
    let mut command = bertvision(cache, server, cwd);
    command.args(["fetch-data", "--task", task]);
    command
}

#[test]
fn fetch_data_resumes_checks_and_feeds_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let cache = cache_with_models(tmp.path());
    let server = Server::start();
    let rte = glue_zip(
        "RTE",
        &[
            ("train.tsv", shared("RTE/train.tsv")),
            ("dev.tsv", shared("RTE/dev.tsv")),
            ("test.tsv", test_tsv(3000)),
        ],
        false,
    );
    server.serve("/glue/data/RTE.zip", rte.clone());

    // No data anywhere: `run` says which command fetches it.
    let mut run = bertvision(&cache, &server, &cwd);
    run.args([
        "run",
        "--task",
        "RTE",
        "--model",
        "splade-tiny",
        "--seeds",
        "1",
    ])
    .args([
        "--limit-train",
        "64",
        "--limit-eval",
        "32",
        "--max-length",
        "32",
    ])
    .args(["--epochs", "1", "--out", "rte-run"]);
    refused(&mut run, &["no RTE data", "fetch-data --task RTE"]);

    // Cut short: refused, nothing under the final name, the part kept.
    let half = rte.len() / 2;
    server.served.lock().unwrap().cut_after = Some(half);
    refused(
        &mut fetch(&cache, &server, &cwd, "RTE"),
        &["stopped at", "resume"],
    );
    let folder = cache.join("data/glue/RTE");
    assert!(!folder.exists());
    let part = cache.join("downloads/RTE.zip.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), half as u64);

    // Resumed from the part, unpacked, checked.
    server.served.lock().unwrap().cut_after = None;
    let out = succeed(&mut fetch(&cache, &server, &cwd, "RTE"));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("fetched") && summary.contains("test.tsv (3000 rows)"),
        "{summary}"
    );
    let requests = server.served.lock().unwrap().requests.clone();
    assert!(
        requests.contains(&format!("/glue/data/RTE.zip {half}")),
        "{requests:?}"
    );
    assert_eq!(
        std::fs::read(folder.join("dev.tsv")).unwrap(),
        shared("RTE/dev.tsv")
    );
    assert!(folder.join(".bertvision-data.json").is_file());
    assert!(!part.exists() && !cache.join("downloads/RTE.zip").exists());
    let again = succeed(&mut fetch(&cache, &server, &cwd, "RTE"));
    assert!(String::from_utf8_lossy(&again.stdout).contains("cached"));

    // `run` finds the fetched task in the cache.
    succeed(&mut run);
    let data = std::fs::read_to_string(cwd.join("rte-run/data.json")).unwrap();
    assert!(
        data.contains(&folder.parent().unwrap().display().to_string()),
        "{data}"
    );
    assert!(cwd.join("rte-run/results.json").is_file());

    check_refused_downloads(&cache, &server, &cwd);
    check_mrpc(&cache, &server, &cwd);
}

/// A dev file one byte off the official, then a corrupt archive: both refused with nothing
/// left, neither folder nor download; then the good archive is fetched.
fn check_refused_downloads(cache: &Path, server: &Server, cwd: &Path) {
    let mut dev = shared("WNLI/dev.tsv");
    let last = dev.len() - 2;
    dev[last] ^= 1;
    let files = |dev: Vec<u8>| {
        [
            ("train.tsv", shared("WNLI/train.tsv")),
            ("dev.tsv", dev),
            ("test.tsv", test_tsv(146)),
        ]
    };
    let folder = cache.join("data/glue/WNLI");
    let download = cache.join("downloads/WNLI.zip");
    server.serve("/glue/data/WNLI.zip", glue_zip("WNLI", &files(dev), false));
    refused(
        &mut fetch(cache, server, cwd, "WNLI"),
        &["dev.tsv: sha256", "not the pinned", "nothing was written"],
    );
    assert!(!folder.exists() && !download.exists());

    let mut corrupt = glue_zip("WNLI", &files(shared("WNLI/dev.tsv")), true);
    corrupt[200] ^= 0xff;
    server.serve("/glue/data/WNLI.zip", corrupt);
    refused(
        &mut fetch(cache, server, cwd, "WNLI"),
        &["WNLI.zip", "nothing was written"],
    );
    assert!(!folder.exists() && !download.exists());

    // A part as long as the file (a fetch killed before its rename): the server cannot resume
    // it (416), so it is read from the start.
    let good = glue_zip("WNLI", &files(shared("WNLI/dev.tsv")), false);
    std::fs::write(cache.join("downloads/WNLI.zip.part"), &good).unwrap();
    server.serve("/glue/data/WNLI.zip", good.clone());
    succeed(&mut fetch(cache, server, cwd, "WNLI"));
    let requests = server.served.lock().unwrap().requests.clone();
    let tail = &requests[requests.len() - 2..];
    assert_eq!(
        tail,
        [
            format!("/glue/data/WNLI.zip {}", good.len()),
            "/glue/data/WNLI.zip 0".into()
        ]
    );
    assert_eq!(
        std::fs::read(folder.join("dev.tsv")).unwrap(),
        shared("WNLI/dev.tsv")
    );
}

/// MRPC from SentEval's two files and the dev ids, split by GLUE's procedure: the official
/// train.tsv and dev.tsv (their pinned sha256), GLUE's test.tsv layout.
fn check_mrpc(cache: &Path, server: &Server, cwd: &Path) {
    let (train, dev) = (shared("MRPC/train.tsv"), shared("MRPC/dev.tsv"));
    let (train, dev) = (
        String::from_utf8(train).unwrap(),
        String::from_utf8(dev).unwrap(),
    );
    let header = train.lines().next().unwrap();
    let dev_rows: Vec<&str> = dev.lines().skip(1).collect();
    // The original interleaves the dev pairs with the training pairs; the split keeps each
    // file's order, so any interleaving gives the same files.
    let mut senteval = format!("{header}\n");
    let mut dev_left = dev_rows.iter();
    for (i, row) in train.lines().skip(1).enumerate() {
        senteval.push_str(&format!("{row}\r\n"));
        if i % 9 == 0
            && let Some(dev_row) = dev_left.next()
        {
            senteval.push_str(&format!("{dev_row}\r\n"));
        }
    }
    for row in dev_left {
        senteval.push_str(&format!("{row}\r\n"));
    }
    let ids: String = dev_rows
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split('\t').collect();
            format!("{}\t{}\n", f[1], f[2])
        })
        .collect();
    let mut test = String::from("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n");
    for i in 0..1725 {
        test.push_str(&format!(
            "1\t{i}\t{}\tSentence {i} .\tAnother .\n",
            i + 5000
        ));
    }
    server.serve(
        "/senteval/senteval_data/msr_paraphrase_train.txt",
        senteval.into_bytes(),
    );
    server.serve(
        "/senteval/senteval_data/msr_paraphrase_test.txt",
        test.into_bytes(),
    );
    server.serve(
        "/v0/b/mtl-sentence-representations.appspot.com/o/data%2Fmrpc_dev_ids.tsv",
        ids.into_bytes(),
    );
    succeed(&mut fetch(cache, server, cwd, "MRPC"));
    let folder = cache.join("data/glue/MRPC");
    assert_eq!(
        std::fs::read_to_string(folder.join("train.tsv")).unwrap(),
        train
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("dev.tsv")).unwrap(),
        dev
    );
    let test = std::fs::read_to_string(folder.join("test.tsv")).unwrap();
    assert!(test.starts_with("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t0\t5000\t"));
}
