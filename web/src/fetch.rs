//! Bytes into the page: `fetch` with a progress callback (the response body read chunk by
//! chunk), the same through the page's Cache Storage for files of known sha256 (the demo models:
//! a second visit reads them from the cache), and files from an `<input type=file>`.

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
    progress: impl FnMut(u64, Option<u64>),
) -> Result<Option<Vec<u8>>, String> {
    fetch_with(url, web_sys::RequestCache::Default, progress).await
}

/// [`fetch_bytes`] with the HTTP cache mode `mode` (`NoCache`: revalidated with the server).
async fn fetch_with(
    url: &str,
    mode: web_sys::RequestCache,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Option<Vec<u8>>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let init = web_sys::RequestInit::new();
    init.set_cache(mode);
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
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

/// The Cache Storage bucket of the demo models' files.
const CACHE: &str = "bertvision-models";

/// Where a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Network,
    Cache,
}

/// The page's cache, `None` where the browser offers none (an insecure origin, private modes).
async fn open_cache() -> Option<web_sys::Cache> {
    let caches = web_sys::window()?.caches().ok()?;
    let cache = JsFuture::from(caches.open(CACHE)).await.ok()?;
    cache.dyn_into().ok()
}

/// The cache key of `url` at `sha256`: a file that changes gets a new key.
fn cache_key(url: &str, sha256: &str) -> String {
    format!("{url}?sha256={sha256}")
}

/// `url`'s bytes, from the cache when a copy of this sha256 is there, else downloaded with
/// `progress` and stored (older copies of `url` are dropped). A missing file is `Ok(None)`.
pub async fn fetch_cached(
    url: &str,
    sha256: &str,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<Option<(Vec<u8>, Source)>, String> {
    let cache = open_cache().await;
    let key = cache_key(url, sha256);
    if let Some(cache) = &cache
        && let Some(bytes) = cached(cache, &key).await
    {
        return Ok(Some((bytes, Source::Cache)));
    }
    let Some(mut bytes) = fetch_bytes(url, progress).await? else {
        return Ok(None);
    };
    if let Some(cache) = &cache {
        // A full cache (quota) only costs the next visit a download.
        let _ = store(cache, url, &key, &mut bytes).await;
    }
    Ok(Some((bytes, Source::Network)))
}

async fn cached(cache: &web_sys::Cache, key: &str) -> Option<Vec<u8>> {
    let hit = JsFuture::from(cache.match_with_str(key)).await.ok()?;
    let response: Response = hit.dyn_into().ok()?;
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}

async fn store(
    cache: &web_sys::Cache,
    url: &str,
    key: &str,
    bytes: &mut [u8],
) -> Result<(), JsValue> {
    let keys = JsFuture::from(cache.keys()).await?;
    for request in js_sys::Array::from(&keys).iter() {
        let request: web_sys::Request = request.dyn_into()?;
        let old = request.url();
        if old.split('?').next().is_some_and(|u| u.ends_with(url)) {
            JsFuture::from(cache.delete_with_str(&old)).await?;
        }
    }
    let response = Response::new_with_opt_u8_array(Some(bytes))?;
    JsFuture::from(cache.put_with_str(key, &response)).await?;
    Ok(())
}

/// Text of a URL, `None` on 404.
pub async fn fetch_text(url: &str) -> Result<Option<String>, String> {
    text_of(url, fetch_bytes(url, |_, _| {}).await?)
}

/// Text of a URL as the server has it now (revalidated, never a stale copy), `None` on 404.
pub async fn fetch_fresh_text(url: &str) -> Result<Option<String>, String> {
    text_of(
        url,
        fetch_with(url, web_sys::RequestCache::NoCache, |_, _| {}).await?,
    )
}

fn text_of(url: &str, bytes: Option<Vec<u8>>) -> Result<Option<String>, String> {
    match bytes {
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
