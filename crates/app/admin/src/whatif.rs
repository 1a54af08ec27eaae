//! `POST /api/v1/whatif` with `{"record": "<request id>", "row": 0, "changes": {"feature":
//! value, …}}`: what the model itself would have answered had some of a recent
//! request's features been different, asked through the probe path (straight to the
//! upstream, marked `x-sidelight-probe`, so it is never recorded as a customer's
//! decision and never reaches monitoring), with the surrogate's explanation of both rows
//! side by side.
//!
//! The original row is the one the model saw: the most recent explained requests keep it
//! in memory; an older record is read from the audit log, which has it only where the
//! privacy policy keeps every feature as it was (else the what-if is refused). A
//! feature the policy restricts can never be changed, and the answer shows it as the
//! log keeps it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Map, Value as Json, json};
use sidelight_audit::FieldRule;
use sidelight_core::body::{ProxyBody, json_response};
use sidelight_core::error::json_error;
use sidelight_core::live::RouteLive;
use sidelight_core::live::store::{StoredExplanation, StoredRequest};
use sidelight_explain::{FeatureKind, Value};

use crate::audit::AuditLog;
use crate::probe::Prober;

pub const WHATIF_PATH: &str = "/api/v1/whatif";
/// The largest body a what-if takes.
const MAX_BODY: usize = 64 * 1024;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    /// The request id (`x-request-id`) of a recent explained request.
    record: String,
    /// The row within its batch.
    #[serde(default)]
    row: usize,
    /// Feature → new value.
    changes: Map<String, Json>,
}

/// Why a what-if was refused: status, code and a message naming what was wrong.
pub struct Refusal(pub StatusCode, pub &'static str, pub String);

impl Refusal {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, code, message.into())
    }

    fn respond(self) -> http::Response<ProxyBody> {
        json_error(self.0, self.1, &self.2)
    }
}

impl From<sidelight_data::probe::ProbeError> for Refusal {
    fn from(e: sidelight_data::probe::ProbeError) -> Self {
        Self(e.status(), e.code(), e.to_string())
    }
}

/// What the admin action records of a what-if: the record and the features changed,
/// never their values.
pub struct Done {
    pub response: http::Response<ProxyBody>,
    pub record: Option<String>,
    pub features: Vec<String>,
}

/// Answers `POST /api/v1/whatif`.
pub async fn what_if(
    prober: &Arc<Prober>,
    audit: Option<&Arc<AuditLog>>,
    routes: &[Arc<RouteLive>],
    body: hyper::body::Incoming,
) -> Done {
    let mut done = Done {
        response: json_error(StatusCode::INTERNAL_SERVER_ERROR, "whatif_failed", ""),
        record: None,
        features: Vec::new(),
    };
    let ask = match read(body).await {
        Ok(ask) => ask,
        Err(refusal) => {
            done.response = refusal.respond();
            return done;
        }
    };
    done.record = Some(ask.record.clone());
    done.features = ask.changes.keys().cloned().collect();
    done.response = match run(prober, audit, routes, &ask).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(refusal) => refusal.respond(),
    };
    done
}

/// A what-if from the console's form: the same as the API's.
pub async fn from_form(
    prober: &Arc<Prober>,
    audit: Option<&Arc<AuditLog>>,
    routes: &[Arc<RouteLive>],
    record: String,
    row: usize,
    changes: Map<String, Json>,
) -> Result<Json, Refusal> {
    if changes.is_empty() {
        return Err(Refusal::bad(
            "bad_body",
            "no change given: name at least one feature and its new value",
        ));
    }
    run(
        prober,
        audit,
        routes,
        &Ask {
            record,
            row,
            changes,
        },
    )
    .await
}

async fn read(body: hyper::body::Incoming) -> Result<Ask, Refusal> {
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| Refusal::bad("bad_body", format!("cannot read the body: {e}")))?
        .to_bytes();
    let ask: Ask = serde_json::from_slice(&bytes).map_err(|e| {
        Refusal::bad(
            "bad_body",
            format!(
                "expected {{\"record\": \"<request id>\", \"row\": 0, \"changes\": {{\"feature\": value}}}}: {e}"
            ),
        )
    })?;
    if ask.changes.is_empty() {
        return Err(Refusal::bad(
            "bad_body",
            "`changes` is empty: name at least one feature and its new value",
        ));
    }
    Ok(ask)
}

/// A changed value read as the feature's kind; the message names the feature.
fn changed_value(name: &str, kind: FeatureKind, value: &Json) -> Result<Value, Refusal> {
    let wrong = |expected: &str| {
        Refusal::bad(
            "bad_change",
            format!("`changes.{name}`: the feature is {expected}"),
        )
    };
    match (kind, value) {
        (FeatureKind::Numeric, Json::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Value::Number)
            .ok_or_else(|| wrong("numeric: give a finite number")),
        (FeatureKind::Numeric, _) => Err(wrong("numeric: give a number")),
        (FeatureKind::Boolean, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (FeatureKind::Boolean, _) => Err(wrong("boolean: give true or false")),
        (FeatureKind::Categorical, Json::String(s)) => Ok(Value::Text(s.clone())),
        (FeatureKind::Categorical, _) => Err(wrong("categorical: give its level as a string")),
    }
}

/// `value` as JSON, as the route's privacy policy lets it be kept.
fn shown(stored: &StoredRequest, name: &str, value: &Value) -> Json {
    let raw = serde_json::to_value(value).unwrap_or(Json::Null);
    let rule = stored.route.policy.rule(name);
    if *rule == FieldRule::Keep {
        return raw;
    }
    match &stored.route.keys {
        Some(keys) => rule.apply(&raw, keys).unwrap_or(Json::Null),
        None => Json::Null,
    }
}

/// A record no longer held in memory, rebuilt from the audit log: its rows as the log
/// keeps them, which are the rows the model saw only where the privacy policy keeps
/// every feature as it was; the model's path from the route's newest request.
async fn from_log(
    prober: &Prober,
    audit: Option<&Arc<AuditLog>>,
    routes: &[Arc<RouteLive>],
    id: &str,
) -> Result<Arc<StoredRequest>, Refusal> {
    let not_found = || {
        Refusal(
            StatusCode::NOT_FOUND,
            "request_not_found",
            "no explained record has this id (recent requests are kept in memory, older \
             ones are read from the audit log)"
                .to_owned(),
        )
    };
    let audit = audit.ok_or_else(not_found)?;
    let record = match audit.get(id.to_owned()).await {
        Ok(Some(stored)) => stored.record,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            return Err(Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                format!("the audit log cannot be read: {e}"),
            ));
        }
    };
    let route = routes
        .iter()
        .find(|live| live.route == record.route)
        .ok_or_else(not_found)?;
    let (Some(features), Some(explained)) = (&record.features, &record.attributions) else {
        return Err(not_found());
    };
    let names: Vec<String> = features
        .get("names")
        .and_then(|n| serde_json::from_value(n.clone()).ok())
        .unwrap_or_default();
    let restricted: Vec<String> = names
        .iter()
        .filter(|n| *route.policy.rule(n) != FieldRule::Keep)
        .map(|n| format!("{n} ({})", route.policy.rule(n)))
        .collect();
    if !restricted.is_empty() {
        return Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "whatif_restricted",
            format!(
                "the request is no longer in memory, and the audit log keeps {} not as the \
                 model saw them: the model cannot be asked about this record again",
                restricted.join(", ")
            ),
        ));
    }
    let model = route.model.load_full().ok_or_else(|| {
        Refusal(
            StatusCode::CONFLICT,
            "no_surrogate",
            "the route has no surrogate in service to explain the changed row".to_owned(),
        )
    })?;
    let kinds: Vec<FeatureKind> = model.features().iter().map(|f| f.kind).collect();
    if names != model.names() {
        return Err(Refusal(
            StatusCode::CONFLICT,
            "schema_changed",
            "the route's surrogate now explains other features than this record's".to_owned(),
        ));
    }
    let rows: Vec<Vec<Value>> = features
        .get("rows")
        .and_then(Json::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|cells| {
                            cells
                                .iter()
                                .zip(&kinds)
                                .map(|(cell, kind)| recorded_value(cell, *kind))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let explanations = explained
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|e| StoredExplanation {
                    surrogate_version: e["surrogate_version"].as_u64().unwrap_or_default(),
                    output: e["output"]
                        .as_u64()
                        .and_then(|o| usize::try_from(o).ok())
                        .unwrap_or(0),
                    logit: e["space"] == "logit",
                    base_value: e["base_value"].as_f64().unwrap_or_default(),
                    contributions: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let target = prober
        .requests
        .newest(|s| s.route.route == route.route)
        .map(|s| s.target.clone())
        .ok_or_else(|| {
            Refusal(
                StatusCode::CONFLICT,
                "whatif_no_target",
                "the request is no longer in memory, and no recent request of its route \
                 tells which path the model answers on: send one request through the \
                 route, then ask again"
                    .to_owned(),
            )
        })?;
    Ok(Arc::new(StoredRequest {
        route: route.clone(),
        target,
        names,
        rows: Arc::new(rows),
        explanations,
    }))
}

/// A recorded value as the feature's kind (the log keeps JSON).
fn recorded_value(cell: &Json, kind: FeatureKind) -> Value {
    match (cell, kind) {
        (Json::Null, _) => Value::Missing,
        (Json::Number(n), _) => n.as_f64().map_or(Value::Missing, Value::Number),
        (Json::Bool(b), _) => Value::Bool(*b),
        (Json::String(s), FeatureKind::Numeric) => s
            .trim()
            .parse::<f64>()
            .map_or_else(|_| Value::Text(s.clone()), Value::Number),
        (Json::String(s), _) => Value::Text(s.clone()),
        (other, _) => Value::Text(other.to_string()),
    }
}

async fn run(
    prober: &Arc<Prober>,
    audit: Option<&Arc<AuditLog>>,
    routes: &[Arc<RouteLive>],
    ask: &Ask,
) -> Result<Json, Refusal> {
    // An erased record answers as erased, whether or not memory still held it.
    // An erased record answers as erased, whether or not memory still held it; a log
    // that cannot say refuses the what-if rather than risk one.
    if let Some(audit) = audit {
        match audit.get(ask.record.clone()).await {
            Ok(Some(stored)) if stored.record.erased_at.is_some() => {
                return Err(Refusal(
                    StatusCode::GONE,
                    "record_erased",
                    "the record was erased: there is nothing to change".to_owned(),
                ));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    format!("the audit log cannot say whether the record was erased: {e}"),
                ));
            }
        }
    }
    let stored = match prober.requests.get(&ask.record) {
        Some(stored) => stored,
        None => from_log(prober, audit, routes, &ask.record).await?,
    };
    let original = stored.rows.get(ask.row).cloned().ok_or_else(|| {
        Refusal::bad(
            "no_such_row",
            format!(
                "`row`: {} asked, but the request has {} row(s)",
                ask.row,
                stored.rows.len()
            ),
        )
    })?;
    let explanation = stored.explanations.get(ask.row).ok_or_else(|| {
        Refusal::bad(
            "no_such_row",
            format!("`row`: row {} was not explained", ask.row),
        )
    })?;
    let class = explanation.output;
    let model = stored.route.model.load_full().ok_or_else(|| {
        Refusal(
            StatusCode::CONFLICT,
            "no_surrogate",
            "the route has no surrogate in service to explain the changed row".to_owned(),
        )
    })?;
    if model.names() != stored.names.as_slice() {
        return Err(Refusal(
            StatusCode::CONFLICT,
            "schema_changed",
            "the route's surrogate now explains other features than this request's".to_owned(),
        ));
    }
    let kinds: Vec<FeatureKind> = model.features().iter().map(|f| f.kind).collect();
    let restricted: Vec<String> = stored
        .names
        .iter()
        .filter(|n| *stored.route.policy.rule(n) != FieldRule::Keep)
        .cloned()
        .collect();
    let mut changed = original.clone();
    let mut changes = Vec::new();
    for (name, value) in &ask.changes {
        let Some(k) = stored.names.iter().position(|n| n == name) else {
            return Err(Refusal::bad(
                "unknown_feature",
                format!(
                    "`changes.{name}`: the route has no such feature; it has: {}",
                    stored.names.join(", ")
                ),
            ));
        };
        if restricted.contains(name) {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "whatif_restricted",
                format!(
                    "`changes.{name}`: the privacy policy keeps this feature as `{}`, so a \
                     what-if can change only what it keeps in full ({})",
                    stored.route.policy.rule(name),
                    stored
                        .names
                        .iter()
                        .filter(|n| !restricted.contains(n))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        changed[k] = changed_value(name, kinds[k], value)?;
        changes.push(json!({
            "feature": name,
            "from": shown(&stored, name, &original[k]),
            "to": serde_json::to_value(&changed[k]).unwrap_or(Json::Null),
        }));
    }
    // One probe or what-if at a time, to spare the model.
    if prober
        .busy
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return Err(sidelight_data::probe::ProbeError::Busy.into());
    }
    let _running = crate::probe::Running(&prober.busy);
    let outputs = ask_model(prober, &stored, &[original.clone(), changed.clone()]).await?;
    let explain = |row: &[Value], outputs: &[f64]| -> Result<Json, Refusal> {
        let attribution = model.attribute(row, class).map_err(|e| {
            Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "whatif_unexplainable",
                format!("the surrogate cannot explain the row: {e}"),
            )
        })?;
        let attributions: Vec<Json> = stored
            .names
            .iter()
            .zip(&attribution.values)
            .map(|(feature, c)| json!({ "feature": feature, "contribution": c }))
            .collect();
        Ok(json!({
            "model_prediction": outputs.get(class),
            "model_outputs": outputs,
            "surrogate_prediction": model.to_output(attribution.prediction),
            "base_value": attribution.base_value,
            "attributions": attributions,
        }))
    };
    let before = explain(&original, &outputs[0])?;
    let after = explain(&changed, &outputs[1])?;
    let contribution = |side: &Json, k: usize| side["attributions"][k]["contribution"].as_f64();
    let mut differences: Vec<Json> = stored
        .names
        .iter()
        .enumerate()
        .map(|(k, feature)| {
            let (a, b) = (contribution(&before, k), contribution(&after, k));
            json!({
                "feature": feature,
                "original": a,
                "changed": b,
                "difference": a.zip(b).map(|(a, b)| b - a),
            })
        })
        .collect();
    differences.sort_by(|x, y| {
        let size = |v: &Json| v["difference"].as_f64().unwrap_or(0.0).abs();
        size(y).total_cmp(&size(x))
    });
    let model_difference = outputs[1]
        .get(class)
        .zip(outputs[0].get(class))
        .map(|(b, a)| b - a);
    let shown_restricted: Vec<Json> = restricted
        .iter()
        .filter_map(|name| {
            let k = stored.names.iter().position(|n| n == name)?;
            Some(json!({
                "feature": name,
                "rule": stored.route.policy.rule(name).to_string(),
                "kept": shown(&stored, name, &original[k]),
            }))
        })
        .collect();
    Ok(json!({
        "record": ask.record,
        "route": stored.route.route,
        "row": ask.row,
        "probe": true,
        "recorded": false,
        "surrogate_version": model.version(),
        "space": model.space(),
        "output": class,
        "changes": changes,
        "restricted": shown_restricted,
        "note": if restricted.is_empty() {
            "The model was asked through the probe path: not recorded as a decision, not monitored."
        } else {
            "The model was asked through the probe path: not recorded as a decision, not monitored. \
             Features the privacy policy restricts were sent as the model first saw them and are \
             shown as the audit log keeps them; they cannot be changed."
        },
        "original": before,
        "changed": after,
        "difference": {
            "model_prediction": model_difference,
            "attributions": differences,
        },
    }))
}

/// The model's outputs for `rows`, in one call where the protocol carries batches.
async fn ask_model(
    prober: &Prober,
    stored: &StoredRequest,
    rows: &[Vec<Value>],
) -> Result<Vec<Vec<f64>>, Refusal> {
    let (names, extras) = stored.route.wire(&stored.names);
    let protocol = &stored.route.protocol;
    let one_per_call = matches!(
        protocol,
        sidelight_protocol::Protocol::Pointer { .. } | sidelight_protocol::Protocol::Ranking { .. }
    );
    let batches: Vec<&[Vec<Value>]> = if one_per_call {
        rows.chunks(1).collect()
    } else {
        vec![rows]
    };
    let mut outputs = Vec::with_capacity(rows.len());
    for batch in batches {
        let body = sidelight_protocol::with_extras(
            sidelight_protocol::write_request(protocol, &names, batch)
                .map_err(sidelight_data::probe::ProbeError::from)?,
            &extras,
        );
        let answer = prober
            .caller
            .call(
                &stored.target,
                protocol,
                stored.route.response_limit,
                body,
                batch.len(),
            )
            .await?;
        outputs.extend(answer);
    }
    if outputs.len() != rows.len() {
        return Err(Refusal(
            StatusCode::BAD_GATEWAY,
            "probe_unreadable_response",
            format!(
                "the model answered {} row(s) for {}",
                outputs.len(),
                rows.len()
            ),
        ));
    }
    Ok(outputs)
}
