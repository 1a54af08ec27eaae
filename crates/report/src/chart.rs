//! Inline SVG charts: the fidelity of a route's surrogate versions over time, and the
//! waterfall of one prediction's attributions.
//!
//! Each chart is an `<svg role="img">` with a `<title>` and a `<desc>` that say in words
//! what it shows (screen readers read those), and the pages put the same numbers in a
//! table next to it. Colours come from classes in the console's stylesheet (the content
//! security policy allows no inline styles); the sign of a contribution is also written
//! out, so that colour is never the only cue.

use maud::{Markup, html};

/// One trained surrogate version on the fidelity chart.
#[derive(Debug, Clone, PartialEq)]
pub struct FidelityPoint {
    pub version: u64,
    /// When it was trained, seconds since the Unix epoch.
    pub trained_at: u64,
    /// Held-out R².
    pub r2: f64,
    /// Whether it passed the gate and went into service.
    pub accepted: bool,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// A number for an SVG attribute: two decimals are finer than a pixel.
fn px(x: f64) -> String {
    format!("{x:.2}")
}

/// A time as `YYYY-MM-DD HH:MM` UTC.
pub fn short_time(seconds: u64) -> String {
    let ms = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let text = sidelight_audit::rfc3339_ms(ms);
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time}"),
        _ => text,
    }
}

/// R² of each version, in the order they were trained. Versions are spaced evenly
/// (retraining can follow within seconds, or days apart); the first and last training
/// times label the axis. Versions without a finite R² (a seeded surrogate) are left
/// out; `None` when nothing is left to draw.
pub fn fidelity(id: &str, route: &str, points: &[FidelityPoint]) -> Option<Markup> {
    let points: Vec<&FidelityPoint> = points.iter().filter(|p| p.r2.is_finite()).collect();
    let (first, last) = (points.first()?, points.last()?);
    let lowest = points.iter().map(|p| p.r2).fold(f64::INFINITY, f64::min);
    let highest = points
        .iter()
        .map(|p| p.r2)
        .fold(f64::NEG_INFINITY, f64::max);
    // R² is at most 1. The axis starts a little below the lowest version, in steps of
    // 0.1, so that a change between good versions shows; below 0 when one did worse than
    // predicting the mean.
    let y_min = if lowest < 0.0 {
        lowest.floor()
    } else {
        (((lowest - 0.05) * 10.0).floor() / 10.0).clamp(0.0, 0.9)
    };
    let y_max = 1.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = points.len();
    let x = |i: usize| {
        if n > 1 {
            LEFT + 12.0 + i as f64 / (n - 1) as f64 * (plot_w - 24.0)
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let y = |r2: f64| TOP + (y_max - r2) / (y_max - y_min) * plot_h;
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{},{}", px(x(i)), px(y(p.r2))))
        .collect();
    let ticks: Vec<f64> = (0..=4)
        .map(|i| y_min + (y_max - y_min) * f64::from(i) / 4.0)
        .collect();
    // Version labels, thinned out to about a dozen.
    let every = n.div_ceil(12).max(1);
    let accepted = points.iter().filter(|p| p.accepted).count();
    let title = format!("Surrogate fidelity (held-out R²) by version, route {route}");
    let span = if first.trained_at > 0 {
        format!(
            " trained between {} and {} UTC",
            short_time(first.trained_at),
            short_time(last.trained_at)
        )
    } else {
        String::new()
    };
    let desc = format!(
        "{n} versions{span}, {accepted} put into service. R² ranges from {lowest:.3} to {highest:.3}; the latest, version {}, has {:.3}.",
        last.version, last.r2,
    );
    let (title_id, desc_id) = (format!("{id}-title"), format!("{id}-desc"));
    Some(html! {
        svg.chart.fidelity xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            aria-labelledby={ (title_id) " " (desc_id) } {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (desc) }
            @for t in &ticks {
                line.grid x1=(px(LEFT)) x2=(px(WIDTH - RIGHT)) y1=(px(y(*t))) y2=(px(y(*t))) {}
                text.tick x=(px(LEFT - 6.0)) y=(px(y(*t) + 4.0)) text-anchor="end" { (format!("{t:.2}")) }
            }
            line.axis x1=(px(LEFT)) x2=(px(LEFT)) y1=(px(TOP)) y2=(px(TOP + plot_h)) {}
            line.axis x1=(px(LEFT)) x2=(px(WIDTH - RIGHT)) y1=(px(TOP + plot_h)) y2=(px(TOP + plot_h)) {}
            @for (i, p) in points.iter().enumerate() {
                @if i % every == 0 || i + 1 == n {
                    text.tick x=(px(x(i))) y=(px(TOP + plot_h + 14.0)) text-anchor="middle" { "v" (p.version) }
                }
            }
            text.axis-label x=(px(LEFT + plot_w / 2.0)) y=(px(HEIGHT - 6.0)) text-anchor="middle" {
                "version" (span)
            }
            text.axis-label x="12" y=(px(TOP + plot_h / 2.0)) text-anchor="middle"
                transform={ "rotate(-90 12 " (px(TOP + plot_h / 2.0)) ")" } { "R²" }
            polyline.series points=(line.join(" ")) {}
            @for (i, p) in points.iter().enumerate() {
                circle class=(if p.accepted { "point accepted" } else { "point rejected" })
                    cx=(px(x(i))) cy=(px(y(p.r2))) r="4" {
                    title { "version " (p.version) ": R² " (format!("{:.3}", p.r2)) ", " (if p.accepted { "in service" } else { "not accepted" }) }
                }
            }
        }
    })
}

/// One bar of a waterfall: a feature (with its value) and its contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub label: String,
    pub contribution: f64,
}

/// How many features get a bar of their own; the rest share one.
const MAX_BARS: usize = 12;
const ROW: f64 = 26.0;
const LABEL_W: f64 = 300.0;
const VALUE_W: f64 = 90.0;
const WF_WIDTH: f64 = 760.0;

/// The waterfall of one prediction: from the base value (the surrogate's expected
/// output), each feature's contribution in order of size, to the surrogate's prediction,
/// all in `space` (log-odds or the model's output).
pub fn waterfall(id: &str, base: f64, steps: &[Step], space: &str) -> Markup {
    let mut steps: Vec<Step> = steps
        .iter()
        .filter(|s| s.contribution.is_finite())
        .cloned()
        .collect();
    steps.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    if steps.len() > MAX_BARS {
        let rest = steps.split_off(MAX_BARS - 1);
        let sum = rest.iter().map(|s| s.contribution).sum();
        steps.push(Step {
            label: format!("{} other features", rest.len()),
            contribution: sum,
        });
    }
    let end = base + steps.iter().map(|s| s.contribution).sum::<f64>();
    // The running total before and after each bar.
    let mut spans = Vec::with_capacity(steps.len());
    let mut at = base;
    for s in &steps {
        spans.push((at, at + s.contribution));
        at += s.contribution;
    }
    let (mut lo, mut hi) = (base.min(end), base.max(end));
    for (a, b) in &spans {
        lo = lo.min(a.min(*b));
        hi = hi.max(a.max(*b));
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let plot_left = LABEL_W + 10.0;
    let plot_w = WF_WIDTH - plot_left - VALUE_W;
    let x = |v: f64| plot_left + (v - lo) / (hi - lo) * plot_w;
    let rows = steps.len() + 2;
    let height = TOP + ROW * rows as f64 + 30.0;
    let bottom = TOP + ROW * rows as f64;
    let row_y = |i: usize| TOP + ROW * i as f64;
    let unit = if space == "logit" {
        "log-odds"
    } else {
        "model output"
    };
    let title = format!("Waterfall of the attributions, in {unit}");
    let desc = {
        let parts: Vec<String> = steps
            .iter()
            .map(|s| format!("{} {:+.3}", s.label, s.contribution))
            .collect();
        format!(
            "From the base value {base:.3}, {}, to the surrogate's prediction {end:.3} ({unit}).",
            parts.join(", ")
        )
    };
    let (title_id, desc_id) = (format!("{id}-title"), format!("{id}-desc"));
    html! {
        svg.chart.waterfall xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox={ "0 0 " (WF_WIDTH) " " (px(height)) }
            aria-labelledby={ (title_id) " " (desc_id) } {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (desc) }
            line.reference x1=(px(x(base))) x2=(px(x(base))) y1=(px(TOP)) y2=(px(bottom)) {}
            line.reference x1=(px(x(end))) x2=(px(x(end))) y1=(px(TOP)) y2=(px(bottom)) {}
            text.label x=(px(LABEL_W)) y=(px(row_y(0) + 17.0)) text-anchor="end" { "base value E[f(x)]" }
            circle.marker cx=(px(x(base))) cy=(px(row_y(0) + 12.0)) r="4" {}
            text.value x=(px(WF_WIDTH - 4.0)) y=(px(row_y(0) + 17.0)) text-anchor="end" { (format!("{base:.3}")) }
            @for (i, (s, (a, b))) in steps.iter().zip(&spans).enumerate() {
                @let y0 = row_y(i + 1);
                text.label x=(px(LABEL_W)) y=(px(y0 + 17.0)) text-anchor="end" {
                    (truncate(&s.label, 44))
                    title { (s.label) }
                }
                rect class=(if s.contribution >= 0.0 { "bar up" } else { "bar down" })
                    x=(px(x(a.min(*b)))) y=(px(y0 + 4.0))
                    width=(px((x(a.max(*b)) - x(a.min(*b))).max(1.0))) height="16" {
                    title { (s.label) ": " (format!("{:+.3}", s.contribution)) }
                }
                line.connector x1=(px(x(*b))) x2=(px(x(*b))) y1=(px(y0 + 20.0)) y2=(px(y0 + ROW + 4.0)) {}
                text class=(if s.contribution >= 0.0 { "value up" } else { "value down" })
                    x=(px(WF_WIDTH - 4.0)) y=(px(y0 + 17.0)) text-anchor="end" {
                    (format!("{:+.3}", s.contribution))
                }
            }
            @let y_end = row_y(rows - 1);
            text.label.total x=(px(LABEL_W)) y=(px(y_end + 17.0)) text-anchor="end" { "surrogate prediction f(x)" }
            circle.marker cx=(px(x(end))) cy=(px(y_end + 12.0)) r="4" {}
            text.value.total x=(px(WF_WIDTH - 4.0)) y=(px(y_end + 17.0)) text-anchor="end" { (format!("{end:.3}")) }
            line.axis x1=(px(plot_left)) x2=(px(plot_left + plot_w)) y1=(px(bottom + 4.0)) y2=(px(bottom + 4.0)) {}
            text.tick x=(px(plot_left)) y=(px(bottom + 20.0)) text-anchor="start" { (format!("{lo:.2}")) }
            text.tick x=(px(plot_left + plot_w)) y=(px(bottom + 20.0)) text-anchor="end" { (format!("{hi:.2}")) }
            text.axis-label x=(px(plot_left + plot_w / 2.0)) y=(px(bottom + 20.0)) text-anchor="middle" { (unit) }
        }
    }
}

/// One bar of a bar chart: a value with, optionally, its confidence interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
    /// Drawn in the emphasis colour (a protected feature, a failing group).
    pub emphasis: bool,
}

const BAR_ROW: f64 = 24.0;
const BAR_LABEL_W: f64 = 260.0;
const BAR_VALUE_W: f64 = 80.0;

/// Horizontal bars from zero, each with its interval as a whisker if it has one, and
/// vertical reference lines at `marks` (a rule's bound, labelled). The axis runs from 0
/// to `max`, or to the largest value, interval end or mark. `None` when no bar has a
/// finite value. Shared by the console and the audit report.
pub fn bars(
    id: &str,
    title: &str,
    unit: &str,
    bars: &[Bar],
    marks: &[(f64, &str)],
    max: Option<f64>,
) -> Option<Markup> {
    let bars: Vec<&Bar> = bars.iter().filter(|b| b.value.is_finite()).collect();
    if bars.is_empty() {
        return None;
    }
    let top = max.unwrap_or_else(|| {
        bars.iter()
            .flat_map(|b| [Some(b.value), b.interval.map(|i| i.1)])
            .flatten()
            .chain(marks.iter().map(|m| m.0))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            * 1.05
    });
    // Counts are printed as whole numbers, everything else to three decimals.
    let whole = bars
        .iter()
        .all(|b| b.value.fract() == 0.0 && b.interval.is_none());
    let top = match (top > 0.0, whole) {
        (false, _) => 1.0,
        (true, true) => top.ceil(),
        (true, false) => top,
    };
    let figure = |v: f64| {
        if whole {
            format!("{v:.0}")
        } else {
            format!("{v:.3}")
        }
    };
    let plot_left = BAR_LABEL_W + 10.0;
    let plot_w = WF_WIDTH - plot_left - BAR_VALUE_W;
    let x = |v: f64| plot_left + (v.clamp(0.0, top) / top) * plot_w;
    let bottom = TOP + BAR_ROW * bars.len() as f64;
    let height = bottom + 30.0;
    let desc = bars
        .iter()
        .map(|b| match b.interval {
            Some((lo, hi)) => format!("{} {:.3} ({lo:.3} to {hi:.3})", b.label, b.value),
            None => format!("{} {}", b.label, figure(b.value)),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let (title_id, desc_id) = (format!("{id}-title"), format!("{id}-desc"));
    Some(html! {
        svg.chart.bars xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox={ "0 0 " (WF_WIDTH) " " (px(height)) }
            aria-labelledby={ (title_id) " " (desc_id) } {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (desc) " (" (unit) ")." }
            @for (i, b) in bars.iter().enumerate() {
                @let y0 = TOP + BAR_ROW * i as f64;
                text.label x=(px(BAR_LABEL_W)) y=(px(y0 + 16.0)) text-anchor="end" {
                    (truncate(&b.label, 40))
                    title { (b.label) }
                }
                rect class=(if b.emphasis { "bar emphasis" } else { "bar" })
                    x=(px(plot_left)) y=(px(y0 + 4.0))
                    width=(px((x(b.value) - plot_left).max(1.0))) height="14" {
                    title { (b.label) ": " (figure(b.value)) }
                }
                @if let Some((lo, hi)) = b.interval {
                    line.whisker x1=(px(x(lo))) x2=(px(x(hi))) y1=(px(y0 + 11.0)) y2=(px(y0 + 11.0)) {}
                    line.whisker x1=(px(x(lo))) x2=(px(x(lo))) y1=(px(y0 + 6.0)) y2=(px(y0 + 16.0)) {}
                    line.whisker x1=(px(x(hi))) x2=(px(x(hi))) y1=(px(y0 + 6.0)) y2=(px(y0 + 16.0)) {}
                }
                text.value x=(px(WF_WIDTH - 4.0)) y=(px(y0 + 16.0)) text-anchor="end" {
                    (figure(b.value))
                }
            }
            @for (value, label) in marks {
                line.reference x1=(px(x(*value))) x2=(px(x(*value))) y1=(px(TOP)) y2=(px(bottom)) {}
                text.tick x=(px(x(*value))) y=(px(TOP - 4.0)) text-anchor="middle" { (label) }
            }
            line.axis x1=(px(plot_left)) x2=(px(plot_left + plot_w)) y1=(px(bottom + 4.0)) y2=(px(bottom + 4.0)) {}
            text.tick x=(px(plot_left)) y=(px(bottom + 20.0)) text-anchor="start" { "0" }
            text.tick x=(px(plot_left + plot_w)) y=(px(bottom + 20.0)) text-anchor="end" {
                @if whole { (figure(top)) } @else { (format!("{top:.2}")) }
            }
            text.axis-label x=(px(plot_left + plot_w / 2.0)) y=(px(bottom + 20.0)) text-anchor="middle" { (unit) }
        }
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waterfall_adds_up_and_folds_small_features() {
        let steps: Vec<Step> = (0..20)
            .map(|i| Step {
                label: format!("f{i} = {i}"),
                contribution: if i % 2 == 0 { 0.1 } else { -0.05 } * f64::from(i + 1),
            })
            .collect();
        let svg = waterfall("w", 1.0, &steps, "output").into_string();
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains("<title id=\"w-title\">"));
        assert!(svg.contains("9 other features"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), MAX_BARS);
        let total: f64 = 1.0 + steps.iter().map(|s| s.contribution).sum::<f64>();
        assert!(svg.contains(&format!("{total:.3}")), "{svg}");
        // Labels are escaped like any text.
        let svg = waterfall(
            "x",
            0.0,
            &[Step {
                label: "<b>".to_owned(),
                contribution: 1.0,
            }],
            "logit",
        )
        .into_string();
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert!(svg.contains("log-odds"));
    }

    #[test]
    fn bars_scale_to_the_largest_value_and_draw_intervals() {
        let bar = |label: &str, value, interval| Bar {
            label: label.to_owned(),
            value,
            interval,
            emphasis: false,
        };
        assert!(bars("b", "t", "u", &[bar("x", f64::NAN, None)], &[], None).is_none());
        let svg = bars(
            "b",
            "Selection rate",
            "share",
            &[bar("<25", 0.4, Some((0.3, 0.5))), bar(">=25", 0.8, None)],
            &[(0.5, "0.5")],
            Some(1.0),
        )
        .map(Markup::into_string)
        .unwrap_or_default();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert_eq!(svg.matches("class=\"whisker\"").count(), 3, "{svg}");
        assert!(svg.contains("&lt;25 0.400 (0.300 to 0.500)"), "{svg}");
        assert!(svg.contains(">1.00</text>"), "{svg}");
        let counts = bars("c", "t", "n", &[bar("full", 12.0, None)], &[], None)
            .map(Markup::into_string)
            .unwrap_or_default();
        assert!(
            counts.contains(">12</text>") && counts.contains(">13</text>"),
            "{counts}"
        );
    }

    #[test]
    fn the_fidelity_chart_skips_versions_without_r2() {
        let point = |version, trained_at, r2, accepted| FidelityPoint {
            version,
            trained_at,
            r2,
            accepted,
        };
        assert!(fidelity("f", "m", &[point(1, 0, f64::NAN, true)]).is_none());
        let svg = fidelity(
            "f",
            "m",
            &[
                point(1, 1_700_000_000, 0.91, true),
                point(2, 1_700_000_600, 0.42, false),
                point(3, 1_700_001_200, 0.95, true),
            ],
        )
        .map(Markup::into_string)
        .unwrap_or_default();
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("point rejected"));
        assert!(svg.contains("3 versions trained"), "{svg}");
        assert!(svg.contains("2023-11-14 22:13"), "{svg}");
        assert!(svg.contains(">v2</text>"), "{svg}");
        // The axis starts below the worst version, in steps of 0.1.
        assert!(svg.contains(">0.30</text>"), "{svg}");
    }
}
