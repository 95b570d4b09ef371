//! `evaluate-squad` and the data commands through the binary: official output format, and one
//! clear error line (file and line named, exit code 1) for malformed input.

use std::process::Command;

use bertvision_tests::{fixture, shared_data};

fn bertvision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bertvision"))
}

#[test]
fn evaluate_squad_prints_the_official_keys_and_values() {
    let out = tempfile::tempdir().unwrap();
    let metrics_path = out.path().join("m.json");
    let result = bertvision()
        .args(["evaluate-squad", "--data"])
        .arg(fixture("squad/edge_cases.json"))
        .arg("--predictions")
        .arg(fixture("squad/edge_cases.predictions.json"))
        .arg("--na-prob")
        .arg(fixture("squad/edge_cases.na_prob.json"))
        .arg("--out")
        .arg(&metrics_path)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("squad/edge_cases.expected.json")).unwrap(),
    )
    .unwrap();
    let expected = expected["with_na_prob"].as_object().unwrap();
    // serde_json::Value sorts keys, so check the printed order in the text itself.
    let text = String::from_utf8_lossy(&result.stdout);
    let official = [
        "exact",
        "f1",
        "total",
        "HasAns_exact",
        "HasAns_f1",
        "HasAns_total",
        "NoAns_exact",
        "NoAns_f1",
        "NoAns_total",
        "best_exact",
        "best_exact_thresh",
        "best_f1",
        "best_f1_thresh",
    ];
    let positions: Vec<usize> = official
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).expect(k))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "official key order: {text}"
    );
    assert_eq!(printed.as_object().unwrap().len(), official.len());
    for (k, v) in expected {
        assert!(
            (printed[k].as_f64().unwrap() - v.as_f64().unwrap()).abs() < 1e-9,
            "{k}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&metrics_path).unwrap().trim(),
        String::from_utf8_lossy(&result.stdout).trim()
    );
}

fn fails_with(args: &[&std::ffi::OsStr], expected: &[&str]) {
    let result = bertvision().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected {e:?} in {stderr}");
    }
}

#[test]
fn malformed_inputs_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{\n  \"data\": [\n    {\"title\": 3}\n  ]\n}").unwrap();
    let preds = fixture("squad/edge_cases.predictions.json");
    fails_with(
        &[
            "evaluate-squad".as_ref(),
            "--data".as_ref(),
            bad_json.as_os_str(),
            "--predictions".as_ref(),
            preds.as_os_str(),
        ],
        &["bad.json:3:", "invalid type"],
    );
    let partial = dir.path().join("partial.json");
    std::fs::write(&partial, r#"{"e1": "beignets"}"#).unwrap();
    let data = fixture("squad/edge_cases.json");
    fails_with(
        &[
            "evaluate-squad".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            "--predictions".as_ref(),
            partial.as_os_str(),
        ],
        &["7 question(s)", "no prediction"],
    );
    // A GLUE folder whose RTE dev file has a short row.
    let glue = dir.path().join("glue");
    std::fs::create_dir_all(glue.join("RTE")).unwrap();
    std::fs::write(
        glue.join("RTE/dev.tsv"),
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n",
    )
    .unwrap();
    fails_with(
        &[
            "data-report".as_ref(),
            "--glue-dir".as_ref(),
            glue.as_os_str(),
        ],
        &["RTE/dev.tsv:3:", "2 columns"],
    );
}

#[test]
fn data_report_reads_the_shared_data() {
    let out = tempfile::tempdir().unwrap().keep().join("report.json");
    let result = bertvision()
        .args(["data-report", "--glue-dir"])
        .arg(shared_data().join("glue"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["RTE"]["train"]["examples"], 2490);
    assert_eq!(report["QNLI"]["dev"]["examples"], 5463);
}
