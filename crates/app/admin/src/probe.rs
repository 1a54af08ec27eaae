//! `POST /api/v1/probe/{id}`: runs the probe check (see `sidelight_data::probe`) for a
//! request Sidelight explained recently, one probe at a time, and reports how the
//! surrogate's attributions compare with KernelSHAP's against the real model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::StatusCode;
use serde_json::{Value as Json, json};
use sidelight_core::body::{ProxyBody, json_response};
use sidelight_core::error::json_error;
use sidelight_core::live::RecentRequests;
use sidelight_core::live::store::StoredRequest;
use sidelight_data::probe::{
    KernelOutcome, MAX_RELATIVE_DIFFERENCE, MIN_RANK_CORRELATION, ProbeError, ProbeInput,
    ProbeParams, UpstreamCaller, kernel_probe, spearman,
};
use sidelight_explain::Value;

/// Runs probes for the admin API: holds the explained requests, and a client of its own
/// to the upstream.
pub struct Prober {
    pub requests: Arc<RecentRequests>,
    pub caller: Arc<UpstreamCaller>,
    /// Set while a probe or a what-if runs: one at a time, to spare the model.
    pub(crate) busy: AtomicBool,
}

/// Clears the busy flag however the probe ends.
pub(crate) struct Running<'a>(pub(crate) &'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Prober {
    pub fn new(requests: Arc<RecentRequests>, caller: Arc<UpstreamCaller>) -> Self {
        Self {
            requests,
            caller,
            busy: AtomicBool::new(false),
        }
    }

    /// Answers `POST /api/v1/probe/{id}?row=&max_calls=&background=`.
    pub async fn handle(
        self: Arc<Self>,
        id: &str,
        query: Option<&str>,
    ) -> http::Response<ProxyBody> {
        match self.probe(id, query).await {
            Ok(report) => json_response(StatusCode::OK, &report),
            Err(error) => json_error(error.status(), error.code(), &error.to_string()),
        }
    }

    async fn probe(self: &Arc<Self>, id: &str, query: Option<&str>) -> Result<Json, ProbeError> {
        let params = ProbeParams::from_query(query)?;
        let stored = self.requests.get(id).ok_or(ProbeError::NotFound)?;
        let input = ProbeInput::new(&stored, &params)?;
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(ProbeError::Busy);
        }
        let this = self.clone();
        let id = id.to_owned();
        let runtime = tokio::runtime::Handle::current();
        // KernelSHAP is CPU work between blocking calls to the model: it runs on a
        // blocking thread, never on the threads serving the admin API.
        tokio::task::spawn_blocking(move || {
            let _running = Running(&this.busy);
            let mut send =
                |body: Vec<u8>, rows: usize| runtime.block_on(this.send(&stored, body, rows));
            let outcome = kernel_probe(&input, &mut send)?;
            Ok(report(&id, &stored, &input, &outcome))
        })
        .await
        .map_err(|e| ProbeError::Internal(format!("the probe task failed: {e}")))?
    }

    /// One call to the upstream with a body of `rows` rows; the outputs per row.
    async fn send(
        &self,
        stored: &StoredRequest,
        body: Vec<u8>,
        rows: usize,
    ) -> Result<Vec<Vec<f64>>, ProbeError> {
        self.caller
            .call(
                &stored.target,
                &stored.route.protocol,
                stored.route.response_limit,
                body,
                rows,
            )
            .await
    }
}

fn report(id: &str, stored: &StoredRequest, input: &ProbeInput, kernel: &KernelOutcome) -> Json {
    let empty = Vec::new();
    let surrogate = stored.explanations.get(input.row);
    let contributions = surrogate.map_or(&empty, |s| &s.contributions);
    let attributions = |values: &[f64]| -> Json {
        input
            .names
            .iter()
            .zip(values)
            .map(|(feature, c)| json!({ "feature": feature, "contribution": c }))
            .collect()
    };
    let rank_correlation = spearman(&kernel.values, contributions);
    let largest = input
        .names
        .iter()
        .zip(kernel.values.iter().zip(contributions))
        .map(|(name, (k, s))| (name, *k, *s, (k - s).abs()))
        .max_by(|a, b| a.3.total_cmp(&b.3));
    let scale = kernel.values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let close = largest.is_none_or(|l| l.3 <= MAX_RELATIVE_DIFFERENCE * scale || l.3 <= 1e-9);
    let ranked = rank_correlation.is_none_or(|r| r >= MIN_RANK_CORRELATION);
    let means: serde_json::Map<String, Json> = input
        .names
        .iter()
        .enumerate()
        .filter_map(|(j, name)| {
            let numbers: Option<Vec<f64>> = input
                .background
                .iter()
                .map(|z| match z.get(j) {
                    Some(Value::Number(n)) => Some(*n),
                    _ => None,
                })
                .collect();
            let numbers = numbers.filter(|n| !n.is_empty())?;
            let mean = numbers.iter().sum::<f64>() / numbers.len() as f64;
            Some((name.clone(), json!(mean)))
        })
        .collect();
    json!({
        "request_id": id,
        "route": stored.route.route,
        "row": input.row,
        "surrogate_version": surrogate.map(|s| s.surrogate_version),
        "space": if input.logit { "logit" } else { "output" },
        "max_calls": input.max_calls,
        "calls": kernel.calls,
        "coalitions": kernel.coalitions,
        "exact": input.plan.exact,
        "background": {
            "rows": input.background.len(),
            "source": "training window, spread evenly",
            "numeric_means": means,
        },
        "kernel": {
            "base_value": kernel.base_value,
            "prediction": kernel.prediction,
            "attributions": attributions(&kernel.values),
        },
        "surrogate": {
            "base_value": surrogate.map(|s| s.base_value),
            "prediction": surrogate.map(|s| s.base_value + s.contributions.iter().sum::<f64>()),
            "attributions": attributions(contributions),
        },
        "rank_correlation": rank_correlation,
        "largest_difference": largest.map(|(feature, k, s, d)| json!({
            "feature": feature,
            "kernel": k,
            "surrogate": s,
            "difference": d,
        })),
        "verdict": if close && ranked { "trustworthy" } else { "doubtful" },
        "thresholds": {
            "min_rank_correlation": MIN_RANK_CORRELATION,
            "max_relative_difference": MAX_RELATIVE_DIFFERENCE,
        },
    })
}
