//! How a request's columns become the route's configured features.
//!
//! Real clients often send no column names at all: KServe v1 `instances` arrays, a v2
//! `[n, k]` tensor, an MLflow split frame without `columns`. The adapters then name the
//! columns by position (`x0`…, `input-0[0]`…) and say so ([`Rows::positional`]). When the
//! route configures `features`, such columns *are* those features, in order. Matching
//! them by name instead would find none, and the route would wait in warm-up forever
//! while every surrogate learns from missing values.
//!
//! A route that cannot explain what it is sent must say so loudly: a request whose
//! columns cannot be mapped passes through with its own `x-sidelight-status`, is counted
//! in `sidelight_unmapped_requests_total`, is logged once per route and problem, and the
//! problem is shown on `/readyz`, `/api/v1/surrogates` and the console.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use sidelight_protocol::Rows;

/// Why a request's columns could not be read as the route's features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ColumnProblem {
    /// Positional columns, but not as many as the configured features.
    ColumnCountMismatch { columns: usize, features: usize },
    /// Named columns, none of them a configured feature.
    FeaturesUnmatched { columns: usize, features: usize },
}

impl ColumnProblem {
    /// The stable code: the `x-sidelight-status` value's first word and the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ColumnCountMismatch { .. } => "column_count_mismatch",
            Self::FeaturesUnmatched { .. } => "features_unmatched",
        }
    }

    /// The `x-sidelight-status` value: the code and the two counts (no names, which a
    /// client could have chosen to carry personal data).
    pub fn status(&self) -> String {
        match self {
            Self::ColumnCountMismatch { columns, features }
            | Self::FeaturesUnmatched { columns, features } => {
                format!("{}; columns={columns}, features={features}", self.code())
            }
        }
    }

    /// What a person reads on `/readyz`, in the log and in the console.
    pub fn describe(&self) -> String {
        match self {
            Self::ColumnCountMismatch { columns, features } => format!(
                "requests carry {columns} unnamed columns but the route configures {features} \
                 features; unnamed columns are read as the features in order, so the counts \
                 must agree (list every column the model takes, in order)"
            ),
            Self::FeaturesUnmatched { columns, features } => format!(
                "requests name {columns} columns and none of them is one of the route's \
                 {features} configured features; check the feature names against the \
                 payload (`sidelight schema infer` prints them)"
            ),
        }
    }
}

/// One request in this many has its extras read.
const EXTRAS_EVERY: u64 = 1024;

/// How a request's columns were matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// By name (or the route configures no features).
    ByName,
    /// By position: renamed to the configured features, in order.
    ByPosition,
}

/// Renames positional columns to the configured features, or says why the columns cannot
/// be the route's features. Named columns are left as they are: a name the route does
/// not configure is ignored and a configured one the request lacks is missing, as long as
/// at least one name matches.
pub fn map_columns(configured: &[String], rows: &mut Rows) -> Result<Matched, ColumnProblem> {
    if configured.is_empty() {
        return Ok(Matched::ByName);
    }
    let named = rows.names.iter().filter(|n| configured.contains(n)).count();
    if named == rows.names.len() {
        return Ok(Matched::ByName);
    }
    let counts = (rows.names.len(), configured.len());
    if rows.positional {
        if counts.0 != counts.1 {
            return Err(ColumnProblem::ColumnCountMismatch {
                columns: counts.0,
                features: counts.1,
            });
        }
        rows.names = configured.to_vec();
        return Ok(Matched::ByPosition);
    }
    if named == 0 {
        return Err(ColumnProblem::FeaturesUnmatched {
            columns: counts.0,
            features: counts.1,
        });
    }
    Ok(Matched::ByName)
}

/// What a route has seen of its requests' columns: the wire names of positional traffic
/// (so that rows Sidelight writes itself go out the way clients send them), and the last
/// problem, with counts.
#[derive(Debug, Default)]
pub struct ColumnState {
    wire: Mutex<Option<Vec<String>>>,
    /// A recent client request's members besides its rows (see
    /// [`sidelight_protocol::request_extras`]); in memory only.
    extras: Mutex<Option<String>>,
    /// The path and query a recent client request was sent to.
    target: Mutex<Option<String>>,
    requests: AtomicU64,
    problem: Mutex<Option<ColumnProblem>>,
    unmapped: AtomicU64,
    mapped_by_position: AtomicU64,
}

impl ColumnState {
    /// Notes the names a request's body gave its positional columns (copied only when
    /// they change).
    pub fn positional(&self, wire_names: &[String]) {
        if let Ok(mut wire) = self.wire.lock() {
            if wire.as_deref() != Some(wire_names) {
                *wire = Some(wire_names.to_vec());
            }
        }
    }

    /// Notes a request whose columns mapped.
    pub fn mapped(&self, matched: Matched) {
        if matched == Matched::ByPosition {
            self.mapped_by_position.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes a request whose columns did not map; true the first time this problem is
    /// seen (so it is logged once, not per request).
    pub fn unmapped(&self, problem: &ColumnProblem) -> bool {
        self.unmapped.fetch_add(1, Ordering::Relaxed);
        let Ok(mut last) = self.problem.lock() else {
            return false;
        };
        let new = last.as_ref() != Some(problem);
        if new {
            *last = Some(problem.clone());
        }
        new
    }

    /// Whether this request's extras should be read: the first request's, then one in
    /// [`EXTRAS_EVERY`], so that a change of client is followed without reparsing every
    /// body.
    pub fn wants_extras(&self) -> bool {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        n % EXTRAS_EVERY == 0
    }

    pub fn set_extras(&self, extras: String, target: &str) {
        if let Ok(mut slot) = self.extras.lock() {
            *slot = Some(extras);
        }
        if let Ok(mut slot) = self.target.lock() {
            if slot.as_deref() != Some(target) {
                *slot = Some(target.to_owned());
            }
        }
    }

    /// Where clients send the route's requests (path and query), once one has been seen.
    pub fn target(&self) -> Option<String> {
        self.target.lock().ok().and_then(|t| t.clone())
    }

    /// What rows Sidelight writes itself should carry besides the rows.
    pub fn extras(&self) -> String {
        self.extras
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default()
    }

    /// The column names positional traffic arrives with, in order, if any has arrived.
    pub fn wire_names(&self) -> Option<Vec<String>> {
        self.wire.lock().ok().and_then(|w| w.clone())
    }

    /// The most recent problem, if requests have been unmapped.
    pub fn problem(&self) -> Option<ColumnProblem> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    /// For `/api/v1/surrogates`.
    pub fn to_json(&self) -> serde_json::Value {
        let problem = self.problem();
        serde_json::json!({
            "mapped_by_position": self.mapped_by_position.load(Ordering::Relaxed),
            "unmapped": self.unmapped.load(Ordering::Relaxed),
            "problem": problem.as_ref().map(|p| serde_json::json!({
                "code": p.code(),
                "detail": p,
                "message": p.describe(),
            })),
        })
    }

    /// Requests whose columns could not be mapped, since start.
    pub fn unmapped_count(&self) -> u64 {
        self.unmapped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidelight_protocol::{Protocol, Value, parse_request};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn positional_columns_take_the_configured_names_in_order() {
        let configured = names(&["age", "income", "city"]);
        for (protocol, body) in [
            (Protocol::KServeV1, r#"{"instances": [[30, 5, "Oslo"]]}"#),
            (
                Protocol::OpenInferenceV2,
                r#"{"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [30, 5]},
                              {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["Oslo"]}]}"#,
            ),
            (
                Protocol::Mlflow,
                r#"{"dataframe_split": {"data": [[30, 5, "Oslo"]]}}"#,
            ),
            (Protocol::Mlflow, r#"{"inputs": [[30, 5, "Oslo"]]}"#),
        ] {
            let mut rows = parse_request(&protocol, body.as_bytes()).unwrap();
            let wire = rows.names.clone();
            assert_eq!(
                map_columns(&configured, &mut rows),
                Ok(Matched::ByPosition),
                "{protocol:?}"
            );
            assert_eq!(rows.names, configured, "{protocol:?} from {wire:?}");
            assert_eq!(rows.rows[0][2], Value::Text("Oslo".into()));
        }
    }

    #[test]
    fn a_count_mismatch_or_no_matching_name_is_a_problem() {
        let configured = names(&["age", "income", "city"]);
        let mut rows = parse_request(&Protocol::KServeV1, br#"{"instances": [[30, 5]]}"#).unwrap();
        let problem = map_columns(&configured, &mut rows).unwrap_err();
        assert_eq!(
            problem.status(),
            "column_count_mismatch; columns=2, features=3"
        );
        let mut rows =
            parse_request(&Protocol::KServeV1, br#"{"instances": [{"a": 1, "b": 2}]}"#).unwrap();
        let problem = map_columns(&configured, &mut rows).unwrap_err();
        assert_eq!(problem.code(), "features_unmatched");
        // A named payload that shares any name keeps matching by name.
        let mut rows = parse_request(
            &Protocol::KServeV1,
            br#"{"instances": [{"age": 1, "b": 2}]}"#,
        )
        .unwrap();
        assert_eq!(map_columns(&configured, &mut rows), Ok(Matched::ByName));
        assert_eq!(rows.names, ["age", "b"]);
        // Positional names configured literally (the old workaround) still match by name.
        let mut rows = parse_request(&Protocol::KServeV1, br#"{"instances": [[1, 2]]}"#).unwrap();
        assert_eq!(
            map_columns(&names(&["x0", "x1"]), &mut rows),
            Ok(Matched::ByName)
        );
    }

    #[test]
    fn the_problem_is_logged_once_and_wire_names_are_kept() {
        let state = ColumnState::default();
        let problem = ColumnProblem::ColumnCountMismatch {
            columns: 2,
            features: 3,
        };
        assert!(state.unmapped(&problem));
        assert!(!state.unmapped(&problem));
        assert_eq!(state.unmapped_count(), 2);
        state.positional(&names(&["x0", "x1", "x2"]));
        state.mapped(Matched::ByPosition);
        assert_eq!(state.wire_names(), Some(names(&["x0", "x1", "x2"])));
        let json = state.to_json();
        assert_eq!(json["problem"]["code"], "column_count_mismatch");
        assert_eq!(json["mapped_by_position"], 1);
    }
}
