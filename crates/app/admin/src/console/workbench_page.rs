//! The console's workbench page (`/console/workbench`) and the what-if answer page:
//! HTML over the JSON answers of `crate::workbench` and `crate::whatif`, with small SVG
//! charts drawn here (bars, one line per feature over time, a dependence scatter).

use maud::{Markup, html};
use serde_json::Value as Json;

use super::pages::{Chrome, page};
use crate::query::percent_encode;

/// What the workbench page shows.
pub(crate) struct WorkbenchView<'a> {
    pub(crate) routes: &'a [String],
    pub(crate) route: &'a str,
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) a: &'a str,
    pub(crate) b: &'a str,
    pub(crate) feature: &'a str,
    /// Each answer, or the message of its refusal.
    pub(crate) summary: Result<Json, String>,
    pub(crate) cohorts: Option<Result<Json, String>>,
    pub(crate) dependence: Option<Result<Json, String>>,
    pub(crate) slices: Option<Result<Json, String>>,
    /// An auditor may download the export and open records.
    pub(crate) auditor: bool,
}

fn f64_of(v: &Json, key: &str) -> Option<f64> {
    v.get(key).and_then(Json::as_f64)
}

fn fixed(x: Option<f64>, decimals: usize) -> String {
    x.filter(|x| x.is_finite())
        .map_or_else(|| "—".to_owned(), |x| format!("{x:.decimals$}"))
}

fn signed(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite())
        .map_or_else(|| "—".to_owned(), |x| format!("{x:+.4}"))
}

fn array<'a>(v: &'a Json, key: &str) -> &'a [Json] {
    v.get(key)
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A horizontal bar of `value` against `largest`, 160 px at most; negative values go
/// left of a centre line when `signed`.
fn bar(value: f64, largest: f64, signed: bool) -> Markup {
    let width = 160.0;
    let scale = if largest > 0.0 { width / largest } else { 0.0 };
    let length = (value.abs() * scale).min(width);
    let (x, total) = if signed {
        let centre = width;
        (
            if value < 0.0 { centre - length } else { centre },
            2.0 * width,
        )
    } else {
        (0.0, width)
    };
    let class = if value < 0.0 {
        "bar negative"
    } else {
        "bar positive"
    };
    html! {
        svg.bar width=(total) height="12" viewBox={ "0 0 " (total) " 12" } role="img"
            aria-label=(format!("{value:+.4}")) {
            rect class=(class) x=(format!("{x:.1}")) y="1" width=(format!("{length:.1}")) height="10" {}
            @if signed { line x1=(width) x2=(width) y1="0" y2="12" stroke="currentColor" stroke-width="0.5" {} }
        }
    }
}

/// One small line of a feature's mean |contribution| per bucket.
fn sparkline(series: &[Json], largest: f64) -> Markup {
    let points: Vec<f64> = series
        .iter()
        .filter_map(|p| f64_of(p, "mean_abs"))
        .collect();
    let (w, h) = (120.0, 24.0);
    if points.len() < 2 || largest <= 0.0 {
        return html! { span.hint { (points.len()) " bucket" @if points.len() != 1 { "s" } } };
    }
    let step = w / (points.len() - 1) as f64;
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, y)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - (y / largest) * (h - 4.0)
            )
        })
        .collect();
    html! {
        svg.sparkline width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img"
            aria-label={ "mean |contribution| over " (points.len()) " buckets" } {
            polyline points=(path.join(" ")) fill="none" stroke="currentColor" stroke-width="1.5" {}
        }
    }
}

fn numeric(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// A feature's predictions along its contribution (across, on one scale for every
/// feature), each dot coloured by its value from blue (low) to red (high), grey without
/// one: shap's summary plot, one row of it.
fn strip(points: &[Json], largest: f64) -> Markup {
    let (w, h) = (180.0, 22.0);
    let scale = if largest > 0.0 {
        (w / 2.0 - 4.0) / largest
    } else {
        0.0
    };
    html! {
        svg.strip width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img"
            aria-label={ (points.len()) " predictions by contribution, coloured by value" } {
            line x1=(w / 2.0) x2=(w / 2.0) y1="0" y2=(h) stroke="#999" stroke-width="0.5" {}
            @for (i, p) in points.iter().enumerate() {
                @if let Some(c) = f64_of(p, "contribution") {
                    @let fill = match f64_of(p, "value") {
                        Some(t) => format!("rgb({:.0},60,{:.0})", 40.0 + 200.0 * t, 240.0 - 200.0 * t),
                        None => "#888".to_owned(),
                    };
                    // A fixed spread up and down, so that equal contributions stay visible.
                    circle cx=(format!("{:.1}", w / 2.0 + c * scale)) cy=(format!("{:.1}", 3.0 + (i * 7 % 16) as f64))
                        r="1.8" fill=(fill) fill-opacity="0.7" {}
                }
            }
        }
    }
}

/// Value → contribution, one dot per row, coloured from blue (low) to red (high) by the
/// colouring feature; text values are spread by their order.
fn scatter(points: &[Json]) -> Markup {
    let (w, h, pad) = (520.0, 260.0, 30.0);
    let category = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut levels: Vec<String> = points
        .iter()
        .filter(|p| numeric(&p["value"]).is_none())
        .map(|p| category(&p["value"]))
        .collect();
    levels.sort();
    levels.dedup();
    let x_of = |v: &Json| {
        numeric(v).or_else(|| {
            let c = category(v);
            levels.iter().position(|l| *l == c).map(|i| i as f64)
        })
    };
    let xs: Vec<f64> = points.iter().filter_map(|p| x_of(&p["value"])).collect();
    let ys: Vec<f64> = points
        .iter()
        .filter_map(|p| f64_of(p, "contribution"))
        .collect();
    let colours: Vec<f64> = points
        .iter()
        .filter_map(|p| numeric(&p["colour"]))
        .collect();
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (lo.min(0.0), lo.max(0.0) + 1.0)
        }
    };
    let ((x0, x1), (y0, y1), (c0, c1)) = (range(&xs), range(&ys), range(&colours));
    let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
    html! {
        svg.dependence width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img"
            aria-label="value against contribution, one dot per prediction" {
            line x1=(pad) x2=(w - pad) y1=(format!("{:.1}", sy(0.0_f64.clamp(y0, y1)))) y2=(format!("{:.1}", sy(0.0_f64.clamp(y0, y1)))) stroke="#999" stroke-width="0.5" {}
            @for p in points {
                @if let (Some(x), Some(y)) = (x_of(&p["value"]), f64_of(p, "contribution")) {
                    @let t = numeric(&p["colour"]).map_or(0.5, |c| (c - c0) / (c1 - c0));
                    circle cx=(format!("{:.1}", sx(x))) cy=(format!("{:.1}", sy(y))) r="2.5"
                        fill=(format!("rgb({:.0},60,{:.0})", 40.0 + 200.0 * t, 240.0 - 200.0 * t)) fill-opacity="0.7" {}
                }
            }
            text x=(pad) y=(h - 8.0) font-size="10" { (fixed(Some(x0), 2)) }
            text x=(w - pad) y=(h - 8.0) font-size="10" text-anchor="end" { (fixed(Some(x1), 2)) }
            text x="2" y=(pad) font-size="10" { (format!("{y1:+.3}")) }
            text x="2" y=(h - pad) font-size="10" { (format!("{y0:+.3}")) }
        }
        @if !levels.is_empty() {
            p.hint { "Levels, left to right: " (levels.join(", ")) }
        }
    }
}

fn refusal(message: &str) -> Markup {
    html! { p.error role="alert" { (message) } }
}

fn coverage(period: &Json) -> Markup {
    html! {
        p.hint {
            (period["rows"]) " explained predictions"
            @if period["unexplained_records"].as_u64().unwrap_or(0) > 0 {
                "; " (period["unexplained_records"]) " records without attributions (erased or not explained)"
            }
            @if let Some(stop) = period["truncated"].as_str() {
                strong { "; cut short (" (stop.replace('_', " ")) ") at the workbench's bound: ask for a shorter period" }
            }
            "."
        }
    }
}

/// A monitored group as a cohort condition: bands (`<25`, `25-40`, `>=40`) as ranges,
/// anything else as a level.
pub(crate) fn group_condition(attribute: &str, group: &str) -> String {
    let number = |s: &str| s.trim().parse::<f64>().ok().map(|_| s.trim().to_owned());
    if let Some(hi) = group.strip_prefix('<').and_then(number) {
        return format!("{attribute}=..{hi}");
    }
    if let Some(lo) = group.strip_prefix(">=").and_then(number) {
        return format!("{attribute}={lo}..");
    }
    if let Some((lo, hi)) = group.split_once('-') {
        if let (Some(lo), Some(hi)) = (number(lo), number(hi)) {
            return format!("{attribute}={lo}..{hi}");
        }
    }
    format!("{attribute}={group}")
}

/// The link of a cohort question on this page.
pub(crate) fn cohort_link(route: &str, a: &str) -> String {
    format!(
        "/console/workbench?route={}&a={}",
        percent_encode(route),
        percent_encode(a)
    )
}

pub(crate) fn workbench(chrome: &Chrome<'_>, v: &WorkbenchView<'_>) -> String {
    let here = |extra: &str| {
        format!(
            "/console/workbench?route={}&from={}&to={}{extra}",
            percent_encode(v.route),
            percent_encode(v.from),
            percent_encode(v.to)
        )
    };
    let body = html! {
        form.period method="get" action="/console/workbench" {
            label { "Route " select name="route" {
                @for r in v.routes { option value=(r) selected[r == v.route] { (r) } }
            } }
            label { " From " input type="date" name="from" value=(v.from); }
            label { " to " input type="date" name="to" value=(v.to); }
            " " button type="submit" { "Show" }
            p.hint { "Default: the last seven days. Every figure is read from the audit log's recorded attributions." }
        }
        section aria-labelledby="summary" {
            h2 #summary { "What the model relies on" }
            @match &v.summary {
                Err(message) => (refusal(message)),
                Ok(s) => {
                    (coverage(&s["period"]))
                    @if let Some(stop) = s["previous_period"]["truncated"].as_str() {
                        p.hint { strong { "The previous period was cut short (" (stop.replace('_', " ")) "): the changes compare with part of it only." } }
                    }
                    @let features = array(s, "features");
                    @let largest = features.iter().filter_map(|f| f64_of(f, "mean_abs")).fold(0.0, f64::max);
                    @let largest_signed = features.iter().filter_map(|f| f64_of(f, "mean").map(f64::abs)).fold(0.0, f64::max);
                    @let series_top = features.iter().flat_map(|f| array(f, "series")).filter_map(|p| f64_of(p, "mean_abs")).fold(0.0, f64::max);
                    @let strip_top = features.iter().flat_map(|f| array(f, "strip")).filter_map(|p| f64_of(p, "contribution").map(f64::abs)).fold(0.0, f64::max);
                    table.summary {
                        caption { "Mean |contribution| per feature (" (s["space"].as_str().unwrap_or("output")) " space), against the previous period of the same length (" (s["previous_period"]["rows"]) " predictions); one line per " (s["bucket"].as_str().unwrap_or("bucket")) }
                        thead { tr {
                            th scope="col" { "Feature" } th scope="col" { "Mean |contribution|" } th scope="col" {}
                            th scope="col" { "Mean (signed)" } th scope="col" {} th scope="col" { "Change" }
                            th scope="col" { "Over time" }
                            th scope="col" { "Each prediction (blue low, red high value)" }
                        } }
                        tbody {
                            @for f in features {
                                @let name = f["feature"].as_str().unwrap_or_default();
                                tr {
                                    th scope="row" { a href=(here(&format!("&feature={}", percent_encode(name)))) { (name) } }
                                    td.num { (fixed(f64_of(f, "mean_abs"), 4)) }
                                    td { (bar(f64_of(f, "mean_abs").unwrap_or(0.0), largest, false)) }
                                    td.num { (signed(f64_of(f, "mean"))) }
                                    td { (bar(f64_of(f, "mean").unwrap_or(0.0), largest_signed, true)) }
                                    td.num { (signed(f.get("change").and_then(|c| f64_of(c, "mean_abs")))) }
                                    td { (sparkline(array(f, "series"), series_top)) }
                                    td { (strip(array(f, "strip"), strip_top)) }
                                }
                            }
                        }
                    }
                    @if v.auditor {
                        p { "Every explained prediction of the period, one shap_<feature> column per feature: "
                            a href={ "/console/workbench/export?route=" (percent_encode(v.route)) "&from=" (percent_encode(v.from)) "&to=" (percent_encode(v.to)) "&format=parquet" } { "Parquet" }
                            " · "
                            a href={ "/console/workbench/export?route=" (percent_encode(v.route)) "&from=" (percent_encode(v.from)) "&to=" (percent_encode(v.to)) "&format=csv" } { "CSV" } }
                    }
                }
            }
        }
        section aria-labelledby="dependence" {
            h2 #dependence { "How one feature works" @if !v.feature.is_empty() { ": " (v.feature) } }
            @match &v.dependence {
                None => p.hint { "Pick a feature in the table above." },
                Some(Err(message)) => (refusal(message)),
                Some(Ok(d)) => {
                    figure {
                        (scatter(array(d, "points")))
                        figcaption { "Its value (across) against its contribution (up), one dot per prediction"
                            @if let Some(c) = d["colour_feature"].as_str() { ", coloured by " (c) " (blue low, red high), the feature it interacts with most" }
                            "." }
                    }
                }
            }
        }
        section aria-labelledby="cohorts" {
            h2 #cohorts { "Why one group differs from another" }
            form.cohorts method="get" action="/console/workbench" {
                input type="hidden" name="route" value=(v.route);
                input type="hidden" name="from" value=(v.from);
                input type="hidden" name="to" value=(v.to);
                label { "Cohort A " input type="text" name="a" value=(v.a) placeholder="duration_months=24.."; }
                label { " Cohort B " input type="text" name="b" value=(v.b) placeholder="empty: everyone else"; }
                " " button type="submit" { "Compare" }
                p.hint { "Conditions: feature=value, feature!=value or feature=low..high, separated by ; — also decision=favourable|unfavourable, outcome=…, review_state=…" }
            }
            @match &v.cohorts {
                None => {},
                Some(Err(message)) => (refusal(message)),
                Some(Ok(c)) => {
                    p { "A: " strong { (c["rows_a"]) } " predictions, mean " (fixed(f64_of(c, "mean_prediction_a"), 4))
                        @if let Some(share) = f64_of(c, "favourable_a") { ", " (format!("{:.1}", share * 100.0)) "% favourable" }
                        ". B: " strong { (c["rows_b"]) } " predictions, mean " (fixed(f64_of(c, "mean_prediction_b"), 4))
                        @if let Some(share) = f64_of(c, "favourable_b") { ", " (format!("{:.1}", share * 100.0)) "% favourable" }
                        ". The differences below add up to the difference of the means exactly"
                        @if f64_of(c, "base").is_some_and(|b| b.abs() > 1e-12) { " (with " (signed(f64_of(c, "base"))) " from a change of surrogate)" }
                        "." }
                    @let features = array(c, "features");
                    @let largest = features.iter().filter_map(|f| f64_of(f, "difference").map(f64::abs)).fold(0.0, f64::max);
                    table.cohorts {
                        thead { tr { th scope="col" { "Feature" } th scope="col" { "Mean in A" } th scope="col" { "Mean in B" } th scope="col" { "A − B" } th scope="col" {} } }
                        tbody {
                            @for f in features {
                                tr {
                                    th scope="row" { (f["feature"].as_str().unwrap_or_default()) }
                                    td.num { (signed(f64_of(f, "mean_a"))) }
                                    td.num { (signed(f64_of(f, "mean_b"))) }
                                    td.num { (signed(f64_of(f, "difference"))) }
                                    td { (bar(f64_of(f, "difference").unwrap_or(0.0), largest, true)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="slices" {
            h2 #slices { "Where it goes wrong" }
            @match &v.slices {
                None => {},
                Some(Err(message)) => (refusal(message)),
                Some(Ok(s)) => {
                    @for (key, title, measure) in [
                        ("by_surrogate_error", "Where the surrogate is furthest from the model", "surrogate_error"),
                        ("by_model_error", "Where the model errs most against reported outcomes", "model_error_rate"),
                    ] {
                        @let slices = array(s, key);
                        h3 { (title) }
                        @if slices.is_empty() {
                            p.hint { @if key == "by_model_error" { "No outcome has been reported in the period." } @else { "No slice is large enough." } }
                        } @else {
                            table.slices {
                                thead { tr { th scope="col" { "Slice" } th scope="col" { "Predictions" } th scope="col" { (measure.replace('_', " ")) } th scope="col" { "Overall" } @if v.auditor { th scope="col" { "Records" } } } }
                                tbody {
                                    @for slice in slices {
                                        @let conditions: Vec<String> = array(slice, "conditions").iter().filter_map(|c| c.as_str().map(str::to_owned)).collect();
                                        tr {
                                            th scope="row" { a href=(format!("{}&a={}", here(""), percent_encode(&conditions.join(";")))) { (conditions.join(" and ")) } }
                                            td.num { (slice["rows"]) }
                                            td.num { (fixed(f64_of(slice, measure), 4)) }
                                            td.num { (fixed(f64_of(&s["overall"], measure), 4)) }
                                            @if v.auditor { td { @for id in array(slice, "examples") {
                                                @let id = id.as_str().unwrap_or_default();
                                                a href={ "/console/records/" (percent_encode(id)) } { code { (id.chars().take(8).collect::<String>()) } } " "
                                            } } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Workbench", Some(chrome), body)
}

/// The answer of a what-if asked from a record's page.
pub(crate) fn whatif(chrome: &Chrome<'_>, record: &str, answer: &Result<Json, String>) -> String {
    let body = html! {
        p { a href={ "/console/records/" (percent_encode(record)) } { "Back to the record" } }
        @match answer {
            Err(message) => (refusal(message)),
            Ok(w) => {
                p { "The model, asked through the probe path (not recorded as a decision, not monitored), answered "
                    strong #whatif-original { (fixed(w["original"]["model_prediction"].as_f64(), 4)) } " for the original row and "
                    strong #whatif-changed { (fixed(w["changed"]["model_prediction"].as_f64(), 4)) } " for the changed one ("
                    (signed(w["difference"]["model_prediction"].as_f64())) ")." }
                table {
                    caption { "Changes" }
                    thead { tr { th scope="col" { "Feature" } th scope="col" { "From" } th scope="col" { "To" } } }
                    tbody { @for c in array(w, "changes") { tr {
                        th scope="row" { (c["feature"].as_str().unwrap_or_default()) } td { (c["from"]) } td { (c["to"]) }
                    } } }
                }
                @if !array(w, "restricted").is_empty() {
                    p.hint { "Kept as the model first saw them and shown as the audit log keeps them (the privacy policy restricts them; they cannot be changed): "
                        @for r in array(w, "restricted") { code { (r["feature"].as_str().unwrap_or_default()) } " (" (r["rule"].as_str().unwrap_or_default()) ") " } }
                }
                @let diffs = array(&w["difference"], "attributions");
                @let largest = diffs.iter().filter_map(|d| f64_of(d, "difference").map(f64::abs)).fold(0.0, f64::max);
                table {
                    caption { "The surrogate's explanation of both rows (" (w["space"].as_str().unwrap_or("output")) " space), largest change first" }
                    thead { tr { th scope="col" { "Feature" } th scope="col" { "Original" } th scope="col" { "Changed" } th scope="col" { "Difference" } th scope="col" {} } }
                    tbody { @for d in diffs { tr {
                        th scope="row" { (d["feature"].as_str().unwrap_or_default()) }
                        td.num { (signed(f64_of(d, "original"))) } td.num { (signed(f64_of(d, "changed"))) }
                        td.num { (signed(f64_of(d, "difference"))) } td { (bar(f64_of(d, "difference").unwrap_or(0.0), largest, true)) }
                    } } }
                }
            }
        }
    };
    page("What if", Some(chrome), body)
}

/// The what-if form under an explained row of a record's page.
pub(crate) fn whatif_form(csrf: &str, record: &str, row: usize) -> Markup {
    html! {
        details.whatif {
            summary { "What if…? Ask the model with some features changed" }
            form method="post" action="/console/whatif" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="record" value=(record);
                input type="hidden" name="row" value=(row);
                label { "Changes, one per line as feature = value"
                    textarea name="changes" rows="3" cols="40" placeholder="duration_months = 12" {} }
                button type="submit" { "Ask the model" }
                p.hint { "Sent through the probe path: not recorded as a decision, not monitored. Only recent requests can be asked again." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitored_groups_become_cohort_conditions() {
        assert_eq!(group_condition("age", "<25"), "age=..25");
        assert_eq!(group_condition("age", ">=40"), "age=40..");
        assert_eq!(group_condition("age", "25-40"), "age=25..40");
        assert_eq!(group_condition("sex", "female"), "sex=female");
        assert_eq!(
            group_condition("plan", "pay-as-you-go"),
            "plan=pay-as-you-go"
        );
    }
}
