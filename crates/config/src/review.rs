//! A route's review rules, `[routes.review]`: which predictions a person must look at,
//! and whether the response waits for their decision.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The rules of one route. A prediction that any rule catches gets review state
/// `pending` and appears in the review queue, with the rules that caught it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// The surrogate explains the row poorly: local error (|surrogate − model|, in the
    /// model's output space) above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_error_above: Option<f64>,
    /// A close call: the model's output within this of the route's decision threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_margin: Option<f64>,
    /// An input unlike the training window: a number outside the range the surrogate
    /// was trained on, or a category it never saw.
    pub out_of_distribution: bool,
    /// A protected group the fairness monitor currently flags (a protected feature's
    /// value is among the flagged groups).
    pub flagged_groups: bool,
    /// The route has a firing alert (`[routes.monitor.alerts]`): every explained
    /// prediction goes to review, with reason `alert`, until it resolves.
    pub alerts: bool,
    /// A random share of predictions, in [0, 1], for routine checks.
    pub sample_rate: f64,
    /// A request header asking for review (any value but `0`/`false`); removed before
    /// the request goes on when it is Sidelight's own `x-sidelight-review`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Hold flagged responses until a reviewer decides, at most this long; absent, a
    /// flagged response goes out at once and is reviewed afterwards.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub hold: Option<Duration>,
    /// When a held response's deadline passes: `serve` (as the model answered, marked
    /// undecided) or `reject` (503 `review_timeout`).
    pub hold_fallback: HoldFallback,
    /// How long after a decision the customer may contest it (`POST /v1/contests` with
    /// the record's token); absent, decisions cannot be contested through Sidelight.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub contest_within: Option<Duration>,
}

/// What a held response does when no decision came in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldFallback {
    /// Release the model's answer, marked as not yet reviewed.
    Serve,
    /// Answer 503 `review_timeout`.
    Reject,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            local_error_above: None,
            threshold_margin: None,
            out_of_distribution: false,
            flagged_groups: false,
            alerts: false,
            sample_rate: 0.0,
            header: None,
            hold: None,
            hold_fallback: HoldFallback::Serve,
            contest_within: None,
        }
    }
}

impl ReviewConfig {
    /// Whether any rule is on.
    pub fn any(&self) -> bool {
        self.local_error_above.is_some()
            || self.threshold_margin.is_some()
            || self.out_of_distribution
            || self.flagged_groups
            || self.alerts
            || self.sample_rate > 0.0
            || self.header.is_some()
    }

    /// Checks what types cannot; errors name the key.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{prefix}.{k}");
        for (name, value) in [
            ("local_error_above", self.local_error_above),
            ("threshold_margin", self.threshold_margin),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err((key(name), "must be a number of at least 0".to_owned()));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err((key("sample_rate"), "must be between 0 and 1".to_owned()));
        }
        if let Some(h) = &self.header {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err((key("header"), format!("`{h}` is not a header name")));
            }
        }
        if self
            .hold
            .is_some_and(|d| d.is_zero() || d > Duration::from_secs(300))
        {
            return Err((
                key("hold"),
                "must be longer than zero and at most 5 minutes".to_owned(),
            ));
        }
        if self.contest_within.is_some_and(|d| {
            d < Duration::from_secs(86_400) || d > Duration::from_secs(10 * 366 * 86_400)
        }) {
            // At least a day: customers are told the window in whole days.
            return Err((
                key("contest_within"),
                "must be at least a day and at most ten years (e.g. \"30days\")".to_owned(),
            ));
        }
        if self.hold.is_some() && !self.any() {
            return Err((
                key("hold"),
                "holds nothing: no review rule is on".to_owned(),
            ));
        }
        Ok(())
    }
}
