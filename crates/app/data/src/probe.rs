//! The probe check: "can I trust the surrogate here?" For a request Sidelight explained
//! recently, KernelSHAP is run against the real upstream, within a bounded number of
//! calls, and its attributions are compared with the ones the surrogate gave.
//!
//! # How the model is asked
//!
//! KernelSHAP ([`sidelight_explain::shap::KernelExplainer`]) evaluates hybrid rows that
//! take the explained row's value on a coalition of features and a background row's value
//! elsewhere. It works on `f64` rows; rather than encode the feature values (text levels
//! have no order an upstream would understand), each cell carries *where its value comes
//! from*: the explained row is all `0.0`, background row `k` is `k + 1` wherever its value
//! differs from the explained row's (and `0.0` where it is the same, so that KernelSHAP
//! still sees features equal to every background row as null players). A hybrid row is
//! decoded cell by cell back into the real values, written in the route's protocol
//! ([`sidelight_protocol::write_request`]) and sent to the upstream directly — not through
//! the data plane, so no probe call is counted in a metric, trained on, or kept. Every
//! call also carries `x-sidelight-probe: 1`, which the explain layer honours should the
//! upstream URL lead back into Sidelight.
//!
//! # Output space
//!
//! The comparison is in the space the live explanation's attributions add up in: for
//! probability outputs the surrogate explains logits, so the upstream's probabilities
//! are turned into logits (clipped as in training) before KernelSHAP sees them.
//!
//! # Budget
//!
//! The caller gives the most upstream calls the probe may make. Batch protocols send up
//! to [`BATCH_ROWS`] rows per call, the pointer protocol one. The background (rows spread
//! evenly over the route's training window) and the number of coalitions are chosen to
//! fit: as many background rows as asked while still affording every coalition, or at
//! least `4m` of them for `m` features (`2m` as a last resort); below that the probe is
//! refused as not meaningful. The model adapter also counts calls and stops at the limit,
//! so the bound holds whatever the plan.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use sidelight_explain::shap::{BatchModel, KernelExplainer, KernelOptions, ShapError};
use sidelight_explain::{OutputKind, Value};

use crate::body::full;
use crate::config::UpstreamBase;
use crate::error::chain;
use crate::explain::PROBE;
use crate::forward::UpstreamClient;
use crate::live::store::StoredRequest;
use sidelight_protocol::{self as adapter, AdapterError, Protocol, WriteError};

/// Rows per upstream call for protocols that take batches.
pub const BATCH_ROWS: usize = 64;
/// Defaults and limits of the query parameters.
const DEFAULT_MAX_CALLS: usize = 200;
const LIMIT_MAX_CALLS: usize = 10_000;
const DEFAULT_BACKGROUND: usize = 20;
const LIMIT_BACKGROUND: usize = 200;
/// The verdict is "trustworthy" when the ranks agree at least this well…
pub const MIN_RANK_CORRELATION: f64 = 0.8;
/// …and no feature's attribution differs by more than this share of the largest
/// KernelSHAP attribution (in absolute value).
pub const MAX_RELATIVE_DIFFERENCE: f64 = 0.25;

/// Why a probe could not be run. Messages name parameters, features and counts, never
/// payload values.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "no recent explained request has this id; only the most recent explained requests \
         are kept, and requests marked x-sidelight-probe never are"
    )]
    NotFound,
    #[error("query parameter `{name}`: {reason}")]
    BadParameter { name: String, reason: &'static str },
    #[error("row {row} asked, but the request has {rows} row(s)")]
    NoSuchRow { row: usize, rows: usize },
    #[error("the route's training window is empty, so there is no background to compare against")]
    NoBackground,
    #[error(
        "max_calls={max_calls} is too few for a meaningful check of {players} varying \
         feature(s) with this protocol; allow at least {needed} calls"
    )]
    BudgetTooSmall {
        max_calls: usize,
        players: usize,
        needed: usize,
    },
    #[error("another probe is running; probes run one at a time to spare the model")]
    Busy,
    #[error("the probe used up its {0} calls before finishing")]
    OutOfCalls(usize),
    #[error("cannot write the probe rows: {0}")]
    Write(#[from] WriteError),
    #[error("the upstream failed a probe call: {0}")]
    Upstream(String),
    #[error("the upstream refused a probe call with {0}")]
    Refused(StatusCode),
    #[error("the upstream's answer to a probe call cannot be read: {0}")]
    Response(#[from] AdapterError),
    #[error("KernelSHAP failed: {0}")]
    Shap(#[from] ShapError),
    #[error("{0}")]
    Internal(String),
}

impl ProbeError {
    /// The HTTP status the admin API answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadParameter { .. } | Self::NoSuchRow { .. } | Self::BudgetTooSmall { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::NoBackground => StatusCode::CONFLICT,
            Self::Busy => StatusCode::TOO_MANY_REQUESTS,
            Self::Write(_) | Self::Shap(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Upstream(_) | Self::Refused(_) | Self::Response(_) | Self::OutOfCalls(_) => {
                StatusCode::BAD_GATEWAY
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code the admin API answers this error with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "request_not_found",
            Self::BadParameter { .. } => "bad_parameter",
            Self::NoSuchRow { .. } => "no_such_row",
            Self::NoBackground => "no_background",
            Self::BudgetTooSmall { .. } => "budget_too_small",
            Self::Busy => "probe_busy",
            Self::OutOfCalls(_) => "probe_out_of_calls",
            Self::Write(_) => "probe_unwritable",
            Self::Upstream(_) => "probe_upstream_failed",
            Self::Refused(_) => "probe_upstream_refused",
            Self::Response(_) => "probe_unreadable_response",
            Self::Shap(_) => "probe_kernel_failed",
            Self::Internal(_) => "probe_internal",
        }
    }
}

/// The query parameters of `POST /api/v1/probe/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeParams {
    pub row: usize,
    pub max_calls: usize,
    pub background: usize,
}

impl Default for ProbeParams {
    fn default() -> Self {
        Self {
            row: 0,
            max_calls: DEFAULT_MAX_CALLS,
            background: DEFAULT_BACKGROUND,
        }
    }
}

impl ProbeParams {
    pub fn from_query(query: Option<&str>) -> Result<Self, ProbeError> {
        let mut params = Self::default();
        let pairs =
            sidelight_core::query::query_pairs(query).map_err(|_| ProbeError::BadParameter {
                name: "query".to_owned(),
                reason: "not correctly %-encoded",
            })?;
        for (name, value) in &pairs {
            let bad = |reason| ProbeError::BadParameter {
                name: name.clone(),
                reason,
            };
            let number: usize = value.parse().map_err(|_| bad("not a whole number"))?;
            match name.as_str() {
                "row" => params.row = number,
                "max_calls" if (1..=LIMIT_MAX_CALLS).contains(&number) => {
                    params.max_calls = number;
                }
                "max_calls" => return Err(bad("must be between 1 and 10000")),
                "background" if (1..=LIMIT_BACKGROUND).contains(&number) => {
                    params.background = number;
                }
                "background" => return Err(bad("must be between 1 and 200")),
                _ => return Err(bad("unknown; use row, max_calls or background")),
            }
        }
        Ok(params)
    }
}

/// Sends rows Sidelight wrote itself straight to the upstream (never through the data
/// plane), marked `x-sidelight-probe: 1`: the probe check and active distillation.
pub struct UpstreamCaller {
    client: UpstreamClient,
    base: UpstreamBase,
    request_timeout: Duration,
}

impl UpstreamCaller {
    pub fn new(client: UpstreamClient, base: UpstreamBase, request_timeout: Duration) -> Self {
        Self {
            client,
            base,
            request_timeout,
        }
    }

    /// One call to `target` (path and query, as clients call it) with a body of `rows`
    /// rows; the outputs per row. A 4xx answer is [`ProbeError::Refused`]: the model
    /// does not take such rows, which is not a sign of load.
    pub async fn call(
        &self,
        target: &str,
        protocol: &Protocol,
        response_limit: u64,
        body: Vec<u8>,
        rows: usize,
    ) -> Result<Vec<Vec<f64>>, ProbeError> {
        let uri: Uri = Uri::builder()
            .scheme(self.base.scheme.clone())
            .authority(self.base.authority.clone())
            .path_and_query(format!("{}{}", self.base.path_prefix, target))
            .build()
            .map_err(|e| ProbeError::Internal(format!("cannot build the upstream URI: {e}")))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(PROBE.clone(), HeaderValue::from_static("1"))
            .body(full(Bytes::from(body)))
            .map_err(|e| ProbeError::Internal(format!("cannot build the request: {e}")))?;
        let response = tokio::time::timeout(self.request_timeout, self.client.request(request))
            .await
            .map_err(|_| {
                ProbeError::Upstream(format!("no answer within {:?}", self.request_timeout))
            })?
            .map_err(|e| ProbeError::Upstream(chain(&e)))?;
        let status = response.status();
        let bytes = tokio::time::timeout(
            self.request_timeout,
            Limited::new(response.into_body(), limit(response_limit)).collect(),
        )
        .await
        .map_err(|_| ProbeError::Upstream("the response body did not arrive in time".into()))?
        .map_err(|e| ProbeError::Upstream(format!("reading the response: {}", chain(e.as_ref()))))?
        .to_bytes();
        if status.is_client_error() {
            return Err(ProbeError::Refused(status));
        }
        if !status.is_success() {
            return Err(ProbeError::Upstream(format!(
                "the upstream answered {status}"
            )));
        }
        Ok(adapter::parse_response(protocol, &bytes, rows)?.rows)
    }
}

fn limit(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// Everything a probe needs, taken out of the store and the training window up front so
/// that no lock is held while the model is called.
#[derive(Debug, Clone)]
pub struct ProbeInput {
    pub protocol: Protocol,
    /// The names the rows are written under (the wire names of positional traffic).
    pub names: Vec<String>,
    /// What a client's request carries besides its rows, sent along with every call.
    pub extras: String,
    pub row: usize,
    pub x: Vec<Value>,
    pub background: Vec<Vec<Value>>,
    /// Which output of the model's answer, and whether it is turned into a logit.
    pub output: usize,
    pub logit: bool,
    pub max_calls: usize,
    pub plan: Plan,
}

impl ProbeInput {
    pub fn new(stored: &StoredRequest, params: &ProbeParams) -> Result<Self, ProbeError> {
        let no_row = || ProbeError::NoSuchRow {
            row: params.row,
            rows: stored.rows.len(),
        };
        let x = stored.rows.get(params.row).ok_or_else(no_row)?.clone();
        let explanation = stored.explanations.get(params.row).ok_or_else(no_row)?;
        let mut input = Self::for_row(
            &stored.route,
            &stored.names,
            x,
            (explanation.output, explanation.logit),
            params.max_calls,
            params.background,
        )?;
        input.row = params.row;
        Ok(input)
    }

    /// A check of row `x` (in the order of `names`, the surrogate's) for output
    /// `output.0` (as a logit with `output.1`), against a background from the route's
    /// window, within `max_calls`.
    pub fn for_row(
        route: &crate::live::RouteLive,
        names: &[String],
        x: Vec<Value>,
        (output, logit): (usize, bool),
        max_calls: usize,
        background: usize,
    ) -> Result<Self, ProbeError> {
        let window = route.background(names, LIMIT_BACKGROUND);
        if window.is_empty() {
            return Err(ProbeError::NoBackground);
        }
        let protocol = route.protocol.clone();
        let batch_rows = batch_rows(&protocol);
        // Players are counted over the largest background that could be used; a smaller
        // one can only have fewer, so the plan stays affordable.
        let players = players(&x, &window);
        let plan = plan(max_calls, players, background.min(window.len()), batch_rows)?;
        let (names, extras) = route.wire(names);
        Ok(Self {
            protocol,
            names,
            extras,
            row: 0,
            x,
            background: spread(&window, plan.background),
            output,
            logit,
            max_calls,
            plan,
        })
    }
}

fn batch_rows(protocol: &Protocol) -> usize {
    match protocol {
        Protocol::Pointer { .. } | Protocol::Ranking { .. } => 1,
        _ => BATCH_ROWS,
    }
}

/// `n` rows spread evenly over `rows` (all of them if there are no more than `n`).
fn spread(rows: &[Vec<Value>], n: usize) -> Vec<Vec<Value>> {
    if rows.len() <= n {
        return rows.to_vec();
    }
    (0..n).map(|k| rows[k * rows.len() / n].clone()).collect()
}

/// Features on which some background row differs from `x`.
fn players(x: &[Value], background: &[Vec<Value>]) -> usize {
    (0..x.len())
        .filter(|&j| background.iter().any(|z| z.get(j) != x.get(j)))
        .count()
}

/// How a probe spends its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub background: usize,
    /// Most coalitions KernelSHAP may evaluate.
    pub coalitions: usize,
    /// Whether that is every coalition (the exact Shapley values of the game).
    pub exact: bool,
    pub batch_rows: usize,
}

/// Every proper, non-empty coalition of `m` players.
fn all_coalitions(m: usize) -> usize {
    if m >= 63 {
        usize::MAX
    } else {
        (1usize << m) - 2
    }
}

/// Upstream calls of a probe with `r` background rows and `k` coalitions, `b` rows per
/// call: the background scored once, the explained row once, then the coalitions in
/// chunks of `max(b / r, 1)` (as [`KernelExplainer`] hands them over), each chunk split
/// into calls of at most `b` rows.
fn calls(r: usize, k: usize, b: usize) -> usize {
    let per_chunk = (b / r).max(1);
    r.div_ceil(b) + 1 + k.div_ceil(per_chunk) * (per_chunk * r).div_ceil(b)
}

/// The largest background (up to `wanted`) that affords the coalitions a meaningful
/// check needs; see the module docs.
fn plan(max_calls: usize, m: usize, wanted: usize, b: usize) -> Result<Plan, ProbeError> {
    let all = all_coalitions(m);
    let needs = if m <= 1 {
        // KernelSHAP needs no coalition: one player takes the whole difference.
        vec![0]
    } else {
        vec![all.min(4 * m), all.min(2 * m)]
    };
    for &need in &needs {
        for r in (1..=wanted.max(1)).rev() {
            let per_chunk = (b / r).max(1);
            let fixed = r.div_ceil(b) + 1;
            if max_calls < fixed {
                continue;
            }
            let chunk_calls = (per_chunk * r).div_ceil(b);
            let affordable = (max_calls - fixed) / chunk_calls * per_chunk;
            if affordable >= need {
                let coalitions = affordable.min(all);
                return Ok(Plan {
                    background: r,
                    coalitions,
                    exact: coalitions == all,
                    batch_rows: b,
                });
            }
        }
    }
    let need = needs.last().copied().unwrap_or(0);
    Err(ProbeError::BudgetTooSmall {
        max_calls,
        players: m,
        needed: calls(1, need, b),
    })
}

/// What KernelSHAP against the upstream found.
#[derive(Debug, Clone)]
pub struct KernelOutcome {
    pub base_value: f64,
    pub prediction: f64,
    pub values: Vec<f64>,
    pub calls: usize,
    pub coalitions: usize,
}

/// The model KernelSHAP sees: decodes each cell's source (see the module docs), writes
/// the rows in the route's protocol, and hands them to `send` in calls of at most
/// `batch_rows` rows. A failure is kept and every later output is NaN; the caller
/// reports the failure once KernelSHAP returns.
struct Upstream<'a, F> {
    input: &'a ProbeInput,
    send: F,
    calls: usize,
    rows: usize,
    error: Option<ProbeError>,
}

impl<F> Upstream<'_, F>
where
    F: FnMut(Vec<u8>, usize) -> Result<Vec<Vec<f64>>, ProbeError>,
{
    fn decode(&self, codes: &[f64]) -> Result<Vec<Value>, ProbeError> {
        let input = self.input;
        codes
            .iter()
            .zip(&input.x)
            .enumerate()
            .map(|(j, (&code, x))| {
                if code == 0.0 {
                    return Ok(x.clone());
                }
                let k = code as usize;
                (code.fract() == 0.0 && k >= 1)
                    .then(|| input.background.get(k - 1).and_then(|z| z.get(j)))
                    .flatten()
                    .cloned()
                    .ok_or_else(|| {
                        ProbeError::Internal("a hybrid row has an unknown source".into())
                    })
            })
            .collect()
    }

    fn call(&mut self, codes: &[f64], n_cols: usize, out: &mut [f64]) -> Result<(), ProbeError> {
        if self.calls >= self.input.max_calls {
            return Err(ProbeError::OutOfCalls(self.input.max_calls));
        }
        let rows: Vec<Vec<Value>> = codes
            .chunks_exact(n_cols.max(1))
            .map(|row| self.decode(row))
            .collect::<Result<_, _>>()?;
        let body = adapter::with_extras(
            adapter::write_request(&self.input.protocol, &self.input.names, &rows)?,
            &self.input.extras,
        );
        self.calls += 1;
        self.rows += rows.len();
        let outputs = (self.send)(body, rows.len())?;
        for (o, output) in out.iter_mut().zip(&outputs) {
            let value = output.get(self.input.output).copied().ok_or_else(|| {
                ProbeError::Upstream(format!(
                    "the answer has {} output(s) per row; output {} was explained",
                    output.len(),
                    self.input.output
                ))
            })?;
            *o = if self.input.logit {
                // The same clipped logit the surrogate was trained on.
                OutputKind::BinaryProbability.to_raw(value)
            } else {
                value
            };
        }
        Ok(())
    }
}

impl<F> BatchModel for Upstream<'_, F>
where
    F: FnMut(Vec<u8>, usize) -> Result<Vec<Vec<f64>>, ProbeError>,
{
    fn predict_batch(&mut self, rows: &[f64], n_cols: usize, out: &mut [f64]) {
        out.fill(f64::NAN);
        let per_call = self.input.plan.batch_rows.max(1);
        for (codes, out) in rows
            .chunks(per_call * n_cols.max(1))
            .zip(out.chunks_mut(per_call))
        {
            if self.error.is_some() {
                return;
            }
            if let Err(error) = self.call(codes, n_cols, out) {
                self.error = Some(error);
            }
        }
    }
}

/// Runs KernelSHAP for the probe's row, asking the model through `send`.
pub fn kernel_probe<F>(input: &ProbeInput, send: F) -> Result<KernelOutcome, ProbeError>
where
    F: FnMut(Vec<u8>, usize) -> Result<Vec<Vec<f64>>, ProbeError>,
{
    let n = input.x.len();
    let x_codes = vec![0.0; n];
    let background_codes: Vec<Vec<f64>> = input
        .background
        .iter()
        .enumerate()
        .map(|(k, z)| {
            z.iter()
                .zip(&input.x)
                .map(|(zj, xj)| if zj == xj { 0.0 } else { (k + 1) as f64 })
                .collect()
        })
        .collect();
    let options = KernelOptions {
        max_coalitions: input.plan.coalitions.max(2),
        // Exact only when the budget affords every coalition.
        exact_up_to: 0,
        seed: 0,
        max_batch_rows: input.plan.batch_rows,
    };
    let model = Upstream {
        input,
        send,
        calls: 0,
        rows: 0,
        error: None,
    };
    let mut explainer = KernelExplainer::new(model, &background_codes, options)?;
    let explained = explainer.explain(&x_codes);
    let model = explainer.into_model();
    if let Some(error) = model.error {
        return Err(error);
    }
    let attribution = explained?;
    let r = input.background.len().max(1);
    Ok(KernelOutcome {
        base_value: attribution.base_value,
        prediction: attribution.prediction,
        values: attribution.values,
        calls: model.calls,
        coalitions: model.rows.saturating_sub(r + 1) / r,
    })
}

/// Spearman's rank correlation (ties get their average rank); `None` when either side
/// has fewer than two values or no spread.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean) * (x - mean);
        vb += (y - mean) * (y - mean);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && v[order[j]] == v[order[i]] {
            j += 1;
        }
        // Positions i..j share the mean of ranks i+1..=j.
        let rank = (i + j + 1) as f64 / 2.0;
        for &k in &order[i..j] {
            out[k] = rank;
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_have_defaults_and_limits() {
        assert_eq!(
            ProbeParams::from_query(None).unwrap(),
            ProbeParams::default()
        );
        let p = ProbeParams::from_query(Some("row=2&max_calls=50&background=5")).unwrap();
        assert_eq!(
            p,
            ProbeParams {
                row: 2,
                max_calls: 50,
                background: 5
            }
        );
        for bad in ["row=-1", "max_calls=0", "background=1000", "rows=1", "row"] {
            assert!(
                matches!(
                    ProbeParams::from_query(Some(bad)),
                    Err(ProbeError::BadParameter { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn plans_stay_within_the_budget_and_prefer_exact_results() {
        // Batch protocol, 4 players: 14 coalitions with 20 background rows in 7 calls.
        let p = plan(200, 4, 20, BATCH_ROWS).unwrap();
        assert_eq!((p.background, p.coalitions, p.exact), (20, 14, true));
        assert!(calls(p.background, p.coalitions, BATCH_ROWS) <= 200);
        // One row per call: the background shrinks until the coalitions fit.
        let p = plan(200, 4, 20, 1).unwrap();
        assert!(p.exact, "{p:?}");
        assert!(calls(p.background, p.coalitions, 1) <= 200, "{p:?}");
        for max_calls in [5, 9, 30, 200, 1000] {
            for m in [2, 5, 12, 30] {
                for b in [1, BATCH_ROWS] {
                    if let Ok(p) = plan(max_calls, m, 20, b) {
                        assert!(calls(p.background, p.coalitions, b) <= max_calls, "{p:?}");
                        assert!(p.coalitions >= all_coalitions(m).min(2 * m));
                    }
                }
            }
        }
        // Too few calls to be meaningful: refused, with the minimum named.
        let Err(ProbeError::BudgetTooSmall { needed, .. }) = plan(3, 12, 20, 1) else {
            panic!("a 3-call probe of 12 features must be refused");
        };
        assert!(plan(needed, 12, 20, 1).is_ok());
        assert!(plan(needed - 1, 12, 20, 1).is_err());
    }

    #[test]
    fn spearman_handles_ties_and_constant_vectors() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(r > 0.9 && r < 1.0, "{r}");
    }

    /// The test model of the end-to-end suites, `3a + 2bc + [colour = red]`, answering
    /// KServe v1 bodies in-process.
    fn model(body: Vec<u8>, rows: usize) -> Result<Vec<Vec<f64>>, ProbeError> {
        let parsed = adapter::parse_request(&Protocol::KServeV1, &body)?;
        assert_eq!(parsed.rows.len(), rows);
        let num = |v: &Value| match v {
            Value::Number(n) => *n,
            _ => f64::NAN,
        };
        Ok(parsed
            .rows
            .iter()
            .map(|r| {
                let red = matches!(&r[3], Value::Text(t) if t == "red");
                vec![3.0 * num(&r[0]) + 2.0 * num(&r[1]) * num(&r[2]) + f64::from(u8::from(red))]
            })
            .collect())
    }

    fn input(max_calls: usize, batch_rows: usize) -> ProbeInput {
        let row = |a: f64, b: f64, c: f64, colour: &str| {
            vec![
                Value::Number(a),
                Value::Number(b),
                Value::Number(c),
                Value::Text(colour.into()),
            ]
        };
        let background = vec![
            row(0.0, 1.0, 2.0, "red"),
            row(1.0, 0.5, 0.0, "blue"),
            row(2.0, 0.0, 1.0, "green"),
            // Same colour as x: a background row may equal x on some features.
            row(0.5, 2.0, 1.0, "green"),
        ];
        let x = row(1.5, 1.0, 3.0, "green");
        let plan = plan(max_calls, players(&x, &background), 4, batch_rows).unwrap();
        ProbeInput {
            protocol: Protocol::KServeV1,
            names: ["a", "b", "c", "colour"].map(String::from).to_vec(),
            extras: String::new(),
            row: 0,
            x,
            background,
            output: 0,
            logit: false,
            max_calls,
            plan,
        }
    }

    #[test]
    fn kernel_probe_finds_the_true_interventional_shapley_values() {
        for batch_rows in [BATCH_ROWS, 1] {
            let input = input(200, batch_rows);
            let outcome = kernel_probe(&input, model).unwrap();
            assert!(outcome.calls <= 200);
            assert_eq!(outcome.coalitions, 14);
            let mean = |j: usize| {
                input
                    .background
                    .iter()
                    .map(|z| match &z[j] {
                        Value::Number(n) => *n,
                        _ => 0.0,
                    })
                    .sum::<f64>()
                    / 4.0
            };
            // Additive parts: φ_a = 3 (a − mean a); φ_colour = [x red] − share of red.
            assert!((outcome.values[0] - 3.0 * (1.5 - mean(0))).abs() < 1e-9);
            assert!((outcome.values[3] - (0.0 - 0.25)).abs() < 1e-9);
            // The product 2bc against each z: φ_b = (b c − z_b z_c + b z_c − z_b c) / 2 · 2.
            let phi_b: f64 = input
                .background
                .iter()
                .map(|z| {
                    let (zb, zc) = (mean_of(&z[1]), mean_of(&z[2]));
                    (1.0 * 3.0 - zb * zc + 1.0 * zc - zb * 3.0) / 2.0 * 2.0
                })
                .sum::<f64>()
                / 4.0;
            assert!((outcome.values[1] - phi_b).abs() < 1e-9, "{outcome:?}");
            let total: f64 = outcome.values.iter().sum::<f64>() + outcome.base_value;
            assert!((total - outcome.prediction).abs() < 1e-9);
        }
    }

    fn mean_of(v: &Value) -> f64 {
        match v {
            Value::Number(n) => *n,
            _ => f64::NAN,
        }
    }

    #[test]
    fn the_call_limit_holds_even_if_the_plan_is_wrong() {
        let mut input = input(200, 1);
        input.max_calls = 3;
        let mut calls = 0;
        let error = kernel_probe(&input, |body, rows| {
            calls += 1;
            model(body, rows)
        })
        .unwrap_err();
        assert!(matches!(error, ProbeError::OutOfCalls(3)), "{error}");
        assert_eq!(calls, 3);
    }

    #[test]
    fn probabilities_are_compared_as_logits() {
        let mut input = input(200, BATCH_ROWS);
        input.logit = true;
        // A model answering the logistic of a tenth of the score (kept away from the
        // clip at 1e-6): in logit space its attributions are a tenth of the score's.
        let outcome = kernel_probe(&input, |body, rows| {
            Ok(model(body, rows)?
                .into_iter()
                .map(|o| vec![1.0 / (1.0 + (-o[0] / 10.0).exp())])
                .collect())
        })
        .unwrap();
        let plain = kernel_probe(&input_plain(), model).unwrap();
        for (l, p) in outcome.values.iter().zip(&plain.values) {
            assert!((l - p / 10.0).abs() < 1e-9, "{l} vs {p}");
        }
    }

    fn input_plain() -> ProbeInput {
        input(200, BATCH_ROWS)
    }
}
