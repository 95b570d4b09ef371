//! Any text as config.json: parsed and validated, or one error; derived sizes never panic.
#![no_main]
use bertvision_formats::bert_config::BertConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(config) = BertConfig::from_json(std::path::Path::new("config.json"), text) {
        let _ = config.num_params(true);
        let _ = config.head_dim();
        let _ = config.num_hidden_states();
    }
});
