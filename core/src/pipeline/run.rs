//! A whole run of one task: the run folder (one configuration per folder), the data, every seed
//! (claimed through a lock, so several processes of one command share the seeds), and the
//! results over seeds (`results.json`, `report.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::charts::run_charts;
use super::config::RunConfig;
use super::context::{RunContext, SeedResult, write_json};
use super::data::{DataRecord, DataSource, TaskData, load_task_data};
use super::progress::Progress;
use super::report::{ReportInput, method_descriptions, report_markdown};
use super::results::{ModelInfo, ParameterCounts, RESULTS_FORMAT, RunResults, summarise};
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
    /// `--devices`: fine-tuning data-parallel over these peers (results do not depend on it,
    /// so it is not part of the configuration).
    pub devices: &'a crate::train::DeviceSet,
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
    // Nothing is written before the data has loaded and matched the folder's record: a run that
    // fails on its data leaves the folder as it was (a new folder empty).
    let claim = claim_folder(req.out_dir, req.config)?;
    let recorded = check_data_source(req.out_dir, req.source, claim.taken_over)?;
    let started = Instant::now();
    let mut tokenizer = BertTokenizer::from_file(&req.model_dir.tokenizer)?;
    let data = load_data(req, &mut tokenizer, progress)?;
    let record = DataRecord::of(req.source, &data);
    if let Some(change) = recorded.as_ref().and_then(|r| r.changed_splits(&record)) {
        return Err(Error::usage(format!(
            "{} holds a run on other data: the same files now give other examples ({change}); use another --out or delete it",
            req.out_dir.display()
        )));
    }
    claim.commit(progress)?;
    if recorded.as_ref() != Some(&record) {
        write_json(&req.out_dir.join("data.json"), &record)?;
    }
    let stale = crate::fsutil::remove_stale_temps(req.out_dir)?;
    if stale > 0 {
        progress.log(&format!(
            "removed {stale} temporary file(s) of killed processes in {}",
            req.out_dir.display()
        ));
    }
    write_squad_files(req, &data)?;
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
        devices: req.devices,
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
    // Only the seeds' recorded phases: results.json is the same whichever process (and how
    // many) ran the seeds, and however often it is rewritten; this process's times are logged.
    let mut wall: BTreeMap<String, f64> = BTreeMap::new();
    for s in &seeds {
        for (k, v) in &s.wall_seconds {
            *wall.entry(k.clone()).or_default() += v;
        }
    }
    progress.log(&format!(
        "this process: data {data_seconds:.1} s, total {:.1} s",
        started.elapsed().as_secs_f64()
    ));
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

/// What `run_task` may do with a folder, decided before anything is written there: write
/// `config.json` (a new folder, other seeds, or a folder whose run did no work), or resume.
struct FolderClaim {
    path: PathBuf,
    json: String,
    write: bool,
    /// The folder's `config.json` was of other settings, but no seed had started: its record
    /// of the data is no longer the run's either.
    taken_over: bool,
    log: String,
}

impl FolderClaim {
    fn commit(self, progress: &mut dyn Progress) -> Result<()> {
        progress.log(&self.log);
        if self.write {
            write_atomic(&self.path, self.json.as_bytes())?;
        }
        Ok(())
    }
}

/// Decides whether `out` can be the folder of `config`'s run: a new folder, a folder of the same
/// configuration (also when its `config.json` spells an older version's names) or of other seeds
/// only (each seed has its own folder; `results.json` gathers the seeds asked for) is taken; a
/// folder of other settings is refused, naming each difference, since resuming it would mix
/// results, unless none of its seeds started (a run that failed before any work).
fn claim_folder(out: &Path, config: &RunConfig) -> Result<FolderClaim> {
    let path = out.join("config.json");
    let json = serde_json::to_string_pretty(config).expect("plain data");
    let mut claim = FolderClaim {
        path: path.clone(),
        json: json.clone(),
        write: false,
        taken_over: false,
        log: format!("resuming the run in {}", out.display()),
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // The folder itself is made by `commit` (config.json's write), after the data loaded.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            claim.write = true;
            claim.log = format!("a new run in {}", out.display());
            return Ok(claim);
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    if existing == json {
        return Ok(claim);
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
            claim.write = true;
            claim.log = format!(
                "{}: seeds {:?} (before: {:?}); finished seeds are kept",
                out.display(),
                config.seeds,
                old.seeds
            );
        }
        _ if !any_seed_started(out)? => {
            claim.write = true;
            claim.taken_over = true;
            claim.log = format!(
                "{}: its run of other settings never started a seed; it is replaced ({})",
                out.display(),
                differing_keys(&existing, &json)
            );
        }
        _ => {
            return Err(Error::usage(format!(
                "{} holds a run with other settings ({}); use another --out or delete it",
                out.display(),
                differing_keys(&existing, &json)
            )));
        }
    }
    Ok(claim)
}

/// Whether any `seed-N/` folder of `out` holds anything but its lock: work a new configuration
/// must not be mixed with.
fn any_seed_started(out: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("seed-") || !entry.path().is_dir() {
            continue;
        }
        let inside = std::fs::read_dir(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        if inside
            .flatten()
            .any(|f| f.file_name() != crate::fsutil::WORK_LOCK_FILE)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every difference between two `config.json` texts, as `key: old → new` (nested keys with
/// dots), the seeds aside: they may differ.
fn differing_keys(old: &str, new: &str) -> String {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    let (Some(old), Some(new)) = (parse(old), parse(new)) else {
        return "its config.json is not a run configuration".to_string();
    };
    if !old.is_object() {
        return "its config.json is not a run configuration".to_string();
    }
    let mut changes = Vec::new();
    json_differences("", &old, &new, &mut changes);
    changes.retain(|c| !c.starts_with("seeds:"));
    if changes.is_empty() {
        "an older version's spelling of them".to_string()
    } else {
        format!("differs in {}", changes.join(", "))
    }
}

fn json_differences(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                let (was, is) = (a.get(key), b.get(key));
                match (was, is) {
                    (Some(was), Some(is)) => json_differences(&name, was, is, out),
                    _ => out.push(format!(
                        "{name}: {} → {}",
                        was.map_or("(absent)".into(), |v| v.to_string()),
                        is.map_or("(absent)".into(), |v| v.to_string())
                    )),
                }
            }
        }
        (was, is) if was != is => out.push(format!("{prefix}: {was} → {is}")),
        _ => {}
    }
}

/// The folder's record of its data (`data.json`), after checking that it names the files of
/// `source`: a folder whose run read other files is refused, since resuming it would mix
/// results (`None`: no record yet, or one of a replaced run).
fn check_data_source(
    out: &Path,
    source: &DataSource,
    taken_over: bool,
) -> Result<Option<DataRecord>> {
    let recorded = DataRecord::read(&out.join("data.json"))?.filter(|_| !taken_over);
    let source = source.absolute();
    match recorded {
        // Resolved again: an older record may spell the same file with `..`.
        Some(r) if r.source.absolute() != source => Err(Error::usage(format!(
            "{} holds a run on other data ({:?}, not {source:?}); use another --out or delete it",
            out.display(),
            r.source
        ))),
        recorded => Ok(recorded),
    }
}

/// Loads and tokenises the task's data and logs what the loaders noted.
fn load_data(
    req: &RunRequest<'_>,
    tokenizer: &mut BertTokenizer,
    progress: &mut dyn Progress,
) -> Result<TaskData> {
    let config = req.config;
    // From the absolute paths: the notes (which name the files, and go into results.json) are
    // then the same from whichever folder the run is started or resumed.
    let data = load_task_data(req.task, &req.source.absolute(), tokenizer, config)?;
    for note in &data.notes {
        progress.log(note);
    }
    Ok(data)
}

/// The exact SQuAD questions evaluated, beside the results (so that the official evaluator can
/// be run on our files).
fn write_squad_files(req: &RunRequest<'_>, data: &TaskData) -> Result<()> {
    for split in &data.eval {
        if let Some((dataset, _, _)) = &split.squad {
            write_atomic(
                &req.out_dir.join(format!("{}.squad.json", split.name)),
                dataset.to_json().as_bytes(),
            )?;
        }
    }
    Ok(())
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
        splits: data.split_infos(),
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
    /// refused, naming what differs with both values, and leave `config.json` as it was; a
    /// folder whose run never started a seed is taken over.
    #[test]
    fn a_folder_takes_other_seeds_but_not_other_settings() {
        let dir = std::env::temp_dir().join(format!("bv-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = config();
        let claim = claim_folder(&dir, &cfg).unwrap();
        assert!(!dir.join("config.json").exists(), "written before commit");
        claim.commit(&mut NoProgress).unwrap();
        std::fs::create_dir_all(dir.join("seed-1")).unwrap();
        std::fs::write(dir.join("seed-1/finetune.loss.json"), "[]").unwrap();
        cfg.seeds = vec![1, 2, 3];
        claim_folder(&dir, &cfg)
            .unwrap()
            .commit(&mut NoProgress)
            .unwrap();
        let read = |d: &Path| std::fs::read_to_string(d.join("config.json")).unwrap();
        let written: RunConfig = serde_json::from_str(&read(&dir)).unwrap();
        assert_eq!(written.seeds, vec![1, 2, 3]);
        let before = read(&dir);
        let mut other = cfg.clone();
        other.finetune.epochs = 3.0;
        other.max_len += 1;
        other.seeds = vec![4];
        let err = claim_folder(&dir, &other).err().unwrap().to_string();
        assert!(err.contains("other settings (differs in "), "{err}");
        assert!(err.contains("max_len: 256 → 257"), "{err}");
        assert!(err.contains("finetune.epochs: 2.0 → 3.0"), "{err}");
        assert!(!err.contains("seeds"), "{err}");
        assert_eq!(read(&dir), before);
        std::fs::remove_dir_all(dir.join("seed-1")).unwrap();
        let claim = claim_folder(&dir, &other).unwrap();
        assert!(claim.taken_over && claim.write);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
