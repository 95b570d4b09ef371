//! The comparison page: `results.json` files of `bertvision run` (served under `results/` and
//! listed in `results/index.json`, or picked) as charts and tables per task.

use bertvision_core::pipeline::SquadRow;
use bertvision_core::pipeline::charts::run_charts;
use bertvision_core::pipeline::methods::{BERT, method_at, point_label};
use bertvision_core::pipeline::report::epochs_label;
use bertvision_core::pipeline::results::{RunResults, slice_score};
use leptos::prelude::*;
use leptos::task::spawn_local;

use bertvision_core::inference::about::{display_model, group_digits};

use crate::charts::{Bar, Group, bar_chart, grouped_chart};
use crate::fetch::{fetch_text, on_files_chosen};

/// Methods in display order: key, colour.
const METHODS: [(&str, &str); 5] = [
    ("bert_extract", "#2563eb"),
    ("bert_final", "#1e3a8a"),
    ("bertvision", "#ea580c"),
    ("ensemble_max", "#16a34a"),
    ("ensemble_mean", "#65a30d"),
];

/// A method's short label, named by its real extraction point (`BERT-0.5e`, `BERTVision-1e`).
fn label_of(run: &RunResults, key: &str) -> String {
    let point = run.config.last_point();
    let e = epochs_label;
    match key {
        "bert_extract" => format!("BERT-{}", e(point)),
        "bert_final" => run.config.bert_final_label(),
        "bertvision" => format!("BERTVision-{}", e(point)),
        "ensemble_max" => "Ens. max".to_string(),
        "ensemble_mean" => "Ens. mean".to_string(),
        other => other.to_string(),
    }
}

/// Which point (and share of the data for the heads) the bars and the table show.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Choice {
    point: f64,
    fraction: f64,
}

/// The results key a main method has at `choice` (`bert_extract` → `bert@0.5`, `bertvision` →
/// `bertvision@0.5/0.1`); `bert_final` stays itself.
fn key_at(run: &RunResults, key: &str, choice: Choice) -> String {
    let at = |m: &str, f: f64| method_at(m, choice.point, f);
    let keyed = match key {
        "bert_extract" => at(BERT, 1.0),
        "bert_final" => return key.to_string(),
        other => at(other, choice.fraction),
    };
    if run.summary.contains_key(&keyed) {
        keyed
    } else {
        key.to_string()
    }
}

/// The label of a main method at `choice`.
fn label_at(run: &RunResults, key: &str, choice: Choice) -> String {
    let data = if choice.fraction < 1.0 && key != "bert_extract" && key != "bert_final" {
        format!(" ({} data)", choice.fraction)
    } else {
        String::new()
    };
    match key {
        "bert_extract" => format!("BERT-{}", epochs_label(choice.point)),
        "bertvision" => format!("BERTVision-{}{data}", epochs_label(choice.point)),
        other => format!("{}{data}", label_of(run, other)),
    }
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
                let overview = (!r.is_empty()).then(|| overview(&r));
                let sections = r.into_iter().enumerate().map(|(i, (name, run))| run_section(i, name, run)).collect_view();
                view! { {overview} {sections} }.into_any()
            }
        }}
    }
}

/// Methods of the overview: key, label, colour.
const OVERVIEW: [(&str, &str, &str); 4] = [
    ("bert_extract", "BERT at the extraction point", "#2563eb"),
    ("bert_final", "BERT at the end of fine-tuning", "#1e3a8a"),
    ("bertvision", "BERTVision", "#ea580c"),
    ("ensemble_mean", "Ensemble (mean)", "#65a30d"),
];

/// One task's main metric for the overview: the registry's first metric (SQuAD: F1).
fn main_metric(run: &RunResults) -> Option<(String, String)> {
    let (split, metrics) = split_and_metrics(run);
    let metric =
        if metrics.iter().any(|m| m == "f1") && run.task.to_lowercase().starts_with("squad") {
            "f1".to_string()
        } else {
            metrics.first()?.clone()
        };
    Some((split, metric))
}

/// The card at the top: every run's main metric for BERT (at the extraction point and at the
/// end), BERTVision and the ensemble, BERTVision's gain over BERT at the same point, and a
/// jump link to each run's section.
fn overview(runs: &[(String, RunResults)]) -> impl IntoView + use<> {
    let groups: Vec<Group> = runs
        .iter()
        .filter_map(|(_, run)| {
            let (split, metric) = main_metric(run)?;
            let value = |key: &str| {
                run.summary
                    .get(key)?
                    .get(&split)?
                    .get(&metric)
                    .map(|s| s.mean)
            };
            let bars = OVERVIEW
                .iter()
                .map(|(key, _, color)| (value(key), *color))
                .collect();
            let gain = match (value("bertvision"), value("bert_extract")) {
                (Some(bv), Some(bert)) if bert.abs() > 1e-12 => {
                    Some(format!("{:+.1}%", 100.0 * (bv - bert) / bert.abs()))
                }
                _ => None,
            };
            Some(Group {
                label: format!("{} {}", run.task, metric),
                sublabel: display_model(&run.model.spec),
                bars,
                note: gain,
            })
        })
        .collect();
    let links = runs
        .iter()
        .enumerate()
        .map(|(i, (_, run))| {
            let href = format!("#{}", anchor(i, run));
            view! { <a href=href>{format!("{} · {} · {} seeds", run.task, display_model(&run.model.spec), run.seeds.len())}</a> }
        })
        .collect_view();
    let legend = OVERVIEW
        .iter()
        .map(|(_, label, color)| view! { <span><span class="sw" style:background=*color></span>" " {*label}</span> })
        .collect_view();
    view! {
        <section class="card" id="compare-overview">
            <h2>"Overview"</h2>
            <p class="muted">"Each task's main dev metric, mean over seeds; under each task, BERTVision's gain over BERT at the same fine-tuning point."</p>
            <p class="legend jump">{legend}</p>
            <div class="table-scroll">{grouped_chart(groups, percent_or_raw)}</div>
            <nav class="jump" aria-label="runs">{links}</nav>
        </section>
    }
}

/// Why the max and mean ensembles show the same numbers, when they do on a two-class task.
fn ensembles_note(
    run: &RunResults,
    choice: Choice,
    split: &str,
    metrics: &[String],
) -> Option<impl IntoView + use<>> {
    let two_classes = bertvision_core::tasks::registry::task(&run.task).is_ok_and(|t| {
        matches!(t.kind, bertvision_core::tasks::registry::TaskKind::Classification { labels } if labels.len() == 2)
    });
    let value = |key: &str, m: &String| {
        run.summary
            .get(&key_at(run, key, choice))?
            .get(split)?
            .get(m)
            .map(|s| (s.mean, s.sd))
    };
    let same = metrics.iter().all(|m| {
        value("ensemble_max", m).is_some() && value("ensemble_max", m) == value("ensemble_mean", m)
    });
    (two_classes && same).then(|| view! {
        <p class="muted note">"The max and mean ensembles agree on every example here, as they must with two classes and two models: the more confident model's class wins (max) exactly when the mean probability favours it."</p>
    })
}

/// Decimals for a metric of this size: SQuAD's and percentages' 0–100 get 1, GLUE's 0–1 get 3.
fn decimals(v: f64) -> usize {
    if v.abs() >= 1.5 { 1 } else { 3 }
}

fn percent_or_raw(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else {
        format!("{v:.*}", decimals(v))
    }
}

/// "mean ± sd", the sd with the mean's decimals.
fn mean_sd(mean: f64, sd: f64) -> String {
    let d = decimals(mean);
    format!("{mean:.d$} ± {sd:.d$}")
}

/// The anchor of the `i`-th run's section, for the overview's jump links.
fn anchor(i: usize, run: &RunResults) -> String {
    format!(
        "run-{}-{}",
        i + 1,
        run.task.replace(|c: char| !c.is_ascii_alphanumeric(), "")
    )
}

fn run_section(i: usize, name: String, run: RunResults) -> impl IntoView + use<> {
    let id = anchor(i, &run);
    let choices = choices_of(&run);
    let main = Choice {
        point: run.config.last_point(),
        fraction: 1.0,
    };
    let choice = RwSignal::new(main);
    let squad = run
        .seeds
        .first()
        .and_then(|s| s.squad_examples.values().next().cloned());
    let span = run.task.to_lowercase().starts_with("squad");
    let no_rows = (span && squad.is_none()).then(|| view! {
        <p class="muted no-rows">"No per-question rows in this results.json (its " <code>"squad_examples"</code>
            " are empty or were removed), so the slice and per-question tables are not shown."</p>
    });
    let curves = match run_charts(&run) {
        Ok(charts) => charts
            .into_iter()
            .filter(|c| !c.file.ends_with("-loss.svg") || run.config.extract_at.len() > 1)
            .map(|c| view! { <div class="curve" title=c.title.clone() inner_html=c.svg></div> })
            .collect_view()
            .into_any(),
        Err(e) => view! { <div class="error compare-error">{e.to_string()}</div> }.into_any(),
    };
    let header = format!(
        "{} · {} · {} seed{} · {}",
        run.task,
        display_model(&run.model.spec),
        run.seeds.len(),
        if run.seeds.len() == 1 { "" } else { "s" },
        run.device
    );
    let task = run.task.clone();
    let run = StoredValue::new(run);
    let picker = (choices.len() > 1).then(|| {
        let options = choices
            .iter()
            .enumerate()
            .map(|(i, c)| view! { <option value=i.to_string() selected=*c == main>{choice_label(*c)}</option> })
            .collect_view();
        view! {
            <label class="point-choice">"Show the methods at "
                <select class="point-select" on:change=move |ev| {
                    if let Some(c) = event_target_value(&ev).parse::<usize>().ok().and_then(|i| choices.get(i)) {
                        choice.set(*c);
                    }
                }>{options}</select>
            </label>
        }
    });
    view! {
        <section class="card run" data-task=task id=id>
            <h2>{header}</h2>
            <p class="muted source">{name}</p>
            {picker}
            {move || run.with_value(|r| methods_view(r, choice.get()))}
            {run.with_value(layers_view)}
            <div class="charts curves">{curves}</div>
            {squad.map(|rows| run.with_value(|r| squad_table(r, rows)))}
            {no_rows}
            <p class="muted"><a href="#compare-overview">"↑ overview"</a></p>
        </section>
    }
}

/// Every (point, fraction) the run has heads for: the extraction points × the head fractions.
fn choices_of(run: &RunResults) -> Vec<Choice> {
    let mut fractions = vec![1.0];
    fractions.extend(run.config.head.train_fractions.iter().copied());
    run.config
        .extract_at
        .iter()
        .flat_map(|&point| {
            fractions
                .iter()
                .map(move |&fraction| Choice { point, fraction })
        })
        .collect()
}

fn choice_label(c: Choice) -> String {
    if c.fraction < 1.0 {
        format!(
            "{} epochs, heads on {} of the data",
            point_label(c.point),
            point_label(c.fraction)
        )
    } else {
        format!("{} epochs", point_label(c.point))
    }
}

/// The split and metrics a run's charts and tables show.
fn split_and_metrics(run: &RunResults) -> (String, Vec<String>) {
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
    (split, metric_names)
}

/// The main methods shown at `choice`: all of them, but BERT at the end of fine-tuning only
/// when the chosen point is earlier (at the end, `bert@p` is that very model).
fn shown_methods(
    run: &RunResults,
    choice: Choice,
) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let at_end = choice.point >= run.config.finetune.epochs;
    METHODS
        .iter()
        .filter(move |(key, _)| !(at_end && *key == "bert_final"))
}

/// The bars and the table of every method at `choice`.
fn methods_view(run: &RunResults, choice: Choice) -> impl IntoView + use<> {
    let (split, metric_names) = split_and_metrics(run);
    let charts = metric_names
        .iter()
        .map(|metric| {
            let bars = shown_methods(run, choice)
                .filter_map(|(key, color)| {
                    let s = run
                        .summary
                        .get(&key_at(run, key, choice))?
                        .get(&split)?
                        .get(metric)?;
                    Some(Bar {
                        label: label_at(run, key, choice),
                        value: s.mean,
                        error: s.sd,
                        color,
                    })
                })
                .collect();
            bar_chart(format!("{metric} ({split})"), bars, percent_or_raw)
        })
        .collect_view();
    let rows = shown_methods(run, choice)
        .filter(|(key, _)| run.summary.contains_key(&key_at(run, key, choice)))
        .map(|(key, _)| {
            let (params, time) = cost_cells(run, key, choice);
            let cells = metric_names
                .iter()
                .map(|m| {
                    let s = run.summary.get(&key_at(run, key, choice)).and_then(|s| s.get(&split)).and_then(|s| s.get(m));
                    view! { <td class="num">{s.map_or("–".to_string(), |s| if s.n > 1 {
                        mean_sd(s.mean, s.sd)
                    } else { percent_or_raw(s.mean) })}</td> }
                })
                .collect_view();
            view! { <tr><td>{label_at(run, key, choice)}</td><td class="num">{params}</td><td class="num">{time}</td>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="charts">{charts}</div>
        <div class="table-scroll">
        <table class="metrics">
            <thead><tr><th>"method"</th><th>"trainable params"</th><th>"training time"</th>
                {metric_names.iter().map(|m| view! { <th>{m.clone()}</th> }).collect_view()}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
        </div>
        {ensembles_note(run, choice, &split, &metric_names)}
    }
}

/// "12 s"; a zero is written "0 s", never "-0 s" (an empty sum of f64 is −0.0).
fn seconds_text(s: f64) -> String {
    format!("{:.0} s", s + 0.0)
}

/// Mean over seeds of a phase's recorded seconds.
fn mean_wall(run: &RunResults, phase: &str) -> Option<f64> {
    let v: Vec<f64> = run
        .seeds
        .iter()
        .filter_map(|s| s.wall_seconds.get(phase).copied())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean over seeds of what `point` cost: (fine-tuning seconds up to it, the head's seconds).
fn point_seconds(run: &RunResults, point: f64) -> (Option<f64>, Option<f64>) {
    let costs: Vec<_> = run
        .seeds
        .iter()
        .filter_map(|s| s.costs.iter().find(|c| c.at == point))
        .collect();
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    (
        mean(costs.iter().filter_map(|c| c.finetune_seconds).collect()),
        mean(costs.iter().filter_map(|c| c.head_seconds).collect()),
    )
}

/// Parameters and training time of a method at `choice`: BERT up to its checkpoint (from the
/// recorded costs, else the share of the fine-tuning time), the head on its own.
fn cost_cells(run: &RunResults, key: &str, choice: Choice) -> (String, String) {
    let seconds = |s: Option<f64>| s.map_or("–".to_string(), seconds_text);
    let finetune = mean_wall(run, "finetune");
    let (at_point, head) = point_seconds(run, choice.point);
    let share = choice.point / run.config.finetune.epochs.max(1e-9);
    let bert_time = at_point.or(finetune.map(|f| f * share));
    let head_time = head.or_else(|| mean_wall(run, "head"));
    match key {
        "bert_extract" => (group_digits(run.parameters.bert), seconds(bert_time)),
        "bert_final" => {
            let (end, _) = point_seconds(run, run.config.finetune.epochs);
            (group_digits(run.parameters.bert), seconds(end.or(finetune)))
        }
        "bertvision" => (
            format!(
                "{} ({:.2}% of BERT)",
                group_digits(run.parameters.head),
                100.0 * run.parameters.head_share_of_bert
            ),
            format!(
                "{} (+ BERT-{})",
                seconds(head_time),
                epochs_label(choice.point)
            ),
        ),
        _ => ("–".to_string(), "–".to_string()),
    }
}

/// The AdapterPooler's weight per hidden-state layer, mean ± sd over seeds.
fn layers_view(run: &RunResults) -> impl IntoView + use<> {
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
    (!layer_bars.is_empty()).then(|| view! {
        <div class="charts">
            {bar_chart("AdapterPooler weight per layer (%)".to_string(), layer_bars, |v| format!("{v:.1}"))}
            <p class="muted note">"Each hidden-state layer's share of the head's squared weights (the scalar-mix weights when the head mixes layers); embeddings first."</p>
        </div>
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agreement {
    All,
    Disagree,
    Agree,
}

fn squad_table(run: &RunResults, rows: Vec<SquadRow>) -> impl IntoView + use<> {
    let filter = RwSignal::new(Agreement::All);
    let methods = squad_methods(run, &rows);
    let labels: Vec<String> = methods.iter().map(|m| label_of(run, m)).collect();
    let slices = slices_table(&methods, &labels, &squad_slices(&rows));
    let questions = questions_table(rows, methods, labels, filter);
    view! {
        <h3>"SQuAD 2.0 by slice (EM / F1)"</h3>
        {slices}
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
        <div class="scroll">{questions}</div>
    }
}

/// The methods the SQuAD rows answer for, in display order.
fn squad_methods(run: &RunResults, rows: &[SquadRow]) -> Vec<String> {
    [
        "bert_extract",
        "bertvision",
        "ensemble_mean",
        "ensemble_max",
        "bert_final",
    ]
    .iter()
    .filter(|m| rows.first().is_some_and(|r| r.answers.contains_key(**m)))
    // At the end of fine-tuning the extraction checkpoint is the final model.
    .filter(|m| **m != "bert_final" || run.config.last_point() < run.config.finetune.epochs)
    .map(|m| m.to_string())
    .collect()
}

/// All questions, HasAns, NoAns, and the context-length terciles of this split.
fn squad_slices(rows: &[SquadRow]) -> Vec<(String, Vec<&SquadRow>)> {
    let mut lengths: Vec<usize> = rows.iter().map(|r| r.context_words).collect();
    lengths.sort_unstable();
    let cut = |q: usize| lengths.get(lengths.len() * q / 3).copied().unwrap_or(0);
    let (c1, c2) = (cut(1), cut(2));
    let slice = |keep: &dyn Fn(&SquadRow) -> bool| rows.iter().filter(|r| keep(r)).collect();
    vec![
        ("all".to_string(), slice(&|_| true)),
        ("HasAns".to_string(), slice(&|r| !r.gold.is_empty())),
        ("NoAns".to_string(), slice(&|r| r.gold.is_empty())),
        (
            format!("context < {c1} words"),
            slice(&|r| r.context_words < c1),
        ),
        (
            format!("{c1}–{} words", c2.saturating_sub(1)),
            slice(&|r| r.context_words >= c1 && r.context_words < c2),
        ),
        (format!("≥ {c2} words"), slice(&|r| r.context_words >= c2)),
    ]
}

/// EM / F1 of every method on every slice.
fn slices_table(
    methods: &[String],
    labels: &[String],
    slices: &[(String, Vec<&SquadRow>)],
) -> impl IntoView + use<> {
    let header = header_cells(labels);
    let rows = slices
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
    view! {
        <div class="table-scroll">
        <table class="metrics slices">
            <thead><tr><th>"slice"</th><th>"questions"</th>{header}</tr></thead>
            <tbody>{rows}</tbody>
        </table>
        </div>
    }
}

/// One `<th>` per method label.
fn header_cells(labels: &[String]) -> impl IntoView + use<> {
    labels
        .iter()
        .map(|l| view! { <th>{l.clone()}</th> })
        .collect_view()
}

/// Whether BERT's and BERTVision's answers to `row` pass `filter`.
fn passes(row: &SquadRow, filter: Agreement) -> bool {
    let normalized = |m: &str| {
        row.answers
            .get(m)
            .map(|s| bertvision_core::squad::eval::normalize_answer(s))
    };
    let same = normalized("bert_extract") == normalized("bertvision");
    match filter {
        Agreement::All => true,
        Agreement::Disagree => !same,
        Agreement::Agree => same,
    }
}

/// The first 200 questions that pass the filter, each method's answer marked right or wrong.
fn questions_table(
    rows: Vec<SquadRow>,
    methods: Vec<String>,
    labels: Vec<String>,
    filter: RwSignal<Agreement>,
) -> impl Fn() -> AnyView {
    let total = rows.len();
    move || {
        let f = filter.get();
        let kept: Vec<&SquadRow> = rows.iter().filter(|r| passes(r, f)).collect();
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
            <table class="examples"><thead><tr><th>"question"</th><th>"gold"</th><th>"words"</th>{header_cells(&labels)}</tr></thead>
            <tbody>{body}</tbody></table>
        }
        .into_any()
    }
}
