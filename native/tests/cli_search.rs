//! Search that does not fool itself: a run with a validation split (its best checkpoint chosen
//! on validation, early stopping, the metrics log), `search` on it training heads only (no
//! fine-tuning per trial, the same validation split in every trial), resumed after a kill
//! without repeating a trial, shared by two processes, its best printed as a command that
//! reproduces it; and what it refuses.

use std::path::Path;
use std::process::Command;

use bertvision_tests::{shared_data, strings};
use serde_json::Value;

fn bertvision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bertvision"))
}

/// RTE, 256 training pairs (a fifth held out for validation), 100 dev pairs, 1.5 epochs, BERT
/// scored every quarter epoch and its best checkpoint kept.
fn run_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "run",
        "--task",
        "RTE",
        "--model",
        "splade-tiny",
        "--limit-train",
        "256",
        "--limit-eval",
        "100",
        "--max-length",
        "64",
        "--epochs",
        "1.5",
        "--extract-at",
        "0.5,1",
        "--eval-every-epochs",
        "0.25",
    ]);
    args.extend(strings(extra));
    args.extend([
        "--data-dir".into(),
        shared_data().join("glue").display().to_string(),
    ]);
    args.extend(["--out".into(), out.display().to_string()]);
    args
}

fn succeed(args: &[String]) -> String {
    let out = bertvision().args(args).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} failed: {log}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &log
}

fn fails(args: &[String]) -> String {
    let out = bertvision().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
    log
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn trials(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("trials.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn search_args(run: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "search",
        "--from",
        &run.display().to_string(),
        "--param",
        "head_lr=1e-4..5e-2:log",
        "--param",
        "adapter_size=4,8,16",
        "--param",
        "extract_at=0.5,1",
        "--algorithm",
        "random",
        "--out",
        &out.display().to_string(),
    ]);
    args.extend(strings(extra));
    args
}

/// Kills `args` (SIGKILL) once `trials.jsonl` in `dir` has `n` lines; whether it was running.
fn kill_after_trials(args: &[String], dir: &Path, n: usize) -> bool {
    bertvision_tests::kill_when(bertvision().args(args), || trials(dir).len() >= n)
}

#[test]
fn search_on_validation_trains_heads_only_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let log = succeed(&run_args(
        &run,
        &[
            "--validation-fraction",
            "0.2",
            "--select-best",
            "validation",
            "--early-stop-patience",
            "3",
        ],
    ));
    assert!(
        log.contains("51 of 256 training examples held out"),
        "{log}"
    );
    let results = json(&run.join("results.json"));
    let summary = &results["summary"]["bertvision"];
    assert!(summary["validation"]["accuracy"]["mean"].is_number());
    assert!(summary["dev"]["accuracy"]["mean"].is_number());
    assert_eq!(results["splits"]["validation"]["examples"], 51);
    assert_eq!(results["splits"]["train"]["examples"], 205);
    // The kept bert_final is the best validation point among those scored.
    let selection = &results["seeds"][0]["selection"];
    let points = selection["points"].as_array().unwrap();
    let score = |p: &Value| p["scores"]["validation"]["accuracy"].as_f64().unwrap();
    let best = points
        .iter()
        .find(|p| p["at"] == selection["best"])
        .unwrap();
    assert!(points.iter().all(|p| score(p) <= score(best)));
    assert!(
        points.len() >= 4,
        "at least up to the last extraction point"
    );
    let final_val = results["seeds"][0]["metrics"]["bert_final"]["validation"]["accuracy"].clone();
    assert_eq!(final_val.as_f64().unwrap(), score(best));
    // The metrics log: a line per fine-tuning step and head step, evaluations beside them.
    let lines: Vec<Value> = std::fs::read_to_string(run.join("seed-1/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps = |phase: &str| {
        lines
            .iter()
            .filter(|l| l["phase"] == phase && l["loss"].is_number())
            .count()
    };
    assert_eq!(
        steps("finetune"),
        results["seeds"][0]["finetune_loss"]["steps"]
            .as_u64()
            .unwrap() as usize
    );
    assert!(steps("bertvision@1") > 0 && steps("bertvision@0.5") > 0);
    assert!(
        lines
            .iter()
            .any(|l| l["split"] == "validation" && l["accuracy"].is_number())
    );

    // Search: killed after two trials, resumed; never a trial twice.
    let dir = tmp.path().join("search");
    let args = search_args(&run, &dir, &["--trials", "6"]);
    assert!(
        kill_after_trials(&args, &dir, 2),
        "not killed during the search"
    );
    let before = trials(&dir);
    succeed(&args);
    let after = trials(&dir);
    assert_eq!(after.len(), 6);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "finished trials kept as they were"
    );
    let mut numbers: Vec<u64> = after.iter().map(|t| t["trial"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![0, 1, 2, 3, 4, 5]);
    for t in &after {
        let trial = dir.join(t["folder"].as_str().unwrap());
        let r = json(&trial.join("results.json"));
        assert_eq!(
            r["splits"]["validation"], results["splits"]["validation"],
            "one split"
        );
        assert!(
            r["wall_seconds"].get("finetune").is_none(),
            "no fine-tuning in a trial"
        );
        assert!(!trial.join("seed-1/bert-final.bin").exists());
        let v = r["summary"]["bertvision"]["validation"]["accuracy"]["mean"].as_f64();
        assert_eq!(t["validation"].as_f64(), v);
    }

    // Two processes share a search: every trial once.
    let shared = tmp.path().join("shared");
    succeed(&search_args(
        &run,
        &shared,
        &["--trials", "4", "--parallel", "2", "--seed", "5"],
    ));
    let mut numbers: Vec<u64> = trials(&shared)
        .iter()
        .map(|t| t["trial"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![0, 1, 2, 3]);
    assert!(shared.join("worker-1.log").is_file());

    // The best as a command line, which reproduces the best trial's score.
    let printed = succeed(&strings(&[
        "search",
        "--from",
        &run.display().to_string(),
        "--out",
        &dir.display().to_string(),
        "--best",
    ]));
    let command = printed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("bertvision train-head"))
        .unwrap();
    let words: Vec<String> = command
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    succeed(&words);
    let best = after
        .iter()
        .max_by(|a, b| {
            a["validation"]
                .as_f64()
                .partial_cmp(&b["validation"].as_f64())
                .unwrap()
        })
        .unwrap();
    let again = json(&dir.join("best/results.json"));
    let v = again["summary"]["bertvision"]["validation"]["accuracy"]["mean"].as_f64();
    assert_eq!(v, best["validation"].as_f64(), "{command}");

    // Refused, one line each: a run without a validation split, another search in the folder,
    // selection on dev, an unknown setting.
    let plain = tmp.path().join("plain");
    succeed(&run_args(&plain, &[]));
    let e = fails(&search_args(&plain, &tmp.path().join("s3"), &[]));
    assert!(e.contains("no validation split"), "{e}");
    let mut other = search_args(&run, &dir, &["--trials", "6"]);
    other[4] = "head_lr=1e-3..1e-2:log".into();
    assert!(fails(&other).contains("holds another search (differs in space)"));
    let e = fails(&run_args(
        &tmp.path().join("r4"),
        &["--validation-fraction", "0.2", "--select-best", "dev"],
    ));
    assert!(e.contains("--select-best dev"), "{e}");
    let mut bogus = search_args(&run, &tmp.path().join("s5"), &[]);
    bogus[4] = "dropout=0.1..0.3".into();
    assert!(fails(&bogus).contains("not a setting search can vary"));
}

/// A fine-tuning search's best is a `run --config` command: the trial's configuration exactly.
#[test]
fn run_config_repeats_a_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut args = run_args(&run, &["--validation-fraction", "0.2"]);
    for (flag, value) in [
        ("--epochs", "0.5"),
        ("--extract-at", "0.5"),
        ("--eval-every-epochs", "0.5"),
    ] {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = value.into();
    }
    succeed(&args);
    let again = tmp.path().join("again");
    let config = run.join("config.json").display().to_string();
    succeed(&strings(&[
        "run",
        "--config",
        &config,
        "--out",
        &again.display().to_string(),
    ]));
    let (a, b) = (
        json(&run.join("results.json")),
        json(&again.join("results.json")),
    );
    assert_eq!(a["config"], b["config"]);
    assert_eq!(
        a["summary"], b["summary"],
        "the same configuration, the same numbers"
    );
    let e = fails(&strings(&["run", "--config", &config, "--lr", "1e-3"]));
    assert!(e.contains("cannot be used with"), "{e}");
}
