//! A real model server for the explanation suites: one scoring function served over each
//! protocol Sidelight understands, so that each adapter is tested against real HTTP.
//!
//! The model is `score(a, b, c, colour) = 3a + 2b·c + (colour == "red" ? 1 : 0)`, with
//! `a, b, c` numbers and `colour` one of red / green / blue.
//!
//! - `POST /v1/models/m:predict`: KServe v1 (`instances` of objects or arrays in the order
//!   a, b, c, colour) → `{"model_name": "m", "predictions": [score, …]}`.
//! - `POST /v2/models/m/infer`: Open Inference Protocol v2, one tensor per feature →
//!   one FP64 output tensor `score`.
//! - `POST /invocations`: MLflow, `dataframe_split` or `dataframe_records` →
//!   `{"predictions": [...]}`.
//! - `POST /pointer`: `{"applicant": {a, b, c, colour}}` → `{"result": {"score": s}}`.
//! - `POST /rank` (a recommender): `{"customer": {a, colour}, "items": [{sku, b, c,
//!   brand}, …]}` → `{"ranking": [{"sku", "score"}, …]}`, best first; `POST
//!   /scores`: the same request → `{"scores": [...]}` in request order. The query
//!   `?bad=unknown` answers one id no candidate has; `?bad=short` one score too few;
//!   `?bad=reranked` shows the second best first (a business's re-ranking).
//! - `POST /text`: answers 200 with `text/plain`; `POST /fail`: answers 500 JSON.
//!
//! Requests carrying `x-sidelight-probe` (Sidelight's probe check) are counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::{BoxBody, full};

/// The model's true score.
pub fn score(a: f64, b: f64, c: f64, colour: &str) -> f64 {
    3.0 * a + 2.0 * b * c + if colour == "red" { 1.0 } else { 0.0 }
}

/// A deterministic row for index `i`.
pub fn row(i: usize) -> (f64, f64, f64, &'static str) {
    let a = ((i * 7) % 11) as f64 / 10.0;
    let b = ((i * 5) % 13) as f64 / 12.0;
    let c = ((i * 3) % 7) as f64 / 6.0;
    let colour = ["red", "green", "blue"][i % 3];
    (a, b, c, colour)
}

/// The running model server.
pub struct ModelServer {
    pub addr: SocketAddr,
    probe_calls: Arc<AtomicUsize>,
    attribute_headers: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ModelServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probe_calls = Arc::new(AtomicUsize::new(0));
        let counter = probe_calls.clone();
        let attribute_headers = Arc::new(AtomicUsize::new(0));
        let attribute_counter = attribute_headers.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                let attribute_counter = attribute_counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        if request.headers().contains_key("x-sidelight-probe") {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        if request
                            .headers()
                            .keys()
                            .any(|k| k.as_str().starts_with("x-sidelight-attribute-"))
                        {
                            attribute_counter.fetch_add(1, Ordering::SeqCst);
                        }
                        handle(request)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            probe_calls,
            attribute_headers,
            task,
        }
    }

    /// Requests received that still carried an `x-sidelight-attribute-…` header (a
    /// protected attribute meant for Sidelight's monitor only).
    pub fn attribute_header_calls(&self) -> usize {
        self.attribute_headers.load(Ordering::SeqCst)
    }

    /// Requests received that carried `x-sidelight-probe`.
    pub fn probe_calls(&self) -> usize {
        self.probe_calls.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json_answer(status: StatusCode, body: String) -> Response<BoxBody> {
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn score_object(o: &Value) -> f64 {
    score(
        num(&o["a"]),
        num(&o["b"]),
        num(&o["c"]),
        o["colour"].as_str().unwrap_or(""),
    )
}

fn score_array(a: &Value) -> f64 {
    score(
        num(&a[0]),
        num(&a[1]),
        num(&a[2]),
        a[3].as_str().unwrap_or(""),
    )
}

/// The recommender's scores of a ranking request, in request order, with the ids.
fn rank_scores(parsed: &Value) -> Vec<(String, f64)> {
    let customer = &parsed["customer"];
    let (a, colour) = (
        num(&customer["a"]),
        customer["colour"].as_str().unwrap_or(""),
    );
    parsed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let id = match &item["sku"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (id, score(a, num(&item["b"]), num(&item["c"]), colour))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(request: Request<Incoming>) -> Result<Response<BoxBody>, std::convert::Infallible> {
    let path = request.uri().path().to_owned();
    let bad = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("bad="))
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = match path.as_str() {
        "/v1/models/m:predict" => {
            let predictions: Vec<f64> = parsed["instances"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            if r.is_object() {
                                score_object(r)
                            } else {
                                score_array(r)
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            // Unusual spacing and key order on purpose: Sidelight must keep them.
            json_answer(
                StatusCode::OK,
                format!(
                    "{{ \"model_name\" : \"m\",\n  \"predictions\": {} }}",
                    serde_json::to_string(&predictions).unwrap()
                ),
            )
        }
        "/v2/models/m/infer" => {
            let inputs = parsed["inputs"].as_array().cloned().unwrap_or_default();
            let column = |name: &str| {
                inputs
                    .iter()
                    .find(|t| t["name"] == name)
                    .and_then(|t| t["data"].as_array().cloned())
                    .unwrap_or_default()
            };
            let (a, b, c, colour) = (column("a"), column("b"), column("c"), column("colour"));
            let scores: Vec<f64> = (0..a.len())
                .map(|i| {
                    score(
                        num(&a[i]),
                        num(&b[i]),
                        num(&c[i]),
                        colour[i].as_str().unwrap_or(""),
                    )
                })
                .collect();
            let body = json!({
                "model_name": "m",
                "outputs": [{ "name": "score", "shape": [scores.len()], "datatype": "FP64", "data": scores }]
            });
            json_answer(StatusCode::OK, body.to_string())
        }
        "/invocations" => {
            let scores: Vec<f64> = if let Some(split) = parsed.get("dataframe_split") {
                let columns: Vec<String> = split["columns"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                split["data"]
                    .as_array()
                    .map(|rows| {
                        rows.iter()
                            .map(|r| {
                                let get =
                                    |n: &str| &r[columns.iter().position(|c| c == n).unwrap_or(99)];
                                score(
                                    num(get("a")),
                                    num(get("b")),
                                    num(get("c")),
                                    get("colour").as_str().unwrap_or(""),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                parsed["dataframe_records"]
                    .as_array()
                    .map(|rows| rows.iter().map(score_object).collect())
                    .unwrap_or_default()
            };
            json_answer(StatusCode::OK, json!({ "predictions": scores }).to_string())
        }
        "/pointer" => {
            let s = score_object(&parsed["applicant"]);
            json_answer(
                StatusCode::OK,
                json!({ "result": { "score": s }, "model": "m" }).to_string(),
            )
        }
        "/rank" => {
            let mut scored = rank_scores(&parsed);
            scored.sort_by(|x, y| y.1.total_cmp(&x.1));
            if bad.as_deref() == Some("unknown") {
                if let Some(first) = scored.first_mut() {
                    first.0 = "no-such-item".to_owned();
                }
            }
            // A business re-ranking: the second best shown first.
            if bad.as_deref() == Some("reranked") && scored.len() > 1 {
                scored.swap(0, 1);
            }
            let ranking: Vec<Value> = scored
                .iter()
                .map(|(sku, score)| json!({ "sku": sku, "score": score }))
                .collect();
            json_answer(StatusCode::OK, json!({ "ranking": ranking }).to_string())
        }
        "/scores" => {
            let mut scores: Vec<f64> = rank_scores(&parsed).into_iter().map(|(_, s)| s).collect();
            if bad.as_deref() == Some("short") {
                scores.pop();
            }
            json_answer(StatusCode::OK, json!({ "scores": scores }).to_string())
        }
        "/text" => {
            let mut response = Response::new(full("plain words"));
            response
                .headers_mut()
                .insert("content-type", "text/plain".parse().unwrap());
            response
        }
        "/fail" => json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\": \"model crashed\"}".into(),
        ),
        _ => json_answer(StatusCode::NOT_FOUND, "{}".into()),
    };
    Ok(answer)
}
