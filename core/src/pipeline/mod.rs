//! The BERTVision pipeline for one task: fine-tune BERT (keeping the checkpoint the head is
//! trained on, e.g. 1 epoch, and the final one), train the AdapterPooler on hidden states
//! streamed from the frozen checkpoint (nothing written to disk), evaluate BERT, BERTVision and
//! their ensembles, export the weights. Every phase is resumable: finished phases are skipped,
//! an interrupted one continues from its last checkpoint with the same data order and dropout.

pub mod batch;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod export;
pub mod results;
pub mod trainer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use self::batch::{Padding, make_batch};
use self::config::{EnsembleRule, RunConfig};
use self::data::{Sample, TaskData};
use self::evaluate::{EvalOutputs, ensemble, predict, score};
use self::export::{TaskHeadInfo, export_bert, export_head};
use self::trainer::{LoopSpec, LossCurve, train_loop};
use crate::bert::{BertConfig, BertInput};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::head::{AdapterPooler, AdapterPoolerConfig, HeadKind, HeadOutput};
use crate::models::ModelDir;
use crate::pretrained::Pretrained;
use crate::task_model::{BertTaskModel, Targets, head_loss};
use crate::tasks::{TaskKind, TaskSpec};
use crate::train::Checkpoint;

/// Progress reporting, implemented by the command line (indicatif) or by nothing.
pub trait Progress {
    fn start(&mut self, phase: &str, total: u64, unit: &str);
    fn set_position(&mut self, position: u64);
    fn inc(&mut self, n: u64);
    fn message(&mut self, message: &str);
    fn finish(&mut self);
    /// A line for the log (above any bar).
    fn log(&mut self, line: &str);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: &str, _: u64, _: &str) {}
    fn set_position(&mut self, _: u64) {}
    fn inc(&mut self, _: u64) {}
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
    fn log(&mut self, _: &str) {}
}

/// Method names used as keys of the results.
pub const BERT_EXTRACT: &str = "bert_extract";
pub const BERT_FINAL: &str = "bert_final";
pub const BERTVISION: &str = "bertvision";

/// method → split → metric → value.
pub type MetricTable = BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub metrics: MetricTable,
    pub finetune_loss: LossCurve,
    pub head_loss: LossCurve,
    /// Seconds per phase (fine-tuning, head training, evaluation, export) of the last process
    /// that ran it; a resumed phase counts only its own process's time.
    pub wall_seconds: BTreeMap<String, f64>,
    /// Each hidden-state layer's weight in the AdapterPooler, embeddings first
    /// ([`AdapterPooler::layer_share`]).
    #[serde(default)]
    pub head_layer_share: Vec<f64>,
    /// SQuAD splits: one row per question with every method's answer.
    #[serde(default)]
    pub squad_examples: BTreeMap<String, Vec<SquadRow>>,
}

/// One evaluated SQuAD question and what each method answered ("" = no answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SquadRow {
    pub id: String,
    pub question: String,
    /// Gold answers; empty for unanswerable questions.
    pub gold: Vec<String>,
    /// Length of the passage in white-space separated words.
    pub context_words: usize,
    pub answers: BTreeMap<String, String>,
}

/// Everything a seed needs.
pub struct RunContext<'a> {
    pub config: &'a RunConfig,
    pub task: &'static TaskSpec,
    pub model_dir: &'a ModelDir,
    pub data: &'a TaskData,
    pub pad_id: u32,
    /// Batch lengths are rounded up to a multiple of this (1 on CPU; larger on GPUs).
    pub pad_multiple: usize,
    pub out_dir: &'a Path,
}

impl RunContext<'_> {
    pub fn seed_dir(&self, seed: u64) -> PathBuf {
        self.out_dir.join(format!("seed-{seed}"))
    }

    pub fn head_config(&self, bert: &BertConfig) -> AdapterPoolerConfig {
        let h = &self.config.head;
        AdapterPoolerConfig {
            hidden_size: bert.hidden_size,
            num_states: bert.num_hidden_states(),
            adapter_size: h.adapter_size,
            kind: if self.task.kind == TaskKind::Span {
                HeadKind::Span
            } else {
                h.kind
            },
            num_outputs: self.task.num_outputs(),
            max_len: self.config.max_len,
            shared_adapter: h.shared_adapter,
            skip_last_layer: h.skip_last_layer,
            layer_mix: h.layer_mix,
        }
    }

    fn padding(&self) -> Padding {
        Padding {
            pad_id: self.pad_id,
            fixed: None,
            multiple: self.pad_multiple,
        }
    }

    /// Heads with position-specific weights see every input padded to the fixed length.
    fn head_padding(&self, head: &AdapterPoolerConfig) -> Padding {
        Padding {
            fixed: (head.kind == HeadKind::Flatten).then_some(self.config.max_len),
            ..self.padding()
        }
    }

    fn span(&self) -> bool {
        self.task.kind == TaskKind::Span
    }
}

fn gather<'s>(samples: &'s [Sample], indices: &[usize]) -> Vec<&'s Sample> {
    indices.iter().map(|&i| &samples[i]).collect()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(crate::error::parse_json(path, &text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(value)
            .expect("plain data")
            .as_bytes(),
    )
}

/// Writes a finished phase's module and loss curve, then drops its resumable checkpoint (only
/// now, so a kill in between still finds it).
fn save_phase<B: Backend, M: burn::module::Module<B>>(
    module: &M,
    curve: &LossCurve,
    module_path: &Path,
    loss_path: &Path,
    spec: &LoopSpec,
    seconds: f64,
    progress: &mut dyn Progress,
) -> Result<()> {
    write_atomic(module_path, &Checkpoint::module_bytes(module)?)?;
    write_json(loss_path, curve)?;
    spec.discard_checkpoint();
    progress.log(&format!(
        "{}: {} steps ({seconds:.1} s), loss {:.4} -> {:.4}",
        spec.name, curve.steps, curve.first_tenth, curve.last_tenth
    ));
    Ok(())
}

/// The task model with the pre-trained encoder and a fresh head (seeded by the backend).
fn fresh_task_model<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    device: &B::Device,
) -> Result<(BertTaskModel<B>, BertConfig)> {
    let pretrained = Pretrained::<B>::load(ctx.model_dir, device)?;
    let model = BertTaskModel::new(
        pretrained.bert.with_attention_kernel(ctx.config.attention),
        &pretrained.config,
        ctx.task.num_outputs(),
        ctx.span(),
        device,
    );
    Ok((model, pretrained.config))
}

/// Runs (or resumes) one seed: fine-tune, head, evaluate, export.
pub fn run_seed<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<SeedResult> {
    let dir = ctx.seed_dir(seed);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let result_path = dir.join("result.json");
    if let Some(done) = read_json::<SeedResult>(&result_path)? {
        progress.log(&format!(
            "seed {seed}: already complete ({})",
            result_path.display()
        ));
        return Ok(done);
    }
    let cfg = ctx.config;
    let mut wall = BTreeMap::new();

    // Phase 1: fine-tuning, keeping the extraction-point and final checkpoints.
    let extract_path = dir.join("bert-extract.bin");
    let final_path = dir.join("bert-final.bin");
    let finetune_loss_path = dir.join("finetune-loss.json");
    B::seed(device, seed);
    let (skeleton, bert_config) = fresh_task_model::<B>(ctx, device)?;
    let finetune_spec = LoopSpec {
        name: format!("seed {seed} fine-tune"),
        lr: cfg.finetune.lr,
        warmup_ratio: cfg.finetune.warmup_ratio,
        batch_size: cfg.finetune.batch_size,
        epochs: cfg.finetune.epochs,
        seed,
        optimizer: cfg.finetune.optimizer,
        checkpoint_every: cfg.checkpoint_every,
        checkpoint: dir.join("finetune.ckpt"),
        milestones: vec![],
    };
    let n_train = ctx.data.train.len();
    if n_train == 0 {
        return Err(Error::usage("no training examples"));
    }
    let per_epoch = finetune_spec.steps_per_epoch(n_train);
    let total = finetune_spec.total_steps(n_train);
    let extract_step = ((cfg.extract_at * per_epoch as f64).round() as usize).clamp(1, total);
    let finetune_spec = LoopSpec {
        milestones: vec![(extract_step, extract_path.clone())],
        ..finetune_spec
    };
    let finetune_loss = match (
        final_path.exists() && extract_path.exists(),
        read_json::<LossCurve>(&finetune_loss_path)?,
    ) {
        (true, Some(curve)) => curve,
        _ => {
            let started = Instant::now();
            let samples = &ctx.data.train;
            let (model, curve) = train_loop(
                skeleton.clone(),
                &finetune_spec,
                n_train,
                device,
                progress,
                |model: &BertTaskModel<B>, idx| {
                    let (input, targets) =
                        make_batch::<B>(&gather(samples, idx), ctx.padding(), device);
                    head_loss(model.forward(input).1, &targets)
                },
            )?;
            let seconds = started.elapsed().as_secs_f64();
            save_phase(
                &model,
                &curve,
                &final_path,
                &finetune_loss_path,
                &finetune_spec,
                seconds,
                progress,
            )?;
            wall.insert("finetune".to_string(), seconds);
            curve
        }
    };
    let inner_skeleton = skeleton.valid();
    let load_inner = |path: &Path| -> Result<BertTaskModel<B::InnerBackend>> {
        Checkpoint::load_module(
            inner_skeleton.clone(),
            &crate::error::read_file(path)?,
            device,
            path,
        )
    };
    let bert_extract = load_inner(&extract_path)?;
    // The encoder that feeds the head: the same checkpoint, in the precision asked for (bf16 on a
    // GPU halves its memory traffic); the head itself always sees f32.
    let precision = cfg.head.encoder_precision;
    let head_encoder = bert_extract
        .bert
        .clone()
        .with_float_dtype(precision.float_dtype());

    // Phase 2: the AdapterPooler on hidden states streamed from the frozen checkpoint.
    let head_config = ctx.head_config(&bert_config);
    let head_pad = ctx.head_padding(&head_config);
    let head_path = dir.join("head-final.bin");
    let head_loss_path = dir.join("head-loss.json");
    B::seed(device, seed.wrapping_add(1));
    let head_skeleton: AdapterPooler<B> = head_config.init(device);
    let (head, head_curve) = match (head_path.exists(), read_json::<LossCurve>(&head_loss_path)?) {
        (true, Some(curve)) => (
            Checkpoint::load_module(
                head_skeleton.valid(),
                &crate::error::read_file(&head_path)?,
                device,
                &head_path,
            )?,
            curve,
        ),
        _ => {
            let started = Instant::now();
            let spec = LoopSpec {
                name: format!("seed {seed} AdapterPooler"),
                lr: cfg.head.lr,
                warmup_ratio: cfg.head.warmup_ratio,
                batch_size: cfg.head.batch_size,
                epochs: cfg.head.epochs,
                seed: seed.wrapping_add(1),
                optimizer: cfg.head.optimizer,
                checkpoint_every: cfg.checkpoint_every,
                checkpoint: dir.join("head.ckpt"),
                milestones: vec![],
            };
            let samples = &ctx.data.train;
            let (head, curve) = train_loop(
                head_skeleton,
                &spec,
                n_train,
                device,
                progress,
                |head: &AdapterPooler<B>, idx| {
                    let batch = gather(samples, idx);
                    let (input, targets) = make_batch::<B::InnerBackend>(&batch, head_pad, device);
                    let mask = input.attention_mask.clone();
                    // Frozen BERT on the inner backend: no graph, no gradient, no dropout.
                    let states: Vec<Tensor<B, 3>> = head_encoder
                        .forward(input)
                        .hidden_states_f32()
                        .into_iter()
                        .map(Tensor::from_inner)
                        .collect();
                    let targets = Targets::<B>::from_inner(targets);
                    let out = head.forward_by(&states, Tensor::from_inner(mask), cfg.head.path);
                    head_loss(out, &targets)
                },
            )?;
            let seconds = started.elapsed().as_secs_f64();
            save_phase(
                &head,
                &curve,
                &head_path,
                &head_loss_path,
                &spec,
                seconds,
                progress,
            )?;
            wall.insert("head".to_string(), seconds);
            (head.valid(), curve)
        }
    };

    // Phase 3: evaluation of every method on every split.
    let started = Instant::now();
    let bert_final = load_inner(&final_path)?;
    let mut metrics: MetricTable = BTreeMap::new();
    let mut squad_examples: BTreeMap<String, Vec<SquadRow>> = BTreeMap::new();
    let pred_dir = dir.join("predictions");
    let bs = cfg.eval_batch_size;
    for split in &ctx.data.eval {
        let run = |label: String,
                   padding: Padding,
                   progress: &mut dyn Progress,
                   f: &mut dyn FnMut(
            BertInput<B::InnerBackend>,
        ) -> Vec<HeadOutput<B::InnerBackend>>| {
            predict::<B::InnerBackend>(&split.samples, bs, padding, device, progress, &label, f)
        };
        let final_out = run(
            format!("seed {seed} eval BERT final ({})", split.name),
            ctx.padding(),
            progress,
            &mut |input| vec![bert_final.forward(input).1],
        )
        .remove(0);
        // BERT at the extraction point and BERTVision read the same hidden states: one pass
        // serves both unless the head needs its own (fixed) padding or its encoder another
        // precision.
        let (extract_out, bv_out) = if head_pad == ctx.padding() && precision.is_f32() {
            let mut both = run(
                format!(
                    "seed {seed} eval BERT at {} epochs + BERTVision ({})",
                    cfg.extract_at, split.name
                ),
                ctx.padding(),
                progress,
                &mut |input| {
                    let mask = input.attention_mask.clone();
                    let (states, task_out) = bert_extract.forward(input);
                    vec![
                        task_out,
                        head.forward_by(&states.hidden_states, mask, cfg.head.path),
                    ]
                },
            );
            let bv = both.remove(1);
            (both.remove(0), bv)
        } else {
            let extract = run(
                format!(
                    "seed {seed} eval BERT at {} epochs ({})",
                    cfg.extract_at, split.name
                ),
                ctx.padding(),
                progress,
                &mut |input| vec![bert_extract.forward(input).1],
            )
            .remove(0);
            let bv = run(
                format!("seed {seed} eval BERTVision ({})", split.name),
                head_pad,
                progress,
                &mut |input| {
                    let mask = input.attention_mask.clone();
                    let states = head_encoder.forward(input).hidden_states_f32();
                    vec![head.forward_by(&states, mask, cfg.head.path)]
                },
            )
            .remove(0);
            (extract, bv)
        };
        let mut outputs: Vec<(String, EvalOutputs)> = vec![
            (BERT_EXTRACT.into(), extract_out.clone()),
            (BERT_FINAL.into(), final_out),
            (BERTVISION.into(), bv_out.clone()),
        ];
        for &rule in &cfg.ensemble {
            if let Some(e) = ensemble(&extract_out, &bv_out, rule) {
                outputs.push((ensemble_name(rule), e));
            }
        }
        let mut squad_answers: Vec<(String, std::collections::HashMap<String, String>)> =
            Vec::new();
        for (method, out) in &outputs {
            let evaluation = score(ctx.task, split, out, &cfg.squad_postprocess)?;
            if let Some(sp) = &evaluation.squad_predictions {
                squad_answers.push((method.clone(), sp.answer_map()));
            }
            let base = pred_dir.join(format!("{method}.{}", split.name));
            if let Some(sp) = &evaluation.squad_predictions {
                write_atomic(
                    &base.with_extension(format!("{}.predictions.json", split.name)),
                    sp.answers_json().as_bytes(),
                )?;
                write_atomic(
                    &base.with_extension(format!("{}.na_prob.json", split.name)),
                    sp.na_prob_json().as_bytes(),
                )?;
            } else {
                write_json(
                    &base.with_extension(format!("{}.json", split.name)),
                    &evaluation.predictions,
                )?;
            }
            metrics
                .entry(method.clone())
                .or_default()
                .insert(split.name.clone(), evaluation.metrics);
        }
        if let Some((_, examples, _)) = &split.squad {
            squad_examples.insert(split.name.clone(), squad_rows(examples, &squad_answers));
        }
    }
    wall.insert("evaluate".to_string(), started.elapsed().as_secs_f64());

    // Phase 4: export for the web app.
    let started = Instant::now();
    let export_dir = dir.join("export");
    let info = TaskHeadInfo {
        task: ctx.task.name.to_string(),
        span: ctx.span(),
        num_outputs: ctx.task.num_outputs(),
    };
    export_bert(
        &bert_extract,
        &bert_config,
        &info,
        &ctx.model_dir.tokenizer,
        &export_dir.join("bert"),
    )?;
    export_head(&head, &head_config, &export_dir)?;
    wall.insert("export".to_string(), started.elapsed().as_secs_f64());

    let result = SeedResult {
        seed,
        metrics,
        finetune_loss,
        head_loss: head_curve,
        wall_seconds: wall,
        head_layer_share: head.layer_share(&head_config),
        squad_examples,
    };
    write_json(&result_path, &result)?;
    Ok(result)
}

pub fn ensemble_name(rule: EnsembleRule) -> String {
    format!("ensemble_{}", rule.name())
}

/// Mean, sample standard deviation and count of one metric over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

/// method → split → metric → summary over seeds.
pub fn summarise(
    seeds: &[SeedResult],
) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, Summary>>> {
    let mut values: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for s in seeds {
        for (method, splits) in &s.metrics {
            for (split, ms) in splits {
                for (metric, v) in ms {
                    values
                        .entry((method.clone(), split.clone(), metric.clone()))
                        .or_default()
                        .push(*v);
                }
            }
        }
    }
    let mut out: BTreeMap<String, BTreeMap<String, BTreeMap<String, Summary>>> = BTreeMap::new();
    for ((method, split, metric), v) in values {
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        out.entry(method)
            .or_default()
            .entry(split)
            .or_default()
            .insert(metric, Summary { mean, sd, n });
    }
    out
}

/// One row per evaluated question: gold answers and each method's answer.
fn squad_rows(
    examples: &[crate::squad::SquadExample],
    answers: &[(String, std::collections::HashMap<String, String>)],
) -> Vec<SquadRow> {
    examples
        .iter()
        .map(|e| SquadRow {
            id: e.id.clone(),
            question: e.question.clone(),
            gold: e.answers.iter().map(|(text, _)| text.clone()).collect(),
            context_words: e.context.split_whitespace().count(),
            answers: answers
                .iter()
                .map(|(method, map)| (method.clone(), map.get(&e.id).cloned().unwrap_or_default()))
                .collect(),
        })
        .collect()
}
