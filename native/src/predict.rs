//! `bertvision predict` (a file through an export, official output formats, metrics when the
//! file has labels) and `bertvision classify` (one sentence or pair).

use std::path::PathBuf;

use anyhow::Result;
use bertvision_core::checks;
use bertvision_core::inference::classify::{ClassifyAnswers, ClassifyQuery, classify};
use bertvision_core::inference::{ExportFiles, ExportedModels, Method};
use bertvision_core::predict::{PredictOutcome, PredictRequest, run_predict};
use bertvision_core::squad::{FeatureConfig, PostprocessConfig};
use bertvision_core::tasks::{TaskSpec, task};

use crate::answer::host;
use crate::backend::DeviceArg;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The export folder of a finished run (`<run>/seed-N/export`).
    #[arg(long)]
    pub export: PathBuf,
    /// The file to predict: a GLUE TSV (a train/dev file, or GLUE's label-free test.tsv) or a
    /// SQuAD 2.0 JSON file.
    #[arg(long)]
    pub input: PathBuf,
    /// The task the input belongs to; checked against the export's (default: the export's).
    #[arg(long)]
    pub task: Option<String>,
    /// Methods to predict with (repeatable): bert, bertvision, ensemble-max, ensemble-mean, or
    /// all (every one the task has).
    #[arg(long = "method", default_value = "all", value_parser = parse_method)]
    pub methods: Vec<MethodChoice>,
    /// The output folder: one sub-folder per method, metrics.json when the input has labels.
    #[arg(long)]
    pub out: PathBuf,
    /// Inputs per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// SQuAD: tokens between the starts of a long passage's windows.
    #[arg(long, default_value_t = 128)]
    pub doc_stride: usize,
    /// SQuAD: questions are cut to this many tokens.
    #[arg(long, default_value_t = 64)]
    pub max_query_length: usize,
    /// SQuAD: answer only when best span score − null score exceeds −threshold.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub null_threshold: f64,
    /// SQuAD: candidates per window and entries per question in nbest_predictions.json.
    #[arg(long, default_value_t = 20)]
    pub n_best: usize,
    /// The backend: cpu, ndarray, cuda, wgpu (the last two need a build with the feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

/// One `--method` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodChoice {
    All,
    One(Method),
}

fn parse_method(value: &str) -> Result<MethodChoice, String> {
    if value == "all" {
        return Ok(MethodChoice::All);
    }
    <Method as clap::ValueEnum>::from_str(value, false)
        .map(MethodChoice::One)
        .map_err(|_| "expected bert, bertvision, ensemble-max, ensemble-mean or all".to_string())
}

/// `None` (every method) when `all` is among the choices.
fn methods(choices: &[MethodChoice]) -> Option<Vec<Method>> {
    let mut list = Vec::new();
    for choice in choices {
        match choice {
            MethodChoice::All => return None,
            MethodChoice::One(m) if !list.contains(m) => list.push(*m),
            MethodChoice::One(_) => {}
        }
    }
    Some(list)
}

fn task_arg(name: Option<&str>) -> Result<Option<&'static TaskSpec>> {
    name.map(|n| task(n).map_err(|e| anyhow::anyhow!("--task: {e}")))
        .transpose()
}

impl PredictArgs {
    /// Every flag's value, from its meaning, before the export or the input is read (the
    /// windows' length is the export's, checked against these when it is read).
    pub fn validate(&self) -> Result<()> {
        checks::at_least("--batch-size", self.batch_size, 1)?;
        checks::existing("--input", &self.input, false)?;
        checks::output_dir("--out", &self.out)?;
        checks::at_least("--doc-stride", self.doc_stride, 1)?;
        checks::at_least("--max-query-length", self.max_query_length, 1)?;
        checks::finite("--null-threshold", self.null_threshold)?;
        checks::at_least("--n-best", self.n_best, 1)?;
        Ok(())
    }
}

impl ClassifyArgs {
    pub fn validate(&self) -> Result<()> {
        checks::not_empty("--text", &self.text)?;
        if let Some(json) = &self.json {
            checks::output_file("--json", json)?;
        }
        if let Some(pair) = &self.text_pair {
            checks::not_empty("--text-pair", pair)?;
        }
        Ok(())
    }
}

pub fn main(args: &PredictArgs) -> Result<()> {
    args.validate()?;
    let req = PredictRequest {
        export: args.export.clone(),
        input: args.input.clone(),
        task: task_arg(args.task.as_deref())?,
        methods: methods(&args.methods),
        out: args.out.clone(),
        batch_size: args.batch_size,
        features: FeatureConfig {
            max_len: 0,
            doc_stride: args.doc_stride,
            max_query: args.max_query_length,
        },
        postprocess: PostprocessConfig {
            n_best: args.n_best,
            null_threshold: args.null_threshold,
            ..Default::default()
        },
    };
    let outcome = with_backend!(args.device, |B, dev| {
        run_predict::<B>(&req, &dev, &mut crate::progress::Bars::new()).map_err(anyhow::Error::from)
    })?;
    print_outcome(&outcome, &args.out);
    Ok(())
}

fn print_outcome(outcome: &PredictOutcome, out: &std::path::Path) {
    println!("{} · {}", outcome.task, outcome.note);
    let keys: Vec<String> = outcome
        .methods
        .iter()
        .filter_map(|m| m.metrics.as_ref())
        .flat_map(|m| m.keys().cloned())
        .fold(Vec::new(), |mut keys, k| {
            if !keys.contains(&k) && !k.contains("thresh") {
                keys.push(k);
            }
            keys
        });
    let header: Vec<String> = keys.iter().map(|k| format!("{k:>10}")).collect();
    println!("{:<14} {}  files", "method", header.join(" "));
    for m in &outcome.methods {
        let values: Vec<String> = keys
            .iter()
            .map(|k| match m.metrics.as_ref().and_then(|v| v.get(k)) {
                Some(v) => format!("{v:>10.4}"),
                None => format!("{:>10}", "–"),
            })
            .collect();
        let files: Vec<String> = (m.files.iter())
            .filter_map(|f| f.strip_prefix(out).ok())
            .map(|f| f.display().to_string())
            .collect();
        println!(
            "{:<14} {}  {}",
            m.method.name(),
            values.join(" "),
            files.join(", ")
        );
    }
    if !outcome.labelled {
        println!("(no labels in the input: predictions only)");
    }
}

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// The export folder of a finished GLUE run (`<run>/seed-N/export`).
    #[arg(long)]
    pub export: PathBuf,
    /// The sentence (the first of a pair).
    #[arg(long)]
    pub text: String,
    /// The second sentence, for pair tasks (RTE, MRPC, STS-B, ...).
    #[arg(long)]
    pub text_pair: Option<String>,
    /// Also write every method's decision and probabilities as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The backend: cpu, ndarray, cuda, wgpu (the last two need a build with the feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

pub fn classify_main(args: &ClassifyArgs) -> Result<()> {
    args.validate()?;
    with_backend!(args.device, |B, dev| classify_one::<B>(args, dev))
}

fn classify_one<B: bertvision_core::KernelBackend>(
    args: &ClassifyArgs,
    device: B::Device,
) -> Result<()> {
    let mut models = ExportedModels::<B>::load(ExportFiles::read_dir(&args.export)?, &device)?;
    let query = ClassifyQuery::new(&mut models, &args.text, args.text_pair.as_deref())?;
    let [bert, head] = models.forward(query.batch.to_input(&device));
    let answers = classify(models.task, &host(bert)?, &host(head)?);
    print_answers(&answers, query.tokens.len());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&answers)?;
        bertvision_core::fsutil::write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}

fn print_answers(answers: &ClassifyAnswers, tokens: usize) {
    println!("{} · {tokens} tokens", answers.task);
    let labels: Vec<String> = answers
        .labels
        .iter()
        .map(|l| format!("{:>15}", format!("p({l})")))
        .collect();
    println!("{:<14} {:<15} {}", "method", "prediction", labels.join(" "));
    for m in &answers.methods {
        let probs: Vec<String> = m
            .probabilities
            .iter()
            .map(|p| format!("{p:>15.4}"))
            .collect();
        println!(
            "{:<14} {:<15} {}",
            m.method.name(),
            m.prediction,
            probs.join(" ")
        );
    }
}
