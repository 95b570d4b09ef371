//! Any bytes as a GLUE TSV, for every task of the registry: rows or one error, never a panic.
#![no_main]
use bertvision_formats::tasks::{TASKS, glue::parse_tsv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.tsv");
    for task in TASKS {
        for format in task.format.iter() {
            let _ = parse_tsv(task, format, path, data);
        }
    }
});
