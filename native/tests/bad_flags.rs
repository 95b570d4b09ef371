//! Every flag of every command refuses a bad value (issue #22): the flags come from
//! `docs/flags.md` (itself generated from the program), so a new flag fails this test until it has
//! a bad case here or a reason in [`FREE`] why no value of it is wrong. Each bad case must end
//! with exit code 1 and one line naming the flag (or, for a file, the file), before any work: the
//! commands run in an empty folder that must hold nothing new afterwards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use bertvision_core::bert::BertConfig;
use bertvision_core::pipeline::config::RunConfig;
use bertvision_tests::{model_dir, shared_data, strings, workspace_root};

/// Flags no value of which is wrong, and why.
const FREE: &[(&str, &str, &str)] = &[
    ("search", "--seed", "any number seeds the sampler"),
    (
        "search",
        "--startup-trials",
        "any count: more than --trials means a random search",
    ),
    (
        "bench",
        "--warmup",
        "any count of warm-up repeats, 0 included",
    ),
];

/// What a test process sees: the commands' folder and the files the bad cases point at.
struct Fixture {
    root: PathBuf,
    run: PathBuf,
    glue: PathBuf,
    squad: PathBuf,
}

impl Fixture {
    fn new(root: &Path) -> Self {
        let model = model_dir("splade-tiny");
        let bert = BertConfig::from_file(&model.config).unwrap();
        let task = bertvision_core::tasks::task("RTE").unwrap();
        let mut config = RunConfig::new(task, "splade-tiny", &bert);
        config.validation_fraction = Some(0.1);
        let run = root.join("a-run");
        std::fs::create_dir_all(&run).unwrap();
        let text = serde_json::to_string_pretty(&config).unwrap();
        std::fs::write(run.join("config.json"), text).unwrap();
        std::fs::write(root.join("afile"), "not a folder").unwrap();
        std::fs::write(root.join("predictions.json"), "{}").unwrap();
        Fixture {
            root: root.to_path_buf(),
            run,
            glue: shared_data().join("glue"),
            squad: shared_data().join("squad2/dev-v2.0-28-articles.json"),
        }
    }

    fn p(&self, path: &Path) -> String {
        path.display().to_string()
    }

    /// The arguments a command runs with beside the flag under test: enough that the flag's
    /// check is the first thing to fail, and small enough that a missing check costs seconds.
    fn base(&self, command: &str, flag: &str) -> Vec<String> {
        let squad_flags = [
            "--doc-stride",
            "--max-query-length",
            "--n-best",
            "--max-answer-length",
            "--null-threshold",
            "--data",
            "--eval-articles",
        ];
        let args: Vec<String> = match command {
            "encode" => strings(&["--model", "splade-tiny", "--text", "hi", "--output", "o.st"]),
            "run" if ["--train-file", "--eval-file"].contains(&flag) => strings(&[
                "--task",
                "SQuAD2",
                "--limit-train",
                "8",
                "--limit-eval",
                "8",
            ]),
            "run" if squad_flags.contains(&flag) => strings(&[
                "--task",
                "SQuAD2",
                "--data",
                &self.p(&self.squad),
                "--limit-train",
                "8",
                "--limit-eval",
                "8",
            ]),
            "run" => strings(&[
                "--task",
                "RTE",
                "--data-dir",
                &self.p(&self.glue),
                "--limit-train",
                "8",
                "--limit-eval",
                "8",
            ]),
            "train-head" => strings(&["--from", &self.p(&self.run)]),
            "search" => strings(&[
                "--from",
                &self.p(&self.run),
                "--param",
                "head_lr=1e-4..1e-2:log",
            ]),
            "evaluate-squad" => strings(&[
                "--data",
                &self.p(&self.squad),
                "--predictions",
                &self.p(&self.root.join("predictions.json")),
            ]),
            "answer" => strings(&["--export", "no-export", "--passage", "p", "--question", "q"]),
            "predict" => strings(&[
                "--export",
                "no-export",
                "--input",
                &self.p(&self.glue.join("RTE/dev.tsv")),
                "--out",
                "predicted",
            ]),
            "classify" => strings(&["--export", "no-export", "--text", "hi"]),
            "bench" => strings(&[
                "--model",
                "splade-tiny",
                "--seq-lens",
                "16",
                "--batch",
                "1",
                "--repeats",
                "1",
                "--rows",
                "extract",
            ]),
            "web-assets" => strings(&[
                "--results",
                &self.p(&workspace_root().join("tests/fixtures/web/results-wnli.json")),
                "--out",
                "assets",
            ]),
            "data-report" => strings(&["--glue-dir", &self.p(&self.glue), "--out", "report.json"]),
            _ => Vec::new(),
        };
        let args = without_flag(args, flag);
        match flag {
            // One source of the passage at a time.
            "--passage-file" => without_flag(args, "--passage"),
            _ => args,
        }
    }
}

impl Fixture {
    /// Arguments a flag's bad case needs beside the command's base: the other flags its check
    /// depends on.
    fn extra(&self, command: &str, flag: &str) -> Vec<String> {
        let squad = self.p(&self.squad);
        match (command, flag) {
            ("run", "--early-stop-patience") => strings(&[
                "--validation-fraction",
                "0.1",
                "--eval-every-epochs",
                "0.5",
                "--select-best",
                "validation",
            ]),
            ("run", "--node-id") => strings(&["--num-nodes", "2", "--coordinator", "127.0.0.1:1"]),
            ("run", "--num-nodes") => strings(&["--coordinator", "127.0.0.1:1"]),
            ("run", "--coordinator") => strings(&["--num-nodes", "2"]),
            (_, "--train-file") => strings(&["--eval-file", &squad]),
            (_, "--eval-file") => strings(&["--train-file", &squad]),
            ("web-assets", "--glue") => strings(&["--classify-export", "no-export"]),
            // The model is read only for the SQuAD part.
            ("data-report", "--model") => strings(&["--squad", &squad]),
            _ => Vec::new(),
        }
    }
}

/// `args` without `flag` and its value.
fn without_flag(args: Vec<String>, flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == flag {
            it.next();
        } else {
            out.push(a);
        }
    }
    out
}

/// The bad value of `flag`; `None` when the table has no case.
fn bad_value(command: &str, flag: &str) -> Option<&'static str> {
    let enum_flags = [
        "--device",
        "--encoder-dtype",
        "--precision",
        "--head-kind",
        "--layer-mix",
        "--head-kernel",
        "--encoder-kernels",
        "--algorithm",
    ];
    if enum_flags.contains(&flag) {
        return Some("bogus");
    }
    let value = match (command, flag) {
        (_, "--model") => "bert-huge",
        ("fetch-data", "--task") => "GLUE-X",
        ("run" | "predict", "--task") => "NOPE",
        (_, "--text" | "--passage" | "--text-pair" | "--question") => "",
        ("run", "--seeds") => "1,2,1",
        ("run" | "train-head" | "bench", "--devices") => "cpu:0",
        ("run", "--node-id") => "2",
        ("run", "--num-nodes") => "0",
        ("run", "--coordinator") => "127.0.0.1",
        ("encode", "--max-length") => "2",
        ("run", "--max-length") => "2",
        ("answer", "--max-length") => "8",
        (_, "--output") => "afile/o.st",
        (_, "--json") => "afile/answers.json",
        ("run" | "train-head" | "search" | "predict" | "web-assets", "--out") => "afile",
        ("evaluate-squad" | "bench" | "data-report", "--out") => "afile/x.json",
        (_, "--config") => "no-config.json",
        ("run" | "train-head", "--data-dir") | ("data-report", "--glue-dir") => "no-glue-dir",
        ("run" | "train-head", "--train-file" | "--eval-file" | "--data") => "no-squad.json",
        ("evaluate-squad", "--data" | "--predictions" | "--na-prob") => "no-such.json",
        ("data-report" | "web-assets", "--squad") => "no-squad.json",
        ("run" | "train-head", "--eval-articles") => "0",
        (_, "--limit-train" | "--limit-eval") => "0",
        ("run", "--doc-stride") => "500",
        ("answer", "--doc-stride") => "500",
        ("predict", "--doc-stride") => "0",
        ("run" | "answer", "--max-query-length") => "500",
        ("predict", "--max-query-length") => "0",
        (_, "--lr" | "--head-lr") => "-1",
        (_, "--batch-size" | "--head-batch-size" | "--eval-batch-size" | "--batch") => "0",
        (_, "--epochs" | "--head-epochs") => "0",
        (_, "--warmup-ratio") => "1.5",
        (_, "--weight-decay") => "-1",
        (_, "--max-grad-norm") => "-1",
        (_, "--extract-at" | "--at") => "-1",
        (_, "--eval-every-epochs") => "0",
        (_, "--train-fraction" | "--head-train-fraction") => "1.5",
        (_, "--validation-fraction") => "0",
        (_, "--select-best") => "bogus",
        (_, "--early-stop-patience") => "0",
        (_, "--checkpoint-every") => "0",
        (_, "--pad-multiple") => "0",
        (_, "--adapter-size") => "0",
        (_, "--ensemble") => "bogus",
        (_, "--n-best") => "0",
        (_, "--max-answer-length") => "0",
        (_, "--null-threshold") => "nan",
        ("train-head" | "search", "--from") => "no-run",
        ("train-head" | "search", "--seeds") => "9",
        (_, "--cache-gib") => "-1",
        ("search", "--param") => "head_lr=bogus",
        ("search", "--space") => "no-space.json",
        ("search", "--trials" | "--parallel") => "0",
        ("search", "--objective") => "bogus",
        (_, "--export" | "--classify-export") => "no-export",
        ("answer", "--passage-file") => "no-passage.txt",
        ("predict", "--input") => "no-input.tsv",
        ("predict", "--method") => "bogus",
        ("bench", "--seq-lens") => "0",
        ("bench", "--repeats") => "0",
        ("bench", "--rows") => "bogus",
        ("web-assets", "--glue") => "no-dev.tsv",
        ("web-assets", "--results") => "no-results.json",
        _ => return None,
    };
    Some(value)
}

/// `(command, flag)` for every flag that takes a value, from `docs/flags.md`.
fn flags_with_values() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(workspace_root().join("docs/flags.md")).unwrap();
    let mut command = String::new();
    let mut flags = Vec::new();
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("## `bertvision ") {
            command = rest.trim_end_matches('`').to_string();
        } else if let Some(rest) = line.strip_prefix("| `--") {
            let spec = rest.split('`').next().unwrap_or_default();
            let mut parts = spec.split(' ');
            let name = parts.next().unwrap_or_default();
            if parts.next().is_some() {
                flags.push((command.clone(), format!("--{name}")));
            }
        }
    }
    flags
}

fn listing(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.insert(path);
        }
    }
    found
}

#[test]
fn every_flag_refuses_a_bad_value_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(tmp.path());
    let before = listing(tmp.path());
    let flags = flags_with_values();
    assert!(
        flags.len() > 100,
        "docs/flags.md parsed to {} flags",
        flags.len()
    );
    let mut failures = Vec::new();
    for (command, flag) in &flags {
        let free = FREE.iter().any(|(c, f, _)| c == command && f == flag);
        let bad = bad_value(command, flag);
        let Some(value) = bad.filter(|_| !free) else {
            if !free {
                failures.push(format!(
                    "{command} {flag}: no bad case and no reason in FREE"
                ));
            }
            continue;
        };
        let mut args = vec![command.clone()];
        args.extend(fixture.base(command, flag));
        args.extend(fixture.extra(command, flag));
        args.push(flag.clone());
        args.push(value.to_string());
        let out = Command::new(env!("CARGO_BIN_EXE_bertvision"))
            .args(&args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let named = stderr.contains(flag.as_str()) || (!value.is_empty() && stderr.contains(value));
        let ok = out.status.code() == Some(1)
            && stderr.lines().count() == 1
            && stderr.starts_with("error: ")
            && named;
        if !ok {
            failures.push(format!(
                "{command} {flag} {value:?}: exit {:?}: {stderr}",
                out.status.code()
            ));
        }
        let after = listing(tmp.path());
        let new: Vec<_> = after.difference(&before).collect();
        if !new.is_empty() {
            failures.push(format!("{command} {flag} {value:?} left {new:?}"));
            for path in new {
                let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every input file or folder a command reads, given empty (a file of no bytes, a folder with
/// nothing in it), is refused in one line naming it (issue #22): the cases are the file flags of
/// the table above, whose bad values name missing files (`no-…`).
#[test]
fn every_command_refuses_empty_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(tmp.path());
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut failures = Vec::new();
    let mut tried = 0;
    for (command, flag) in flags_with_values() {
        let Some(value) = bad_value(&command, &flag).filter(|v| v.starts_with("no-")) else {
            continue;
        };
        if command == "train-head" && flag != "--from" {
            // Its data files are read after the run's checkpoints are checked, and this run
            // has none; they go through `run`'s loaders, tried empty above.
            continue;
        }
        let input = empty.join(format!("{command}{flag}-{value}"));
        if input.extension().is_some() {
            std::fs::write(&input, "").unwrap();
        } else {
            std::fs::create_dir_all(&input).unwrap();
        }
        let before = listing(tmp.path());
        let mut args = vec![command.clone()];
        args.extend(fixture.base(&command, &flag));
        args.extend(fixture.extra(&command, &flag));
        args.extend([flag.clone(), input.display().to_string()]);
        let out = Command::new(env!("CARGO_BIN_EXE_bertvision"))
            .args(&args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        tried += 1;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let ok = out.status.code() == Some(1)
            && stderr.lines().count() == 1
            && !stderr.contains("panicked")
            && (stderr.contains(&name) || stderr.contains(flag.as_str()));
        if !ok {
            failures.push(format!(
                "{command} {flag} (empty): exit {:?}: {stderr}",
                out.status.code()
            ));
        }
        let new: Vec<_> = listing(tmp.path()).difference(&before).cloned().collect();
        if !new.is_empty() {
            failures.push(format!("{command} {flag} (empty) left {new:?}"));
        }
    }
    assert!(tried >= 20, "only {tried} empty inputs tried");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
