//! `bertvision predict` and `classify` on the export of a finished run: predicting the run's dev
//! file reproduces the run's dev scores for every method; a label-free copy of dev (GLUE's test
//! layout) gives the same decisions in a submission file that GLUE's format rules accept
//! (scripts/check_glue_submission.py); `classify` on one pair gives the probabilities `predict`
//! wrote for it; and the export's misuses are refused in one line.

use std::path::{Path, PathBuf};
use std::process::Command;

use bertvision_tests::{refused, shared_data, succeed, workspace_root};
use serde_json::Value;

fn bertvision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bertvision"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// RTE, 256 training pairs, one epoch, 64 tokens, the whole dev file (277 pairs).
fn run_rte(out: &Path) -> Value {
    succeed(
        bertvision()
            .args([
                "run",
                "--task",
                "RTE",
                "--model",
                "splade-tiny",
                "--seeds",
                "1",
            ])
            .args([
                "--limit-train",
                "256",
                "--max-length",
                "64",
                "--epochs",
                "1",
            ])
            .arg("--data-dir")
            .arg(shared_data().join("glue"))
            .arg("--out")
            .arg(out),
    );
    read_json(&out.join("results.json"))
}

fn predict(export: &Path, input: &Path, out: &Path, extra: &[&str]) -> String {
    let output = succeed(
        bertvision()
            .args(["predict", "--export"])
            .arg(export)
            .arg("--input")
            .arg(input)
            .arg("--out")
            .arg(out)
            .args(extra),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// RTE's dev file without its label column: GLUE's test layout (`index sentence1 sentence2`).
fn label_free_copy(dev: &Path, to: &Path) {
    let text = std::fs::read_to_string(dev).unwrap();
    let rows: Vec<String> = text
        .lines()
        .map(|line| line.rsplit_once('\t').unwrap().0.to_string())
        .collect();
    assert!(rows[0].ends_with("sentence2"), "{}", rows[0]);
    std::fs::write(to, rows.join("\n") + "\n").unwrap();
}

#[test]
fn predict_reproduces_the_run_and_writes_glue_submissions() {
    let tmp = tempfile::tempdir().unwrap();
    let results = run_rte(&tmp.path().join("run"));
    let export = tmp.path().join("run/seed-1/export");
    let dev = shared_data().join("glue/RTE/dev.tsv");

    // The run's dev file: the run's dev accuracy, for every method.
    let labelled = tmp.path().join("dev-predictions");
    let table = predict(&export, &dev, &labelled, &["--method", "all"]);
    let metrics = read_json(&labelled.join("metrics.json"));
    for method in ["bert", "bertvision", "ensemble_max", "ensemble_mean"] {
        let key = if method == "bert" {
            "bert_extract"
        } else {
            method
        };
        let run = &results["seeds"][0]["metrics"][key]["dev"]["accuracy"];
        assert_eq!(
            metrics[method]["accuracy"], *run,
            "{method}: predict vs the run\n{table}"
        );
        assert!(table.contains(method), "{table}");
    }

    // GLUE's test layout: no labels, no metrics, the same decisions, a valid submission file.
    let test = tmp.path().join("test.tsv");
    label_free_copy(&dev, &test);
    let unlabelled = tmp.path().join("test-predictions");
    let table = predict(&export, &test, &unlabelled, &["--method", "bertvision"]);
    assert!(table.contains("no labels"), "{table}");
    assert!(!unlabelled.join("metrics.json").exists());
    let submission = unlabelled.join("bertvision/RTE.tsv");
    assert_eq!(
        std::fs::read_to_string(&submission).unwrap(),
        std::fs::read_to_string(labelled.join("bertvision/RTE.tsv")).unwrap()
    );
    let checked = succeed(
        Command::new("python3")
            .arg(workspace_root().join("scripts/check_glue_submission.py"))
            .arg(&submission)
            .arg("--test")
            .arg(&test),
    );
    assert_eq!(String::from_utf8_lossy(&checked.stdout), "RTE.tsv: ok\n");

    check_classify(&export, &dev, &labelled, tmp.path());
    check_refusals(&export, &dev, &labelled);
}

/// `classify` on dev's first pair: the probabilities `predict` wrote for row 0 (padding in a
/// batch and alone differ by float rounding only).
fn check_classify(export: &Path, dev: &Path, predictions: &Path, tmp: &Path) {
    let text = std::fs::read_to_string(dev).unwrap();
    let first: Vec<&str> = text.lines().nth(1).unwrap().split('\t').collect();
    let json = tmp.join("classify.json");
    let out = succeed(
        bertvision()
            .args(["classify", "--export"])
            .arg(export)
            .args(["--text", first[1], "--text-pair", first[2], "--json"])
            .arg(&json),
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("p(not_entailment)"), "{printed}");
    let answers = read_json(&json);
    assert_eq!(
        answers["labels"],
        serde_json::json!(["entailment", "not_entailment"])
    );
    for (method, decision) in answers["methods"].as_array().unwrap().iter().enumerate() {
        let name = decision["method"].as_str().unwrap();
        let outputs = std::fs::read_to_string(predictions.join(name).join("outputs.tsv")).unwrap();
        let row: Vec<&str> = outputs.lines().nth(1).unwrap().split('\t').collect();
        assert_eq!(row[0], first[0]);
        assert_eq!(decision["prediction"], row[1], "{name} (method {method})");
        for (i, p) in decision["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let written: f64 = row[2 + i].parse().unwrap();
            let diff = (p.as_f64().unwrap() - written).abs();
            assert!(diff < 1e-5, "{name} p[{i}]: classify vs predict {diff}");
        }
    }
}

/// Another task than the export's, and a folder that holds another prediction.
fn check_refusals(export: &Path, dev: &Path, predictions: &Path) {
    let mut base = bertvision();
    base.args(["predict", "--export"])
        .arg(export)
        .arg("--input")
        .arg(dev);
    let mut mismatch = bertvision();
    mismatch
        .args(["predict", "--task", "MRPC", "--export"])
        .arg(export)
        .arg("--input")
        .arg(dev)
        .arg("--out")
        .arg(PathBuf::from(predictions).with_extension("mrpc"));
    refused(&mut mismatch, &["--task MRPC", "RTE model"]);
    base.arg("--out")
        .arg(predictions)
        .args(["--method", "bert"]);
    refused(&mut base, &["predict.json", "another --out"]);
    assert!(
        predictions.join("ensemble_max").exists(),
        "the first prediction is kept"
    );
}
