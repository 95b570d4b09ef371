//! The browser app (issue: Leptos + trunk, WebGPU with CPU fallback) is not built yet. For now
//! this crate proves that the core library — model loading from bytes, tokenisation, the
//! AdapterPooler, SQuAD post-processing — compiles for `wasm32-unknown-unknown`.

fn main() {
    // Referenced so the wasm build type-checks the paths the app will use.
    let _load_tokenizer = bertvision_core::tokenize::BertTokenizer::from_bytes;
    let _check_weights = bertvision_core::safetensors_header::SafetensorsHeader::from_bytes;
}
