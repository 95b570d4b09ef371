//! Small SVG charts drawn directly (no chart library: nothing to download, nothing to bundle).

use leptos::prelude::*;

/// One bar: label, value, error (sd; 0 for none), colour.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub error: f64,
    pub color: &'static str,
}

/// Vertical bars with ±error whiskers and value labels; the axis starts at 0 unless values are
/// negative (correlations can be).
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
    let span = (max - min).max(1e-9) * 1.08;
    let plot_h = h - bottom - top;
    let y = move |v: f64| top + plot_h * (1.0 - (v - min) / span);
    let slot = (w - left - 8.0) / bars.len().max(1) as f64;
    let ticks: Vec<f64> = (0..=4).map(|i| min + span * i as f64 / 4.0).collect();
    view! {
        <figure class="chart">
            <svg class="bar-chart" width=w.to_string() height=h.to_string() viewBox=format!("0 0 {w} {h}")>
                <text x="4" y="14" class="chart-title">{title}</text>
                {ticks.into_iter().map(|t| view! {
                    <g>
                        <line x1=left.to_string() x2=(w - 4.0).to_string() y1=y(t).to_string() y2=y(t).to_string() class="grid"/>
                        <text x=(left - 4.0).to_string() y=(y(t) + 3.0).to_string() class="tick" text-anchor="end">{value_format(t)}</text>
                    </g>
                }).collect_view()}
                {bars.into_iter().enumerate().map(|(i, b)| {
                    let x = left + slot * i as f64 + slot * 0.15;
                    let bw = slot * 0.7;
                    let (y0, y1) = (y(0.0_f64.max(min)), y(b.value));
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
