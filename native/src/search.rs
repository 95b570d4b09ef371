//! `bertvision search --from RUN`: flags to the library's search settings, `--parallel`'s
//! worker processes, and the summary (best trials, the best as a command line).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use bertvision_core::bert::BertConfig;
use bertvision_core::checks;
use bertvision_core::models::ModelDir;
use bertvision_core::pipeline::RunRequest;
use bertvision_core::pipeline::heads::FinishedRun;
use bertvision_core::pipeline::hidden_cache::HiddenCache;
use bertvision_core::search::sampler::Algorithm;
use bertvision_core::search::space::{Scope, parse_space};
use bertvision_core::search::trials::{SearchDir, SearchSettings, TrialRecord};
use bertvision_core::search::{
    SearchRequest, best_command, best_table, best_trials, check_search, run_search,
};
use bertvision_core::train::DeviceSet;
use clap::Args;

use crate::backend::{DeviceArg, check_float_type};
use crate::progress::Bars;

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The folder of a `bertvision run` made with --validation-fraction: head trials train on
    /// its kept checkpoints; fine-tuning trials start from its configuration.
    #[arg(long)]
    pub from: PathBuf,
    /// A setting to search, NAME=SPEC (repeatable): `head_lr=1e-4..1e-2:log`,
    /// `adapter_size=8,16,32`, `head_epochs=1..4:int`. Head settings: head_lr, head_epochs,
    /// head_batch_size, adapter_size, head_kind, layer_mix, skip_last_layer, extract_at (a list of
    /// the run's points); fine-tuning settings (every trial then fine-tunes): lr, batch_size,
    /// epochs, warmup_ratio.
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// The space as a TOML file, one `NAME = "SPEC"` line per setting (--param adds or replaces).
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Trials to have finished in the folder; a resumed search runs the rest.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// tpe (hyperopt's algorithm) or random (the baseline).
    #[arg(long, value_enum, default_value = "tpe")]
    pub algorithm: Algorithm,
    /// Seeds the proposals (not the models: see --seeds).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// TPE's random trials before it models the finished ones.
    #[arg(long, default_value_t = 5)]
    pub startup_trials: usize,
    /// The method whose validation score is maximised: bertvision, bert_final, ensemble_max, …
    #[arg(long, default_value = "bertvision")]
    pub objective: String,
    /// The run's seeds each trial trains (the objective is their mean; default: its first).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Fine-tuning trials fine-tune on this share of the training data (the original's shards
    /// for large tasks).
    #[arg(long)]
    pub train_fraction: Option<f64>,
    /// Trials at once: this process and K-1 more of the same command sharing the folder (their
    /// output goes to <out>/worker-N.log).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// The search's folder (default: <from>/search-<algorithm>). The same command again
    /// resumes it; more --trials extend it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the best trials and the best as a command line, and run nothing.
    #[arg(long)]
    pub best: bool,
    /// The backend: cpu (Flex with this project's kernels), ndarray, cuda, wgpu.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Round batch lengths up to a multiple of this (default 1 on CPU, 32 on GPUs).
    #[arg(long)]
    pub pad_multiple: Option<usize>,
    /// Keep each checkpoint's hidden states (and BERT's outputs) in memory across head epochs
    /// and trials, up to this many GiB (0: stream them in every epoch of every trial).
    #[arg(long, default_value_t = 8.0)]
    pub cache_gib: f64,
}

fn settings(args: &SearchArgs, run: &FinishedRun) -> Result<SearchSettings> {
    let task = bertvision_core::tasks::task(&run.config.task)?;
    let text = match &args.space {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("--space {}", path.display()))?,
        ),
        None => None,
    };
    let file = args.space.as_deref().zip(text.as_deref());
    let space = parse_space(&args.params, file, &run.config)?;
    let seeds = match args.seeds.as_slice() {
        [] => vec![run.config.seeds[0]],
        given => given.to_vec(),
    };
    let metric = bertvision_core::pipeline::methods::main_metric(task);
    let settings = SearchSettings {
        from: std::path::absolute(&run.dir).unwrap_or_else(|_| run.dir.clone()),
        finetunes: space.iter().any(|d| d.scope() == Scope::Finetune),
        space,
        algorithm: args.algorithm,
        seed: args.seed,
        startup_trials: args.startup_trials,
        objective: args.objective.clone(),
        metric: metric.to_string(),
        seeds,
        train_fraction: args.train_fraction,
    };
    if let Some(s) = settings
        .seeds
        .iter()
        .find(|s| !run.config.seeds.contains(s))
    {
        bail!(
            "--seeds {s}: {} has no seed {s} (its seeds: {:?})",
            run.dir.display(),
            run.config.seeds
        );
    }
    check_search(run, &settings)?;
    Ok(settings)
}

impl SearchArgs {
    /// The flags' own values, before the run is read (the space against the run's
    /// configuration once it is).
    pub fn validate(&self) -> Result<()> {
        checks::at_least("--trials", self.trials, 1)?;
        if let Some(space) = &self.space {
            checks::existing("--space", space, false)?;
        }
        if let Some(out) = &self.out {
            checks::output_dir("--out", out)?;
        }
        checks::at_least("--parallel", self.parallel, 1)?;
        checks::non_negative("--cache-gib", self.cache_gib)?;
        if let Some(fraction) = self.train_fraction {
            checks::share("--train-fraction", fraction, true)?;
        }
        if let Some(pad) = self.pad_multiple {
            checks::at_least("--pad-multiple", pad, 1)?;
        }
        Ok(())
    }
}

pub fn main(args: &SearchArgs, cache_dir: &Path) -> Result<()> {
    args.validate()?;
    let run = FinishedRun::read(&args.from)?;
    let out = args.out.clone().unwrap_or_else(|| {
        run.dir
            .join(format!("search-{}", algorithm_name(args.algorithm)))
    });
    if args.best && args.params.is_empty() && args.space.is_none() {
        // The search as its folder records it.
        let path = out.join("search.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: no search there", out.display()))?;
        let settings: SearchSettings = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a search's settings ({e})", path.display()))?;
        return print_best(&settings, &out);
    }
    let settings = settings(args, &run)?;
    if args.best {
        return print_best(&settings, &out);
    }
    check_float_type(
        "--encoder-dtype",
        run.config.head.encoder_dtype,
        args.device,
    )?;
    check_float_type("--precision", run.config.precision, args.device)?;
    let model_dir = crate::fetch::resolve_model_dir(&run.config.model, cache_dir)
        .with_context(|| format!("the model of {}", args.from.display()))?;
    if run.data.is_none() {
        bail!(
            "{} does not record its data (data.json): an older run",
            run.dir.display()
        );
    }
    // The folder is claimed before the workers start, so they find the same search.
    SearchDir::claim(&out, &settings)?;
    let workers = spawn_workers(args, &out)?;
    let searched = with_backend!(args.device, |B, dev| search::<burn::backend::Autodiff<B>>(
        args, &run, &settings, &model_dir, &out, dev
    ));
    for (n, mut child) in workers {
        let status = child.wait().context("waiting for a --parallel worker")?;
        if !status.success() {
            eprintln!(
                "worker {n} ended with {status}: see {}",
                out.join(format!("worker-{n}.log")).display()
            );
        }
    }
    searched?;
    print_best(&settings, &out)
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Tpe => "tpe",
        Algorithm::Random => "random",
    }
}

/// K-1 copies of this command with `--parallel 1`, their output in `<out>/worker-N.log`.
fn spawn_workers(args: &SearchArgs, out: &Path) -> Result<Vec<(usize, Child)>> {
    let mut argv: Vec<String> = Vec::new();
    let mut skip = false;
    for a in std::env::args().skip(1) {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a == "--parallel" {
            skip = true;
        } else if !a.starts_with("--parallel=") {
            argv.push(a);
        }
    }
    let exe = std::env::current_exe().context("the bertvision binary's path")?;
    (1..args.parallel)
        .map(|n| {
            let log_path = out.join(format!("worker-{n}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("{}", log_path.display()))?;
            let child = Command::new(&exe)
                .args(&argv)
                .args(["--parallel", "1"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting a --parallel worker")?;
            Ok((n, child))
        })
        .collect()
}

fn search<B: bertvision_core::TrainBackend>(
    args: &SearchArgs,
    run: &FinishedRun,
    settings: &SearchSettings,
    model_dir: &Path,
    out: &Path,
    device: B::Device,
) -> Result<()> {
    let task = bertvision_core::tasks::task(&run.config.task)?;
    let dir = ModelDir::open(model_dir)?;
    let bert_config = BertConfig::from_file(&dir.config)?;
    let Some(source) = &run.data else {
        bail!(
            "{} does not record its data (data.json): an older run",
            run.dir.display()
        );
    };
    let cache = HiddenCache::new(args.cache_gib);
    let request = SearchRequest {
        settings,
        trials: args.trials,
        run,
        base: RunRequest {
            config: &run.config,
            task,
            model_dir: &dir,
            bert_config: &bert_config,
            source,
            out_dir: out,
            device_label: args.device.label(),
            pad_multiple: args
                .pad_multiple
                .unwrap_or(if args.device.is_host() { 1 } else { 32 }),
            from_run: None,
            hidden_cache: (args.cache_gib > 0.0).then_some(&cache),
            export_bert: true,
            devices: &DeviceSet::single(),
        },
    };
    run_search::<B>(&request, &device, &mut Bars::new())?;
    Ok(())
}

/// The best 10 trials and the best as a command line, also written to `<out>/best.md`.
fn print_best(settings: &SearchSettings, out: &Path) -> Result<()> {
    if !out.join("search.json").is_file() {
        bail!("{}: no search there (no search.json)", out.display());
    }
    let folder = SearchDir::claim(out, settings)?;
    let records: Vec<TrialRecord> = folder.finished()?;
    let Some(best) = best_trials(&records, 1).first().copied() else {
        bail!("{}: no finished trial yet", out.display());
    };
    let text = format!(
        "# Search: {} trials ({} finished), objective {} on validation ({})\n\n{}\nBest (trial {}):\n\n    {}\n",
        algorithm_name(settings.algorithm),
        records.len(),
        settings.objective,
        settings.metric,
        best_table(settings, &records, 10),
        best.trial,
        best_command(settings, out, best)
    );
    bertvision_core::fsutil::write_atomic(&out.join("best.md"), text.as_bytes())?;
    println!("{text}");
    Ok(())
}
