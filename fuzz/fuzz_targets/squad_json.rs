//! Any text as a SQuAD 2.0 file: a dataset or one error; examples, the article split and the
//! JSON round trip of an accepted dataset never panic.
#![no_main]
use bertvision_formats::squad::data::SquadDataset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = std::path::Path::new("squad.json");
    if let Ok(dataset) = SquadDataset::parse(path, text) {
        let examples = dataset.examples();
        assert_eq!(examples.len(), dataset.num_questions());
        let _ = dataset.split_by_article(1);
        let again = SquadDataset::parse(path, &dataset.to_json()).expect("our own JSON parses");
        assert_eq!(again.num_questions(), dataset.num_questions());
    }
});
