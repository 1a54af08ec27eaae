//! `sidelight schema infer` turns recorded request bodies into config TOML.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sidelight_e2e::{CliRun, cli, run_cli};

fn infer(lines: &str, args: &[&str]) -> CliRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traffic.jsonl");
    std::fs::write(&path, lines).unwrap();
    cli(["schema", "infer", "--from", path.to_str().unwrap()])
        .args(args)
        .run()
}

#[test]
fn kserve_traffic_becomes_a_features_table_that_the_config_accepts() {
    let traffic = "{\"instances\": [{\"duration\": 12, \"purpose\": \"car\", \"guarantor\": true}]}\n\
                   \n\
                   {\"instances\": [{\"duration\": 48.5, \"purpose\": \"education\", \"guarantor\": false}]}\n";
    let CliRun {
        code,
        stdout,
        stderr,
        ..
    } = infer(traffic, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let parsed: toml::Value = stdout.parse().unwrap();
    let features = parsed["routes"]["explain"]["features"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = features
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("duration", "numeric"),
            ("purpose", "categorical"),
            ("guarantor", "boolean")
        ]
    );

    // The printed tables slot into a route's config as they are.
    let config = format!(
        "[[routes]]\nname = \"m\"\npath_prefix = \"/m\"\n[routes.explain]\nprotocol = \"kserve_v1\"\n{stdout}"
    );
    sidelight_proxy_config_accepts(&config);
}

fn sidelight_proxy_config_accepts(config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidelight.toml");
    std::fs::write(&path, config).unwrap();
    let output = run_cli(&["config", "check", path.to_str().unwrap()]);
    assert!(output.success(), "{}", output.stderr);
}

#[test]
fn a_bad_line_is_named_by_file_and_line() {
    let CliRun { code, stderr, .. } = infer("{\"instances\": [[1, 2]]}\n\nnot json\n", &[]);
    assert_eq!(code, Some(65));
    assert!(stderr.contains("traffic.jsonl:3:"), "{stderr}");
}

#[test]
fn open_inference_v2_tensor_names_become_feature_names() {
    let traffic = r#"{"inputs": [{"name": "income", "shape": [2], "datatype": "FP32", "data": [1.5, 2]}, {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["north", "south"]}]}"#;
    let CliRun {
        code,
        stdout,
        stderr,
        ..
    } = infer(traffic, &["--protocol", "open-inference-v2"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("name = \"income\"\nkind = \"numeric\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("levels = [\"north\", \"south\"]"),
        "{stdout}"
    );
}

/// A recommender's requests: the customer's features become `context.…`, each
/// candidate's `item.…`, the id field none; the tables slot into a ranking route.
#[test]
fn ranking_requests_become_context_and_item_features() {
    let traffic = r#"{"customer": {"age": 31, "segment": "outdoor"}, "items": [{"sku": "a1", "price": 120, "brand": "acme"}, {"sku": "b2", "price": 80, "brand": "own"}]}
{"customer": {"age": 45, "segment": "city"}, "items": [{"sku": "c3", "price": 60, "brand": "own"}]}"#;
    let CliRun {
        code,
        stdout,
        stderr,
        ..
    } = infer(
        traffic,
        &[
            "--protocol",
            "ranking",
            "--context",
            "/customer",
            "--candidates",
            "/items",
            "--id-field",
            "sku",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let parsed: toml::Value = stdout.parse().unwrap();
    let names: Vec<&str> = parsed["routes"]["explain"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["context.age", "context.segment", "item.price", "item.brand"]
    );
    let config = format!(
        "[[routes]]\nname = \"shop\"\npath_prefix = \"/rank\"\n[routes.explain]\n\
         protocol = \"ranking\"\n[routes.explain.ranking]\ncontext = \"/customer\"\n\
         candidates = \"/items\"\nid_field = \"sku\"\nscores = \"/scores\"\n\
         item_group = \"item.brand\"\n{stdout}"
    );
    sidelight_proxy_config_accepts(&config);
    // Without the pointers, the command says what it needs.
    let CliRun { code, stderr, .. } = infer(traffic, &["--protocol", "ranking"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--context and --candidates"), "{stderr}");
}

#[tokio::test]
async fn a_running_proxy_infers_the_schema_of_its_recent_traffic() {
    use sidelight_e2e::model::{ModelServer, row};
    let model = ModelServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[state]\ndir = \"{}\"\n[[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\n",
        sidelight_e2e::config_for(&model.url(), "", ""),
        state.path().display()
    );
    let proxy = sidelight_e2e::InProcess::start(&config);
    for i in 0..5 {
        let (a, b, c, colour) = row(i);
        let body = serde_json::json!({"instances": [{"a": a, "b": b, "c": c, "colour": colour}]});
        sidelight_e2e::send(
            &sidelight_e2e::client(),
            http::Method::POST,
            &proxy.url("/v1/models/m:predict"),
            &[("content-type", "application/json")],
            sidelight_e2e::full(body.to_string()),
        )
        .await;
    }
    let admin = format!("http://{}", proxy.admin);
    let token = proxy.admin_token.expect("a proxy with the test token");
    let output = cli(["schema", "infer", "--from", &admin, "--route", "m"])
        .env("SIDELIGHT_ADMIN_TOKEN", token)
        .run_async()
        .await;
    let stdout = &output.stdout;
    assert!(output.success(), "{}", output.stderr);
    assert!(
        stdout.contains("name = \"colour\"\nkind = \"categorical\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("name = \"a\"\nkind = \"numeric\""),
        "{stdout}"
    );
}
