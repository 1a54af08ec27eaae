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
}

/// One protected attribute: a feature of the request and its groups (the feature's
/// values, as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedConfig {
    /// The feature's name in the request.
    pub feature: String,
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
        }
    }
}

impl MonitorConfig {
    /// Checks what types cannot; errors name the key.
    pub(crate) fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
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
        for (i, p) in self.protected.iter().enumerate() {
            let pkey = |k: &str| format!("{prefix}.protected[{i}].{k}");
            if p.feature.is_empty() {
                return Err((pkey("feature"), "must name a feature".to_owned()));
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
