//! `bertvision answer`: one question about one passage with an exported SQuAD model — BERT's,
//! BERTVision's and the ensemble's answers, as the browser demo computes them.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bertvision_core::checks;
use bertvision_core::fsutil::write_atomic;
use bertvision_core::inference::ExportFiles;
use bertvision_core::inference::qa::{QaAnswers, QaModels, QaQuery, answer};
use bertvision_core::squad::{FeatureConfig, PostprocessConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::backend::DeviceArg;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("passage_source").required(true).args(["passage", "passage_file"])))]
pub struct AnswerArgs {
    /// The export folder (`bert/` + `head.safetensors` + `head.json`).
    #[arg(long)]
    pub export: PathBuf,
    /// The passage, as text.
    #[arg(long, conflicts_with = "passage_file")]
    pub passage: Option<String>,
    /// Read the passage from a UTF-8 text file instead.
    #[arg(long)]
    pub passage_file: Option<PathBuf>,
    /// The question.
    #[arg(long)]
    pub question: String,
    /// Answer only when best span score − null score exceeds −threshold (0: the standard rule).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub null_threshold: f64,
    /// Tokens per window (question and passage).
    #[arg(long, default_value_t = 384)]
    pub max_length: usize,
    /// Tokens between the starts of a long passage's windows.
    #[arg(long, default_value_t = 128)]
    pub doc_stride: usize,
    /// Questions are cut to this many tokens.
    #[arg(long, default_value_t = 64)]
    pub max_query_length: usize,
    /// Also write every method's decision, probabilities and window logits as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The backend: cpu (Flex with this project's kernels), ndarray, cuda, wgpu (the last two
    /// need a build with `--features cuda` / `wgpu`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

impl AnswerArgs {
    /// Every flag's value, from its meaning, before the export or the passage is read.
    pub fn validate(&self) -> Result<()> {
        checks::not_empty("--question", &self.question)?;
        if let Some(json) = &self.json {
            checks::output_file("--json", json)?;
        }
        if let Some(passage) = &self.passage {
            checks::not_empty("--passage", passage)?;
        }
        checks::finite("--null-threshold", self.null_threshold)?;
        let (len, stride, query) = (self.max_length, self.doc_stride, self.max_query_length);
        checks::squad_windows("--max-length", len, stride, query)?;
        Ok(())
    }
}

/// `answer`: checks the flags, reads the passage and runs [`run`] on the chosen backend.
pub fn main(args: &AnswerArgs) -> Result<()> {
    args.validate()?;
    let passage = match (&args.passage, &args.passage_file) {
        (Some(p), _) => p.clone(),
        (None, Some(file)) => bertvision_core::error::read_text(file)?,
        (None, None) => anyhow::bail!("give the passage: --passage TEXT or --passage-file FILE"),
    };
    checks::not_empty("--passage-file", &passage)?;
    let req = AnswerRequest {
        export: &args.export,
        passage: &passage,
        question: &args.question,
        features: FeatureConfig {
            max_len: args.max_length,
            doc_stride: args.doc_stride,
            max_query: args.max_query_length,
        },
        postprocess: PostprocessConfig {
            null_threshold: args.null_threshold,
            ..Default::default()
        },
        json: args.json.as_deref(),
    };
    with_backend!(args.device, |B, dev| run::<B>(&req, dev))
}

pub struct AnswerRequest<'a> {
    pub export: &'a Path,
    pub passage: &'a str,
    pub question: &'a str,
    pub features: FeatureConfig,
    pub postprocess: PostprocessConfig,
    pub json: Option<&'a Path>,
}

/// A `[rows, columns]` tensor read back to the host (shared with `classify`).
pub(crate) fn host(t: Tensor<impl Backend, 2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading logits back from the device: {e:?}"))
}

pub fn run<B: bertvision_core::KernelBackend>(
    req: &AnswerRequest<'_>,
    device: B::Device,
) -> Result<()> {
    let mut models = QaModels::<B>::load(ExportFiles::read_dir(req.export)?, &device)?;
    let query = QaQuery::new(
        &mut models.tokenizer,
        req.passage,
        req.question,
        &req.features,
    )?;
    let [(bs, be), (vs, ve)] = models.forward(query.batch.to_input(&device));
    let bert = query.window_logits(&host(bs)?, &host(be)?);
    let bertvision = query.window_logits(&host(vs)?, &host(ve)?);
    let answers = answer(&query, bert, bertvision, &req.postprocess);
    print_answers(&answers);
    if let Some(path) = req.json {
        write_atomic(path, serde_json::to_string_pretty(&answers)?.as_bytes())?;
    }
    Ok(())
}

fn print_answers(answers: &QaAnswers) {
    println!("{} window(s)", answers.windows);
    println!(
        "{:<11} {:<40} {:>9} {:>9} {:>8}",
        "method", "answer", "span p", "no-ans p", "null-span"
    );
    for m in &answers.methods {
        let p = &m.prediction;
        let shown = if p.text.is_empty() {
            format!("(no answer; best span: {:?})", p.best_span)
        } else {
            p.text.clone()
        };
        println!(
            "{:<11} {:<40} {:>9.4} {:>9.4} {:>8.3}",
            m.method,
            shown,
            m.span_probability,
            p.na_prob,
            p.null_score - p.best_span_score
        );
    }
}
