//! Any bytes as a GLUE TSV, for every task of the registry — a labelled file, a file to predict
//! (GLUE's test layout included), a download to check and MRPC's source files to split: rows,
//! a count or one error, never a panic.
#![no_main]
use bertvision_formats::tasks::downloads::{FileCheck, check_rows_or_questions, mrpc_split};
use bertvision_formats::tasks::{TASKS, glue::parse_inputs, glue::parse_tsv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.tsv");
    for task in TASKS {
        for format in task.format.iter() {
            let _ = parse_tsv(task, format, path, data);
        }
        if task.format.is_some() {
            let _ = parse_inputs(task, path, data);
        }
    }
    let _ = check_rows_or_questions(
        FileCheck::Rows {
            header: true,
            rows: 3,
        },
        data,
    );
    let _ = check_rows_or_questions(FileCheck::Questions(3), data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mrpc_split(text, text, text);
    }
});
