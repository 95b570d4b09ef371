//! The command line itself: `docs/flags.md` is generated from it (every command, every flag, its
//! default and its help; the test fails when the file is stale, `BERTVISION_BLESS=1 cargo test
//! -p bertvision flags_doc` rewrites it), and the old spellings of renamed flags still parse.

use clap::{CommandFactory, Parser};

use super::{Cli, Command};
use bertvision_core::bert::{EncoderDtype, EncoderKernels};

const BEGIN: &str = "<!-- flags:begin -->";
const END: &str = "<!-- flags:end -->";

/// One line of help text, as a table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn flag_row(arg: &clap::Arg) -> Option<String> {
    let long = arg.get_long()?;
    if arg.is_hide_set() || long == "help" || long == "version" {
        return None;
    }
    let takes_value = arg.get_action().takes_values();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    let value = match (takes_value, values.is_empty()) {
        (false, _) => String::new(),
        (true, false) => format!(" {}", values.join("\\|")),
        (true, true) => {
            let names = arg
                .get_value_names()
                .map(|n| n.join(" "))
                .unwrap_or_default();
            format!(
                " {}",
                if names.is_empty() {
                    "VALUE".to_string()
                } else {
                    names
                }
            )
        }
    };
    let default: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| cell(&h.to_string()))
        .unwrap_or_default();
    Some(format!(
        "| `--{long}{value}` | {} | {help} |",
        if default.is_empty() {
            String::new()
        } else {
            format!("`{}`", default.join(","))
        }
    ))
}

/// The generated part of `docs/flags.md`.
fn render() -> String {
    let cli = Cli::command();
    let mut md = String::new();
    for command in cli.get_subcommands() {
        md.push_str(&format!("\n## `bertvision {}`\n\n", command.get_name()));
        if let Some(about) = command.get_long_about().or(command.get_about()) {
            md.push_str(&format!("{}\n\n", cell(&about.to_string())));
        }
        let mut heading: Option<&str> = None;
        md.push_str("| flag | default | meaning |\n|---|---|---|\n");
        for arg in command.get_arguments() {
            if arg.get_help_heading() != heading {
                heading = arg.get_help_heading();
                if let Some(h) = heading {
                    md.push_str(&format!("| **{h}** | | |\n"));
                }
            }
            if let Some(row) = flag_row(arg) {
                md.push_str(&row);
                md.push('\n');
            }
        }
    }
    md
}

#[test]
fn flags_doc_lists_every_flag() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/flags.md");
    let text = std::fs::read_to_string(&path).expect("docs/flags.md");
    let (start, end) = (
        text.find(BEGIN).expect("begin marker") + BEGIN.len(),
        text.find(END).expect("end marker"),
    );
    let want = format!("{}\n", render());
    if text[start..end] != want {
        if std::env::var_os("BERTVISION_BLESS").is_some() {
            let updated = format!("{}{want}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).expect("writing docs/flags.md");
        } else {
            panic!("docs/flags.md is stale: rerun with BERTVISION_BLESS=1");
        }
    }
}

/// `--attention explicit|fused` and `--extract-dtype` (and `encode --dtype`) were renamed to
/// `--encoder-kernels burn|native` and `--encoder-dtype`; scripts using the old names still work.
#[test]
fn old_flag_spellings_still_parse() {
    let parse = |args: &[&str]| Cli::try_parse_from(args).expect("parses").command;
    let Command::Run(run) = parse(&[
        "bertvision",
        "run",
        "--task",
        "RTE",
        "--attention",
        "fused",
        "--extract-dtype",
        "bf16",
    ]) else {
        panic!("a run")
    };
    assert_eq!(run.head.encoder_kernels, Some(EncoderKernels::Native));
    assert_eq!(run.head.encoder_dtype, Some(EncoderDtype::Bf16));
    let Command::Run(run) = parse(&[
        "bertvision",
        "run",
        "--task",
        "RTE",
        "--attention",
        "explicit",
    ]) else {
        panic!("a run")
    };
    assert_eq!(run.head.encoder_kernels, Some(EncoderKernels::Burn));
    let Command::Encode(encode) = parse(&[
        "bertvision",
        "encode",
        "--model",
        "m",
        "--text",
        "t",
        "--output",
        "o",
        "--dtype",
        "f16",
    ]) else {
        panic!("an encode")
    };
    assert_eq!(encode.encoder_dtype, EncoderDtype::F16);
    let Command::Bench(bench) = parse(&["bertvision", "bench", "--extract-dtype", "bf16"]) else {
        panic!("a bench")
    };
    assert_eq!(bench.encoder_dtype, EncoderDtype::Bf16);
}
