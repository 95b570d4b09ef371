//! Every bad input a user can hand the tool (issue #7): each gives exactly one line naming the
//! file and the problem, exit code 1, no panic, and nothing left under the output's final name.
//! The messages are also the table in `docs/errors.md`; this test fails when the table is stale
//! (`BERTVISION_BLESS=1 cargo test -p bertvision --test bad_inputs` rewrites it).

use std::path::{Path, PathBuf};
use std::process::Command;

use bertvision_tests::{model_dir, strings, succeed, workspace_root};

fn bertvision() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bertvision"))
}

/// A copy of the real splade-tiny directory, to be broken one way.
fn model_copy(root: &Path, name: &str) -> PathBuf {
    let from = model_dir("splade-tiny").root;
    let to = root.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    to
}

/// Rewrites a safetensors file's header with `edit`, keeping the data.
fn edit_header(path: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

fn first_tensor(header: &mut serde_json::Value) -> &mut serde_json::Value {
    header
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .find(|(k, _)| *k != "__metadata__")
        .unwrap()
        .1
}

fn edit_json(path: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    /// Substrings the message must contain (the file's name among them).
    expected: Vec<&'static str>,
    /// An output that must not exist afterwards.
    output: Option<PathBuf>,
}

fn encode_case(
    root: &Path,
    name: &'static str,
    dir: &str,
    break_it: impl Fn(&Path),
    expected: Vec<&'static str>,
) -> Case {
    let model = model_copy(root, dir);
    break_it(&model);
    let output = root.join(format!("{dir}.out.safetensors"));
    let mut args = strings(&["encode", "--text", "hello", "--model"]);
    args.push(model.display().to_string());
    args.push("--output".into());
    args.push(output.display().to_string());
    Case {
        name,
        args,
        expected,
        output: Some(output),
    }
}

/// A one-article SQuAD file with `edit` applied to its JSON.
fn squad_file(root: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let mut v = serde_json::json!({"version": "v2.0", "data": [{"title": "T", "paragraphs": [{
        "context": "The Normans gave their name to Normandy.",
        "qas": [{"id": "q1", "question": "Who gave their name to Normandy?", "is_impossible": false,
                 "answers": [{"text": "The Normans", "answer_start": 0}]}]}]}]});
    edit(&mut v);
    let path = root.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    path
}

fn squad_case(
    root: &Path,
    name: &'static str,
    file: &str,
    edit: impl Fn(&mut serde_json::Value),
    expected: Vec<&'static str>,
) -> Case {
    let data = squad_file(root, file, edit);
    let out = root.join(format!("{file}.report.json"));
    let args = vec![
        "data-report".into(),
        "--model".into(),
        "splade-tiny".into(),
        "--squad".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    Case {
        name,
        args,
        expected,
        output: Some(out),
    }
}

fn glue_case(
    root: &Path,
    name: &'static str,
    dir: &str,
    task_dir: &str,
    file: &str,
    content: &[u8],
    expected: Vec<&'static str>,
) -> Case {
    let glue = root.join(dir);
    std::fs::create_dir_all(glue.join(task_dir)).unwrap();
    std::fs::write(glue.join(task_dir).join(file), content).unwrap();
    let out = root.join(format!("{dir}.report.json"));
    Case {
        name,
        args: vec![
            "data-report".into(),
            "--glue-dir".into(),
            glue.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ],
        expected,
        output: Some(out),
    }
}

fn cases(root: &Path) -> Vec<Case> {
    let mut cases = vec![
        encode_case(
            root,
            "safetensors cut short (data missing)",
            "truncated",
            |m| {
                let p = m.join("model.safetensors");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() / 2]).unwrap();
            },
            vec!["model.safetensors"],
        ),
        encode_case(
            root,
            "safetensors header length past the end of the file",
            "header-len",
            |m| {
                let p = m.join("model.safetensors");
                let mut b = std::fs::read(&p).unwrap();
                b[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
                std::fs::write(&p, b).unwrap();
            },
            vec!["model.safetensors", "header"],
        ),
        encode_case(
            root,
            "safetensors header that is not JSON",
            "garbage",
            |m| {
                let p = m.join("model.safetensors");
                let mut b = std::fs::read(&p).unwrap();
                b[8..20].copy_from_slice(b"!!garbage!!!");
                std::fs::write(&p, b).unwrap();
            },
            vec!["model.safetensors"],
        ),
        encode_case(
            root,
            "safetensors tensor offsets past the end",
            "offsets",
            |m| {
                edit_header(&m.join("model.safetensors"), |h| {
                    first_tensor(h)["data_offsets"][1] = serde_json::json!(1u64 << 40);
                })
            },
            vec!["model.safetensors"],
        ),
        encode_case(
            root,
            "safetensors unknown dtype",
            "dtype",
            |m| {
                edit_header(&m.join("model.safetensors"), |h| {
                    first_tensor(h)["dtype"] = serde_json::json!("Q4");
                })
            },
            vec!["model.safetensors", "Q4"],
        ),
        encode_case(
            root,
            "tensor shape disagrees with config.json",
            "shape",
            |m| {
                edit_json(&m.join("config.json"), |c| {
                    c["intermediate_size"] = serde_json::json!(256)
                })
            },
            vec!["model.safetensors", "config.json", "has shape"],
        ),
        encode_case(
            root,
            "missing tokenizer.json",
            "no-tokenizer",
            |m| std::fs::remove_file(m.join("tokenizer.json")).unwrap(),
            vec!["tokenizer.json"],
        ),
        encode_case(
            root,
            "config.json that is not JSON",
            "config-syntax",
            |m| std::fs::write(m.join("config.json"), "{\"hidden_size\": 128,\n  oops").unwrap(),
            vec!["config.json:2"],
        ),
        encode_case(
            root,
            "unsupported config option (relative positions)",
            "relative",
            |m| {
                edit_json(&m.join("config.json"), |c| {
                    c["position_embedding_type"] = serde_json::json!("relative_key")
                })
            },
            vec!["config.json", "relative_key"],
        ),
        encode_case(
            root,
            "unsupported activation",
            "act",
            |m| {
                edit_json(&m.join("config.json"), |c| {
                    c["hidden_act"] = serde_json::json!("swish")
                })
            },
            vec!["config.json", "swish"],
        ),
        squad_case(
            root,
            "SQuAD: missing field",
            "no-context.json",
            |v| {
                v["data"][0]["paragraphs"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("context");
            },
            vec!["no-context.json", "context"],
        ),
        squad_case(
            root,
            "SQuAD: wrong type",
            "wrong-type.json",
            |v| v["data"][0]["paragraphs"][0]["qas"][0]["question"] = serde_json::json!(7),
            vec!["wrong-type.json", "invalid type"],
        ),
        squad_case(
            root,
            "SQuAD: answer_start outside the context",
            "outside.json",
            |v| {
                v["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] =
                    serde_json::json!(500)
            },
            vec!["outside.json", "q1"],
        ),
        squad_case(
            root,
            "SQuAD: answer text not at answer_start",
            "misplaced.json",
            |v| {
                v["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] =
                    serde_json::json!(4)
            },
            vec!["misplaced.json", "q1"],
        ),
        squad_case(
            root,
            "SQuAD: no questions",
            "empty.json",
            |v| v["data"] = serde_json::json!([]),
            vec!["empty.json"],
        ),
        glue_case(
            root,
            "GLUE TSV: a row with missing columns",
            "glue-columns",
            "RTE",
            "dev.tsv",
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n",
            vec!["RTE/dev.tsv:3", "columns"],
        ),
        glue_case(
            root,
            "GLUE TSV: unknown label",
            "glue-label",
            "RTE",
            "dev.tsv",
            b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n",
            vec!["RTE/dev.tsv:2", "maybe"],
        ),
        glue_case(
            root,
            "GLUE TSV: header only, no rows",
            "glue-empty",
            "RTE",
            "dev.tsv",
            b"index\tsentence1\tsentence2\tlabel\n",
            vec!["RTE/dev.tsv"],
        ),
        glue_case(
            root,
            "GLUE TSV: text that is not UTF-8",
            "glue-utf8",
            "RTE",
            "dev.tsv",
            b"index\tsentence1\tsentence2\tlabel\n0\ta \xff\xfe b\tc\tentailment\n",
            vec!["RTE/dev.tsv:2", "UTF-8"],
        ),
    ];
    cases.push(Case {
        name: "GLUE folder without any task folder",
        args: vec![
            "data-report".into(),
            "--glue-dir".into(),
            root.join("no-glue-here").display().to_string(),
            "--out".into(),
            root.join("no-glue.json").display().to_string(),
        ],
        expected: vec!["no-glue-here", "no GLUE task folder"],
        output: Some(root.join("no-glue.json")),
    });
    let old_results = workspace_root().join("tests/fixtures/web/results-v1.json");
    cases.push(Case {
        name: "results.json of an older version",
        args: vec![
            "web-assets".into(),
            "--results".into(),
            old_results.display().to_string(),
            "--out".into(),
            root.join("assets").display().to_string(),
        ],
        expected: vec!["results-v1.json", "bertvision-results/1"],
        output: Some(root.join("assets")),
    });
    for (name, args, expected) in [
        (
            "unknown task name",
            strings(&["run", "--task", "NOPE"]),
            vec!["unknown task", "NOPE"],
        ),
        (
            "contradictory flags",
            strings(&[
                "run",
                "--task",
                "SQuAD2",
                "--data",
                "a.json",
                "--train-file",
                "b.json",
            ]),
            vec!["cannot be used with"],
        ),
        (
            "extraction point after the end of fine-tuning",
            strings(&["run", "--task", "RTE", "--extract-at", "3", "--epochs", "2"]),
            vec!["past the end of fine-tuning"],
        ),
        (
            "bf16 asked of a backend without it",
            strings(&[
                "run",
                "--task",
                "RTE",
                "--device",
                "ndarray",
                "--encoder-dtype",
                "bf16",
            ]),
            vec!["--encoder-dtype bf16", "ndarray", "--device cpu"],
        ),
        (
            "mixed-precision fine-tuning asked of a backend without it",
            strings(&[
                "run",
                "--task",
                "RTE",
                "--device",
                "ndarray",
                "--precision",
                "f16",
            ]),
            vec!["--precision f16", "ndarray", "--device cpu"],
        ),
        (
            "seed given twice",
            strings(&["run", "--task", "RTE", "--seeds", "1,2,1"]),
            vec!["seed 1 is given twice"],
        ),
        (
            "validation share of all the training data",
            strings(&["run", "--task", "RTE", "--validation-fraction", "1"]),
            vec!["--validation-fraction 1", "(0, 1)"],
        ),
        (
            "best checkpoint chosen on dev",
            strings(&[
                "run",
                "--task",
                "RTE",
                "--validation-fraction",
                "0.1",
                "--eval-every-epochs",
                "0.5",
                "--select-best",
                "dev",
            ]),
            vec!["--select-best dev", "only validation"],
        ),
        (
            "early stopping without a validation choice",
            strings(&["run", "--task", "RTE", "--early-stop-patience", "2"]),
            vec!["--early-stop-patience needs --select-best"],
        ),
        (
            "a recipe flag beside --config",
            strings(&["run", "--config", "config.json", "--lr", "1e-3"]),
            vec!["--config", "--lr"],
        ),
        (
            "search from a folder without a run",
            strings(&[
                "search",
                "--from",
                "nowhere",
                "--param",
                "head_lr=1e-4..1e-2:log",
            ]),
            vec!["config.json", "not the folder of a `bertvision run`"],
        ),
        (
            "predict with no export there",
            strings(&[
                "predict",
                "--export",
                "no-export",
                "--input",
                &bertvision_tests::shared_data()
                    .join("glue/RTE/dev.tsv")
                    .display()
                    .to_string(),
                "--out",
                "predictions",
            ]),
            vec!["no-export"],
        ),
        (
            "a folder given as a data file",
            strings(&["evaluate-squad", "--data", ".", "--predictions", "p.json"]),
            vec!["Is a directory"],
        ),
        (
            "fetch-data for an unknown task",
            strings(&["fetch-data", "--task", "GLUE-X"]),
            vec!["--task GLUE-X", "unknown", "RTE"],
        ),
        (
            "unknown model name",
            strings(&[
                "encode",
                "--model",
                "bert-huge",
                "--text",
                "x",
                "--output",
                "o.st",
            ]),
            vec!["bert-huge"],
        ),
    ] {
        cases.push(Case {
            name,
            args,
            expected,
            output: None,
        });
    }
    cases
}

#[test]
fn every_bad_input_is_one_clear_line_and_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for case in cases(root) {
        let out = bertvision()
            .args(&case.args)
            .current_dir(root)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let ok = out.status.code() == Some(1)
            && stderr.lines().count() == 1
            && stderr.starts_with("error: ")
            && !stderr.contains("panicked")
            // An OS error is said once, not again by every wrapper of it.
            && stderr.matches("(os error").count() <= 1
            && case.expected.iter().all(|e| stderr.contains(e))
            && case.output.as_ref().is_none_or(|o| !o.exists());
        if !ok {
            failures.push(format!(
                "{}: exit {:?}, expected {:?}, got: {stderr}",
                case.name,
                out.status.code(),
                case.expected
            ));
        }
        let shown = stderr
            .replace(&root.display().to_string(), "<dir>")
            .replace(
                &model_dir("splade-tiny").root.display().to_string(),
                "<cache>/splade-tiny",
            );
        let shown = shown.replace(&workspace_root().display().to_string(), "<repo>");
        table.push(format!(
            "| {} | `bertvision {}` | {} |",
            case.name,
            case.args[0],
            shown.replace('|', "\\|")
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    check_doc_table(&table);
}

/// `docs/errors.md` holds the table between two markers; it must equal what the tool prints.
fn check_doc_table(rows: &[String]) {
    let path = workspace_root().join("docs/errors.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let (begin, end) = ("<!-- table:begin -->", "<!-- table:end -->");
    let table = format!(
        "{begin}\n| bad input | command | what the user sees (exit code 1) |\n|---|---|---|\n{}\n{end}",
        rows.join("\n")
    );
    let current = match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) => &doc[b..e + end.len()],
        _ => "",
    };
    if std::env::var_os("BERTVISION_BLESS").is_some() {
        let new = if current.is_empty() {
            format!("{doc}\n{table}\n")
        } else {
            doc.replace(current, &table)
        };
        std::fs::write(&path, new).unwrap();
    } else {
        assert_eq!(
            current, table,
            "docs/errors.md is stale: rerun with BERTVISION_BLESS=1"
        );
    }
}

/// Not an error: a 12,000-word passage is cut into doc-stride windows and its answer, near the
/// end, is still recovered from the windows' labels.
#[test]
fn a_huge_context_is_windowed_not_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let filler = "word ".repeat(12_000);
    let context = format!("{filler}The Normans gave their name to Normandy.");
    let start = filler.len();
    let path = squad_file(tmp.path(), "huge.json", |v| {
        v["data"][0]["paragraphs"][0]["context"] = serde_json::json!(context);
        v["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] =
            serde_json::json!(start);
    });
    let out = tmp.path().join("report.json");
    succeed(
        bertvision()
            .args(["data-report", "--model", "splade-tiny", "--squad"])
            .arg(&path)
            .arg("--out")
            .arg(&out),
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let squad = &report["SQuAD2"];
    assert!(squad["windows"].as_u64().unwrap() > 20, "{squad}");
    assert_eq!(squad["round_trip"]["exact"], 1, "{squad}");
}
