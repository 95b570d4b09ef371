//! `bertvision train-head --from RUN`: new AdapterPoolers on a finished run's kept checkpoints
//! (another head configuration, other points or seeds, less data), never fine-tuning again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertvision_core::bert::BertConfig;
use bertvision_core::checks;
use bertvision_core::models::ModelDir;
use bertvision_core::pipeline::data::DataSource;
use bertvision_core::pipeline::heads::FinishedRun;
use bertvision_core::pipeline::hidden_cache::HiddenCache;
use bertvision_core::pipeline::{RunRequest, run_task};
use clap::Args;

use crate::backend::{DeviceArg, check_float_type};
use crate::progress::Bars;
use crate::run::{DataArgs, HeadArgs, data_source};

#[derive(Debug, Args)]
pub struct TrainHeadArgs {
    /// The folder of a finished `bertvision run` (its config.json, data.json and seed-N/
    /// checkpoints are read, never written).
    #[arg(long)]
    pub from: PathBuf,
    /// The run's extraction points to train heads at (default: all of them).
    #[arg(long, value_delimiter = ',')]
    pub at: Vec<f64>,
    /// The run's seeds to train heads for (default: all of them).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Output folder (default: <from>/heads/<what differs from the run>). The same command
    /// again resumes it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The backend: cpu (Flex with this project's kernels), ndarray, cuda, wgpu.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Train the heads and evaluate data-parallel over several devices: `cuda:0,1,2,3`, or
    /// `cpu:2` (two peers on the CPU). The batches and results are one device's. Sets
    /// --device's backend.
    #[arg(long, conflicts_with = "device")]
    pub devices: Option<crate::backend::DevicesArg>,
    /// Round batch lengths up to a multiple of this (default 1 on CPU, 32 on GPUs).
    #[arg(long)]
    pub pad_multiple: Option<usize>,
    /// Keep the checkpoint's hidden states in memory, up to this many GiB, so that head
    /// epochs after the first do not run the encoder again (0: stream them every epoch).
    #[arg(long, default_value_t = 0.0)]
    pub cache_gib: f64,
    #[command(flatten)]
    pub head: HeadArgs,
    /// Where the run's data is, for runs that did not record it (`data.json`); recorded data
    /// is used as it is.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `train-head`: reads the run, applies the head flags to its configuration, resolves its
/// model, and runs [`train_heads`] on the chosen backend (with autodiff).
impl TrainHeadArgs {
    /// The backend: --devices' kind, else --device.
    pub fn device(&self) -> DeviceArg {
        crate::backend::DevicesArg::backend(self.devices.as_ref(), self.device)
    }

    /// The flags' own values, before the run is read (the head settings are checked with the
    /// run's configuration, by `RunConfig::validate`).
    pub fn validate(&self) -> Result<()> {
        for &point in &self.at {
            checks::positive("--at", point)?;
        }
        self.data.validate()?;
        checks::non_negative("--cache-gib", self.cache_gib)?;
        if let Some(out) = &self.out {
            checks::output_dir("--out", out)?;
        }
        if let Some(pad) = self.pad_multiple {
            checks::at_least("--pad-multiple", pad, 1)?;
        }
        Ok(())
    }
}

pub fn main(args: &TrainHeadArgs, cache_dir: &Path) -> Result<()> {
    args.validate()?;
    let run = FinishedRun::read(&args.from)?;
    if run.data.is_some() && args.data.given() {
        bail!(
            "{} records its data (data.json), which its heads must be trained on: leave out the data flags",
            args.from.display()
        );
    }
    let mut config = run.config.clone();
    args.head.apply(&mut config);
    check_float_type("--encoder-dtype", config.head.encoder_dtype, args.device())?;
    let model_dir = crate::fetch::resolve_model_dir(&config.model, cache_dir)
        .with_context(|| format!("the model of {}", args.from.display()))?;
    // The flags' values first, then whether the run kept what they ask for.
    let bert_config = BertConfig::from_file(&ModelDir::open(&model_dir)?.config)?;
    config.validate(&bert_config)?;
    let at = (!args.at.is_empty()).then(|| args.at.clone());
    let seeds = (!args.seeds.is_empty()).then(|| args.seeds.clone());
    let config = run.heads_config(config, at, seeds)?;
    let task = bertvision_core::tasks::task(&config.task)?;
    let flags_data = data_source(&args.data, task, cache_dir);
    with_backend!(args.device(), |B, dev| train_heads::<
        burn::backend::Autodiff<B>,
    >(
        args,
        &run,
        &config,
        &model_dir,
        &flags_data,
        dev
    ))
}

fn train_heads<B: bertvision_core::TrainBackend>(
    args: &TrainHeadArgs,
    run: &FinishedRun,
    config: &bertvision_core::pipeline::config::RunConfig,
    model_dir: &Path,
    flags_data: &Result<DataSource>,
    device: B::Device,
) -> Result<()> {
    // The main device is the first peer's (`--devices cuda:1` runs on GPU 1).
    let devices = crate::backend::DevicesArg::peers(args.devices.as_ref());
    let device = devices.devices(&device).swap_remove(0);
    let task = bertvision_core::tasks::task(&config.task)?;
    let dir = ModelDir::open(model_dir)?;
    let bert_config = BertConfig::from_file(&dir.config)?;
    config.validate(&bert_config)?;
    let source = match (&run.data, flags_data) {
        (Some(recorded), _) => recorded.clone(),
        (None, Ok(given)) => given.clone(),
        (None, Err(e)) => bail!(
            "{} does not record its data (an older run): give its data flags ({e})",
            run.dir.display()
        ),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| run.dir.join("heads").join(run.heads_name(config)));
    let cache = HiddenCache::new(args.cache_gib);
    let request = RunRequest {
        config,
        task,
        model_dir: &dir,
        bert_config: &bert_config,
        source: &source,
        out_dir: &out,
        device_label: args.device().label(),
        pad_multiple: args
            .pad_multiple
            .unwrap_or(if args.device().is_host() { 1 } else { 32 }),
        from_run: Some(&run.dir),
        hidden_cache: (args.cache_gib > 0.0).then_some(&cache),
        export_bert: true,
        devices: &devices,
    };
    let outcome = run_task::<B>(&request, &device, &mut Bars::new())?;
    println!("{}", outcome.report);
    eprintln!("results: {}", outcome.results_path.display());
    Ok(())
}
