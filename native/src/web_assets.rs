//! `bertvision web-assets`: puts what the browser app reads next to the built page — a SQuAD
//! export as the question-answering demo, a GLUE export as the classification demo, sample
//! passages and sentences, and results.json files for the comparison page — after checking
//! each one loads, so a broken file is caught here rather than in the browser.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use bertvision_core::fsutil::write_atomic;
use bertvision_core::inference::about::{ModelAbout, display_model};
use bertvision_core::inference::classify::classify_samples;
use bertvision_core::inference::export::{ServedFile, ServedManifest};
use bertvision_core::inference::qa::{QaModels, demo_samples};
use bertvision_core::inference::{ExportFiles, ExportedModels};
use bertvision_core::pipeline::results::RunResults;
use bertvision_core::squad::SquadDataset;
use sha2::{Digest, Sha256};

#[derive(Debug, clap::Args)]
pub struct WebAssetsArgs {
    /// A SQuAD run's export folder (`<run>/seed-N/export`).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// A SQuAD 2.0 JSON file to take sample passages from (e.g. `<run>/dev.squad.json`).
    #[arg(long)]
    pub squad: Option<PathBuf>,
    /// A GLUE run's export folder, the classification page's demo model.
    #[arg(long)]
    pub classify_export: Option<PathBuf>,
    /// A GLUE file of that export's task to take sample sentences from (e.g. its dev.tsv).
    #[arg(long, requires = "classify_export")]
    pub glue: Option<PathBuf>,
    /// results.json files of `bertvision run`.
    #[arg(long = "results", num_args = 1..)]
    pub results: Vec<PathBuf>,
    /// Store BERT's weights as F16: half the download, logits within about 1e-2.
    #[arg(long)]
    pub f16: bool,
    /// The served folder (trunk's dist).
    #[arg(long)]
    pub out: PathBuf,
}

impl WebAssetsArgs {
    /// Every input is there (a file not empty) and `--out` can be a folder, before any is read.
    fn validate(&self) -> Result<()> {
        use bertvision_core::checks::{existing, output_dir};
        for (flag, file) in [("--squad", &self.squad), ("--glue", &self.glue)] {
            if let Some(file) = file {
                existing(flag, file, false)?;
            }
        }
        for file in &self.results {
            existing("--results", file, false)?;
        }
        let dirs = [
            ("--export", &self.export),
            ("--classify-export", &self.classify_export),
        ];
        for (flag, dir) in dirs {
            if let Some(dir) = dir {
                existing(flag, dir, true)?;
            }
        }
        output_dir("--out", &self.out)?;
        Ok(())
    }
}

/// `web-assets`: checks every input loads, then writes them under `--out` (nothing is written
/// when any input is refused).
pub fn main(req: &WebAssetsArgs) -> Result<()> {
    req.validate()?;
    let mut out = Outputs::default();
    if let Some(export) = &req.export {
        let files = ExportFiles::read_dir(export)?;
        // Loading it is the check: the same code (and CPU backend) the page runs.
        QaModels::<crate::backend::CpuBackend>::load(files.clone(), &Default::default())?;
        let to = req.out.join("models/squad");
        export_files(&mut out, &files, req.f16, &to)?;
        about_file(&mut out, "--export", export, &to)?;
    }
    if let Some(export) = &req.classify_export {
        classify_assets(&mut out, req, export)?;
    }
    if let Some(squad) = &req.squad {
        let samples = demo_samples(&SquadDataset::load(squad)?, 8);
        if samples.is_empty() {
            bail!("{}: no questions to offer as samples", squad.display());
        }
        let json = serde_json::to_string(&samples)?;
        out.add(req.out.join("samples.json"), json.into_bytes());
        out.log(format!("samples: {} passages", samples.len()));
    }
    if !req.results.is_empty() {
        let dir = req.out.join("results");
        let mut index = Vec::new();
        for path in &req.results {
            let text = bertvision_core::error::read_text(path)?;
            let run = RunResults::parse(path, &text)?;
            let model = display_model(&run.model.spec);
            let name =
                format!("{}-{}-{model}.json", index.len() + 1, run.task).replace(['/', ' '], "_");
            out.add(dir.join(&name), text.into_bytes());
            index.push(name);
        }
        let json = serde_json::to_string_pretty(&index)?;
        out.add(dir.join("index.json"), json.into_bytes());
        out.log(format!("results: {} file(s)", index.len()));
    }
    out.write()
}

/// What `web-assets` writes, gathered while every input is checked and written only then.
#[derive(Default)]
struct Outputs {
    files: Vec<(PathBuf, Vec<u8>)>,
    log: Vec<String>,
}

impl Outputs {
    fn add(&mut self, path: PathBuf, bytes: Vec<u8>) {
        self.files.push((path, bytes));
    }

    fn log(&mut self, line: String) {
        self.log.push(line);
    }

    fn write(self) -> Result<()> {
        for (path, bytes) in &self.files {
            write_atomic(path, bytes)?;
        }
        for line in &self.log {
            eprintln!("{line}");
        }
        Ok(())
    }
}

/// The classification page's demo model and, with `--glue`, its sample sentences.
fn classify_assets(out: &mut Outputs, req: &WebAssetsArgs, export: &Path) -> Result<()> {
    let files = ExportFiles::read_dir(export)?;
    let models =
        ExportedModels::<crate::backend::CpuBackend>::load(files.clone(), &Default::default())?;
    if models.info.span {
        bail!(
            "--classify-export {}: a SQuAD export (give it as --export)",
            export.display()
        );
    }
    let to = req.out.join("models/classify");
    export_files(out, &files, req.f16, &to)?;
    about_file(out, "--classify-export", export, &to)?;
    if let Some(glue) = &req.glue {
        let inputs = bertvision_core::tasks::glue::load_inputs(models.task, glue)?;
        let samples = classify_samples(models.task, &inputs, 8);
        if samples.samples.is_empty() {
            bail!("{}: no rows to offer as samples", glue.display());
        }
        let json = serde_json::to_string(&samples)?;
        out.add(req.out.join("classify-samples.json"), json.into_bytes());
        out.log(format!("classification samples: {}", samples.samples.len()));
    }
    Ok(())
}

/// The export's files under `to` (BERT's weights as F16 when asked), and `manifest.json`: each
/// file's size and sha256, which the page checks its cached copies against (a second visit
/// downloads only what changed).
fn export_files(out: &mut Outputs, files: &ExportFiles, f16: bool, to: &Path) -> Result<()> {
    let mut manifest = ServedManifest {
        files: Default::default(),
    };
    for (rel, file) in ExportFiles::NAMES.into_iter().zip(files.files()) {
        let bytes = if f16 && rel.ends_with("model.safetensors") {
            bertvision_core::fsutil::safetensors_to_f16(&file.name, &file.bytes)?
        } else {
            file.bytes.clone()
        };
        let sha256 = crate::fetch::hex(&Sha256::digest(&bytes));
        let file = ServedFile {
            bytes: bytes.len() as u64,
            sha256,
        };
        manifest.files.insert(rel.to_string(), file);
        out.add(to.join(rel), bytes);
    }
    let manifest = serde_json::to_string_pretty(&manifest)?;
    out.add(to.join("manifest.json"), manifest.into_bytes());
    out.log(format!("demo model: {}", to.display()));
    Ok(())
}

/// `about.json` beside a served export, from the results.json of the run it came from
/// (`<run>/seed-N/export`); an export outside a run folder is served without one.
fn about_file(out: &mut Outputs, flag: &str, export: &Path, to: &Path) -> Result<()> {
    let export = std::path::absolute(export).unwrap_or_else(|_| export.to_path_buf());
    let seed_dir = export.parent();
    let seed = seed_dir
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("seed-"))
        .and_then(|n| n.parse::<u64>().ok());
    let results = seed_dir
        .and_then(Path::parent)
        .map(|run| run.join("results.json"));
    let (Some(seed), Some(results)) = (seed, results.filter(|r| r.is_file())) else {
        out.log(format!(
            "{flag} {}: not inside a run folder with a results.json; the page shows no \"about this model\" line",
            export.display()
        ));
        return Ok(());
    };
    let text = bertvision_core::error::read_text(&results)?;
    let run = RunResults::parse(&results, &text)?;
    let Some(about) = ModelAbout::from_results(&run, seed) else {
        bail!(
            "{}: has no scores of seed {seed}, whose export {flag} names",
            results.display()
        );
    };
    out.add(
        to.join("about.json"),
        serde_json::to_string_pretty(&about)?.into_bytes(),
    );
    Ok(())
}
