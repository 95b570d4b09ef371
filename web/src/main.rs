//! The browser app: SQuAD answers of BERT, BERTVision and their ensemble side by side, a GLUE
//! page with their probabilities for a sentence or pair (Burn on WebGPU when the browser offers
//! an adapter, else Flex on the CPU), and the comparison page for `results.json` files. Built with trunk (see the README); wasm32 only.

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod charts;
#[cfg(target_arch = "wasm32")]
mod classify_page;
#[cfg(target_arch = "wasm32")]
mod compare_page;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod model_card;
#[cfg(target_arch = "wasm32")]
mod qa_page;
#[cfg(target_arch = "wasm32")]
mod splash;

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!(
        "bertvision-web runs in the browser: build it with `trunk build --release` in web/ (see the README)"
    );
    std::process::exit(1);
}
