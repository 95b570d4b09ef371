//! `bertvision bench` runs every measure on the real tiny model and writes what it measured.

use std::process::Command;

use bertvision_tests::succeed;

#[test]
fn bench_writes_every_measure_with_positive_timings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    succeed(
        Command::new(env!("CARGO_BIN_EXE_bertvision"))
            .args(["bench", "--model", "splade-tiny", "--seq-lens", "16,32"])
            .args(["--batch", "2", "--repeats", "2", "--warmup", "1", "--out"])
            .arg(&out),
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
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
    assert_eq!(report["weights"], "pretrained");
    assert_eq!(report["dtype"], "f32");
    assert!(report["peak_memory_mb"].as_f64().unwrap() > 0.0);

    // The frozen encoder in bf16 (extraction rows) runs on the CPU backend and says so.
    let bf16_out = dir.path().join("bench-bf16.json");
    succeed(
        Command::new(env!("CARGO_BIN_EXE_bertvision"))
            .args(["bench", "--model", "splade-tiny", "--seq-lens", "16"])
            .args(["--batch", "2", "--repeats", "1", "--warmup", "1"])
            .args(["--extract-dtype", "bf16", "--out"])
            .arg(&bf16_out),
    );
    let bf16: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bf16_out).unwrap()).unwrap();
    assert!(
        bf16["dtype"].as_str().unwrap().starts_with("bf16"),
        "{}",
        bf16["dtype"]
    );
    assert_eq!(bf16["rows"].as_array().unwrap().len(), 7);
    // A length past the model's positions is one clear error.
    let too_long = Command::new(env!("CARGO_BIN_EXE_bertvision"))
        .args(["bench", "--model", "splade-tiny", "--seq-lens", "4096"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&too_long.stderr);
    assert_eq!(too_long.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("4096") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );

    // `--rows` measures only the rows named; a name that is not a row is one clear error.
    let some_out = dir.path().join("bench-rows.json");
    succeed(
        Command::new(env!("CARGO_BIN_EXE_bertvision"))
            .args(["bench", "--model", "splade-tiny", "--seq-lens", "16"])
            .args(["--batch", "2", "--repeats", "1", "--warmup", "1"])
            .args(["--rows", "extract_fused_attention,head_step", "--out"])
            .arg(&some_out),
    );
    let some: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&some_out).unwrap()).unwrap();
    let measured: Vec<&str> = some["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["measure"].as_str().unwrap())
        .collect();
    assert_eq!(measured, ["extract_fused_attention", "head_step"]);
    let bad = Command::new(env!("CARGO_BIN_EXE_bertvision"))
        .args([
            "bench",
            "--model",
            "splade-tiny",
            "--rows",
            "extract,warp_drive",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("warp_drive") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}
