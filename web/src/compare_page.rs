//! The comparison page: `results.json` files of `bertvision run` (served under `results/` and
//! listed in `results/index.json`, or picked) as charts and tables per task.

use bertvision_core::pipeline::SquadRow;
use bertvision_core::pipeline::results::{RunResults, slice_score};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::charts::{Bar, bar_chart};
use crate::fetch::{fetch_text, on_files_chosen};

/// Methods in display order: key, short label, colour.
const METHODS: [(&str, &str, &str); 5] = [
    ("bert_extract", "BERT-1e", "#2563eb"),
    ("bert_final", "BERT-final", "#1e3a8a"),
    ("bertvision", "BERTVision", "#ea580c"),
    ("ensemble_max", "Ens. max", "#16a34a"),
    ("ensemble_mean", "Ens. mean", "#65a30d"),
];

fn label_of(key: &str) -> &str {
    METHODS.iter().find(|m| m.0 == key).map_or(key, |m| m.1)
}

fn parse(name: &str, text: &str) -> Result<RunResults, String> {
    RunResults::parse(std::path::Path::new(name), text).map_err(|e| e.to_string())
}

#[component]
pub fn ComparePage() -> impl IntoView {
    let runs = RwSignal::new(Vec::<(String, RunResults)>::new());
    let errors = RwSignal::new(Vec::<String>::new());
    let add = move |name: String, text: String| match parse(&name, &text) {
        Ok(r) => runs.update(|v| {
            v.retain(|(n, _)| *n != name);
            v.push((name, r));
        }),
        Err(e) => errors.update(|v| v.push(e)),
    };

    spawn_local(async move {
        match fetch_text("results/index.json").await {
            Ok(Some(index)) => match serde_json::from_str::<Vec<String>>(&index) {
                Ok(files) => {
                    for f in files {
                        let url = format!("results/{f}");
                        match fetch_text(&url).await {
                            Ok(Some(text)) => add(url, text),
                            Ok(None) => errors.update(|v| {
                                v.push(format!("{url}: listed in results/index.json but missing"))
                            }),
                            Err(e) => errors.update(|v| v.push(e)),
                        }
                    }
                }
                Err(e) => errors.update(|v| v.push(format!("results/index.json: {e}"))),
            },
            Ok(None) => {}
            Err(e) => errors.update(|v| v.push(e)),
        }
    });

    let on_pick = on_files_chosen(move |picked| match picked {
        Ok(files) => {
            for (name, bytes) in files {
                match String::from_utf8(bytes) {
                    Ok(text) => add(name, text),
                    Err(_) => errors.update(|v| v.push(format!("{name}: not UTF-8 text"))),
                }
            }
        }
        Err(e) => errors.update(|v| v.push(e)),
    });

    view! {
        <section class="card">
            <h2>"Results"</h2>
            <p class="muted">"The " <code>"results.json"</code> " files written by " <code>"bertvision run"</code>
                " (one per task; mean ± sd over its seeds)."</p>
            <label class="file">"Add results.json files "
                <input id="results-files" type="file" accept=".json" multiple on:change=on_pick/>
            </label>
            <button on:click=move |_| { runs.set(Vec::new()); errors.set(Vec::new()); }>"Clear"</button>
        </section>
        {move || errors.get().into_iter().map(|e| view! { <div class="error compare-error">{e}</div> }).collect_view()}
        {move || {
            let r = runs.get();
            if r.is_empty() && errors.get().is_empty() {
                view! { <p class="muted center">"No results yet: add results.json files above."</p> }.into_any()
            } else {
                r.into_iter().map(|(name, run)| run_section(name, run)).collect_view().into_any()
            }
        }}
    }
}

fn percent_or_raw(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 1.5 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn run_section(name: String, run: RunResults) -> impl IntoView + use<> {
    let split = run
        .summary
        .get("bertvision")
        .and_then(|s| s.keys().next().cloned())
        .unwrap_or_else(|| "dev".to_string());
    let span = !run.seeds.iter().all(|s| s.squad_examples.is_empty())
        || run.task.to_lowercase().starts_with("squad");
    let metric_names: Vec<String> = if span {
        vec!["exact".into(), "f1".into()]
    } else {
        bertvision_core::tasks::registry::task(&run.task)
            .map(|t| t.metrics.iter().map(|m| m.name().to_string()).collect())
            .unwrap_or_else(|_| {
                run.summary
                    .get("bertvision")
                    .and_then(|s| s.get(&split))
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            })
    };
    let charts = metric_names
        .iter()
        .map(|metric| {
            let bars = METHODS
                .iter()
                .filter_map(|(key, label, color)| {
                    let s = run.summary.get(*key)?.get(&split)?.get(metric)?;
                    Some(Bar {
                        label: label.to_string(),
                        value: s.mean,
                        error: s.sd,
                        color,
                    })
                })
                .collect();
            bar_chart(format!("{metric} ({split})"), bars, percent_or_raw)
        })
        .collect_view();

    // Training time per method: BERT up to its checkpoint, the head on its own.
    let n = run.seeds.len().max(1) as f64;
    let mean_wall = |phase: &str| {
        run.seeds
            .iter()
            .filter_map(|s| s.wall_seconds.get(phase))
            .sum::<f64>()
            / n
    };
    let (finetune, head) = (mean_wall("finetune"), mean_wall("head"));
    let frac = run.config.extract_at / run.config.finetune.epochs.max(1e-9);
    let rows = METHODS
        .iter()
        .filter(|(key, _, _)| run.summary.contains_key(*key))
        .map(|(key, label, _)| {
            let (params, time) = match *key {
                "bert_extract" => (run.parameters.bert.to_string(), format!("{:.0} s", finetune * frac)),
                "bert_final" => (run.parameters.bert.to_string(), format!("{finetune:.0} s")),
                "bertvision" => (
                    format!("{} ({:.2}% of BERT)", run.parameters.head, 100.0 * run.parameters.head_share_of_bert),
                    format!("{head:.0} s (+ BERT-1e)"),
                ),
                _ => ("–".to_string(), "–".to_string()),
            };
            let cells = metric_names
                .iter()
                .map(|m| {
                    let s = run.summary.get(*key).and_then(|s| s.get(&split)).and_then(|s| s.get(m));
                    view! { <td class="num">{s.map_or("–".to_string(), |s| if s.n > 1 {
                        format!("{} ± {}", percent_or_raw(s.mean), percent_or_raw(s.sd))
                    } else { percent_or_raw(s.mean) })}</td> }
                })
                .collect_view();
            view! { <tr><td>{label.to_string()}</td><td class="num">{params}</td><td class="num">{time}</td>{cells}</tr> }
        })
        .collect_view();

    let layers = run
        .seeds
        .iter()
        .map(|s| s.head_layer_share.len())
        .max()
        .unwrap_or(0);
    let layer_bars: Vec<Bar> = (0..layers)
        .map(|l| {
            let v: Vec<f64> = run
                .seeds
                .iter()
                .filter_map(|s| s.head_layer_share.get(l).copied())
                .collect();
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            let sd = if v.len() > 1 {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
            } else {
                0.0
            };
            Bar {
                label: if l == 0 {
                    "emb".into()
                } else {
                    format!("L{l}")
                },
                value: 100.0 * mean,
                error: 100.0 * sd,
                color: "#ea580c",
            }
        })
        .collect();
    let squad = run
        .seeds
        .first()
        .and_then(|s| s.squad_examples.get(&split).cloned());

    view! {
        <section class="card run" data-task=run.task.clone()>
            <h2>{format!("{} · {} · {} seed{} · {}", run.task, run.model.spec, run.seeds.len(),
                if run.seeds.len() == 1 { "" } else { "s" }, run.device)}</h2>
            <p class="muted source">{name}</p>
            <div class="charts">{charts}</div>
            <table class="metrics">
                <thead><tr><th>"method"</th><th>"trainable params"</th><th>"training time"</th>
                    {metric_names.iter().map(|m| view! { <th>{m.clone()}</th> }).collect_view()}</tr></thead>
                <tbody>{rows}</tbody>
            </table>
            {(!layer_bars.is_empty()).then(|| view! {
                <div class="charts">
                    {bar_chart("AdapterPooler weight per layer (%)".to_string(), layer_bars, |v| format!("{v:.1}"))}
                    <p class="muted note">"Each hidden-state layer's share of the head's squared weights (the scalar-mix weights when the head mixes layers); embeddings first."</p>
                </div>
            })}
            {squad.map(squad_table)}
        </section>
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agreement {
    All,
    Disagree,
    Agree,
}

fn squad_table(rows: Vec<SquadRow>) -> impl IntoView + use<> {
    let filter = RwSignal::new(Agreement::All);
    let methods: Vec<String> = [
        "bert_extract",
        "bertvision",
        "ensemble_mean",
        "ensemble_max",
        "bert_final",
    ]
    .iter()
    .filter(|m| rows.first().is_some_and(|r| r.answers.contains_key(**m)))
    .map(|m| m.to_string())
    .collect();
    // Context-length terciles of this split.
    let mut lengths: Vec<usize> = rows.iter().map(|r| r.context_words).collect();
    lengths.sort_unstable();
    let cut = |q: usize| lengths.get(lengths.len() * q / 3).copied().unwrap_or(0);
    let (c1, c2) = (cut(1), cut(2));
    let slices: Vec<(String, Vec<&SquadRow>)> = vec![
        ("all".to_string(), rows.iter().collect()),
        (
            "HasAns".to_string(),
            rows.iter().filter(|r| !r.gold.is_empty()).collect(),
        ),
        (
            "NoAns".to_string(),
            rows.iter().filter(|r| r.gold.is_empty()).collect(),
        ),
        (
            format!("context < {c1} words"),
            rows.iter().filter(|r| r.context_words < c1).collect(),
        ),
        (
            format!("{c1}–{} words", c2.saturating_sub(1)),
            rows.iter()
                .filter(|r| r.context_words >= c1 && r.context_words < c2)
                .collect(),
        ),
        (
            format!("≥ {c2} words"),
            rows.iter().filter(|r| r.context_words >= c2).collect(),
        ),
    ];
    let slice_rows = slices
        .iter()
        .map(|(name, set)| {
            let cells = methods
                .iter()
                .map(|m| {
                    let s = slice_score(set, m);
                    view! { <td class="num">{format!("{:.1} / {:.1}", s.exact, s.f1)}</td> }
                })
                .collect_view();
            view! { <tr><td>{name.clone()}</td><td class="num">{set.len()}</td>{cells}</tr> }
        })
        .collect_view();
    let header = methods
        .iter()
        .map(|m| view! { <th>{label_of(m).to_string()}</th> })
        .collect_view();
    let header2 = methods
        .iter()
        .map(|m| view! { <th>{label_of(m).to_string()}</th> })
        .collect_view();
    let total = rows.len();
    let shown_rows = {
        let methods = methods.clone();
        move || {
            let f = filter.get();
            let kept: Vec<&SquadRow> = rows
                .iter()
                .filter(|r| {
                    let a = r
                        .answers
                        .get("bert_extract")
                        .map(|s| bertvision_core::squad::eval::normalize_answer(s));
                    let b = r
                        .answers
                        .get("bertvision")
                        .map(|s| bertvision_core::squad::eval::normalize_answer(s));
                    match f {
                        Agreement::All => true,
                        Agreement::Disagree => a != b,
                        Agreement::Agree => a == b,
                    }
                })
                .collect();
            let count = kept.len();
            let body = kept
                .into_iter()
                .take(200)
                .map(|r| {
                    let gold = if r.gold.is_empty() { "—".to_string() } else { r.gold.join(" | ") };
                    let cells = methods
                        .iter()
                        .map(|m| {
                            let a = r.answers.get(m).cloned().unwrap_or_default();
                            let right = slice_score(&[r], m).exact > 0.0;
                            view! { <td class:right=right class:wrong=!right>{if a.is_empty() { "—".to_string() } else { a }}</td> }
                        })
                        .collect_view();
                    view! { <tr><td>{r.question.clone()}</td><td>{gold}</td><td class="num">{r.context_words}</td>{cells}</tr> }
                })
                .collect_view();
            view! {
                <p class="muted">{format!("{count} of {total} questions{}", if count > 200 { "; the first 200 shown" } else { "" })}</p>
                <table class="examples"><thead><tr><th>"question"</th><th>"gold"</th><th>"words"</th>{header2.clone()}</tr></thead>
                <tbody>{body}</tbody></table>
            }
        }
    };
    view! {
        <h3>"SQuAD 2.0 by slice (EM / F1)"</h3>
        <table class="metrics slices">
            <thead><tr><th>"slice"</th><th>"questions"</th>{header}</tr></thead>
            <tbody>{slice_rows}</tbody>
        </table>
        <h3>"Per question"</h3>
        <div class="row">
            <label>"Show "
                <select class="agree-filter" on:change=move |ev| filter.set(match event_target_value(&ev).as_str() {
                    "disagree" => Agreement::Disagree,
                    "agree" => Agreement::Agree,
                    _ => Agreement::All,
                })>
                    <option value="all">"all questions"</option>
                    <option value="disagree">"BERT and BERTVision disagree"</option>
                    <option value="agree">"BERT and BERTVision agree"</option>
                </select>
            </label>
            <span class="muted">"green: exact match with a gold answer (— is no answer)"</span>
        </div>
        <div class="scroll">{shown_rows}</div>
    }
}
