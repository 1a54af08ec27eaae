//! The report as one printable HTML page: inline SVG charts (the console's), its own
//! stylesheet, no script and nothing loaded from elsewhere, so it can be mailed, archived
//! and printed as it is. Each section starts a new printed page.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{DEFINITIONS, DEFINITIONS_LINK, OUTCOME_ROWS, Report, SECTIONS, num, percent, verdict};
use crate::chart::{self, Bar};

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; color: #1a1a1a; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #1a1a1a; padding-bottom: .2rem; margin-top: 2.5rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #bbb; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-style: italic; }
.fail { color: #a40000; font-weight: bold; }
.ok { color: #0a5c0a; font-weight: bold; }
.warn { color: #8a5a00; font-weight: bold; }
svg.chart { width: 100%; height: auto; max-width: 760px; display: block; margin: .5rem 0; }
svg.chart text { font-size: 12px; fill: #1a1a1a; }
svg.chart .bar { fill: #3b6ea8; }
svg.chart .bar.emphasis { fill: #c2571a; }
svg.chart .whisker { stroke: #1a1a1a; stroke-width: 1.5; }
svg.chart .reference { stroke: #a40000; stroke-dasharray: 4 3; }
svg.chart .axis { stroke: #1a1a1a; }
svg.chart .tick, svg.chart .axis-label { font-size: 11px; fill: #555; }
@media print {
  body { margin: 0; max-width: none; }
  section { page-break-before: always; break-before: page; }
  section:first-of-type { page-break-before: avoid; break-before: avoid; }
  table, svg.chart { page-break-inside: avoid; break-inside: avoid; }
}
"#;

/// The report as a standalone HTML document.
pub fn render(report: &Report) -> String {
    let title = format!(
        "Sidelight audit report, {} to {}",
        report.period.from, report.period.to
    );
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Audit report" }
                    p { "Period " strong { (report.period.from) } " to " strong { (report.period.to) } " (end excluded). Generated " (report.generated_at) " by Sidelight " (report.sidelight_version) ", from " (if report.built_by == "proxy" { "a running proxy" } else { "the audit log" }) "." }
                }
                (system(report))
                (importance(report))
                (fairness(report))
                (drift(report))
                (consent(report))
                (reviews(report))
                (erasures(report))
                (verification(report))
                (duties(report))
                (definitions())
            }
        }
    }
    .into_string()
}

fn note(text: Option<&String>) -> Markup {
    html! { @if let Some(t) = text { p.note { (t) } } }
}

fn system(r: &Report) -> Markup {
    let s = &r.system;
    html! {
        section #system {
            h2 { (SECTIONS[0]) }
            p { (s.records) " prediction(s) recorded in the period, and " (s.events) " other audit event(s) (admin actions, review decisions, reported outcomes, alerts)." }
            (note(s.note.as_ref()))
            @if !s.routes.is_empty() {
                table {
                    tr { th { "Route" } th { "Path prefix" } th { "Model" } th { "Records" } th { "Surrogate versions seen" } th { "In service (held-out R²)" } }
                    @for route in &s.routes {
                        tr {
                            td { (route.route) @if !route.configured { " (not in the config)" } }
                            td { (route.path_prefix.as_deref().unwrap_or("—")) }
                            td { @if route.models.is_empty() { "—" } @else { (route.models.join(", ")) } }
                            td.n { (route.records) }
                            td { @if route.surrogate_versions.is_empty() { @if route.explained { "none" } @else { "not explained" } } @else { (route.surrogate_versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ")) } }
                            td { @match &route.in_service {
                                Some(i) => { @match i.version { Some(v) => { "v" (v) " (" (num(i.r2)) ")" } None => { "warming up" } } }
                                None => { "—" }
                            } }
                        }
                    }
                }
            }
        }
    }
}

fn importance(r: &Report) -> Markup {
    let s = &r.importance;
    html! {
        section #importance {
            h2 { (SECTIONS[1]) }
            p { "Mean absolute SHAP value of each feature over the period's explained predictions, from the attributions stored with each record. Protected features are drawn in orange." }
            (note(s.note.as_ref()))
            @for (i, route) in s.routes.iter().enumerate() {
                h3 { "Route " (route.route) }
                p { (route.summary.rows) " explained row(s); protected features' share of the total: " (percent(route.summary.protected_share)) "."
                    @if route.records_without_attributions > 0 { " " (route.records_without_attributions) " record(s) carry no attributions (not explained, consent none, or erased)." }
                    @if route.rows_skipped > 0 { " " (route.rows_skipped) " row(s) with other features left out." } }
                @let bars: Vec<Bar> = route.summary.features.iter().map(|f| Bar {
                    label: f.feature.clone(), value: f.mean_abs_contribution, interval: None, emphasis: f.protected,
                }).collect();
                @if let Some(svg) = chart::bars(&format!("importance-{i}"), &format!("Mean |SHAP| per feature, route {}", route.route), "mean |SHAP|", &bars, &[], None) { (svg) }
                table {
                    tr { th { "Feature" } th { "Mean |SHAP|" } th { "Share" } th { "Protected" } }
                    @for f in &route.summary.features {
                        tr { td { (f.feature) } td.n { (num(Some(f.mean_abs_contribution))) } td.n { (percent(f.share)) } td { @if f.protected { "yes" } } }
                    }
                }
            }
        }
    }
}

fn fairness(r: &Report) -> Markup {
    let s = &r.fairness;
    html! {
        section #fairness {
            h2 { (SECTIONS[2]) }
            p { "Selection rate (share of favourable decisions) per group with its Wilson interval; per unprivileged group the disparate impact (four-fifths rule), the statistical parity difference, and with reported outcomes the equal opportunity and average odds differences. A verdict is fail only when the whole interval breaks the rule. Differences are unprivileged minus privileged, so negative when the unprivileged group fares worse; disparate impact has no upper bound. Every formula is under " a href="#definitions" { "Definitions" } "." }
            (note(s.note.as_ref()))
            @for (i, route) in s.routes.iter().enumerate() {
                h3 { "Route " (route.route) }
                p { (route.rows) " explained row(s), " (route.rows_with_outcome) " with a reported outcome, from "
                    (route.outcomes_received) " outcome(s) received"
                    @if route.unusable_outcomes > 0 { ", of which " (route.unusable_outcomes) " not usable (a value that is neither favourable nor unfavourable)" } ". "
                    (OUTCOME_ROWS) }
                (note(route.note.as_ref()))
                @for (j, a) in route.attributes.iter().enumerate() {
                    h3 { (a.attribute) ": " span class=(if a.verdict == sidelight_monitor::Verdict::Fail { "fail" } else { "" }) { (verdict(a.verdict)) } }
                    @let failing: Vec<&str> = a.comparisons.iter().filter(|c| c.disparate_impact_verdict == sidelight_monitor::Verdict::Fail || c.statistical_parity_verdict == sidelight_monitor::Verdict::Fail).map(|c| c.unprivileged.as_str()).collect();
                    @let bars: Vec<Bar> = a.groups.iter().map(|g| Bar {
                        label: format!("{}{} (n={})", g.group, if g.privileged { ", privileged" } else { "" }, g.count),
                        value: g.selection.rate.unwrap_or(f64::NAN),
                        interval: g.selection.interval.map(|i| (i.lower, i.upper)),
                        emphasis: failing.contains(&g.group.as_str()),
                    }).collect();
                    @let four_fifths = a.groups.first().and_then(|g| g.selection.rate).map(|p| p * a.config.four_fifths);
                    @let marks: Vec<(f64, &str)> = four_fifths.map(|m| (m, "4/5 of privileged")).into_iter().collect();
                    @if let Some(svg) = chart::bars(&format!("fairness-{i}-{j}"), &format!("Selection rate per group of {}, route {}", a.attribute, route.route), "selection rate", &bars, &marks, Some(1.0)) { (svg) }
                    table {
                        tr { th { "Group" } th { "Rows" } th { "Selection rate" } th { "Interval" } th { "With outcome" } th { "TPR" } }
                        @for g in &a.groups {
                            tr { td { (g.group) @if g.privileged { " (privileged)" } } td.n { (g.count) } td.n { (percent(g.selection.rate)) }
                                td { @match g.selection.interval { Some(i) => { (percent(Some(i.lower))) " – " (percent(Some(i.upper))) } None => { "—" } } }
                                td.n { (g.with_outcome) } td.n { (percent(g.true_positive_rate.rate)) } }
                        }
                    }
                    @if a.unlisted > 0 { p.note { (a.unlisted) " row(s) in no configured group (other or missing values)." } }
                    table {
                        tr { th { "Group vs privileged" } th { "Disparate impact" } th { "Verdict" } th { "Parity difference" } th { "Verdict" } th { "Equal opportunity diff." } th { "Verdict" } th { "Average odds diff." } }
                        @for c in &a.comparisons {
                            tr { td { (c.unprivileged) " vs " (c.privileged) }
                                td.n { (num(c.disparate_impact.map(|e| e.value))) } td { (verdict(c.disparate_impact_verdict)) }
                                td.n { (num(c.statistical_parity_difference.map(|e| e.value))) } td { (verdict(c.statistical_parity_verdict)) }
                                td.n { (num(c.equal_opportunity_difference.map(|e| e.value))) } td { (verdict(c.equal_opportunity_verdict)) }
                                td.n { (num(c.average_odds_difference)) } }
                        }
                    }
                }
            }
            @for route in &s.routes {
                @for x in &route.exposure {
                    h3 { "Route " (route.route) ", exposure by " (x.attribute) ": " span class=(if x.check.verdict == sidelight_monitor::Verdict::Fail { "fail" } else { "" }) { (verdict(x.check.verdict)) } }
                    p { "Of the items shown in " (x.rankings) " ranking(s), the share of the shown slots each group of items (by " (x.item_feature) ") received, per group of customers, with its Wilson interval (each slot counted once); per unprivileged group the difference of its share from the privileged group's, judged as the statistical parity difference is." }
                    table {
                        tr { th { "Customers" } th { "Rankings" } th { "Slots" } th { "Items" } th { "Share" } th { "Interval" } }
                        @for g in &x.check.groups {
                            @for share in &g.shares {
                                tr { td { (g.customer_group) } td.n { (g.rankings) } td.n { (g.slots) } td { (share.item_group) } td.n { (percent(Some(share.share))) }
                                    td { @match share.interval { Some(i) => { (percent(Some(i.lower))) " – " (percent(Some(i.upper))) } None => { "—" } } } }
                            }
                        }
                    }
                    table {
                        tr { th { "Customers vs privileged" } th { "Items" } th { "Share difference" } th { "Interval" } th { "Verdict" } }
                        @for c in &x.check.comparisons {
                            tr { td { (c.unprivileged) " vs " (c.privileged) } td { (c.item_group) } td.n { (num(c.difference.map(|e| e.value))) }
                                td { @match c.difference { Some(e) => { (num(Some(e.lower))) " – " (num(Some(e.upper))) } None => { "—" } } } td { (verdict(c.verdict)) } }
                        }
                    }
                }
            }
            h3 { "Alerts" }
            (note(s.alerts_note.as_ref()))
            @if !s.alerts.is_empty() {
                table {
                    tr { th { "At" } th { "Route" } th { "Check" } th { "About" } th { "State" } th { "Value" } th { "Bound" } th { "Message" } }
                    @for a in &s.alerts {
                        tr { td { (a.at) } td { (a.route) } td { (a.check) } td { (a.subject) } td { (a.state) } td.n { (num(a.value)) } td.n { (num(a.bound)) } td { (a.message) } }
                    }
                }
            }
        }
    }
}

fn drift(r: &Report) -> Markup {
    let s = &r.drift;
    html! {
        section #drift {
            h2 { (SECTIONS[3]) }
            p { "Each feature and the model's output in the period against the reference period " (s.reference.from) " to " (s.reference.to)
                (if s.reference_chosen { " (chosen)" } else { " (the period of the same length just before)" })
                ": population stability index (PSI; above 0.1 a shift, above 0.25 a large one), Kolmogorov–Smirnov for numbers and χ² for categories." }
            (note(s.note.as_ref()))
            @for (i, route) in s.routes.iter().enumerate() {
                h3 { "Route " (route.route) }
                p { (route.rows) " row(s) in the period, " (route.reference_rows) " in the reference." }
                (note(route.note.as_ref()))
                @let bars: Vec<Bar> = route.features.iter().chain(&route.prediction).map(|d| Bar {
                    label: d.feature.clone(), value: d.psi.unwrap_or(f64::NAN), interval: None, emphasis: d.psi.is_some_and(|p| p > 0.25),
                }).collect();
                @if let Some(svg) = chart::bars(&format!("drift-{i}"), &format!("PSI per feature, route {}", route.route), "PSI", &bars, &[(0.1, "0.1"), (0.25, "0.25")], None) { (svg) }
                @if !bars.is_empty() {
                    table {
                        tr { th { "Feature" } th { "Kind" } th { "PSI" } th { "KS" } th { "KS p" } th { "χ²" } th { "χ² p" } th { "Missing (period / reference)" } }
                        @for d in route.features.iter().chain(&route.prediction) {
                            tr { td { (d.feature) } td { (d.kind) } td.n { (num(d.psi)) } td.n { (num(d.ks_statistic)) } td.n { (num(d.ks_p_value)) } td.n { (num(d.chi_square)) } td.n { (num(d.chi_square_p_value)) } td.n { (d.missing) " / " (d.reference_missing) } }
                        }
                    }
                }
            }
        }
    }
}

fn consent(r: &Report) -> Markup {
    let s = &r.consent;
    let t = &s.total;
    let bars = [
        ("full", t.full),
        ("explain only", t.explain_only),
        ("none (opted out)", t.none),
    ]
    .map(|(label, n)| Bar {
        label: label.to_owned(),
        value: n as f64,
        interval: None,
        emphasis: false,
    });
    html! {
        section #consent {
            h2 { (SECTIONS[4]) }
            p { "Predictions by the consent they were served under. Under none, nothing identifying was stored and nothing was trained on." }
            (note(s.note.as_ref()))
            @if t.total > 0 {
                @if let Some(svg) = chart::bars("consent", "Predictions by consent, all routes", "predictions", &bars, &[], None) { (svg) }
                table {
                    tr { th { "Route" } th { "Full" } th { "Explain only" } th { "None" } th { "Total" } }
                    @for c in s.routes.iter().chain(std::iter::once(t)) {
                        tr { td { (c.route) } td.n { (c.full) } td.n { (c.explain_only) } td.n { (c.none) } td.n { (c.total) } }
                    }
                }
            }
        }
    }
}

fn reviews(r: &Report) -> Markup {
    let s = &r.reviews;
    html! {
        section #reviews {
            h2 { (SECTIONS[5]) }
            (note(s.note.as_ref()))
            table {
                tr { th { "Predictions sent to review" } td.n { (s.flagged) } }
                tr { th { "Still pending at the end of the period" } td.n { (s.pending_at_end) } }
                tr { th { "Overrides (a reviewer replaced the model's outcome)" } td.n { (s.overrides) } }
                tr { th { "Outcomes reported in the period" } td.n { (s.outcomes_reported) } }
                tr { th { "Contested by customers in the period" } td.n { (s.contests.contested) } }
                tr { th { "… decided since" } td.n { (s.contests.decided) } }
                tr { th { "… overturned (the reviewer changed the decision)" } td.n { (s.contests.overturned) } }
                tr { th { "Median time from contest to decision" } td.n { (s.contests.median_hours_to_decision.map_or_else(|| "—".to_owned(), |h| format!("{h:.1} h"))) } }
            }
            @if !s.by_reason.is_empty() {
                table {
                    tr { th { "Reason" } th { "Predictions" } }
                    @for (reason, n) in &s.by_reason { tr { td { (reason) } td.n { (n) } } }
                }
            }
            @if !s.decisions.is_empty() {
                table {
                    tr { th { "Decision" } th { "Count" } }
                    @for (decision, n) in &s.decisions { tr { td { (decision) } td.n { (n) } } }
                }
            }
        }
    }
}

fn erasures(r: &Report) -> Markup {
    let s = &r.erasures;
    html! {
        section #erasures {
            h2 { (SECTIONS[6]) }
            (note(s.note.as_ref()))
            @if !s.erased_records.is_empty() {
                table {
                    tr { th { "Reason" } th { "Predictions of the period erased" } }
                    @for (reason, n) in &s.erased_records { tr { td { (reason) } td.n { (n) } } }
                }
            }
            @if !s.actions.is_empty() {
                table {
                    tr { th { "Subject erasure at" } th { "By" } th { "Records erased" } }
                    @for a in &s.actions { tr { td { (a.at) } td { (a.actor) } td.n { (a.erased_records.map_or_else(|| "—".to_owned(), |n| n.to_string())) } } }
                }
            }
        }
    }
}

fn verification(r: &Report) -> Markup {
    let v = &r.verification;
    html! {
        section #verification {
            h2 { (SECTIONS[7]) }
            @if v.ok {
                p { span.ok { "Intact." } " The hash chain of all " (v.records) " record(s) and " (v.checkpoints) " authenticated checkpoint(s) verify; " (v.erased) " record(s) are erased (their digests remain), each by one of " (v.erasures) " authenticated erasure(s). Last seq " (v.last_seq) ", hash " code { (v.last_hash.as_deref().unwrap_or_default()) } "." }
                @if v.reviews_not_applied > 0 { p { (v.reviews_not_applied) " record(s) show a review state older than the latest review decision chained for them (a decision is chained before the state is written; a state set back by hand shows the same way)." } }
                @if v.appended_while_verifying > 0 { p { (v.appended_while_verifying) " record(s) were appended while the log was verified; authenticated checkpoints cover them, and the next report verifies them in full." } }
                @if v.writers.iter().any(|w| !w.writer.is_empty()) {
                    p { "Each writer (replica) keeps a chain of its own, verified on its own:" }
                    table {
                        tr { th { "Writer" } th { "Records" } th { "Checkpoints" } th { "Erased" } th { "Last seq" } th { "Last hash" } th { "Appended while verifying" } }
                        @for w in &v.writers { tr { td { (w.writer) } td.n { (w.records) } td.n { (w.checkpoints) } td.n { (w.erased) } td.n { (w.last_seq) } td { code { (w.last_hash) } } td.n { (w.appended_while_verifying) } } }
                    }
                }
            } @else {
                p { span.fail { "Not intact." } " " (v.error.as_deref().unwrap_or_default()) }
            }
        }
    }
}

fn duties(r: &Report) -> Markup {
    html! {
        section #duties {
            h2 { (SECTIONS[8]) }
            p { "Each duty, the articles it answers, and what this deployment does about it, from its configuration and this period's records. A duty marked “not configured” is one Sidelight does nothing about here." }
            table {
                tr { th { "Duty" } th { "Answers" } th { "Status" } th { "What this deployment does" } }
                @for d in &r.duties.duties {
                    tr {
                        td { (d.duty) }
                        td { (d.answers) }
                        td class=(match d.status { crate::DutyStatus::InPlace => "ok", crate::DutyStatus::Partial => "warn", crate::DutyStatus::NotConfigured => "fail" }) { (d.status.label()) }
                        td { (d.what) }
                    }
                }
            }
        }
    }
}

/// Every figure's formula, in the report itself.
fn definitions() -> Markup {
    html! {
        section #definitions {
            h2 { "Definitions of the figures" }
            p { "u is an unprivileged group, p the privileged one; L and U are the lower and upper ends of an interval; intervals are at the route's monitor confidence (default 0.95). In more words: " code { (DEFINITIONS_LINK) } "." }
            dl {
                @for d in DEFINITIONS {
                    dt { (d.figure) }
                    dd { (d.definition) }
                }
            }
        }
    }
}
