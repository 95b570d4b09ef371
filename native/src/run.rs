//! `bertvision run`: the whole pipeline for one task and several seeds, with results.json,
//! report.md, predictions and exported weights under `--out`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bertvision_core::bert::BertConfig;
use bertvision_core::fsutil::{WorkLock, write_atomic};
use bertvision_core::head::{HeadKind, HeadPath, LayerMix};
use bertvision_core::models::ModelDir;
use bertvision_core::pipeline::config::{EnsembleRule, FinetuneConfig, HeadConfig, RunConfig};
use bertvision_core::pipeline::data::{DataSource, load_task_data};
use bertvision_core::pipeline::results::{ModelInfo, ParameterCounts, RESULTS_FORMAT, RunResults};
use bertvision_core::pipeline::{
    BERT_EXTRACT, BERT_FINAL, BERTVISION, Progress, RunContext, SeedResult, ensemble_name,
    run_seed, summarise,
};
use bertvision_core::squad::{FeatureConfig, PostprocessConfig};
use bertvision_core::tasks::{TaskKind, TaskSpec};
use bertvision_core::tokenize::BertTokenizer;
use bertvision_core::train::OptimizerConfig;
use clap::{Args, ValueEnum};

use crate::backend::{DeviceArg, DtypeArg};
use crate::progress::Bars;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HeadKindArg {
    MaskedMean,
    Flatten,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayerMixArg {
    None,
    Tenney,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HeadKernelArg {
    Plain,
    Fused,
}

/// Flags of `bertvision run`. Recipe values left out take the defaults for the model's size
/// (see `Recipe::for_model`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Task name from the registry (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI, SQuAD2).
    #[arg(long)]
    pub task: String,
    /// A known model (minilm-l6, splade-tiny) or a Hugging Face BERT directory.
    #[arg(long, default_value = "splade-tiny")]
    pub model: String,
    /// Comma-separated seeds; each is a full run (fine-tune, head, evaluation).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub seeds: Vec<u64>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Output folder (default: runs/<task>-<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// GLUE folder (with one sub-folder per task); default ../shared/data/glue when present.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// SQuAD training file.
    #[arg(long, requires = "eval_file", conflicts_with = "data")]
    pub train_file: Option<PathBuf>,
    /// SQuAD evaluation file.
    #[arg(long, requires = "train_file", conflicts_with = "data")]
    pub eval_file: Option<PathBuf>,
    /// One SQuAD file, split by article (the last --eval-articles articles are evaluated).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value_t = 6)]
    pub eval_articles: usize,

    /// Fine-tuning learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Fine-tuning length in epochs (fractions allowed).
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Maximum tokens per sequence (default: the task's).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// The fine-tuning checkpoint (in epochs) whose hidden states train the head.
    #[arg(long, default_value_t = 1.0)]
    pub extract_at: f64,

    #[arg(long)]
    pub head_lr: Option<f64>,
    #[arg(long)]
    pub head_batch_size: Option<usize>,
    #[arg(long)]
    pub head_epochs: Option<f64>,
    /// Adapter width A.
    #[arg(long)]
    pub adapter_size: Option<usize>,
    /// GLUE head: masked mean over real tokens, or the original flatten over the padded sequence.
    #[arg(long, value_enum, default_value = "masked-mean")]
    pub head_kind: HeadKindArg,
    /// One adapter per layer instead of one shared adapter.
    #[arg(long)]
    pub unshared_adapters: bool,
    /// Concatenate the last layer's hidden state to each token's adapter features.
    #[arg(long)]
    pub skip_last_layer: bool,
    #[arg(long, value_enum, default_value = "none")]
    pub layer_mix: LayerMixArg,
    /// The float type of the frozen encoder that feeds the head (training and prediction):
    /// bf16/f16 on GPUs (and the Flex CPU backend); BERT itself always trains in f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub extract_dtype: DtypeArg,
    /// The head as plain ops, or as the fused CubeCL kernel of `shaders/` (projection + GELU +
    /// head in one pass; on the CPU backends its plain-Burn reference). Same numbers up to the
    /// order of sums.
    #[arg(long, value_enum, default_value = "plain")]
    pub head_kernel: HeadKernelArg,
    /// The encoder's attention where no gradient flows (evaluation, the frozen encoder feeding
    /// the head); fine-tuning always uses the explicit ops, which carry attention dropout.
    /// Default: fused on `--device cpu`, explicit elsewhere.
    #[arg(long, value_enum)]
    pub attention: Option<crate::backend::AttentionArg>,

    /// Ensemble rules of BERT and BERTVision probabilities.
    #[arg(long, value_delimiter = ',', default_value = "max,mean")]
    pub ensemble: Vec<String>,
    #[arg(long, default_value_t = 64)]
    pub eval_batch_size: usize,
    /// Round batch lengths up to a multiple of this (default 1 on CPU, 32 on GPUs, where every
    /// new shape costs a kernel compilation). Padding is masked everywhere (attention, pooling,
    /// span logits), so it changes results only by float rounding.
    #[arg(long)]
    pub pad_multiple: Option<usize>,
    /// Optimizer steps between resumable checkpoints.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Train on the first N examples only (a slice, for quick runs).
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Evaluate on the first N examples only.
    #[arg(long)]
    pub limit_eval: Option<usize>,
    #[arg(long, default_value_t = 128)]
    pub doc_stride: usize,
    #[arg(long, default_value_t = 64)]
    pub max_query_length: usize,
    #[arg(long, default_value_t = 20)]
    pub n_best: usize,
    #[arg(long, default_value_t = 30)]
    pub max_answer_length: usize,
    /// Predict "no answer" when null score − best span score exceeds this.
    #[arg(long, default_value_t = 0.0)]
    pub null_threshold: f64,
}

/// Default recipe by model size, chosen by measurement (README "Default recipes").
struct Recipe {
    lr: f64,
    batch_size: usize,
    epochs: f64,
    head_lr: f64,
    head_batch_size: usize,
    head_epochs: f64,
    adapter_size: usize,
}

impl Recipe {
    fn for_model(config: &BertConfig, task: &TaskSpec) -> Self {
        let small = config.hidden_size <= 384;
        let span = task.kind == TaskKind::Span;
        Recipe {
            // Measured on an SST-2 slice (README): tiny models need far larger steps than
            // BERT-base's 2e-5.
            lr: if config.hidden_size <= 128 {
                1e-3
            } else if small {
                1e-4
            } else if span {
                3e-5
            } else {
                2e-5
            },
            batch_size: if span { 16 } else { 32 },
            epochs: 2.0,
            head_lr: 1e-3,
            head_batch_size: if span { 16 } else { 32 },
            head_epochs: 1.0,
            adapter_size: if small { 32 } else { 64 },
        }
    }
}

fn parse_rules(rules: &[String]) -> Result<Vec<EnsembleRule>> {
    rules
        .iter()
        .map(|r| match r.as_str() {
            "max" => Ok(EnsembleRule::Max),
            "mean" => Ok(EnsembleRule::Mean),
            other => bail!("--ensemble {other}: expected max or mean"),
        })
        .collect()
}

fn default_glue_dir() -> Option<PathBuf> {
    [
        PathBuf::from("../shared/data/glue"),
        PathBuf::from("shared/data/glue"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

/// Builds the full configuration from the flags and the model's size.
fn configure(
    args: &RunArgs,
    task: &'static TaskSpec,
    model_spec: &str,
    bert: &BertConfig,
) -> Result<RunConfig> {
    let recipe = Recipe::for_model(bert, task);
    let positive = |name: &str, v: f64| {
        if v > 0.0 && v.is_finite() {
            Ok(())
        } else {
            bail!("--{name} must be positive, got {v}")
        }
    };
    let max_len = args.max_length.unwrap_or(task.max_len);
    if max_len > bert.max_position_embeddings {
        bail!(
            "--max-length {max_len} exceeds the model's {} positions",
            bert.max_position_embeddings
        );
    }
    if args.seeds.is_empty() {
        bail!("--seeds: give at least one seed");
    }
    if let Some(seed) = args
        .seeds
        .iter()
        .enumerate()
        .find_map(|(i, s)| args.seeds[..i].contains(s).then_some(s))
    {
        bail!("--seeds: seed {seed} is given twice");
    }
    let config = RunConfig {
        task: task.name.to_string(),
        model: model_spec.to_string(),
        seeds: args.seeds.clone(),
        max_len,
        finetune: FinetuneConfig {
            lr: args.lr.unwrap_or(recipe.lr),
            batch_size: args.batch_size.unwrap_or(recipe.batch_size),
            epochs: args.epochs.unwrap_or(recipe.epochs),
            warmup_ratio: args.warmup_ratio,
            optimizer: OptimizerConfig {
                weight_decay: args.weight_decay,
                max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
                epsilon: 1e-8,
            },
        },
        extract_at: args.extract_at,
        head: HeadConfig {
            lr: args.head_lr.unwrap_or(recipe.head_lr),
            batch_size: args.head_batch_size.unwrap_or(recipe.head_batch_size),
            epochs: args.head_epochs.unwrap_or(recipe.head_epochs),
            warmup_ratio: args.warmup_ratio,
            adapter_size: args.adapter_size.unwrap_or(recipe.adapter_size),
            kind: match args.head_kind {
                HeadKindArg::MaskedMean => HeadKind::MaskedMean,
                HeadKindArg::Flatten => HeadKind::Flatten,
            },
            shared_adapter: !args.unshared_adapters,
            skip_last_layer: args.skip_last_layer,
            layer_mix: match args.layer_mix {
                LayerMixArg::None => LayerMix::None,
                LayerMixArg::Tenney => LayerMix::Tenney,
            },
            optimizer: OptimizerConfig {
                weight_decay: args.weight_decay,
                max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
                epsilon: 1e-8,
            },
            encoder_precision: args.extract_dtype.precision(),
            path: match args.head_kernel {
                HeadKernelArg::Plain => HeadPath::Plain,
                HeadKernelArg::Fused => HeadPath::Fused,
            },
        },
        ensemble: parse_rules(&args.ensemble)?,
        eval_batch_size: args.eval_batch_size,
        checkpoint_every: args.checkpoint_every,
        limit_train: args.limit_train,
        limit_eval: args.limit_eval,
        attention: args
            .attention
            .unwrap_or(crate::backend::AttentionArg::default_for(args.device))
            .kernel(),
        eval_articles: args.eval_articles,
        squad_features: FeatureConfig {
            max_len,
            doc_stride: args.doc_stride,
            max_query: args.max_query_length,
        },
        squad_postprocess: PostprocessConfig {
            n_best: args.n_best,
            max_answer_len: args.max_answer_length,
            null_threshold: args.null_threshold,
        },
    };
    positive("lr", config.finetune.lr)?;
    positive("epochs", config.finetune.epochs)?;
    positive("head-lr", config.head.lr)?;
    positive("head-epochs", config.head.epochs)?;
    positive("extract-at", config.extract_at)?;
    if config.extract_at > config.finetune.epochs {
        bail!(
            "--extract-at {} is past the end of fine-tuning (--epochs {})",
            config.extract_at,
            config.finetune.epochs
        );
    }
    for (name, v) in [
        ("batch-size", config.finetune.batch_size),
        ("head-batch-size", config.head.batch_size),
        ("adapter-size", config.head.adapter_size),
        ("eval-batch-size", config.eval_batch_size),
        ("checkpoint-every", config.checkpoint_every),
    ] {
        if v == 0 {
            bail!("--{name} must be at least 1");
        }
    }
    if !(0.0..1.0).contains(&args.warmup_ratio) {
        bail!("--warmup-ratio must be in [0, 1)");
    }
    Ok(config)
}

fn data_source(args: &RunArgs, task: &TaskSpec) -> Result<DataSource> {
    if task.kind == TaskKind::Span {
        if let (Some(train), Some(eval)) = (&args.train_file, &args.eval_file) {
            return Ok(DataSource::SquadFiles {
                train: train.clone(),
                eval: eval.clone(),
            });
        }
        if let Some(data) = &args.data {
            return Ok(DataSource::SquadSplit {
                data: data.clone(),
                eval_articles: args.eval_articles,
            });
        }
        let default = PathBuf::from("../shared/data/squad2/dev-v2.0-28-articles.json");
        if default.is_file() {
            return Ok(DataSource::SquadSplit {
                data: default,
                eval_articles: args.eval_articles,
            });
        }
        bail!(
            "{} needs --train-file and --eval-file, or --data (one file split by article)",
            task.name
        );
    }
    if args.data.is_some() || args.train_file.is_some() {
        bail!(
            "{} is a GLUE task: give --data-dir, not --data/--train-file",
            task.name
        );
    }
    let dir = args
        .data_dir
        .clone()
        .or_else(default_glue_dir)
        .context("give --data-dir <GLUE folder> (no ../shared/data/glue here)")?;
    Ok(DataSource::Glue { dir })
}

/// The checkpoint names in the report, e.g. "BERT-1e".
fn epochs_label(e: f64) -> String {
    if e.fract() == 0.0 {
        format!("{e:.0}e")
    } else {
        format!("{e}e")
    }
}

pub fn run<B: bertvision_core::TrainBackend>(
    args: &RunArgs,
    model_dir: &Path,
    device: B::Device,
) -> Result<()> {
    let device_name = args.device.label();
    let task = bertvision_core::tasks::task(&args.task)?;
    let dir = ModelDir::open(model_dir)?;
    let bert_config = BertConfig::from_file(&dir.config)?;
    let config = configure(args, task, &args.model, &bert_config)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{}-{}",
            task.name,
            args.model.replace(['/', '\\'], "_")
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // A run folder belongs to one configuration: resuming with other flags would mix results.
    let config_path = out.join("config.json");
    let config_json = serde_json::to_string_pretty(&config)?;
    match std::fs::read_to_string(&config_path) {
        Ok(existing) if existing != config_json => bail!(
            "{} holds a run with a different configuration; use another --out or delete it",
            out.display()
        ),
        Ok(_) => eprintln!("resuming the run in {}", out.display()),
        Err(_) => write_atomic(&config_path, config_json.as_bytes())?,
    }

    let mut bars = Bars::new();
    let started = Instant::now();
    let mut tokenizer = BertTokenizer::from_file(&dir.tokenizer)?;
    let source = data_source(args, task)?;
    let data = load_task_data(
        task,
        &source,
        &mut tokenizer,
        config.max_len,
        &config.squad_features,
        config.limit_train,
        config.limit_eval,
    )?;
    for note in &data.notes {
        bars.log(note);
    }
    // The exact SQuAD questions evaluated, so the official evaluator can be run on our files.
    for split in &data.eval {
        if let Some((dataset, _, _)) = &split.squad {
            write_atomic(
                &out.join(format!("{}.squad.json", split.name)),
                dataset.to_json().as_bytes(),
            )?;
        }
    }
    let data_seconds = started.elapsed().as_secs_f64();
    let ctx = RunContext {
        config: &config,
        task,
        model_dir: &dir,
        data: &data,
        pad_id: tokenizer.pad_id(),
        pad_multiple: args
            .pad_multiple
            .unwrap_or(if args.device.is_host() { 1 } else { 32 }),
        out_dir: &out,
    };
    let head_config = ctx.head_config(&bert_config);
    let bert_params = bert_config.num_params(true);
    let head_params = head_config.num_params();
    bars.log(&format!(
        "{}: BERT {} parameters, AdapterPooler {} ({:.3}% of BERT); {} training examples on {device_name}",
        task.name,
        bert_params,
        head_params,
        100.0 * head_params as f64 / bert_params as f64,
        data.train.len()
    ));

    // Seeds are claimed through a lock in their folder, so the same command started several
    // times (on one GPU, or on several sharing a disk) splits the seeds between processes. A seed
    // another live process holds is run (that is, read back or resumed) once it lets go.
    let mut done: BTreeMap<u64, SeedResult> = BTreeMap::new();
    let mut held_elsewhere = Vec::new();
    for &seed in &config.seeds {
        match WorkLock::try_acquire(&ctx.seed_dir(seed))? {
            Some(_claim) => {
                done.insert(seed, run_seed::<B>(&ctx, seed, &device, &mut bars)?);
            }
            None => {
                bars.log(&format!("seed {seed}: another process is running it"));
                held_elsewhere.push(seed);
            }
        }
    }
    for seed in held_elsewhere {
        let _claim = WorkLock::acquire(&ctx.seed_dir(seed))?;
        done.insert(seed, run_seed::<B>(&ctx, seed, &device, &mut bars)?);
    }
    let seeds: Vec<SeedResult> = config
        .seeds
        .iter()
        .map(|s| done.remove(s).expect("every seed was run"))
        .collect();
    let summary = summarise(&seeds);
    let mut wall: BTreeMap<String, f64> = BTreeMap::new();
    wall.insert("data".into(), data_seconds);
    for s in &seeds {
        for (k, v) in &s.wall_seconds {
            *wall.entry(k.clone()).or_default() += v;
        }
    }
    wall.insert("total_this_process".into(), started.elapsed().as_secs_f64());
    let methods: BTreeMap<String, String> = [
        (
            BERT_EXTRACT.to_string(),
            format!(
                "BERT fine-tuned {} (the checkpoint the head reads)",
                epochs_label(config.extract_at)
            ),
        ),
        (
            BERT_FINAL.to_string(),
            format!("BERT fine-tuned {}", epochs_label(config.finetune.epochs)),
        ),
        (
            BERTVISION.to_string(),
            format!(
                "AdapterPooler on the hidden states of BERT-{}",
                epochs_label(config.extract_at)
            ),
        ),
        (
            ensemble_name(EnsembleRule::Max),
            "element-wise max of the BERT-extract and BERTVision probabilities (the paper's rule)"
                .to_string(),
        ),
        (
            ensemble_name(EnsembleRule::Mean),
            "mean of the BERT-extract and BERTVision probabilities".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let results = RunResults {
        format: RESULTS_FORMAT.to_string(),
        task: task.name.to_string(),
        model: ModelInfo {
            spec: args.model.clone(),
            dir: dir.root.display().to_string(),
            config: bert_config.clone(),
        },
        device: device_name.to_string(),
        config: config.clone(),
        methods,
        parameters: ParameterCounts {
            bert: bert_params,
            head: head_params,
            head_share_of_bert: head_params as f64 / bert_params as f64,
        },
        data_notes: data.notes.clone(),
        seeds: seeds.clone(),
        summary: summary.clone(),
        wall_seconds: wall.clone(),
        versions: [
            (
                "bertvision".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            ("burn".to_string(), "0.21.0".to_string()),
        ]
        .into_iter()
        .collect(),
    };
    write_atomic(
        &out.join("results.json"),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    let report = report_markdown(
        task,
        &config,
        &summary,
        bert_params,
        head_params,
        &wall,
        &seeds,
    );
    write_atomic(&out.join("report.md"), report.as_bytes())?;
    println!("{report}");
    eprintln!("results: {}", out.join("results.json").display());
    Ok(())
}

type Summ =
    BTreeMap<String, BTreeMap<String, BTreeMap<String, bertvision_core::pipeline::Summary>>>;

fn report_markdown(
    task: &TaskSpec,
    config: &RunConfig,
    summary: &Summ,
    bert_params: usize,
    head_params: usize,
    wall: &BTreeMap<String, f64>,
    seeds: &[SeedResult],
) -> String {
    let mut md = format!(
        "# BERTVision on {} with {}\n\n{} seed(s): {:?}. Fine-tuning {} epochs (lr {:.1e}, batch {}), head on BERT-{} hidden states (lr {:.1e}, {} epochs, A = {}, {:?}).\n\n",
        task.name,
        config.model,
        seeds.len(),
        config.seeds,
        config.finetune.epochs,
        config.finetune.lr,
        config.finetune.batch_size,
        epochs_label(config.extract_at),
        config.head.lr,
        config.head.epochs,
        config.head.adapter_size,
        config.head.kind
    );
    let methods = [
        (
            BERT_EXTRACT.to_string(),
            format!("BERT-{}", epochs_label(config.extract_at)),
            bert_params,
        ),
        (
            BERT_FINAL.to_string(),
            format!("BERT-{}", epochs_label(config.finetune.epochs)),
            bert_params,
        ),
        (
            BERTVISION.to_string(),
            format!("BERTVision-{}", epochs_label(config.extract_at)),
            head_params,
        ),
        (
            ensemble_name(EnsembleRule::Max),
            "Ensemble (max)".to_string(),
            bert_params + head_params,
        ),
        (
            ensemble_name(EnsembleRule::Mean),
            "Ensemble (mean)".to_string(),
            bert_params + head_params,
        ),
    ];
    let splits: Vec<&String> = summary
        .get(BERTVISION)
        .map(|s| s.keys().collect())
        .unwrap_or_default();
    let metric_names: Vec<&str> = if task.kind == TaskKind::Span {
        vec!["exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"]
    } else {
        task.metrics.iter().map(|m| m.name()).collect()
    };
    for split in splits {
        md.push_str(&format!("## {split}\n\n| method | trainable params |"));
        for m in &metric_names {
            md.push_str(&format!(" {m} |"));
        }
        md.push_str("\n|---|---:|");
        md.push_str(&"---:|".repeat(metric_names.len()));
        md.push('\n');
        for (key, label, params) in &methods {
            let Some(ms) = summary.get(key).and_then(|s| s.get(split)) else {
                continue;
            };
            md.push_str(&format!("| {label} | {params} |"));
            for m in &metric_names {
                match ms.get(*m) {
                    Some(s) if seeds.len() > 1 => {
                        md.push_str(&format!(" {:.4} ± {:.4} |", s.mean, s.sd))
                    }
                    Some(s) => md.push_str(&format!(" {:.4} |", s.mean)),
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "AdapterPooler: {head_params} parameters = {:.3}% of BERT's {bert_params}.\n\nWall time (s): {}\n",
        100.0 * head_params as f64 / bert_params as f64,
        wall.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", ")
    ));
    md
}
