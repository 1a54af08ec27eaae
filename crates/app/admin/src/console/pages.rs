//! The console's pages, server-rendered with maud (every value is HTML-escaped unless it
//! is markup made here). Handlers gather the data; these functions only lay it out.
//!
//! The markup is plain HTML that reads without the stylesheet and without JavaScript:
//! one `<h1>` per page, labelled form fields, tables with header cells, and charts with
//! a text alternative.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value as Json;
use sidelight_audit::{Feedback, Review, rfc3339_ms};

use super::session::{Flash, percent_encode};
use super::{LOGIN_PATH, LOGOUT_PATH, STYLESHEET_PATH};
use crate::auth::{Principal, Role};
use sidelight_report::chart::{self, FidelityPoint, Step};

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Records,
    Reviews,
    Monitoring,
    Duties,
    Workbench,
    Other,
}

/// What every signed-in page shows around its content.
pub(crate) struct Chrome<'a> {
    pub(crate) principal: &'a Principal,
    /// The session's CSRF token, for the page's forms.
    pub(crate) csrf: &'a str,
    pub(crate) flash: Option<Flash>,
    pub(crate) nav: Nav,
}

/// A whole page: `title` names it in the tab and in its `<h1>`.
pub(crate) fn page(title: &str, chrome: Option<&Chrome<'_>>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sidelight console" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/console" { "Sidelight" }
                    @if let Some(chrome) = chrome {
                        (navigation(chrome))
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(flash) = chrome.and_then(|c| c.flash.as_ref()) {
                        p class=(if flash.ok { "flash ok" } else { "flash error" }) role="status" { (flash.text) }
                    }
                    (body)
                }
                footer {
                    p { "Sidelight console · times are UTC · "
                        a href="/readyz" { "readiness" } " · " a href="/metrics" { "metrics" } }
                }
            }
        }
    }
    .into_string()
}

fn navigation(chrome: &Chrome<'_>) -> Markup {
    let role = chrome.principal.role;
    let entries = [
        (Nav::Overview, "/console", "Overview", Role::Viewer),
        (Nav::Records, "/console/records", "Records", Role::Auditor),
        (
            Nav::Reviews,
            "/console/reviews",
            "Review queue",
            Role::Reviewer,
        ),
        (
            Nav::Monitoring,
            "/console/monitoring",
            "Monitoring",
            Role::Reviewer,
        ),
        (Nav::Duties, "/console/duties", "Duties", Role::Auditor),
        (
            Nav::Workbench,
            "/console/workbench",
            "Workbench",
            Role::Viewer,
        ),
    ];
    html! {
        nav aria-label="Console" {
            ul {
                @for (nav, href, label, needed) in entries {
                    @if role >= needed {
                        li {
                            @if nav == chrome.nav {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                }
            }
        }
        div.who {
            span { "Signed in as " strong { (chrome.principal.name) } " (" (role) ")" }
            form.inline method="post" action=(LOGOUT_PATH) {
                input type="hidden" name="csrf" value=(chrome.csrf);
                button type="submit" { "Sign out" }
            }
        }
    }
}

/// The sign-in page, with the form's CSRF token and what went wrong last time.
pub(crate) fn login(csrf: &str, error: Option<&str>) -> String {
    let body = html! {
        p { "Sign in with an admin API token (made by " code { "sidelight token new" } "). "
            "What you see depends on the token's role: viewers see the overview, reviewers "
            "also the review queue with personal data masked, auditors the full records." }
        @if let Some(error) = error {
            p.flash.error role="alert" { "Not signed in: " (error) "." }
        }
        form.login method="post" action=(LOGIN_PATH) {
            input type="hidden" name="csrf" value=(csrf);
            label for="token" { "Admin token" }
            input #token type="password" name="token" autocomplete="off" required autofocus;
            button type="submit" { "Sign in" }
        }
        p.hint { "The token is sent once, over this form, and never kept: the session "
            "remembers its digest, lasts at most 8 hours, and ends when you sign out or "
            "the token is revoked." }
    };
    page("Sign in", None, body)
}

/// A page that only says something: an error, a refusal.
pub(crate) fn message(title: &str, chrome: Option<&Chrome<'_>>, text: &str) -> String {
    page(
        title,
        chrome,
        html! {
            p { (text) }
            p { a href="/console" { "Back to the overview" } }
        },
    )
}

// === overview ===

/// One trained surrogate version, as the version history reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Version {
    pub(crate) version: u64,
    pub(crate) trained_at: u64,
    pub(crate) rows: u64,
    pub r2: f64,
    pub(crate) mae: f64,
    pub(crate) accepted: bool,
    pub(crate) reason: String,
}

impl Version {
    pub(crate) fn from_json(v: &Json) -> Option<Self> {
        Some(Self {
            version: v.get("version")?.as_u64()?,
            trained_at: v.get("trained_at").and_then(Json::as_u64).unwrap_or(0),
            rows: v.get("rows").and_then(Json::as_u64).unwrap_or(0),
            r2: v.get("r2").and_then(Json::as_f64).unwrap_or(f64::NAN),
            mae: v.get("mae").and_then(Json::as_f64).unwrap_or(f64::NAN),
            accepted: v.get("accepted").and_then(Json::as_bool).unwrap_or(false),
            reason: v
                .get("reason")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }

    fn point(&self) -> FidelityPoint {
        FidelityPoint {
            version: self.version,
            trained_at: self.trained_at,
            r2: self.r2,
            accepted: self.accepted,
        }
    }
}

/// A count that may have stopped at a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) n: usize,
    /// More exist than were counted.
    pub(crate) capped: bool,
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.n, if self.capped { "+" } else { "" })
    }
}

/// Explanation coverage of a route's recent audited predictions, after warm-up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Coverage {
    /// No audit log to count in.
    NoAudit,
    /// No surrogate has been in service yet: every prediction so far is a warm-up row.
    WarmingUp,
    /// Of `total` audited predictions in `window` (the first `total` of it when capped),
    /// `explained` carried an explanation.
    Counted {
        explained: usize,
        total: usize,
        capped: bool,
        window: CoverageWindow,
        /// When the first surrogate came into service, if within the last 24 hours:
        /// the predictions before it were warm-up rows and are not counted.
        warm_up_before: Option<i64>,
    },
    /// The store could not be read.
    Unavailable(String),
}

/// The period a coverage figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoverageWindow {
    /// Since the first surrogate came into service (Unix ms).
    SinceInService(i64),
    /// The last so many milliseconds.
    Last(i64),
}

impl std::fmt::Display for CoverageWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::SinceInService(ms) => write!(
                f,
                "since the first surrogate came into service at {}",
                clock_time(ms)
            ),
            Self::Last(ms) if ms >= 3_600_000 => {
                let hours = ms / 3_600_000;
                write!(
                    f,
                    "in the last {hours} hour{}",
                    if hours == 1 { "" } else { "s" }
                )
            }
            Self::Last(ms) if ms >= 60_000 => write!(f, "in the last {} minutes", ms / 60_000),
            Self::Last(ms) => write!(f, "in the last {} seconds", ms / 1000),
        }
    }
}

/// `HH:MM:SS` UTC of a Unix time in milliseconds.
fn clock_time(ms: i64) -> String {
    let text = sidelight_audit::rfc3339_ms(ms);
    text.get(11..19)
        .map_or(text.clone(), |t| format!("{t} UTC"))
}

/// One route on the overview.
pub(crate) struct RouteSummary {
    pub(crate) route: String,
    /// Requests served on the route since start (all statuses), from the metrics.
    pub(crate) requests: Option<u64>,
    /// Requests over the route's inspection limit since start: served, not explained.
    pub(crate) over_limit: u64,
    pub(crate) rows_seen: u64,
    pub(crate) warm_up_rows: u64,
    pub(crate) in_service: Option<Version>,
    pub(crate) history: Vec<Version>,
    /// Why requests cannot be explained, and how many passed through for it.
    pub(crate) unexplainable: Option<(String, u64)>,
    pub(crate) coverage: Coverage,
    pub(crate) pending: Option<Count>,
}

fn number(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "—".to_owned()
    }
}

/// The overview: per route, traffic, the surrogate and its fidelity over time,
/// explanation coverage and pending reviews.
pub(crate) fn overview(chrome: &Chrome<'_>, routes: &[RouteSummary], audited: bool) -> String {
    let role = chrome.principal.role;
    let body = html! {
        @if routes.is_empty() {
            p { "No route has live explanations: add a " code { "[routes.explain]" }
                " section to a route to see it here." }
        }
        @if !audited {
            p.note { "There is no audit log (no " code { "[audit]" } " section): explanation "
                "coverage, records and the review queue need one." }
        }
        @for (i, r) in routes.iter().enumerate() {
            section.route aria-labelledby={ "route-" (i) } {
                h2 id={ "route-" (i) } { "Route " code { (r.route) } }
                @if let Some((message, passed)) = &r.unexplainable {
                    p.flash.error role="alert" {
                        strong { "Requests cannot be explained: " } (message)
                        " — " (passed) " passed through unexplained."
                    }
                }
                dl.facts {
                    dt { "Requests served" }
                    dd { @match r.requests { Some(n) => (n), None => "—" } }
                    dt { "Rows seen for training" }
                    dd { (r.rows_seen) }
                    dt { "Surrogate in service" }
                    dd {
                        @match &r.in_service {
                            Some(v) => { "version " (v.version) }
                            None => { "none yet: warming up, " (r.rows_seen.min(r.warm_up_rows)) " of " (r.warm_up_rows) " rows" }
                        }
                    }
                    @if let Some(v) = &r.in_service {
                        dt { "Held-out R²" } dd { (number(v.r2, 3)) }
                        dt { "Held-out MAE" } dd { (number(v.mae, 4)) }
                        @if v.trained_at > 0 {
                            dt { "Trained" } dd { (chart::short_time(v.trained_at)) " on " (v.rows) " rows" }
                        }
                    }
                    dt { "Explanation coverage" }
                    dd {
                        @match &r.coverage {
                            Coverage::NoAudit => "needs the audit log",
                            Coverage::Unavailable(e) => { "unavailable: " (e) }
                            Coverage::WarmingUp => "none yet: every prediction so far is a warm-up row",
                            Coverage::Counted { total: 0, window, .. } => { "no audited predictions " (window) }
                            Coverage::Counted { explained, total, capped, window, warm_up_before } => {
                                (format!("{:.1}%", 100.0 * *explained as f64 / *total as f64))
                                " (" (explained) " of " @if *capped { "the first " } (total)
                                " audited predictions " (window) ")"
                                @if let Some(first) = warm_up_before {
                                    br;
                                    small { "Predictions before " (clock_time(*first))
                                        " were warm-up rows (the surrogate was still learning) and are not counted." }
                                }
                            }
                        }
                    }
                    dt { "Over the inspection limit" }
                    dd {
                        (r.over_limit) " request" @if r.over_limit != 1 { "s" }
                        " since start: served, but too large to read, so neither explained nor audited with their payload"
                    }
                    dt { "Pending reviews" }
                    dd {
                        @match r.pending {
                            Some(count) if role >= Role::Reviewer && count.n > 0 => {
                                a href={ "/console/reviews?route=" (percent_encode(&r.route)) } { (count) }
                            }
                            Some(count) => (count),
                            None => "—",
                        }
                    }
                }
                h3 { "Fidelity over time" }
                @let points: Vec<FidelityPoint> = r.history.iter().map(Version::point).collect();
                @match chart::fidelity(&format!("fidelity-{i}"), &r.route, &points) {
                    Some(svg) => (svg),
                    None => p { "No trained version yet." },
                }
                p.links {
                    @if role >= Role::Auditor {
                        a href={ "/console/records?route=" (percent_encode(&r.route)) } { "Records of this route" }
                    }
                    @if role >= Role::Reviewer {
                        a href={ "/console/reviews?route=" (percent_encode(&r.route)) } { "Its review queue" }
                        a href="/console/monitoring" { "Monitoring" }
                    }
                }
            }
        }
    };
    page("Overview", Some(chrome), body)
}

// === records ===

/// A record as a list shows it.
pub(crate) struct RecordRow {
    pub(crate) id: String,
    pub(crate) time: String,
    pub(crate) route: String,
    pub(crate) review_state: String,
    pub(crate) consent: String,
    pub(crate) surrogate_version: Option<u64>,
    /// Unexplained because no surrogate was in service yet on its route.
    pub(crate) warm_up: bool,
    pub(crate) prediction: String,
}

impl RecordRow {
    pub(crate) fn from_json(r: &Json) -> Self {
        let text = |key: &str| {
            r.get(key)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            id: text("id"),
            time: text("time"),
            route: text("route"),
            review_state: text("review_state"),
            consent: text("consent"),
            surrogate_version: r.get("surrogate_version").and_then(Json::as_u64),
            warm_up: false,
            prediction: outputs_text(r.get("outputs")),
        }
    }
}

/// A record's outputs in a line: one number alone, else compact JSON.
pub(crate) fn outputs_text(outputs: Option<&Json>) -> String {
    match outputs {
        None | Some(Json::Null) => "—".to_owned(),
        Some(Json::Array(rows)) if rows.len() == 1 => match &rows[0] {
            Json::Array(values) if values.len() == 1 => values[0]
                .as_f64()
                .map_or_else(|| values[0].to_string(), |x| format!("{x:.4}")),
            other => short(&other.to_string(), 80),
        },
        Some(other) => short(&other.to_string(), 80),
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The records list's filters.
pub(crate) struct RecordFilters {
    pub(crate) route: String,
    pub(crate) review_state: String,
    pub(crate) since: String,
}

/// How far back the records list looks, by the filter's value.
pub(crate) const SINCE: [(&str, &str, Option<i64>); 4] = [
    ("1h", "the last hour", Some(3_600_000)),
    ("24h", "the last 24 hours", Some(86_400_000)),
    ("7d", "the last 7 days", Some(7 * 86_400_000)),
    ("all", "all time", None),
];

/// Review states a filter may ask for.
pub(crate) const REVIEW_STATES: [&str; 5] =
    ["pending", "confirmed", "overridden", "escalated", "none"];

fn record_link(id: &str) -> String {
    format!("/console/records/{}", percent_encode(id))
}

/// The records list (auditors): filters, a page of records, the link to the next page.
pub(crate) fn records(
    chrome: &Chrome<'_>,
    routes: &[String],
    filters: &RecordFilters,
    rows: &[RecordRow],
    next: Option<String>,
) -> String {
    let body = html! {
        form.filters method="get" action="/console/records" {
            label for="f-route" { "Route" }
            select #f-route name="route" {
                option value="" selected[filters.route.is_empty()] { "any" }
                @for r in routes {
                    option value=(r) selected[filters.route == *r] { (r) }
                }
            }
            label for="f-state" { "Review state" }
            select #f-state name="review_state" {
                option value="" selected[filters.review_state.is_empty()] { "any" }
                @for s in REVIEW_STATES {
                    option value=(s) selected[filters.review_state == s] { (s) }
                }
            }
            label for="f-since" { "Time" }
            select #f-since name="since" {
                @for (value, label, _) in SINCE {
                    option value=(value) selected[filters.since == value] { (label) }
                }
            }
            button type="submit" { "Show" }
        }
        @if rows.is_empty() {
            p { "No records match." }
        } @else {
            table.records {
                caption { "Records, oldest first" }
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Record" } th scope="col" { "Route" }
                    th scope="col" { "Prediction" } th scope="col" { "Surrogate" }
                    th scope="col" { "Consent" } th scope="col" { "Review" }
                } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.time) }
                            td { a href=(record_link(&r.id)) { code { (r.id) } } }
                            td { (r.route) }
                            td.num { (r.prediction) }
                            td { @if let Some(v) = r.surrogate_version { "v" (v) } @else if r.warm_up { "— (warm-up)" } @else { "—" } }
                            td { (r.consent) }
                            td { span class={ "state " (r.review_state) } { (r.review_state) } }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p.pager { a rel="next" href=(next) { "Next page" } }
        }
    };
    page("Records", Some(chrome), body)
}

// === one record ===

/// One explained row of a record.
pub(crate) struct ExplainedRow {
    pub(crate) space: String,
    pub(crate) base_value: f64,
    pub(crate) prediction: Option<f64>,
    pub(crate) surrogate_prediction: Option<f64>,
    pub(crate) local_error: Option<f64>,
    /// (feature, value as text, contribution), as stored.
    pub(crate) contributions: Vec<(String, String, f64)>,
    /// The texts written again for this page: the text, or why there is none.
    pub(crate) customer: Result<String, Withheld>,
    pub(crate) developer: Result<String, Withheld>,
    /// What the caller was shown, and for which audience.
    pub(crate) shown: Option<String>,
    pub(crate) shown_audience: Option<String>,
    /// The reason codes the caller was given: (code, statement), strongest first.
    pub(crate) reason_codes: Vec<(String, String)>,
    /// On a ranking route: the shown item's rank and id.
    pub(crate) item: Option<(u64, Option<String>)>,
}

/// Why `a` is ranked above `b`: per feature, both values and `a`'s contribution minus
/// `b`'s (an exact split of the difference of their surrogate outputs), largest first.
fn contrast_rows(a: &ExplainedRow, b: &ExplainedRow) -> Vec<(String, String, String, f64)> {
    let mut rows: Vec<(String, String, String, f64)> = a
        .contributions
        .iter()
        .filter_map(|(feature, value_a, ca)| {
            let (_, value_b, cb) = b.contributions.iter().find(|(f, _, _)| f == feature)?;
            Some((feature.clone(), value_a.clone(), value_b.clone(), ca - cb))
        })
        .collect();
    rows.sort_by(|x, y| y.3.abs().total_cmp(&x.3.abs()));
    rows
}

fn item_label(row: &ExplainedRow, i: usize) -> String {
    match &row.item {
        Some((rank, Some(id))) => format!("#{rank} ({id})"),
        Some((rank, None)) => format!("#{rank}"),
        None => format!("row {}", i + 1),
    }
}

/// Why a record page shows no text for an audience.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Withheld {
    #[error("the route is no longer configured")]
    RouteGone,
    #[error("the stored attributions are incomplete")]
    Incomplete,
    #[error("withheld, the surrogate fits this prediction too poorly")]
    LowFidelity,
    #[error("withheld ({0})")]
    Other(String),
    #[error("withheld")]
    Unstated,
}

/// Everything the record page shows.
pub(crate) struct RecordPage<'a> {
    pub(crate) record: &'a Json,
    /// Whether the viewer sees personal data masked (a reviewer).
    pub(crate) masked: bool,
    pub(crate) rows: Vec<ExplainedRow>,
    pub(crate) reviews: &'a [Review],
    pub(crate) feedback: &'a [Feedback],
    /// Whether to offer the what-if form (an auditor, on an explained record).
    pub(crate) whatif: bool,
}

fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text_or_withheld(id: &str, text: &Result<String, Withheld>) -> Markup {
    match text {
        Ok(text) => html! { p.explanation id=(id) { (text) } },
        Err(why) => html! { p.explanation.withheld id=(id) { "No text: " (why) "." } },
    }
}

/// A record: facts, each row's waterfall and texts, review history, reported outcomes,
/// and (when pending) the decision form.
pub(crate) fn record(chrome: &Chrome<'_>, view: &RecordPage<'_>) -> String {
    let r = view.record;
    let text = |key: &str| r.get(key).and_then(Json::as_str).unwrap_or_default();
    let id = text("id");
    let state = text("review_state");
    let reasons: Vec<String> = r
        .get("review_reasons")
        .and_then(Json::as_array)
        .map(|a| a.iter().map(json_text).collect())
        .unwrap_or_default();
    let body = html! {
        p { code.record-id { (id) } }
        @if view.masked {
            p.note { "Personal data is masked for your role (features marked " code { "pii" }
                " and the subject's field show •••; the subject key is left out)." }
        }
        dl.facts {
            dt { "Time" } dd { (text("time")) }
            dt { "Route" } dd { (text("route")) }
            @if !text("model").is_empty() { dt { "Model" } dd { (text("model")) } }
            dt { "Consent" } dd { (text("consent")) }
            @if !view.masked {
                dt { "Subject" } dd { @match r.get("subject").and_then(Json::as_str) {
                    Some(s) => code { (s) }, None => "—" } }
            }
            dt { "Surrogate version" } dd { @match r.get("surrogate_version").and_then(Json::as_u64) {
                Some(v) => { "v" (v) }, None => "— (not explained)" } }
            dt { "Prediction" } dd { (outputs_text(r.get("outputs"))) }
            dt { "Review state" } dd #review-state {
                span class={ "state " (state) } { (state) }
                @if !reasons.is_empty() { " (" (reasons.join(", ")) ")" }
            }
            @if let Some(at) = r.get("erased_at").and_then(Json::as_str) {
                dt { "Erased" } dd { (at) " (" (text("erased_reason")) ")" }
            }
        }
        @if view.rows.is_empty() && r.get("route").and_then(Json::as_str).is_some_and(|route| route.starts_with('_')) {
            section aria-labelledby="event" {
                h2 #event { "Event" }
                pre { (pretty(r.get("request"))) }
            }
        } @else if view.rows.is_empty() {
            p { "This record carries no attributions (not explained, consent " code { "none" } ", or erased)." }
        }
        @for (i, row) in view.rows.iter().enumerate() {
            section.explained aria-labelledby={ "row-" (i) } {
                h2 id={ "row-" (i) } {
                    @if row.item.is_some() { "Shown item " (item_label(row, i)) }
                    @else { "Explanation" @if view.rows.len() > 1 { " of row " (i + 1) } }
                }
                p {
                    @if let Some(p) = row.prediction { "The model answered " strong { (number(p, 4)) } }
                    @if let Some(s) = row.surrogate_prediction { "; the surrogate predicts " (number(s, 4)) }
                    @if let Some(e) = row.local_error { " (local error " (number(e, 4)) ")" }
                    "."
                }
                @let steps: Vec<Step> = row.contributions.iter().map(|(f, v, c)| Step {
                    label: format!("{f} = {v}"), contribution: *c }).collect();
                figure {
                    (chart::waterfall(&format!("waterfall-{i}"), row.base_value, &steps, &row.space))
                    figcaption { "How each feature moved the prediction from the base value, largest first"
                        @if row.space == "logit" { " (in log-odds: the model returns a probability)" } "." }
                }
                div.texts {
                    div.text {
                        h3 { "For the customer" }
                        (text_or_withheld(&format!("text-customer-{i}"), &row.customer))
                    }
                    div.text {
                        h3 { "For the developer" }
                        (text_or_withheld(&format!("text-developer-{i}"), &row.developer))
                    }
                }
                @if let Some(shown) = &row.shown {
                    h3 { "Shown to the caller"
                        @if let Some(a) = &row.shown_audience { " (" (a) ")" } }
                    p.explanation.shown { (shown) }
                }
                @if !row.reason_codes.is_empty() {
                    h3 { "Reason codes given" }
                    ol.reason-codes {
                        @for (code, statement) in &row.reason_codes {
                            li { code { (code) } " — " (statement) }
                        }
                    }
                }
                @if view.whatif && row.item.is_none() {
                    (super::workbench_page::whatif_form(chrome.csrf, id, i))
                }
                details {
                    summary { "All " (row.contributions.len()) " attributions" }
                    table {
                        thead { tr { th scope="col" { "Feature" } th scope="col" { "Value" } th scope="col" { "Contribution" } } }
                        tbody {
                            @for (f, v, c) in &row.contributions {
                                tr { td { (f) } td { (v) } td.num { (format!("{c:+.4}")) } }
                            }
                        }
                    }
                }
            }
        }
        @if view.rows.len() > 1 && view.rows.iter().all(|r| r.item.is_some()) {
            section aria-labelledby="contrasts" {
                h2 #contrasts { "Why one item above the next" }
                p { "Each shown item against the one ranked below it: per feature, the first item's contribution minus the second's. SHAP values add up and both share the base value, so the column sums to the difference of the two surrogate outputs. Customers ask for the same through "
                    code { "GET /v1/explanations/{ref}/compare?a=&b=" } "." }
                @for (k, pair) in view.rows.windows(2).enumerate() {
                    @let (a, b) = (&pair[0], &pair[1]);
                    table.contrast id={ "contrast-" (k) } {
                        caption { (item_label(a, k)) " above " (item_label(b, k + 1))
                            @if let (Some(pa), Some(pb)) = (a.surrogate_prediction, b.surrogate_prediction) {
                                ": surrogate " (number(pa, 4)) " against " (number(pb, 4)) } }
                        thead { tr { th scope="col" { "Feature" } th scope="col" { "Value above" } th scope="col" { "Value below" } th scope="col" { "Difference" } } }
                        tbody {
                            @for (feature, va, vb, d) in contrast_rows(a, b) {
                                tr { th scope="row" { (feature) } td { (va) } td { (vb) } td.num { (format!("{d:+.4}")) } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="history" {
            h2 #history { "Review history" }
            @if view.reviews.is_empty() {
                p { "No decisions yet." }
            } @else {
                table #review-history {
                    thead { tr {
                        th scope="col" { "Time" } th scope="col" { "Reviewer" } th scope="col" { "Decision" }
                        th scope="col" { "Outcome" } th scope="col" { "Reason" }
                    } }
                    tbody {
                        @for d in view.reviews {
                            tr {
                                td { (rfc3339_ms(d.time_ms)) }
                                td { (d.reviewer) }
                                td { (d.decision) }
                                td { @match &d.outcome { Some(o) => code { (o.to_string()) }, None => "—" } }
                                td { (d.reason) }
                            }
                        }
                    }
                }
            }
            h2 { "Reported outcomes" }
            @if view.feedback.is_empty() {
                p { "None reported (" code { "POST /v1/feedback" } " on the data port)." }
            } @else {
                table #feedback {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Outcome" } } }
                    tbody {
                        @for f in view.feedback {
                            tr { td { (rfc3339_ms(f.time_ms)) } td { code { (f.outcome.to_string()) } } }
                        }
                    }
                }
            }
        }
        @if chrome.principal.role >= Role::Reviewer && !id.is_empty() && !text("route").starts_with('_') {
            section aria-labelledby="decide" {
                h2 #decide { @if state == "pending" { "Decide" } @else { "Decide again" } }
                (decision_form(chrome.csrf, id, "record", 0))
            }
        }
        @if !view.masked {
            @if let Some(features) = r.get("features").filter(|f| !f.is_null()) {
                details {
                    summary { "Features as stored" }
                    pre { (pretty(Some(features))) }
                }
            }
            @if let Some(request) = r.get("request").filter(|f| !f.is_null()) {
                @if !text("route").starts_with('_') {
                    details {
                        summary { "Request and response payloads as stored" }
                        pre { (pretty(Some(request))) }
                        pre { (pretty(r.get("response"))) }
                    }
                }
            }
        }
    };
    page(&format!("Record {}", short(id, 40)), Some(chrome), body)
}

fn pretty(v: Option<&Json>) -> String {
    v.and_then(|v| serde_json::to_string_pretty(v).ok())
        .unwrap_or_default()
}

/// The form that decides about record `id`; `back` says where to return ("record" or
/// "queue"); `n` keeps the field ids of several forms on one page apart.
fn decision_form(csrf: &str, id: &str, back: &str, n: usize) -> Markup {
    html! {
        form.decide method="post" action={ "/console/reviews/" (percent_encode(id)) } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="return" value=(back);
            fieldset {
                legend { "Decision" }
                label { input type="radio" name="decision" value="confirm" checked; " Confirm" }
                label { input type="radio" name="decision" value="override"; " Override" }
                label { input type="radio" name="decision" value="escalate"; " Escalate" }
            }
            label for={ "outcome-" (n) } { "Corrected outcome "
                span.hint { "(for an override: a number, text or JSON)" } }
            input id={ "outcome-" (n) } type="text" name="outcome";
            label for={ "reason-" (n) } { "Reason " span.hint { "(always required)" } }
            textarea id={ "reason-" (n) } name="reason" rows="2" required {}
            button type="submit" { "Record decision" }
        }
    }
}

// === review queue ===

/// A pending record in the queue.
pub(crate) struct QueueItem {
    pub(crate) row: RecordRow,
    pub(crate) reasons: Vec<String>,
    /// The customer's contest, on the contested queue (its words opened).
    pub(crate) contest: Option<Review>,
}

/// Customers' contests of the last `days` days.
pub(crate) struct Contests {
    pub(crate) days: i64,
    pub(crate) tally: sidelight_audit::ContestTally,
    /// Whether every decision of the period was read (else the figures are a lower
    /// bound).
    pub(crate) complete: bool,
}

/// Which queue the review page shows: `pending` or `contested`, on one route or all.
pub(crate) struct QueueFilter<'a> {
    pub(crate) routes: &'a [String],
    pub(crate) route: &'a str,
    pub(crate) queue: &'a str,
}

/// The review queue: pending (or contested) records, each with its decision form;
/// recent decisions; the month's contests.
pub(crate) fn reviews(
    chrome: &Chrome<'_>,
    filter: &QueueFilter<'_>,
    items: &[QueueItem],
    next: Option<String>,
    decided: &[Review],
    contests: &Contests,
) -> String {
    let QueueFilter {
        routes,
        route,
        queue,
    } = *filter;
    let tally = &contests.tally;
    let body = html! {
        section aria-labelledby="contests" {
            h2 #contests { "Contested by customers, last " (contests.days) " days" }
            dl.facts #contest-counts {
                dt { "Contested" } dd { (tally.contested) }
                dt { "Decided" } dd { (tally.decided) }
                dt { "Overturned" } dd { (tally.overturned) }
                dt { "Waiting" } dd { (tally.open()) }
                dt { "Median time to decision" }
                dd { @match tally.median_hours_to_decision {
                    Some(h) if h < 48.0 => (format!("{h:.1} hours")),
                    Some(h) => (format!("{:.1} days", h / 24.0)),
                    None => "—",
                } }
            }
            @if !contests.complete {
                p { "Counted over the newest decisions the page reads at most; older ones in the period are not counted." }
            }
        }
        form.filters method="get" action="/console/reviews" {
            label for="q-state" { "Queue" }
            select #q-state name="state" {
                option value="pending" selected[queue == "pending"] { "pending (sent by the rules)" }
                option value="contested" selected[queue == "contested"] { "contested (by the customer)" }
                option value="escalated" selected[queue == "escalated"] { "escalated (by a reviewer)" }
            }
            label for="q-route" { "Route" }
            select #q-route name="route" {
                option value="" selected[route.is_empty()] { "any" }
                @for r in routes {
                    option value=(r) selected[route == r] { (r) }
                }
            }
            button type="submit" { "Show" }
        }
        @if items.is_empty() {
            p #queue-empty { @match queue {
                "contested" => "No contest is waiting for a decision.",
                "escalated" => "Nothing is escalated.",
                _ => "Nothing is waiting for review.",
            } }
        }
        @for (n, item) in items.iter().enumerate() {
            article.review-item aria-labelledby={ "item-" (n) } data-record=(item.row.id) {
                h2 id={ "item-" (n) } { a href=(record_link(&item.row.id)) { code { (item.row.id) } } }
                dl.facts {
                    dt { "Route" } dd { (item.row.route) }
                    dt { "Time" } dd { (item.row.time) }
                    dt { "Prediction" } dd { (item.row.prediction) }
                    @if let Some(contest) = &item.contest {
                        dt { "Contested" } dd { (rfc3339_ms(contest.time_ms)) }
                        dt { "The customer's reason" } dd.contest-reason { (contest.reason) }
                    } @else {
                        dt { "Why it is here" } dd { (item.reasons.join(", ")) }
                    }
                }
                (decision_form(chrome.csrf, &item.row.id, "queue", n))
            }
        }
        @if let Some(next) = next {
            p.pager { a rel="next" href=(next) { "Next page" } }
        }
        section aria-labelledby="decided" {
            h2 #decided { "Decided in the last 24 hours" }
            @if decided.is_empty() {
                p { "No decisions." }
            } @else {
                table #decisions {
                    thead { tr {
                        th scope="col" { "Time" } th scope="col" { "Record" } th scope="col" { "Reviewer" }
                        th scope="col" { "Decision" } th scope="col" { "Outcome" } th scope="col" { "Reason" }
                    } }
                    tbody {
                        @for d in decided {
                            tr {
                                td { (rfc3339_ms(d.time_ms)) }
                                td { a href=(record_link(&d.record_id)) { code { (d.record_id) } } }
                                td { (d.reviewer) }
                                td { (d.decision) }
                                td { @match &d.outcome { Some(o) => code { (o.to_string()) }, None => "—" } }
                                td { @if d.is_contest() { "the customer's reason, on the record's page" } @else { (d.reason) } }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Review queue", Some(chrome), body)
}

// === duties ===

/// One explained route's notice.
pub(crate) struct NoticeRow {
    pub(crate) route: String,
    pub(crate) languages: Vec<String>,
    pub(crate) reason_codes: usize,
    pub(crate) contest_days: Option<u64>,
}

/// The duties to the person: where each notice is, a subject's access, the evidence.
pub(crate) fn duties(chrome: &Chrome<'_>, notices: &[NoticeRow], audited: bool) -> String {
    let body = html! {
        section aria-labelledby="notices" {
            h2 #notices { "Transparency notices" }
            p { "Each explained route publishes its notice on the data port, for the business to link from its own site: HTML for people, " code { "?format=json" } " for programs, " code { "?lang=" } " or Accept-Language for the language." }
            @if notices.is_empty() {
                p { "No route explains its decisions, so there is no notice." }
            } @else {
                table #notice-routes {
                    thead { tr { th scope="col" { "Route" } th scope="col" { "Notice (data port)" } th scope="col" { "Languages" } th scope="col" { "Reason codes" } th scope="col" { "Contest within" } } }
                    tbody {
                        @for n in notices {
                            tr {
                                td { (n.route) }
                                td { code { "/v1/notice/" (n.route) } }
                                td { (n.languages.join(", ")) }
                                td.num { (n.reason_codes) }
                                td { @match n.contest_days { Some(d) => (format!("{d} days")), None => "not offered" } }
                            }
                        }
                    }
                }
            }
        }
        @if audited {
            section aria-labelledby="access" {
                h2 #access { "A subject's access to their decisions" }
                p { "Every decision about one person, with its explanation in their words, the reasons given, reviews, contests and reported outcomes; erased records say only that they were erased. The identifier is the one the business sends (" code { "x-sidelight-subject" } "); it is pseudonymised here and never recorded." }
                form.filters #access-form method="post" action="/console/duties/access" {
                    input type="hidden" name="csrf" value=(chrome.csrf);
                    label for="subject-id" { "Subject identifier" }
                    input #subject-id type="text" name="subject_id" required autocomplete="off";
                    label for="access-language" { "Language" }
                    input #access-language type="text" name="language" value="en" size="5";
                    button type="submit" { "Show the printable page" }
                }
            }
            section aria-labelledby="evidence" {
                h2 #evidence { "Evidence pack for a regulator" }
                p { "One tar archive: the audit report (HTML and JSON), the verification of the whole log, the config without its secrets and its digests, the surrogate versions with their fidelity, each route's notice in each language, and a manifest signed with the audit key. Check it offline with " code { "sidelight evidence verify evidence.tar --key-file audit.key" } "." }
                form.filters #evidence-form method="get" action="/console/duties/evidence" {
                    label for="evidence-from" { "From (date)" }
                    input #evidence-from type="date" name="from";
                    label for="evidence-to" { "To (date, excluded)" }
                    input #evidence-to type="date" name="to";
                    button type="submit" { "Download the evidence pack" }
                }
                p { "Empty dates: the last 30 days." }
            }
        } @else {
            p { "No [audit] log is configured: there are no records to give and no evidence to pack." }
        }
    };
    page("Duties to the person", Some(chrome), body)
}

// === monitoring ===

/// One route on the monitoring page.
pub(crate) struct RouteFidelity {
    pub(crate) route: String,
    pub(crate) history: Vec<Version>,
}

/// Monitoring: fidelity over time per route, the flagged groups, and what is not
/// monitored yet.
pub(crate) fn monitoring(
    chrome: &Chrome<'_>,
    routes: &[RouteFidelity],
    flagged: &[sidelight_core::reviews::Flag],
    monitors: &[(
        String,
        Option<std::sync::Arc<crate::monitor::MonitorReport>>,
    )],
    cohort_features: &[(String, Vec<String>)],
) -> String {
    let unmonitored: Vec<&str> = routes
        .iter()
        .map(|r| r.route.as_str())
        .filter(|r| !monitors.iter().any(|(m, _)| m == r))
        .collect();
    let body = html! {
        section aria-labelledby="fidelity" {
            h2 #fidelity { "Surrogate fidelity" }
            p { "Each version of a route's surrogate is measured on held-out traffic before it "
                "may explain anything; versions below the gate are kept out of service." }
            @if routes.is_empty() { p { "No route has live explanations." } }
            @for (i, r) in routes.iter().enumerate() {
                h3 { "Route " code { (r.route) } }
                @let points: Vec<FidelityPoint> = r.history.iter().map(Version::point).collect();
                @match chart::fidelity(&format!("monitor-{i}"), &r.route, &points) {
                    Some(svg) => (svg),
                    None => p { "No trained version yet." },
                }
                @if !r.history.is_empty() {
                    table.versions {
                        caption { "Versions of " (r.route) }
                        thead { tr {
                            th scope="col" { "Version" } th scope="col" { "Trained (UTC)" } th scope="col" { "Rows" }
                            th scope="col" { "R²" } th scope="col" { "MAE" } th scope="col" { "In service" }
                            th scope="col" { "Why" }
                        } }
                        tbody {
                            @for v in &r.history {
                                tr {
                                    td { (v.version) }
                                    td { @if v.trained_at > 0 { (chart::short_time(v.trained_at)) } @else { "—" } }
                                    td.num { (v.rows) }
                                    td.num { (number(v.r2, 3)) }
                                    td.num { (number(v.mae, 4)) }
                                    td { @if v.accepted { "yes" } @else { "no" } }
                                    td { (v.reason) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="flags" {
            h2 #flags { "Flagged protected groups" }
            @if flagged.is_empty() {
                p { "No protected group is flagged. Predictions about a flagged group go to review "
                    "on routes with " code { "flagged_groups = true" } "." }
            } @else {
                ul #flagged {
                    @for flag in flagged {
                        li { code { (flag.feature) } " = " code { (flag.value) } ", "
                            @match &flag.route {
                                Some(route) => { "on route " code { (route) } }
                                None => "on every route",
                            }
                        }
                    }
                }
            }
            p.hint { "Admins set them with " code { "PUT /api/v1/review-flags" } "." }
        }
        section aria-labelledby="fairness" {
            h2 #fairness { "Fairness and drift" }
            @for (route, report) in monitors {
                h3 { "Route " code { (route) } }
                @match report {
                    None => p { "Not computed yet: the monitor counts explained predictions only." },
                    Some(r) => (monitor_report(route, r, cohort_features
                        .iter()
                        .find(|(name, _)| name == route)
                        .map_or(&[][..], |(_, features)| features.as_slice()))),
                }
            }
            @if !unmonitored.is_empty() {
                p #not-monitored { "Fairness and drift monitors are not configured for "
                    @for (i, r) in unmonitored.iter().enumerate() {
                        @if i > 0 { ", " } code { (r) }
                    }
                    ": there are no fairness or drift measurements for them, so none are shown. "
                    "Add a " code { "[routes.monitor]" } " table to the route to monitor it." }
            }
        }
    };
    page("Monitoring", Some(chrome), body)
}

fn verdict_text(v: sidelight_monitor::Verdict) -> &'static str {
    match v {
        sidelight_monitor::Verdict::Pass => "pass",
        sidelight_monitor::Verdict::InsufficientData => "insufficient data",
        sidelight_monitor::Verdict::Inconclusive => "inconclusive",
        sidelight_monitor::Verdict::Fail => "fail",
    }
}

fn optional(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "—".to_owned(), |x| number(x, decimals))
}

/// One monitored route's latest fairness and drift figures.
/// `cohort_features`: the route's features a workbench cohort may be drawn on (not
/// personal): their groups link to the cohort's comparison with everyone else.
fn monitor_report(
    route: &str,
    r: &crate::monitor::MonitorReport,
    cohort_features: &[String],
) -> Markup {
    html! {
        p { "Computed " (chart::short_time(u64::try_from(r.computed_at / 1000).unwrap_or(0))) " UTC over the last " (r.window_rows)
            " explained predictions; drift against "
            @if r.reference == "training_window" { "the surrogate's " (r.reference_rows) " training rows." }
            @else { "the first " (r.reference_rows) " seen." } }
        @if let Some(fleet) = &r.fleet {
            p { "The fleet's figures: " (fleet.replicas) " replicas' windows together"
                @if fleet.left_out > 0 { " (" (fleet.left_out) " left out: another schema or other protected groups)" }
                @if fleet.shared_reference { "; drift against the fleet's reference, " (fleet.drift_replicas) " replicas' counts together" }
                @else { "; drift against this replica's own reference until it takes the fleet's" }
                "; possible proxies and fidelity are this replica's. "
                @if fleet.sends_alerts { "This replica sends the route's fleet-wide alerts." }
                @else { "Another replica sends the route's fleet-wide alerts; fidelity alerts come from each replica." } }
        }
        @for e in &r.errors { p.hint { (e) } }
        @for f in &r.fairness {
            table.fairness {
                caption { "Fairness by " (f.attribute) " on " (route) " (verdict: " (verdict_text(f.comparisons.iter().map(crate::monitor::worst).fold(sidelight_monitor::Verdict::Pass, sidelight_monitor::Verdict::worst))) ")" }
                thead { tr {
                    th scope="col" { "Group" } th scope="col" { "Rows" } th scope="col" { "Favourable" }
                    th scope="col" { "Selection rate" } th scope="col" { "Interval" }
                    th scope="col" { "Disparate impact" } th scope="col" { "Parity difference" }
                    th scope="col" { "Verdict" }
                } }
                tbody {
                    @for g in &f.groups {
                        @let c = f.comparisons.iter().find(|c| c.unprivileged == g.group);
                        tr {
                            th scope="row" {
                                @if cohort_features.contains(&f.attribute) {
                                    a href=(super::workbench_page::cohort_link(route, &super::workbench_page::group_condition(&f.attribute, &g.group)))
                                        title="Why this group's predictions differ from everyone else's, feature by feature" { (g.group) }
                                } @else { (g.group) }
                                @if g.privileged { " (privileged)" }
                            }
                            td.num { (g.count) }
                            td.num { (g.selection.successes) }
                            td.num { (optional(g.selection.rate, 3)) }
                            td.num { @match g.selection.interval {
                                Some(i) => { (number(i.lower, 3)) " – " (number(i.upper, 3)) },
                                None => "—",
                            } }
                            td.num { (optional(c.and_then(|c| c.disparate_impact).map(|e| e.value), 3)) }
                            td.num { (optional(c.and_then(|c| c.statistical_parity_difference).map(|e| e.value), 3)) }
                            td { @match c {
                                Some(c) => (verdict_text(crate::monitor::worst(c))),
                                None => "reference",
                            } }
                        }
                    }
                }
            }
        }
        @for x in &r.exposure {
            table.exposure {
                caption { "Exposure by " (x.attribute) " on " (route) ": share of the shown slots per group of items (" (x.item_feature) "), " (x.rankings) " rankings (verdict: " (verdict_text(x.check.verdict)) ")" }
                thead { tr {
                    th scope="col" { "Customers" } th scope="col" { "Items" } th scope="col" { "Slots" }
                    th scope="col" { "Share" } th scope="col" { "Interval" }
                    th scope="col" { "Difference from privileged" } th scope="col" { "Verdict" }
                } }
                tbody {
                    @for g in &x.check.groups {
                        @for share in &g.shares {
                            @let c = x.check.comparisons.iter().find(|c| c.unprivileged == g.customer_group && c.item_group == share.item_group);
                            tr {
                                th scope="row" { (g.customer_group) }
                                td { (share.item_group) }
                                td.num { (share.slots) " of " (g.slots) }
                                td.num { (number(share.share, 3)) }
                                td.num { @match share.interval {
                                    Some(i) => { (number(i.lower, 3)) " – " (number(i.upper, 3)) },
                                    None => "—",
                                } }
                                td.num { (optional(c.and_then(|c| c.difference).map(|e| e.value), 3)) }
                                td { @match c {
                                    Some(c) => (verdict_text(c.verdict)),
                                    None => "reference",
                                } }
                            }
                        }
                    }
                }
            }
        }
        @if r.drift.is_empty() {
            p { "Drift is measured once the reference is complete." }
        } @else {
            table.drift {
                caption { "Drift per feature on " (route) }
                thead { tr {
                    th scope="col" { "Feature" } th scope="col" { "Kind" } th scope="col" { "PSI" }
                    th scope="col" { "KS / χ² statistic" } th scope="col" { "p-value" }
                } }
                tbody {
                    @for d in &r.drift {
                        @let (kind, stat, p) = match &d.drift {
                            sidelight_monitor::Drift::Numeric(n) => ("numeric", n.ks.map(|k| k.statistic), n.ks.map(|k| k.p_value)),
                            sidelight_monitor::Drift::Categorical(c) => ("categorical", c.chi_square.map(|k| k.statistic), c.chi_square.map(|k| k.p_value)),
                        };
                        tr {
                            th scope="row" { (d.feature) }
                            td { (kind) }
                            td.num { (optional(d.drift.psi(), 3)) }
                            td.num { (optional(stat, 3)) }
                            td.num { (optional(p, 4)) }
                        }
                    }
                    @if let Some(p) = &r.prediction_drift {
                        tr {
                            th scope="row" { "model output" }
                            td { "prediction" }
                            td.num { (optional(p.psi, 3)) }
                            td.num { (optional(p.ks.map(|k| k.statistic), 3)) }
                            td.num { (optional(p.ks.map(|k| k.p_value), 4)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::{MonitorConfig, ProtectedConfig};
    use crate::monitor::{Observation, RouteMonitor};
    use sidelight_explain::Value;

    #[test]
    fn a_monitor_report_shows_groups_rates_verdicts_and_drift() {
        let monitor = RouteMonitor::new(
            "m",
            MonitorConfig {
                window_rows: 100,
                protected: vec![ProtectedConfig {
                    feature: "colour".to_owned(),
                    privileged: "red".to_owned(),
                    unprivileged: vec!["blue".to_owned()],
                    bands: Vec::new(),
                    header: None,
                    reported: false,
                }],
                ..MonitorConfig::default()
            },
        );
        let names = vec!["a".to_owned(), "colour".to_owned()];
        monitor.push(
            &names,
            (0..100).map(|i| Observation {
                row: std::sync::Arc::from(vec![
                    Value::Number(f64::from(i)),
                    Value::Text(if i % 2 == 0 { "red" } else { "blue" }.to_owned()),
                ]),
                prediction: f64::from(i % 4),
                favourable: i % 2 == 0 || i % 10 == 1,
                ..Observation::default()
            }),
        );
        sidelight_tasks::monitor::MonitorJob::new(monitor.clone(), None, None)
            .compute(1_700_000_000_000);
        let report = monitor.latest.load_full().unwrap();
        let text = monitor_report("m", &report, &["colour".to_owned()]).into_string();
        for needle in [
            "Fairness by colour on m (verdict: fail)",
            "</a> (privileged)",
            "/console/workbench?route=m&amp;a=colour%3Dred",
            "blue",
            "0.200",
            "fail",
            "Drift per feature on m",
            "categorical",
            "model output",
        ] {
            assert!(text.contains(needle), "no {needle:?} in {text}");
        }
        assert!(!text.contains("The fleet's figures"), "{text}");
        // In a fleet the page says whose figures these are, and who sends alerts.
        let mut fleet = (*report).clone();
        fleet.fleet = Some(crate::monitor::FleetView {
            replicas: 3,
            left_out: 1,
            sends_alerts: false,
            drift_replicas: 2,
            shared_reference: true,
        });
        let text = monitor_report("m", &fleet, &[]).into_string();
        for needle in [
            "The fleet's figures: 3 replicas' windows together (1 left out",
            "drift against the fleet's reference, 2 replicas' counts together",
            "Another replica sends the route's fleet-wide alerts;",
        ] {
            assert!(text.contains(needle), "no {needle:?} in {text}");
        }
    }
}
