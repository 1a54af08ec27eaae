//! The deployment files under `deploy/` agree with the binary: every YAML document
//! parses; the configs they carry pass `sidelight config check` (with the Secret's files
//! where they are mounted, and the containers' environment); container ports, probes,
//! Services, the Prometheus job, the Dockerfile and the compose file use the ports the
//! config listens on and the paths the binary serves; every `SIDELIGHT_*__*` variable is
//! a config key. Changing a port or a path in one place and not the others fails here.
//!
//! Nothing here needs a cluster or a Docker daemon: the files are read, and the real
//! `sidelight` binary checks configs and answers the probed paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;
use sidelight_e2e::{Proxy, Upstream, cli, get, run_cli};

/// Where Kubernetes mounts the Secret in the Sidelight containers.
const SECRETS_DIR: &str = "/etc/sidelight/secrets";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy(path: &str) -> PathBuf {
    workspace().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents of a YAML file, with merge keys (`<<: *anchor`) applied; empty
/// documents (a file's leading comment block) are left out.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Every `.yaml` file under `deploy/`.
fn yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&deploy(""), &mut files);
    files.sort();
    files
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

fn port_number(value: &Value) -> u16 {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("not a port number: {value:?}"))
}

/// The port of `address` (`host:port`).
fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address:?}"))
}

/// A container port given by number or by the name of one of `container`'s ports.
fn resolve_port(container: &Value, port: &Value) -> u16 {
    if let Some(name) = port.as_str().filter(|s| s.parse::<u16>().is_err()) {
        let ports = container["ports"].as_sequence().unwrap();
        let found = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| {
            panic!("container {:?} has no port named {name}", container["name"])
        });
        port_number(&found["containerPort"])
    } else {
        port_number(port)
    }
}

/// The `name: value` pairs of a container's `env` (those with a literal value).
fn container_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_sequence()
        .map(|env| {
            env.iter()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_owned(),
                        e["value"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What `sidelight config check` made of a config: the addresses it would listen on
/// and its upstream, as the binary prints them.
#[derive(Debug)]
struct Checked {
    listen: String,
    admin: String,
    upstream: String,
}

impl Checked {
    fn listen_port(&self) -> u16 {
        port_of(&self.listen)
    }
    fn admin_port(&self) -> u16 {
        port_of(&self.admin)
    }
}

/// Runs `sidelight config check FILE` with exactly `env` (and PATH) in the environment.
fn config_check(file: &Path, env: &[(String, String)]) -> Result<Checked, String> {
    let output = cli(["config", "check"])
        .arg(file)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .run();
    let stdout = output.stdout;
    if output.code != Some(0) {
        return Err(format!("{stdout}{}", output.stderr));
    }
    // "FILE: ok (upstream URL, listen ADDR, admin ADDR, N route(s), …)"
    let field = |name: &str| {
        stdout
            .split(&format!("{name} "))
            .nth(1)
            .and_then(|rest| rest.split([',', ')']).next())
            .unwrap_or_else(|| panic!("no `{name}` in {stdout:?}"))
            .to_owned()
    };
    Ok(Checked {
        listen: field("listen"),
        admin: field("admin"),
        upstream: field("upstream"),
    })
}

/// A valid stand-in for a Secret value that is still a placeholder.
fn fill_placeholder(key: &str, value: &str) -> String {
    if !value.contains("CHANGE-ME") {
        return value.to_owned();
    }
    match key {
        "audit-key" => "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into(),
        // A URL with a placeholder password is still a URL: keep it, as the user would
        // only change the password.
        "database-url" => value.to_owned(),
        // Comments only: no tokens, which a config accepts.
        _ if value
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) =>
        {
            value.to_owned()
        }
        other => panic!("no stand-in for the Secret's placeholder {other}"),
    }
}

/// A pod spec with a Sidelight container, as Kubernetes would run it.
#[derive(Clone)]
struct Pod {
    /// Where it is defined, for messages.
    source: String,
    spec: Value,
    /// The pod template's labels (`None` for KServe, which makes its own).
    labels: Option<Value>,
    annotations: Value,
    sidelight: Value,
    /// The config file the container reads, as written in its ConfigMap (paths as in
    /// the pod).
    config_toml: String,
    /// The Secret mounted at SECRETS_DIR: file name -> content.
    secret_files: BTreeMap<String, String>,
}

impl Pod {
    /// The config's `key` under `[section]`, as written (before the environment).
    fn config_value(&self, section: &str, key: &str) -> Option<toml::Value> {
        let table: toml::Table = self.config_toml.parse().unwrap();
        table.get(section)?.get(key).cloned()
    }

    /// Writes the config and the Secret's files to `dir`, with the pod's paths
    /// pointing there, and checks it with the container's environment.
    fn check(&self, dir: &Path) -> Result<Checked, String> {
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        for (name, content) in &self.secret_files {
            std::fs::write(secrets.join(name), fill_placeholder(name, content)).unwrap();
        }
        let config = self
            .config_toml
            .replace(SECRETS_DIR, secrets.to_str().unwrap());
        let file = dir.join("sidelight.toml");
        std::fs::write(&file, config).unwrap();
        let mut env = container_env(&self.sidelight);
        // Kubernetes sets it to the pod name; audit.writer defaults to it.
        env.push(("HOSTNAME".into(), "credit-model-5d8f7c9b4-x2x7q".into()));
        config_check(&file, &env)
    }

    fn container(&self, name: &str) -> &Value {
        self.spec["containers"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{}: no container {name}", self.source))
    }
}

/// The pod with a Sidelight container in `file`, with its ConfigMap and Secret.
fn pod(file: &str, secret_docs: &[Value]) -> Pod {
    let docs = documents(&deploy(file));
    let (spec, labels, annotations) = docs
        .iter()
        .find_map(|d| match str_of(&d["kind"], "kind") {
            "Deployment" => Some((
                d["spec"]["template"]["spec"].clone(),
                Some(d["spec"]["template"]["metadata"]["labels"].clone()),
                d["spec"]["template"]["metadata"]["annotations"].clone(),
            )),
            // KServe: the predictor is the pod spec.
            "InferenceService" => Some((d["spec"]["predictor"].clone(), None, Value::Null)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{file}: no Deployment or InferenceService"));
    let sidelight = spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| {
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("sidelight:"))
        })
        .unwrap_or_else(|| panic!("{file}: no container runs the sidelight image"))
        .clone();
    let volumes = spec["volumes"].as_sequence().unwrap();
    let volume = |name: &Value| {
        volumes
            .iter()
            .find(|v| v["name"] == *name)
            .unwrap_or_else(|| panic!("{file}: no volume {name:?}"))
    };
    let mount = |path: &str| {
        sidelight["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .map(|m| volume(&m["name"]))
    };

    // The config: `serve --config DIR/FILE`, DIR a ConfigMap volume with key FILE.
    let args: Vec<&str> = sidelight["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(args.first(), Some(&"serve"), "{file}: {args:?}");
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .unwrap_or_else(|| panic!("{file}: no --config in {args:?}"));
    let (config_dir, config_key) = config_path.rsplit_once('/').unwrap();
    let config_volume =
        mount(config_dir).unwrap_or_else(|| panic!("{file}: nothing mounted at {config_dir}"));
    let config_map_name = str_of(&config_volume["configMap"]["name"], "configMap name");
    let config_toml = str_of(
        &object(&docs, "ConfigMap", config_map_name)["data"][config_key],
        "the ConfigMap's config",
    )
    .to_owned();

    // The Secret mounted at SECRETS_DIR, defined in this file or in `secret_docs`.
    let secret_volume =
        mount(SECRETS_DIR).unwrap_or_else(|| panic!("{file}: nothing mounted at {SECRETS_DIR}"));
    let secret_name = str_of(&secret_volume["secret"]["secretName"], "secretName");
    let secret = docs
        .iter()
        .chain(secret_docs)
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret_name)
        .unwrap_or_else(|| panic!("{file}: no Secret {secret_name}"));
    let secret_files = secret["stringData"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (str_of(k, "key").to_owned(), str_of(v, "value").to_owned()))
        .collect();

    Pod {
        source: file.to_owned(),
        spec,
        labels,
        annotations,
        sidelight,
        config_toml,
        secret_files,
    }
}

fn sidecar() -> Pod {
    pod("kubernetes/sidecar.yaml", &[])
}

fn kserve() -> Pod {
    pod(
        "kserve/inferenceservice.yaml",
        &documents(&deploy("kubernetes/sidecar.yaml")),
    )
}

#[test]
fn every_yaml_document_parses_and_names_what_it_is() {
    let files = yaml_files();
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{}: no documents", file.display());
        let is_compose = file.file_name().is_some_and(|n| n == "compose.yaml");
        for doc in &docs {
            if is_compose {
                assert!(doc["services"].is_mapping(), "{}", file.display());
            } else {
                for key in ["apiVersion", "kind"] {
                    assert!(doc[key].is_string(), "{}: no {key}", file.display());
                }
                if doc["kind"] != "Kustomization" {
                    assert!(doc["metadata"]["name"].is_string(), "{}", file.display());
                }
            }
        }
    }
    // The kustomization lists exactly the other manifests beside it.
    let dir = deploy("kubernetes");
    let kustomization = &documents(&dir.join("kustomization.yaml"))[0];
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "resource"))
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed,
        present.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
}

#[test]
fn the_pods_configs_pass_config_check_with_the_secrets_files() {
    for pod in [sidecar(), kserve()] {
        let dir = tempfile::tempdir().unwrap();
        let checked = pod
            .check(dir.path())
            .unwrap_or_else(|e| panic!("{}: config check failed: {e}", pod.source));
        // A pod must be reached from outside its network namespace.
        assert!(checked.listen.starts_with("0.0.0.0:"), "{checked:?}");
        assert!(checked.admin.starts_with("0.0.0.0:"), "{checked:?}");
        // Every file the config names under the Secret's mount is one of its keys.
        for word in pod.config_toml.split('"') {
            if let Some(name) = word.strip_prefix(&format!("{SECRETS_DIR}/")) {
                assert!(
                    pod.secret_files.contains_key(name),
                    "{}: {word} is not in the Secret",
                    pod.source
                );
            }
        }
        // The audit log is the fleet's shared database, its URL from the Secret.
        let audit = |key| pod.config_value("audit", key);
        assert_eq!(audit("backend"), Some("postgres".into()), "{}", pod.source);
        assert!(
            audit("url").is_none(),
            "{}: a URL holds a password",
            pod.source
        );
        assert!(audit("url_file").is_some(), "{}", pod.source);
    }
}

#[test]
fn a_misspelled_key_or_a_missing_secret_fails_the_check() {
    // The config checks in this file prove something only because `config check`
    // refuses a missing Secret file and an unknown key.
    let dir = tempfile::tempdir().unwrap();
    let mut bad = sidecar();
    bad.secret_files.remove("tokens.toml");
    let error = bad.check(dir.path()).unwrap_err();
    assert!(error.contains("tokens_file"), "{error}");

    let file = dir.path().join("minimal.toml");
    std::fs::write(&file, "").unwrap();
    let env = [(
        "SIDELIGHT_UPSTREAM__URLL".to_owned(),
        "http://m:1".to_owned(),
    )];
    let error = config_check(&file, &env).unwrap_err();
    assert!(error.contains("urll"), "{error}");
}

#[test]
fn ports_probes_and_services_match_the_config() {
    let docs = documents(&deploy("kubernetes/sidecar.yaml"));
    for pod in [sidecar(), kserve()] {
        let dir = tempfile::tempdir().unwrap();
        let checked = pod.check(dir.path()).unwrap();
        let (listen, admin) = (checked.listen_port(), checked.admin_port());
        let c = &pod.sidelight;
        let ports: BTreeMap<&str, u16> = c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    str_of(&p["name"], "port name"),
                    port_number(&p["containerPort"]),
                )
            })
            .collect();
        assert_eq!(
            ports.get("http"),
            Some(&listen),
            "{}: {ports:?}",
            pod.source
        );
        assert_eq!(
            ports.get("admin"),
            Some(&admin),
            "{}: {ports:?}",
            pod.source
        );
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{}: {probe}", pod.source);
            assert_eq!(
                resolve_port(c, &get["port"]),
                admin,
                "{}: {probe}",
                pod.source
            );
        }
        // The drain fits in the grace period: preStop pause + shutdown_grace.
        let grace = pod
            .config_value("server", "shutdown_grace")
            .map(|v| humantime::parse_duration(v.as_str().unwrap()).unwrap())
            .unwrap_or(Duration::from_secs(30));
        let pause = c["lifecycle"]["preStop"]["exec"]["command"]
            .as_sequence()
            .and_then(|cmd| cmd.get(1))
            .map_or(0, |s| str_of(s, "sleep").parse::<u64>().unwrap());
        let termination = pod.spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            Duration::from_secs(termination) > grace + Duration::from_secs(pause),
            "{}: terminationGracePeriodSeconds {termination} must exceed {pause} s + {grace:?}",
            pod.source
        );
        // Sidelight runs as the image's user with nothing writable but its state.
        let security = &c["securityContext"];
        assert_eq!(security["runAsUser"].as_u64(), Some(10001));
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
        let state = pod
            .config_value("state", "dir")
            .map(|v| v.as_str().unwrap().to_owned())
            .unwrap();
        assert!(
            c["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == state.as_str()),
            "{}: state.dir {state} is not a mounted volume",
            pod.source
        );
        // The upstream is the model container's port in the same pod.
        let upstream = checked.upstream.trim_end_matches('/');
        assert!(upstream.starts_with("http://127.0.0.1:"), "{upstream}");
        let model_port = port_of(upstream);
        if pod.labels.is_some() {
            let model = pod.container("model");
            let env: BTreeMap<String, String> = container_env(model).into_iter().collect();
            assert_eq!(env["MLSERVER_HTTP_PORT"], model_port.to_string());
            assert_ne!(model_port, listen);
            assert_ne!(model_port, admin);
        } else {
            // KServe's collocation: the model is kserve-container, Sidelight the
            // transformer-container on the port KServe routes to.
            assert_eq!(pod.sidelight["name"], "transformer-container");
            assert_eq!(listen, 8080);
            let model = pod.container("kserve-container");
            let args: Vec<&str> = model["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| str_of(a, "arg"))
                .collect();
            assert!(
                args.contains(&format!("--http_port={model_port}").as_str()),
                "{args:?}"
            );
        }
    }

    // The Services: the proxy port, and the admin port apart, both on this pod.
    let pod = sidecar();
    let labels = pod.labels.as_ref().unwrap();
    let checked = pod.check(tempfile::tempdir().unwrap().path()).unwrap();
    let selects = |selector: &Value| {
        selector
            .as_mapping()
            .unwrap()
            .iter()
            .all(|(k, v)| labels[k] == *v)
    };
    let mut targets = BTreeMap::new();
    for service in docs.iter().filter(|d| d["kind"] == "Service") {
        if !selects(&service["spec"]["selector"]) {
            continue;
        }
        assert_ne!(service["spec"]["type"], "LoadBalancer");
        for port in service["spec"]["ports"].as_sequence().unwrap() {
            let target = resolve_port(&pod.sidelight, &port["targetPort"]);
            targets.insert(str_of(&port["name"], "port name").to_owned(), target);
        }
    }
    assert_eq!(
        targets,
        BTreeMap::from([
            ("http".to_owned(), checked.listen_port()),
            ("admin".to_owned(), checked.admin_port()),
        ])
    );
    // The admin port is not on the Service that carries model traffic.
    let http_service = docs
        .iter()
        .find(|d| {
            d["kind"] == "Service"
                && d["spec"]["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "http")
        })
        .unwrap();
    assert_eq!(
        http_service["spec"]["ports"].as_sequence().unwrap().len(),
        1
    );
    let budget = object(&docs, "PodDisruptionBudget", "credit-model");
    assert!(selects(&budget["spec"]["selector"]["matchLabels"]));

    // Prometheus scrapes the admin port by its name, at the binary's /metrics.
    let annotations = &pod.annotations;
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        port_number(&annotations["prometheus.io/port"]),
        checked.admin_port()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let prometheus = documents(&deploy("kubernetes/prometheus.yaml"));
    let scrape: Value = serde_yaml_ng::from_str(str_of(
        &object(&prometheus, "ConfigMap", "sidelight-prometheus")["data"]["prometheus.yml"],
        "prometheus.yml",
    ))
    .unwrap();
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    let kept_port_name = job["relabel_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["source_labels"][0] == "__meta_kubernetes_pod_container_port_name")
        .map(|r| str_of(&r["regex"], "regex"))
        .unwrap();
    assert_eq!(
        resolve_port(&pod.sidelight, &Value::String(kept_port_name.into())),
        checked.admin_port()
    );
}

#[test]
fn every_sidelight_variable_in_the_manifests_is_a_config_key_or_a_known_secret() {
    let known_secrets = [
        "SIDELIGHT_AUDIT_KEY",
        "SIDELIGHT_ADMIN_TOKEN",
        "SIDELIGHT_ALERT_SECRET",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    // Kubernetes containers: each variable alone, against the pod's own config.
    for pod in [sidecar(), kserve()] {
        for (name, value) in container_env(&pod.sidelight) {
            if !name.starts_with("SIDELIGHT_") {
                continue;
            }
            seen += 1;
            if !name.contains("__") {
                assert!(known_secrets.contains(&name.as_str()), "{name}");
                continue;
            }
            let mut only = pod.clone();
            only.sidelight =
                serde_yaml_ng::from_str(&format!("env: [{{name: {name}, value: {value:?}}}]"))
                    .unwrap();
            only.check(dir.path())
                .unwrap_or_else(|e| panic!("{}: {name}: {e}", pod.source));
        }
    }
    // Compose services: each service's whole environment, against the compose config.
    for (service, env) in compose_sidelights() {
        for (name, _) in &env {
            seen += 1;
            if !name.contains("__") {
                assert!(known_secrets.contains(&name.as_str()), "{service}: {name}");
            }
        }
        config_check(&deploy("compose.sidelight.toml"), &env)
            .unwrap_or_else(|e| panic!("compose {service}: {e}"));
    }
    assert!(seen >= 5, "{seen}");
}

/// Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` with the defaults, or
/// a stand-in value for the variables the user must set.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        let value = if let Some((_, default)) = inner.split_once(":-") {
            default.to_owned()
        } else {
            let name = inner.split(":?").next().unwrap();
            match name {
                "SIDELIGHT_AUDIT_KEY" => {
                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".to_owned()
                }
                _ => format!("stand-in-for-{name}"),
            }
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The compose services that run Sidelight, with their environment interpolated.
fn compose_sidelights() -> Vec<(String, Vec<(String, String)>)> {
    let compose = &documents(&deploy("compose.yaml"))[0];
    compose["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("sidelight:"))
                && s["entrypoint"].is_null()
        })
        .map(|(name, s)| {
            let env = s["environment"]
                .as_mapping()
                .map(|env| {
                    env.iter()
                        .map(|(k, v)| {
                            (
                                str_of(k, "variable").to_owned(),
                                interpolate(str_of(v, "value")),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (str_of(name, "service").to_owned(), env)
        })
        .collect()
}

/// The Dockerfile's instructions, with continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&deploy("Dockerfile"));
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') && current.is_empty() || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            joined.push(std::mem::take(&mut current));
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (instruction, rest) = line.split_once(' ').unwrap_or((&line, ""));
            (instruction.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

fn json_array(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON array: {text}: {e}"))
}

#[test]
fn the_dockerfile_matches_its_default_config_and_the_workspace() {
    let instructions = dockerfile();
    let all = |name: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    // The image's config: the file COPY'd to the path CMD serves.
    let cmd = json_array(all("CMD").last().unwrap());
    assert_eq!(cmd[0], "serve");
    let config_path = &cmd[cmd.iter().position(|a| a == "--config").unwrap() + 1];
    let source = all("COPY")
        .into_iter()
        .find_map(|copy| {
            let parts: Vec<&str> = copy.split_whitespace().collect();
            (parts.last() == Some(&config_path.as_str())).then(|| parts[0].to_owned())
        })
        .unwrap_or_else(|| panic!("nothing is copied to {config_path}"));
    assert_eq!(source, "deploy/container.toml");
    let checked = config_check(&workspace().join(&source), &[]).unwrap();
    let ports: BTreeSet<u16> = all("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([checked.listen_port(), checked.admin_port()])
    );
    assert!(checked.admin.starts_with("0.0.0.0:"), "{checked:?}");
    assert_eq!(json_array(all("ENTRYPOINT")[0]), ["sidelight"]);

    // HEALTHCHECK runs `sidelight health --url` on the admin port's /healthz.
    let healthcheck = all("HEALTHCHECK")[0];
    let command = json_array(&healthcheck[healthcheck.find("CMD [").unwrap() + 4..]);
    assert_eq!(command[..2], ["sidelight", "health"]);
    let url = &command[command.iter().position(|a| a == "--url").unwrap() + 1];
    assert_eq!(
        url,
        &format!("http://127.0.0.1:{}/healthz", checked.admin_port())
    );

    // The build stage copies every workspace member and what it embeds.
    let copied: Vec<String> = all("COPY")
        .iter()
        .filter(|c| !c.starts_with("--from"))
        .flat_map(|c| {
            let parts: Vec<&str> = c.split_whitespace().collect();
            parts[..parts.len() - 1]
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    for path in &copied {
        assert!(workspace().join(path).exists(), "COPY of a missing {path}");
    }
    let manifest: toml::Table = read(&workspace().join("Cargo.toml")).parse().unwrap();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        assert!(
            copied
                .iter()
                .any(|c| member == c || member.starts_with(&format!("{c}/"))),
            "workspace member {member} is not copied into the build"
        );
    }
    for needed in ["Cargo.toml", "Cargo.lock", "data"] {
        assert!(copied.iter().any(|c| c == needed), "{needed} is not copied");
    }
    // .dockerignore must not hide what is copied.
    let ignored = read(&workspace().join(".dockerignore"));
    for pattern in ignored.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(!copied.iter().any(|c| c == pattern), "{pattern} is ignored");
    }
}

#[test]
fn the_compose_file_uses_the_configs_ports_on_loopback_only() {
    let compose = &documents(&deploy("compose.yaml"))[0];
    let services = compose["services"].as_mapping().unwrap();
    let service = |name: &str| &services[name];
    let mut host_ports = BTreeSet::new();
    let mut writers = BTreeSet::new();
    let model = service("model");
    let model_args: Vec<&str> = model["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let model_listen = model_args[model_args.iter().position(|a| *a == "--listen").unwrap() + 1];
    let sidelights = compose_sidelights();
    assert_eq!(sidelights.len(), 2, "two replicas");
    for (name, env) in &sidelights {
        let s = service(name);
        // The image's default config path is where compose mounts its config.
        let mount = s["volumes"][0].as_str().unwrap();
        assert_eq!(
            mount,
            "./compose.sidelight.toml:/etc/sidelight/sidelight.toml:ro"
        );
        let checked = config_check(&deploy("compose.sidelight.toml"), env).unwrap();
        let published: BTreeSet<u16> = s["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| {
                let p = str_of(p, "port");
                assert!(
                    p.starts_with("127.0.0.1:"),
                    "{name}: {p} is not on loopback"
                );
                let parts: Vec<&str> = p.split(':').collect();
                assert!(host_ports.insert(parts[1].to_owned()), "{name}: {p} twice");
                parts[2].parse().unwrap()
            })
            .collect();
        assert_eq!(
            published,
            BTreeSet::from([checked.listen_port(), checked.admin_port()]),
            "{name}"
        );
        assert_eq!(
            checked.upstream.trim_end_matches('/'),
            format!("http://model:{}", port_of(model_listen))
        );
        let env: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(writers.insert(env["SIDELIGHT_AUDIT__WRITER"].to_owned()));
        assert!(
            env["SIDELIGHT_AUDIT__URL"].starts_with("postgresql://sidelight:")
                && env["SIDELIGHT_AUDIT__URL"].contains("@postgres:5432/sidelight"),
            "{name}"
        );
        let grace = humantime::parse_duration(str_of(&s["stop_grace_period"], "grace")).unwrap();
        let table: toml::Table = read(&deploy("compose.sidelight.toml")).parse().unwrap();
        let shutdown =
            humantime::parse_duration(table["server"]["shutdown_grace"].as_str().unwrap()).unwrap();
        assert!(
            grace > shutdown,
            "{name}: stop_grace_period {grace:?} <= {shutdown:?}"
        );
    }
    for other in ["model", "postgres"] {
        for p in service(other)["ports"].as_sequence().unwrap() {
            assert!(
                str_of(p, "port").starts_with("127.0.0.1:"),
                "{other}: {p:?}"
            );
        }
    }
    assert_eq!(service("postgres")["image"], "postgres:15");
}

/// The probe paths of every manifest and of the Dockerfile's HEALTHCHECK.
fn probed_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for pod in [sidecar(), kserve()] {
        for probe in ["livenessProbe", "readinessProbe"] {
            paths.insert(str_of(&pod.sidelight[probe]["httpGet"]["path"], "path").to_owned());
        }
    }
    let prometheus = documents(&deploy("kubernetes/prometheus.yaml"));
    let scrape: Value = serde_yaml_ng::from_str(str_of(
        &object(&prometheus, "ConfigMap", "sidelight-prometheus")["data"]["prometheus.yml"],
        "prometheus.yml",
    ))
    .unwrap();
    paths.insert(str_of(&scrape["scrape_configs"][0]["metrics_path"], "path").to_owned());
    paths
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_answers_every_probed_path_and_the_healthcheck() {
    let upstream = Upstream::start().await;
    let state = tempfile::tempdir().unwrap();
    // The image's own config, moved to free loopback ports.
    let proxy = Proxy::start_with_env(
        &read(&deploy("container.toml")),
        &[
            ("SIDELIGHT_SERVER__LISTEN", "127.0.0.1:0"),
            ("SIDELIGHT_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
            ("SIDELIGHT_UPSTREAM__URL", &upstream.url()),
            ("SIDELIGHT_STATE__DIR", state.path().to_str().unwrap()),
        ],
    );
    let paths = probed_paths();
    assert_eq!(
        paths,
        BTreeSet::from(["/healthz".into(), "/readyz".into(), "/metrics".into()])
    );
    for path in &paths {
        let answer = get(&proxy.admin_url(path)).await;
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    }

    // The HEALTHCHECK's command, pointed at this proxy's admin port.
    let health = |url: String| run_cli(&["health", "--url", &url, "--timeout", "5s"]);
    let up = health(proxy.admin_url("/healthz"));
    assert!(up.success(), "{up}");
    assert!(up.stderr.is_empty(), "{up}");
    // A path that is not healthz answers 404: unhealthy, exit 1, one line saying so.
    let missing = health(proxy.admin_url("/nothing-here"));
    assert_eq!(missing.code, Some(1), "{missing}");
    let stderr = &missing.stderr;
    assert!(stderr.contains("404"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let closed = health(format!("http://{}/healthz", free_addr()));
    assert_eq!(closed.code, Some(1), "{closed}");
}

/// A loopback address nothing listens on.
fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Every metric the alerting rules in prometheus.yaml use is one a proxy with a SQLite
/// audit log and a witness exports: a renamed metric would silence its alert.
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_alerting_rules_use_is_exported() {
    let prometheus = documents(&deploy("kubernetes/prometheus.yaml"));
    let data = &object(&prometheus, "ConfigMap", "sidelight-prometheus")["data"];
    let scrape: Value =
        serde_yaml_ng::from_str(str_of(&data["prometheus.yml"], "prometheus.yml")).unwrap();
    assert_eq!(scrape["rule_files"][0], "sidelight-rules.yml");
    let rules: Value =
        serde_yaml_ng::from_str(str_of(&data["sidelight-rules.yml"], "sidelight-rules.yml"))
            .unwrap();
    let mut used = BTreeSet::new();
    for rule in rules["groups"][0]["rules"].as_sequence().unwrap() {
        let expr = str_of(&rule["expr"], "expr");
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("sidelight_") {
                used.insert(word.to_owned());
            }
        }
    }
    assert!(used.len() >= 3, "{used:?}");

    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[audit]\npath = \"{}\"\nwitness = \"{}\"\n{}",
        sidelight_e2e::config_for(&upstream.url(), "", ""),
        dir.path().join("audit.db").display(),
        dir.path().join("audit.witness").display(),
        sidelight_e2e::audit_key_file_line(dir.path()),
    );
    let proxy = Proxy::start(&config);
    // The WAL's gauges appear after the first background checkpoint (500 ms).
    let mut text = String::new();
    for _ in 0..50 {
        text = sidelight_e2e::metrics_text(&proxy).await;
        if text.contains("sidelight_audit_wal_bytes") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in &used {
        let exported = text.lines().any(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|t| t.split_whitespace().next())
                .is_some_and(|m| name == m || name.strip_suffix("_total") == Some(m))
        });
        assert!(exported, "{name} is not exported:\n{text}");
    }
}
