//! `bertvision predict`: an export of `bertvision run` on a file — every method's predictions in
//! the official formats (a GLUE submission TSV per method, SQuAD's `predictions.json`,
//! `na_prob.json` and `nbest_predictions.json`) and, when the file has labels, the task's
//! metrics, computed by the evaluation `run` uses (so on a run's dev file they are the run's).
//!
//! The output folder holds one prediction: `predict.json` records the export, the input and the
//! settings, and a folder recording others is refused.

pub mod input;
mod output;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::inference::{ExportFiles, ExportedModels, Method};
use crate::pipeline::batch::Padding;
use crate::pipeline::data::EvalSplit;
use crate::pipeline::evaluate::{EvalOutputs, predict as batched_outputs, score};
use crate::pipeline::progress::Progress;
use crate::squad::{FeatureConfig, PostprocessConfig, postprocess};
use crate::tasks::{TaskKind, TaskSpec};

pub use input::{PredictInput, read_input};

/// What to predict, with what, and where to write it.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub export: PathBuf,
    pub input: PathBuf,
    /// The task the caller expects; the export's own when `None`.
    pub task: Option<&'static TaskSpec>,
    /// The methods asked for; every method the task has when `None`.
    pub methods: Option<Vec<Method>>,
    pub out: PathBuf,
    pub batch_size: usize,
    /// SQuAD windows (the length is the export's).
    pub features: FeatureConfig,
    pub postprocess: PostprocessConfig,
}

/// `predict.json`: what the output folder holds the predictions of.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PredictRecord {
    pub export: PathBuf,
    pub input: PathBuf,
    pub task: String,
    pub methods: Vec<Method>,
    pub max_length: usize,
    pub doc_stride: usize,
    pub max_query_length: usize,
    pub postprocess: PostprocessConfig,
}

/// One method's files and (labelled input) metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodPrediction {
    pub method: Method,
    pub files: Vec<PathBuf>,
    pub metrics: Option<BTreeMap<String, f64>>,
}

/// What a prediction did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PredictOutcome {
    pub task: String,
    pub note: String,
    pub labelled: bool,
    pub methods: Vec<MethodPrediction>,
}

/// Loads the export, reads the input, runs BERT and the AdapterPooler over it in batches and
/// writes every method's predictions (and metrics) under `req.out`.
pub fn run_predict<B: crate::KernelBackend>(
    req: &PredictRequest,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<PredictOutcome> {
    let mut models = ExportedModels::<B>::load(ExportFiles::read_dir(&req.export)?, device)?;
    let task = models.task;
    if let Some(asked) = req.task.filter(|t| t.name != task.name) {
        return Err(Error::usage(format!(
            "--task {}: the export in {} is a {} model",
            asked.name,
            req.export.display(),
            task.name
        )));
    }
    let methods = choose_methods(task, req.methods.as_deref())?;
    let record = PredictRecord {
        export: absolute(&req.export),
        input: absolute(&req.input),
        task: task.name.to_string(),
        methods: methods.clone(),
        max_length: models.max_length(),
        doc_stride: req.features.doc_stride,
        max_query_length: req.features.max_query,
        postprocess: req.postprocess,
    };
    output::claim_folder(&req.out, &record)?;
    let features = FeatureConfig {
        max_len: models.max_length(),
        ..req.features
    };
    let max_len = models.max_length();
    let input = read_input(task, &req.input, &mut models.tokenizer, max_len, &features)?;
    progress.log(&input.note);
    let (bert, head) = model_outputs(&models, &input.split, req.batch_size, device, progress);
    let mut predictions = Vec::new();
    for method in methods {
        let out = method
            .outputs(&bert, &head)
            .expect("methods were checked against the task");
        predictions.push(write_method(req, task, &input, method, &out)?);
    }
    output::finish_folder(&req.out, &predictions)?;
    Ok(PredictOutcome {
        task: task.name.to_string(),
        note: input.note,
        labelled: input.labelled,
        methods: predictions,
    })
}

/// The methods asked for, or every one the task has; the maximum of two regression scores is
/// refused when asked for by name.
fn choose_methods(task: &TaskSpec, asked: Option<&[Method]>) -> Result<Vec<Method>> {
    let regression = task.kind == TaskKind::Regression;
    match asked {
        None => Ok(Method::ALL
            .into_iter()
            .filter(|&m| !(regression && m == Method::EnsembleMax))
            .collect()),
        Some(list) if regression && list.contains(&Method::EnsembleMax) => {
            Err(Error::usage(format!(
                "--method ensemble-max: {} is a regression, and the larger of two scores is no ensemble (use ensemble-mean)",
                task.name
            )))
        }
        Some(list) => Ok(list.to_vec()),
    }
}

fn absolute(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// BERT's and the AdapterPooler's outputs on every sample, padded as the run padded them: one
/// pass for both unless the head has weights per position (then BERT on the inputs' own lengths
/// and the head on the fixed length, as evaluation does).
fn model_outputs<B: crate::KernelBackend>(
    models: &ExportedModels<B>,
    split: &EvalSplit,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> (EvalOutputs, EvalOutputs) {
    let padding = Padding {
        pad_id: models.tokenizer.pad_id(),
        fixed: None,
        multiple: 1,
    };
    let samples = &split.samples;
    let Some(fixed) = models.fixed_length() else {
        let label = "BERT + BERTVision";
        let mut outs =
            batched_outputs(samples, batch_size, padding, device, progress, label, |i| {
                models.forward_outputs(i).into()
            });
        let head = outs.pop().expect("two outputs");
        return (outs.pop().expect("two outputs"), head);
    };
    let mut bert = batched_outputs(
        samples,
        batch_size,
        padding,
        device,
        progress,
        "BERT",
        |i| vec![models.bert.forward(i).1],
    );
    let padding = Padding {
        fixed: Some(fixed),
        ..padding
    };
    let label = "BERTVision";
    let mut head = batched_outputs(samples, batch_size, padding, device, progress, label, |i| {
        let [_, head] = models.forward_outputs(i);
        vec![head]
    });
    (bert.remove(0), head.remove(0))
}

/// One method's files, and its metrics when the input has labels.
fn write_method(
    req: &PredictRequest,
    task: &TaskSpec,
    input: &PredictInput,
    method: Method,
    out: &EvalOutputs,
) -> Result<MethodPrediction> {
    let dir = req.out.join(method.name());
    let mut scored = if input.labelled {
        Some(score(task, &input.split, out, &req.postprocess)?)
    } else {
        None
    };
    let files = match (out, &input.split.squad) {
        (EvalOutputs::Spans(spans), Some((_, examples, features))) => {
            // The scored predictions are the post-processed ones; unscored, post-process here.
            let predictions = match scored.as_mut().and_then(|s| s.squad_predictions.take()) {
                Some(p) => p,
                None => postprocess(examples, features, spans, &req.postprocess),
            };
            let nbest =
                crate::squad::postprocess::nbest(examples, features, spans, &req.postprocess);
            output::write_squad(&dir, &predictions, &nbest)?
        }
        _ => output::write_glue(&dir, task, input, out)?,
    };
    let metrics = scored.map(|s| s.metrics);
    Ok(MethodPrediction {
        method,
        files,
        metrics,
    })
}
