//! The loading screen of `index.html` (drawn before the wasm starts, by `loader.js`): once the
//! app runs it reports the demo model's download there and takes the screen away when the model
//! is ready (or failed, or the visitor is on a page that needs none). Also what the browser
//! measured of the app's own download, for the status line.

use js_sys::{Function, Reflect};
use wasm_bindgen::JsValue;

/// Calls `window.bvSplash[method](args…)`; nothing when the screen is gone.
fn call(method: &str, args: &[JsValue]) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Ok(splash) = Reflect::get(&window, &"bvSplash".into()) else {
        return;
    };
    let Ok(f) = Reflect::get(&splash, &method.into()) else {
        return;
    };
    if let Some(f) = wasm_bindgen::JsCast::dyn_ref::<Function>(&f) {
        let array: js_sys::Array = args.iter().collect();
        let _ = f.apply(&splash, &array);
    }
}

/// The demo model's download so far (every file together).
pub fn model_progress(loaded: u64, total: Option<u64>) {
    call(
        "model",
        &[
            JsValue::from_f64(loaded as f64),
            total.map_or(JsValue::NULL, |t| JsValue::from_f64(t as f64)),
        ],
    );
}

/// The page is ready to use: the screen goes.
pub fn done() {
    call("done", &[]);
}

/// What the browser's resource timing says of the app's wasm download.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WasmDownload {
    /// Bytes over the network (0 when it came from the HTTP cache).
    pub transferred: f64,
    /// Its size unpacked.
    pub bytes: f64,
    pub ms: f64,
}

pub fn wasm_download() -> Option<WasmDownload> {
    let performance = web_sys::window()?.performance()?;
    let entries = performance.get_entries_by_type("resource");
    entries.iter().find_map(|entry| {
        let field = |name: &str| Reflect::get(&entry, &name.into()).ok();
        let name = field("name")?.as_string()?;
        if !name.split('?').next()?.ends_with(".wasm") {
            return None;
        }
        let number = |name: &str| field(name).and_then(|v| v.as_f64()).unwrap_or(0.0);
        Some(WasmDownload {
            transferred: number("transferSize"),
            bytes: number("decodedBodySize"),
            ms: number("duration"),
        })
    })
}
