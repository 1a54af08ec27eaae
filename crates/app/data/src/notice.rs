//! The transparency notice of a route: what a person decided about by its model may
//! read, in their language, before or after the decision (`GET /v1/notice/{route}` on
//! the data port, as HTML or JSON; also in the evidence pack).
//!
//! Everything in it comes from the config and from what the proxy knows live (the
//! latest fairness check); the wording is the narration's (`notice-…` messages, and a
//! route's own `custom-notice-<route>-title` and `-purpose`). It names only what a
//! customer may see: features marked `customer_visible`, groups, and protected
//! attributes as information that explanations never use.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::StatusCode;

use maud::{DOCTYPE, Markup, html};
use serde::Serialize;
use sidelight_audit::Consent;
use sidelight_narrate::{Arg, Locale, Narrator, notice_message_id};

use crate::body::{ProxyBody, full, json_response};
use crate::config::{AuditConfig, ExplainConfig, MonitorConfig, PrivacyConfig, ReviewConfig};
use crate::error::json_error;
use crate::live::RouteLive;

/// Where a route's notice is served on the data port.
pub const NOTICE_PATH: &str = "/v1/notice/";

/// What the audit log does with records, for the notice's "what we keep".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptRecords {
    /// Days before records are erased (`audit.retention`); `None`: until erased.
    pub retention_days: Option<u64>,
    /// Whether payloads are encrypted at rest.
    pub encrypted: bool,
}

impl KeptRecords {
    /// From `[audit]`; `None` without an audit log.
    pub fn from_config(audit: Option<&AuditConfig>) -> Option<Self> {
        audit.map(|a| Self {
            retention_days: a.retention.map(|r| r.as_secs().div_ceil(86_400)),
            encrypted: a.encrypt,
        })
    }
}

/// The latest fairness check, as far as the notice tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FairnessFinding {
    /// No protected group is treated less favourably with confidence.
    NoDisparity,
    /// A group is, with confidence (a failing rule).
    Disparity,
}

/// What a notice is made from.
pub struct NoticeInput<'a> {
    pub route: &'a str,
    pub explain: &'a ExplainConfig,
    pub privacy: &'a PrivacyConfig,
    pub review: &'a ReviewConfig,
    pub monitor: Option<&'a MonitorConfig>,
    pub records: Option<KeptRecords>,
    /// The latest fairness check: when (unix ms) and what it found.
    pub fairness: Option<(i64, FairnessFinding)>,
    pub narrator: &'a Narrator,
    pub locale: &'a Locale,
    /// Now, unix ms.
    pub now_ms: i64,
}

/// One part of the notice: a heading, its sentences, and a list.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub id: &'static str,
    pub heading: String,
    pub paragraphs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// A sentence after the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// The facts behind the words, for a program or an auditor.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// What the customer-visible features and groups are called, in the notice's
    /// language.
    pub information_used: Vec<String>,
    /// Features the model is given that are not named to customers.
    pub other_details: usize,
    /// Protected attributes, by their names in the notice's language.
    pub protected: Vec<String>,
    pub fairness_monitored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_fairness_check: Option<FairnessCheck>,
    pub reason_codes: Vec<ReasonStatement>,
    pub records_kept: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u64>,
    pub encrypted: bool,
    /// Fields the audit log keeps only reduced, pseudonymised or not at all.
    pub minimised_fields: usize,
    pub consent_default: Consent,
    pub human_review_rules: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contest_within_days: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FairnessCheck {
    pub at: String,
    pub finding: FairnessFinding,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonStatement {
    pub code: String,
    pub statement: String,
}

/// A route's notice in one language.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub route: String,
    pub language: String,
    /// Every language the notice can be read in.
    pub languages: Vec<String>,
    pub title: String,
    pub purpose: String,
    pub sections: Vec<Section>,
    pub facts: Facts,
    pub generated: String,
    pub generated_at: String,
}

/// The day of `ms` as `YYYY-MM-DD`.
fn day(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .take(10)
        .collect()
}

/// Whole days in `d`, rounded down: a window of 36 hours is told as one day, never as
/// more than it is.
fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

impl Notice {
    pub fn build(input: &NoticeInput<'_>) -> Self {
        let NoticeInput {
            route,
            explain,
            privacy,
            review,
            monitor,
            records,
            fairness,
            narrator,
            locale,
            now_ms,
        } = input;
        let t = |id: &str| narrator.text(id, &[], locale);
        let t_args = |id: &str, args: &[(&str, Arg<'_>)]| narrator.text(id, args, locale);
        let title = narrator
            .own_text(&notice_message_id(route, "title"), locale)
            .unwrap_or_else(|| t("notice-default-title"));
        let purpose = narrator
            .own_text(&notice_message_id(route, "purpose"), locale)
            .unwrap_or_else(|| t("notice-default-purpose"));

        // What the model is given: customer-visible features by their names (a group's
        // members by the group's name, once), the others counted.
        let mut information_used: Vec<String> = Vec::new();
        let mut other_details = 0usize;
        for feature in explain.features.iter().filter(|f| !f.protected) {
            if !feature.customer_visible {
                other_details += 1;
                continue;
            }
            let name = match explain
                .groups
                .iter()
                .find(|g| g.features.contains(&feature.name))
            {
                Some(group) => narrator.feature_name(&group.name, None, locale),
                None => {
                    narrator.feature_name(&feature.name, feature.display_name.as_deref(), locale)
                }
            };
            if !information_used.contains(&name) {
                information_used.push(name);
            }
        }
        let mut uses = Section {
            id: "uses",
            heading: t("notice-uses-heading"),
            paragraphs: vec![t("notice-uses")],
            items: information_used.clone(),
            after: None,
        };
        if other_details > 0 {
            uses.after = Some(t_args(
                "notice-uses-hidden",
                &[("count", Arg::Number(other_details as f64))],
            ));
        }
        let mut sections = vec![uses];

        // Protected attributes: features marked so, and attributes the monitor reads
        // from elsewhere (a header, a later report).
        let mut protected: Vec<String> = Vec::new();
        let explained_protected = explain
            .features
            .iter()
            .filter(|f| f.protected)
            .map(|f| (f.name.as_str(), f.display_name.as_deref()));
        let monitored: Vec<&str> = monitor
            .iter()
            .flat_map(|m| m.protected.iter().map(|p| p.feature.as_str()))
            .collect();
        let others = monitored
            .iter()
            .filter(|m| !explain.features.iter().any(|f| f.name == **m))
            .map(|m| (*m, None));
        for (name, display) in explained_protected.chain(others) {
            let name = narrator.feature_name(name, display, locale);
            if !protected.contains(&name) {
                protected.push(name);
            }
        }
        let fairness_monitored = !monitored.is_empty();
        let latest_fairness_check = fairness.map(|(at, finding)| FairnessCheck {
            at: day(at),
            finding,
        });
        if !protected.is_empty() {
            let mut paragraphs = Vec::new();
            if explain.features.iter().any(|f| f.protected) {
                paragraphs.push(t("notice-protected-given"));
            }
            if fairness_monitored {
                paragraphs.push(t("notice-fairness-monitored"));
                paragraphs.push(match &latest_fairness_check {
                    Some(check) => {
                        let date = [("date", Arg::Text(&check.at))];
                        match check.finding {
                            FairnessFinding::NoDisparity => t_args("notice-fairness-fair", &date),
                            // That a person checks such decisions is said only where a
                            // review rule makes it so.
                            FairnessFinding::Disparity if review.flagged_groups => format!(
                                "{} {}",
                                t_args("notice-fairness-disparity", &date),
                                t("notice-fairness-reviewed")
                            ),
                            FairnessFinding::Disparity => {
                                t_args("notice-fairness-disparity", &date)
                            }
                        }
                    }
                    None => t("notice-fairness-none"),
                });
            } else {
                paragraphs.push(t("notice-fairness-unmonitored"));
            }
            sections.push(Section {
                id: "protected",
                heading: t("notice-protected-heading"),
                paragraphs: vec![t("notice-protected")],
                items: protected.clone(),
                after: Some(paragraphs.join(" ")),
            });
        }

        // How decisions are explained, and the reason codes a declined one may get.
        let reason_codes: Vec<ReasonStatement> = explain
            .reasons
            .iter()
            .map(|r| ReasonStatement {
                code: r.code.clone(),
                statement: narrator
                    .reason_statement(&r.code, locale)
                    .or_else(|| r.statement.clone())
                    .unwrap_or_else(|| r.code.clone()),
            })
            .collect();
        let mut reasons = Section {
            id: "reasons",
            heading: t("notice-reasons-heading"),
            paragraphs: vec![t("notice-explanations")],
            items: Vec::new(),
            after: None,
        };
        if !reason_codes.is_empty() {
            reasons.paragraphs.push(t("notice-reasons"));
            reasons.items = reason_codes
                .iter()
                .map(|r| format!("{} ({})", r.statement, r.code))
                .collect();
        }
        sections.push(reasons);

        // What is kept, and for how long.
        let minimised_fields = privacy
            .fields
            .values()
            .filter(|rule| rule.as_str() != "keep")
            .count()
            + explain
                .features
                .iter()
                .filter(|f| f.pii && !privacy.fields.contains_key(&f.name))
                .count();
        let record_paragraphs = match records {
            None => vec![t("notice-record-none")],
            Some(kept) => {
                let mut p = vec![match kept.retention_days {
                    Some(d) => t_args("notice-record-kept", &[("days", Arg::Number(d as f64))]),
                    None => t("notice-record-kept-until-erased"),
                }];
                if minimised_fields > 0 {
                    p.push(t_args(
                        "notice-record-minimised",
                        &[("count", Arg::Number(minimised_fields as f64))],
                    ));
                }
                if kept.encrypted {
                    p.push(t("notice-record-encrypted"));
                }
                p
            }
        };
        sections.push(Section {
            id: "records",
            heading: t("notice-record-heading"),
            paragraphs: record_paragraphs,
            items: Vec::new(),
            after: None,
        });

        // The person's choices: consent, erasure, access.
        let mut choices = vec![match privacy.consent_default {
            Consent::Full => t("notice-consent-default-granted"),
            Consent::ExplainOnly | Consent::None => t("notice-consent-default-denied"),
        }];
        choices.push(t("notice-consent-how"));
        if records.is_some() {
            choices.push(t("notice-access"));
        }
        sections.push(Section {
            id: "choices",
            heading: t("notice-choices-heading"),
            paragraphs: choices,
            items: Vec::new(),
            after: None,
        });

        // A person's review, and contesting.
        let contest_within_days = review.contest_within.map(days);
        let mut oversight = Vec::new();
        if review.any() {
            oversight.push(t("notice-review-rules"));
        }
        oversight.push(match contest_within_days {
            Some(d) => t_args("notice-contest", &[("days", Arg::Number(d as f64))]),
            None => t("notice-contest-offline"),
        });
        sections.push(Section {
            id: "review",
            heading: t("notice-review-heading"),
            paragraphs: oversight,
            items: Vec::new(),
            after: None,
        });

        let generated_day = day(*now_ms);
        Notice {
            route: (*route).to_owned(),
            language: locale.to_string(),
            languages: narrator.locales(),
            title,
            purpose,
            sections,
            facts: Facts {
                information_used,
                other_details,
                protected,
                fairness_monitored,
                latest_fairness_check,
                reason_codes,
                records_kept: records.is_some(),
                retention_days: records.and_then(|r| r.retention_days),
                encrypted: records.is_some_and(|r| r.encrypted),
                minimised_fields,
                consent_default: privacy.consent_default,
                human_review_rules: review.any(),
                contest_within_days,
            },
            generated: t_args("notice-generated", &[("date", Arg::Text(&generated_day))]),
            generated_at: humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_millis(u64::try_from(*now_ms).unwrap_or(0)),
            )
            .to_string(),
        }
    }

    /// A page of its own, readable without scripts or styles from elsewhere, with
    /// links to the other languages.
    pub fn html(&self) -> String {
        let page: Markup = html! {
            (DOCTYPE)
            html lang=(self.language) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) }
                    style { (STYLE) }
                }
                body {
                    main {
                        h1 { (self.title) }
                        p.purpose { (self.purpose) }
                        @for section in &self.sections {
                            section id=(section.id) {
                                h2 { (section.heading) }
                                @for p in &section.paragraphs { p { (p) } }
                                @if !section.items.is_empty() {
                                    ul { @for item in &section.items { li { (item) } } }
                                }
                                @if let Some(after) = &section.after { p { (after) } }
                            }
                        }
                        footer {
                            p { (self.generated) }
                            @if self.languages.len() > 1 {
                                nav aria-label="Languages" {
                                    @for (i, language) in self.languages.iter().enumerate() {
                                        @if i > 0 { " · " }
                                        @if *language == self.language {
                                            strong { (language) }
                                        } @else {
                                            a href={ "?lang=" (language) } hreflang=(language) { (language) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
        page.into_string()
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;line-height:1.5;margin:0;color:#1b1b1b}\
main{max-width:42rem;margin:2rem auto;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:1.8rem}\
.purpose{font-size:1.05rem}footer{margin-top:2.5rem;color:#555;font-size:.9rem}";

/// What the notice endpoint reaches.
pub struct NoticeDesk {
    pub routes: Arc<[Arc<RouteLive>]>,
    pub records: Option<KeptRecords>,
}

impl NoticeDesk {
    /// A route's notice for one of its customers (`GET /v1/notice/{route}`): HTML
    /// unless `?format=json` or an `Accept` that prefers JSON; the language from
    /// `?lang=` or `Accept-Language`.
    pub fn answer(
        &self,
        route: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        now_ms: i64,
    ) -> http::Response<ProxyBody> {
        let mut format = None;
        let mut lang = None;
        for (key, value) in form_urlencoded_pairs(query.unwrap_or_default()) {
            match key.as_str() {
                "format" => format = Some(value),
                "lang" => lang = Some(value),
                _ => {}
            }
        }
        let json = match format.as_deref() {
            Some("json") => true,
            Some("html") | None => format.is_none() && prefers_json(headers),
            Some(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    "`format` must be html or json",
                );
            }
        };
        let Some(live) = self.routes.iter().find(|l| l.route == route) else {
            return json_error(
                StatusCode::NOT_FOUND,
                "notice_not_found",
                "no route of this name explains its decisions, so it has no notice",
            );
        };
        let accept_language = headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        let locale = live.narrator.negotiate(lang.as_deref().or(accept_language));
        let fairness = live.monitor.as_ref().and_then(|m| {
            let latest = m.latest.load_full()?;
            (!latest.fairness.is_empty()).then(|| {
                let disparity = latest
                    .fairness
                    .iter()
                    .any(|f| f.verdict == sidelight_monitor::Verdict::Fail);
                let finding = if disparity {
                    FairnessFinding::Disparity
                } else {
                    FairnessFinding::NoDisparity
                };
                (latest.computed_at, finding)
            })
        });
        let notice = Notice::build(&NoticeInput {
            route,
            explain: &live.config,
            privacy: &live.privacy,
            review: &live.review,
            monitor: live.monitor.as_ref().map(|m| &m.config),
            records: self.records,
            fairness,
            narrator: &live.narrator,
            locale: &locale,
            now_ms,
        });
        let mut response = if json {
            json_response(
                StatusCode::OK,
                &serde_json::to_value(&notice).unwrap_or_default(),
            )
        } else {
            let mut r = http::Response::new(full(bytes::Bytes::from(notice.html())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        };
        let headers = response.headers_mut();
        if let Ok(value) = http::HeaderValue::from_str(&notice.language) {
            headers.insert(http::header::CONTENT_LANGUAGE, value);
        }
        headers.insert(
            http::header::VARY,
            http::HeaderValue::from_static("accept, accept-language"),
        );
        response
    }
}

/// Whether `Accept` asks for JSON rather than a page.
fn prefers_json(headers: &http::HeaderMap) -> bool {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// `key=value` pairs of a query string, percent-decoded.
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    sidelight_core::query::query_pairs(Some(query)).unwrap_or_default()
}
