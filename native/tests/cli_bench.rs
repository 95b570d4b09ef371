//! `bertvision bench` runs every measure on the real tiny model and writes what it measured.

use std::process::Command;

use bertvision_tests::succeed;
use serde_json::Value;

/// `bench` on splade-tiny with one warm-up call and batch 2 (unless `args` name one), plus
/// `args`; its JSON report.
fn bench(dir: &std::path::Path, name: &str, args: &[&str]) -> Value {
    let out = dir.join(format!("{name}.json"));
    let batch: &[&str] = match args.contains(&"--batch") {
        true => &[],
        false => &["--batch", "2"],
    };
    succeed(
        Command::new(env!("CARGO_BIN_EXE_bertvision"))
            .args(["bench", "--model", "splade-tiny", "--warmup", "1"])
            .args(batch)
            .args(args)
            .arg("--out")
            .arg(&out),
    );
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

/// `bench` with `args` fails with one line that mentions `needle`, exit code 1.
fn fails_naming(args: &[&str], needle: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_bertvision"))
        .args(["bench", "--model", "splade-tiny"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(needle) && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn bench_writes_every_measure_with_positive_timings() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench(
        dir.path(),
        "bench",
        &["--seq-lens", "16,32", "--repeats", "2"],
    );
    let rows = report["rows"].as_array().unwrap();
    let measures: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["measure"].as_str().unwrap(),
                r["seq_len"].as_u64().unwrap(),
            )
        })
        .collect();
    for seq in [16, 32] {
        for m in [
            "extract",
            "extract_fused_attention",
            "finetune_step",
            "head_step_streamed",
            "head_step_streamed_fused",
            "head_step",
            "head_step_fused",
        ] {
            assert!(measures.contains(&(m, seq)), "{m} at {seq}: {measures:?}");
        }
    }
    for r in rows {
        let median = r["median_seconds"].as_f64().unwrap();
        assert!(median > 0.0 && r["min_seconds"].as_f64().unwrap() <= median);
        assert!((r["sequences_per_second"].as_f64().unwrap() - 2.0 / median).abs() < 1e-6);
        assert!(r["first_call_seconds"].as_f64().unwrap() > 0.0);
    }
    // Both fused paths agree with the plain ones on a batch whose second row is padded.
    let checks = report["fused_path_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{checks:?}");
    for (check, seq) in checks.iter().zip([16, 32]) {
        assert_eq!(check["seq_len"], seq);
        let lengths = check["lengths"].as_array().unwrap();
        assert!(
            lengths[0] == seq && lengths[1].as_u64().unwrap() < seq,
            "{check}"
        );
        for key in [
            "fused_attention_max_abs_diff",
            "fused_head_logits_max_abs_diff",
        ] {
            let diff = check[key].as_f64().unwrap();
            assert!((0.0..1e-4).contains(&diff), "{key}: {check}");
        }
    }
    assert_eq!(report["weights"], "pretrained");
    assert_eq!(report["dtype"], "f32");
    assert!(report["peak_memory_mb"].as_f64().unwrap() > 0.0);

    // The frozen encoder in bf16 (extraction rows) runs on the CPU backend and says so.
    let bf16 = bench(
        dir.path(),
        "bf16",
        &[
            "--seq-lens",
            "16",
            "--repeats",
            "1",
            "--encoder-dtype",
            "bf16",
        ],
    );
    assert!(
        bf16["dtype"].as_str().unwrap().starts_with("bf16"),
        "{}",
        bf16["dtype"]
    );
    assert_eq!(bf16["rows"].as_array().unwrap().len(), 7);
    // A length past the model's positions is one clear error.
    fails_naming(&["--seq-lens", "4096"], "4096");

    // `--rows` measures only the rows named; a name that is not a row is one clear error.
    let some = bench(
        dir.path(),
        "rows",
        &[
            "--seq-lens",
            "16",
            "--repeats",
            "1",
            "--rows",
            "extract_fused_attention,head_step",
        ],
    );
    let measured: Vec<&str> = some["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["measure"].as_str().unwrap())
        .collect();
    assert_eq!(measured, ["extract_fused_attention", "head_step"]);
    fails_naming(&["--rows", "extract,warp_drive"], "warp_drive");
    // Launches are CubeCL's: the CPU backend refuses to count them.
    fails_naming(&["--count-launches"], "--count-launches");
}

/// `--batch 1,3` measures every row at both batches and names each row's fastest batch.
#[test]
fn bench_sweeps_batches_and_names_the_fastest() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench(
        dir.path(),
        "sweep",
        &[
            "--seq-lens",
            "16",
            "--repeats",
            "1",
            "--rows",
            "extract,head_step",
            "--batch",
            "1,3",
        ],
    );
    let rows = report["rows"].as_array().unwrap();
    let got: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r["measure"].as_str().unwrap(), r["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("extract", 1),
            ("head_step", 1),
            ("extract", 3),
            ("head_step", 3)
        ]
    );
    assert_eq!(report["batches"], serde_json::json!([1, 3]));
    let best = report["best"].as_array().unwrap();
    assert_eq!(best.len(), 2, "{best:?}");
    for b in best {
        let same = rows.iter().filter(|r| r["measure"] == b["measure"]);
        let fastest = same
            .map(|r| r["sequences_per_second"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(b["sequences_per_second"].as_f64().unwrap(), fastest, "{b}");
    }
    fails_naming(&["--batch", "2,0"], "--batch");
}
