//! `bertvision encode` end to end: real output against the transformers fixture, and bad model
//! directories giving one clear error line, exit code 1, no panic and no output file.

use std::path::{Path, PathBuf};
use std::process::Command;

use bertvision_tests::{fixture, model_dir};
use safetensors::SafeTensors;

fn bertvision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bertvision"))
}

fn f32s(bytes: &[u8], key: &str) -> (Vec<usize>, Vec<f32>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(key).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn encode_writes_transformers_hidden_states() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pair.safetensors");
    let model = model_dir("splade-tiny");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("parity/splade-tiny.json")).unwrap())
            .unwrap();
    let case = meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "pair1")
        .unwrap();
    let status = bertvision()
        .args(["encode", "--model"])
        .arg(&model.root)
        .args([
            "--text",
            case["text"].as_str().unwrap(),
            "--text-pair",
            case["text_pair"].as_str().unwrap(),
        ])
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let ours = std::fs::read(&out).unwrap();
    let reference = std::fs::read(fixture("parity/splade-tiny.safetensors")).unwrap();
    let (shape, hs) = f32s(&ours, "hidden_states");
    let (ref_shape, ref_hs) = f32s(&reference, "pair1.hidden_states");
    assert_eq!(shape, ref_shape[1..].to_vec(), "[layers+1, tokens, hidden]");
    let err = hs
        .iter()
        .zip(&ref_hs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "max abs error {err}");
    let st = SafeTensors::deserialize(&ours).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    assert_eq!(ids.dtype(), safetensors::Dtype::I64);
    assert_eq!(ids.shape(), &[shape[1]]);
}

/// A copy of splade-tiny (small) that a test may break.
fn copy_model() -> (tempfile::TempDir, PathBuf) {
    let src = model_dir("splade-tiny");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("model");
    std::fs::create_dir(&root).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.root.join(f), root.join(f)).unwrap();
    }
    (dir, root)
}

fn edit_config(root: &Path, key: &str, value: serde_json::Value) {
    let path = root.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(path, serde_json::to_string(&config).unwrap()).unwrap();
}

/// Runs encode on a broken model; returns stderr after checking exit code 1, no panic, no output.
fn encode_fails(root: &Path) -> String {
    let out = root.parent().unwrap().join("out.safetensors");
    let result = bertvision()
        .args(["encode", "--text", "hello", "--model"])
        .arg(root)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    assert_eq!(result.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(!out.exists(), "no output file may be left");
    stderr
}

#[test]
fn missing_tokenizer_is_one_clear_error() {
    let (_tmp, root) = copy_model();
    std::fs::remove_file(root.join("tokenizer.json")).unwrap();
    let e = encode_fails(&root);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
}

#[test]
fn truncated_weights_are_one_clear_error() {
    let (_tmp, root) = copy_model();
    let weights = root.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap();
    file.set_len(len / 2).unwrap();
    let e = encode_fails(&root);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn shape_disagreeing_with_config_is_one_clear_error() {
    let (_tmp, root) = copy_model();
    edit_config(&root, "intermediate_size", serde_json::json!(256));
    let e = encode_fails(&root);
    assert!(
        e.contains("model.safetensors")
            && e.contains("intermediate.dense.weight")
            && e.contains("[512, 128]"),
        "{e}"
    );
}

#[test]
fn unknown_activation_is_one_clear_error() {
    let (_tmp, root) = copy_model();
    edit_config(&root, "hidden_act", serde_json::json!("swishy"));
    let e = encode_fails(&root);
    assert!(
        e.contains("config.json") && e.contains("hidden_act \"swishy\""),
        "{e}"
    );
}

#[test]
fn garbage_weights_are_one_clear_error() {
    let (_tmp, root) = copy_model();
    std::fs::write(
        root.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    )
    .unwrap();
    let e = encode_fails(&root);
    assert!(
        e.contains("model.safetensors") && e.contains("not a JSON object"),
        "{e}"
    );
}
