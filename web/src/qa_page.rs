//! The SQuAD page: load an export (served or picked), ask a question about a passage, see
//! BERT's, BERTVision's and the ensemble's answers, where they are in the passage, and the
//! start/end probabilities over the tokens.

use bertvision_core::inference::qa::{DemoSample, QaAnswers, QaQuery, answer};
use bertvision_core::squad::{FeatureConfig, PostprocessConfig};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine::{self, RunTimings, WindowLogits};
use crate::fetch::fetch_text;
use crate::model_card::{Loader, ModelKind, model_card};

/// Where `bertvision web-assets` puts the demo export, relative to the page.
const DEMO_MODEL: &str = "models/squad";
const METHOD_LABELS: [&str; 3] = ["BERT", "BERTVision", "Ensemble"];

/// The last question's raw outputs; decisions are recomputed from them when the threshold moves.
#[derive(Debug, Clone, PartialEq)]
struct LastRun {
    query: QaQuery,
    bert: WindowLogits,
    bertvision: WindowLogits,
    timings: RunTimings,
}

/// The page's state: every signal its parts read and write (signals are `Copy`, so the parts
/// and the callbacks below each take the whole state by value).
#[derive(Clone, Copy)]
struct QaState {
    loader: Loader,
    backend: RwSignal<Option<String>>,
    error: RwSignal<Option<String>>,
    samples: RwSignal<Vec<DemoSample>>,
    passage: RwSignal<String>,
    question: RwSignal<String>,
    gold: RwSignal<Option<Vec<String>>>,
    /// The sample selector's value (`passage:question`; "" once the visitor edits the text).
    sample_choice: RwSignal<String>,
    threshold: RwSignal<f64>,
    busy: RwSignal<bool>,
    last: RwSignal<Option<LastRun>>,
    strip_method: RwSignal<usize>,
}

impl QaState {
    fn new() -> Self {
        let error = RwSignal::new(None);
        let loader = Loader::new(ModelKind::Qa, DEMO_MODEL, "", error);
        QaState {
            loader,
            backend: loader.backend,
            error,
            samples: RwSignal::new(Vec::new()),
            passage: RwSignal::new(String::new()),
            question: RwSignal::new(String::new()),
            gold: RwSignal::new(None),
            sample_choice: RwSignal::new("0:0".to_string()),
            threshold: RwSignal::new(0.0),
            busy: RwSignal::new(false),
            last: RwSignal::new(None),
            strip_method: RwSignal::new(1),
        }
    }

    /// The decisions for the last question at the current threshold (no model run).
    fn answers(self) -> Memo<Option<QaAnswers>> {
        Memo::new(move |_| {
            self.last.with(|l| {
                l.as_ref().map(|l| {
                    let config = PostprocessConfig {
                        null_threshold: self.threshold.get(),
                        ..Default::default()
                    };
                    answer(&l.query, l.bert.clone(), l.bertvision.clone(), &config)
                })
            })
        })
    }

    /// The served sample passages (optional), the first one shown.
    fn load_samples(self) {
        spawn_local(async move {
            match fetch_text("samples.json").await {
                Ok(Some(text)) => match serde_json::from_str::<Vec<DemoSample>>(&text) {
                    Ok(s) => {
                        if !s.is_empty() {
                            self.show_sample(&s, 0, 0);
                        }
                        self.samples.set(s);
                    }
                    Err(e) => self.error.set(Some(format!("samples.json: {e}"))),
                },
                Ok(None) => {}
                Err(e) => self.error.set(Some(e)),
            }
        });
    }

    /// The visitor's own text: the selector no longer claims a sample, and no gold is shown.
    fn edited(self) {
        self.gold.set(None);
        self.sample_choice.set(String::new());
    }

    /// Passage `a` of `samples` and its question `b`, with the gold answers.
    fn show_sample(self, samples: &[DemoSample], a: usize, b: usize) {
        if let Some(sample) = samples.get(a) {
            self.passage.set(sample.context.clone());
            if let Some(q) = sample.questions.get(b) {
                self.question.set(q.question.clone());
                self.gold.set(Some(q.answers.clone()));
            }
        }
    }

    /// The sample selector's value, `passage:question`.
    fn pick_sample(self, value: String) {
        self.sample_choice.set(value.clone());
        let mut parts = value.split(':');
        let (Some(Ok(a)), Some(Ok(b))) = (
            parts.next().map(str::parse::<usize>),
            parts.next().map(str::parse::<usize>),
        ) else {
            return;
        };
        self.samples.with_untracked(|s| self.show_sample(s, a, b));
    }

    /// Runs both models on the passage and question.
    fn ask(self) {
        if self.busy.get_untracked() {
            return;
        }
        self.busy.set(true);
        self.error.set(None);
        let (p, q) = (self.passage.get_untracked(), self.question.get_untracked());
        spawn_local(async move {
            match engine::ask(&p, &q, &FeatureConfig::default()).await {
                Ok((query, bert, bertvision, timings)) => self.last.set(Some(LastRun {
                    query,
                    bert,
                    bertvision,
                    timings,
                })),
                Err(e) => self.error.set(Some(e)),
            }
            self.busy.set(false);
        });
    }
}

#[component]
pub fn QaPage() -> impl IntoView {
    let state = QaState::new();
    let answers = state.answers();
    // On opening: the served samples (optional) and the served demo model.
    state.load_samples();
    state.loader.load_served();
    // A new model (or a failed load) leaves no answer of the previous one on screen.
    Effect::new(move |_| {
        state.backend.track();
        state.last.set(None);
    });
    view! {
        {model_card(state.loader)}
        {move || state.error.get().map(|e| view! { <div class="error" id="error">{e}</div> })}
        {question_card(state)}
        {move || answers.get().map(|a| answers_view(state, a))}
    }
}

/// The sample selector, the passage, the question, the threshold and the gold answers.
fn question_card(state: QaState) -> impl IntoView {
    let QaState {
        samples,
        passage,
        question,
        gold,
        sample_choice,
        threshold,
        busy,
        backend,
        ..
    } = state;
    view! {
        <section class="card">
            <h2>"Passage and question"</h2>
            <Show when=move || !samples.get().is_empty()>
                <label>"Sample from SQuAD 2.0 dev "
                    <select id="sample" prop:value=move || sample_choice.get() on:change=move |ev| state.pick_sample(event_target_value(&ev))>
                        <option value="">"— your own passage and question —"</option>
                        {move || samples.get().into_iter().enumerate().flat_map(|(a, s)| {
                            s.questions.into_iter().enumerate().map(move |(b, q)| {
                                let label = format!("{} — {}{}", s.title.replace('_', " "), q.question, if q.answers.is_empty() { " (unanswerable)" } else { "" });
                                view! { <option value=format!("{a}:{b}")>{label}</option> }
                            }).collect::<Vec<_>>()
                        }).collect_view()}
                    </select>
                </label>
            </Show>
            <textarea id="passage" rows="5" prop:value=move || passage.get()
                on:input=move |ev| { passage.set(event_target_value(&ev)); state.edited(); }></textarea>
            <div class="row">
                <input id="question" type="text" placeholder="Ask a question about the passage"
                    prop:value=move || question.get()
                    on:input=move |ev| { question.set(event_target_value(&ev)); state.edited(); }
                    on:keydown=move |ev| if ev.key() == "Enter" { state.ask() }/>
                <button id="ask" class="primary" on:click=move |_| state.ask()
                    disabled=move || busy.get() || backend.get().is_none()>
                    {move || if busy.get() { "Answering…" } else { "Answer" }}
                </button>
            </div>
            <div class="row">
                <label>"Answer less often "
                    <input id="threshold" type="range" min="-10" max="10" step="0.5"
                        prop:value=move || threshold.get().to_string()
                        on:input=move |ev| threshold.set(event_target_value(&ev).parse().unwrap_or(0.0))/>
                    " more often " <b>{move || format!("{:+.1}", threshold.get())}</b>
                </label>
                <span class="muted" title="Each model weighs its best answer against “no answer”.">"Right: answer even when “no answer” scores higher, by up to this much; 0 is how it was evaluated."</span>
            </div>
            {move || gold.get().map(|g| view! {
                <p class="gold">"Gold: " {if g.is_empty() { "no answer".to_string() } else {
                    let mut unique: Vec<String> = Vec::new();
                    for a in g { if !unique.contains(&a) { unique.push(a); } }
                    unique.join(" | ")
                }}</p>
            })}
        </section>
    }
}

/// The three answers, the timings, the spans in the passage and the probability strips.
fn answers_view(state: QaState, a: QaAnswers) -> impl IntoView {
    let QaState {
        last,
        backend,
        passage,
        strip_method,
        ..
    } = state;
    let timings = last
        .with_untracked(|l| l.as_ref().map(|l| l.timings))
        .unwrap_or_default();
    // What the end-to-end test compares with the native code's logits.
    let logits_json = serde_json::json!({
        "bert": last.with_untracked(|l| l.as_ref().map(|l| l.bert.clone())),
        "bertvision": last.with_untracked(|l| l.as_ref().map(|l| l.bertvision.clone())),
        "answers": a.methods.iter().map(|m| m.prediction.text.clone()).collect::<Vec<_>>(),
    })
    .to_string();
    let cards = a
        .methods
        .iter()
        .enumerate()
        .map(|(i, m)| answer_card(i, m))
        .collect_view();
    let marked = highlighted(&passage.get_untracked(), &a);
    let windows = a.windows;
    let none_answered = a.methods.iter().all(|m| m.prediction.text.is_empty());
    let about = state.loader.about.get_untracked();
    view! {
        <section class="answers">
            {cards}
        </section>
        {none_answered.then(|| view! {
            <p class="note-box" id="no-answer-note">
                {no_answer_sentence(about.as_ref())}
            </p>
        })}
        <p class="timings" id="timings">
            {format!("tokenisation {:.1} ms · forward pass (both models, one encoder pass, {} window{}) {:.1} ms · on {}",
                timings.tokenize_ms, windows, if windows == 1 { "" } else { "s" }, timings.forward_ms,
                backend.get_untracked().unwrap_or_default())}
        </p>
        <section class="card">
            <h2>"In the passage"</h2>
            <p class="legend">
                <span class="hl hl-0">"BERT"</span> " " <span class="hl hl-1">"BERTVision"</span> " " <span class="hl hl-2">"Ensemble"</span>
                <span class="muted">" (dashed in the model's colour: its best span, rejected for “no answer”)"</span>
            </p>
            <div class="passage">{marked}</div>
        </section>
        <section class="card">
            <h2>"Start / end probabilities"</h2>
            <div class="row">
                {(0..3).map(|i| view! {
                    <button class:active=move || strip_method.get() == i on:click=move |_| strip_method.set(i)>{METHOD_LABELS[i]}</button>
                }).collect_view()}
            </div>
            {move || strip(&a, strip_method.get())}
        </section>
        <pre id="logits-json" hidden>{logits_json}</pre>
    }
}

/// Why all three said "no answer", in plain words.
fn no_answer_sentence(about: Option<&bertvision_core::inference::about::ModelAbout>) -> String {
    let what = match about {
        Some(a) => format!(
            "This demo model is small ({} with {} parameters) and was trained on only {} training windows",
            a.model,
            bertvision_core::inference::about::group_digits(a.bert_parameters),
            a.train_examples.map_or(
                "a few".to_string(),
                bertvision_core::inference::about::group_digits
            ),
        ),
        None => "This model".to_string(),
    };
    format!(
        "None of the three models answered. {what}, so it rarely answers: slide “more often” to the right to see its best guesses (the dashed marks in the passage)."
    )
}

/// A probability as a percentage with two significant digits below 1%.
fn percent(p: f64) -> String {
    let pct = 100.0 * p;
    if pct != 0.0 && pct.abs() < 1.0 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1}%")
    }
}

fn answer_card(
    i: usize,
    m: &bertvision_core::inference::qa::MethodAnswer,
) -> impl IntoView + use<> {
    let p = &m.prediction;
    let no_answer = p.text.is_empty();
    let id = format!("answer-{}", m.method);
    view! {
        <div class=format!("answer m-{i}") id=id>
            <h3>{METHOD_LABELS[i]}</h3>
            <p class="text" class:none=no_answer>
                {if no_answer { "No answer".to_string() } else { p.text.clone() }}
            </p>
            {(no_answer && !p.best_span.is_empty()).then(|| view! {
                <p class="muted">"best span: “" {p.best_span.clone()} "”"</p>
            })}
            <dl>
                <dt>"span probability"</dt><dd>{percent(m.span_probability)}</dd>
                <dt>"no-answer probability"</dt><dd>{percent(p.na_prob)}</dd>
                <dt title="the score of “no answer” minus the best span's: above the slider's value, the model says no answer">"“no answer” ahead by"</dt>
                <dd>{format!("{:+.2}", p.null_score - p.best_span_score)}</dd>
            </dl>
        </div>
    }
}

/// The passage with each method's span marked (solid when answered, dashed when rejected).
fn highlighted(passage: &str, answers: &QaAnswers) -> impl IntoView + use<> {
    let chars: Vec<char> = passage.chars().collect();
    let mut marks = vec![(0u8, 0u8); chars.len()]; // (answered bits, rejected bits)
    for (i, m) in answers.methods.iter().enumerate() {
        if let Some(at) = m.prediction.best_span_at {
            for c in marks
                .iter_mut()
                .take(at.char_to.min(chars.len()))
                .skip(at.char_from)
            {
                if m.prediction.text.is_empty() {
                    c.1 |= 1 << i;
                } else {
                    c.0 |= 1 << i;
                }
            }
        }
    }
    let mut segments: Vec<(String, (u8, u8))> = Vec::new();
    for (c, mark) in chars.iter().zip(marks) {
        match segments.last_mut() {
            Some((text, m)) if *m == mark => text.push(*c),
            _ => segments.push((c.to_string(), mark)),
        }
    }
    segments
        .into_iter()
        .map(|(text, (on, off))| {
            if on == 0 && off == 0 {
                view! { <span>{text}</span> }.into_any()
            } else {
                let class = (0..3)
                    .filter(|i| on & (1 << i) != 0)
                    .map(|i| format!("hl hl-{i}"))
                    .chain(
                        (0..3)
                            .filter(|i| off & (1 << i) != 0)
                            .map(|i| format!("hl-off hl-off-{i}")),
                    )
                    .collect::<Vec<_>>()
                    .join(" ");
                view! { <mark class=class>{text}</mark> }.into_any()
            }
        })
        .collect_view()
}

/// One window's tokens with start (upper row) and end (lower row) probabilities as shades.
fn strip(answers: &QaAnswers, method: usize) -> impl IntoView + use<> {
    let m = &answers.methods[method];
    let tokens = &answers.tokens[m.window];
    let cell = 9.0;
    let width = cell * tokens.len() as f64;
    let max_s = m.start_probs.iter().copied().fold(1e-9f32, f32::max);
    let max_e = m.end_probs.iter().copied().fold(1e-9f32, f32::max);
    let best = m
        .prediction
        .best_span_at
        .filter(|at| at.feature == m.window);
    view! {
        <p class="muted">{format!("window {} of {} · {} tokens · darker = more probable (scaled to the window's maximum: start {:.1}%, end {:.1}%)",
            m.window + 1, answers.windows, tokens.len(), 100.0 * max_s, 100.0 * max_e)}</p>
        <div class="strip">
            <svg id="prob-strip" width=width.to_string() height="58" viewBox=format!("0 0 {width} 58")>
                {tokens.iter().enumerate().map(|(i, tok)| {
                    let x = i as f64 * cell;
                    let s = m.start_probs[i];
                    let e = m.end_probs[i];
                    let in_best = best.is_some_and(|b| i >= b.start_token && i <= b.end_token);
                    view! {
                        <g>
                            <title>{format!("{tok}: start {:.2}%, end {:.2}%", 100.0 * s, 100.0 * e)}</title>
                            <rect x=x.to_string() y="2" width=(cell - 1.0).to_string() height="22"
                                fill="#7c3aed" fill-opacity=format!("{:.3}", 0.05 + 0.95 * s / max_s)/>
                            <rect x=x.to_string() y="26" width=(cell - 1.0).to_string() height="22"
                                fill="#0d9488" fill-opacity=format!("{:.3}", 0.05 + 0.95 * e / max_e)/>
                            {in_best.then(|| view! { <rect x=x.to_string() y="51" width=(cell - 1.0).to_string() height="5" fill="#111827"/> })}
                        </g>
                    }
                }).collect_view()}
            </svg>
        </div>
        <p class="legend"><span class="sw start"></span>" start " <span class="sw end"></span>" end " <span class="sw span"></span>" best span"</p>
    }
}
