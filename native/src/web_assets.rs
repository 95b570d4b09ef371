//! `bertvision web-assets`: puts what the browser app reads next to the built page — a SQuAD
//! export as the question-answering demo, a GLUE export as the classification demo, sample
//! passages and sentences, and results.json files for the comparison page — after checking
//! each one loads, so a broken file is caught here rather than in the browser.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use bertvision_core::fsutil::write_atomic;
use bertvision_core::inference::classify::classify_samples;
use bertvision_core::inference::qa::{QaModels, demo_samples};
use bertvision_core::inference::{ExportFiles, ExportedModels};
use bertvision_core::pipeline::results::RunResults;
use bertvision_core::squad::SquadDataset;

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
        export_files(&mut out, &files, req.f16, &req.out.join("models/squad"))?;
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
            let name = format!("{}-{}-{}.json", index.len() + 1, run.task, run.model.spec)
                .replace(['/', ' '], "_");
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
    export_files(out, &files, req.f16, &req.out.join("models/classify"))?;
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

/// The export's files under `to` (BERT's weights as F16 when asked).
fn export_files(out: &mut Outputs, files: &ExportFiles, f16: bool, to: &Path) -> Result<()> {
    for (rel, file) in ExportFiles::NAMES.into_iter().zip(files.files()) {
        let bytes = if f16 && rel.ends_with("model.safetensors") {
            bertvision_core::fsutil::safetensors_to_f16(&file.name, &file.bytes)?
        } else {
            file.bytes.clone()
        };
        out.add(to.join(rel), bytes);
    }
    out.log(format!("demo model: {}", to.display()));
    Ok(())
}
