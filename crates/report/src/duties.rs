//! Section 9: the duty map. Each duty a deployment of this kind answers to, the
//! articles it answers, and what this deployment does about it — from its live config
//! and the period's records. A duty the config does not take up says so.

use serde::Serialize;
use sidelight_audit::ContestTally;
use sidelight_config::Config;

/// Whether the deployment takes a duty up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DutyStatus {
    /// Configured on every route it concerns.
    InPlace,
    /// Configured on some routes only.
    Partial,
    /// Not configured: Sidelight does nothing about it here.
    NotConfigured,
}

impl DutyStatus {
    pub fn label(self) -> &'static str {
        match self {
            DutyStatus::InPlace => "in place",
            DutyStatus::Partial => "partly in place",
            DutyStatus::NotConfigured => "not configured",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Duty {
    pub duty: &'static str,
    /// The articles it answers.
    pub answers: &'static str,
    pub status: DutyStatus,
    /// What this deployment does, in a sentence or two with the period's figures.
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DutySection {
    pub duties: Vec<Duty>,
}

/// The period's figures the duty map quotes.
pub(crate) struct DutyFigures<'a> {
    pub records: u64,
    pub verified: Option<bool>,
    pub flagged: u64,
    pub decided: u64,
    pub pending_at_end: u64,
    pub contests: &'a ContestTally,
    pub access_requests: u64,
    pub erasure_actions: usize,
    pub erased_records: u64,
    pub consent_withheld: u64,
    pub fairness_failing: usize,
}

fn status(with: usize, of: usize) -> DutyStatus {
    match (with, of) {
        (0, _) => DutyStatus::NotConfigured,
        (w, o) if w >= o => DutyStatus::InPlace,
        _ => DutyStatus::Partial,
    }
}

/// A duty the deployment takes up as a whole, or not at all.
fn configured(on: bool) -> DutyStatus {
    if on {
        DutyStatus::InPlace
    } else {
        DutyStatus::NotConfigured
    }
}

fn names<'a>(routes: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = routes.collect();
    if all.is_empty() {
        "none".to_owned()
    } else {
        all.join(", ")
    }
}

pub(crate) fn duties(config: &Config, f: &DutyFigures<'_>) -> DutySection {
    let explained: Vec<_> = config
        .routes
        .iter()
        .filter(|r| r.explain.is_some())
        .collect();
    let audit = config.audit.as_ref();
    let mut duties = Vec::new();

    duties.push(Duty {
        duty: "Logging of every decision",
        answers: "EU AI Act Art. 12, 19; GDPR Art. 5(2), 30",
        status: configured(audit.is_some()),
        what: match audit {
            Some(a) => format!(
                "Every explained prediction is recorded in a hash-chained audit log ({}{}); {} in the period; verification: {}.",
                if a.encrypt { "encrypted at rest" } else { "not encrypted at rest" },
                if a.witness.is_some() { ", its head published to a witness" } else { "" },
                f.records,
                match f.verified {
                    Some(true) => "intact",
                    Some(false) => "NOT intact (section 8)",
                    None => "not run",
                }
            ),
            None => "No [audit] log is configured: decisions are not recorded.".to_owned(),
        },
    });

    let with_notice = explained.len();
    duties.push(Duty {
        duty: "Transparency to the person",
        answers: "EU AI Act Art. 13, 50, 86; GDPR Art. 13, 14",
        status: status(with_notice, config.routes.len()),
        what: if with_notice == 0 {
            "No route explains its decisions, so no notice or explanation is given.".to_owned()
        } else {
            format!(
                "A notice per explained route at GET /v1/notice/{{route}} (routes: {}), and an explanation with each prediction.",
                names(explained.iter().map(|r| r.name.as_str()))
            )
        },
    });

    let with_reasons: Vec<_> = explained
        .iter()
        .filter(|r| r.explain.as_ref().is_some_and(|e| !e.reasons.is_empty()))
        .collect();
    duties.push(Duty {
        duty: "Specific principal reasons for an unfavourable decision",
        answers: "ECOA / Regulation B §1002.9; GDPR Art. 22(3)",
        status: status(with_reasons.len(), explained.len()),
        what: if with_reasons.is_empty() {
            "No route defines reason codes ([[routes.explain.reasons]]).".to_owned()
        } else {
            format!(
                "Reason codes (at most four per decision, never a protected attribute) on: {}.",
                names(with_reasons.iter().map(|r| { r.name.as_str() }))
            )
        },
    });

    let with_review: Vec<_> = config.routes.iter().filter(|r| r.review.any()).collect();
    duties.push(Duty {
        duty: "Human oversight",
        answers: "EU AI Act Art. 14; GDPR Art. 22(3)",
        status: status(with_review.len(), explained.len().max(1)),
        what: if with_review.is_empty() {
            if config.routes.iter().any(|r| r.review.contest_within.is_some()) {
                "No review rule is configured ([routes.review]); decisions reach a person only when contested.".to_owned()
            } else {
                "No review rule is configured ([routes.review]) and decisions cannot be contested: no decision reaches a person through Sidelight.".to_owned()
            }
        } else {
            format!(
                "Review rules on {}; {} prediction(s) sent to review in the period, {} decided, {} pending at its end.",
                names(with_review.iter().map(|r| r.name.as_str())),
                f.flagged,
                f.decided,
                f.pending_at_end
            )
        },
    });

    let with_contest: Vec<_> = config
        .routes
        .iter()
        .filter(|r| r.review.contest_within.is_some())
        .collect();
    let c = f.contests;
    duties.push(Duty {
        duty: "Contesting a decision",
        answers: "GDPR Art. 22(3); EU AI Act Art. 86",
        status: status(with_contest.len(), explained.len()),
        what: if with_contest.is_empty() {
            "Decisions cannot be contested through Sidelight (routes.review.contest_within is not set).".to_owned()
        } else {
            format!(
                "Contests accepted on {}; in the period: contested {}, decided {}, overturned {}{}.",
                names(with_contest.iter().map(|r| r.name.as_str())),
                c.contested,
                c.decided,
                c.overturned,
                match c.median_hours_to_decision {
                    Some(h) if h >= 48.0 => format!(", median {:.1} days to a decision", h / 24.0),
                    Some(h) => format!(", median {h:.1} hours to a decision"),
                    None => String::new(),
                }
            )
        },
    });

    let with_gate = explained.len();
    duties.push(Duty {
        duty: "Accuracy of explanations and its monitoring",
        answers: "EU AI Act Art. 15",
        status: status(with_gate, config.routes.len()),
        what: if with_gate == 0 {
            "No route is explained.".to_owned()
        } else {
            let gates: Vec<String> = explained
                .iter()
                .filter_map(|r| {
                    let e = r.explain.as_ref()?;
                    Some(format!("{} (held-out R² ≥ {})", r.name, e.surrogate.min_r2))
                })
                .collect();
            format!(
                "Each surrogate enters service only above its fidelity gate: {}; its fidelity per prediction is recorded (section 1).",
                gates.join(", ")
            )
        },
    });

    let monitored: Vec<_> = config
        .routes
        .iter()
        .filter(|r| r.monitor.as_ref().is_some_and(|m| !m.protected.is_empty()))
        .collect();
    duties.push(Duty {
        duty: "Non-discrimination",
        answers: "EU AI Act Art. 10(2)(f), 15; ECOA / Regulation B; GDPR Art. 22(4)",
        status: status(monitored.len(), explained.len()),
        what: if monitored.is_empty() {
            "No route monitors protected groups ([routes.monitor] protected).".to_owned()
        } else {
            format!(
                "Fairness monitored on {}; {} attribute(s) failing a rule in the period (section 3). Explanations never name a protected attribute.",
                names(monitored.iter().map(|r| r.name.as_str())),
                f.fairness_failing
            )
        },
    });

    let retention = audit.and_then(|a| a.retention);
    duties.push(Duty {
        duty: "Retention limits",
        answers: "GDPR Art. 5(1)(e)",
        status: configured(retention.is_some()),
        what: match retention {
            Some(r) => format!(
                "Records are erased after {} days (audit.retention).",
                r.as_secs().div_ceil(86_400)
            ),
            None => "No retention period is set (audit.retention): records stay until erased."
                .to_owned(),
        },
    });

    duties.push(Duty {
        duty: "Access to one's own decisions",
        answers: "GDPR Art. 15; EU AI Act Art. 86",
        status: configured(audit.is_some()),
        what: if audit.is_some() {
            format!(
                "Auditors export a subject's decisions with POST /api/v1/subject-access; {} request(s) in the period.",
                f.access_requests
            )
        } else {
            "Without an audit log there are no records to give.".to_owned()
        },
    });

    duties.push(Duty {
        duty: "Erasure",
        answers: "GDPR Art. 17",
        status: configured(audit.is_some()),
        what: if audit.is_some() {
            format!(
                "POST /api/v1/erasure erases a subject's records, training rows and cached explanations; {} request(s) in the period, {} record(s) of the period erased (section 7).",
                f.erasure_actions, f.erased_records
            )
        } else {
            "Without an audit log nothing is kept to erase.".to_owned()
        },
    });

    duties.push(Duty {
        duty: "Consent and objection",
        answers: "GDPR Art. 6, 7, 21",
        status: configured(!explained.is_empty()),
        what: format!(
            "x-sidelight-consent and Sec-GPC are honoured per request; {} prediction(s) of the period were made without consent to training (section 5).",
            f.consent_withheld
        ),
    });

    DutySection { duties }
}
