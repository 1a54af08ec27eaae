//! The explain layer: after the upstream has answered, reads the request's features and
//! the model's outputs, feeds the training window, and attaches explanations the way the
//! route (or the request) asks. Whatever goes wrong here, the model's answer goes back
//! unchanged, with `x-sidelight-status` saying why it carries no explanation.
//!
//! A request marked `x-sidelight-probe` by a trusted client (`[server.trust]`; the probe
//! check's own calls carry it too) is explained but never trained on, never monitored
//! and never kept for a later probe; it is still recorded in the audit log like any
//! other. From a client that is not trusted the mark is ignored and counted. It is
//! Sidelight's header and is removed before the request goes upstream either way. So are
//! the other `x-sidelight-*` request headers this layer reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use sidelight_explain::Value;
use tower::{Layer, Service};

use crate::audit::AuditLog;
use crate::body::{ProxyBody, full};
use crate::compute::{Abandoned, ComputePool, Lane, PoolFull};
use crate::config::{AttachMode, Audience, GpcRule, PrivacyConfig, SUBJECT_HEADER};
use crate::error::ProxyError;
use crate::handoff::Handoff;
use crate::headers::REQUEST_ID;
use crate::inspect::{self, Inspection};
use crate::live::model::RowExplanation;
use crate::live::store::{StoredExplanation, StoredRequest};
use crate::live::{Narrate, RecentExplanations, RecentRequests, RouteLive};
use crate::metrics::{ConsentSource, Metrics};
use crate::route::Route;
use crate::trust::Caller;
use sidelight_audit::{Consent, Record};
use sidelight_core::clock::now_ms;
use sidelight_protocol as adapter;

static EXPLAIN: HeaderName = HeaderName::from_static("x-sidelight-explain");
static AUDIENCE: HeaderName = HeaderName::from_static("x-sidelight-audience");
static STATUS: HeaderName = HeaderName::from_static("x-sidelight-status");
static EXPLANATION: HeaderName = HeaderName::from_static("x-sidelight-explanation");
static EXPLANATION_ID: HeaderName = HeaderName::from_static("x-sidelight-explanation-id");
static CONSENT: HeaderName = HeaderName::from_static("x-sidelight-consent");
static SEC_GPC: HeaderName = HeaderName::from_static("sec-gpc");
use crate::review::REVIEW;
/// Marks a request that must not be trained on: see the module docs.
pub static PROBE: HeaderName = HeaderName::from_static("x-sidelight-probe");

#[derive(Clone)]
pub struct ExplainLayer {
    pub recent: Arc<RecentExplanations>,
    pub requests: Arc<RecentRequests>,
    pub audit: Option<Arc<AuditLog>>,
    pub metrics: Arc<Metrics>,
    /// `server.explanation_max_bytes`: the most one request's explanations may weigh
    /// in the reference store.
    pub reference_max_bytes: usize,
    pub pool: Arc<ComputePool>,
}

impl<S> Layer<S> for ExplainLayer {
    type Service = Explain<S>;

    fn layer(&self, inner: S) -> Explain<S> {
        Explain {
            inner,
            recent: self.recent.clone(),
            requests: self.requests.clone(),
            audit: self.audit.clone(),
            metrics: self.metrics.clone(),
            reference_max_bytes: self.reference_max_bytes,
            pool: self.pool.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Explain<S> {
    inner: S,
    recent: Arc<RecentExplanations>,
    requests: Arc<RecentRequests>,
    audit: Option<Arc<AuditLog>>,
    metrics: Arc<Metrics>,
    reference_max_bytes: usize,
    pool: Arc<ComputePool>,
}

// === impl Explain ===

impl<S, B> Service<Request<B>> for Explain<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let trusted = request
            .extensions()
            .get::<Caller>()
            .is_some_and(|caller| caller.trusted);
        // Removed on every route: the header is Sidelight's, never the model's.
        let marked = request.headers_mut().remove(&PROBE).is_some();
        if marked && !trusted {
            self.metrics.limit_hit("untrusted_probe");
        }
        let probe = marked && trusted;
        let live = request
            .extensions()
            .get::<Route>()
            .and_then(|route| route.live.clone());
        let Some(live) = live else {
            return Box::pin(self.inner.call(request));
        };
        let mut ask = Ask::from_request(request.headers_mut(), &live, trusted, &self.metrics);
        ask.probe = probe;
        // Known before the monitor sees the rows, so that outcomes reported for the
        // record later find them (see `record`).
        ask.record_id = request.extensions().get::<RecordId>().map(|r| r.0.clone());
        if let Some(route) = request.extensions().get::<Route>() {
            route.metrics.consent(ask.consent, ask.consent_source).inc();
        }
        if !probe {
            ask.target = request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or_default();
        }
        let received_ms = now_ms();
        let response = self.inner.call(request);
        let recent = self.recent.clone();
        let requests = self.requests.clone();
        let audit = self.audit.clone();
        let reference_max_bytes = self.reference_max_bytes;
        let metrics = self.metrics.clone();
        let pool = self.pool.clone();
        Box::pin(async move {
            let response = response.await?;
            let consent = ask.consent;
            let mut facts = Facts::default();
            let stores = Stores {
                pool: &pool,
                recent: &recent,
                requests: &requests,
                reference_max_bytes,
                metrics: &metrics,
            };
            let mut response =
                augment(&live, stores, audit.as_deref(), ask, &mut facts, response).await;
            let code = response
                .headers()
                .get(&STATUS)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(';').next().unwrap_or_default().trim());
            if let Some(code) = code.filter(|c| *c != "explained") {
                metrics.unexplained(&live.route, code);
            }
            // What the record layer keeps, with an audit log.
            if audit.is_some() {
                response.extensions_mut().insert(Handoff::new(Explained {
                    live,
                    facts,
                    consent,
                    received_ms,
                }));
            }
            Ok(response)
        })
    }
}

/// The id the request's audit record will have, given by the record layer before the
/// request goes on (the explain layer tags the monitor's rows with it).
#[derive(Debug, Clone)]
pub struct RecordId(pub Arc<str>);

/// What the explain layer learned about an explained route's request, handed to the
/// record layer in the response's extensions.
pub struct Explained {
    pub live: Arc<RouteLive>,
    pub facts: Facts,
    pub consent: Consent,
    /// When the request came in (the record's time).
    pub received_ms: i64,
}

/// Where explanations and explained requests are kept for later.
#[derive(Clone, Copy)]
struct Stores<'a> {
    /// Where explanations are computed.
    pool: &'a Arc<ComputePool>,
    recent: &'a RecentExplanations,
    requests: &'a RecentRequests,
    reference_max_bytes: usize,
    /// Where limits that bite are counted.
    metrics: &'a Metrics,
}

/// What the client asked for, with the route's defaults filled in.
struct Ask {
    attach: AttachMode,
    audience: Audience,
    /// The audience the client asked for and was refused (it got `audience`).
    downgraded_from: Option<Audience>,
    /// The client's `Accept-Language`, which picks the narration's language. Left on
    /// the request: the model may use it too.
    accept_language: Option<String>,
    request_id: String,
    /// Marked `x-sidelight-probe`: explained, but not trained on nor kept.
    probe: bool,
    /// The path and query, kept with the rows for the probe check.
    target: String,
    /// What may be stored and trained on.
    consent: Consent,
    consent_source: ConsentSource,
    /// The subject's identifier from the subject header, not yet pseudonymised.
    subject_id: Option<String>,
    /// The request asked for a person to review its prediction.
    review_requested: bool,
    /// The id its audit record will have (with an audit log).
    record_id: Option<Arc<str>>,
    /// The protected attributes the monitor reads from request headers, by their place
    /// in `[routes.monitor] protected`.
    attributes: Option<Box<[Option<String>]>>,
}

impl Ask {
    /// Reads and removes Sidelight's own request headers: they are for Sidelight, not
    /// for the model.
    fn from_request(
        headers: &mut HeaderMap,
        live: &RouteLive,
        trusted: bool,
        metrics: &Metrics,
    ) -> Self {
        // A compressed answer cannot be read for its outputs; every client accepts an
        // uncompressed one, so the model is asked for that on explained routes.
        headers.remove(header::ACCEPT_ENCODING);
        let attach = headers
            .remove(&EXPLAIN)
            .and_then(|v| v.to_str().ok().and_then(AttachMode::from_header))
            .unwrap_or(live.config.attach);
        let asked = headers
            .remove(&AUDIENCE)
            .and_then(|v| v.to_str().ok().and_then(Audience::from_header))
            .unwrap_or(live.config.audience);
        // Developer and auditor views show protected attributes' contributions, the
        // record id and consent: only for audiences the route lists, and only to a
        // trusted client unless the route serves that view to everyone.
        let permitted = asked == live.config.audience
            || (live.config.audience_allowed(asked) && (trusted || asked == Audience::Customer));
        let (audience, downgraded_from) = if permitted {
            (asked, None)
        } else {
            metrics.limit_hit("audience");
            (live.config.audience, Some(asked))
        };
        let accept_language = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let request_id = headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // Sidelight's own header is removed; a business's own (x-customer-id) is the
        // model's to see as before.
        let subject_id = if live.subject_header == SUBJECT_HEADER {
            headers.remove(&live.subject_header)
        } else {
            headers.get(&live.subject_header).cloned()
        }
        .and_then(|v| v.to_str().ok().map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty());
        let (consent, consent_source) = consent(headers, &live.privacy);
        let review_requested = live.review_header.as_ref().is_some_and(|name| {
            let value = if name == REVIEW {
                headers.remove(name)
            } else {
                headers.get(name).cloned()
            };
            value.is_some_and(|v| {
                let v = v.as_bytes().trim_ascii();
                !v.is_empty() && v != b"0" && !v.eq_ignore_ascii_case(b"false")
            })
        });
        let attributes = live.monitor.as_ref().and_then(|monitor| {
            let from_headers = monitor.header_attributes();
            if from_headers.is_empty() {
                return None;
            }
            let mut values = vec![None; monitor.protected_count()];
            let mut refused = false;
            for (k, name) in from_headers {
                // Sidelight's own headers are for Sidelight: the model must not see a
                // protected attribute it was not meant to have.
                let value = if name.as_str().starts_with("x-sidelight-") {
                    headers.remove(&name)
                } else {
                    headers.get(&name).cloned()
                };
                // A client that is not trusted could otherwise place its decisions in
                // whichever group it liked.
                if value.is_some() && !trusted {
                    refused = true;
                    continue;
                }
                values[k] = value
                    .and_then(|v| v.to_str().ok().map(|v| v.trim().to_owned()))
                    .filter(|v| !v.is_empty());
            }
            if refused {
                metrics.limit_hit("untrusted_attribute");
            }
            Some(values.into_boxed_slice())
        });
        Self {
            attributes,
            attach,
            audience,
            downgraded_from,
            accept_language,
            request_id,
            probe: false,
            target: String::new(),
            consent,
            consent_source,
            subject_id,
            review_requested,
            record_id: None,
        }
    }
}

/// The consent a request carries, and where it came from. `x-sidelight-consent` is
/// Sidelight's header and is removed. `Sec-GPC: 1` (Global Privacy Control) means what
/// the route says (`none` unless configured otherwise) and, being the person's standing
/// choice, wins over a header asking for more. A consent value that is not understood
/// is taken as `none`: a typo must not store what the client meant to withhold.
fn consent(headers: &mut HeaderMap, privacy: &PrivacyConfig) -> (Consent, ConsentSource) {
    let asked = headers.remove(&CONSENT).map(|value| {
        match value.to_str().map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if v == "full" => Consent::Full,
            Ok(v) if v == "explain-only" || v == "explain_only" => Consent::ExplainOnly,
            _ => Consent::None,
        }
    });
    let gpc = headers
        .get(&SEC_GPC)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    let gpc_consent = match privacy.gpc {
        GpcRule::None if gpc => Some(Consent::None),
        GpcRule::ExplainOnly if gpc => Some(Consent::ExplainOnly),
        _ => None,
    };
    let (asked, source) = match asked {
        Some(c) => (c, ConsentSource::Header),
        None => (privacy.consent_default, ConsentSource::Default),
    };
    match gpc_consent {
        Some(g) if rank(g) < rank(asked) => (g, ConsentSource::Gpc),
        _ => (asked, source),
    }
}

/// How much a consent allows: none < explain-only < full.
fn rank(consent: Consent) -> u8 {
    match consent {
        Consent::None => 0,
        Consent::ExplainOnly => 1,
        Consent::Full => 2,
    }
}

/// What the explain layer learned about a request, for its audit record. Filled as far
/// as the request got: a pass-through leaves the later fields empty.
#[derive(Default)]
pub struct Facts {
    /// Why the prediction goes to review (empty: it does not).
    pub review_reasons: Vec<String>,
    /// The response body as sent, when Sidelight read it whole (to add a reviewer's
    /// decision to it while holding).
    pub body: Option<Bytes>,
    /// The pseudonymous subject.
    subject: Option<Arc<str>>,
    request: Option<Bytes>,
    response: Option<Bytes>,
    features: Option<serde_json::Value>,
    outputs: Option<serde_json::Value>,
    surrogate_version: Option<u64>,
    /// What the record's attributions are written from, on the audit writer's thread.
    attributions: Option<AttributionSource>,
    texts: Option<Vec<String>>,
    /// The reference Sidelight kept this request's explanations under, if it did.
    reference: Option<String>,
}

/// A request's explained rows, kept as they are until the audit writer writes the
/// record's attributions from them (see [`record_attributions`]): the request does not
/// wait for that JSON.
struct AttributionSource {
    model: Arc<crate::live::LiveModel>,
    rows: Arc<Vec<Vec<Value>>>,
    explanations: Vec<RowExplanation>,
    audience: Audience,
}

impl Facts {
    /// The record, with the route's privacy policy applied to everything it keeps.
    /// `model` is the model's identity in the log ([`AuditLog::model`]). Run on the audit
    /// writer's thread (see `sidelight_audit::Pending`): it must not block.
    pub fn into_record(
        self,
        id: String,
        time_ms: i64,
        live: &RouteLive,
        keys: &sidelight_audit::Keys,
        model: String,
        consent: Consent,
    ) -> Record {
        let policy = &live.policy;
        let mut record = Record::new(id, time_ms, &live.route, model);
        record.consent = consent;
        record.surrogate_version = self.surrogate_version;
        if !self.review_reasons.is_empty() {
            record.review_state = "pending".to_owned();
            record.review_reasons = self.review_reasons;
        }
        record.outputs = self.outputs;
        // Under `none` nothing identifying is kept: no payloads, no features, no
        // subject, and no attributions or texts either, since those carry the person's
        // feature values ("your income of …"). The model's outputs stay: they say what
        // was decided, which is what the log is for.
        if consent == Consent::None {
            return record;
        }
        record.subject = self.subject.map(|s| s.to_string());
        // The feature rows as the adapter read them: what the policy looks for in the
        // payloads and texts (a policy that keeps everything needs none of this).
        let (names, rows): (Vec<String>, Vec<Vec<serde_json::Value>>) = match self
            .features
            .as_ref()
            .filter(|_| !policy.keeps_everything())
        {
            Some(f) => (
                serde_json::from_value(f["names"].clone()).unwrap_or_default(),
                f["rows"]
                    .as_array()
                    .map(|rows| {
                        rows.iter()
                            .map(|r| r.as_array().cloned().unwrap_or_default())
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            None => Default::default(),
        };
        let mut present: Vec<&str> = policy.restricted(&names);
        if let Some(field) = live.privacy.subject_field.as_deref() {
            if !matches!(policy.rule(field), sidelight_audit::FieldRule::Keep) {
                present.push(field);
            }
        }
        record.request = self
            .request
            .and_then(|b| policy.apply_payload(&b, &present, keys));
        record.response = self
            .response
            .and_then(|b| policy.apply_payload(&b, &[], keys));
        record.features = self.features.map(|mut f| {
            if !policy.keeps_everything() {
                let mut kept = rows.clone();
                policy.apply_rows(&names, &mut kept, keys);
                f["rows"] = kept.into_iter().map(serde_json::Value::Array).collect();
            }
            f
        });
        record.attributions = self.attributions.map(|source| {
            let mut a = record_attributions(
                &source.model,
                &source.rows,
                &source.explanations,
                source.audience,
            );
            policy.apply_attributions(&mut a, keys);
            // What the caller was shown is kept with the attributions too, under the
            // same rule as the record's texts.
            if let serde_json::Value::Array(explained) = &mut a {
                for shown in explained.iter_mut().filter_map(|r| r.get_mut("shown")) {
                    for key in ["text", "next_step"] {
                        let quotes = shown[key]
                            .as_str()
                            .is_some_and(|t| policy.text_quotes(t, &names, &rows));
                        if quotes {
                            shown[key] = serde_json::Value::String(WITHHELD_TEXT.to_owned());
                        }
                    }
                }
            }
            a
        });
        record.texts = self.texts.map(|texts| {
            texts
                .into_iter()
                .map(|t| {
                    if policy.text_quotes(&t, &names, &rows) {
                        WITHHELD_TEXT.to_owned()
                    } else {
                        t
                    }
                })
                .collect()
        });
        record
    }
}

/// The attributions an audit record keeps: every feature's contribution with its value,
/// whatever the audience was shown (a customer sees a few reasons and "other factors";
/// an auditor must be able to see all of them, and any audience's text can be written
/// again from this), plus what the caller was shown.
fn record_attributions(
    model: &crate::live::LiveModel,
    rows: &[Vec<Value>],
    explanations: &[RowExplanation],
    audience: Audience,
) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = explanations
        .iter()
        .zip(rows)
        .map(|(e, row)| {
            let mut contributions: Vec<serde_json::Value> = model
                .names()
                .iter()
                .zip(row)
                .zip(&e.schema_contributions)
                .map(|((feature, value), c)| {
                    serde_json::json!({ "feature": feature, "value": value, "contribution": c })
                })
                .collect();
            contributions.sort_by(|a, b| {
                let size = |v: &serde_json::Value| v["contribution"].as_f64().unwrap_or(0.0).abs();
                size(b).total_cmp(&size(a))
            });
            let mut kept = serde_json::json!({
                "surrogate_version": e.surrogate_version,
                "output": e.output,
                "space": e.space,
                "base_value": e.base_value,
                "prediction": e.prediction,
                "surrogate_prediction": e.surrogate_prediction,
                "threshold": e.threshold,
                "fidelity": e.fidelity,
                "attributions": contributions,
                "shown": {
                    "audience": audience,
                    "locale": e.locale,
                    "text": e.text,
                    "next_step": e.next_step,
                    "caveat": e.caveat,
                    "withheld_reason": e.withheld_reason,
                    "reason_codes": e.reason_codes,
                },
            });
            // A ranking's shown item: its rank, candidate and id.
            if let (Some(item), Some(object)) = (&e.item, kept.as_object_mut()) {
                object.insert("item".to_owned(), serde_json::json!(item));
            }
            kept
        })
        .collect();
    serde_json::Value::Array(rows)
}

/// Stored in place of a text that quotes a value the privacy policy does not keep.
const WITHHELD_TEXT: &str = "[not stored: the text quotes a field the privacy policy restricts]";

/// The subject's identifier: the subject header, else the first `subject_field` member
/// of the request body.
fn subject_identifier(live: &RouteLive, header: Option<String>, request: &[u8]) -> Option<String> {
    if header.is_some() {
        return header;
    }
    let field = live.privacy.subject_field.as_deref()?;
    let body: serde_json::Value = serde_json::from_slice(request).ok()?;
    find_member(&body, field).and_then(|v| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn find_member<'a>(value: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map
            .get(name)
            .or_else(|| map.values().find_map(|v| find_member(v, name))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_member(v, name)),
        _ => None,
    }
}

/// What the compute pool needs to explain a request's rows, shared by its chunks, so
/// that the data worker is free while they run.
struct ExplainJob {
    /// In the surrogate's order.
    rows: Arc<Vec<Vec<Value>>>,
    outputs: Vec<Vec<f64>>,
    live: Arc<RouteLive>,
    model: Arc<crate::live::LiveModel>,
    request_id: String,
    audience: Audience,
    locale: sidelight_narrate::Locale,
    consent: Consent,
    audited: bool,
    abandoned: Abandoned,
    /// No next step is searched for after this (`limits.next_step_budget`).
    next_steps_until: std::time::Instant,
}

/// Rows of a request explained per turn on the compute pool: small enough that a large
/// batch lets other requests in between, large enough to cost little in hand-offs.
const ROWS_PER_CHUNK: usize = 16;

/// A request body up to this size, with rows that fit one chunk, has its work queued in
/// the compute pool's small lane, ahead of large requests.
const SMALL_REQUEST_BYTES: usize = 16 * 1024;

/// A request and answer this small together (a row or two) are read and explained on
/// the data worker itself: the work is a few tens of microseconds, less than handing it
/// to a compute thread and back costs, and the row and feature caps bound it.
const INLINE_BYTES: usize = 4 * 1024;

/// Rows of a request explained on the data worker at most.
const INLINE_MAX_ROWS: usize = 2;

/// A route whose budget is tighter than this has every request explained on the pool,
/// where the budget is enforced to the letter.
const INLINE_MIN_BUDGET: std::time::Duration = std::time::Duration::from_millis(5);

impl ExplainJob {
    /// A job for `ask`'s request, its rows and outputs still to be given; its next-step
    /// budget starts now.
    fn new(
        live: &Arc<RouteLive>,
        model: Arc<crate::live::LiveModel>,
        ask: &Ask,
        audited: bool,
    ) -> Self {
        Self {
            rows: Arc::new(Vec::new()),
            outputs: Vec::new(),
            live: live.clone(),
            model,
            request_id: ask.request_id.clone(),
            audience: ask.audience,
            locale: live.narrator.negotiate(ask.accept_language.as_deref()),
            consent: ask.consent,
            audited,
            abandoned: Abandoned::default(),
            next_steps_until: std::time::Instant::now() + live.config.limits.next_step_budget,
        }
    }

    /// For a small request read in the same turn: its rows in the surrogate's order and
    /// their explanations, when there are at most `max_rows` and the route may explain
    /// them now; `None` leaves it to the worker's checks (row cap, output shape) and the
    /// chunked path.
    fn explain_all(mut self, prepared: &Prepared, max_rows: usize) -> Option<ExplainedAtOnce> {
        let width = self.model.surrogate.output().n_outputs();
        let rows = &prepared.rows;
        if rows.rows.len() > max_rows
            || rows.rows.len() > self.live.config.limits.max_rows
            || prepared.outputs.iter().any(|o| o.len() != width)
        {
            return None;
        }
        self.rows = Arc::new(self.live.schema_order(&rows.names, &self.model, &rows.rows));
        self.outputs = prepared.outputs.clone();
        let explained = self.explain(0..self.rows.len());
        Some((self.rows, explained))
    }

    /// Explains the rows in `range`.
    fn explain(&self, range: std::ops::Range<usize>) -> Vec<Result<RowExplanation, String>> {
        let narrate = Narrate {
            audience: self.audience,
            locale: &self.locale,
            narrator: &self.live.narrator,
            overrides: &self.live.overrides,
            config: &self.live.config,
            consent: self.consent,
            audited: self.audited,
            next_steps_until: Some(self.next_steps_until),
        };
        range
            .map(|i| {
                if self.abandoned.is_set() {
                    return Err("abandoned: the request's budget ran out".to_owned());
                }
                let (Some(row), Some(output)) = (self.rows.get(i), self.outputs.get(i)) else {
                    return Err(format!("no row {i}"));
                };
                self.model
                    .explain(format!("{}:{i}", self.request_id), row, output, &narrate)
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// A small request's rows in the surrogate's order with their explanations, made in the
/// same turn as reading it.
type ExplainedAtOnce = (Arc<Vec<Vec<Value>>>, Vec<Result<RowExplanation, String>>);

/// Reads the request and the model's answer and, given a job, explains their rows in the
/// same turn when there are at most `max_rows` of them (else the caller explains them in
/// chunks).
fn read_and_explain(
    live: &RouteLive,
    request_bytes: &[u8],
    response_bytes: &[u8],
    target: &str,
    job: Option<ExplainJob>,
    max_rows: usize,
) -> (Result<Prepared, String>, Option<ExplainedAtOnce>) {
    let prepared = prepare(live, request_bytes, response_bytes, target);
    let explained = match (&prepared, job) {
        (Ok(read), Some(job)) => job.explain_all(read, max_rows),
        _ => None,
    };
    (prepared, explained)
}

/// A request's rows and the model's outputs, read on the compute pool. On a ranking
/// route, `rows` and `outputs` are the shown items', in rank order, and `ranking` holds
/// the rest.
struct Prepared {
    rows: sidelight_protocol::Rows,
    outputs: Vec<Vec<f64>>,
    ranking: Option<Shown>,
    /// The features as the audit record keeps them (before any text is cut).
    features: Option<serde_json::Value>,
    outputs_json: Option<serde_json::Value>,
}

/// Parses the request and the model's answer in the route's protocol and names the
/// columns; or the `x-sidelight-status` saying why they cannot be explained. Text values
/// past `limits.max_cell_bytes` are cut before the rows reach anything that keeps them
/// (the training window, the monitor, the probe check's store); the audit record's
/// features are taken before, and its payload is the request as sent.
fn prepare(
    live: &RouteLive,
    request_bytes: &[u8],
    response_bytes: &[u8],
    target: &str,
) -> Result<Prepared, String> {
    // Adapter errors name where a body was wrong, never a value: the log may say it.
    let unread = |error: &dyn std::fmt::Display, reason: &str| {
        tracing::debug!(route = %live.route, %error, "not explained: {reason}");
        reason.to_owned()
    };
    let (mut rows, ids) = match &live.protocol {
        sidelight_protocol::Protocol::Ranking { shape, .. } => {
            let read = adapter::parse_ranking_request(shape, request_bytes)
                .map_err(|error| unread(&error, error.reason()))?;
            (read.rows, read.ids)
        }
        protocol => (
            adapter::parse_request(protocol, request_bytes)
                .map_err(|error| unread(&error, error.reason()))?,
            None,
        ),
    };
    live.map_columns(&mut rows)
        .map_err(|problem| problem.status())?;
    if live.columns.wants_extras() {
        if let Some(extras) = adapter::request_extras(&live.protocol, request_bytes) {
            live.columns.set_extras(extras, target);
        }
    }
    let (mut outputs, order) = match &live.protocol {
        sidelight_protocol::Protocol::Ranking { answer, .. } => {
            let read = adapter::parse_ranking_answer(
                answer,
                response_bytes,
                ids.as_deref(),
                rows.rows.len(),
            )
            .map_err(|error| unread(&error, error.reason()))?;
            (read.outputs, read.order)
        }
        protocol => (
            adapter::parse_response(protocol, response_bytes, rows.rows.len())
                .map_err(|error| unread(&error, error.reason()))?,
            None,
        ),
    };
    let ranking = match &live.config.ranking {
        Some(config) => Some(Shown::select(
            config.top_k,
            live.config.limits.max_rows,
            &mut rows.rows,
            &mut outputs.rows,
            ids,
            order,
        )?),
        None => None,
    };
    let features = serde_json::to_value(&rows.rows)
        .ok()
        .map(|rows_json| serde_json::json!({ "names": rows.names, "rows": rows_json }));
    let outputs_json = serde_json::to_value(&outputs.rows).ok();
    let max_cell = live.config.limits.max_cell_bytes;
    for value in rows.rows.iter_mut().flatten() {
        crate::live::cut_text(value, max_cell);
    }
    Ok(Prepared {
        rows,
        outputs: outputs.rows,
        ranking,
        features,
        outputs_json,
    })
}

/// A shown ranking as exposure counts it: the customer's group per protected attribute
/// (a feature of the first shown row, every row having the context; or a header's) and
/// each shown row's item group.
fn shown_ranking(
    monitor: &crate::monitor::RouteMonitor,
    item_feature: &str,
    shown: &sidelight_protocol::Rows,
    attributes: Option<&[Option<String>]>,
    subject: Option<Arc<str>>,
) -> crate::monitor::ShownRanking {
    let column = |feature: &str| shown.names.iter().position(|n| n == feature);
    let item_column = column(item_feature);
    let groups = monitor
        .config
        .protected
        .iter()
        .enumerate()
        .map(|(k, p)| {
            if p.is_feature() {
                let value = column(&p.feature).and_then(|i| shown.rows.first()?.get(i))?;
                Some(crate::monitor::group_label(p, value))
            } else {
                attributes?.get(k)?.clone()
            }
        })
        .collect();
    let items = shown
        .rows
        .iter()
        .map(|row| {
            item_column
                .and_then(|i| row.get(i))
                .filter(|v| !matches!(v, Value::Missing))
                .map(crate::monitor::value_text)
        })
        .collect();
    crate::monitor::ShownRanking {
        groups,
        items,
        subject,
        at: now_ms(),
    }
}

/// The items a ranking route showed (the top `k` by score), and the candidates it did
/// not, which are still learned from.
struct Shown {
    /// Per shown item, in rank order.
    items: Vec<crate::live::model::ShownItem>,
    /// The other candidates' rows and outputs.
    rest_rows: Vec<Vec<Value>>,
    rest_outputs: Vec<Vec<f64>>,
}

impl Shown {
    /// Keeps the first `k` of `rows` as shown in `rows` and `outputs`, in rank order,
    /// and the rest aside. The order is a ranked answer's own (`order`, the candidates'
    /// positions best first: what the customer sees, re-ranked or not), else the scores'
    /// (the output; of two, the second, the positive class), ties in request order.
    /// More candidates than `max_rows`: `too_many_rows`.
    fn select(
        k: usize,
        max_rows: usize,
        rows: &mut Vec<Vec<Value>>,
        outputs: &mut Vec<Vec<f64>>,
        ids: Option<Vec<String>>,
        order: Option<Vec<usize>>,
    ) -> Result<Self, String> {
        let n = rows.len();
        if n > max_rows {
            return Err(format!("too_many_rows; rows={n}, max_rows={max_rows}"));
        }
        let score = |o: &Vec<f64>| match o.as_slice() {
            [s] | [_, s] => Some(*s).filter(|s| s.is_finite()),
            _ => None,
        };
        let mut scores = Vec::with_capacity(n);
        for o in outputs.iter() {
            scores.push(score(o).ok_or_else(|| "ranking_score_not_single".to_owned())?);
        }
        let order = order.filter(|o| o.len() == n).unwrap_or_else(|| {
            let mut by_score: Vec<usize> = (0..n).collect();
            by_score.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            by_score
        });
        let shown = k.min(n);
        let mut taken_rows: Vec<Option<Vec<Value>>> =
            std::mem::take(rows).into_iter().map(Some).collect();
        let mut taken_outputs: Vec<Option<Vec<f64>>> =
            std::mem::take(outputs).into_iter().map(Some).collect();
        let mut items = Vec::with_capacity(shown);
        for (rank, &i) in order.iter().take(shown).enumerate() {
            let (Some(row), Some(output)) = (
                taken_rows.get_mut(i).and_then(Option::take),
                taken_outputs.get_mut(i).and_then(Option::take),
            ) else {
                return Err("ranking_order_invalid".to_owned());
            };
            rows.push(row);
            outputs.push(output);
            items.push(crate::live::model::ShownItem {
                rank: rank + 1,
                candidate: i,
                id: ids.as_ref().and_then(|ids| ids.get(i).cloned()),
            });
        }
        Ok(Self {
            items,
            rest_rows: taken_rows.into_iter().flatten().collect(),
            rest_outputs: taken_outputs.into_iter().flatten().collect(),
        })
    }
}

/// Counts a batch the training window refused; a change of output width is the
/// model's doing, not a limit, and only logged.
fn count_refusal(metrics: &Metrics, refused: crate::live::Refused) {
    match refused.limit() {
        Some(limit) => metrics.limit_hit(limit),
        None => tracing::debug!("outputs per row changed; batch not used for training"),
    }
}

/// Why a response carries no explanation; the value of `x-sidelight-status`.
fn pass_through(mut response: Response<ProxyBody>, reason: &str) -> Response<ProxyBody> {
    if let Ok(value) = HeaderValue::from_str(reason) {
        response.headers_mut().insert(STATUS.clone(), value);
    }
    response
}

async fn augment(
    live: &Arc<RouteLive>,
    stores: Stores<'_>,
    audit: Option<&AuditLog>,
    ask: Ask,
    facts: &mut Facts,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let (parts, body, request_bytes, response_bytes) =
        match read_exchange(live, audit, &ask, facts, response).await {
            Ok(read) => read,
            Err(answer) => return answer,
        };
    let rebuild = |parts, body| Response::from_parts(parts, body);
    let metrics = stores.metrics;
    // Everything from here on that costs CPU in proportion to the request (parsing it
    // and the answer, explaining its rows) runs on the compute pool, within one budget;
    // this worker only waits, and goes on forwarding other requests meanwhile.
    let budget = live.config.limits.budget;
    let deadline = tokio::time::Instant::now() + budget;
    let over_budget = || {
        metrics.limit_hit("budget");
        format!(
            "explain_budget_exceeded; budget={}",
            humantime::format_duration(budget)
        )
    };
    let lane = if request_bytes.len() <= SMALL_REQUEST_BYTES {
        Lane::Small
    } else {
        Lane::Large
    };
    let model = live.model.load_full();
    // A small request is read and explained in one turn on the pool (one hand-off, not
    // two); a larger one is read first, then explained in chunks.
    let at_once = model
        .clone()
        // A ranking's shown items are explained one per pool task, in parallel (below).
        .filter(|_| {
            lane == Lane::Small && ask.attach != AttachMode::Off && live.config.ranking.is_none()
        })
        .map(|model| ExplainJob::new(live, model, &ask, audit.is_some()));
    let inline =
        request_bytes.len() + response_bytes.len() <= INLINE_BYTES && budget >= INLINE_MIN_BUDGET;
    let (prepared, explained_at_once) = if inline {
        // A row or two: read and explained here, at less cost than the hand-off to a
        // compute thread and back would add. More rows in these few bytes go to the
        // pool in chunks, as a larger request's do.
        let work = std::panic::AssertUnwindSafe(|| {
            read_and_explain(
                live,
                &request_bytes,
                &response_bytes,
                &ask.target,
                at_once,
                INLINE_MAX_ROWS,
            )
        });
        match std::panic::catch_unwind(work) {
            Ok((prepared, explained)) => (Some(prepared), explained),
            // As on the pool: a bug in one explanation costs that explanation only.
            Err(_) => {
                tracing::error!("an explanation task panicked");
                return pass_through(rebuild(parts, body), "explain_failed");
            }
        }
    } else {
        let (live, target) = (live.clone(), ask.target.clone());
        let (request_bytes, response_bytes) = (request_bytes.clone(), response_bytes.clone());
        let at_once = std::sync::Mutex::new(at_once);
        let submitted = stores.pool.submit_chunked(lane, 1, 1, move |_| {
            let job = at_once.lock().ok().and_then(|mut job| job.take());
            vec![read_and_explain(
                &live,
                &request_bytes,
                &response_bytes,
                &target,
                job,
                ROWS_PER_CHUNK,
            )]
        });
        match submitted {
            Err(PoolFull) => {
                metrics.limit_hit("compute_queue");
                return pass_through(rebuild(parts, body), "explain_overloaded");
            }
            Ok(done) => match tokio::time::timeout_at(deadline, done).await {
                Ok(Ok(mut done)) => done.pop().map_or((None, None), |(p, e)| (Some(p), e)),
                Ok(Err(_)) => (None, None),
                Err(_) => return pass_through(rebuild(parts, body), &over_budget()),
            },
        }
    };
    let Prepared {
        rows,
        outputs,
        ranking,
        features,
        outputs_json,
    } = match prepared {
        Some(Ok(prepared)) => prepared,
        Some(Err(status)) => return pass_through(rebuild(parts, body), &status),
        None => return pass_through(rebuild(parts, body), "explain_failed"),
    };
    facts.features = features;
    let subject = facts.subject.clone();
    facts.outputs = outputs_json;
    // Only full consent lets a row into the training window.
    let train = !ask.probe && ask.consent == Consent::Full;

    let max_rows = live.config.limits.max_rows;
    if rows.rows.len() > max_rows {
        metrics.limit_hit("max_rows");
        let status = format!(
            "too_many_rows; rows={}, max_rows={max_rows}",
            rows.rows.len()
        );
        return pass_through(rebuild(parts, body), &status);
    }
    // A ranking shown to a customer counts for exposure, explained or not (warm-up,
    // attach = off, a spent budget): their group and each shown item's group, in rank
    // order. Not probes, not consent `none`.
    if let (Some(monitor), Some(_)) = (live.monitor.as_ref(), ranking.as_ref()) {
        if let Some(item_feature) = monitor
            .item_feature()
            .filter(|_| !ask.probe && ask.consent != Consent::None && !rows.rows.is_empty())
        {
            monitor.push_ranking(shown_ranking(
                monitor,
                item_feature,
                &rows,
                ask.attributes.as_deref(),
                subject.clone(),
            ));
        }
    }
    // A ranking's surrogate learns every candidate's score, not only the shown ones'.
    let (rest_rows, rest_outputs, shown_items) = match ranking {
        Some(Shown {
            items,
            rest_rows,
            rest_outputs,
        }) => (rest_rows, rest_outputs, Some(items)),
        None => (Vec::new(), Vec::new(), None),
    };
    let learn = |mut rows: Vec<Vec<Value>>, mut outputs: Vec<Vec<f64>>| {
        rows.extend(rest_rows);
        outputs.extend(rest_outputs);
        (rows, outputs)
    };
    if ask.attach == AttachMode::Off {
        // Nothing will be attached: learn from the traffic, spend nothing on explaining.
        if train {
            let (all_rows, all_outputs) = learn(rows.rows, outputs);
            if let Err(refused) = live.observe(&rows.names, all_rows, all_outputs, subject.as_ref())
            {
                count_refusal(metrics, refused);
            }
        }
        return pass_through(rebuild(parts, body), "observed; attach=off");
    }
    if let Some(model) = &model {
        let width = model.surrogate.output().n_outputs();
        // The same route can answer differently per request (MLServer returns labels
        // unless asked for probabilities): a surrogate of probabilities cannot explain a
        // label, so such answers pass through rather than get a misleading explanation.
        if outputs.iter().any(|o| o.len() != width) {
            return pass_through(rebuild(parts, body), "output_shape_changed");
        }
    }
    // The rows are explained on the compute pool while this worker trains on them and
    // goes on serving; the answer waits for them until the budget's deadline.
    let mut ordered = Arc::new(Vec::new());
    let mut ready = None;
    if let Some((rows_in_order, explained)) = explained_at_once {
        ordered = rows_in_order;
        ready = Some(explained);
    }
    let submitted = model.as_ref().filter(|_| ready.is_none()).map(|model| {
        ordered = Arc::new(live.schema_order(&rows.names, model, &rows.rows));
        let mut job = ExplainJob::new(live, model.clone(), &ask, audit.is_some());
        job.rows = ordered.clone();
        job.outputs = outputs.clone();
        let abandoned = job.abandoned.clone();
        let len = job.rows.len();
        // Each shown item of a ranking on a pool thread of its own: the customer waits
        // for the slowest item, not for their sum.
        let chunk = if live.config.ranking.is_some() {
            1
        } else {
            ROWS_PER_CHUNK
        };
        let lane = if len > ROWS_PER_CHUNK {
            Lane::Large
        } else {
            lane
        };
        stores
            .pool
            .submit_chunked(lane, len, chunk, move |range| job.explain(range))
            .map(|done| (done, abandoned))
    });
    // Probe calls (and requests marked like them) ask about made-up rows: training on
    // them would teach the surrogate a distribution that is not the traffic's.
    if train {
        let (all_rows, all_outputs) = learn(rows.rows, outputs);
        if let Err(refused) = live.observe(&rows.names, all_rows, all_outputs, subject.as_ref()) {
            count_refusal(metrics, refused);
        }
    }

    let done = match (ready, submitted) {
        (Some(done), _) => done,
        (None, None) => {
            let status = live.no_surrogate_status();
            return pass_through(rebuild(parts, body), &status);
        }
        (None, Some(Err(PoolFull))) => {
            metrics.limit_hit("compute_queue");
            return pass_through(rebuild(parts, body), "explain_overloaded");
        }
        (None, Some(Ok((done, abandoned)))) => {
            match tokio::time::timeout_at(deadline, done).await {
                Ok(Ok(done)) => done,
                // The job panicked (and was logged); the request loses only its explanation.
                Ok(Err(_)) => return pass_through(rebuild(parts, body), "explain_failed"),
                Err(_) => {
                    abandoned.set();
                    return pass_through(rebuild(parts, body), &over_budget());
                }
            }
        }
    };
    let mut explanations = match done.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(explanations) => explanations,
        Err(error) => {
            tracing::debug!(route = %live.route, %error, "explanation failed");
            return pass_through(rebuild(parts, body), "explain_failed");
        }
    };
    if let Some(items) = shown_items {
        for (e, item) in explanations.iter_mut().zip(items) {
            e.item = Some(item);
        }
    }
    let skipped = explanations.iter().filter(|e| e.next_step_skipped).count();
    if skipped > 0 {
        metrics.limit_hit("next_step_budget");
    }
    // The monitor watches the traffic's own, consented rows: not probes, not `none`.
    if let (Some(monitor), Some(model)) = (live.monitor.as_ref(), model.as_ref()) {
        if !ask.probe && ask.consent != Consent::None {
            let higher = live.config.decision.higher_is_favourable;
            let now = now_ms();
            monitor.push(
                model.names(),
                ordered
                    .iter()
                    .zip(&explanations)
                    .enumerate()
                    .map(|(i, (row, e))| crate::monitor::Observation {
                        row: Arc::from(row.as_slice()),
                        prediction: e.prediction,
                        favourable: if higher {
                            e.prediction >= e.threshold
                        } else {
                            e.prediction <= e.threshold
                        },
                        record: ask.record_id.clone(),
                        index: u32::try_from(i).unwrap_or(u32::MAX),
                        subject: subject.clone(),
                        attributions: Arc::from(e.schema_contributions.as_slice()),
                        threshold: e.threshold,
                        higher_is_favourable: higher,
                        at: now,
                        outcome: None,
                        attributes: ask.attributes.clone(),
                    }),
            );
        }
    }
    // The queue lives in the audit log: without one there is nothing to review in.
    if let (Some(model), Some(audit)) = (model.as_ref(), audit) {
        if !ask.probe && (live.review.any() || ask.review_requested) {
            facts.review_reasons = crate::review::reasons(
                &live.review,
                live,
                &audit.reviews,
                model,
                &ordered,
                &explanations,
                ask.review_requested,
            );
        }
    }
    facts.surrogate_version = explanations.first().map(|e| e.surrogate_version);
    facts.texts = Some(explanations.iter().filter_map(|e| e.text.clone()).collect());
    // Rows kept for the probe check are features too: not under `none`. They are kept
    // under the record id when there is one (unique, made by the record layer), else
    // under the request id, and never replace what is kept under that id already: a
    // client that repeats another's id must not swap in its own rows.
    let key = ask
        .record_id
        .as_deref()
        .map_or_else(|| ask.request_id.clone(), str::to_owned);
    let keep = !ask.probe && !key.is_empty() && ask.consent != Consent::None;
    if let Some(model) = model.as_ref().filter(|_| keep) {
        let stored = StoredRequest {
            route: live.clone(),
            target: ask.target.clone(),
            names: model.names().to_vec(),
            rows: ordered.clone(),
            explanations: explanations
                .iter()
                .map(|e| StoredExplanation {
                    surrogate_version: e.surrogate_version,
                    output: e.output,
                    logit: e.space == "logit",
                    base_value: e.base_value,
                    contributions: e.schema_contributions.clone(),
                })
                .collect(),
        };
        let bytes = stored
            .rows
            .iter()
            .map(|row| crate::live::row_weight(row))
            .sum();
        stores
            .requests
            .insert_new(key, Arc::new(stored), bytes, subject.clone());
    }
    let mut response = attach(
        live,
        parts,
        &response_bytes,
        &explanations,
        &ask,
        stores,
        subject,
        facts,
    );
    // A ranking kept by reference keeps its shown items' full attributions beside it,
    // for `GET /v1/explanations/{ref}/compare`.
    // Keyed on the reference kept just now, never on a header the model may have sent.
    if let (Some(model), Some(reference)) = (
        model.as_ref().filter(|_| live.config.ranking.is_some()),
        facts.reference.clone(),
    ) {
        if let Some(json) = crate::compare::kept(live, model, &ordered, &explanations, ask.audience)
            .filter(|json| json.len() <= stores.reference_max_bytes)
        {
            let weight = json.len();
            stores.recent.insert_new(
                crate::compare::key(&reference),
                Bytes::from(json),
                weight,
                facts.subject.clone(),
            );
        }
    }
    if let (Some(model), true) = (model, audit.is_some()) {
        facts.attributions = Some(AttributionSource {
            model,
            rows: ordered,
            explanations,
            audience: ask.audience,
        });
    }
    if skipped > 0 {
        let status = response
            .headers()
            .get(&STATUS)
            .and_then(|v| v.to_str().ok())
            .map(|s| format!("{s}; next_steps_skipped={skipped}"));
        if let Some(value) = status.and_then(|s| HeaderValue::from_str(&s).ok()) {
            response.headers_mut().insert(STATUS.clone(), value);
        }
    }
    response
}

/// The request's and the model's answer's bytes, when both can be read whole (within
/// the route's limits) and the answer is a successful, uncompressed JSON one; otherwise
/// the answer to send on as it is, with `x-sidelight-status` saying why.
async fn read_exchange(
    live: &RouteLive,
    audit: Option<&AuditLog>,
    ask: &Ask,
    facts: &mut Facts,
    response: Response<ProxyBody>,
) -> Result<(http::response::Parts, ProxyBody, Bytes, Bytes), Response<ProxyBody>> {
    let (mut parts, body) = response.into_parts();
    let inspection = parts.extensions.remove::<Inspection>();
    let rebuild = |parts, body| Response::from_parts(parts, body);
    let request_bytes = match inspection {
        Some(Inspection::Complete(bytes)) => {
            facts.request = Some(bytes.clone());
            // Only with an audit log: its key makes the pseudonym, and erasure (which
            // needs the subject) goes through it.
            facts.subject = audit
                .filter(|_| ask.consent != Consent::None)
                .and_then(|audit| {
                    subject_identifier(live, ask.subject_id.clone(), &bytes)
                        .map(|id| Arc::from(audit.keys().pseudonym(&id)))
                });
            bytes
        }
        Some(Inspection::OverLimit) => {
            return Err(pass_through(rebuild(parts, body), "request_over_limit"));
        }
        _ => return Err(pass_through(rebuild(parts, body), "request_not_json")),
    };
    if !parts.status.is_success() {
        if parts.status.is_server_error() {
            live.upstream_failed();
        }
        return Err(pass_through(rebuild(parts, body), "upstream_error"));
    }
    if !parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(crate::headers::is_json)
    {
        return Err(pass_through(rebuild(parts, body), "response_not_json"));
    }
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return Err(pass_through(rebuild(parts, body), "response_encoded"));
    }
    let (inspection, body) = match inspect::read_prefix(body, live.response_limit).await {
        Ok(read) => read,
        Err(error) => {
            // The upstream broke off mid-body; the client would have seen a cut body.
            // Logged and tagged here as `Rescue` does for the errors it sees, since this
            // answer does not pass through it as an error.
            let error = ProxyError::UpstreamReset(crate::error::chain(error.as_ref()));
            let code = error.code();
            tracing::warn!(code, error = %error, "upstream failure");
            let mut response = error.into_response();
            response
                .extensions_mut()
                .insert(crate::forward::ErrorCode(code));
            return Err(response);
        }
    };
    let Inspection::Complete(response_bytes) = inspection else {
        return Err(pass_through(rebuild(parts, body), "response_over_limit"));
    };
    facts.response = Some(response_bytes.clone());
    Ok((parts, body, request_bytes, response_bytes))
}

/// Attaches the explanations as the request asked (a field, a header or a reference),
/// marks a prediction that goes to review, and keeps the body as sent for a hold.
#[allow(clippy::too_many_arguments)]
fn attach(
    live: &RouteLive,
    mut parts: http::response::Parts,
    response_bytes: &Bytes,
    explanations: &[RowExplanation],
    ask: &Ask,
    stores: Stores<'_>,
    subject: Option<Arc<str>>,
    facts: &mut Facts,
) -> Response<ProxyBody> {
    let version = explanations.first().map_or(0, |e| e.surrogate_version);
    let mut status = format!("explained; surrogate_version={version}");
    let mut attach = ask.attach;
    let mut body_bytes = response_bytes.clone();
    // A reference keeps the explanation for whoever holds it: only where the route
    // allows it, never under consent `none` (nothing may be kept), and never for one
    // explanation larger than the store's per-entry limit. Otherwise it is attached in
    // the body, as `field` would.
    let mut reference_json = None;
    if attach == AttachMode::Reference {
        let refused = if !live.config.references_allowed() {
            Some("reference_not_allowed")
        } else if ask.consent == Consent::None {
            Some("reference_not_kept_under_consent_none")
        } else {
            match serde_json::to_vec(&serde_json::json!({ "explanations": explanations })) {
                Ok(json) if json.len() <= stores.reference_max_bytes => {
                    reference_json = Some(json);
                    None
                }
                Ok(_) => Some("reference_too_large"),
                Err(_) => Some("reference_not_written"),
            }
        };
        if let Some(reason) = refused {
            status.push_str("; ");
            status.push_str(reason);
            attach = AttachMode::Field;
        }
    }
    if attach == AttachMode::Field {
        match serde_json::to_string(explanations)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                adapter::attach_field(response_bytes, "explanations", &json)
                    .map_err(|e| e.to_string())
            }) {
            Ok(with_field) => body_bytes = with_field,
            // A bare array, or a model that already has an "explanations" member: the
            // model's body stays as it is and the summary goes in a header instead.
            Err(_) => attach = AttachMode::Header,
        }
    }
    match attach {
        AttachMode::Header => {
            if let Ok(value) = HeaderValue::from_str(&summary(explanations)) {
                parts.headers.insert(EXPLANATION.clone(), value);
            }
        }
        AttachMode::Reference => {
            if let Some(json) = reference_json {
                // 128 bits: guessing one is as hard as guessing a key.
                let reference = crate::trust::unguessable_hex::<16>();
                let weight = json.len();
                stores.recent.insert_new(
                    reference.clone(),
                    Bytes::from(json),
                    weight,
                    subject.clone(),
                );
                if let Ok(value) = HeaderValue::from_str(&reference) {
                    parts.headers.insert(EXPLANATION_ID.clone(), value);
                }
                facts.reference = Some(reference);
            }
        }
        AttachMode::Field | AttachMode::Off => {}
    }
    if let Some(asked) = ask.downgraded_from {
        let value = format!(
            "{}; downgraded_from={}",
            ask.audience.as_str(),
            asked.as_str()
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            parts.headers.insert(AUDIENCE.clone(), value);
        }
    }
    if !facts.review_reasons.is_empty() {
        let value = format!("pending; reasons={}", facts.review_reasons.join(","));
        if let Ok(value) = HeaderValue::from_str(&value) {
            parts.headers.insert(REVIEW.clone(), value);
        }
    }
    facts.body = Some(body_bytes.clone());
    // The body may have grown; hyper sets the length of a body held whole.
    parts.headers.remove(header::CONTENT_LENGTH);
    pass_through(Response::from_parts(parts, full(body_bytes)), &status)
}

/// The compact header form: per row, the three largest contributions.
fn summary(explanations: &[RowExplanation]) -> String {
    explanations
        .iter()
        .take(16)
        .map(|e| {
            let top: Vec<String> = e
                .attributions
                .iter()
                .take(3)
                .map(|a| format!("{}={:+.4}", sanitize(&a.feature), a.contribution))
                .collect();
            format!(
                "v={} base={:.4} {}",
                e.surrogate_version,
                e.base_value,
                top.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Feature names come from payload keys; only visible ASCII may go into a header.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != ',' && c != ';' && c != '=' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn sidelights_probe_mark_never_reaches_the_model_on_any_route() {
        let layer = ExplainLayer {
            recent: Arc::new(RecentExplanations::new(4)),
            requests: Arc::new(RecentRequests::with_max_weight(4, 100)),
            audit: None,
            metrics: Arc::new(Metrics::register(&mut Default::default())),
            reference_max_bytes: 1024,
            pool: Arc::new(ComputePool::new(1, 4).unwrap()),
        };
        let service = layer.layer(tower::service_fn(|request: Request<()>| async move {
            assert!(request.headers().get(&PROBE).is_none());
            assert_eq!(request.headers()["x-model-header"], "kept");
            Ok::<_, ProxyError>(Response::new(full(Bytes::from_static(b"{}"))))
        }));
        let request = Request::builder()
            .uri("/v1/other")
            .header("x-sidelight-probe", "1")
            .header("x-model-header", "kept")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert!(
            response.headers().get(&STATUS).is_none(),
            "not an explained route"
        );
    }
}
