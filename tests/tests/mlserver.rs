//! Interoperability with a real third-party model server: MLServer (Seldon) serving a
//! scikit-learn GradientBoostingClassifier over the Open Inference Protocol v2, and a
//! GradientBoostingRegressor that scores a recommender's candidate rows (a ranking
//! route), with the real `sidelight` binary in front of them.
//!
//! MLServer and scikit-learn come from `tests/mlserver/requirements.txt`, which `.ci/run`
//! installs; without `mlserver` on PATH this suite fails and says how to install it.
//! `tests/mlserver/train.py` trains the model deterministically into a temporary
//! directory that `mlserver start` then serves on free ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, Request};
use serde_json::{Value, json};
use sidelight_e2e::*;

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
const INFER: &str = "/v2/models/credit/infer";
const INSTALL: &str = "tests/setup";

/// The workspace's `tests/` folder.
fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// `mlserver` from the virtualenv `tests/setup` makes, or else on PATH, or a failed test
/// saying how to install it.
fn mlserver_bin() -> PathBuf {
    let venv = tests_dir().join("../target/mlserver-venv/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(venv)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join("mlserver"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no `mlserver`: the MLServer interoperability suite needs it; run \
                 `{INSTALL}` from the workspace root (the README's test command does)"
            )
        })
}

/// Two distinct free ports on 127.0.0.1, released for the child to bind.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// The last lines of a log file, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running `mlserver start` serving the credit model, killed (with its process group)
/// on drop.
struct MlServer {
    child: Child,
    url: String,
    log: PathBuf,
    /// The rows the model was trained on, seven numbers each.
    rows: Vec<Vec<f64>>,
    _dir: tempfile::TempDir,
}

impl MlServer {
    async fn start() -> Self {
        let mlserver = mlserver_bin();
        // The Python that has mlserver (and so scikit-learn) beside it, as in a virtualenv
        // or a pyenv shim directory; else the one on PATH.
        let python = mlserver.with_file_name("python3");
        let python = if python.is_file() {
            python
        } else {
            PathBuf::from("python3")
        };
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join("credit");
        let (http_port, grpc_port) = free_ports();
        let train = Command::new(&python)
            .arg(tests_dir().join("mlserver/train.py"))
            .arg(&model_dir)
            .args(["--http-port", &http_port.to_string()])
            .args(["--grpc-port", &grpc_port.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        assert!(
            train.status.success(),
            "train.py failed ({}); is scikit-learn installed? run `{INSTALL}`\n{}",
            train.status,
            String::from_utf8_lossy(&train.stderr)
        );
        let rows: Vec<Vec<f64>> =
            serde_json::from_slice(&std::fs::read(model_dir.join("rows.json")).unwrap()).unwrap();

        let log = dir.path().join("mlserver.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(&mlserver)
            .arg("start")
            .arg(&model_dir)
            // MLServer keeps `.envs` and `.metrics` folders in its working directory.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group, so that drop ends anything it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", mlserver.display()));
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{http_port}"),
            log,
            rows,
            _dir: dir,
        };
        server.wait_ready(Duration::from_secs(90)).await;
        server
    }

    /// Polls `GET /v2/health/ready` until it answers 200.
    async fn wait_ready(&mut self, limit: Duration) {
        let client = client();
        let url = format!("{}/v2/health/ready", self.url);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "mlserver exited ({status}) before it was ready; its log ends:\n{}",
                    tail(&self.log, 40)
                );
            }
            let request = Request::get(&url).body(empty()).unwrap();
            let answer =
                tokio::time::timeout(Duration::from_secs(5), client.request(request)).await;
            if let Ok(Ok(response)) = answer {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                start.elapsed() < limit,
                "mlserver not ready on {url} after {limit:?}; its log ends:\n{}",
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A v2 inference request for these rows, as one FP64 tensor of shape [batch, 7],
    /// asking for the class probabilities.
    fn body(&self, id: &str, rows: &[usize], outputs: &[&str]) -> String {
        let data: Vec<f64> = rows
            .iter()
            .flat_map(|&i| self.rows[i % self.rows.len()].iter().copied())
            .collect();
        let mut body = json!({
            "id": id,
            "inputs": [{
                "name": "input-0",
                "shape": [rows.len(), 7],
                "datatype": "FP64",
                "data": data,
            }],
        });
        if !outputs.is_empty() {
            let outputs: Vec<Value> = outputs.iter().map(|n| json!({ "name": n })).collect();
            body["outputs"] = Value::Array(outputs);
        }
        body.to_string()
    }

    async fn infer_direct(&self, body: &str, headers: &[(&str, &str)]) -> Answer {
        post(&format!("{}{INFER}", self.url), body, headers).await
    }

    async fn infer_direct_path(&self, path: &str, body: &str) -> Answer {
        post(&format!("{}{path}", self.url), body, &[]).await
    }
}

impl Drop for MlServer {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all: Vec<(&str, &str)> = JSON.to_vec();
    all.extend_from_slice(headers);
    send(&client(), Method::POST, url, &all, full(body.to_owned())).await
}

fn status(answer: &Answer) -> String {
    answer
        .headers
        .get("x-sidelight-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn proxy_config(upstream: &str, state: &Path) -> String {
    format!(
        "{}\n[state]\ndir = \"{}\"\n\
         [[routes]]\nname = \"credit\"\npath_prefix = \"/v2/models/credit\"\n\
         [routes.explain]\nprotocol = \"open_inference_v2\"\noutput = \"probability\"\n\
         explain_class = 1\naudience = \"developer\"\n\
         [routes.explain.surrogate]\nwarm_up_rows = 60\nretrain_every_rows = 100000\n\
         min_r2 = 0.5\ntrees = 60\ndepth = 4\ncpu_share = 1.0\n",
        config_for(upstream, "", ""),
        state.display()
    )
}

/// The body without a trailing `"explanations"` member, as the upstream wrote it.
fn without_explanations(answer: &Answer) -> Vec<u8> {
    let body = &answer.body[..];
    let marker = b",\"explanations\":";
    match body.windows(marker.len()).position(|w| w == marker) {
        Some(cut) => [&body[..cut], b"}"].concat(),
        None => body.to_vec(),
    }
}

/// The probabilities in MLServer's `predict_proba` output tensor, one pair per row.
fn probabilities(answer: &Value) -> Vec<[f64; 2]> {
    let output = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "predict_proba")
        .unwrap_or_else(|| panic!("no predict_proba output: {answer}"));
    assert_eq!(output["datatype"], "FP64", "{output}");
    let data = output["data"].as_array().unwrap();
    let batch = output["shape"][0].as_u64().unwrap() as usize;
    assert_eq!(output["shape"], json!([batch, 2]), "{output}");
    data.chunks(2)
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        .collect()
}

#[tokio::test]
async fn mlserver_sklearn_probabilities_are_explained_without_touching_its_fields() {
    let started = Instant::now();
    let mlserver = MlServer::start().await;
    let mlserver_ready = started.elapsed();
    let state = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&proxy_config(&mlserver.url, state.path()));
    let infer = proxy.url(INFER);

    // Model metadata, a GET on the same route, passes through untouched.
    let direct = get(&format!("{}/v2/models/credit", mlserver.url)).await;
    let proxied = get(&proxy.url("/v2/models/credit")).await;
    assert_eq!(proxied.status, 200);
    assert_eq!(proxied.body, direct.body);
    assert_eq!(proxied.json()["name"], "credit");

    // Cold start: MLServer's answer passes through, saying how far the warm-up is.
    let first = post(
        &infer,
        &mlserver.body("warm-0", &[0, 1], &["predict_proba"]),
        &[],
    )
    .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(status(&first), "warming_up; rows=0/60, columns_agreed=1/3");
    assert!(first.json().get("explanations").is_none());

    // Training traffic, four rows a request, until a surrogate is in service.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 2;
    loop {
        for _ in 0..5 {
            let rows: Vec<usize> = (next..next + 4).collect();
            next += 4;
            let answer = post(
                &infer,
                &mlserver.body(&format!("warm-{next}"), &rows, &["predict_proba"]),
                &[],
            )
            .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
        }
        let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
        let in_service = surrogates["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route"] == "credit" && !r["in_service"].is_null());
        if in_service {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no surrogate after {next} rows: {surrogates}\nproxy log:\n{}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A batch the surrogate has not seen, with the same request id both ways so that
    // MLServer's answers are comparable byte for byte.
    let batch = [700, 731, 802, 865, 911, 950, 999];
    let body = mlserver.body("interop-1", &batch, &["predict_proba"]);
    let direct = mlserver.infer_direct(&body, &[]).await;
    assert_eq!(direct.status, 200, "{:?}", direct.body);
    let answer = post(&infer, &body, &[]).await;
    assert_eq!(answer.status, 200);
    assert!(
        status(&answer).starts_with("explained; surrogate_version="),
        "{}",
        status(&answer)
    );
    for header in ["content-type", "ce-modelid", "ce-requestid"] {
        assert_eq!(
            answer.headers.get(header),
            direct.headers.get(header),
            "{header}"
        );
    }
    // MLServer's members are kept byte for byte; the explanations are the last member.
    assert_eq!(without_explanations(&answer), direct.body);

    let direct = direct.json();
    assert_eq!(direct["model_name"], "credit");
    assert_eq!(direct["id"], "interop-1");
    let probabilities = probabilities(&direct);
    let explanations = answer.json()["explanations"].as_array().unwrap().clone();
    assert_eq!(explanations.len(), batch.len());
    let names: Vec<String> = (0..7).map(|i| format!("input-0[{i}]")).collect();
    for (explanation, p) in explanations.iter().zip(&probabilities) {
        // The configured class (1, "bad credit risk") is explained, in logit space.
        assert_eq!(explanation["output"], 1, "{explanation}");
        assert_eq!(explanation["space"], "logit", "{explanation}");
        assert_eq!(explanation["prediction"].as_f64().unwrap(), p[1]);
        // Efficiency: base value + contributions is the surrogate's logit, whose
        // logistic is the surrogate's probability.
        let base = explanation["base_value"].as_f64().unwrap();
        let attributions = explanation["attributions"].as_array().unwrap();
        let sum: f64 = attributions
            .iter()
            .map(|a| a["contribution"].as_f64().unwrap())
            .sum();
        let surrogate = explanation["surrogate_prediction"].as_f64().unwrap();
        let logistic = 1.0 / (1.0 + (-(base + sum)).exp());
        assert!((logistic - surrogate).abs() < 1e-9, "{explanation}");
        assert!((0.0..=1.0).contains(&surrogate), "{explanation}");
        let mut features: Vec<String> = attributions
            .iter()
            .map(|a| a["feature"].as_str().unwrap().to_owned())
            .collect();
        features.sort_unstable();
        assert_eq!(features, names);
        assert!(explanation["fidelity"]["r2"].as_f64().unwrap() >= 0.5);
        assert!(explanation["fidelity"]["local_error"].as_f64().unwrap() < 0.5);
    }

    // MLServer's default output, the predicted class labels (INT64 [batch, 1]), not the
    // probabilities the surrogate learnt: passed through unchanged, and said why.
    let labels = mlserver.body("labels-1", &batch, &[]);
    let direct = mlserver.infer_direct(&labels, &[]).await;
    let answer = post(&infer, &labels, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(status(&answer), "output_shape_changed");
    assert_eq!(answer.body, direct.body);

    // A client that accepts gzip (Python's requests does by default) would get a
    // compressed answer for a large batch; on an explained route the model is asked for
    // an uncompressed one, which every client accepts, so it can be explained.
    let many: Vec<usize> = (0..200).collect();
    let gzip = mlserver.body("gzip-1", &many, &["predict_proba"]);
    let answer = post(&infer, &gzip, &[("accept-encoding", "gzip")]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.headers.get("content-encoding").is_none());
    assert!(
        status(&answer).starts_with("explained"),
        "{}",
        status(&answer)
    );
    assert_eq!(answer.json()["explanations"].as_array().unwrap().len(), 200);

    eprintln!(
        "mlserver ready in {mlserver_ready:?}; whole test {:?}",
        started.elapsed()
    );
}

/// The columns of `tests/mlserver/train.py`'s model, in tensor order.
const FEATURES: [&str; 7] = [
    "duration_months",
    "credit_amount",
    "installment_rate_pct_income",
    "residence_since_years",
    "age_years",
    "existing_credits",
    "dependents",
];

/// A route that names the model's columns: the `[batch, 7]` tensor MLServer's clients
/// send carries no names, so its columns are read as these features in order.
fn named_config(upstream: &str, state: &Path, features: &[&str], distill: &str) -> String {
    let mut config = proxy_config(upstream, state);
    for name in features {
        config.push_str(&format!(
            "[[routes.explain.features]]\nname = \"{name}\"\nkind = \"numeric\"\n"
        ));
    }
    config.push_str(distill);
    config
}

/// Positional tensors meet named features: explained by name, distilled against the
/// real model (whose answers must be probabilities, so the client's `outputs` member
/// goes with every synthetic call), checked for faithfulness; and a route whose count of
/// features is wrong says so instead of waiting in warm-up forever.
#[tokio::test]
async fn mlserver_positional_tensors_are_read_as_the_configured_features() {
    let mlserver = MlServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let distill = "[routes.explain.distill]\nenabled = true\nsynthetic_per_real = 2\n\
                   max_calls_per_second = 20\nbatch_rows = 32\nfaithfulness_rows = 2\n\
                   faithfulness_calls = 60\n";
    let proxy = Proxy::start(&named_config(
        &mlserver.url,
        state.path(),
        &FEATURES,
        distill,
    ));
    let infer = proxy.url(INFER);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut next = 0;
    let in_service = loop {
        let rows: Vec<usize> = (next..next + 4).collect();
        next += 4;
        let body = mlserver.body(&format!("w-{next}"), &rows, &["predict_proba"]);
        let answer = post(&infer, &body, &[]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(
            !status(&answer).starts_with("column"),
            "{}",
            status(&answer)
        );
        let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
        let route = surrogates["routes"][0].clone();
        if !route["in_service"].is_null() {
            break route;
        }
        assert!(
            Instant::now() < deadline,
            "no surrogate in service: {surrogates}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let gate = &in_service["in_service"]["gate"];
    // Judged on the newest distinct rows: at least what the warm-up gives (60 × 0.2).
    assert!(gate["holdout_rows"].as_u64().unwrap() >= 12, "{in_service}");
    assert!(
        in_service["columns"]["mapped_by_position"]
            .as_u64()
            .unwrap()
            > 0
    );

    let answer = post(
        &infer,
        &mlserver.body("named-1", &[3, 4], &["predict_proba"]),
        &[],
    )
    .await;
    assert!(
        status(&answer).starts_with("explained"),
        "{}",
        status(&answer)
    );
    for explanation in answer.json()["explanations"].as_array().unwrap() {
        let mut names: Vec<&str> = explanation["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["feature"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        let mut expected = FEATURES.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected);
        // One space, stated: base value plus contributions is the surrogate's value in
        // it, and its logistic is the surrogate's probability.
        assert_eq!(explanation["space"], "logit");
        let sum: f64 = explanation["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["contribution"].as_f64().unwrap())
            .sum();
        let base = explanation["base_value"].as_f64().unwrap();
        let value = explanation["surrogate_value"].as_f64().unwrap();
        assert!((base + sum - value).abs() < 1e-9, "{explanation}");
        let p = explanation["surrogate_prediction"].as_f64().unwrap();
        assert!((1.0 / (1.0 + (-value).exp()) - p).abs() < 1e-12);
    }
    // The probe check writes the rows back as the client's tensor, with its `outputs`.
    let id = answer.headers["x-request-id"].to_str().unwrap().to_owned();
    let probe = send(
        &client(),
        Method::POST,
        &proxy.admin_url(&format!("/api/v1/probe/{id}?max_calls=100")),
        &[],
        empty(),
    )
    .await;
    assert_eq!(
        probe.status,
        200,
        "{}",
        String::from_utf8_lossy(&probe.body)
    );

    // Distillation asked the model about synthetic rows, within its budget, and the
    // version in service was checked against KernelSHAP on the real model.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics =
            String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
        let ok_rows = metric(
            &metrics,
            "sidelight_distill_rows_total{route=\"credit\",outcome=\"ok\"}",
        );
        let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
        let route = &surrogates["routes"][0];
        let faithful = !route["in_service"]["faithfulness"].is_null();
        if ok_rows > 0.0 && faithful {
            let seen = route["rows_seen"].as_f64().unwrap();
            assert!(
                ok_rows <= 2.0 * seen + 32.0,
                "{ok_rows} synthetic rows for {seen} real"
            );
            let f = &route["in_service"]["faithfulness"];
            assert!(f["rows"].as_u64().unwrap() >= 1, "{f}");
            assert!(f["calls"].as_u64().unwrap() <= 120, "{f}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no distillation or faithfulness yet: {metrics}\n{surrogates}\n{}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(proxy);

    // Six features for a seven-column tensor: every request passes through, says why,
    // and the route says so on /readyz and in the log.
    let state = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&named_config(
        &mlserver.url,
        state.path(),
        &FEATURES[..6],
        "",
    ));
    let body = mlserver.body("short-1", &[0], &["predict_proba"]);
    let direct = mlserver.infer_direct(&body, &[]).await;
    let answer = post(&proxy.url(INFER), &body, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        status(&answer),
        "column_count_mismatch; columns=7, features=6"
    );
    assert_eq!(answer.body, direct.body);
    let ready = get(&proxy.admin_url("/readyz")).await.json();
    let check = &ready["checks"]["explanations"];
    assert_eq!(check["ok"], false, "{ready}");
    assert!(
        check["routes"]["credit"]
            .as_str()
            .unwrap()
            .contains("7 unnamed columns"),
        "{ready}"
    );
    let metrics = String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
    assert_eq!(
        metric(
            &metrics,
            "sidelight_unmapped_requests_total{route=\"credit\",problem=\"column_count_mismatch\"}"
        ),
        1.0
    );
}

/// The value of one sample line of a Prometheus text exposition (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    metric_value(text, series).unwrap_or(0.0)
}

/// The shop model's columns, in the tensor's order: the customer's, then the item's.
const SHOP_FEATURES: [&str; 6] = [
    "age",
    "outdoor_share",
    "budget",
    "price",
    "weight_kg",
    "rating",
];

/// Customer `n` and 24 candidate products as one [24, 6] FP64 tensor (the context
/// repeated on each row, as a plain batch carries it).
fn shop_body(n: usize) -> (String, Vec<Vec<f64>>) {
    let unit = |k: usize| ((k * 7919 + n * 104_729) % 1000) as f64 / 1000.0;
    let age = 18.0 + (n * 13 % 57) as f64;
    let outdoor = (unit(1) * 100.0).round() / 100.0;
    let budget = (40.0 + 5.0 * (age - 18.0) + 160.0 * unit(2)).round();
    let rows: Vec<Vec<f64>> = (0..24)
        .map(|k| {
            vec![
                age,
                outdoor,
                budget,
                (40.0 + 260.0 * unit(10 + 3 * k)).round(),
                ((0.3 + 2.5 * unit(11 + 3 * k)) * 100.0).round() / 100.0,
                ((3.0 + 2.0 * unit(12 + 3 * k)) * 10.0).round() / 10.0,
            ]
        })
        .collect();
    let body = json!({
        "id": format!("shop-{n}"),
        "inputs": [{
            "name": "candidates",
            "shape": [24, 6],
            "datatype": "FP64",
            "data": rows.iter().flatten().copied().collect::<Vec<f64>>(),
        }],
    });
    (body.to_string(), rows)
}

/// A recommender on MLServer (a scikit-learn regressor over candidate rows, served as
/// model `shop`) behind a ranking route: the plain v2 batch is the candidates, the top
/// three by MLServer's own scores are explained with their positions, in the customer's
/// words, never naming the protected age; every candidate is learned from.
#[tokio::test]
async fn mlserver_ranked_candidates_have_their_top_three_explained() {
    let mlserver = MlServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut config = format!(
        "{}\n[state]\ndir = \"{}\"\n\
         [[routes]]\nname = \"shop\"\npath_prefix = \"/v2/models/shop\"\n\
         [routes.explain]\nprotocol = \"open_inference_v2\"\noutput = \"score\"\n\
         [routes.explain.ranking]\ntop_k = 3\ncontext_features = [\"age\", \"outdoor_share\", \"budget\"]\n\
         [routes.explain.surrogate]\nwarm_up_rows = 1200\nretrain_every_rows = 100000\n\
         min_r2 = 0.5\ntrees = 100\ndepth = 5\ncpu_share = 1.0\n",
        config_for(&mlserver.url, "", ""),
        state.path().display()
    );
    for name in SHOP_FEATURES {
        config.push_str(&format!(
            "[[routes.explain.features]]\nname = \"{name}\"\nkind = \"numeric\"\n"
        ));
        if name == "age" {
            config.push_str("protected = true\npii = true\n");
        }
    }
    let proxy = Proxy::start(&config);
    let url = proxy.url("/v2/models/shop/infer");
    // Exactly 1,200 rows in 50 requests: the surrogate comes into service only if every
    // candidate is learned from, not only the three shown.
    for n in 0..50 {
        let (body, _) = shop_body(n);
        let answer = post(&url, &body, &[]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let surrogates = get(&proxy.admin_url("/api/v1/surrogates")).await.json();
        if !surrogates["routes"][0]["in_service"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "no surrogate: {surrogates}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for n in 1000..1005 {
        let (body, _) = shop_body(n);
        let direct = mlserver
            .infer_direct_path("/v2/models/shop/infer", &body)
            .await
            .json();
        let scores: Vec<f64> = direct["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mut best: Vec<usize> = (0..scores.len()).collect();
        best.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));

        let answer = post(&url, &body, &[]).await;
        assert!(
            status(&answer).starts_with("explained"),
            "{}",
            status(&answer)
        );
        let out = answer.json();
        // MLServer's answer is untouched beside the explanations.
        assert_eq!(out["outputs"], direct["outputs"]);
        let explanations = out["explanations"].as_array().unwrap();
        assert_eq!(explanations.len(), 3);
        for (k, e) in explanations.iter().enumerate() {
            assert_eq!(e["item"]["rank"], k + 1, "{e}");
            let candidate = e["item"]["candidate"].as_u64().unwrap() as usize;
            assert_eq!(candidate, best[k], "{e}");
            assert!((e["prediction"].as_f64().unwrap() - scores[candidate]).abs() < 1e-9);
            let text = e["text"].as_str().unwrap_or("");
            if e["withheld_reason"].is_null() {
                assert!(text.starts_with("Recommended"), "{e}");
            }
            assert!(!text.contains("age"), "{e}");
            let names: Vec<&str> = e["attributions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["feature"].as_str().unwrap())
                .collect();
            assert!(!names.contains(&"age"), "{e}");
        }
    }
}
