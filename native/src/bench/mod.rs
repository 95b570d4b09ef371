//! `bertvision bench`: what one step of each phase costs, measured the way
//! `benchmarks/torch_bench.py` measures PyTorch — same shapes, warm-up excluded, the device
//! synchronised before each clock read, the median of repeats — and written as JSON.
//!
//! Rows: (a) `extract` — a forward pass returning every hidden state through Burn's ops, and
//! `extract_fused_attention`, through the backend's encoder kernels (`--encoder-kernels
//! native`); (b) `finetune_step` — BERT with a classification head, forward + backward + AdamW;
//! (c) `head_step_streamed` — the frozen encoder's forward (no graph, `run`'s encoder default for
//! the device) feeding an AdapterPooler step, as `run` trains it; (c') `head_step` — the
//! AdapterPooler step alone on hidden states already computed. `_fused` rows: the same with the
//! fused AdapterPooler op. Beside the fused rows, `fused_path_checks`: how far each fused path
//! lands from the plain one on this device. (The row names are kept from earlier versions, so
//! committed result files stay comparable.) With `--devices`, every row runs data-parallel
//! (`peers.rs`): `--batch` is the global batch, cut into one shard per peer as `run` cuts it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use bertvision_core::bert::{Bert, BertConfig, BertInput, EncoderDtype, EncoderKernels};
use bertvision_core::fsutil::write_atomic;
use bertvision_core::head::{AdapterPoolerConfig, HeadKind, HeadPath, LayerMix};
use bertvision_core::models::ModelDir;
use bertvision_core::pipeline::recipe::adapter_size;
use bertvision_core::pretrained::Pretrained;
use bertvision_core::task_model::{BertTaskModel, Targets, head_loss};
use bertvision_core::train::{OptimizerConfig, TrainOptimizer};
use bertvision_shaders::{AdapterHeadOps, AttentionOps};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

use crate::backend::{DeviceArg, check_float_type, default_encoder_kernels};
use crate::fetch::resolve_model_dir;

mod launches;
mod peers;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// minilm-l6, splade-tiny, a model directory, or bert-base / bert-large (random weights).
    #[arg(long, default_value = "minilm-l6")]
    pub model: String,
    /// Sequence lengths to measure (every sequence padded to it).
    #[arg(long, value_delimiter = ',', default_value = "128,384")]
    pub seq_lens: Vec<usize>,
    /// Sequences per batch; several (`8,32,128`) sweep them: every row at each batch, and the
    /// report names each row's fastest batch (`best`).
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub batch: Vec<usize>,
    /// Timed calls per row (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Untimed calls before the timed ones (at least 1; the first is reported on its own,
    /// since on GPUs it includes kernel compilation and autotuning).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub warmup: u64,
    /// The backend: cpu (Flex with this project's kernels), ndarray, cuda, wgpu (the last two
    /// need a build with `--features cuda` / `wgpu`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Run every row data-parallel over these devices, as `run --devices` trains: `cuda:0,1`,
    /// `cpu:2`. --batch is the global batch, each peer timing its shard; sets --device's
    /// backend.
    #[arg(long, conflicts_with = "device")]
    pub devices: Option<crate::backend::DevicesArg>,
    /// The frozen encoder's float type for the extraction and streamed-head rows.
    #[arg(long, value_enum, default_value = "f32", alias = "extract-dtype")]
    pub encoder_dtype: EncoderDtype,
    /// The float type of the fine-tuning and head-step rows, as `run --precision` (mixed
    /// precision: f32 weights, matmuls in bf16/f16; f16 with loss scaling).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: EncoderDtype,
    /// Only these rows (e.g. `extract_fused_attention,finetune_step`: one row under a profiler);
    /// default all.
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
    /// Count the kernels each call launches (CubeCL's launch log; `--device cuda` or `wgpu`):
    /// `launches_per_call` in every row.
    #[arg(long)]
    pub count_launches: bool,
    /// Write the JSON here (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `bench`: checks the flags, resolves the model and runs [`bench`] on the chosen backend.
impl BenchArgs {
    /// Every flag's value, from its meaning, before the model is read (the lengths against
    /// the model's positions and the batch against the memory once its shape is known).
    pub fn validate(&self) -> Result<()> {
        check_float_type("--encoder-dtype", self.encoder_dtype, self.device())?;
        check_float_type("--precision", self.precision, self.device())?;
        check_rows(&self.rows)?;
        if self.batch.is_empty() {
            bail!("--batch: give at least one batch size");
        }
        for &batch in &self.batch {
            bertvision_core::checks::at_least("--batch", batch, 1)?;
        }
        if self.count_launches && self.device().is_host() {
            bail!(
                "--count-launches: counts CubeCL's kernel launches; --device {} launches none (use cuda or wgpu)",
                self.device().label()
            );
        }
        if let Some(out) = &self.out {
            bertvision_core::checks::output_file("--out", out)?;
        }
        bertvision_core::checks::at_least("--repeats", self.repeats, 1)?;
        if self.seq_lens.is_empty() {
            bail!("--seq-lens: give at least one length");
        }
        Ok(())
    }
}

pub fn main(args: &BenchArgs, cache_dir: &Path) -> Result<()> {
    args.validate()?;
    if args.count_launches {
        launches::install()?;
    }
    let model_dir = match args.model.as_str() {
        "bert-base" | "bert-large" => None,
        _ => Some(resolve_model_dir(&args.model, cache_dir)?),
    };
    let measured = with_backend!(args.device(), |B, dev| bench::<burn::backend::Autodiff<B>>(
        args,
        model_dir.as_deref(),
        dev
    ));
    launches::remove();
    measured
}

/// Every row `bench` measures, in order.
pub const ROWS: [&str; 7] = [
    "extract",
    "extract_fused_attention",
    "finetune_step",
    "head_step_streamed",
    "head_step_streamed_fused",
    "head_step",
    "head_step_fused",
];

/// `--rows` names rows that exist.
pub fn check_rows(rows: &[String]) -> Result<()> {
    match rows.iter().find(|r| !ROWS.contains(&r.as_str())) {
        Some(r) => bail!("--rows {r}: no such row (rows: {})", ROWS.join(", ")),
        None => Ok(()),
    }
}

impl BenchArgs {
    fn wants(&self, measure: &str) -> bool {
        self.rows.is_empty() || self.rows.iter().any(|r| r == measure)
    }

    /// The backend: --devices' kind, else --device.
    pub fn device(&self) -> DeviceArg {
        crate::backend::DevicesArg::backend(self.devices.as_ref(), self.device)
    }

    /// The peers every row runs on (one: the device).
    fn device_set(&self) -> bertvision_core::train::DeviceSet {
        crate::backend::DevicesArg::peers(self.devices.as_ref())
    }
}

#[derive(Debug, Serialize)]
struct Row {
    model: String,
    measure: &'static str,
    seq_len: usize,
    batch: usize,
    median_seconds: f64,
    min_seconds: f64,
    /// The first call alone: on GPUs it includes kernel compilation and autotuning.
    first_call_seconds: f64,
    sequences_per_second: f64,
    /// Kernels launched per timed call (`--count-launches`).
    #[serde(skip_serializing_if = "Option::is_none")]
    launches_per_call: Option<f64>,
}

/// The shapes of the BERT checkpoints this project cannot download, for random-weight runs.
fn shape_config(name: &str) -> Option<BertConfig> {
    let json = match name {
        "bert-base" => "{}",
        "bert-large" => {
            r#"{"hidden_size":1024,"num_hidden_layers":24,"num_attention_heads":16,"intermediate_size":4096}"#
        }
        _ => return None,
    };
    BertConfig::from_json(Path::new(name), json).ok()
}

/// Times of one measured call: the first (kernel compilation and autotuning included on GPUs),
/// then the median and minimum of `repeats` calls after `warmup` calls.
struct Timing {
    first: f64,
    median: f64,
    min: f64,
    launches: Option<f64>,
}

fn time_median<B: Backend>(
    device: &B::Device,
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"));
    let start = Instant::now();
    f()?;
    sync()?;
    let first = start.elapsed().as_secs_f64();
    for _ in 1..warmup {
        f()?;
    }
    sync()?;
    let launched_before = launches::count();
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        sync()?;
        times.push(start.elapsed().as_secs_f64());
    }
    let launched = launched_before.zip(launches::count());
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        first,
        median: times[times.len() / 2],
        min: times[0],
        launches: launched.map(|(a, b)| (b - a) as f64 / times.len() as f64),
    })
}

/// Peak resident memory of this process in MB (Linux `VmHWM`), the CPU's "device memory".
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn input<B: Backend>(batch: usize, seq: usize, vocab: usize, device: &B::Device) -> BertInput<B> {
    input_with_lengths(&vec![seq; batch], seq, vocab, device)
}

/// Fixed pseudo-random ids (no special tokens needed for timing); row `i` has `lengths[i]` real
/// tokens, then padding (id 0, mask 0).
fn input_with_lengths<B: Backend>(
    lengths: &[usize],
    seq: usize,
    vocab: usize,
    device: &B::Device,
) -> BertInput<B> {
    let batch = lengths.len();
    let real = |i: usize| i % seq < lengths[i / seq];
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| match real(i) {
            true => 1000 + ((i as u64).wrapping_mul(2654435761) % (vocab as u64 - 1000)) as i64,
            false => 0,
        })
        .collect();
    let mask = (0..batch * seq).map(|i| real(i) as i64).collect();
    let make =
        |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [batch, seq]), device);
    BertInput {
        input_ids: make(ids),
        token_type_ids: make(vec![0; batch * seq]),
        attention_mask: make(mask),
    }
}

fn max_abs_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Result<f64> {
    let data = (a - b).abs().max().into_data().convert::<f32>();
    let values = data
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading a difference back from the device: {e:?}"))?;
    Ok(values[0] as f64)
}

/// The fused paths checked against the plain ones on this device, on a padded batch (row `i`
/// keeps `seq - i * seq / (batch + 1)` tokens), so a kernel that misreads the padding mask shows
/// here and not only in a task's metrics: the largest absolute difference over every hidden
/// state (the backend's encoder kernels; Burn's ops as reference) and over the head's logits
/// (fused AdapterPooler; plain Burn ops as reference). The key names are kept from earlier
/// versions (`fused_attention_max_abs_diff` is the encoder kernels' difference).
fn fused_path_checks<B: bertvision_core::TrainBackend>(
    frozen: &Bert<B::InnerBackend>,
    head: &bertvision_core::head::AdapterPooler<B>,
    seq: usize,
    batch: usize,
    vocab: usize,
    device: &B::Device,
) -> Result<serde_json::Value> {
    let lengths: Vec<usize> = (0..batch)
        .map(|i| (seq - i * seq / (batch + 1)).max(1))
        .collect();
    let x = input_with_lengths::<B::InnerBackend>(&lengths, seq, vocab, device);
    let states = |kernels| {
        frozen
            .clone()
            .with_encoder_kernels(kernels)
            .forward(x.clone())
            .hidden_states_f32()
    };
    let explicit = states(EncoderKernels::Burn);
    let fused = states(EncoderKernels::Native);
    let mut attention_diff = 0f64;
    for (e, f) in explicit.iter().zip(fused) {
        attention_diff = attention_diff.max(max_abs_diff(e.clone(), f)?);
    }
    let states: Vec<Tensor<B, 3>> = explicit.into_iter().map(Tensor::from_inner).collect();
    let mask = Tensor::<B, 2, Int>::from_inner(x.attention_mask);
    let logits = |path| match head.forward_by(&states, mask.clone(), path) {
        bertvision_core::head::HeadOutput::Logits(t) => Ok(t),
        _ => bail!("the bench head is a masked-mean classifier"),
    };
    let head_diff = max_abs_diff(logits(HeadPath::Plain)?, logits(HeadPath::Fused)?)?;
    Ok(serde_json::json!({
        "seq_len": seq,
        "lengths": lengths,
        "fused_attention_max_abs_diff": attention_diff,
        "fused_head_logits_max_abs_diff": head_diff,
    }))
}

/// The model the rows run: a checkpoint's weights, or random weights of bert-base's or
/// bert-large's shapes.
fn load_model<B: bertvision_core::TrainBackend>(
    args: &BenchArgs,
    model_dir: Option<&Path>,
    device: &B::Device,
) -> Result<(BertConfig, Bert<B>, &'static str)> {
    let (config, bert, weights) = match (shape_config(&args.model), model_dir) {
        (Some(config), _) => {
            let bert = Bert::init(&config, true, device);
            (config, bert, "random")
        }
        (None, Some(dir)) => {
            let loaded = Pretrained::<B>::load(&ModelDir::open(dir)?, device)?;
            (loaded.config, loaded.bert, "pretrained")
        }
        (None, None) => bail!("--model {}: unknown", args.model),
    };
    if let Some(&seq) = args
        .seq_lens
        .iter()
        .find(|&&s| s == 0 || s > config.max_position_embeddings)
    {
        bail!(
            "--seq-lens {seq}: the model takes 1 to {} positions",
            config.max_position_embeddings
        );
    }
    let longest = args.seq_lens.iter().copied().max().unwrap_or(1);
    let largest = args.batch.iter().copied().max().unwrap_or(1);
    let per_sequence = bertvision_core::checks::activation_bytes_per_sequence(
        longest,
        config.num_attention_heads,
        config.num_hidden_layers + 1,
        config.hidden_size,
    );
    bertvision_core::checks::fits(
        &format!("--batch {largest} at --seq-lens {longest}"),
        largest as f64 * per_sequence,
        bertvision_core::checks::machine_memory(),
    )?;
    Ok((config, bert, weights))
}

/// The measured rows, printed as they come.
struct Rows {
    model: String,
    batch: usize,
    rows: Vec<Row>,
}

impl Rows {
    fn record(&mut self, measure: &'static str, seq_len: usize, t: Timing) {
        let row = Row {
            model: self.model.clone(),
            measure,
            seq_len,
            batch: self.batch,
            median_seconds: t.median,
            min_seconds: t.min,
            first_call_seconds: t.first,
            sequences_per_second: self.batch as f64 / t.median,
            launches_per_call: t.launches,
        };
        let launches = t
            .launches
            .map_or(String::new(), |n| format!(", {n:.0} launches"));
        eprintln!(
            "  {:<24} seq {:>3} batch {:>3}: {:>9.4} s median, {:>9.2} sequences/s (first call {:.2} s{launches})",
            measure, seq_len, self.batch, t.median, row.sequences_per_second, t.first
        );
        self.rows.push(row);
    }
}

/// Class-0 targets for a batch of `n`.
fn targets<B: Backend>(n: usize, device: &B::Device) -> Targets<B> {
    Targets::Class(Tensor::from_data(
        TensorData::new(vec![0i64; n], [n]),
        device,
    ))
}

pub fn bench<B: bertvision_core::TrainBackend>(
    args: &BenchArgs,
    model_dir: Option<&Path>,
    device: B::Device,
) -> Result<()> {
    let set = args.device_set();
    let devices = set.devices(&device);
    let device = devices[0].clone();
    let (config, bert, weights) = load_model::<B>(args, model_dir, &device)?;
    let batches: Vec<String> = args.batch.iter().map(usize::to_string).collect();
    eprintln!(
        "bench {} ({weights} weights, {} layers, hidden {}) on {}, batch {}, {} repeats after {} warm-up",
        args.model,
        config.num_hidden_layers,
        config.hidden_size,
        device_label(args),
        batches.join(", "),
        args.repeats,
        args.warmup
    );
    let head_config = AdapterPoolerConfig {
        hidden_size: config.hidden_size,
        num_states: config.num_hidden_states(),
        adapter_size: adapter_size(config.hidden_size),
        kind: HeadKind::MaskedMean,
        num_outputs: 2,
        max_len: *args.seq_lens.iter().max().unwrap_or(&128),
        shared_adapter: true,
        skip_last_layer: false,
        layer_mix: LayerMix::None,
    };
    // The streamed rows use `run`'s encoder default for the device, as `run` would.
    let streamed = default_encoder_kernels(args.device);
    let frozen = bert
        .valid()
        .with_float_dtype(args.encoder_dtype.float_dtype())
        .with_encoder_kernels(streamed);
    let mut rows = Rows {
        model: args.model.clone(),
        batch: args.batch[0],
        rows: Vec::new(),
    };
    let mut checks = Vec::new();
    let mut peers = peers::Peers::<B> {
        set: &set,
        devices,
        batch: args.batch[0],
        vocab: config.vocab_size,
    };
    for &seq in &args.seq_lens {
        for &batch in &args.batch {
            (rows.batch, peers.batch) = (batch, batch);
            if set.is_parallel() {
                let models = (&bert, &frozen, &config);
                peers.rows(args, models, &head_config, seq, &mut rows)?;
                continue;
            }
            let x = input::<B::InnerBackend>(batch, seq, config.vocab_size, &device);
            extraction_rows::<B>(args, &frozen, &x, seq, &mut rows, &device)?;
            if args.wants("finetune_step") {
                finetune_row::<B>(args, &bert, &config, (seq, batch), &mut rows, &device)?;
            }
            let mut head = HeadBench::<B>::new(&head_config, args.precision, &device);
            let fused_rows = [
                "extract_fused_attention",
                "head_step_streamed_fused",
                "head_step_fused",
            ];
            if batch == args.batch[0] && fused_rows.iter().any(|r| args.wants(r)) {
                let (model, vocab) = (head.model(), config.vocab_size);
                let check = fused_path_checks::<B>(&frozen, model, seq, batch, vocab, &device)?;
                eprintln!("  fused paths vs plain, padded batch: {check}");
                checks.push(check);
            }
            head.rows(args, &frozen, &x, seq, &mut rows, &device)?;
        }
    }
    print_best(&rows.rows);
    let report = report_json::<B>(args, &config, weights, streamed, &head_config, rows, checks);
    let text = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => write_atomic(path, text.as_bytes())?,
        None => println!("{text}"),
    }
    Ok(())
}

/// (a) extraction: every hidden state, no graph; Burn's ops and the backend's encoder kernels
/// (`run --encoder-kernels`).
fn extraction_rows<B: bertvision_core::TrainBackend>(
    args: &BenchArgs,
    frozen: &Bert<B::InnerBackend>,
    x: &BertInput<B::InnerBackend>,
    seq: usize,
    rows: &mut Rows,
    device: &B::Device,
) -> Result<()> {
    for (measure, kernels) in [
        ("extract", EncoderKernels::Burn),
        ("extract_fused_attention", EncoderKernels::Native),
    ] {
        if !args.wants(measure) {
            continue;
        }
        let frozen = frozen.clone().with_encoder_kernels(kernels);
        let timing =
            time_median::<B::InnerBackend>(device, args.warmup as usize, args.repeats, || {
                let out = frozen.forward(x.clone());
                drop(out.hidden_states);
                Ok(())
            })?;
        rows.record(measure, seq, timing);
    }
    Ok(())
}

/// (b) one fine-tuning step: BERT with a classification head, forward, backward, AdamW.
fn finetune_row<B: bertvision_core::TrainBackend>(
    args: &BenchArgs,
    bert: &Bert<B>,
    config: &BertConfig,
    (seq, n): (usize, usize),
    rows: &mut Rows,
    device: &B::Device,
) -> Result<()> {
    let bert = bert.clone().with_precision(args.precision);
    let mut model = Some(BertTaskModel::new(bert, config, 2, false, device));
    let optimizer = optimizer_for(args.precision);
    let mut optim = TrainOptimizer::new(model.as_ref().expect("model"), optimizer);
    let xa = input::<B>(n, seq, config.vocab_size, device);
    let timing = time_median::<B>(device, args.warmup as usize, args.repeats, || {
        let m = model.take().expect("model");
        let (_, out) = m.forward(xa.clone());
        let loss = head_loss(out, &targets(n, device));
        let (m, _) = optim.step(1e-5, m, loss);
        model = Some(m);
        Ok(())
    })?;
    rows.record("finetune_step", seq, timing);
    Ok(())
}

/// The optimizer `run` trains with in `precision` (loss scaling for f16).
pub(crate) fn optimizer_for(precision: EncoderDtype) -> OptimizerConfig {
    OptimizerConfig::default().for_precision(precision)
}

/// (c) AdapterPooler steps, one model and optimizer through every head row of a length.
struct HeadBench<B: bertvision_core::TrainBackend> {
    head: Option<bertvision_core::head::AdapterPooler<B>>,
    optim: TrainOptimizer<B, bertvision_core::head::AdapterPooler<B>>,
}

impl<B: bertvision_core::TrainBackend> HeadBench<B> {
    fn new(config: &AdapterPoolerConfig, precision: EncoderDtype, device: &B::Device) -> Self {
        let head = config.init::<B>(device).with_precision(precision);
        let optim = TrainOptimizer::new(&head, optimizer_for(precision));
        HeadBench {
            head: Some(head),
            optim,
        }
    }

    fn model(&self) -> &bertvision_core::head::AdapterPooler<B> {
        self.head.as_ref().expect("head")
    }

    fn step(&mut self, states: Vec<Tensor<B, 3>>, mask: Tensor<B, 2, Int>, path: HeadPath) {
        let n = mask.dims()[0];
        let h = self.head.take().expect("head");
        let loss = head_loss(
            h.forward_by(&states, mask.clone(), path),
            &targets(n, &mask.device()),
        );
        let (h, _) = self.optim.step(1e-3, h, loss);
        self.head = Some(h);
    }

    /// Streamed from the frozen encoder (as `run` trains it), and on ready features.
    fn rows(
        &mut self,
        args: &BenchArgs,
        frozen: &Bert<B::InnerBackend>,
        x: &BertInput<B::InnerBackend>,
        seq: usize,
        rows: &mut Rows,
        device: &B::Device,
    ) -> Result<()> {
        let (warmup, repeats) = (args.warmup as usize, args.repeats);
        let mask = Tensor::<B, 2, Int>::from_inner(x.attention_mask.clone());
        let states = |x: &BertInput<B::InnerBackend>| -> Vec<Tensor<B, 3>> {
            let out = frozen.forward(x.clone()).hidden_states_f32();
            out.into_iter().map(Tensor::from_inner).collect()
        };
        for (measure, path) in [
            ("head_step_streamed", HeadPath::Plain),
            ("head_step_streamed_fused", HeadPath::Fused),
        ] {
            if args.wants(measure) {
                let timing = time_median::<B>(device, warmup, repeats, || {
                    self.step(states(x), mask.clone(), path);
                    Ok(())
                })?;
                rows.record(measure, seq, timing);
            }
        }
        if !(args.wants("head_step") || args.wants("head_step_fused")) {
            return Ok(());
        }
        let ready = states(x);
        for (measure, path) in [
            ("head_step", HeadPath::Plain),
            ("head_step_fused", HeadPath::Fused),
        ] {
            if args.wants(measure) {
                let timing = time_median::<B>(device, warmup, repeats, || {
                    self.step(ready.clone(), mask.clone(), path);
                    Ok(())
                })?;
                rows.record(measure, seq, timing);
            }
        }
        Ok(())
    }
}

/// Each row's fastest batch at each length: `(measure, seq_len)` → its row.
fn best_batches(rows: &[Row]) -> Vec<&Row> {
    let mut best: Vec<&Row> = Vec::new();
    for row in rows {
        let same = |b: &&Row| b.measure == row.measure && b.seq_len == row.seq_len;
        match best.iter_mut().find(|b| same(b)) {
            Some(b) if b.sequences_per_second < row.sequences_per_second => *b = row,
            Some(_) => {}
            None => best.push(row),
        }
    }
    best
}

/// The summary table: each row's fastest batch, when several were measured.
fn print_best(rows: &[Row]) {
    let best = best_batches(rows);
    if best.len() == rows.len() {
        return;
    }
    eprintln!("fastest batch per row:");
    eprintln!(
        "  {:<24} {:>4} {:>6} {:>12}",
        "measure", "seq", "batch", "sequences/s"
    );
    for row in best {
        eprintln!(
            "  {:<24} {:>4} {:>6} {:>12.2}",
            row.measure, row.seq_len, row.batch, row.sequences_per_second
        );
    }
}

/// `--device`, or the peers of `--devices`.
fn device_label(args: &BenchArgs) -> String {
    match &args.devices {
        Some(d) if d.kind.is_host() => format!("{}, {} peers", d.kind.label(), d.set.peers()),
        Some(d) => {
            let list: Vec<String> = d.set.indices.iter().map(u16::to_string).collect();
            format!("{}, devices {}", d.kind.label(), list.join(","))
        }
        None => args.device.label().to_string(),
    }
}

/// The JSON `bench` writes: machine, settings, what each kind of row ran, the rows, the checks.
fn report_json<B: bertvision_core::TrainBackend>(
    args: &BenchArgs,
    config: &BertConfig,
    weights: &str,
    streamed: EncoderKernels,
    head_config: &AdapterPoolerConfig,
    rows: Rows,
    checks: Vec<serde_json::Value>,
) -> serde_json::Value {
    let cpu_kernels = <B::InnerBackend as AttentionOps>::KERNEL;
    serde_json::json!({
        "implementation": "bertvision (Rust, Burn 0.21.0)",
        "model": args.model,
        "weights": weights,
        "config": {"layers": config.num_hidden_layers, "hidden": config.hidden_size, "heads": config.num_attention_heads, "intermediate": config.intermediate_size},
        "device": device_label(args),
        "peers": args.device_set().peers(),
        "cpu": cpu_name(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "dtype": match (args.encoder_dtype, args.precision) {
            (d, p) if d.is_f32() && p.is_f32() => "f32".to_string(),
            (d, p) => format!(
                "{} frozen encoder (extract, head_step_streamed); {} training (finetune_step, head steps; f32 weights)",
                d.name(),
                p.name()
            ),
        },
        "precision": args.precision.name(),
        "batches": args.batch,
        // `extract` runs Burn's ops, `extract_fused_attention` the backend's encoder kernels
        // (`run --encoder-kernels native`).
        "streamed_rows_encoder_kernels": streamed.name(),
        "fused_attention_rows": if cpu_kernels {
            "the CPU kernels of shaders/ (attention, GELU, linear layers)"
        } else {
            "the CubeCL attention kernel of shaders/ (online softmax on the key bias)"
        },
        "finetune_step_encoder": if cpu_kernels {
            "self-attention with dropout, linear layers, GELU and dropout masks through the CPU kernels of shaders/, each with its backward"
        } else {
            "Burn's ops, but the linear layers as 2-D matmuls over every token and GELU with its exact derivative, each one autodiff node (shaders/ops references)"
        },
        "repeats": args.repeats,
        "warmup": args.warmup,
        "head": {
            "adapter_size": head_config.adapter_size,
            "kind": "masked-mean",
            "params": head_config.num_params(),
            // The `_fused` rows: `run --head-kernel fused`.
            "fused_rows": if <B as AdapterHeadOps>::KERNEL {
                "the fused op's kernels in shaders/ (CubeCL on GPUs, the CPU kernels on cpu)"
            } else {
                "this backend has no kernel: the fused op's plain-Burn reference"
            },
        },
        "peak_memory_mb": peak_rss_mb(),
        "peak_memory_kind": if args.device.is_host() {
            "process peak RSS"
        } else {
            "process peak RSS (host only; sample device memory with the vendor tool)"
        },
        "profile": if cfg!(debug_assertions) { "debug" } else { "optimised" },
        "best": best_batches(&rows.rows),
        "rows": rows.rows,
        "fused_path_checks": checks,
    })
}
