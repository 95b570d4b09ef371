//! The curves a run's claim is about, as SVG drawn with plotters: the dev metric against
//! fine-tuning epochs and against training seconds for BERT, BERTVision and their ensemble
//! (mean ± sd over seeds), the less-data curve, and the loss curves. `report.md` links them
//! (`charts/*.svg`) and the browser's comparison page draws the same from `results.json`.

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::methods::{BERT, BERTVISION, parse_method_key, point_label};
use super::results::RunResults;
use crate::error::{Error, Result};

/// One line: points `(x, mean, sd)`, x increasing.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// A chart and the file name it is written under.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// `dev-accuracy-by-epochs.svg`, …
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// The colours of BERT, BERTVision and the ensemble (the comparison page's), then others.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// A line chart with error bars, 640 × 400.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, m, sd) in all {
        (x0, x1) = (x0.min(x), x1.max(x));
        (y0, y1) = (y0.min(m - sd), y1.max(m + sd));
    }
    if x0 > x1 {
        return Err(Error::usage(format!("chart {title}: no points")));
    }
    let pad = |lo: f64, hi: f64| {
        let d = ((hi - lo) * 0.05).max(1e-6);
        (lo - d, hi + d)
    };
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let mut svg = String::new();
    draw(
        &mut svg,
        title,
        (x_label, y_label),
        (x0..x1, y0..y1),
        series,
    )
    .map_err(|e| Error::usage(format!("chart {title}: {e}")))?;
    Ok(svg)
}

type Ranges = (std::ops::Range<f64>, std::ops::Range<f64>);

fn draw(
    svg: &mut String,
    title: &str,
    (x_label, y_label): (&str, &str),
    (xs, ys): Ranges,
    series: &[Series],
) -> std::result::Result<(), String> {
    let root = SVGBackend::with_string(svg, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(text)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(xs, ys)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(text)?;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let line = s.points.iter().map(|&(x, m, _)| (x, m));
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(text)?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
        // Marks and error bars where there are few points (not on per-step loss curves).
        if s.points.len() > 40 {
            continue;
        }
        let marks = s
            .points
            .iter()
            .map(|&(x, m, _)| Circle::new((x, m), 3, colour.filled()));
        chart.draw_series(marks).map_err(text)?;
        let bars = s.points.iter().filter(|p| p.2 > 0.0);
        chart
            .draw_series(bars.map(|&(x, m, sd)| {
                ErrorBar::new_vertical(x, m - sd, m, m + sd, colour.stroke_width(1), 6)
            }))
            .map_err(text)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(text)?;
    root.present().map_err(text)?;
    Ok(())
}

/// A plotters error as text.
fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The metric the curves show: the task's first (GLUE), SQuAD's F1.
pub fn main_metric(results: &RunResults) -> Option<&'static str> {
    let task = crate::tasks::task(&results.task).ok()?;
    Some(super::methods::main_metric(task))
}

/// `method@p[/f]` → mean and sd of `metric` on `split` over seeds, by point; only keys of
/// `method` at `fraction`.
fn by_point(
    results: &RunResults,
    method: &str,
    fraction: f64,
    split: &str,
    metric: &str,
) -> Vec<(f64, f64, f64)> {
    let mut points: Vec<(f64, f64, f64)> = results
        .summary
        .iter()
        .filter_map(|(key, splits)| {
            let (m, point, f) = parse_method_key(key);
            let s = splits.get(split)?.get(metric)?;
            (m == method && f == fraction).then_some((point?, s.mean, s.sd))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Mean over seeds of what the points cost: fine-tuning seconds up to each point, and that
/// plus the head's seconds there.
fn seconds_by_point(results: &RunResults) -> BTreeMap<String, (f64, Option<f64>)> {
    let mut sums: BTreeMap<String, (f64, f64, usize, usize)> = BTreeMap::new();
    for seed in &results.seeds {
        for cost in &seed.costs {
            let Some(ft) = cost.finetune_seconds else {
                continue;
            };
            let entry = sums.entry(point_label(cost.at)).or_default();
            entry.0 += ft;
            entry.2 += 1;
            if let Some(head) = cost.head_seconds {
                entry.1 += ft + head;
                entry.3 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (ft, both, n, m))| (k, (ft / n as f64, (m > 0).then(|| both / m as f64))))
        .collect()
}

/// Every chart of a run: per evaluation split, the metric against epochs and against seconds,
/// the less-data curve (when heads were trained on fractions), and the two loss curves.
pub fn run_charts(results: &RunResults) -> Result<Vec<Chart>> {
    let mut charts = Vec::new();
    let splits: Vec<&String> = results
        .summary
        .values()
        .flat_map(|s| s.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Some(metric) = main_metric(results) {
        for split in splits {
            charts.extend(metric_charts(results, split, metric)?);
        }
    }
    charts.extend(loss_charts(results)?);
    Ok(charts)
}

fn metric_charts(results: &RunResults, split: &str, metric: &str) -> Result<Vec<Chart>> {
    let mut charts = Vec::new();
    let ensemble = "ensemble_mean";
    let lines = [
        ("BERT", BERT),
        ("BERTVision", BERTVISION),
        ("Ensemble (mean)", ensemble),
    ];
    let series: Vec<Series> = lines
        .iter()
        .map(|(label, method)| Series {
            label: label.to_string(),
            points: by_point(results, method, 1.0, split, metric),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.iter().any(|s| s.points.len() > 1) {
        let title = format!("{} {split} {metric} by fine-tuning epochs", results.task);
        let svg = line_chart(&title, "epochs of fine-tuning", metric, &series)?;
        let file = format!("{split}-{metric}-by-epochs.svg");
        charts.push(Chart { file, title, svg });
        charts.extend(seconds_chart(results, split, metric, &series)?);
    }
    let fractions = &results.config.head.train_fractions;
    if !fractions.is_empty() {
        let mut all: Vec<f64> = fractions.clone();
        all.push(1.0);
        let series: Vec<Series> = results
            .config
            .extract_at
            .iter()
            .map(|&p| Series {
                label: format!("BERTVision at {} epochs", point_label(p)),
                points: fraction_points(results, p, &all, split, metric),
            })
            .collect();
        let title = format!(
            "{} {split} {metric} by share of training data (heads)",
            results.task
        );
        let svg = line_chart(
            &title,
            "share of the training data the head saw",
            metric,
            &series,
        )?;
        let file = format!("{split}-{metric}-by-head-data.svg");
        charts.push(Chart { file, title, svg });
    }
    Ok(charts)
}

/// The same series against the seconds each point cost (fine-tuning, plus the head for
/// BERTVision and the ensemble).
fn seconds_chart(
    results: &RunResults,
    split: &str,
    metric: &str,
    by_epochs: &[Series],
) -> Result<Option<Chart>> {
    let seconds = seconds_by_point(results);
    let series: Vec<Series> = by_epochs
        .iter()
        .map(|s| Series {
            label: s.label.clone(),
            points: s
                .points
                .iter()
                .filter_map(|&(p, m, sd)| {
                    let (ft, with_head) = *seconds.get(&point_label(p))?;
                    let x = if s.label == "BERT" {
                        Some(ft)
                    } else {
                        with_head
                    };
                    x.map(|x| (x, m, sd))
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let title = format!("{} {split} {metric} by training seconds", results.task);
    let svg = line_chart(
        &title,
        "seconds of training (fine-tuning + head)",
        metric,
        &series,
    )?;
    let file = format!("{split}-{metric}-by-seconds.svg");
    Ok(Some(Chart { file, title, svg }))
}

fn fraction_points(
    results: &RunResults,
    point: f64,
    fractions: &[f64],
    split: &str,
    metric: &str,
) -> Vec<(f64, f64, f64)> {
    let mut points: Vec<(f64, f64, f64)> = fractions
        .iter()
        .filter_map(|&f| {
            let key = super::methods::method_at(BERTVISION, point, f);
            let s = results.summary.get(&key)?.get(split)?.get(metric)?;
            Some((f, s.mean, s.sd))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points.dedup_by(|a, b| a.0 == b.0);
    points
}

/// Fine-tuning's and the main head's training loss per step, mean ± sd over seeds.
fn loss_charts(results: &RunResults) -> Result<Vec<Chart>> {
    let mut charts = Vec::new();
    let curves: [(&str, &str, Vec<&[f32]>); 2] = [
        (
            "finetune-loss.svg",
            "fine-tuning loss",
            results
                .seeds
                .iter()
                .map(|s| s.finetune_loss.losses.as_slice())
                .collect(),
        ),
        (
            "head-loss.svg",
            "AdapterPooler loss",
            results
                .seeds
                .iter()
                .map(|s| s.head_loss.losses.as_slice())
                .collect(),
        ),
    ];
    for (file, what, losses) in curves {
        let steps = losses.iter().map(|l| l.len()).min().unwrap_or(0);
        if steps == 0 {
            continue;
        }
        let points = (0..steps)
            .map(|i| {
                let v: Vec<f64> = losses.iter().map(|l| l[i] as f64).collect();
                let (mean, sd) = mean_sd(&v);
                ((i + 1) as f64, mean, sd)
            })
            .collect();
        let series = [Series {
            label: format!("{what}, {} seed(s)", losses.len()),
            points,
        }];
        let title = format!("{} {what} per step", results.task);
        let svg = line_chart(&title, "optimizer step", "loss", &series)?;
        charts.push(Chart {
            file: file.to_string(),
            title,
            svg,
        });
    }
    Ok(charts)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}
