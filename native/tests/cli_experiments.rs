//! Experiments from one fine-tune: several extraction points, evaluation-only points and heads
//! on less data in one `run`; `train-head` on its kept checkpoints reproducing the run's heads
//! bit for bit, training other heads without touching the run, resuming after a kill, and
//! refusing a run whose checkpoints are gone.

use std::path::{Path, PathBuf};
use std::process::Command;

use bertvision_tests::{shared_data, strings};
use serde_json::Value;

fn bertvision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bertvision"))
}

/// RTE, 256 training pairs, 100 dev pairs, one epoch with checkpoints at half and the end,
/// BERT also scored at every quarter, heads also on half the data.
fn run_args(out: &Path) -> Vec<String> {
    let mut args = strings(&[
        "run",
        "--task",
        "RTE",
        "--model",
        "splade-tiny",
        "--seeds",
        "1",
        "--limit-train",
        "256",
        "--limit-eval",
        "100",
        "--max-length",
        "64",
        "--epochs",
        "1",
        "--extract-at",
        "1,0.5",
        "--eval-every-epochs",
        "0.25",
        "--head-train-fraction",
        "0.5",
        "--checkpoint-every",
        "2",
    ]);
    args.extend([
        "--data-dir".into(),
        shared_data().join("glue").display().to_string(),
    ]);
    args.extend(["--out".into(), out.display().to_string()]);
    args
}

fn run(args: &[String]) -> (Value, String) {
    let out = bertvision().args(args).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {log}");
    let dir = PathBuf::from(&args[args.iter().position(|a| a == "--out").unwrap() + 1]);
    let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
    (serde_json::from_str(&text).unwrap(), log)
}

/// Starts `args`, kills it (SIGKILL) once `file` exists; whether it was still running then.
fn kill_when(args: &[String], file: &Path) -> bool {
    bertvision_tests::kill_when(bertvision().args(args), || file.exists())
}

fn metrics(results: &Value, key: &str) -> Value {
    results["seeds"][0]["metrics"][key].clone()
}

/// Every file of the run's seed folder with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn one_fine_tune_serves_every_point_and_train_head_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let (results, log) = run(&run_args(&run_dir));
    assert_eq!(
        log.matches("seed 1 fine-tune: 8 steps (").count(),
        1,
        "one fine-tuning: {log}"
    );
    assert!(
        log.contains("BERT after 0.25 epochs: dev accuracy"),
        "{log}"
    );
    for key in [
        "bert@0.25",
        "bert@0.5",
        "bert@0.75",
        "bert@1",
        "bertvision@0.5",
        "bertvision@1",
        "bertvision@0.5/0.5",
        "bertvision@1/0.5",
        "ensemble_mean@0.5",
        "ensemble_max@1/0.5",
    ] {
        let acc = metrics(&results, key)["dev"]["accuracy"].as_f64();
        assert!(
            acc.is_some_and(|a| (0.0..=1.0).contains(&a)),
            "{key}: {acc:?}"
        );
    }
    // The main keys mean the last point.
    for (main, at) in [
        ("bert_extract", "bert@1"),
        ("bertvision", "bertvision@1"),
        ("ensemble_mean", "ensemble_mean@1"),
        ("bert_final", "bert@1"),
    ] {
        assert_eq!(
            metrics(&results, main),
            metrics(&results, at),
            "{main} vs {at}"
        );
    }
    // Costs: every point of the curve, steps and seconds increasing, heads at the two points.
    let costs = results["seeds"][0]["costs"].as_array().unwrap();
    let at: Vec<f64> = costs.iter().map(|c| c["at"].as_f64().unwrap()).collect();
    assert_eq!(at, [0.25, 0.5, 0.75, 1.0]);
    let steps: Vec<u64> = costs
        .iter()
        .map(|c| c["finetune_steps"].as_u64().unwrap())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert_eq!(
        *steps.last().unwrap(),
        8,
        "256 pairs in batches of 32: 8 steps"
    );
    let seconds: Vec<f64> = costs
        .iter()
        .map(|c| c["finetune_seconds"].as_f64().unwrap())
        .collect();
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]), "{seconds:?}");
    let heads: Vec<bool> = costs
        .iter()
        .map(|c| c["head_seconds"].is_number())
        .collect();
    assert_eq!(heads, [false, true, false, true]);
    for file in [
        "charts/dev-accuracy-by-epochs.svg",
        "charts/dev-accuracy-by-seconds.svg",
        "charts/dev-accuracy-by-head-data.svg",
        "charts/finetune-loss.svg",
        "seed-1/bert-at-0.5.bin",
        "seed-1/bert-extract.bin",
        "seed-1/predictions/bertvision@0.5.dev.json",
        "seed-1/predictions/bertvision@1-of-0.5.dev.json",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let svg = std::fs::read_to_string(run_dir.join("charts/dev-accuracy-by-epochs.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("BERTVision"),
        "{svg:.200}"
    );
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(
        report.contains("at every point") && report.contains("charts/"),
        "{report}"
    );

    // The same command on other data (here: a copy of the folder) is refused: a folder never
    // mixes results of different data.
    let copy = tmp.path().join("glue-copy/RTE");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["train.tsv", "dev.tsv"] {
        std::fs::copy(shared_data().join("glue/RTE").join(f), copy.join(f)).unwrap();
    }
    let mut other = run_args(&run_dir);
    let i = other.iter().position(|a| a == "--data-dir").unwrap();
    other[i + 1] = tmp.path().join("glue-copy").display().to_string();
    let refused = bertvision().args(&other).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds a run on other data"), "{stderr}");

    // train-head with the run's own head configuration: the run's heads, bit for bit, and the
    // run's folder untouched.
    let before = snapshot(&run_dir.join("seed-1"));
    let same = tmp.path().join("same");
    let from = run_dir.display().to_string();
    let (again, log) = run(&strings(&[
        "train-head",
        "--from",
        &from,
        "--out",
        &same.display().to_string(),
    ]));
    assert!(!log.contains("fine-tune: "), "train-head fine-tuned: {log}");
    for key in [
        "bertvision",
        "bertvision@0.5",
        "bertvision@1/0.5",
        "ensemble_max@0.5",
        "bert@0.5",
        "bert_final",
    ] {
        assert_eq!(metrics(&again, key), metrics(&results, key), "{key}");
    }
    assert_eq!(
        again["seeds"][0]["head_loss"],
        results["seeds"][0]["head_loss"]
    );
    assert_eq!(again["from_run"].as_str(), Some(from.as_str()));
    assert!(
        snapshot(&run_dir.join("seed-1")) == before,
        "train-head changed the run's files"
    );

    // Another head at one point, in the run's heads/ folder by default; killed during its
    // training, it resumes to the numbers of an uninterrupted one.
    let args = strings(&[
        "train-head",
        "--from",
        &from,
        "--adapter-size",
        "16",
        "--head-epochs",
        "4",
        "--at",
        "1",
    ]);
    let out_dir = run_dir.join("heads/adapter_size-16_epochs-4_at-1");
    assert!(
        kill_when(&args, &out_dir.join("seed-1/head.ckpt")),
        "not killed during head training"
    );
    let (small, _) = run(&[
        args.clone(),
        strings(&["--out", &out_dir.display().to_string()]),
    ]
    .concat());
    let fresh_dir = tmp.path().join("small").display().to_string();
    let (fresh, _) = run(&[args, strings(&["--out", &fresh_dir])].concat());
    assert_eq!(metrics(&small, "bertvision"), metrics(&fresh, "bertvision"));
    assert_eq!(
        small["seeds"][0]["head_loss"],
        fresh["seeds"][0]["head_loss"]
    );
    assert_ne!(
        metrics(&small, "bertvision@1"),
        metrics(&results, "bertvision@1"),
        "A = 16 is another head"
    );
    assert!(small["seeds"][0]["metrics"].get("bertvision@0.5").is_none());
    assert!(
        snapshot(&run_dir.join("seed-1")) == before,
        "train-head changed the run's files"
    );

    // The run with several points, killed after its first checkpoint and while training a head
    // there, resumes to the uninterrupted run's numbers.
    for (phase, file) in [
        ("fine-tuning", "seed-1/bert-at-0.5.bin"),
        ("a head", "seed-1/head-at-0.5.ckpt"),
    ] {
        let dir = tmp
            .path()
            .join(format!("killed-{}", phase.replace(' ', "-")));
        let args = run_args(&dir);
        assert!(
            kill_when(&args, &dir.join(file)),
            "not killed during {phase}"
        );
        let (resumed, _) = run(&args);
        assert_eq!(
            resumed["seeds"][0]["metrics"], results["seeds"][0]["metrics"],
            "after a kill during {phase}"
        );
        assert_eq!(
            resumed["seeds"][0]["head_losses"],
            results["seeds"][0]["head_losses"]
        );
        assert_eq!(
            resumed["seeds"][0]["finetune_loss"],
            results["seeds"][0]["finetune_loss"]
        );
    }

    // A run whose checkpoint at a point is gone is refused, naming the file, before any work.
    std::fs::remove_file(run_dir.join("seed-1/bert-at-0.5.bin")).unwrap();
    let out = bertvision()
        .args(strings(&[
            "train-head",
            "--from",
            &from,
            "--out",
            &tmp.path().join("gone").display().to_string(),
        ]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bert-at-0.5.bin") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(
        !tmp.path().join("gone").exists(),
        "nothing written for a refused run"
    );
    let out = bertvision()
        .args(strings(&["train-head", "--from", &from, "--at", "0.3"]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--at 0.3") && stderr.contains("0.5,1"),
        "{stderr}"
    );
}
