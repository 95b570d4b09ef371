//! A whole run of one task: the run folder (one configuration per folder), the data, every seed
//! (claimed through a lock, so several processes of one command share the seeds), and the
//! results over seeds (`results.json`, `report.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::charts::run_charts;
use super::config::RunConfig;
use super::context::{RunContext, SeedResult, write_json};
use super::data::{DataSource, TaskData, load_task_data};
use super::progress::Progress;
use super::report::{ReportInput, method_descriptions, report_markdown};
use super::results::{
    ModelInfo, ParameterCounts, RESULTS_FORMAT, RunResults, SplitInfo, summarise,
};
use super::sample::fraction_of;
use super::seed::run_seed;
use crate::bert::BertConfig;
use crate::error::{Error, Result};
use crate::fsutil::{WorkLock, write_atomic};
use crate::models::ModelDir;
use crate::tasks::TaskSpec;
use crate::tokenize::BertTokenizer;

/// What a run needs besides its configuration: where the model, the data and the results are,
/// and the device it runs on.
#[derive(Clone, Copy)]
pub struct RunRequest<'a> {
    /// Validated (`RunConfig::validate`).
    pub config: &'a RunConfig,
    pub task: &'static TaskSpec,
    pub model_dir: &'a ModelDir,
    pub bert_config: &'a BertConfig,
    pub source: &'a DataSource,
    pub out_dir: &'a Path,
    /// The device and backend, as reported ("cpu (flex)").
    pub device_label: &'a str,
    /// Batch lengths are rounded up to a multiple of this (1 on CPU; larger on GPUs).
    pub pad_multiple: usize,
    /// `train-head`: the finished run whose fine-tuning is read instead of repeated.
    pub from_run: Option<&'a Path>,
    /// Hidden states kept in memory across head epochs (and, shared by `search`, across
    /// trials); `None`: streamed.
    pub hidden_cache: Option<&'a super::hidden_cache::HiddenCache>,
    /// Also export BERT (`seed-N/export/bert/`, the model's size); `search`'s head trials leave
    /// it out, the run they read holds it.
    pub export_bert: bool,
}

/// What a finished run wrote.
pub struct RunOutcome {
    pub results: RunResults,
    pub results_path: PathBuf,
    /// `report.md`'s text.
    pub report: String,
}

/// Runs (or resumes) every seed of `req` and writes the results over seeds.
pub fn run_task<B: crate::TrainBackend>(
    req: &RunRequest<'_>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<RunOutcome> {
    claim_folder(req.out_dir, req.config, progress)?;
    let data_record = check_data(req.out_dir, req.source)?;
    let started = Instant::now();
    let mut tokenizer = BertTokenizer::from_file(&req.model_dir.tokenizer)?;
    let data = load_data(req, &mut tokenizer, progress)?;
    if let Some((path, source)) = data_record {
        write_json(&path, &source)?;
    }
    let data_seconds = started.elapsed().as_secs_f64();
    let ctx = RunContext {
        config: req.config,
        task: req.task,
        model_dir: req.model_dir,
        data: &data,
        train: &data.train,
        pad_id: tokenizer.pad_id(),
        pad_multiple: req.pad_multiple,
        out_dir: req.out_dir,
        from_run: req.from_run,
        hidden_cache: req.hidden_cache,
        export_bert: req.export_bert,
    };
    let params = parameter_counts(&ctx, req.bert_config);
    progress.log(&format!(
        "{}: BERT {} parameters, AdapterPooler {} ({:.3}% of BERT); {} training examples on {}",
        req.task.name,
        params.bert,
        params.head,
        100.0 * params.head_share_of_bert,
        data.train.len(),
        req.device_label
    ));
    let seeds = run_seeds::<B>(&ctx, device, progress)?;
    let mut wall: BTreeMap<String, f64> = BTreeMap::new();
    wall.insert("data".into(), data_seconds);
    for s in &seeds {
        for (k, v) in &s.wall_seconds {
            *wall.entry(k.clone()).or_default() += v;
        }
    }
    wall.insert("total_this_process".into(), started.elapsed().as_secs_f64());
    let results = assemble_results(req, &data, params, seeds, wall);
    let results_path = req.out_dir.join("results.json");
    write_json(&results_path, &results)?;
    let charts = run_charts(&results)?;
    let chart_dir = req.out_dir.join("charts");
    std::fs::create_dir_all(&chart_dir).map_err(|e| Error::io(&chart_dir, e))?;
    for chart in &charts {
        write_atomic(&chart_dir.join(&chart.file), chart.svg.as_bytes())?;
    }
    let report = report_markdown(&ReportInput {
        task: req.task,
        config: req.config,
        summary: &results.summary,
        bert_params: results.parameters.bert,
        head_params: results.parameters.head,
        wall: &results.wall_seconds,
        seeds: results.seeds.len(),
        charts: &charts,
    });
    write_atomic(&req.out_dir.join("report.md"), report.as_bytes())?;
    Ok(RunOutcome {
        results,
        results_path,
        report,
    })
}

/// Makes `out` the folder of `config`'s run: a new folder gets `config.json`; a folder of the
/// same configuration is resumed (also when its `config.json` spells an older version's names),
/// with other seeds too (each seed has its own folder, and `results.json` gathers the seeds
/// asked for); one of other settings is refused, naming them, since resuming it would mix
/// results.
fn claim_folder(out: &Path, config: &RunConfig, progress: &mut dyn Progress) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let path = out.join("config.json");
    let json = serde_json::to_string_pretty(config).expect("plain data");
    let Ok(existing) = std::fs::read_to_string(&path) else {
        return write_atomic(&path, json.as_bytes());
    };
    if existing == json {
        progress.log(&format!("resuming the run in {}", out.display()));
        return Ok(());
    }
    let old = serde_json::from_str::<RunConfig>(&existing).ok();
    match old {
        Some(old) if old == *config => {}
        Some(old)
            if RunConfig {
                seeds: config.seeds.clone(),
                ..old.clone()
            } == *config =>
        {
            progress.log(&format!(
                "{}: seeds {:?} (before: {:?}); finished seeds are kept",
                out.display(),
                config.seeds,
                old.seeds
            ));
            write_atomic(&path, json.as_bytes())?;
        }
        _ => {
            return Err(Error::usage(format!(
                "{} holds a run with other settings ({}); use another --out or delete it",
                out.display(),
                differing_keys(&existing, &json)
            )));
        }
    }
    progress.log(&format!("resuming the run in {}", out.display()));
    Ok(())
}

/// The top-level `config.json` keys whose values differ, for the refusal's message (the seeds
/// aside: they may differ).
fn differing_keys(old: &str, new: &str) -> String {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    let (Some(serde_json::Value::Object(old)), Some(serde_json::Value::Object(new))) =
        (parse(old), parse(new))
    else {
        return "its config.json is not a run configuration".to_string();
    };
    let keys: Vec<&str> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .chain(
            old.keys()
                .filter(|k| !new.contains_key(*k))
                .map(|k| k.as_str()),
        )
        .filter(|k| *k != "seeds")
        .collect();
    if keys.is_empty() {
        "an older version's spelling of them".to_string()
    } else {
        format!("differs in {}", keys.join(", "))
    }
}

/// Where the run's data is recorded (`data.json`, absolute paths), so that `train-head` reads
/// the same: a folder whose run read other files is refused, since resuming it would mix
/// results; a new folder gets the record once the data loaded (the path and the record to
/// write are returned).
fn check_data(out: &Path, source: &DataSource) -> Result<Option<(PathBuf, DataSource)>> {
    let path = out.join("data.json");
    let source = source.absolute();
    match super::context::read_json::<DataSource>(&path)? {
        // Resolved again: an older record may spell the same file with `..`.
        Some(recorded) if recorded.absolute() != source => Err(Error::usage(format!(
            "{} holds a run on other data ({recorded:?}, not {source:?}); use another --out or delete it",
            out.display()
        ))),
        Some(_) => Ok(None),
        None => Ok(Some((path, source))),
    }
}

/// Loads and tokenises the task's data, logs what the loaders noted, and writes the exact SQuAD
/// questions evaluated beside the results (so the official evaluator can be run on our files).
fn load_data(
    req: &RunRequest<'_>,
    tokenizer: &mut BertTokenizer,
    progress: &mut dyn Progress,
) -> Result<TaskData> {
    let config = req.config;
    let data = load_task_data(req.task, req.source, tokenizer, config)?;
    for note in &data.notes {
        progress.log(note);
    }
    for split in &data.eval {
        if let Some((dataset, _, _)) = &split.squad {
            write_atomic(
                &req.out_dir.join(format!("{}.squad.json", split.name)),
                dataset.to_json().as_bytes(),
            )?;
        }
    }
    Ok(data)
}

fn parameter_counts(ctx: &RunContext<'_>, bert: &BertConfig) -> ParameterCounts {
    let (bert_params, head_params) = (bert.num_params(true), ctx.head_config(bert).num_params());
    ParameterCounts {
        bert: bert_params,
        head: head_params,
        head_share_of_bert: head_params as f64 / bert_params as f64,
    }
}

/// Every seed's result, in the configuration's order. Seeds are claimed through a lock in
/// their folder, so the same command started several times (on one GPU, or on several sharing a
/// disk) splits the seeds between processes; a seed another live process holds is run (that is,
/// read back or resumed) once it lets go.
fn run_seeds<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<Vec<SeedResult>> {
    let mut done: BTreeMap<u64, SeedResult> = BTreeMap::new();
    let mut held_elsewhere = Vec::new();
    for &seed in &ctx.config.seeds {
        match WorkLock::try_acquire(&ctx.seed_dir(seed))? {
            Some(_claim) => {
                done.insert(seed, run_one_seed::<B>(ctx, seed, device, progress)?);
            }
            None => {
                progress.log(&format!("seed {seed}: another process is running it"));
                held_elsewhere.push(seed);
            }
        }
    }
    for seed in held_elsewhere {
        let _claim = WorkLock::acquire(&ctx.seed_dir(seed))?;
        done.insert(seed, run_one_seed::<B>(ctx, seed, device, progress)?);
    }
    Ok(ctx
        .config
        .seeds
        .iter()
        .filter_map(|s| done.remove(s))
        .collect())
}

/// One seed, on its `--train-fraction` sample of the training data when there is one.
fn run_one_seed<B: crate::TrainBackend>(
    ctx: &RunContext<'_>,
    seed: u64,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<SeedResult> {
    match ctx.config.train_fraction {
        Some(fraction) if fraction < 1.0 => {
            let train = fraction_of(ctx.train, seed, fraction);
            progress.log(&format!(
                "seed {seed}: {} of {} training examples (--train-fraction {fraction})",
                train.len(),
                ctx.train.len()
            ));
            let ctx = RunContext {
                train: &train,
                ..*ctx
            };
            run_seed::<B>(&ctx, seed, device, progress)
        }
        _ => run_seed::<B>(ctx, seed, device, progress),
    }
}

fn assemble_results(
    req: &RunRequest<'_>,
    data: &TaskData,
    parameters: ParameterCounts,
    seeds: Vec<SeedResult>,
    wall_seconds: BTreeMap<String, f64>,
) -> RunResults {
    RunResults {
        format: RESULTS_FORMAT.to_string(),
        task: req.task.name.to_string(),
        model: ModelInfo {
            spec: req.config.model.clone(),
            dir: req.model_dir.root.display().to_string(),
            config: req.bert_config.clone(),
        },
        device: req.device_label.to_string(),
        config: req.config.clone(),
        from_run: req.from_run.map(|p| p.display().to_string()),
        methods: method_descriptions(req.config, &seeds),
        parameters,
        data_notes: data.notes.clone(),
        splits: std::iter::once(("train".to_string(), SplitInfo::of(&data.train)))
            .chain(
                data.eval
                    .iter()
                    .map(|s| (s.name.clone(), SplitInfo::of(&s.samples))),
            )
            .collect(),
        summary: summarise(&seeds),
        seeds,
        wall_seconds,
        versions: [
            (
                "bertvision".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            ("burn".to_string(), "0.21.0".to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::NoProgress;

    fn config() -> RunConfig {
        let bert = BertConfig::from_json(Path::new("config.json"), "{}").unwrap();
        RunConfig::new(crate::tasks::task("RTE").unwrap(), "m", &bert)
    }

    /// Other seeds resume a folder (its `config.json` then names them); other settings are
    /// refused, naming what differs, and leave `config.json` as it was.
    #[test]
    fn a_folder_takes_other_seeds_but_not_other_settings() {
        let dir = std::env::temp_dir().join(format!("bv-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = config();
        claim_folder(&dir, &cfg, &mut NoProgress).unwrap();
        cfg.seeds = vec![1, 2, 3];
        claim_folder(&dir, &cfg, &mut NoProgress).unwrap();
        let read = |d: &Path| std::fs::read_to_string(d.join("config.json")).unwrap();
        let written: RunConfig = serde_json::from_str(&read(&dir)).unwrap();
        assert_eq!(written.seeds, vec![1, 2, 3]);
        let before = read(&dir);
        let mut other = cfg.clone();
        other.finetune.epochs = 3.0;
        other.max_len += 1;
        other.seeds = vec![4];
        let err = claim_folder(&dir, &other, &mut NoProgress)
            .unwrap_err()
            .to_string();
        assert!(err.contains("other settings (differs in "), "{err}");
        assert!(err.contains("max_len") && err.contains("finetune") && !err.contains("seeds"));
        assert_eq!(read(&dir), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
