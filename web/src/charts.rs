//! Small SVG charts drawn directly (no chart library: nothing to download, nothing to bundle).

use leptos::prelude::*;

/// One bar: label, value, error (sd; 0 for none), colour.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub error: f64,
    pub color: &'static str,
}

/// Axis ticks at round values (1, 2 or 5 × a power of ten) covering `[min, max]`, about
/// `count` of them: 0 / 20 / 40 / 60 rather than 0 / 13.5 / 27.0 / 40.5.
pub fn nice_ticks(min: f64, max: f64, count: usize) -> Vec<f64> {
    let span = (max - min).max(1e-9);
    let raw = span / count.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (min / step).floor() as i64;
    let last = (max / step).ceil() as i64;
    // `+ 0.0`: a tick at −0.0 prints as "-0".
    (first..=last).map(|i| i as f64 * step + 0.0).collect()
}

/// A chart's value axis: round ticks covering `[min, max]`, drawn as grid lines with labels, and
/// the pixel row of a value on a plot `height` tall starting `top` pixels down.
struct Axis {
    ticks: Vec<f64>,
    top: f64,
    height: f64,
}

impl Axis {
    fn new(min: f64, max: f64, top: f64, height: f64) -> Self {
        Axis {
            ticks: nice_ticks(min, max, 4),
            top,
            height,
        }
    }

    /// The lowest tick: where the axis starts.
    fn lo(&self) -> f64 {
        self.ticks[0]
    }

    fn y(&self, v: f64) -> f64 {
        let span = (self.ticks[self.ticks.len() - 1] - self.lo()).max(1e-9);
        self.top + self.height * (1.0 - (v - self.lo()) / span)
    }

    /// A grid line and a label per tick, between `left` and `right`.
    fn grid(
        &self,
        left: f64,
        right: f64,
        value_format: fn(f64) -> String,
    ) -> impl IntoView + use<> {
        self.ticks
            .iter()
            .map(|&t| {
                let y = self.y(t);
                view! {
                    <g>
                        <line x1=left.to_string() x2=right.to_string() y1=y.to_string() y2=y.to_string() class="grid"/>
                        <text x=(left - 4.0).to_string() y=(y + 3.0).to_string() class="tick" text-anchor="end">{value_format(t)}</text>
                    </g>
                }
            })
            .collect_view()
    }
}

/// Vertical bars with ±error whiskers and value labels; the axis starts at 0 unless values are
/// negative (correlations can be). The SVG scales down to narrow screens (style.css).
pub fn bar_chart(
    title: String,
    bars: Vec<Bar>,
    value_format: fn(f64) -> String,
) -> impl IntoView + use<> {
    let (w, h, left, bottom, top) = (420.0, 220.0, 44.0, 40.0, 24.0);
    let max = bars
        .iter()
        .map(|b| b.value + b.error)
        .fold(f64::MIN, f64::max)
        .max(1e-9);
    let min = bars.iter().map(|b| b.value - b.error).fold(0.0, f64::min);
    let axis = Axis::new(min, max, top, h - bottom - top);
    let (lo, y) = (axis.lo(), |v: f64| axis.y(v));
    let slot = (w - left - 8.0) / bars.len().max(1) as f64;
    view! {
        <figure class="chart">
            <svg class="bar-chart" width=w.to_string() height=h.to_string() viewBox=format!("0 0 {w} {h}")>
                <text x="4" y="14" class="chart-title">{title}</text>
                {axis.grid(left, w - 4.0, value_format)}
                {bars.into_iter().enumerate().map(|(i, b)| {
                    let x = left + slot * i as f64 + slot * 0.15;
                    let bw = slot * 0.7;
                    let (y0, y1) = (y(0.0_f64.max(lo)), y(b.value));
                    let (top_y, height) = if y1 < y0 { (y1, y0 - y1) } else { (y0, y1 - y0) };
                    let cx = x + bw / 2.0;
                    view! {
                        <g class="bar">
                            <title>{format!("{}: {} ± {}", b.label, value_format(b.value), value_format(b.error))}</title>
                            <rect x=x.to_string() y=top_y.to_string() width=bw.to_string() height=height.max(0.5).to_string() fill=b.color rx="2"/>
                            {(b.error > 0.0).then(|| view! {
                                <g class="whisker">
                                    <line x1=cx.to_string() x2=cx.to_string() y1=y(b.value - b.error).to_string() y2=y(b.value + b.error).to_string()/>
                                    <line x1=(cx - 5.0).to_string() x2=(cx + 5.0).to_string() y1=y(b.value + b.error).to_string() y2=y(b.value + b.error).to_string()/>
                                    <line x1=(cx - 5.0).to_string() x2=(cx + 5.0).to_string() y1=y(b.value - b.error).to_string() y2=y(b.value - b.error).to_string()/>
                                </g>
                            })}
                            <text x=cx.to_string() y=(y(b.value + b.error) - 4.0).to_string() class="value" text-anchor="middle">{value_format(b.value)}</text>
                            <text x=cx.to_string() y=(h - bottom + 14.0).to_string() class="label" text-anchor="middle">{b.label}</text>
                        </g>
                    }
                }).collect_view()}
            </svg>
        </figure>
    }
}

/// One group of the overview chart: a task, its model, one bar per method (`None`: the run has
/// no such method) and a note under it (the relative gain).
pub struct Group {
    pub label: String,
    pub sublabel: String,
    pub bars: Vec<(Option<f64>, &'static str)>,
    pub note: Option<String>,
}

/// Grouped vertical bars, one group per task, on one axis from 0 (or the lowest value).
pub fn grouped_chart(groups: Vec<Group>, value_format: fn(f64) -> String) -> impl IntoView + use<> {
    let per_group = groups.iter().map(|g| g.bars.len()).max().unwrap_or(1);
    let group_w = 34.0 * per_group as f64 + 26.0;
    let (left, bottom, top) = (44.0, 54.0, 12.0);
    let w = (left + group_w * groups.len() as f64 + 8.0).max(320.0);
    let h = 250.0;
    let values = groups
        .iter()
        .flat_map(|g| g.bars.iter().filter_map(|b| b.0));
    let (min, max) = values.fold((0f64, 1e-9f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let axis = Axis::new(min, max, top, h - bottom - top);
    let (lo, y) = (axis.lo(), |v: f64| axis.y(v));
    view! {
        <figure class="chart overview">
            <svg class="overview-chart" width=w.to_string() height=h.to_string() viewBox=format!("0 0 {w} {h}")>
                {axis.grid(left, w - 4.0, value_format)}
                {groups.into_iter().enumerate().map(|(g, group)| {
                    let x0 = left + group_w * g as f64 + 13.0;
                    let cx = x0 + 17.0 * per_group as f64;
                    view! {
                        <g class="group">
                            {group.bars.into_iter().enumerate().filter_map(|(i, (v, color))| {
                                let v = v?;
                                let x = x0 + 34.0 * i as f64;
                                let (y0, y1) = (y(0.0_f64.max(lo)), y(v));
                                let (top_y, height) = if y1 < y0 { (y1, y0 - y1) } else { (y0, y1 - y0) };
                                Some(view! {
                                    <g class="bar">
                                        <title>{format!("{}: {}", group.label, value_format(v))}</title>
                                        <rect x=x.to_string() y=top_y.to_string() width="28" height=height.max(0.5).to_string() fill=color rx="2"/>
                                        <text x=(x + 14.0).to_string() y=(top_y - 3.0).to_string() class="value" text-anchor="middle">{value_format(v)}</text>
                                    </g>
                                })
                            }).collect_view()}
                            <text x=cx.to_string() y=(h - bottom + 14.0).to_string() class="label" text-anchor="middle">{group.label}</text>
                            <text x=cx.to_string() y=(h - bottom + 27.0).to_string() class="label" text-anchor="middle">{group.sublabel}</text>
                            {group.note.map(|n| view! {
                                <text x=cx.to_string() y=(h - bottom + 42.0).to_string() class="gain" text-anchor="middle">{format!("BERTVision {n}")}</text>
                            })}
                        </g>
                    }
                }).collect_view()}
            </svg>
        </figure>
    }
}
