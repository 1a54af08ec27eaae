//! "Why was this ranked above that": `GET /v1/explanations/{ref}/compare?a=…&b=…` on a
//! ranking route's explanation kept by reference.
//!
//! SHAP values add up, and two items of one request are explained by one surrogate with
//! one base value, so the difference of their attributions is an exact attribution of
//! the difference of their scores (`sidelight_explain::shap::contrast`). When the
//! explanation is kept, its shown items' full attributions are kept beside it, under a
//! key the plain `GET /v1/explanations/{ref}` never answers; the comparison respects the
//! audience the explanation was made for: a customer's names only the features a
//! customer may read, and sums the others as `other_factors`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use sidelight_explain::Attribution;
use sidelight_explain::Value;
use sidelight_explain::shap::contrast;

use crate::body::{ProxyBody, full};
use crate::config::Audience;
use crate::error::json_error;
use crate::live::model::{LiveModel, RowExplanation};
use crate::live::{RecentExplanations, RouteLive};

/// The key the comparison data of reference `reference` is kept under.
pub fn key(reference: &str) -> String {
    format!("{reference}/compare")
}

/// What is kept to compare a request's shown items.
#[derive(Serialize, Deserialize)]
struct Kept {
    route: String,
    audience: Audience,
    locale: String,
    surrogate_version: u64,
    space: String,
    base_value: f64,
    names: Vec<String>,
    items: Vec<KeptItem>,
}

#[derive(Serialize, Deserialize)]
struct KeptItem {
    rank: usize,
    candidate: usize,
    id: Option<String>,
    prediction: f64,
    surrogate_value: f64,
    values: Vec<Value>,
    contributions: Vec<f64>,
    /// Its explanation's text was withheld (the surrogate fits it too poorly): no
    /// sentence is written from it either.
    #[serde(default)]
    withheld: bool,
}

/// The comparison data of a ranking request's shown items (rows in schema order, one
/// per explanation), as JSON to keep; `None` when it is not a ranking's.
pub fn kept(
    live: &RouteLive,
    model: &LiveModel,
    rows: &[Vec<Value>],
    explanations: &[RowExplanation],
    audience: Audience,
) -> Option<Vec<u8>> {
    let first = explanations.first()?;
    let items = rows
        .iter()
        .zip(explanations)
        .map(|(row, e)| {
            let item = e.item.as_ref()?;
            Some(KeptItem {
                rank: item.rank,
                candidate: item.candidate,
                id: item.id.clone(),
                prediction: e.prediction,
                surrogate_value: e.surrogate_value,
                values: row.clone(),
                contributions: e.schema_contributions.clone(),
                withheld: e.withheld_reason.is_some(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    serde_json::to_vec(&Kept {
        route: live.route.clone(),
        audience,
        locale: first.locale.clone(),
        surrogate_version: first.surrogate_version,
        space: first.space.to_owned(),
        base_value: first.base_value,
        names: model.names().to_vec(),
        items,
    })
    .ok()
}

/// One feature's part in the comparison.
#[derive(Serialize)]
struct Part {
    feature: String,
    value_a: Value,
    value_b: Value,
    contribution: f64,
}

/// Answers `GET /v1/explanations/{reference}/compare?a=&b=`: `a` and `b` are item ids,
/// or ranks (`1` is the first shown) when the candidates have no ids.
pub fn answer(
    recent: &RecentExplanations,
    routes: &[Arc<RouteLive>],
    reference: &str,
    query: Option<&str>,
) -> Response<ProxyBody> {
    let Some(kept) = recent
        .get(&key(reference))
        .and_then(|bytes| serde_json::from_slice::<Kept>(&bytes).ok())
    else {
        return json_error(
            StatusCode::NOT_FOUND,
            "comparison_not_found",
            "no kept ranking explanation has this reference; only ranking routes' explanations kept by reference can be compared, for recent requests",
        );
    };
    let pairs = match crate::query::query_pairs(query) {
        Ok(pairs) => pairs,
        Err(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "the query is not form-encoded",
            );
        }
    };
    // Why an item is not found: (status, code, message).
    let find = |name: &str| -> Result<&KeptItem, (StatusCode, &'static str, String)> {
        let Some(wanted) = crate::query::field(&pairs, name) else {
            return Err((
                StatusCode::BAD_REQUEST,
                "missing_item",
                format!("`{name}` is required: an item's id, or its rank when items have no id"),
            ));
        };
        kept.items
            .iter()
            .find(|i| match &i.id {
                Some(id) => id == wanted,
                None => wanted.parse::<usize>().ok() == Some(i.rank),
            })
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    "item_not_shown",
                    format!("`{name}` names no item this explanation showed (only the shown items are explained)"),
                )
            })
    };
    let (a, b) = match (find("a"), find("b")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err((status, code, message)), _) | (_, Err((status, code, message))) => {
            return json_error(status, code, &message);
        }
    };
    if a.rank == b.rank {
        return json_error(
            StatusCode::BAD_REQUEST,
            "same_item",
            "`a` and `b` name the same item; compare two shown items",
        );
    }
    let attribution = |i: &KeptItem| Attribution {
        base_value: kept.base_value,
        values: i.contributions.clone(),
        prediction: i.surrogate_value,
    };
    let Ok(difference) = contrast(&attribution(a), &attribution(b)) else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "comparison_failed",
            "the kept attributions do not belong together",
        );
    };
    let route = routes.iter().find(|r| r.route == kept.route);
    let model = route.and_then(|r| r.model.load_full());
    // Who may read which feature comes from the route's config, the same for every
    // version of its surrogate with these names.
    let features = model
        .as_deref()
        .filter(|m| m.names() == kept.names.as_slice())
        .map(LiveModel::features);
    let customer = kept.audience == Audience::Customer;
    let mut parts = Vec::new();
    let mut other_factors = 0.0;
    for (i, name) in kept.names.iter().enumerate() {
        let shown = features
            .and_then(|f| f.get(i))
            .is_some_and(|f| f.shown_to_customer());
        let contribution = difference.values.get(i).copied().unwrap_or(0.0);
        if customer && !shown {
            other_factors += contribution;
            continue;
        }
        parts.push(Part {
            feature: name.clone(),
            value_a: a.values.get(i).cloned().unwrap_or(Value::Missing),
            value_b: b.values.get(i).cloned().unwrap_or(Value::Missing),
            contribution,
        });
    }
    parts.sort_by(|x, y| y.contribution.abs().total_cmp(&x.contribution.abs()));
    let (higher, lower) = if a.rank <= b.rank { (a, b) } else { (b, a) };
    let withheld = a.withheld || b.withheld;
    let text = match (route, features) {
        (Some(route), Some(features)) if !withheld => {
            let ranking = route.config.ranking.as_ref();
            let about_item: Vec<bool> = features
                .iter()
                .map(|f| ranking.is_none_or(|r| !r.is_context(&f.name)))
                .collect();
            let sign = if std::ptr::eq(higher, a) { 1.0 } else { -1.0 };
            let split: Vec<f64> = difference.values.iter().map(|d| sign * d).collect();
            let locale = route.narrator.negotiate(Some(&kept.locale));
            let name = |i: &KeptItem| i.id.clone().unwrap_or_else(|| format!("#{}", i.rank));
            let (item, other) = (name(higher), name(lower));
            route.narrator.contrast(
                &sidelight_narrate::ContrastInput {
                    features,
                    about_item: &about_item,
                    a: &higher.values,
                    b: &lower.values,
                    difference: &split,
                    item: &item,
                    other: &other,
                },
                &locale,
            )
        }
        _ => None,
    };
    let item = |i: &KeptItem| serde_json::json!({ "id": i.id, "rank": i.rank, "candidate": i.candidate, "prediction": i.prediction, "surrogate_value": i.surrogate_value });
    let mut body = serde_json::json!({
        "a": item(a),
        "b": item(b),
        "space": kept.space,
        "base_value": kept.base_value,
        "difference": difference.difference,
        "contributions": parts,
        "surrogate_version": kept.surrogate_version,
        "higher": if std::ptr::eq(higher, a) { "a" } else { "b" },
        "text": text,
        "locale": kept.locale,
    });
    if withheld {
        body["withheld_reason"] = serde_json::json!("low_fidelity");
    }
    if customer {
        body["other_factors"] = serde_json::json!(other_factors);
    }
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *response.status_mut() = StatusCode::OK;
    response
}
