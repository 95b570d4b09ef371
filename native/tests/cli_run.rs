//! `bertvision run` end to end on CPU with the real tiny model and slices of real tasks: both
//! BERT and the AdapterPooler learn, the outputs are complete, and a run killed during
//! fine-tuning or head training resumes to exactly (bit for bit) the results of an
//! uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bertvision_tests::{refused, shared_data, strings, succeed, workspace_root};
use serde_json::Value;

fn bertvision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bertvision"))
}

/// A small but real SST-2 run: 1,024 training sentences, 300 dev sentences, 48 tokens.
fn sst2_args(out: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--task",
        "SST-2",
        "--model",
        "splade-tiny",
        "--seeds",
        "1",
        "--limit-train",
        "1024",
        "--limit-eval",
        "300",
        "--max-length",
        "48",
        "--checkpoint-every",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--data-dir".into());
    args.push(shared_data().join("glue").display().to_string());
    args.push("--out".into());
    args.push(out.display().to_string());
    args
}

fn run_to_end(args: &[String]) -> Value {
    let out = bertvision().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(&args[args.iter().position(|a| a == "--out").unwrap() + 1]);
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

/// `results.json` without its measured times (`*seconds*` keys), which differ from process to
/// process; everything else must be byte-identical however the run was done.
fn untimed(dir: &Path) -> String {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|k, _| !k.contains("seconds"));
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    strip(&mut v);
    serde_json::to_string_pretty(&v).unwrap()
}

/// `args` with `flag`'s value replaced.
fn with_flag(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value.to_string();
    args
}

fn metric(results: &Value, method: &str, metric: &str) -> f64 {
    results["summary"][method]["dev"][metric]["mean"]
        .as_f64()
        .unwrap()
}

#[test]
fn sst2_slice_learns_and_resumes_after_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let reference_dir = tmp.path().join("reference");
    let reference = run_to_end(&sst2_args(&reference_dir));

    // Both models learn: training loss falls, dev accuracy clearly above chance (0.5).
    let seed = &reference["seeds"][0];
    for curve in ["finetune_loss", "head_loss"] {
        let (first, last) = (
            seed[curve]["first_tenth"].as_f64().unwrap(),
            seed[curve]["last_tenth"].as_f64().unwrap(),
        );
        assert!(last < first, "{curve}: {first} -> {last}");
    }
    for method in [
        "bert_extract",
        "bert_final",
        "bertvision",
        "ensemble_max",
        "ensemble_mean",
    ] {
        let acc = metric(&reference, method, "accuracy");
        assert!(acc > 0.55, "{method} accuracy {acc}");
    }
    assert!(
        reference["parameters"]["head_share_of_bert"]
            .as_f64()
            .unwrap()
            < 0.01
    );
    for file in [
        "report.md",
        "config.json",
        "seed-1/export/bert/model.safetensors",
        "seed-1/export/head.safetensors",
        "seed-1/predictions/bertvision.dev.json",
    ] {
        assert!(reference_dir.join(file).is_file(), "{file} missing");
    }

    // A rerun of the finished run changes no byte of its results.
    let finished = std::fs::read(reference_dir.join("results.json")).unwrap();
    run_to_end(&sst2_args(&reference_dir));
    assert!(
        std::fs::read(reference_dir.join("results.json")).unwrap() == finished,
        "results.json changed when the finished run was run again"
    );

    // Kill during fine-tuning, then during head training; the reruns end where the reference did.
    // The first is started in one folder with relative paths and resumed from another folder,
    // the same data and output spelled differently.
    let (first_cwd, second_cwd) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&first_cwd).unwrap();
    std::fs::create_dir_all(&second_cwd).unwrap();
    std::os::unix::fs::symlink(shared_data().join("glue"), first_cwd.join("glue")).unwrap();
    for (phase, checkpoint) in [
        ("fine-tuning", "seed-1/finetune.ckpt"),
        ("head training", "seed-1/head.ckpt"),
    ] {
        let name = format!("killed-{}", phase.replace(' ', "-"));
        let dir = first_cwd.join(&name);
        let args = sst2_args(&dir);
        let (start, start_cwd) = match phase {
            "fine-tuning" => (
                with_flag(
                    with_flag(args.clone(), "--out", &name),
                    "--data-dir",
                    "glue",
                ),
                &first_cwd,
            ),
            _ => (args.clone(), &second_cwd),
        };
        let args = match phase {
            "fine-tuning" => with_flag(args, "--out", &format!("../a/{name}")),
            _ => args,
        };
        let mut child = bertvision()
            .args(&start)
            .current_dir(start_cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !dir.join(checkpoint).exists() {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "no {checkpoint} appeared"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before it could be killed during {phase}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(!dir.join("results.json").exists());
        // A temporary file of a dead process (no PID is above Linux's largest, 2^22) is
        // removed by the next run in the folder; a live process's is not touched.
        let stale = dir.join("seed-1/.bert-extract.bin.tmp-4999999");
        let live = dir.join(format!(
            "seed-1/.bert-extract.bin.tmp-{}",
            std::process::id()
        ));
        std::fs::write(&stale, "left by a killed run").unwrap();
        std::fs::write(&live, "being written").unwrap();
        succeed(bertvision().args(&args).current_dir(&second_cwd));
        assert!(
            !stale.exists() && live.exists(),
            "stale temporary files after {phase}"
        );
        std::fs::remove_file(&live).unwrap();
        let resumed: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(
            untimed(&dir),
            untimed(&reference_dir),
            "results.json after a kill during {phase} and a resume"
        );
        // Same batches and dropout masks from the checkpoint on, and the CPU backend (Flex) is
        // deterministic: the resumed run is bit-identical to the uninterrupted one.
        for curve in ["finetune_loss", "head_loss"] {
            assert_eq!(
                resumed["seeds"][0][curve]["losses"], reference["seeds"][0][curve]["losses"],
                "{curve} after a kill during {phase}"
            );
        }
        assert_eq!(
            resumed["seeds"][0]["metrics"], reference["seeds"][0]["metrics"],
            "dev metrics after a kill during {phase}"
        );
        for method in ["bert_extract", "bertvision"] {
            let file = format!("seed-1/predictions/{method}.dev.json");
            assert_eq!(
                std::fs::read(dir.join(&file)).unwrap(),
                std::fs::read(reference_dir.join(&file)).unwrap(),
                "{file} after a kill during {phase}"
            );
        }
    }
}

/// A run folder knows its data: the same command after the files changed in place (one dev
/// label) is refused, naming the split that changed with both sizes and hashes, and the folder
/// is left as it was (issue #22, case 1).
#[test]
fn a_resume_on_changed_files_is_refused_naming_the_split() {
    let tmp = tempfile::tempdir().unwrap();
    let glue = tmp.path().join("glue/RTE");
    std::fs::create_dir_all(&glue).unwrap();
    for f in ["train.tsv", "dev.tsv"] {
        std::fs::copy(shared_data().join("glue/RTE").join(f), glue.join(f)).unwrap();
    }
    let out = tmp.path().join("run");
    let args = strings(&[
        "run",
        "--task",
        "RTE",
        "--limit-train",
        "16",
        "--limit-eval",
        "8",
        "--max-length",
        "32",
        "--data-dir",
        &tmp.path().join("glue").display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    run_to_end(&args);
    let before = std::fs::read(out.join("results.json")).unwrap();
    let dev = std::fs::read_to_string(glue.join("dev.tsv")).unwrap();
    let mut lines: Vec<String> = dev.lines().map(String::from).collect();
    let flipped = match lines[1].rsplit_once('\t') {
        Some((rest, "entailment")) => format!("{rest}\tnot_entailment"),
        Some((rest, _)) => format!("{rest}\tentailment"),
        None => panic!("no label in {}", lines[1]),
    };
    lines[1] = flipped;
    std::fs::write(glue.join("dev.tsv"), lines.join("\n") + "\n").unwrap();
    // The data's notes come first (it was read to be compared), the refusal last.
    let output = bertvision().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr.trim().lines().last().unwrap_or_default();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        message.starts_with("error: ") && message.contains("other examples (dev: 8 examples"),
        "{message}"
    );
    assert!(message.contains(" → 8 examples, hash "), "{message}");
    assert!(std::fs::read(out.join("results.json")).unwrap() == before);
}

/// The same command started twice on one folder splits the seeds: each seed is trained by one
/// process only (the other reads its result back), and both write the complete results.
#[test]
fn two_processes_share_the_seeds_of_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    let args = with_flag(sst2_args(&dir), "--seeds", "1,2");
    let args = with_flag(
        with_flag(args, "--limit-train", "192"),
        "--limit-eval",
        "64",
    );
    let workers: Vec<_> = (0..2)
        .map(|_| {
            bertvision()
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut logs = String::new();
    for worker in workers {
        let out = worker.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "a worker failed: {log}");
        logs.push_str(&log);
    }
    // Whoever did not train a seed reads it back, whether it found it done or waited for it.
    assert_eq!(
        logs.matches("already complete").count(),
        2,
        "each seed must be trained exactly once:\n{logs}"
    );
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let seeds: Vec<u64> = results["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [1, 2]);
    let alone = tmp.path().join("alone");
    run_to_end(&with_flag(args, "--out", &alone.display().to_string()));
    assert_eq!(
        untimed(&dir),
        untimed(&alone),
        "results.json of two processes on one folder differs from one process's"
    );
    // Exported weights are byte-identical run to run (a canonical safetensors header).
    for file in [
        "seed-1/export/head.safetensors",
        "seed-2/export/bert/model.safetensors",
    ] {
        assert!(
            std::fs::read(dir.join(file)).unwrap() == std::fs::read(alone.join(file)).unwrap(),
            "{file} differs between two runs of one configuration"
        );
    }
}

/// `--encoder-dtype bf16` feeds the head from a bf16 copy of the frozen encoder: fine-tuning and
/// BERT's own predictions are untouched (bit-identical to the f32 run, the CPU backend being
/// deterministic), the head still learns, and the configuration records the choice. The same
/// for `--head-kernel fused`, and for `--encoder-kernels burn` against the CPU default (native).
#[test]
fn bf16_encoder_fused_head_and_attention_leave_training_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut args = sst2_args(&dir);
        for (flag, value) in [("--limit-train", "256"), ("--limit-eval", "100")] {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1] = value.to_string();
        }
        // 32 head steps: over 8, whether the last batch's loss is below the first's is noise
        // (it was not, once the fresh head's draw moved).
        args.extend(["--head-epochs", "4"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        (run_to_end(&args), dir)
    };
    let (f32_run, f32_dir) = run("f32", &[]);
    let config = std::fs::read_to_string(f32_dir.join("config.json")).unwrap();
    assert!(
        config.contains(r#""encoder_kernels": "native""#),
        "{config}"
    );
    let (bf16_run, bf16_dir) = run("bf16", &["--encoder-dtype", "bf16"]);
    let config = std::fs::read_to_string(bf16_dir.join("config.json")).unwrap();
    assert!(config.contains(r#""encoder_dtype": "bf16""#), "{config}");
    for key in ["finetune_loss", "metrics"] {
        let (a, b) = (&f32_run["seeds"][0][key], &bf16_run["seeds"][0][key]);
        if key == "metrics" {
            for method in ["bert_extract", "bert_final"] {
                assert_eq!(a[method], b[method], "{method}");
            }
        } else {
            assert_eq!(a, b, "{key}");
        }
    }
    let head = &bf16_run["seeds"][0]["head_loss"];
    assert!(head["last_tenth"].as_f64().unwrap() < head["first_tenth"].as_f64().unwrap());
    let (bv32, bv16) = (
        metric(&f32_run, "bertvision", "accuracy"),
        metric(&bf16_run, "bertvision", "accuracy"),
    );
    assert!(
        (bv32 - bv16).abs() <= 0.05,
        "BERTVision {bv32} (f32) vs {bv16} (bf16)"
    );

    // `--head-kernel fused`: the fused head op (its plain-Burn reference on the CPU) trains the
    // same head up to the order of sums: BERT untouched, head losses and accuracy alike.
    let (fused_run, fused_dir) = run("fused", &["--head-kernel", "fused"]);
    let config = std::fs::read_to_string(fused_dir.join("config.json")).unwrap();
    assert!(config.contains(r#""path": "fused""#), "{config}");
    for method in ["bert_extract", "bert_final"] {
        assert_eq!(
            f32_run["seeds"][0]["metrics"][method], fused_run["seeds"][0]["metrics"][method],
            "{method}"
        );
    }
    for part in ["first_tenth", "last_tenth"] {
        let plain = f32_run["seeds"][0]["head_loss"][part].as_f64().unwrap();
        let fused = fused_run["seeds"][0]["head_loss"][part].as_f64().unwrap();
        assert!(
            (plain - fused).abs() <= 1e-3 * plain.abs(),
            "head loss {part}: plain {plain}, fused {fused}"
        );
    }
    let bv_fused = metric(&fused_run, "bertvision", "accuracy");
    assert!(
        (bv32 - bv_fused).abs() <= 0.02,
        "BERTVision {bv32} (plain) vs {bv_fused} (fused)"
    );

    // `--encoder-kernels burn` (the CPU default is this project's kernels where no gradient
    // flows): fine-tuning is the same program, bit for bit; evaluation and the frozen encoder
    // differ by float rounding only.
    let (explicit_run, explicit_dir) = run("explicit", &["--encoder-kernels", "burn"]);
    let config = std::fs::read_to_string(explicit_dir.join("config.json")).unwrap();
    assert!(!config.contains(r#""encoder_kernels""#), "{config}");
    assert_eq!(
        f32_run["seeds"][0]["finetune_loss"],
        explicit_run["seeds"][0]["finetune_loss"]
    );
    for part in ["first_tenth", "last_tenth"] {
        let fused = f32_run["seeds"][0]["head_loss"][part].as_f64().unwrap();
        let explicit = explicit_run["seeds"][0]["head_loss"][part]
            .as_f64()
            .unwrap();
        assert!(
            (fused - explicit).abs() <= 1e-4 * explicit.abs(),
            "head loss {part}: native kernels {fused}, Burn's ops {explicit}"
        );
    }
    for method in ["bert_extract", "bert_final", "bertvision"] {
        let (fused, explicit) = (
            metric(&f32_run, method, "accuracy"),
            metric(&explicit_run, method, "accuracy"),
        );
        assert!(
            (fused - explicit).abs() <= 0.02,
            "{method}: {fused} (native kernels) vs {explicit} (Burn's ops)"
        );
    }
}

/// `--precision bf16|f16` fine-tunes BERT and trains the head in mixed precision (f16 with loss
/// scaling, its state reloaded at every checkpoint, every 4 steps here): the config says so, the
/// losses move off f32's by rounding and the scores stay near.
#[test]
fn mixed_precision_fine_tuning_stays_near_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let mut args = with_flag(sst2_args(&dir), "--limit-train", "256");
        args = with_flag(args, "--limit-eval", "100");
        args.extend(extra.iter().map(|s| s.to_string()));
        (run_to_end(&args), dir)
    };
    let (f32_run, _) = run("f32", &[]);
    let losses = |run: &Value| -> Vec<f64> {
        let seed = &run["seeds"][0];
        ["finetune_loss", "head_loss"]
            .iter()
            .flat_map(|curve| {
                ["first_tenth", "last_tenth"].map(|k| seed[curve][k].as_f64().unwrap())
            })
            .collect()
    };
    for precision in ["bf16", "f16"] {
        let (mixed, dir) = run(precision, &["--precision", precision]);
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(
            config.contains(&format!(r#""precision": "{precision}""#)),
            "{config}"
        );
        let (want, got) = (losses(&f32_run), losses(&mixed));
        assert_ne!(want, got, "{precision}: the same losses as f32");
        for (w, g) in want.iter().zip(&got) {
            assert!(
                (w - g).abs() <= 1e-2 * w,
                "{precision}: loss {g} vs f32's {w}"
            );
        }
        for method in ["bert_final", "bertvision"] {
            let (a, b) = (
                metric(&f32_run, method, "accuracy"),
                metric(&mixed, method, "accuracy"),
            );
            assert!(
                (a - b).abs() <= 0.05,
                "{precision} {method}: {b} vs f32's {a}"
            );
        }
    }
}

#[test]
fn squad_slice_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("squad");
    let data = shared_data().join("squad2/dev-v2.0-28-articles.json");
    let args: Vec<String> = [
        "run",
        "--task",
        "SQuAD2",
        "--model",
        "splade-tiny",
        "--limit-train",
        "400",
        "--limit-eval",
        "120",
        "--max-length",
        "192",
        "--doc-stride",
        "64",
        "--epochs",
        "1",
        "--eval-articles",
        "6",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--data".to_string(),
        data.display().to_string(),
        "--out".to_string(),
        out.display().to_string(),
    ])
    .collect();
    let results = run_to_end(&args);
    for method in [
        "bert_extract",
        "bertvision",
        "ensemble_max",
        "ensemble_mean",
    ] {
        let m = &results["summary"][method]["dev"];
        for key in ["exact", "f1", "HasAns_f1", "NoAns_f1"] {
            assert!(m[key]["mean"].as_f64().is_some(), "{method}/{key}");
        }
    }
    let seed = &results["seeds"][0];
    assert!(
        seed["finetune_loss"]["last_tenth"].as_f64()
            < seed["finetune_loss"]["first_tenth"].as_f64()
    );
    assert!(seed["head_loss"]["last_tenth"].as_f64() < seed["head_loss"]["first_tenth"].as_f64());
    // Official-format files the evaluator reads.
    let preds = out.join("seed-1/predictions/bertvision.dev.predictions.json");
    let na = out.join("seed-1/predictions/bertvision.dev.na_prob.json");
    assert!(preds.is_file() && na.is_file());
    // The official evaluation of the written files gives the numbers in results.json.
    let cmp = bertvision()
        .args(["evaluate-squad", "--data"])
        .arg(out.join("dev.squad.json"))
        .arg("--predictions")
        .arg(&preds)
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let official: Value = serde_json::from_slice(&cmp.stdout).unwrap();
    for key in ["exact", "f1"] {
        let ours = results["seeds"][0]["metrics"]["bertvision"]["dev"][key]
            .as_f64()
            .unwrap();
        assert!(
            (official[key].as_f64().unwrap() - ours).abs() < 1e-9,
            "{key}"
        );
    }
    check_results_for_the_web(&out);
    check_squad_predict(&out, &results);
}

/// `predict` on the run's dev file with the run's windows: every method's predictions.json is the
/// run's, byte for byte, and its metrics are the run's.
fn check_squad_predict(out: &Path, results: &Value) {
    let predicted = out.join("predict-dev");
    succeed(
        bertvision()
            .args(["predict", "--export"])
            .arg(out.join("seed-1/export"))
            .arg("--input")
            .arg(out.join("dev.squad.json"))
            .args(["--doc-stride", "64", "--out"])
            .arg(&predicted),
    );
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(predicted.join("metrics.json")).unwrap())
            .unwrap();
    for (method, key) in [
        ("bert", "bert_extract"),
        ("bertvision", "bertvision"),
        ("ensemble_max", "ensemble_max"),
        ("ensemble_mean", "ensemble_mean"),
    ] {
        let run = out.join(format!("seed-1/predictions/{key}.dev.predictions.json"));
        let ours = predicted.join(method).join("predictions.json");
        assert_eq!(
            std::fs::read(&ours).unwrap(),
            std::fs::read(&run).unwrap(),
            "{method}"
        );
        for metric in ["exact", "f1", "HasAns_f1", "NoAns_f1"] {
            assert_eq!(
                metrics[method][metric], results["seeds"][0]["metrics"][key]["dev"][metric],
                "{method} {metric}"
            );
        }
        let nbest: Value = serde_json::from_str(
            &std::fs::read_to_string(predicted.join(method).join("nbest_predictions.json"))
                .unwrap(),
        )
        .unwrap();
        assert!(nbest.as_object().unwrap().values().all(|list| {
            let sum: f64 = list
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["probability"].as_f64().unwrap())
                .sum();
            (sum - 1.0).abs() < 1e-6
        }));
    }
}

/// What the browser reads: results.json in the current format with per-layer head shares and a
/// row per question, and an export whose answers (`bertvision answer`, the code path of the web
/// page) are the run's own evaluation answers.
fn check_results_for_the_web(out: &Path) {
    use bertvision_core::pipeline::results::RunResults;
    let path = out.join("results.json");
    let results = RunResults::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let seed = &results.seeds[0];
    assert_eq!(seed.head_layer_share.len(), 3, "embeddings + 2 layers");
    assert!((seed.head_layer_share.iter().sum::<f64>() - 1.0).abs() < 1e-6);
    let rows = &seed.squad_examples["dev"];
    let dataset: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dev.squad.json")).unwrap())
            .unwrap();
    let mut questions = Vec::new();
    for article in dataset["data"].as_array().unwrap() {
        for paragraph in article["paragraphs"].as_array().unwrap() {
            for qa in paragraph["qas"].as_array().unwrap() {
                questions.push((
                    qa["id"].as_str().unwrap().to_string(),
                    qa["question"].as_str().unwrap().to_string(),
                    paragraph["context"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert_eq!(rows.len(), questions.len());
    for (id, question, context) in questions.iter().take(4) {
        let row = rows.iter().find(|r| &r.id == id).unwrap();
        assert_eq!(row.answers.len(), 5, "{:?}", row.answers.keys());
        let answers = answer(
            &out.join("seed-1/export"),
            context,
            question,
            &out.join(format!("answer-{id}.json")),
        );
        if id == &questions[0].0 {
            check_f16_assets(out, context, question, &answers);
        }
        for (i, method) in ["bert_extract", "bertvision", "ensemble_mean"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                answers["methods"][i]["prediction"]["text"]
                    .as_str()
                    .unwrap(),
                row.answers[*method],
                "{id} {method}"
            );
        }
    }
}

/// `bertvision answer` with the slice's window settings; its JSON.
fn answer(export: &Path, context: &str, question: &str, json: &Path) -> Value {
    succeed(
        bertvision()
            .args(["answer", "--export"])
            .arg(export)
            .args(["--passage", context, "--question", question])
            .args(["--max-length", "192", "--doc-stride", "64", "--json"])
            .arg(json),
    );
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// `web-assets --f16` halves BERT's download; the page's code (`answer`) on the F16 copy gives
/// logits within 0.05 of the F32 export's.
fn check_f16_assets(out: &Path, context: &str, question: &str, f32_answers: &Value) {
    let assets = out.join("assets-f16");
    succeed(
        bertvision()
            .args(["web-assets", "--f16", "--export"])
            .arg(out.join("seed-1/export"))
            .arg("--out")
            .arg(&assets),
    );
    let model = |dir: &Path| {
        std::fs::metadata(dir.join("bert/model.safetensors"))
            .unwrap()
            .len()
    };
    let (full, half) = (
        model(&out.join("seed-1/export")),
        model(&assets.join("models/squad")),
    );
    // The page's cache checks its copies against manifest.json: each served file's size.
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(assets.join("models/squad/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["files"]["bert/model.safetensors"]["bytes"], half);
    assert_eq!(
        manifest["files"]["head.json"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    // "About this model", from this run's results.json, for seed 1.
    let about: Value = serde_json::from_str(
        &std::fs::read_to_string(assets.join("models/squad/about.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(about["seed"], 1);
    assert_eq!(about["task"], "SQuAD2");
    assert!(
        about["scores"]["bertvision"]["exact"].is_number(),
        "{about}"
    );
    assert!(
        (half as f64) < 0.51 * full as f64,
        "f16 {half} bytes vs f32 {full}"
    );
    let half_answers = answer(
        &assets.join("models/squad"),
        context,
        question,
        &out.join("answer-f16.json"),
    );
    let flat = |v: &Value| -> Vec<f64> {
        v["methods"][0]["scores"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| {
                w.as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| s.as_array().unwrap().clone())
            })
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (a, b) = (flat(f32_answers), flat(&half_answers));
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(worst < 0.05, "f16 logits differ by {worst}");
}

#[test]
fn contradictory_or_bad_flags_are_one_clear_line() {
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "run",
                "--task",
                "SQuAD2",
                "--data",
                "a.json",
                "--train-file",
                "b.json",
            ],
            "cannot be used with",
        ),
        (
            &["run", "--task", "RTE", "--epochs", "many"],
            "invalid value 'many'",
        ),
        (&["run", "--task", "NOPE"], "unknown task"),
        (
            &["run", "--task", "RTE", "--lr=-1"],
            "--lr must be positive",
        ),
        (
            &["run", "--task", "RTE", "--extract-at", "3", "--epochs", "2"],
            "past the end of fine-tuning",
        ),
        (&["run", "--task", "RTE", "--data", "x.json"], "GLUE task"),
        (
            &["run", "--task", "RTE", "--max-length", "4096"],
            "exceeds the model's 512 positions",
        ),
    ];
    for (args, expected) in cases {
        let out = bertvision()
            .args(args)
            .arg("--out")
            .arg(tempfile::tempdir().unwrap().path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.trim().lines().count() == 1,
            "{args:?}: {stderr}"
        );
    }
    // Other commands (no --out): the passage's two sources, a file as the model.
    for (args, expected) in [
        (
            &["answer", "--export", "e", "--question", "q"][..],
            "--passage",
        ),
        (
            &["run", "--task", "RTE", "--lr", "-1"][..],
            "--lr must be positive",
        ),
        (
            &[
                "encode",
                "--model",
                "Cargo.toml",
                "--text",
                "x",
                "--output",
                "o.st",
            ][..],
            "is a file, not a model directory",
        ),
    ] {
        refused(
            bertvision().args(args).current_dir(workspace_root()),
            &[expected],
        );
    }
}
