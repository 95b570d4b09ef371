//! The GLUE page: load an export of a classification (or STS-B regression) run, type a sentence
//! or a pair, see BERT's, BERTVision's and the ensembles' probabilities (scores) side by side.

use bertvision_core::inference::classify::{ClassifySample, ClassifySamples, MethodDecision};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine::{self, ClassifyRun};
use crate::fetch::fetch_text;
use crate::model_card::{Loader, ModelKind, model_card};

/// Where `bertvision web-assets --classify-export` puts the demo export, relative to the page.
const DEMO_MODEL: &str = "models/classify";
const SAMPLES: &str = "classify-samples.json";

fn method_label(name: &str) -> &'static str {
    match name {
        "bert" => "BERT",
        "bertvision" => "BERTVision",
        "ensemble_max" => "Ensemble (max)",
        _ => "Ensemble (mean)",
    }
}

#[derive(Clone, Copy)]
struct ClassifyState {
    loader: Loader,
    error: RwSignal<Option<String>>,
    task: RwSignal<Option<String>>,
    samples: RwSignal<Vec<ClassifySample>>,
    text: RwSignal<String>,
    pair: RwSignal<String>,
    gold: RwSignal<Option<String>>,
    busy: RwSignal<bool>,
    last: RwSignal<Option<ClassifyRun>>,
}

impl ClassifyState {
    fn new() -> Self {
        let error = RwSignal::new(None);
        ClassifyState {
            loader: Loader::new(ModelKind::Classify, DEMO_MODEL, "cls-", error),
            error,
            task: RwSignal::new(None),
            samples: RwSignal::new(Vec::new()),
            text: RwSignal::new(String::new()),
            pair: RwSignal::new(String::new()),
            gold: RwSignal::new(None),
            busy: RwSignal::new(false),
            last: RwSignal::new(None),
        }
    }

    /// The served samples (optional), the first one shown.
    fn load_samples(self) {
        spawn_local(async move {
            match fetch_text(SAMPLES).await {
                Ok(Some(text)) => match serde_json::from_str::<ClassifySamples>(&text) {
                    Ok(s) => {
                        if let Some(first) = s.samples.first() {
                            self.show(first);
                        }
                        self.task.set(Some(s.task));
                        self.samples.set(s.samples);
                    }
                    Err(e) => self.error.set(Some(format!("{SAMPLES}: {e}"))),
                },
                Ok(None) => {}
                Err(e) => self.error.set(Some(e)),
            }
        });
    }

    fn show(self, sample: &ClassifySample) {
        self.text.set(sample.text.clone());
        self.pair.set(sample.pair.clone().unwrap_or_default());
        self.gold.set(sample.label.clone());
    }

    fn pick_sample(self, value: String) {
        if let Ok(i) = value.parse::<usize>() {
            self.samples
                .with_untracked(|s| s.get(i).map(|s| self.show(s)));
        }
    }

    fn run(self) {
        if self.busy.get_untracked() {
            return;
        }
        self.busy.set(true);
        self.error.set(None);
        let (text, pair) = (self.text.get_untracked(), self.pair.get_untracked());
        spawn_local(async move {
            let pair = Some(pair.as_str()).filter(|p| !p.trim().is_empty());
            match engine::classify_text(&text, pair).await {
                Ok(run) => {
                    self.task.set(Some(run.answers.task.clone()));
                    self.last.set(Some(run));
                }
                Err(e) => self.error.set(Some(e)),
            }
            self.busy.set(false);
        });
    }
}

/// `shown`: whether the page's tab is open; the demo model is downloaded the first time it is
/// (a visitor who never opens the page never downloads it).
#[component]
pub fn ClassifyPage(shown: Signal<bool>) -> impl IntoView {
    let state = ClassifyState::new();
    let started = RwSignal::new(false);
    Effect::new(move |_| {
        if shown.get() && !started.get_untracked() {
            started.set(true);
            state.load_samples();
            state.loader.load_served();
        }
    });
    Effect::new(move |_| {
        state.loader.backend.track();
        state.last.set(None);
    });
    view! {
        {model_card(state.loader)}
        {move || state.error.get().map(|e| view! { <div class="error" id="cls-error">{e}</div> })}
        {input_card(state)}
        {move || state.last.get().map(|run| results_view(state, run))}
    }
}

/// The sample selector, the sentence, the second sentence and the gold label.
fn input_card(state: ClassifyState) -> impl IntoView {
    let ClassifyState {
        task,
        samples,
        text,
        pair,
        gold,
        busy,
        loader,
        ..
    } = state;
    view! {
        <section class="card">
            <h2>{move || match task.get() {
                Some(t) => format!("Sentence or pair · {t}"),
                None => "Sentence or pair".to_string(),
            }}</h2>
            <Show when=move || !samples.get().is_empty()>
                <label>"Sample from the dev set "
                    <select id="cls-sample" on:change=move |ev| state.pick_sample(event_target_value(&ev))>
                        {move || samples.get().into_iter().enumerate().map(|(i, s)| {
                            let mut label = s.text.chars().take(70).collect::<String>();
                            if let Some(l) = &s.label { label.push_str(&format!(" — {l}")); }
                            view! { <option value=i.to_string()>{label}</option> }
                        }).collect_view()}
                    </select>
                </label>
            </Show>
            <textarea id="cls-text" rows="3" placeholder="A sentence"
                prop:value=move || text.get()
                on:input=move |ev| { text.set(event_target_value(&ev)); gold.set(None); }></textarea>
            <textarea id="cls-pair" rows="3"
                placeholder="The second sentence of a pair (RTE, MRPC, STS-B, …); empty for one-sentence tasks (SST-2, CoLA)"
                prop:value=move || pair.get()
                on:input=move |ev| { pair.set(event_target_value(&ev)); gold.set(None); }></textarea>
            <div class="row">
                <button id="cls-run" class="primary" on:click=move |_| state.run()
                    disabled=move || busy.get() || loader.backend.get().is_none()>
                    {move || if busy.get() { "Classifying…" } else { "Classify" }}
                </button>
                {move || gold.get().map(|g| view! { <span class="gold">"Gold: " <b>{g}</b></span> })}
            </div>
        </section>
    }
}

/// A card per method with a bar per label (or the score), the timings, and the raw outputs the
/// end-to-end test compares with the native code's.
fn results_view(state: ClassifyState, run: ClassifyRun) -> impl IntoView {
    let raw = serde_json::json!({
        "bert": run.bert,
        "bertvision": run.bertvision,
        "answers": run.answers,
    })
    .to_string();
    let labels = run.answers.labels.clone();
    let cards = (run.answers.methods.iter())
        .map(|m| method_card(m, &labels))
        .collect_view();
    let t = run.timings;
    view! {
        <section class="answers classify">{cards}</section>
        <p class="timings" id="cls-timings">
            {format!("{} tokens · tokenisation {:.1} ms · forward pass (both models, one encoder pass) {:.1} ms · on {}",
                run.tokens.len(), t.tokenize_ms, t.forward_ms, state.loader.backend.get_untracked().unwrap_or_default())}
        </p>
        <pre id="cls-json" hidden>{raw}</pre>
    }
}

fn method_card(m: &MethodDecision, labels: &[String]) -> impl IntoView + use<> {
    let name = m.method.name();
    let colour = match name {
        "bert" => 0,
        "bertvision" => 1,
        _ => 2,
    };
    let bars = (labels.iter().zip(&m.probabilities))
        .map(|(label, &p)| {
            let chosen = *label == m.prediction;
            view! {
                <div class="bar" class:chosen=chosen>
                    <span class="bar-label">{label.clone()}</span>
                    <span class="bar-track"><span class="bar-fill" style:width=format!("{:.1}%", 100.0 * p)></span></span>
                    <span class="bar-value">{format!("{:.1}%", 100.0 * p)}</span>
                </div>
            }
        })
        .collect_view();
    let score = m.score.map(|s| {
        view! { <p class="muted">{format!("score {s:.3} (0 = unrelated, 5 = same meaning; clipped to [0, 5] in submissions)")}</p> }
    });
    view! {
        <div class=format!("answer m-{colour}") id=format!("cls-method-{name}")>
            <h3>{method_label(name)}</h3>
            <p class="text">{m.prediction.clone()}</p>
            {bars}
            {score}
        </div>
    }
}
