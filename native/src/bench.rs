//! `bertvision bench`: what one step of each phase costs, measured the way
//! `benchmarks/torch_bench.py` measures PyTorch — same shapes, warm-up excluded, the device
//! synchronised before each clock read, the median of repeats — and written as JSON.
//!
//! Rows: (a) `extract` — a forward pass returning every hidden state, attention as separate ops,
//! and `extract_fused_attention`, with the backend's attention kernel; (b) `finetune_step` — BERT
//! with a classification head, forward + backward + AdamW; (c) `head_step_streamed` — the frozen
//! encoder's forward (no graph, `run`'s attention default for the device) feeding an AdapterPooler
//! step, as `run` trains it; (c') `head_step` — the AdapterPooler step alone on hidden states
//! already computed. `_fused` rows: the same with the fused AdapterPooler op. Beside the fused
//! rows, `fused_path_checks`: how far each fused path lands from the plain one on this device.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use bertvision_core::bert::{AttentionKernel, Bert, BertConfig, BertInput};
use bertvision_core::fsutil::write_atomic;
use bertvision_core::head::{AdapterPoolerConfig, HeadKind, HeadPath, LayerMix};
use bertvision_core::models::ModelDir;
use bertvision_core::pretrained::Pretrained;
use bertvision_core::task_model::{BertTaskModel, Targets, head_loss};
use bertvision_core::train::{OptimizerConfig, TrainOptimizer};
use bertvision_shaders::attention::EncoderBackend;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

pub struct BenchRequest<'a> {
    /// A known model name, a model directory, or `bert-base` / `bert-large` (random weights).
    pub model: &'a str,
    pub model_dir: Option<&'a Path>,
    pub seq_lens: &'a [usize],
    pub batch: usize,
    pub repeats: usize,
    pub warmup: usize,
    pub device: crate::backend::DeviceArg,
    /// The frozen encoder's float type (extraction and streamed-head rows).
    pub extract_dtype: crate::backend::DtypeArg,
    /// Only these rows; empty = all.
    pub rows: &'a [String],
    pub out: Option<&'a Path>,
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

impl BenchRequest<'_> {
    fn wants(&self, measure: &str) -> bool {
        self.rows.is_empty() || self.rows.iter().any(|r| r == measure)
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
}

fn time_median<B: Backend>(
    device: &B::Device,
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut(),
) -> Result<Timing> {
    let sync = || B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"));
    let start = Instant::now();
    f();
    sync()?;
    let first = start.elapsed().as_secs_f64();
    for _ in 1..warmup {
        f();
    }
    sync()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f();
        sync()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        first,
        median: times[times.len() / 2],
        min: times[0],
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
/// state (fused attention; explicit ops as reference) and over the head's logits (fused
/// AdapterPooler; plain Burn ops as reference).
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
    let states = |kernel| {
        frozen
            .clone()
            .with_attention_kernel(kernel)
            .forward(x.clone())
            .hidden_states_f32()
    };
    let explicit = states(AttentionKernel::Explicit);
    let fused = states(AttentionKernel::Fused);
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

pub fn bench<B: bertvision_core::TrainBackend>(
    req: &BenchRequest<'_>,
    device: B::Device,
) -> Result<()> {
    let (config, bert, weights): (BertConfig, Bert<B>, &str) =
        match (shape_config(req.model), req.model_dir) {
            (Some(config), _) => {
                let bert = Bert::init(&config, true, &device);
                (config, bert, "random")
            }
            (None, Some(dir)) => {
                let loaded = Pretrained::<B>::load(&ModelDir::open(dir)?, &device)?;
                (loaded.config, loaded.bert, "pretrained")
            }
            (None, None) => bail!("--model {}: unknown", req.model),
        };
    if let Some(&seq) = req
        .seq_lens
        .iter()
        .find(|&&s| s == 0 || s > config.max_position_embeddings)
    {
        bail!(
            "--seq-lens {seq}: the model takes 1 to {} positions",
            config.max_position_embeddings
        );
    }
    eprintln!(
        "bench {} ({weights} weights, {} layers, hidden {}) on {}, batch {}, {} repeats after {} warm-up",
        req.model,
        config.num_hidden_layers,
        config.hidden_size,
        req.device.label(),
        req.batch,
        req.repeats,
        req.warmup
    );
    let head_config = AdapterPoolerConfig {
        hidden_size: config.hidden_size,
        num_states: config.num_hidden_states(),
        adapter_size: if config.hidden_size <= 384 { 32 } else { 64 },
        kind: HeadKind::MaskedMean,
        num_outputs: 2,
        max_len: *req.seq_lens.iter().max().unwrap_or(&128),
        shared_adapter: true,
        skip_last_layer: false,
        layer_mix: LayerMix::None,
    };
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    let n = req.batch;
    let targets = || {
        Targets::<B>::Class(Tensor::from_data(
            TensorData::new(vec![0i64; n], [n]),
            &device,
        ))
    };
    // The streamed rows use `run`'s attention default for the device, as `run` would.
    let streamed_attention = crate::backend::AttentionArg::default_for(req.device).kernel();
    let frozen = bert
        .valid()
        .with_float_dtype(req.extract_dtype.float_dtype())
        .with_attention_kernel(streamed_attention);
    for &seq in req.seq_lens {
        let mut record = |measure: &'static str, t: Timing| {
            let row = Row {
                model: req.model.to_string(),
                measure,
                seq_len: seq,
                batch: n,
                median_seconds: t.median,
                min_seconds: t.min,
                first_call_seconds: t.first,
                sequences_per_second: n as f64 / t.median,
            };
            eprintln!(
                "  {:<20} seq {:>3}: {:>9.4} s median, {:>8.2} sequences/s (first call {:.2} s)",
                measure, seq, t.median, row.sequences_per_second, t.first
            );
            rows.push(row);
        };

        // (a) extraction: every hidden state, no graph; attention as separate ops and as the
        // backend's fused attention (`run --attention`).
        let x = input::<B::InnerBackend>(n, seq, config.vocab_size, &device);
        for (measure, kernel) in [
            ("extract", AttentionKernel::Explicit),
            ("extract_fused_attention", AttentionKernel::Fused),
        ] {
            if !req.wants(measure) {
                continue;
            }
            let frozen = frozen.clone().with_attention_kernel(kernel);
            record(
                measure,
                time_median::<B::InnerBackend>(&device, req.warmup, req.repeats, || {
                    let out = frozen.forward(x.clone());
                    drop(out.hidden_states);
                })?,
            );
        }

        // (b) one fine-tuning step.
        if req.wants("finetune_step") {
            let mut model = Some(BertTaskModel::new(bert.clone(), &config, 2, false, &device));
            let mut optim =
                TrainOptimizer::new(model.as_ref().expect("model"), OptimizerConfig::default());
            let xa = input::<B>(n, seq, config.vocab_size, &device);
            record(
                "finetune_step",
                time_median::<B>(&device, req.warmup, req.repeats, || {
                    let m = model.take().expect("model");
                    let (_, out) = m.forward(xa.clone());
                    let loss = head_loss(out, &targets());
                    let (m, _) = optim.step(1e-5, m, loss);
                    model = Some(m);
                })?,
            );
        }

        // (c) AdapterPooler steps: streamed from the frozen encoder, and on ready features.
        let mut head = Some(head_config.init::<B>(&device));
        let mut head_optim =
            TrainOptimizer::new(head.as_ref().expect("head"), OptimizerConfig::default());
        if req.wants("extract_fused_attention")
            || req.wants("head_step_streamed_fused")
            || req.wants("head_step_fused")
        {
            let head = head.as_ref().expect("head");
            let check = fused_path_checks::<B>(&frozen, head, seq, n, config.vocab_size, &device)?;
            eprintln!("  fused paths vs plain, padded batch: {check}");
            checks.push(check);
        }
        let mut head_step = |states: Vec<Tensor<B, 3>>, mask: Tensor<B, 2, Int>, path| {
            let h = head.take().expect("head");
            let loss = head_loss(h.forward_by(&states, mask, path), &targets());
            let (h, _) = head_optim.step(1e-3, h, loss);
            head = Some(h);
        };
        let mask = Tensor::<B, 2, Int>::from_inner(x.attention_mask.clone());
        for (measure, path) in [
            ("head_step_streamed", HeadPath::Plain),
            ("head_step_streamed_fused", HeadPath::Fused),
        ] {
            if !req.wants(measure) {
                continue;
            }
            record(
                measure,
                time_median::<B>(&device, req.warmup, req.repeats, || {
                    let states = frozen
                        .forward(x.clone())
                        .hidden_states_f32()
                        .into_iter()
                        .map(Tensor::from_inner)
                        .collect();
                    head_step(states, mask.clone(), path);
                })?,
            );
        }
        if !(req.wants("head_step") || req.wants("head_step_fused")) {
            continue;
        }
        let ready: Vec<Tensor<B, 3>> = frozen
            .forward(x.clone())
            .hidden_states_f32()
            .into_iter()
            .map(Tensor::from_inner)
            .collect();
        for (measure, path) in [
            ("head_step", HeadPath::Plain),
            ("head_step_fused", HeadPath::Fused),
        ] {
            if !req.wants(measure) {
                continue;
            }
            record(
                measure,
                time_median::<B>(&device, req.warmup, req.repeats, || {
                    head_step(ready.clone(), mask.clone(), path);
                })?,
            );
        }
    }
    let report = serde_json::json!({
        "implementation": "bertvision (Rust, Burn 0.21.0)",
        "model": req.model,
        "weights": weights,
        "config": {"layers": config.num_hidden_layers, "hidden": config.hidden_size, "heads": config.num_attention_heads},
        "device": req.device.label(),
        "cpu": cpu_name(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "dtype": match req.extract_dtype.precision() {
            p if p.is_f32() => "f32".to_string(),
            p => format!(
                "{} frozen encoder (extract, head_step_streamed); f32 training",
                p.name()
            ),
        },
        "batch": req.batch,
        // `extract` uses the explicit ops, `extract_fused_attention` the backend's frozen-encoder
        // kernels (`run --attention fused`).
        "streamed_rows_attention": streamed_attention.name(),
        "fused_attention_rows": if <B::InnerBackend as EncoderBackend>::HAS_CPU_KERNELS {
            "the CPU kernels of shaders/ (attention, GELU, linear layers)"
        } else {
            "Burn's module::attention"
        },
        "finetune_step_encoder": if <B::InnerBackend as EncoderBackend>::HAS_CPU_KERNELS {
            "self-attention with dropout, linear layers, GELU and dropout masks through the CPU kernels of shaders/, each with its backward"
        } else {
            "Burn's ops"
        },
        "repeats": req.repeats,
        "warmup": req.warmup,
        "head": {
            "adapter_size": head_config.adapter_size,
            "kind": "masked-mean",
            "params": head_config.num_params(),
            // The `_fused` rows: `run --head-kernel fused`.
            "fused_rows": if B::HAS_KERNEL {
                "the fused CubeCL kernel of shaders/"
            } else {
                "this backend has no kernel: the fused op's plain-Burn reference"
            },
        },
        "peak_memory_mb": peak_rss_mb(),
        "peak_memory_kind": if req.device.is_host() {
            "process peak RSS"
        } else {
            "process peak RSS (host only; sample device memory with the vendor tool)"
        },
        "profile": if cfg!(debug_assertions) { "debug" } else { "optimised" },
        "rows": rows,
        "fused_path_checks": checks,
    });
    let text = serde_json::to_string_pretty(&report)?;
    match req.out {
        Some(path) => write_atomic(path, text.as_bytes())?,
        None => println!("{text}"),
    }
    Ok(())
}
