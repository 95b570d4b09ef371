//! The "Model" card both pages share: pick a backend, download the served demo export (file by
//! file, with progress, through the page's cache when `web-assets` listed the files' sha256 in
//! `manifest.json`) or choose exported files, load them with the page's loader, and say what the
//! model is (`about.json`), what it runs on and what every download and the loading cost.

use std::future::Future;
use std::pin::Pin;

use bertvision_core::inference::about::ModelAbout;
use bertvision_core::inference::export::ServedManifest;
use bertvision_core::inference::{ExportFiles, NamedBytes};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine::{self, BackendChoice};
use crate::fetch::{Source, fetch_bytes, fetch_cached, fetch_fresh_text, now_ms, on_files_chosen};
use crate::splash;

#[derive(Debug, Clone, PartialEq)]
struct FileProgress {
    name: String,
    loaded: u64,
    total: Option<u64>,
    cached: bool,
}

/// The demo model's download: bytes over the network and from the cache, and how long.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Download {
    network_bytes: u64,
    cached_files: usize,
    ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct LoadTimings {
    /// `None`: the files were picked, not downloaded.
    download: Option<Download>,
    load_ms: f64,
    bytes: u64,
}

pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Which engine the files go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A SQuAD export, for the question-answering page.
    Qa,
    /// A GLUE export, for the classification page.
    Classify,
}

type Loading = Pin<Box<dyn Future<Output = Result<engine::Placed, String>>>>;

impl ModelKind {
    fn load(self, files: ExportFiles, choice: BackendChoice) -> Loading {
        match self {
            ModelKind::Qa => Box::pin(engine::load(files, choice)),
            ModelKind::Classify => Box::pin(engine::load_classifier(files, choice)),
        }
    }
}

/// The card's state. `backend` is the label of the loaded model's backend (`None`: no model);
/// a page clears its own results when it changes.
#[derive(Clone, Copy)]
pub struct Loader {
    kind: ModelKind,
    /// Where `bertvision web-assets` put the demo export, relative to the page.
    served: &'static str,
    /// Prefix of the element ids (both pages are in the document at once).
    ids: &'static str,
    choice: RwSignal<BackendChoice>,
    progress: RwSignal<Vec<FileProgress>>,
    pub backend: RwSignal<Option<String>>,
    /// Why the model is not where the visitor might expect it (or runs there with a risk).
    backend_note: RwSignal<Option<engine::BackendNote>>,
    /// The backend choice the loaded model was loaded with.
    loaded_choice: RwSignal<Option<BackendChoice>>,
    load_timings: RwSignal<Option<LoadTimings>>,
    loading: RwSignal<bool>,
    /// The served model's `about.json` (none for picked files, or when not served).
    pub about: RwSignal<Option<ModelAbout>>,
    /// The page's error line.
    error: RwSignal<Option<String>>,
}

impl Loader {
    pub fn new(
        kind: ModelKind,
        served: &'static str,
        ids: &'static str,
        error: RwSignal<Option<String>>,
    ) -> Self {
        Loader {
            kind,
            served,
            ids,
            choice: RwSignal::new(BackendChoice::Auto),
            progress: RwSignal::new(Vec::new()),
            backend: RwSignal::new(None),
            backend_note: RwSignal::new(None),
            loaded_choice: RwSignal::new(None),
            load_timings: RwSignal::new(None),
            loading: RwSignal::new(false),
            about: RwSignal::new(None),
            error,
        }
    }

    fn id(self, name: &str) -> String {
        format!("{}{name}", self.ids)
    }

    fn load_export(self, files: ExportFiles, download: Option<Download>) {
        let bytes = files.files().iter().map(|f| f.bytes.len() as u64).sum();
        spawn_local(async move {
            let t0 = now_ms();
            // Nothing from a previous model may stay on screen as if it were current.
            self.backend.set(None);
            self.backend_note.set(None);
            let choice = self.choice.get_untracked();
            match self.kind.load(files, choice).await {
                Ok(placed) => {
                    self.backend.set(Some(placed.label));
                    self.backend_note.set(placed.note);
                    self.loaded_choice.set(Some(choice));
                    self.load_timings.set(Some(LoadTimings {
                        download,
                        load_ms: now_ms() - t0,
                        bytes,
                    }));
                    self.error.set(None);
                }
                Err(e) => {
                    self.load_timings.set(None);
                    self.error
                        .set(Some(format!("could not load the model: {e}")));
                }
            }
            self.loading.set(false);
            splash::done();
        });
    }

    fn fail(self, message: String) {
        self.error.set(Some(message));
        self.loading.set(false);
        splash::done();
    }

    /// Downloads the served demo export, file by file with progress (from the page's cache
    /// where the manifest's sha256 matches a stored copy), and its `about.json`; then loads it.
    pub fn load_served(self) {
        self.loading.set(true);
        self.error.set(None);
        self.progress.set(Vec::new());
        spawn_local(async move {
            let t0 = now_ms();
            let manifest = match fetch_fresh_text(&format!("{}/manifest.json", self.served)).await {
                Ok(Some(text)) => match serde_json::from_str::<ServedManifest>(&text) {
                    Ok(m) => Some(m),
                    Err(e) => return self.fail(format!("{}/manifest.json: {e}", self.served)),
                },
                Ok(None) => None,
                Err(e) => return self.fail(e),
            };
            self.about.set(self.fetch_about().await);
            let expected: u64 = manifest
                .as_ref()
                .map_or(0, |m| m.files.values().map(|f| f.bytes).sum());
            let mut files = Vec::new();
            let mut download = Download::default();
            for (i, rel) in ExportFiles::NAMES.iter().enumerate() {
                let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
                self.progress.update(|p| {
                    p.push(FileProgress {
                        name: name.clone(),
                        loaded: 0,
                        total: None,
                        cached: false,
                    })
                });
                let url = format!("{}/{rel}", self.served);
                let done_before: u64 = files
                    .iter()
                    .map(|f: &NamedBytes| f.bytes.len() as u64)
                    .sum();
                let on_progress = |loaded: u64, total: Option<u64>| {
                    self.progress.update(|p| {
                        p[i].loaded = loaded;
                        p[i].total = total;
                    });
                    splash::model_progress(
                        done_before + loaded,
                        (expected > 0).then_some(expected),
                    );
                };
                let entry = manifest.as_ref().and_then(|m| m.files.get(*rel));
                let got = match entry {
                    Some(f) => fetch_cached(&url, &f.sha256, on_progress).await,
                    None => fetch_bytes(&url, on_progress)
                        .await
                        .map(|b| b.map(|b| (b, Source::Network))),
                };
                let (bytes, source) = match got {
                    Ok(Some(got)) => got,
                    Ok(None) => {
                        return self.fail(format!(
                            "no demo model is served here ({url} is missing): choose the exported files below"
                        ));
                    }
                    Err(e) => return self.fail(e),
                };
                if let Some(f) = entry.filter(|f| f.bytes != bytes.len() as u64) {
                    return self.fail(format!(
                        "{url}: {} bytes, but manifest.json lists {} (a partly updated server?): reload the page",
                        bytes.len(),
                        f.bytes
                    ));
                }
                let size = bytes.len() as u64;
                match source {
                    Source::Cache => download.cached_files += 1,
                    Source::Network => download.network_bytes += size,
                }
                self.progress.update(|p| {
                    p[i].loaded = size;
                    p[i].total = Some(size);
                    p[i].cached = source == Source::Cache;
                });
                files.push(NamedBytes::new(url, bytes));
            }
            download.ms = now_ms() - t0;
            let mut it = files.into_iter();
            let mut next = || it.next().expect("five files");
            let export = ExportFiles {
                config: next(),
                model: next(),
                tokenizer: next(),
                head: next(),
                head_config: next(),
            };
            self.load_export(export, Some(download));
        });
    }

    /// The served `about.json`, when there is one that parses.
    async fn fetch_about(self) -> Option<ModelAbout> {
        let text = fetch_fresh_text(&format!("{}/about.json", self.served))
            .await
            .ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Loads the files a user picked.
    fn load_picked(self, picked: Result<Vec<(String, Vec<u8>)>, String>) {
        self.loading.set(true);
        // Picked files are not the served model: its description does not apply to them.
        self.about.set(None);
        match picked.and_then(engine::export_from_named) {
            Ok(export) => {
                let sizes: Vec<FileProgress> = export
                    .files()
                    .iter()
                    .map(|f| FileProgress {
                        name: f.name.display().to_string(),
                        loaded: f.bytes.len() as u64,
                        total: Some(f.bytes.len() as u64),
                        cached: false,
                    })
                    .collect();
                self.progress.set(sizes);
                self.load_export(export, None);
            }
            Err(e) => {
                self.error.set(Some(e));
                self.loading.set(false);
            }
        }
    }
}

/// "app 4.70 MB (27.8 MB unpacked) in 1.2 s · model 18.2 MB in 3.4 s (2 of 5 files from this
/// browser's cache)": every download the page made.
fn downloads_text(t: &LoadTimings) -> String {
    let app = match splash::wasm_download() {
        // A revalidated copy costs only its headers (a few hundred bytes).
        Some(w) if w.transferred < 0.01 * w.bytes => "app from the browser's cache".to_string(),
        Some(w) => format!(
            "app {} ({} unpacked) in {:.1} s",
            mb(w.transferred as u64),
            mb(w.bytes as u64),
            w.ms / 1e3
        ),
        None => "app: not measured".to_string(),
    };
    let model = match t.download {
        None => format!("model {} from local files", mb(t.bytes)),
        Some(d) if d.cached_files == ExportFiles::NAMES.len() => {
            format!("model {} from this browser's cache", mb(t.bytes))
        }
        Some(d) => format!(
            "model {} downloaded in {:.1} s{}",
            mb(d.network_bytes),
            d.ms / 1e3,
            if d.cached_files > 0 {
                format!(
                    " ({} of {} files from this browser's cache)",
                    d.cached_files,
                    ExportFiles::NAMES.len()
                )
            } else {
                String::new()
            }
        ),
    };
    format!("{app} · {model} · loaded in {:.0} ms", t.load_ms)
}

/// The backend selector, the demo model's download progress, what the model is and what it
/// runs on.
pub fn model_card(loader: Loader) -> impl IntoView {
    let Loader {
        choice,
        progress,
        backend,
        backend_note,
        loaded_choice,
        load_timings,
        loading,
        about,
        ..
    } = loader;
    let on_pick = on_files_chosen(move |picked| loader.load_picked(picked));
    // The demo button is for a first load, or a reload after another backend was chosen.
    let show_load = move || backend.get().is_none() || loaded_choice.get() != Some(choice.get());
    view! {
        <section class="card">
            <h2>"Model"</h2>
            <div class="row">
                <label>"Backend "
                    <select id=loader.id("backend-choice") on:change=move |ev| choice.set(match event_target_value(&ev).as_str() {
                        "webgpu" => BackendChoice::WebGpu,
                        "cpu" => BackendChoice::Cpu,
                        _ => BackendChoice::Auto,
                    })>
                        <option value="auto">"Auto (WebGPU if offered, else CPU)"</option>
                        <option value="webgpu">"WebGPU"</option>
                        <option value="cpu">"CPU (Flex)"</option>
                    </select>
                </label>
                <Show when=show_load>
                    <button id=loader.id("load-demo") on:click=move |_| loader.load_served() disabled=move || loading.get()>
                        {move || if backend.get().is_some() { "Load the demo model on this backend" } else { "Load the demo model" }}
                    </button>
                </Show>
                <label class="file">"or choose the exported files "
                    <input id=loader.id("model-files") type="file" multiple on:change=on_pick/>
                </label>
            </div>
            // The per-file bars while downloading; once a model runs, the status line says it all.
            <ul class="progress" style:display=move || if backend.get().is_some() && !loading.get() { "none" } else { "" }>
                {move || progress.get().into_iter().map(|f| {
                    let pct = f.total.map_or(0.0, |t| if t == 0 { 100.0 } else { 100.0 * f.loaded as f64 / t as f64 });
                    view! {
                        <li>
                            <span class="fname">{f.name.clone()}</span>
                            <progress max="100" value=pct.to_string()></progress>
                            <span class="size">{match (f.total, f.cached) {
                                (Some(t), true) => format!("{} (cached)", mb(t)),
                                (Some(t), false) => format!("{} / {}", mb(f.loaded), mb(t)),
                                (None, _) => mb(f.loaded),
                            }}</span>
                        </li>
                    }
                }).collect_view()}
            </ul>
            {move || about.get().map(|a| view! {
                <p class="about" id=loader.id("about")><b>"About this model: "</b>{a.sentence()}</p>
            })}
            <p class="status">
                {move || match (backend.get(), loading.get()) {
                    (_, true) => view! { <span class="muted">"loading…"</span> }.into_any(),
                    (Some(label), false) => view! { <span>"Running on " <b id=loader.id("backend-label")>{label}</b></span> }.into_any(),
                    (None, false) => view! { <span class="muted">"no model loaded"</span> }.into_any(),
                }}
                {move || load_timings.get().map(|t| view! { <span class="muted" id=loader.id("downloads")>" · " {downloads_text(&t)}</span> })}
            </p>
            {move || backend_note.get().map(|note| view! {
                <p class=if note.warning { "note-box warning" } else { "note-box" } id=loader.id("backend-note")>{note.text}</p>
            })}
        </section>
    }
}
