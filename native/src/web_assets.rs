//! `bertvision web-assets`: puts what the browser app reads next to the built page — a SQuAD
//! export as the question-answering demo, a GLUE export as the classification demo, sample
//! passages and sentences, and results.json files for the comparison page — after checking
//! each one loads, so a broken file is caught here rather than in the browser.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
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

/// `web-assets`: checks each input loads, then copies it under `--out`.
pub fn main(req: &WebAssetsArgs) -> Result<()> {
    if let Some(export) = &req.export {
        let files = ExportFiles::read_dir(export)?;
        // Loading it is the check: the same code (and CPU backend) the page runs.
        QaModels::<crate::backend::CpuBackend>::load(files.clone(), &Default::default())?;
        copy_export(&files, req.f16, &req.out.join("models/squad"))?;
    }
    if let Some(export) = &req.classify_export {
        let files = ExportFiles::read_dir(export)?;
        let models =
            ExportedModels::<crate::backend::CpuBackend>::load(files.clone(), &Default::default())?;
        if models.info.span {
            bail!(
                "--classify-export {}: a SQuAD export (give it as --export)",
                export.display()
            );
        }
        copy_export(&files, req.f16, &req.out.join("models/classify"))?;
        if let Some(glue) = &req.glue {
            let inputs = bertvision_core::tasks::glue::load_inputs(models.task, glue)?;
            let samples = classify_samples(models.task, &inputs, 8);
            if samples.samples.is_empty() {
                bail!("{}: no rows to offer as samples", glue.display());
            }
            write_atomic(
                &req.out.join("classify-samples.json"),
                serde_json::to_string(&samples)?.as_bytes(),
            )?;
            eprintln!("classification samples: {}", samples.samples.len());
        }
    }
    if let Some(squad) = &req.squad {
        let samples = demo_samples(&SquadDataset::load(squad)?, 8);
        if samples.is_empty() {
            bail!("{}: no questions to offer as samples", squad.display());
        }
        write_atomic(
            &req.out.join("samples.json"),
            serde_json::to_string(&samples)?.as_bytes(),
        )?;
        eprintln!("samples: {} passages", samples.len());
    }
    if !req.results.is_empty() {
        let dir = req.out.join("results");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut index = Vec::new();
        for path in &req.results {
            let text = bertvision_core::error::read_text(path)?;
            let run = RunResults::parse(path, &text)?;
            let name = format!("{}-{}-{}.json", index.len() + 1, run.task, run.model.spec)
                .replace(['/', ' '], "_");
            write_atomic(&dir.join(&name), text.as_bytes())?;
            index.push(name);
        }
        write_atomic(
            &dir.join("index.json"),
            serde_json::to_string_pretty(&index)?.as_bytes(),
        )?;
        eprintln!("results: {} file(s)", index.len());
    }
    Ok(())
}

/// The export's files under `to` (BERT's weights as F16 when asked).
fn copy_export(files: &ExportFiles, f16: bool, to: &std::path::Path) -> Result<()> {
    for (rel, file) in ExportFiles::NAMES.into_iter().zip(files.files()) {
        let bytes = if f16 && rel.ends_with("model.safetensors") {
            bertvision_core::fsutil::safetensors_to_f16(&file.name, &file.bytes)?
        } else {
            file.bytes.clone()
        };
        let path = to.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .with_context(|| format!("creating {}", path.display()))?;
        write_atomic(&path, &bytes)?;
    }
    eprintln!("demo model: {}", to.display());
    Ok(())
}
