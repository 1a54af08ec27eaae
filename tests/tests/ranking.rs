//! Ranking routes end to end: the real binary in front of a real recommender (the test
//! model's `/rank` and `/scores`): the customer's context joined to each candidate, the
//! shown items explained and matched to their ids, "recommended because…" for the
//! customer, the contrast of two items, and every way an answer cannot be paired with
//! its candidates passed through with its status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use sidelight_e2e::live::{config, post, status, warm_up};
use sidelight_e2e::model::{ModelServer, score};
use sidelight_e2e::*;

const BRANDS: [&str; 3] = ["acme", "zenith", "own"];

/// The route's features: `colour` is the customer's protected attribute.
const FEATURES: &str = "\
    [[routes.explain.features]]\nname = \"context.a\"\nkind = \"numeric\"\ndisplay_name = \"activity\"\n\
    [[routes.explain.features]]\nname = \"context.colour\"\nkind = \"categorical\"\nprotected = true\n\
    levels = [\"red\", \"green\", \"blue\"]\n\
    [[routes.explain.features]]\nname = \"item.b\"\nkind = \"numeric\"\ndisplay_name = \"rating\"\n\
    [[routes.explain.features]]\nname = \"item.c\"\nkind = \"numeric\"\ndisplay_name = \"freshness\"\n\
    [[routes.explain.features]]\nname = \"item.brand\"\nkind = \"categorical\"\n\
    levels = [\"acme\", \"zenith\", \"own\"]\n";

const SURROGATE: &str = "[routes.explain.surrogate]\nwarm_up_rows = 1200\nwindow_rows = 4000\n\
    retrain_every_rows = 100000\nmin_r2 = 0.5\ntrees = 150\ndepth = 6\ncpu_share = 1.0\n";

const MONITOR: &str = "[routes.monitor]\nwindow_rows = 2000\nevery = \"200ms\"\n\
    min_group_size = 30\n[[routes.monitor.protected]]\nfeature = \"context.colour\"\n\
    privileged = \"red\"\nunprivileged = [\"blue\", \"green\"]\n";

/// The two ranking routes; with `audit`, an audit log in that directory.
fn routes(audit: Option<&std::path::Path>) -> String {
    let audit = audit.map_or_else(String::new, |dir| {
        format!(
            "[audit]\npath = \"{}\"\n{}",
            dir.join("audit.db").display(),
            audit_key_file_line(dir)
        )
    });
    format!(
        "{audit}[[routes]]\nname = \"shop\"\npath_prefix = \"/rank\"\n\
         [routes.explain]\nprotocol = \"ranking\"\naudiences = [\"developer\"]\nreferences = true\n\
         [routes.explain.ranking]\ncontext = \"/customer\"\ncandidates = \"/items\"\n\
         id_field = \"sku\"\nranked = \"/ranking\"\nranked_id = \"sku\"\ntop_k = 3\n\
         item_group = \"item.brand\"\n{FEATURES}{SURROGATE}{MONITOR}\
         [[routes]]\nname = \"scores\"\npath_prefix = \"/scores\"\n\
         [routes.explain]\nprotocol = \"ranking\"\n\
         [routes.explain.ranking]\ncontext = \"/customer\"\ncandidates = \"/items\"\n\
         id_field = \"sku\"\nscores = \"/scores\"\ntop_k = 2\n{FEATURES}{SURROGATE}"
    )
}

/// Customer `i`'s context and eight candidates, with their true scores by id.
fn request(i: usize) -> (Value, Vec<(String, f64)>) {
    let a = ((i * 7) % 11) as f64 / 10.0;
    let colour = ["red", "green", "blue"][i % 3];
    let mut truth = Vec::new();
    let items: Vec<Value> = (0..8)
        .map(|k| {
            let n = i * 8 + k;
            let b = ((n * 5) % 13) as f64 / 12.0;
            let c = ((n * 3) % 7) as f64 / 6.0;
            let sku = format!("sku-{n}");
            truth.push((sku.clone(), score(a, b, c, colour)));
            // Blue customers' candidates are all the shop's own brand: exposure shows it.
            let brand = if colour == "blue" {
                "own"
            } else {
                BRANDS[n % 3]
            };
            json!({ "sku": sku, "b": b, "c": c, "brand": brand })
        })
        .collect();
    (
        json!({ "customer": { "a": a, "colour": colour }, "items": items }),
        truth,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shown_items_are_explained_by_id_for_the_customer_and_compared() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&config(&model, state.path(), &routes(Some(state.path()))));

    // Before a surrogate: the model's ranking goes on as it is.
    let (body, _) = request(0);
    let answer = post(&proxy, "/rank", body.to_string(), &[]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.json()["explanations"].is_null());
    assert!(answer.json()["ranking"].is_array());

    // Every candidate's score is learned (eight rows per request), not only the shown.
    warm_up(&proxy, "shop", async |i| {
        let (body, _) = request(i);
        post(&proxy, "/rank", body.to_string(), &[]).await;
    })
    .await;

    for i in 100..110 {
        let (body, truth) = request(i);
        let answer = post(&proxy, "/rank", body.to_string(), &[]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(
            status(&answer).starts_with("explained"),
            "{}",
            status(&answer)
        );
        let out = answer.json();
        // The model's own answer is untouched.
        assert_eq!(out["ranking"].as_array().unwrap().len(), 8);
        let explanations = out["explanations"].as_array().unwrap();
        assert_eq!(explanations.len(), 3, "top_k = 3");
        let mut best = truth.clone();
        best.sort_by(|x, y| y.1.total_cmp(&x.1));
        for (k, e) in explanations.iter().enumerate() {
            // Each explanation is its own item's: the id, its rank and its score.
            assert_eq!(e["item"]["rank"], k + 1, "{e}");
            let id = e["item"]["id"].as_str().unwrap();
            assert_eq!(id, best[k].0, "{e}");
            let own = truth.iter().find(|(sku, _)| sku == id).unwrap().1;
            assert!(
                (e["prediction"].as_f64().unwrap() - own).abs() < 1e-9,
                "{e}"
            );
            let candidate = e["item"]["candidate"].as_u64().unwrap() as usize;
            assert_eq!(truth[candidate].0, id);
            // Customer words: why it was recommended, never the protected attribute,
            // and no next step (there is no decision to reverse).
            let text = e["text"].as_str().unwrap_or_default();
            assert!(text.starts_with("Recommended"), "{e}");
            assert!(!text.to_lowercase().contains("colour"), "{text}");
            assert!(e["next_step"].is_null(), "{e}");
            assert!(e["reason_codes"].is_null(), "{e}");
        }
    }

    // Exposure: of the slots shown to blue customers, all go to the shop's own brand,
    // against about a third for red ones: a failing comparison, with its interval.
    for i in 300..400 {
        let (body, _) = request(i);
        post(&proxy, "/rank", body.to_string(), &[]).await;
    }
    let mut exposure = Value::Null;
    for _ in 0..100 {
        let monitoring = get(&proxy.admin_url("/api/v1/monitoring")).await.json();
        let route = monitoring["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == "shop")
            .cloned()
            .unwrap();
        exposure = route["latest"]["exposure"][0].clone();
        if exposure["rankings"].as_u64().unwrap_or(0) >= 110 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(exposure["attribute"], "context.colour", "{exposure}");
    assert_eq!(exposure["item_feature"], "item.brand", "{exposure}");
    let blue = exposure["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["customer_group"] == "blue")
        .unwrap();
    assert_eq!(blue["shares"][0]["item_group"], "own", "{exposure}");
    assert_eq!(blue["shares"][0]["share"], 1.0, "{exposure}");
    let own_blue = exposure["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["unprivileged"] == "blue" && c["item_group"] == "own")
        .unwrap();
    assert_eq!(own_blue["verdict"], "fail", "{exposure}");
    assert!(
        own_blue["difference"]["lower"].as_f64().unwrap() > 0.1,
        "{exposure}"
    );
    assert_eq!(exposure["verdict"], "fail", "{exposure}");
    // The failing comparison fires an alert; the selection-rate checks, meaningless
    // over items shown, are not computed on a ranking route.
    let mut alerts = Value::Null;
    for _ in 0..100 {
        alerts = get(&proxy.admin_url("/api/v1/alerts")).await.json();
        if alerts.to_string().contains("context.colour=blue:own") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        alerts.to_string().contains("\"check\":\"exposure\""),
        "{alerts}"
    );
    let monitoring = get(&proxy.admin_url("/api/v1/monitoring")).await.json();
    let shop = monitoring["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "shop")
        .unwrap()
        .clone();
    assert_eq!(shop["latest"]["fairness"], json!([]), "{shop}");
    // The audit report reads the same from the recorded shown items.
    let mut reported = Value::Null;
    for _ in 0..50 {
        let report = get(&proxy.admin_url("/api/v1/report")).await.json();
        reported = report["fairness"]["routes"]
            .as_array()
            .and_then(|routes| routes.iter().find(|r| r["route"] == "shop").cloned())
            .map_or(Value::Null, |r| r["exposure"][0].clone());
        if reported["rankings"].as_u64().unwrap_or(0) >= 110 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(reported["verdict"], "fail", "{reported}");
    let reported_blue = reported["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["customer_group"] == "blue")
        .unwrap();
    assert_eq!(reported_blue["shares"][0]["share"], 1.0, "{reported}");
    let html = get(&proxy.admin_url("/api/v1/report?format=html")).await;
    assert!(
        String::from_utf8_lossy(&html.body).contains("exposure by context.colour"),
        "no exposure in the HTML report"
    );

    // The console: exposure on the monitoring page, and a ranking's record page with
    // why each shown item is above the next.
    let admin = proxy.admin_url("");
    let session = console_session(&admin, TEST_ADMIN_TOKEN).await;
    let monitoring = console_page(&admin, "/console/monitoring", &session).await;
    assert!(
        monitoring.contains("Exposure by context.colour on shop"),
        "{monitoring}"
    );
    let (body, _) = request(140);
    let answer = post(&proxy, "/rank", body.to_string(), &[]).await;
    let record = answer.headers["x-sidelight-record-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut page = String::new();
    for _ in 0..50 {
        let answer = send(
            &client(),
            http::Method::GET,
            &format!("{admin}/console/records/{record}"),
            &[("cookie", session.as_str())],
            empty(),
        )
        .await;
        if answer.status == 200 {
            page = String::from_utf8_lossy(&answer.body).into_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(page.contains("Shown item #1"), "{page}");
    assert!(page.contains("Why one item above the next"), "{page}");
    assert!(page.contains("id=\"contrast-1\""), "{page}");

    // In German, with the item's own reasons.
    let (body, _) = request(120);
    let answer = post(
        &proxy,
        "/rank",
        body.to_string(),
        &[("accept-language", "de")],
    )
    .await;
    let text = answer.json()["explanations"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.starts_with("Empfohlen"), "{text}");

    // Kept by reference, two shown items compare: the contributions are an exact split
    // of the difference of their scores.
    let (body, truth) = request(130);
    let answer = post(
        &proxy,
        "/rank",
        body.to_string(),
        &[("x-sidelight-explain", "reference")],
    )
    .await;
    let reference = answer.headers["x-sidelight-explanation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let kept = get(&proxy.url(&format!("/v1/explanations/{reference}"))).await;
    assert_eq!(kept.status, 200);
    let shown = kept.json()["explanations"].clone();
    let (first, third) = (
        shown[0]["item"]["id"].as_str().unwrap().to_owned(),
        shown[2]["item"]["id"].as_str().unwrap().to_owned(),
    );
    let compared = get(&proxy.url(&format!(
        "/v1/explanations/{reference}/compare?a={first}&b={third}"
    )))
    .await;
    assert_eq!(compared.status, 200, "{:?}", compared.body);
    let c = compared.json();
    let named: f64 = c["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["contribution"].as_f64().unwrap())
        .sum();
    let total = named + c["other_factors"].as_f64().unwrap();
    let difference = c["difference"].as_f64().unwrap();
    assert!((total - difference).abs() < 1e-9, "{c}");
    let surrogate = |e: &Value| e["surrogate_value"].as_f64().unwrap();
    assert!(
        (difference - (surrogate(&shown[0]) - surrogate(&shown[2]))).abs() < 1e-9,
        "{c}"
    );
    // The protected attribute is never named to the customer, only summed.
    assert!(
        c["contributions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["feature"] != "context.colour"),
        "{c}"
    );
    assert_eq!(c["higher"], "a", "{c}");
    if c["withheld_reason"].is_null() {
        let sentence = c["text"].as_str().unwrap();
        assert!(
            sentence.starts_with(&format!("{first} is ranked above {third}")),
            "{sentence}"
        );
    }
    // The other way round: the same split with the sign turned, the same sentence.
    let reversed = get(&proxy.url(&format!(
        "/v1/explanations/{reference}/compare?a={third}&b={first}"
    )))
    .await
    .json();
    assert_eq!(reversed["higher"], "b", "{reversed}");
    assert!(
        (reversed["difference"].as_f64().unwrap() + difference).abs() < 1e-12,
        "{reversed}"
    );
    assert_eq!(reversed["text"], c["text"]);
    let same = get(&proxy.url(&format!(
        "/v1/explanations/{reference}/compare?a={first}&b={first}"
    )))
    .await;
    assert_eq!(same.status, 400);
    assert_eq!(same.json()["error"]["code"], "same_item");
    let _ = truth;
    // Unknown items and references: precise answers, nothing else's data.
    let unknown = get(&proxy.url(&format!(
        "/v1/explanations/{reference}/compare?a={first}&b=sku-999999"
    )))
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "item_not_shown");
    let missing = get(&proxy.url(&format!("/v1/explanations/{reference}/compare?a={first}"))).await;
    assert_eq!(missing.status, 400);
    let nothing = get(&proxy.url("/v1/explanations/0123/compare?a=x&b=y")).await;
    assert_eq!(nothing.status, 404);
    assert_eq!(nothing.json()["error"]["code"], "comparison_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_cannot_be_paired_with_its_candidates_passes_with_its_status() {
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&config(&model, state.path(), &routes(None)));
    warm_up(&proxy, "scores", async |i| {
        let (body, _) = request(i);
        post(&proxy, "/scores", body.to_string(), &[]).await;
    })
    .await;

    // Scores in request order: the top two are explained.
    let (body, truth) = request(200);
    let answer = post(&proxy, "/scores", body.to_string(), &[]).await;
    let explanations = answer.json()["explanations"].as_array().unwrap().clone();
    assert_eq!(explanations.len(), 2);
    let mut best = truth.clone();
    best.sort_by(|x, y| y.1.total_cmp(&x.1));
    assert_eq!(explanations[0]["item"]["id"], best[0].0.as_str());

    // A score list of another length.
    let short = post(&proxy, "/scores?bad=short", body.to_string(), &[]).await;
    assert_eq!(short.status, 200);
    assert!(short.json()["explanations"].is_null());
    assert_eq!(status(&short), "row_count_mismatch");

    // An answered id that names no candidate, on the route paired by id (trained
    // before, so the status is the pairing's and not the warm-up's).
    warm_up(&proxy, "shop", async |i| {
        let (body, _) = request(i);
        post(&proxy, "/rank", body.to_string(), &[]).await;
    })
    .await;
    let unknown = post(&proxy, "/rank?bad=unknown", body.to_string(), &[]).await;
    assert_eq!(unknown.status, 200);
    assert!(unknown.json()["explanations"].is_null());
    assert_eq!(status(&unknown), "ranking_unknown_id");

    // Two candidates with one id: never a guess at which is which, whatever the
    // answer's shape.
    let mut twice = body.clone();
    twice["items"][1]["sku"] = twice["items"][0]["sku"].clone();
    let duplicate = post(&proxy, "/rank", twice.to_string(), &[]).await;
    assert_eq!(status(&duplicate), "ranking_duplicate_id");
    let duplicate = post(&proxy, "/scores", twice.to_string(), &[]).await;
    assert_eq!(status(&duplicate), "ranking_duplicate_id");

    // Candidates without ids where the answer is by id.
    let mut anonymous = body.clone();
    for item in anonymous["items"].as_array_mut().unwrap() {
        item.as_object_mut().unwrap().remove("sku");
    }
    let no_ids = post(&proxy, "/rank", anonymous.to_string(), &[]).await;
    assert_eq!(status(&no_ids), "ranking_candidate_without_id");

    // A context pointer that does not resolve.
    let mut no_context = body.clone();
    no_context.as_object_mut().unwrap().remove("customer");
    let lost = post(&proxy, "/rank", no_context.to_string(), &[]).await;
    assert_eq!(status(&lost), "ranking_context_not_found");

    // A ranked answer is shown in its own order, not the scores': a business that
    // re-ranks gets its first item explained first.
    let reranked = post(&proxy, "/rank?bad=reranked", body.to_string(), &[]).await;
    let first_shown = reranked.json()["ranking"][0]["sku"].clone();
    assert_eq!(
        reranked.json()["explanations"][0]["item"]["id"],
        first_shown,
        "{}",
        status(&reranked)
    );
    assert_eq!(reranked.json()["explanations"][0]["item"]["rank"], 1);

    // Each is counted by its status.
    let metrics = metrics_text(&proxy).await;
    for (route, reason) in [
        ("shop", "ranking_unknown_id"),
        ("shop", "ranking_duplicate_id"),
        ("scores", "ranking_duplicate_id"),
        ("shop", "ranking_candidate_without_id"),
        ("shop", "ranking_context_not_found"),
    ] {
        assert!(
            metrics.contains(&format!(
                "sidelight_unexplained_total{{route=\"{route}\",reason=\"{reason}\"}} 1"
            )),
            "{route} {reason}: {metrics}"
        );
    }
    assert!(
        metrics.contains(
            "sidelight_unexplained_total{route=\"scores\",reason=\"row_count_mismatch\"} 1"
        ),
        "{metrics}"
    );
}
