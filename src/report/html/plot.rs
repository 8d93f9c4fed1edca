//! The plots of a test section: which per-second series are drawn (requests, VUs, latency
//! percentiles with threshold lines, failures, and workload-specific series when present), the
//! latency percentile spectrum from the HDR histogram, and [`Plot`], a minimal server-side SVG
//! line plot (no scripts, so the page stays self-contained).

use super::esc;
use crate::metrics::{Contains, MetricKind};
use crate::report::Summary;
use crate::report::timeseries::SecondLine;
use std::fmt::Write;

/// The per-second metrics the plots use (read only these from `<test>.json`).
pub(crate) fn plotted_metric(metric: &str) -> bool {
    matches!(
        metric,
        "http_reqs"
            | "vus"
            | "vus_max"
            | "http_req_duration"
            | "checks"
            | "http_req_failed"
            | "dwcp_concurrent_migrations"
            | "db_queries_per_second"
    ) || metric.starts_with("ws_")
}

/// Most points per plotted line; longer runs are bucketed (max per bucket, so spikes stay).
const MAX_POINTS: usize = 600;

/// Per-second values of one metric/key, as (elapsed_s, value).
fn points(lines: &[SecondLine], metric: &str, key: &str) -> Vec<(f64, f64)> {
    let all: Vec<(f64, f64)> = lines
        .iter()
        .filter(|l| l.metric == metric)
        .filter_map(|l| l.get(key).map(|v| (l.elapsed_s, v)))
        .collect();
    if all.len() <= MAX_POINTS {
        return all;
    }
    let per = all.len().div_ceil(MAX_POINTS);
    all.chunks(per)
        .map(|c| {
            let x = c[c.len() - 1].0;
            let y = c.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            (x, y)
        })
        .collect()
}

const COLORS: [&str; 6] = [
    "#0969da", "#d1242f", "#8250df", "#1a7f37", "#bc4c00", "#57606a",
];

/// The "Plots" of a test section: the time series (when `lines` has any) and the percentile
/// spectrum; nothing when there is neither.
pub(super) fn plots(out: &mut String, s: &Summary, lines: &[SecondLine]) {
    let mut figs: Vec<String> = Vec::new();
    if lines.is_empty() {
        let _ = writeln!(
            out,
            "<h3>Over time</h3><p class=\"note\">No per-second time series for this test \
             (merged runs and runs without <code>{}.json</code> have none).</p>",
            esc(&s.test)
        );
    } else {
        let series = |label: &str, metric: &str, key: &str, i: usize| PlotLine {
            label: label.to_string(),
            color: COLORS[i % COLORS.len()],
            points: points(lines, metric, key),
        };
        let time_axis = |title: &str, y: &str, lines: Vec<PlotLine>, refs: Vec<RefLine>| Plot {
            title: title.into(),
            y_label: y.into(),
            x_label: "elapsed (s)".into(),
            x_ticks: None,
            lines,
            refs,
        };
        figs.push(
            time_axis(
                "Requests per second",
                "req/s",
                vec![series("http_reqs", "http_reqs", "count", 0)],
                vec![],
            )
            .svg(),
        );
        figs.push(
            time_axis(
                "Virtual users",
                "VUs",
                vec![
                    series("vus", "vus", "value", 0),
                    series("vus_max", "vus_max", "value", 5),
                ],
                vec![],
            )
            .svg(),
        );
        figs.push(
            time_axis(
                "http_req_duration per second",
                "ms",
                vec![
                    series("p50", "http_req_duration", "med", 0),
                    series("p95", "http_req_duration", "p(95)", 4),
                    series("p99", "http_req_duration", "p(99)", 1),
                ],
                latency_refs(s, "http_req_duration"),
            )
            .svg(),
        );
        figs.push(
            time_axis(
                "Failures per second",
                "count",
                vec![
                    series("checks failed", "checks", "fails", 1),
                    series("requests failed", "http_req_failed", "passes", 2),
                ],
                vec![],
            )
            .svg(),
        );
        // workload-specific series, when the test has them
        let present = |m: &str| lines.iter().any(|l| l.metric == m);
        if present("dwcp_concurrent_migrations") {
            figs.push(
                time_axis(
                    "Migrations in flight",
                    "migrations",
                    vec![series(
                        "dwcp_concurrent_migrations",
                        "dwcp_concurrent_migrations",
                        "value",
                        2,
                    )],
                    vec![],
                )
                .svg(),
            );
        }
        let mut ws: Vec<&str> = lines
            .iter()
            .map(|l| l.metric.as_str())
            .filter(|m| m.starts_with("ws_"))
            .collect();
        ws.sort_unstable();
        ws.dedup();
        let ws_lines = |filter: &dyn Fn(&SecondLine) -> Option<&'static str>| {
            ws.iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let first = lines.iter().find(|l| l.metric == *m)?;
                    let key = filter(first)?;
                    Some(series(m, m, key, i))
                })
                .collect::<Vec<_>>()
        };
        // gauges (connections open) vs counters (messages, connections established)
        let gauges = ws_lines(&|l| l.values.contains_key("value").then_some("value"));
        let counters = ws_lines(&|l| {
            (l.values.len() == 1 && l.values.contains_key("count")).then_some("count")
        });
        if !gauges.is_empty() {
            figs.push(time_axis("WebSocket connections", "connections", gauges, vec![]).svg());
        }
        if !counters.is_empty() {
            figs.push(time_axis("WebSocket events per second", "per s", counters, vec![]).svg());
        }
        if present("db_queries_per_second") {
            figs.push(
                time_axis(
                    "Database queries per second",
                    "queries/s",
                    vec![series(
                        "db_queries_per_second",
                        "db_queries_per_second",
                        "value",
                        3,
                    )],
                    vec![],
                )
                .svg(),
            );
        }
    }
    if let Some(spec) = spectrum(s) {
        figs.push(spec);
    }
    if figs.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h3>Plots</h3>\n<div class=\"plots\">");
    for f in figs {
        let _ = writeln!(out, "<div class=\"plot\">{f}</div>");
    }
    let _ = writeln!(out, "</div>");
}

/// Threshold lines for a latency plot: every `p(..)`, `med`, `avg` or `max` threshold on `metric`.
fn latency_refs(s: &Summary, metric: &str) -> Vec<RefLine> {
    s.thresholds
        .iter()
        .filter(|t| t.metric == metric)
        .filter(|t| !matches!(t.aggregation.as_str(), "rate" | "count"))
        .map(|t| RefLine {
            label: format!("threshold {}", t.threshold),
            value: t.limit,
            color: if t.ok { "#1a7f37" } else { "#d1242f" },
        })
        .collect()
}

/// Percentile positions on a log scale: x = -log10(1 - p/100), so 90, 99, 99.9, 99.99 are
/// evenly spaced (the HdrHistogram "percentile distribution" view).
fn spectrum(s: &Summary) -> Option<String> {
    let mut metrics = vec!["http_req_duration".to_string()];
    for t in &s.thresholds {
        if !metrics.contains(&t.metric)
            && s.metrics
                .get(&t.metric)
                .is_some_and(|m| m.kind == MetricKind::Trend && m.contains == Contains::Time)
        {
            metrics.push(t.metric.clone());
        }
    }
    let mut lines = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        let Some(trend) = s.trend(m) else { continue };
        if trend.count == 0 {
            continue;
        }
        let pts = (0..=80)
            .map(|k| {
                let x = k as f64 * 0.05;
                let p = 100.0 * (1.0 - 10f64.powf(-x));
                (x, trend.percentile(p.min(99.99)))
            })
            .collect();
        lines.push(PlotLine {
            label: m.clone(),
            color: COLORS[i % COLORS.len()],
            points: pts,
        });
    }
    if lines.is_empty() {
        return None;
    }
    let ticks = [
        (0.0, "p0"),
        (std::f64::consts::LOG10_2, "p50"),
        (1.0, "p90"),
        (2.0, "p99"),
        (3.0, "p99.9"),
        (4.0, "p99.99"),
    ]
    .iter()
    .map(|(x, l)| (*x, l.to_string()))
    .collect();
    Some(
        Plot {
            title: "Latency percentile spectrum (whole run, HDR)".into(),
            y_label: "ms".into(),
            x_label: "percentile (log scale)".into(),
            x_ticks: Some(ticks),
            lines,
            refs: latency_refs(s, "http_req_duration"),
        }
        .svg(),
    )
}

struct PlotLine {
    label: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

struct RefLine {
    label: String,
    value: f64,
    color: &'static str,
}

/// A minimal SVG line plot: linear axes (x ticks may be given), polylines, dashed reference
/// lines, a legend. Non-finite points are dropped.
struct Plot {
    title: String,
    y_label: String,
    x_label: String,
    x_ticks: Option<Vec<(f64, String)>>,
    lines: Vec<PlotLine>,
    refs: Vec<RefLine>,
}

const W: f64 = 560.0;
const H: f64 = 260.0;
const ML: f64 = 56.0;
const MR: f64 = 26.0;
const MT: f64 = 42.0;
const MB: f64 = 40.0;

impl Plot {
    fn svg(&self) -> String {
        let pts = || {
            self.lines
                .iter()
                .flat_map(|l| l.points.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        let (mut x0, mut x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| {
            (a.min(*x), b.max(*x))
        });
        if let Some(t) = &self.x_ticks {
            for (x, _) in t {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
            }
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if self.x_ticks.is_none() {
            // time axes start at the start of the test
            x0 = x0.min(0.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let ymax_data = pts().map(|(_, y)| *y).fold(0.0f64, f64::max);
        let ymax_ref = self.refs.iter().map(|r| r.value).fold(0.0f64, f64::max);
        // a reference line far above the data would flatten it: show it only if within 3x
        let ymax = if ymax_ref > 0.0 && ymax_ref <= 3.0 * ymax_data.max(f64::MIN_POSITIVE) {
            ymax_data.max(ymax_ref)
        } else {
            ymax_data
        };
        let (ticks_y, ytop) = nice_ticks(ymax);
        let pw = W - ML - MR;
        let ph = H - MT - MB;
        let sx = |x: f64| ML + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| MT + ph - (y / ytop) * ph;
        let mut o = String::new();
        let _ = write!(
            o,
            "<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" font-size=\"11\" font-family=\"sans-serif\">",
            esc(&self.title)
        );
        let _ = write!(
            o,
            "<text x=\"{ML}\" y=\"16\" font-size=\"13\" font-weight=\"600\">{}</text>",
            esc(&self.title)
        );
        // grid and y axis
        for t in &ticks_y {
            let y = sy(*t);
            let _ = write!(
                o,
                "<line x1=\"{ML}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eaeef2\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                ML + pw,
                ML - 4.0,
                y + 4.0,
                fmt_tick(*t)
            );
        }
        let xt: Vec<(f64, String)> = match &self.x_ticks {
            Some(t) => t.clone(),
            None => nice_ticks(x1 - x0)
                .0
                .into_iter()
                .map(|t| (x0 + t, fmt_tick(x0 + t)))
                .filter(|(x, _)| *x <= x1 + 1e-9)
                .collect(),
        };
        for (x, label) in &xt {
            let px = sx(*x);
            let _ = write!(
                o,
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{MT}\" y2=\"{:.1}\" stroke=\"#f3f4f6\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                MT + ph,
                MT + ph + 14.0,
                esc(label)
            );
        }
        let _ = write!(
            o,
            "<rect x=\"{ML}\" y=\"{MT}\" width=\"{pw:.1}\" height=\"{ph:.1}\" fill=\"none\" stroke=\"#8c959f\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>\
             <text x=\"12\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\" transform=\"rotate(-90 12 {:.1})\">{}</text>",
            ML + pw / 2.0,
            H - 6.0,
            esc(&self.x_label),
            MT + ph / 2.0,
            MT + ph / 2.0,
            esc(&self.y_label)
        );
        // reference (threshold) lines
        let mut off_scale = 0.0;
        for r in &self.refs {
            if r.value > ytop || r.value < 0.0 {
                // far above the data: say so instead of flattening the plot
                let _ = write!(
                    o,
                    "<text class=\"threshold-off-scale\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{}\">↑ {} (off scale)</text>",
                    ML + pw - 4.0,
                    MT + 12.0 + off_scale,
                    r.color,
                    esc(&r.label)
                );
                off_scale += 13.0;
                continue;
            }
            let y = sy(r.value);
            let _ = write!(
                o,
                "<line class=\"threshold\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{}\">{}</text>",
                ML + pw,
                r.color,
                ML + pw - 4.0,
                y - 3.0,
                r.color,
                esc(&r.label)
            );
        }
        // data
        let mut any = false;
        for l in &self.lines {
            let p: Vec<String> = l
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            if p.is_empty() {
                continue;
            }
            any = true;
            let _ = write!(
                o,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" stroke-linejoin=\"round\" points=\"{}\"/>",
                l.color,
                p.join(" ")
            );
            if p.len() == 1 {
                let (x, y) = p[0].split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    o,
                    "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{}\"/>",
                    l.color
                );
            }
        }
        if !any {
            let _ = write!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">no samples</text>",
                ML + pw / 2.0,
                MT + ph / 2.0
            );
        }
        // legend
        let mut lx = ML;
        for l in self.lines.iter().filter(|l| !l.points.is_empty()) {
            let _ = write!(
                o,
                "<rect x=\"{lx:.1}\" y=\"25\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"34\">{}</text>",
                l.color,
                lx + 13.0,
                esc(&l.label)
            );
            lx += 22.0 + 6.5 * l.label.chars().count() as f64;
        }
        o.push_str("</svg>");
        o
    }
}

/// Tick values from 0 to a "nice" top >= max (about 5 ticks). Returns (ticks, top).
fn nice_ticks(max: f64) -> (Vec<f64>, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| s * 5.0 >= max)
        .unwrap_or(10.0 * mag);
    let n = (max / step).ceil().max(1.0) as usize;
    let ticks = (0..=n).map(|i| i as f64 * step).collect();
    (ticks, n as f64 * step)
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_cover_the_maximum() {
        for max in [0.0, 0.7, 1.0, 7.3, 42.0, 999.0, 12_345.0] {
            let (t, top) = nice_ticks(max);
            assert!(top >= max, "{max}: top {top}");
            assert!(t.len() >= 2 && t.len() <= 7, "{max}: {t:?}");
            assert_eq!(*t.last().unwrap(), top);
        }
    }

    #[test]
    fn plot_draws_a_polyline_and_threshold() {
        let svg = Plot {
            title: "t <x>".into(),
            y_label: "ms".into(),
            x_label: "s".into(),
            x_ticks: None,
            lines: vec![PlotLine {
                label: "p95".into(),
                color: COLORS[0],
                points: vec![(1.0, 2.0), (2.0, 4.0), (3.0, f64::NAN)],
            }],
            refs: vec![RefLine {
                label: "threshold p(95)<5".into(),
                value: 5.0,
                color: "#d1242f",
            }],
        }
        .svg();
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("class=\"threshold\""));
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(!svg.contains("NaN"));
    }
}
