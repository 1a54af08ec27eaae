//! A route's fairness and drift monitor, `[routes.monitor]`: which protected groups to
//! compare, over how many recent predictions, and how often.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The monitor of one route (needs `[routes.explain]`: it watches explained rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// The most recent explained rows the statistics are computed over; until a
    /// surrogate is trained while the proxy runs (whose training window then becomes
    /// the drift reference), the first this many rows seen are the reference.
    pub window_rows: usize,
    /// How often the statistics are recomputed.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Fewest rows a group needs before a fairness verdict.
    pub min_group_size: u64,
    /// Two-sided confidence of every interval, in (0, 1).
    pub confidence: f64,
    /// The protected attributes whose groups are compared.
    pub protected: Vec<ProtectedConfig>,
    /// Rows older than this leave the window even when it is not full; absent, only
    /// `window_rows` bounds it.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
    /// When the route's alerts fire (`[routes.monitor.alerts]`).
    pub alerts: AlertBounds,
}

/// The bounds whose crossing fires an alert, `[routes.monitor.alerts]`. Each check is
/// `ok` or `firing` per subject; an alert goes out when it starts firing and once when
/// it stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertBounds {
    /// A protected group whose disparate impact, statistical parity or equal
    /// opportunity verdict is `fail`.
    pub fairness: bool,
    /// Drift alerts (`feature_psi_above`, `prediction_psi_above`) on or off.
    pub drift: bool,
    /// A feature's PSI, current window against the reference, above this.
    pub feature_psi_above: f64,
    /// The PSI of the model's outputs above this.
    pub prediction_psi_above: f64,
    /// Fewest rows both the current window and the drift reference need before a drift
    /// check can fire or resolve: PSI over few rows is mostly noise (with 10 bins and
    /// 100 rows on each side, about 0.18 between two samples of the same traffic).
    pub min_rows: u64,
    /// The protected features' share of the mean |attribution| above this, in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected_share_above: Option<f64>,
    /// The latest surrogate's held-out R² below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fidelity_r2_below: Option<f64>,
}

impl Default for AlertBounds {
    fn default() -> Self {
        Self {
            fairness: true,
            drift: true,
            feature_psi_above: 0.25,
            prediction_psi_above: 0.25,
            min_rows: 500,
            protected_share_above: None,
            fidelity_r2_below: None,
        }
    }
}

/// One protected attribute and its groups (the attribute's values, as text). By default
/// the attribute is a feature of the request; it can also come from a request header or
/// be reported later, for an attribute the model must not see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedConfig {
    /// The attribute's name: the feature's name in the request, or (with `header` or
    /// `reported`) the name it goes by in the results.
    #[serde(alias = "attribute")]
    pub feature: String,
    /// Read the attribute from this request header instead of the features. A header
    /// named `x-sidelight-…` is Sidelight's own and removed before the model sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The attribute is reported after the prediction, with `POST /v1/feedback`
    /// (`"attributes": {"<name>": "<value>"}`), and joined to the rows still in the
    /// window. It is kept in memory only, never in the audit log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported: bool,
    /// The privileged (reference) group.
    pub privileged: String,
    /// The groups compared with the privileged one.
    pub unprivileged: Vec<String>,
    /// For a numeric feature: cut points, ascending, that make its groups. `[25]` makes
    /// `<25` and `>=25`; `[25, 40]` makes `<25`, `25-40` and `>=40` (each band includes
    /// its lower edge). Absent, each value is its own group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bands: Vec<f64>,
}

impl ProtectedConfig {
    /// Whether the attribute is one of the request's features (not a header, not
    /// reported later).
    pub fn is_feature(&self) -> bool {
        self.header.is_none() && !self.reported
    }

    /// The group a number belongs to under `bands`.
    pub fn band(&self, x: f64) -> Option<String> {
        let b = &self.bands;
        let (first, last) = (b.first()?, b.last()?);
        if x.is_nan() {
            return None;
        }
        Some(if x < *first {
            format!("<{first}")
        } else if x >= *last {
            format!(">={last}")
        } else {
            let k = b.iter().rposition(|e| x >= *e).unwrap_or(0);
            format!("{}-{}", b[k], b[k + 1])
        })
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            window_rows: 10_000,
            every: Duration::from_secs(30),
            min_group_size: 30,
            confidence: 0.95,
            protected: Vec::new(),
            max_age: None,
            alerts: AlertBounds::default(),
        }
    }
}

impl MonitorConfig {
    /// Checks what types cannot; errors name the key.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !(10..=1_000_000).contains(&self.window_rows) {
            return Err((
                key("window_rows"),
                "must be between 10 and 1000000".to_owned(),
            ));
        }
        if self.every < Duration::from_millis(100) {
            return Err((key("every"), "must be at least 100ms".to_owned()));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err((key("confidence"), "must be between 0 and 1".to_owned()));
        }
        if self.max_age.is_some_and(|a| a < Duration::from_secs(1)) {
            return Err((key("max_age"), "must be at least 1s".to_owned()));
        }
        let a = &self.alerts;
        for (name, bound) in [
            ("feature_psi_above", Some(a.feature_psi_above)),
            ("prediction_psi_above", Some(a.prediction_psi_above)),
        ] {
            if bound.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
                return Err((
                    key(&format!("alerts.{name}")),
                    "must be a number above 0".to_owned(),
                ));
            }
        }
        if a.min_rows == 0 {
            return Err((key("alerts.min_rows"), "must be at least 1".to_owned()));
        }
        for (name, bound) in [
            ("protected_share_above", a.protected_share_above),
            ("fidelity_r2_below", a.fidelity_r2_below),
        ] {
            if bound.is_some_and(|b| !(0.0..=1.0).contains(&b)) {
                return Err((
                    key(&format!("alerts.{name}")),
                    "must be between 0 and 1".to_owned(),
                ));
            }
        }
        for (i, p) in self.protected.iter().enumerate() {
            let pkey = |k: &str| format!("{prefix}.protected[{i}].{k}");
            if p.feature.is_empty() {
                return Err((pkey("feature"), "must name a feature".to_owned()));
            }
            if p.header.is_some() && p.reported {
                return Err((
                    pkey("reported"),
                    "an attribute comes from a header or is reported, not both".to_owned(),
                ));
            }
            if let Some(h) = &p.header {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err((pkey("header"), format!("`{h}` is not a header name")));
                }
            }
            if p.unprivileged.is_empty() {
                return Err((
                    pkey("unprivileged"),
                    "must list at least one group".to_owned(),
                ));
            }
            if p.unprivileged.contains(&p.privileged) {
                return Err((
                    pkey("unprivileged"),
                    format!("lists the privileged group `{}`", p.privileged),
                ));
            }
            for (j, g) in p.unprivileged.iter().enumerate() {
                if p.unprivileged[..j].contains(g) {
                    return Err((pkey("unprivileged"), format!("lists `{g}` twice")));
                }
            }
            if p.bands.iter().any(|b| !b.is_finite()) || p.bands.windows(2).any(|w| w[0] >= w[1]) {
                return Err((
                    pkey("bands"),
                    "must be finite numbers in ascending order".to_owned(),
                ));
            }
            if self.protected[..i].iter().any(|q| q.feature == p.feature) {
                return Err((pkey("feature"), format!("`{}` is listed twice", p.feature)));
            }
        }
        Ok(())
    }
}
