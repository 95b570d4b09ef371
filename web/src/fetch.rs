//! Bytes into the page: `fetch` with a progress callback (the response body read chunk by
//! chunk), and files from an `<input type=file>`.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, Response};

/// A JS error as one line of text.
pub fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Milliseconds since the page started (`performance.now()`).
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// GETs `url`; `progress(loaded, total)` after each chunk (`total` from Content-Length, if sent).
/// A missing file (HTTP 404) is `Ok(None)`, so optional files can be probed.
pub async fn fetch_bytes(
    url: &str,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Option<Vec<u8>>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response: Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: {}", js_error(e)))?
        .dyn_into()
        .map_err(|_| format!("{url}: not a response"))?;
    if response.status() == 404 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    let Some(body) = response.body() else {
        return Ok(Some(Vec::new()));
    };
    let reader: ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| format!("{url}: body has no default reader"))?;
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("{url}: {}", js_error(e)))?;
        let done = Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let value = Reflect::get(&chunk, &"value".into()).map_err(js_error)?;
        bytes.extend(Uint8Array::new(&value).to_vec());
        progress(bytes.len() as u64, total);
    }
    Ok(Some(bytes))
}

/// Text of a URL, `None` on 404.
pub async fn fetch_text(url: &str) -> Result<Option<String>, String> {
    match fetch_bytes(url, |_, _| {}).await? {
        Some(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| format!("{url}: not UTF-8 text")),
        None => Ok(None),
    }
}

/// An `on:change` handler for a file input: reads every chosen file, then calls `done`.
pub fn on_files_chosen(
    done: impl Fn(Result<Vec<(String, Vec<u8>)>, String>) + Copy + 'static,
) -> impl Fn(web_sys::Event) + Copy + 'static {
    move |ev: web_sys::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        wasm_bindgen_futures::spawn_local(async move { done(read_files(&input).await) });
    }
}

/// Name and bytes of every file chosen in a file input.
async fn read_files(input: &web_sys::HtmlInputElement) -> Result<Vec<(String, Vec<u8>)>, String> {
    let Some(list) = input.files() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for i in 0..list.length() {
        let Some(file) = list.get(i) else { continue };
        let buffer = JsFuture::from(file.array_buffer())
            .await
            .map_err(|e| format!("{}: {}", file.name(), js_error(e)))?;
        out.push((file.name(), Uint8Array::new(&buffer).to_vec()));
    }
    Ok(out)
}
