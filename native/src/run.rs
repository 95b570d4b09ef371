//! `bertvision run`: flags to a `RunConfig` and a data source, then `pipeline::run_task`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertvision_core::bert::{BertConfig, EncoderDtype, EncoderKernels};
use bertvision_core::data_roots::{DataRoots, SquadFound};
use bertvision_core::head::{HeadKind, HeadPath, LayerMix};
use bertvision_core::models::ModelDir;
use bertvision_core::pipeline::config::{EnsembleRule, RunConfig};
use bertvision_core::pipeline::data::{DataRecord, DataSource};
use bertvision_core::pipeline::{RunRequest, run_task};
use bertvision_core::tasks::{TaskKind, TaskSpec};
use bertvision_core::train::DeviceSet;
use clap::Args;

use crate::backend::DeviceArg;
use crate::progress::Bars;

/// Flags of `bertvision run`. Recipe values left out take the defaults for the model's size
/// (`pipeline::recipe::Recipe::for_model`; README, "Default recipes").
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Task name from the registry: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI, SQuAD2.
    #[arg(long, required_unless_present = "config")]
    pub task: Option<String>,
    /// Run exactly the configuration of this config.json (a run's, or a search trial's, as
    /// `search --best` prints): every recipe value comes from the file, so only --seeds, --out,
    /// --device, --pad-multiple and the data files may be given; without data files, the
    /// data.json beside it says where the data is.
    #[arg(long, conflicts_with_all = RECIPE_FLAGS)]
    pub config: Option<PathBuf>,
    /// A known model (minilm-l6, splade-tiny; fetched on first use) or a Hugging Face BERT
    /// directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, default_value = "splade-tiny")]
    pub model: String,
    /// Comma-separated seeds; each is a full run (fine-tune, head, evaluation). Default: 1 (with
    /// --config, the file's).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// The backend: cpu (Flex with this project's kernels), ndarray, cuda, wgpu (the last two
    /// need a build with `--features cuda` / `wgpu`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Fine-tune BERT and train the heads data-parallel over several devices: `cuda:0,1,2,3`,
    /// or `cpu:2` (two peers on the CPU). Each peer takes its shard of every batch; the batches, the schedule and the
    /// results are those of one device, so a run resumes on any number of devices. Sets
    /// --device's backend.
    #[arg(long, conflicts_with = "device")]
    pub devices: Option<crate::backend::DevicesArg>,
    #[command(flatten)]
    pub cluster: crate::backend::ClusterArgs,
    /// Output folder (default: runs/<task>-<model>). A folder belongs to one configuration
    /// (seeds can be added): the same command again resumes it.
    #[arg(long)]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub slice: SliceArgs,
    #[command(flatten)]
    pub finetune: FinetuneArgs,
    #[command(flatten)]
    pub head: HeadArgs,
    #[command(flatten)]
    pub evaluation: EvalArgs,
}

/// The flags that set a recipe value, which `--config` takes from its file instead.
const RECIPE_FLAGS: &[&str] = &[
    "task",
    "model",
    "eval_articles",
    "limit_train",
    "limit_eval",
    "max_length",
    "doc_stride",
    "max_query_length",
    "lr",
    "batch_size",
    "epochs",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "extract_at",
    "eval_every_epochs",
    "train_fraction",
    "validation_fraction",
    "select_best",
    "early_stop_patience",
    "precision",
    "checkpoint_every",
    "head_lr",
    "head_batch_size",
    "head_epochs",
    "adapter_size",
    "head_kind",
    "unshared_adapters",
    "skip_last_layer",
    "layer_mix",
    "encoder_dtype",
    "head_kernel",
    "encoder_kernels",
    "head_train_fraction",
    "ensemble",
    "eval_batch_size",
    "n_best",
    "max_answer_length",
    "null_threshold",
];

/// Where the task's data is.
#[derive(Debug, Args)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// GLUE folder (one sub-folder per task); default: the first of $BERTVISION_DATA/glue,
    /// the cache's (`fetch-data`), ../shared/data/glue that holds the task.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// SQuAD training file.
    #[arg(long, requires = "eval_file", conflicts_with = "data")]
    pub train_file: Option<PathBuf>,
    /// SQuAD evaluation file.
    #[arg(long, requires = "train_file", conflicts_with = "data")]
    pub eval_file: Option<PathBuf>,
    /// One SQuAD file, split by article (the last --eval-articles articles are evaluated);
    /// default: the official train/dev pair, else the shared 28-article file, in the first data
    /// root holding either ($BERTVISION_DATA, the cache, ../shared/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Articles held out for evaluation when --data is split.
    #[arg(long, default_value_t = 6)]
    pub eval_articles: usize,
}

impl DataArgs {
    /// Whether any flag names data (the folder or a file).
    pub fn given(&self) -> bool {
        self.data_dir.is_some() || self.data.is_some() || self.train_file.is_some()
    }

    /// Each named folder and file exists, and a split keeps articles to evaluate.
    pub fn validate(&self) -> Result<()> {
        use bertvision_core::checks::{at_least, existing};
        at_least("--eval-articles", self.eval_articles, 1)?;
        if let Some(dir) = &self.data_dir {
            existing("--data-dir", dir, true)?;
        }
        let files = [
            ("--train-file", &self.train_file),
            ("--eval-file", &self.eval_file),
            ("--data", &self.data),
        ];
        for (flag, file) in files {
            if let Some(file) = file {
                existing(flag, file, false)?;
            }
        }
        Ok(())
    }
}

/// Which examples a run reads and how long its sequences are (recipe values: `train-head`
/// reads the run's).
#[derive(Debug, Args)]
#[command(next_help_heading = "Data")]
pub struct SliceArgs {
    /// Train on the first N examples only (a slice, for quick runs).
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Evaluate on the first N examples only.
    #[arg(long)]
    pub limit_eval: Option<usize>,
    /// Maximum tokens per sequence (default: the task's, e.g. 128 for GLUE, 384 for SQuAD).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// SQuAD: tokens between the starts of a long passage's windows.
    #[arg(long, default_value_t = 128)]
    pub doc_stride: usize,
    /// SQuAD: questions are cut to this many tokens.
    #[arg(long, default_value_t = 64)]
    pub max_query_length: usize,
}

/// Fine-tuning BERT.
#[derive(Debug, Args)]
#[command(next_help_heading = "Fine-tuning")]
pub struct FinetuneArgs {
    /// Fine-tuning learning rate (default by model width: 1e-3 up to hidden 128, 1e-4 up to
    /// 384, else 2e-5, 3e-5 for SQuAD).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Sequences per fine-tuning step (default 32, 16 for SQuAD).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Fine-tuning length in epochs, fractions allowed (default 2).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Share of the steps spent warming the learning rate up linearly (then linear decay); also
    /// the head's.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// AdamW weight decay (none on biases and LayerNorm); also the head's.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables); also the head's.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// The fine-tuning checkpoints (in epochs, a list allowed: `0.1,0.2,0.5,1`) whose hidden
    /// states train heads; one fine-tuning keeps them all. BERT is evaluated at each, a head
    /// trained on each, the ensembles scored at each (`bert@<p>`, `bertvision@<p>`, …); the
    /// last point is the run's `bert_extract` and `bertvision`.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub extract_at: Vec<f64>,
    /// Also score BERT on the evaluation splits every this many epochs of fine-tuning
    /// (`bert@<p>`), keeping no checkpoint there: the dense BERT curve.
    #[arg(long)]
    pub eval_every_epochs: Option<f64>,
    /// Fine-tune and train the heads on this share of the training examples: a random sample
    /// without replacement, seeded by the seed (the original's --shard).
    #[arg(long)]
    pub train_fraction: Option<f64>,
    /// Hold this share of the training data out of fine-tuning and head training as the
    /// `validation` split, scored beside dev (stratified by label, by article for SQuAD; the
    /// same examples for every seed). `search` and `--select-best` read it, never dev.
    #[arg(long)]
    pub validation_fraction: Option<f64>,
    /// Keep as bert_final the checkpoint that scores best on this split (only `validation`,
    /// which needs --validation-fraction) among BERT's points (--eval-every-epochs, the
    /// extraction points, the end); the end-of-training model is kept as bert-end.bin.
    #[arg(long)]
    pub select_best: Option<String>,
    /// With --select-best: stop fine-tuning after N evaluated points without a better score
    /// (never before the last --extract-at point).
    #[arg(long)]
    pub early_stop_patience: Option<usize>,
    /// The float type of fine-tuning and head training: f32 (default), or mixed precision,
    /// bf16 or f16 (f32 weights and AdamW state; the linear layers, attention and the adapter
    /// multiply in bf16/f16, LayerNorm, GELU, softmax and the loss stay f32; f16 with dynamic
    /// loss scaling). For GPUs; on `--device cpu` it runs (slower than f32: the CPU kernels
    /// are f32-only), to check it.
    #[arg(long, value_enum)]
    pub precision: Option<EncoderDtype>,
    /// Optimizer steps between resumable checkpoints.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Round batch lengths up to a multiple of this (default 1 on CPU, 32 on GPUs, where every
    /// new shape costs a kernel compilation). Padding is masked everywhere (attention, pooling,
    /// span logits), so it changes results only by float rounding.
    #[arg(long)]
    pub pad_multiple: Option<usize>,
}

/// The AdapterPooler and the frozen encoder that feeds it (`run`, and `train-head`, where a
/// flag left out keeps the run's setting).
#[derive(Debug, Args)]
#[command(next_help_heading = "AdapterPooler")]
pub struct HeadArgs {
    /// Head learning rate (default 1e-3).
    #[arg(long)]
    pub head_lr: Option<f64>,
    /// Sequences per head step (default 32, 16 for SQuAD).
    #[arg(long)]
    pub head_batch_size: Option<usize>,
    /// Head training length in epochs (default 1).
    #[arg(long)]
    pub head_epochs: Option<f64>,
    /// Adapter width A (default 32 up to hidden 384, else 64).
    #[arg(long)]
    pub adapter_size: Option<usize>,
    /// GLUE head: masked-mean over real tokens (default), or the original flatten over the
    /// padded sequence.
    #[arg(long, value_enum)]
    pub head_kind: Option<HeadKind>,
    /// One adapter per layer instead of one shared adapter.
    #[arg(long)]
    pub unshared_adapters: bool,
    /// Concatenate the last layer's hidden state to each token's adapter features.
    #[arg(long)]
    pub skip_last_layer: bool,
    /// How the layers are combined before the adapter: none (default: each layer adapted, the
    /// paper's) or Tenney et al.'s scalar mix.
    #[arg(long, value_enum)]
    pub layer_mix: Option<LayerMix>,
    /// The frozen encoder's float type (it feeds the head in training and prediction): f32
    /// (default), or bf16/f16 on GPUs and `--device cpu`. BERT's own predictions are f32;
    /// fine-tuning's float type is --precision.
    #[arg(long, value_enum, alias = "extract-dtype")]
    pub encoder_dtype: Option<EncoderDtype>,
    /// The head as plain ops (default), or as the fused CubeCL kernel (projection + GELU + head
    /// in one pass; on the CPU the CPU kernels, recomputing the activations in the backward).
    /// Same numbers up to the order of sums.
    #[arg(long, value_enum)]
    pub head_kernel: Option<HeadPath>,
    /// Whose ops the encoder runs where no gradient flows (evaluation, the frozen encoder
    /// feeding the head): Burn's tensor ops, or the backend's own kernels (CPU: this project's
    /// attention, linear and GELU kernels; CubeCL: this project's attention kernel, online
    /// softmax over the key padding, no per-head mask or score buffers). Fine-tuning
    /// always runs the backend's training ops. Default: native on `--device cpu`, burn elsewhere.
    #[arg(long, value_enum, alias = "attention")]
    pub encoder_kernels: Option<EncoderKernels>,
    /// Also train heads on these shares of the training data (a seeded random sample without
    /// replacement, nested: 0.1 inside 0.3) at every extraction point, BERT having seen all of
    /// it: the less-data curve (`bertvision@<p>/<f>`). The head on all the data is always trained.
    #[arg(long, value_delimiter = ',')]
    pub head_train_fraction: Vec<f64>,
}

impl HeadArgs {
    /// The flags given, over `config`'s values (the recipe's for `run`, the run's for
    /// `train-head`).
    pub fn apply(&self, config: &mut RunConfig) {
        let h = &mut config.head;
        h.lr = self.head_lr.unwrap_or(h.lr);
        h.batch_size = self.head_batch_size.unwrap_or(h.batch_size);
        h.epochs = self.head_epochs.unwrap_or(h.epochs);
        h.adapter_size = self.adapter_size.unwrap_or(h.adapter_size);
        h.kind = self.head_kind.unwrap_or(h.kind);
        h.shared_adapter &= !self.unshared_adapters;
        h.skip_last_layer |= self.skip_last_layer;
        h.layer_mix = self.layer_mix.unwrap_or(h.layer_mix);
        h.encoder_dtype = self.encoder_dtype.unwrap_or(h.encoder_dtype);
        h.path = self.head_kernel.unwrap_or(h.path);
        if !self.head_train_fraction.is_empty() {
            let mut fractions = self.head_train_fraction.clone();
            fractions.sort_by(f64::total_cmp);
            fractions.retain(|&f| f != 1.0);
            h.train_fractions = fractions;
        }
        config.encoder_kernels = self.encoder_kernels.unwrap_or(config.encoder_kernels);
    }
}

/// Evaluation and the SQuAD decisions.
#[derive(Debug, Args)]
#[command(next_help_heading = "Evaluation")]
pub struct EvalArgs {
    /// Ensemble rules of BERT and BERTVision probabilities: max (the paper's), mean.
    #[arg(long, value_delimiter = ',', default_value = "max,mean")]
    pub ensemble: Vec<String>,
    /// Sequences per evaluation batch.
    #[arg(long, default_value_t = 64)]
    pub eval_batch_size: usize,
    /// SQuAD: candidate start and end positions per window.
    #[arg(long, default_value_t = 20)]
    pub n_best: usize,
    /// SQuAD: longest answer in tokens.
    #[arg(long, default_value_t = 30)]
    pub max_answer_length: usize,
    /// SQuAD: predict "no answer" when null score − best span score exceeds this.
    #[arg(long, default_value_t = 0.0)]
    pub null_threshold: f64,
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

/// The run's configuration: the recipe's defaults for the model, overridden by the flags.
fn configure(args: &RunArgs, task: &'static TaskSpec, bert: &BertConfig) -> Result<RunConfig> {
    let mut config = RunConfig::new(task, &args.model, bert);
    let (data, ft, head, eval) = (&args.slice, &args.finetune, &args.head, &args.evaluation);
    if !args.seeds.is_empty() {
        config.seeds = args.seeds.clone();
    }
    config.max_len = data.max_length.unwrap_or(task.max_len);
    config.limit_train = data.limit_train;
    config.limit_eval = data.limit_eval;
    config.eval_articles = args.data.eval_articles;
    config.squad_features.max_len = config.max_len;
    config.squad_features.doc_stride = data.doc_stride;
    config.squad_features.max_query = data.max_query_length;
    let optimizer = bertvision_core::train::OptimizerConfig {
        weight_decay: ft.weight_decay,
        // 0 disables the clip; any other value is the config's, checked by `validate`.
        max_grad_norm: (ft.max_grad_norm != 0.0).then_some(ft.max_grad_norm),
        epsilon: 1e-8,
        loss_scaling: false,
    };
    let f = &mut config.finetune;
    f.lr = ft.lr.unwrap_or(f.lr);
    f.batch_size = ft.batch_size.unwrap_or(f.batch_size);
    f.epochs = ft.epochs.unwrap_or(f.epochs);
    f.warmup_ratio = ft.warmup_ratio;
    f.optimizer = optimizer;
    f.select_best = ft.select_best.clone();
    f.early_stop_patience = ft.early_stop_patience;
    config.extract_at = ft.extract_at.clone();
    config.extract_at.sort_by(f64::total_cmp);
    config.eval_every_epochs = ft.eval_every_epochs;
    config.train_fraction = ft.train_fraction.filter(|&f| f != 1.0);
    config.validation_fraction = ft.validation_fraction;
    config.checkpoint_every = ft.checkpoint_every;
    config.head.warmup_ratio = ft.warmup_ratio;
    config.head.optimizer = optimizer;
    config.encoder_kernels = crate::backend::default_encoder_kernels(args.device());
    config.precision = ft.precision.unwrap_or(config.precision);
    head.apply(&mut config);
    config.ensemble = parse_rules(&eval.ensemble)?;
    config.eval_batch_size = eval.eval_batch_size;
    config.squad_postprocess.n_best = eval.n_best;
    config.squad_postprocess.max_answer_len = eval.max_answer_length;
    config.squad_postprocess.null_threshold = eval.null_threshold;
    config.validate(bert)?;
    Ok(config)
}

/// The task's data: the flags when given, else the first data root holding it
/// (`$BERTVISION_DATA`, the cache `fetch-data` fills, `../shared/data`).
pub fn data_source(args: &DataArgs, task: &TaskSpec, cache_dir: &Path) -> Result<DataSource> {
    if task.kind != TaskKind::Span && (args.data.is_some() || args.train_file.is_some()) {
        bail!(
            "{} is a GLUE task: give --data-dir, not --data/--train-file",
            task.name
        );
    }
    args.validate()?;
    let roots = DataRoots::standard(cache_dir);
    if task.kind == TaskKind::Span {
        if let (Some(train), Some(eval)) = (&args.train_file, &args.eval_file) {
            return Ok(DataSource::SquadFiles {
                train: train.clone(),
                eval: eval.clone(),
            });
        }
        let found = match &args.data {
            Some(data) => SquadFound::Single(data.clone()),
            None => roots.squad(task)?,
        };
        return Ok(match found {
            SquadFound::TrainDev { train, dev } => DataSource::SquadFiles { train, eval: dev },
            SquadFound::Single(data) => DataSource::SquadSplit {
                data,
                eval_articles: args.eval_articles,
            },
        });
    }
    let dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => roots.glue_dir(task)?,
    };
    Ok(DataSource::Glue { dir })
}

/// `--config FILE`: the file's configuration (its seeds unless --seeds is given).
fn config_file(args: &RunArgs, path: &Path) -> Result<RunConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
    let mut config: RunConfig = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("--config {}: not a run's config.json ({e})", path.display())
    })?;
    if !args.seeds.is_empty() {
        config.seeds = args.seeds.clone();
    }
    Ok(config)
}

/// The data of a `--config` run: the data flags when given, else the data.json beside the file.
fn config_data(
    args: &RunArgs,
    path: &Path,
    task: &TaskSpec,
    cache_dir: &Path,
) -> Result<DataSource> {
    let d = &args.data;
    if d.data_dir.is_some() || d.data.is_some() || d.train_file.is_some() {
        return data_source(d, task, cache_dir);
    }
    let beside = path.with_file_name("data.json");
    match DataRecord::read(&beside)? {
        Some(record) => Ok(record.source),
        None => data_source(d, task, cache_dir),
    }
}

/// `run`: resolves the model and runs [`run`] on the chosen backend (with autodiff).
pub fn main(args: &RunArgs, cache_dir: &Path) -> Result<()> {
    let from_file = args
        .config
        .as_deref()
        .map(|p| config_file(args, p))
        .transpose()?;
    let model = from_file
        .as_ref()
        .map_or(args.model.as_str(), |c| c.model.as_str());
    let model_dir = crate::fetch::resolve_model_dir(model, cache_dir)?;
    let dtype = match &from_file {
        Some(c) => c.head.encoder_dtype,
        None => args.head.encoder_dtype.unwrap_or_default(),
    };
    crate::backend::check_float_type("--encoder-dtype", dtype, args.device())?;
    let precision = match &from_file {
        Some(c) => c.precision,
        None => args.finetune.precision.unwrap_or_default(),
    };
    crate::backend::check_float_type("--precision", precision, args.device())?;
    with_backend!(args.device(), |B, dev| run::<burn::backend::Autodiff<B>>(
        args,
        from_file.clone(),
        &model_dir,
        cache_dir,
        dev
    ))
}

impl RunArgs {
    /// The backend: --devices' kind, else --device.
    pub fn device(&self) -> DeviceArg {
        crate::backend::DevicesArg::backend(self.devices.as_ref(), self.device)
    }

    /// The peers fine-tuning runs on (none: the one device), here and on the other nodes.
    pub fn device_set(&self) -> Result<DeviceSet> {
        let mut set = crate::backend::DevicesArg::peers(self.devices.as_ref());
        set.cluster = self.cluster.cluster()?;
        Ok(set)
    }
}

pub fn run<B: bertvision_core::TrainBackend>(
    args: &RunArgs,
    from_file: Option<RunConfig>,
    model_dir: &Path,
    cache_dir: &Path,
    device: B::Device,
) -> Result<()> {
    // The main device is the first peer's (`--devices cuda:1` runs on GPU 1).
    let devices = args.device_set()?;
    let device = devices.devices(&device).swap_remove(0);
    let task_name = from_file.as_ref().map(|c| c.task.as_str());
    let task_name = task_name.or(args.task.as_deref()).context("give --task")?;
    let task = bertvision_core::tasks::task(task_name)?;
    let dir = ModelDir::open(model_dir)?;
    let bert_config = BertConfig::from_file(&dir.config)?;
    let (config, source) = match (from_file, &args.config) {
        (Some(config), Some(path)) => {
            config.validate(&bert_config)?;
            let source = config_data(args, path, task, cache_dir)?;
            (config, source)
        }
        _ => (
            configure(args, task, &bert_config)?,
            data_source(&args.data, task, cache_dir)?,
        ),
    };
    if let Some(pad) = args.finetune.pad_multiple {
        bertvision_core::checks::at_least("--pad-multiple", pad, 1)?;
    }
    if let Some(out) = &args.out {
        bertvision_core::checks::output_dir("--out", out)?;
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{}-{}",
            task.name,
            config.model.replace(['/', '\\'], "_")
        ))
    });
    let request = RunRequest {
        config: &config,
        task,
        model_dir: &dir,
        bert_config: &bert_config,
        source: &source,
        out_dir: &out,
        device_label: args.device().label(),
        pad_multiple: args
            .finetune
            .pad_multiple
            .unwrap_or(if args.device().is_host() { 1 } else { 32 }),
        from_run: None,
        hidden_cache: None,
        export_bert: true,
        devices: &devices,
    };
    let outcome = run_task::<B>(&request, &device, &mut Bars::new())?;
    println!("{}", outcome.report);
    eprintln!("results: {}", outcome.results_path.display());
    Ok(())
}
