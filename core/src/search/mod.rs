//! `bertvision search`: hyper-parameter search on a finished run that holds a validation split.
//! Head settings train heads on the run's kept checkpoints (no fine-tuning per trial; the
//! hidden states stay in memory across trials); a fine-tuning setting in the space makes every
//! trial fine-tune. Trials are scored on `validation` only; dev is reported beside it.
//!
//! | file | what |
//! |---|---|
//! | `space.rs` | the space: `NAME=SPEC` settings, parsed, checked, applied to a `RunConfig` |
//! | `sampler.rs` | the next trial's settings: random, or TPE (`tpe` crate) |
//! | `trials.rs` | the folder: `search.json`, `trial-NNNN/`, `trials.jsonl` |
//! | this file | [`run_search`]: claim trials, run them, record them; the best table and command |

pub mod sampler;
pub mod space;
pub mod trials;

use std::path::Path;
use std::time::Instant;

use self::sampler::propose;
use self::space::Params;
use self::trials::{SearchDir, SearchSettings, TrialRecord, trial_folder};
use crate::error::{Error, Result};
use crate::fsutil::WorkLock;
use crate::pipeline::config::RunConfig;
use crate::pipeline::heads::FinishedRun;
use crate::pipeline::validation::VALIDATION;
use crate::pipeline::{Progress, RunRequest, run_task};

/// What a search needs besides its settings.
pub struct SearchRequest<'a> {
    pub settings: &'a SearchSettings,
    /// Trials to have finished in the folder (a resumed search runs the rest).
    pub trials: usize,
    pub run: &'a FinishedRun,
    /// What every trial's run shares: the task, model, data, device and hidden-state cache, and
    /// the search's folder as `out_dir` (each trial gets its own configuration and folder).
    pub base: RunRequest<'a>,
}

/// The settings of a search on `run`: the space, checked; refused when the run holds no
/// validation split (searching on dev is what this avoids) or the objective is not a method.
pub fn check_search(run: &FinishedRun, settings: &SearchSettings) -> Result<()> {
    if run.config.validation_fraction.is_none() {
        return Err(Error::usage(format!(
            "--from {}: the run holds no validation split (run it with --validation-fraction); \
             a search scored on dev would select on the numbers it reports",
            run.dir.display()
        )));
    }
    let main_keys = crate::pipeline::methods::main_keys();
    if !(main_keys.contains(&settings.objective) || settings.objective.contains('@')) {
        return Err(Error::usage(format!(
            "--objective {}: a method key ({}, or one at a point such as bertvision@0.5)",
            settings.objective,
            main_keys.join(", ")
        )));
    }
    if let Some(d) = settings.space.iter().find(|d| d.name == "extract_at") {
        let kept = &run.config.extract_at;
        let choices = match &d.domain {
            space::Domain::Choice(c) => c.iter().map(|w| w.parse::<f64>().ok()).collect(),
            space::Domain::Range { .. } => vec![None],
        };
        if choices
            .iter()
            .any(|p| !p.is_some_and(|p| kept.contains(&p)))
        {
            return Err(Error::usage(format!(
                "--param extract_at: give a list of the run's kept points ({kept:?})"
            )));
        }
    }
    Ok(())
}

/// The configuration of one trial: the run's, with the trial's settings; heads at the run's
/// last point unless `extract_at` is searched.
fn trial_config(req: &SearchRequest<'_>, params: &Params) -> Result<RunConfig> {
    let run = req.run;
    let s = req.settings;
    let bert_config = req.base.bert_config;
    let mut config = run.config.clone();
    config.extract_at = vec![run.config.last_point()];
    for d in &s.space {
        if let Some(value) = params.get(&d.name) {
            d.apply_to(&mut config, value)?;
        }
    }
    config.seeds = s.seeds.clone();
    if s.finetunes {
        config.train_fraction = s.train_fraction.or(config.train_fraction);
        let end = config.finetune.epochs;
        config.extract_at.iter_mut().for_each(|p| *p = p.min(end));
        config.validate(bert_config)?;
        Ok(config)
    } else {
        let at = config.extract_at.clone();
        let config = run.heads_config(config, Some(at), Some(s.seeds.clone()))?;
        config.validate(bert_config)?;
        Ok(config)
    }
}

/// The objective's metric on `split`, mean over the trial's seeds.
fn mean_score(
    results: &crate::pipeline::results::RunResults,
    s: &SearchSettings,
    split: &str,
) -> Option<f64> {
    let values: Vec<f64> = results
        .seeds
        .iter()
        .filter_map(|seed| {
            seed.metrics
                .get(&s.objective)?
                .get(split)?
                .get(&s.metric)
                .copied()
        })
        .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.len() == results.seeds.len() && mean.is_finite()).then_some(mean)
}

/// A setting's value for people: `3.1000e-3`, `16`, `tenney`.
fn value_text(v: &serde_json::Value) -> String {
    match (v.as_f64(), v.as_str()) {
        (Some(x), _) if !v.is_i64() => format!("{x:.4e}"),
        (_, Some(word)) => word.to_string(),
        _ => v.to_string(),
    }
}

/// "adapter_size=16 head_lr=3.1000e-3" for the log.
pub fn params_line(params: &Params) -> String {
    let pairs = params.iter().map(|(k, v)| format!("{k}={}", value_text(v)));
    pairs.collect::<Vec<_>>().join(" ")
}

/// Runs trials until `req.trials` have finished in the folder (this process takes the trials
/// nobody holds; a killed search resumes its unfinished trial with the settings it had), then
/// returns every finished trial.
pub fn run_search<B: crate::TrainBackend>(
    req: &SearchRequest<'_>,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<Vec<TrialRecord>> {
    let folder = SearchDir::claim(req.base.out_dir, req.settings)?;
    loop {
        let finished = folder.finished()?;
        if finished.len() >= req.trials {
            return Ok(finished);
        }
        let open = (0..req.trials).find_map(|k| {
            if finished.iter().any(|r| r.trial == k) {
                return None;
            }
            match WorkLock::try_acquire(&folder.trial_dir(k)) {
                Ok(Some(lock)) => Some(Ok((k, lock))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        });
        let Some(claimed) = open else {
            // Every unfinished trial is held by another process: theirs to finish.
            progress.log("search: the remaining trials are running in other processes");
            return folder.finished();
        };
        let (trial, _lock) = claimed?;
        let record = run_trial::<B>(req, &folder, trial, &finished, device, progress)?;
        let best = finished
            .iter()
            .chain([&record])
            .filter_map(|r| r.validation.map(|v| (v, r.trial)));
        let (best_value, best_trial) =
            best.fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
        progress.log(&format!(
            "trial {} ({} of {}): {} → validation {} {}, dev {}, {:.1} s; best {:.4} (trial {best_trial})",
            trial,
            finished.len() + 1,
            req.trials,
            params_line(&record.params),
            req.settings.metric,
            fmt(record.validation),
            fmt(record.dev),
            record.seconds,
            best_value
        ));
        folder.append(&record)?;
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.4}"))
}

fn run_trial<B: crate::TrainBackend>(
    req: &SearchRequest<'_>,
    folder: &SearchDir,
    trial: usize,
    finished: &[TrialRecord],
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<TrialRecord> {
    let s = req.settings;
    let params = match folder.proposed(trial)? {
        Some(params) => params,
        None => {
            let history: Vec<(Params, f64)> = finished
                .iter()
                .filter_map(|r| Some((r.params.clone(), r.validation?)))
                .collect();
            let params = propose(
                &s.space,
                &history,
                s.algorithm,
                (s.seed, trial),
                s.startup_trials,
            )?;
            folder.propose(trial, &params)?;
            params
        }
    };
    let config = trial_config(req, &params)?;
    let started = Instant::now();
    let out_dir = folder.trial_dir(trial);
    let request = RunRequest {
        config: &config,
        out_dir: &out_dir,
        from_run: (!s.finetunes).then_some(req.run.dir.as_path()),
        export_bert: s.finetunes,
        ..req.base
    };
    let outcome = run_task::<B>(&request, device, progress)?;
    Ok(TrialRecord {
        trial,
        validation: mean_score(&outcome.results, s, VALIDATION),
        dev: mean_score(&outcome.results, s, "dev"),
        params,
        seconds: started.elapsed().as_secs_f64(),
        folder: trial_folder(trial),
    })
}

/// The best `n` trials by validation score, best first (unscored ones last).
pub fn best_trials(records: &[TrialRecord], n: usize) -> Vec<&TrialRecord> {
    let mut sorted: Vec<&TrialRecord> = records.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &TrialRecord| r.validation.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then(a.trial.cmp(&b.trial))
    });
    sorted.truncate(n);
    sorted
}

/// The summary table (Markdown) of the best `n` trials.
pub fn best_table(settings: &SearchSettings, records: &[TrialRecord], n: usize) -> String {
    let names: Vec<&str> = settings.space.iter().map(|d| d.name.as_str()).collect();
    let mut out = format!(
        "| rank | trial | {} | validation {m} | dev {m} | seconds |\n|---:|---:|{}---:|---:|---:|\n",
        names.join(" | "),
        "---|".repeat(names.len()),
        m = settings.metric
    );
    for (rank, r) in best_trials(records, n).into_iter().enumerate() {
        let cells: Vec<String> = names
            .iter()
            .map(|n| r.params.get(*n).map_or(String::new(), value_text))
            .collect();
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.1} |\n",
            rank + 1,
            r.trial,
            cells.join(" | "),
            fmt(r.validation),
            fmt(r.dev),
            r.seconds
        );
    }
    out
}

/// The best trial as a ready command line: `train-head` on the run with the trial's head
/// settings, or (fine-tuning trials) `run` with the trial's whole configuration.
pub fn best_command(settings: &SearchSettings, dir: &Path, best: &TrialRecord) -> String {
    let quote = |p: &Path| {
        let text = p.display().to_string();
        if text.contains(char::is_whitespace) {
            format!("'{text}'")
        } else {
            text
        }
    };
    if settings.finetunes {
        let config = dir.join(&best.folder).join("config.json");
        return format!(
            "bertvision run --config {} --out {}",
            quote(&config),
            quote(&dir.join("best"))
        );
    }
    let mut words = vec![
        "bertvision train-head --from".to_string(),
        quote(&settings.from),
    ];
    for d in &settings.space {
        let Some(value) = best.params.get(&d.name) else {
            continue;
        };
        let text = value.as_str().map_or(value.to_string(), str::to_string);
        match (d.name.as_str(), text.as_str()) {
            ("skip_last_layer", "true") => words.push(d.flag().into()),
            ("skip_last_layer", _) => {}
            _ => words.extend([d.flag().to_string(), text]),
        }
    }
    words.extend(["--out".to_string(), quote(&dir.join("best"))]);
    words.join(" ")
}
