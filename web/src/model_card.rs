//! The "Model" card both pages share: pick a backend, download the served demo export (file by
//! file, with progress) or choose exported files, load them with the page's loader, and say
//! what the model runs on and what loading cost.

use std::future::Future;
use std::pin::Pin;

use bertvision_core::inference::{ExportFiles, NamedBytes};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine::{self, BackendChoice};
use crate::fetch::{fetch_bytes, now_ms, on_files_chosen};

#[derive(Debug, Clone, PartialEq)]
struct FileProgress {
    name: String,
    loaded: u64,
    total: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct LoadTimings {
    download_ms: Option<f64>,
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

type Loading = Pin<Box<dyn Future<Output = Result<String, String>>>>;

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
    load_timings: RwSignal<Option<LoadTimings>>,
    loading: RwSignal<bool>,
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
            load_timings: RwSignal::new(None),
            loading: RwSignal::new(false),
            error,
        }
    }

    fn id(self, name: &str) -> String {
        format!("{}{name}", self.ids)
    }

    fn load_export(self, files: ExportFiles, download_ms: Option<f64>) {
        let bytes = files.files().iter().map(|f| f.bytes.len() as u64).sum();
        spawn_local(async move {
            let t0 = now_ms();
            // Nothing from a previous model may stay on screen as if it were current.
            self.backend.set(None);
            match self.kind.load(files, self.choice.get_untracked()).await {
                Ok(label) => {
                    self.backend.set(Some(label));
                    self.load_timings.set(Some(LoadTimings {
                        download_ms,
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
        });
    }

    /// Downloads the served demo export, file by file with progress, then loads it.
    pub fn load_served(self) {
        self.loading.set(true);
        self.error.set(None);
        self.progress.set(Vec::new());
        spawn_local(async move {
            let t0 = now_ms();
            let mut files = Vec::new();
            for (i, rel) in ExportFiles::NAMES.iter().enumerate() {
                let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
                self.progress.update(|p| {
                    p.push(FileProgress {
                        name: name.clone(),
                        loaded: 0,
                        total: None,
                    })
                });
                let url = format!("{}/{rel}", self.served);
                let got = fetch_bytes(&url, |loaded, total| {
                    self.progress.update(|p| {
                        p[i].loaded = loaded;
                        p[i].total = total;
                    })
                })
                .await;
                let failure = match got {
                    Ok(Some(bytes)) => {
                        files.push(NamedBytes::new(url, bytes));
                        continue;
                    }
                    Ok(None) => format!(
                        "no demo model is served here ({url} is missing): choose the exported files below"
                    ),
                    Err(e) => e,
                };
                self.error.set(Some(failure));
                self.loading.set(false);
                return;
            }
            let download_ms = now_ms() - t0;
            let mut it = files.into_iter();
            let mut next = || it.next().expect("five files");
            let export = ExportFiles {
                config: next(),
                model: next(),
                tokenizer: next(),
                head: next(),
                head_config: next(),
            };
            self.load_export(export, Some(download_ms));
        });
    }

    /// Loads the files a user picked.
    fn load_picked(self, picked: Result<Vec<(String, Vec<u8>)>, String>) {
        self.loading.set(true);
        match picked.and_then(engine::export_from_named) {
            Ok(export) => {
                let sizes: Vec<FileProgress> = export
                    .files()
                    .iter()
                    .map(|f| FileProgress {
                        name: f.name.display().to_string(),
                        loaded: f.bytes.len() as u64,
                        total: Some(f.bytes.len() as u64),
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

/// The backend selector, the demo model's download progress and what it runs on.
pub fn model_card(loader: Loader) -> impl IntoView {
    let Loader {
        choice,
        progress,
        backend,
        load_timings,
        loading,
        ..
    } = loader;
    let on_pick = on_files_chosen(move |picked| loader.load_picked(picked));
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
                <button id=loader.id("load-demo") on:click=move |_| loader.load_served() disabled=move || loading.get()>"Load the demo model"</button>
                <label class="file">"or choose the exported files "
                    <input id=loader.id("model-files") type="file" multiple on:change=on_pick/>
                </label>
            </div>
            <ul class="progress">
                {move || progress.get().into_iter().map(|f| {
                    let pct = f.total.map_or(0.0, |t| if t == 0 { 100.0 } else { 100.0 * f.loaded as f64 / t as f64 });
                    view! {
                        <li>
                            <span class="fname">{f.name.clone()}</span>
                            <progress max="100" value=pct.to_string()></progress>
                            <span class="size">{match f.total { Some(t) => format!("{} / {}", mb(f.loaded), mb(t)), None => mb(f.loaded) }}</span>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <p class="status">
                {move || match (backend.get(), loading.get()) {
                    (_, true) => view! { <span class="muted">"loading…"</span> }.into_any(),
                    (Some(label), false) => view! { <span>"Running on " <b id=loader.id("backend-label")>{label}</b></span> }.into_any(),
                    (None, false) => view! { <span class="muted">"no model loaded"</span> }.into_any(),
                }}
                {move || load_timings.get().map(|t| format!(
                    " · {} · download {} · load {:.0} ms",
                    mb(t.bytes),
                    t.download_ms.map_or("— (local files)".to_string(), |d| format!("{d:.0} ms")),
                    t.load_ms
                ))}
            </p>
        </section>
    }
}
