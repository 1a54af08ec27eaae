//! Support for the end-to-end suites: a real upstream HTTP server with the behaviours the
//! tests need (echo, slow, reset, huge bodies), the real `sidelight` binary started as a
//! child process, and a small HTTP client.
//!
//! Tests here may unwrap: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

mod cli;
pub mod demo;
pub mod faulty;
mod in_process;
pub mod live;
pub mod model;
pub mod postgres;

pub use cli::{Cli, CliRun, cli, run_cli};
pub use in_process::InProcess;

pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The path of the `sidelight` binary, built once per test process if needed.
pub fn sidelight_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Test executables live in target/<profile>/deps; the binary in target/<profile>.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let profile = profile_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        // The same targets `cargo test --workspace` builds, so that features unify the
        // same way and the binary it already built is reused; `--package sidelight`
        // alone resolves features differently and built every dependency a second time.
        build.args([
            "build",
            "--quiet",
            "--workspace",
            "--lib",
            "--bins",
            "--tests",
            "--examples",
        ]);
        if profile == "release" {
            build.arg("--release");
        }
        let status = build.status().expect("cannot run cargo to build sidelight");
        assert!(status.success(), "building the sidelight binary failed");
        let bin = profile_dir.join("sidelight");
        assert!(bin.exists(), "no sidelight binary at {}", bin.display());
        bin
    })
}

// === upstream ===

/// A real HTTP/1.1 + h2c server on 127.0.0.1 with test endpoints:
///
/// - `/echo`: answers 200 with the request body as it came, plus `x-echo-method`,
///   an end-to-end header `x-model-version: 7`, and hop-by-hop headers that a proxy
///   must remove;
/// - `/inspect`: answers JSON describing the request (method, uri, version, headers,
///   body length);
/// - `/status/N`: answers status N;
/// - `/slow?ms=N`: answers after N milliseconds;
/// - `/reset`: drops the connection without answering;
/// - `/big?bytes=N`: streams N bytes;
/// - `/count`: reads the body as a stream and answers with its length and a checksum.
pub struct Upstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        r.fetch_add(1, Ordering::SeqCst);
                        upstream_handle(req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset on purpose")
    }
}

impl std::error::Error for Reset {}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.parse().ok())?
    })
}

async fn upstream_handle(req: Request<Incoming>) -> Result<Response<BoxBody>, Reset> {
    let path = req.uri().path().to_owned();
    let response = match path.as_str() {
        "/echo" => {
            let method = req.method().to_string();
            let content_type = req.headers().get("content-type").cloned();
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(|_| Reset)?
                .to_bytes();
            let mut response = Response::new(full(body));
            let headers = response.headers_mut();
            headers.insert("x-echo-method", method.parse().unwrap());
            headers.insert("x-model-version", "7".parse().unwrap());
            headers.insert("cache-control", "no-store".parse().unwrap());
            headers.insert("connection", "x-upstream-hop".parse().unwrap());
            headers.insert("x-upstream-hop", "secret".parse().unwrap());
            headers.insert("keep-alive", "timeout=5".parse().unwrap());
            if let Some(ct) = content_type {
                headers.insert("content-type", ct);
            }
            response
        }
        "/inspect" => {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        serde_json::Value::String(v.to_str().unwrap_or("<binary>").to_owned()),
                    )
                })
                .collect();
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(|_| Reset)?
                .to_bytes();
            let json = serde_json::json!({
                "method": method, "uri": uri, "version": version,
                "headers": headers, "body_len": body.len(),
            });
            let mut response = Response::new(full(Bytes::from(json.to_string())));
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        }
        "/slow" => {
            let ms = query_u64(&req, "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(Bytes::from_static(b"slow done")))
        }
        "/reset" => return Err(Reset),
        "/big" => {
            let total = query_u64(&req, "bytes").unwrap_or(1 << 20);
            let mut response = Response::new(pattern_body(total, 64 * 1024));
            response
                .headers_mut()
                .insert("content-length", total.to_string().parse().unwrap());
            response
        }
        "/count" => {
            let mut body = req.into_body();
            let mut len: u64 = 0;
            let mut checksum: u64 = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| Reset)?;
                if let Some(data) = frame.data_ref() {
                    checksum = checksum_update(checksum, len, data);
                    len += data.len() as u64;
                }
            }
            let json = serde_json::json!({ "len": len, "checksum": checksum });
            Response::new(full(Bytes::from(json.to_string())))
        }
        other if other.starts_with("/status/") => {
            let code: u16 = other["/status/".len()..].parse().unwrap_or(500);
            let mut response = Response::new(full(Bytes::from(format!("status {code}"))));
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
            response
        }
        _ => {
            let mut response = Response::new(full(Bytes::from_static(b"not found")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

/// A position-dependent checksum, so reordered or dropped chunks are noticed.
pub fn checksum_update(mut checksum: u64, offset: u64, data: &[u8]) -> u64 {
    for (i, byte) in data.iter().enumerate() {
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(u64::from(*byte) ^ (offset + i as u64));
    }
    checksum
}

/// The byte at `offset` of every pattern body.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// A streamed body of `total` bytes in chunks, generated on the fly (never held whole).
pub fn pattern_body(total: u64, chunk: usize) -> BoxBody {
    let stream = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= total {
            return None;
        }
        let len = chunk.min((total - offset) as usize);
        let data: Vec<u8> = (0..len as u64).map(|i| pattern_byte(offset + i)).collect();
        Some((
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from(data))),
            offset + len as u64,
        ))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn empty() -> BoxBody {
    full(Bytes::new())
}

// === the sidelight process ===

/// The admin token of every proxy whose config has no `[admin]` section of its own
/// (role admin): the suites that are not about access control get in with it, sent by
/// [`send`] and [`get`] to those proxies' admin ports.
pub const TEST_ADMIN_TOKEN: &str = "sl_e2e-test-admin-token-not-a-secret";

/// The master key (64 hex digits) the suites' audit logs are sealed with, given to
/// the proxy and the `audit` commands as `SIDELIGHT_AUDIT_KEY`.
/// An `[audit]` line `key_file = "…"` naming a file in `dir` that holds
/// [`AUDIT_KEY_HEX`]: an in-process Sidelight reads no environment, so it takes its key
/// from a file.
pub fn audit_key_file_line(dir: &Path) -> String {
    let path = dir.join("audit.key");
    std::fs::write(&path, AUDIT_KEY_HEX).unwrap();
    format!("key_file = \"{}\"\n", path.display())
}

/// What a test talks to, whether Sidelight runs as a child process ([`Proxy`]) or in
/// this one ([`InProcess`]): helpers take `&impl Sidecar` and serve both.
pub trait Sidecar: Sync {
    /// `path` on the data port.
    fn url(&self, path: &str) -> String;
    /// `path` on the admin port.
    fn admin_url(&self, path: &str) -> String;
}

impl Sidecar for Proxy {
    fn url(&self, path: &str) -> String {
        Proxy::url(self, path)
    }
    fn admin_url(&self, path: &str) -> String {
        Proxy::admin_url(self, path)
    }
}

impl<T: Sidecar + Send> Sidecar for Arc<T> {
    fn url(&self, path: &str) -> String {
        T::url(self, path)
    }
    fn admin_url(&self, path: &str) -> String {
        T::admin_url(self, path)
    }
}

impl Sidecar for InProcess {
    fn url(&self, path: &str) -> String {
        InProcess::url(self, path)
    }
    fn admin_url(&self, path: &str) -> String {
        InProcess::admin_url(self, path)
    }
}

pub const AUDIT_KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The admin addresses of the running proxies that accept [`TEST_ADMIN_TOKEN`].
fn token_admins() -> &'static Mutex<HashSet<SocketAddr>> {
    static ADMINS: OnceLock<Mutex<HashSet<SocketAddr>>> = OnceLock::new();
    ADMINS.get_or_init(Default::default)
}

/// The hex SHA-256 of `token`, as `[[admin.tokens]] sha256` wants it.
pub fn sha256_hex(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `config` with an `[admin]` section that lets [`TEST_ADMIN_TOKEN`] in as admin, unless
/// it has one (a suite about access control configures its own); and whether it was added.
pub fn with_test_token(config: &str) -> (String, bool) {
    let has_admin = config.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with("[admin") || line.starts_with("[[admin")
    });
    if has_admin {
        return (config.to_owned(), false);
    }
    let with = format!(
        "{config}
[admin]
[[admin.tokens]]
name = \"e2e\"
role = \"admin\"
sha256 = \"{}\"
",
        sha256_hex(TEST_ADMIN_TOKEN)
    );
    (with, true)
}

/// A running `sidelight` child process with its stderr (JSON logs) captured.
pub struct Proxy {
    pub child: Child,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The token its admin API accepts, when the helper configured it.
    pub admin_token: Option<&'static str>,
    /// The config file it was started with (a reload re-reads it).
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `sidelight serve` with `config` (TOML) and waits until it listens. The
    /// listeners should be on port 0; the real addresses are read from the start-up log.
    /// A config without an `[admin]` section gets one with [`TEST_ADMIN_TOKEN`], which
    /// [`send`] then sends to this proxy's admin port.
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(config, env, &[])
    }

    /// Starts `sidelight serve` as the last argument of `wrapper` (e.g. `unshare …`),
    /// which must end up exec-ing it, so that the child's pid is Sidelight's.
    pub fn start_wrapped(config: &str, env: &[(&str, &str)], wrapper: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidelight.toml");
        let (config, test_token) = with_test_token(config);
        std::fs::write(&path, config).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(sidelight_bin());
                c
            }
            None => Command::new(sidelight_bin()),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .env("SIDELIGHT_LOG__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if event["message"] == "sidelight is serving" {
                        let data = event["data"]
                            .as_str()
                            .unwrap()
                            .parse::<SocketAddr>()
                            .unwrap();
                        let admin = event["admin"]
                            .as_str()
                            .unwrap()
                            .parse::<SocketAddr>()
                            .unwrap();
                        let _ = tx.send((data, admin));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (data, admin) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                panic!("sidelight did not start; logs: {:?}", logs.lock().unwrap());
            }
        };
        if test_token {
            token_admins().lock().unwrap().insert(admin);
        }
        Self {
            child,
            data,
            admin,
            logs,
            admin_token: test_token.then_some(TEST_ADMIN_TOKEN),
            config_path: path,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident memory of the process so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        token_admins().lock().unwrap().remove(&self.admin);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for a proxy in front of `upstream_url`, on ephemeral ports, with `extra`
/// TOML appended (extra sections, or keys in a trailing section).
/// A `[server.trust]` table that trusts clients on loopback (the tests' own), to append
/// to a config: their `x-sidelight-probe`, protected attributes in headers, developer
/// and auditor audiences and tokenless feedback are honoured.
pub const TRUSTED_LOOPBACK: &str = "\n[server.trust]\nsources = [\"127.0.0.0/8\", \"::1/128\"]\n";

pub fn config_for(upstream_url: &str, server_extra: &str, upstream_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server_extra}\n\
         [upstream]\nurl = \"{upstream_url}\"\n{upstream_extra}\n"
    )
}

// === client ===

/// A plain HTTP/1.1 client with a keep-alive pool.
pub fn client() -> Client<HttpConnector, BoxBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// An HTTP/2 client speaking h2c with prior knowledge.
pub fn h2c_client() -> Client<HttpConnector, BoxBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// What a test looks at in a response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error.code` of a Sidelight JSON error.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends a request and reads the whole answer. A request to the admin port of a proxy
/// started with [`TEST_ADMIN_TOKEN`] carries it, unless `headers` has an `authorization`.
pub async fn send(
    client: &Client<HttpConnector, BoxBody>,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: BoxBody,
) -> Answer {
    let mut builder = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let authorized = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
    let admin = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.authority()?.as_str().parse::<SocketAddr>().ok())
        .is_some_and(|addr| token_admins().lock().unwrap().contains(&addr));
    if admin && !authorized {
        builder = builder.header("authorization", format!("Bearer {TEST_ADMIN_TOKEN}"));
    }
    let response = client.request(builder.body(body).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Answer {
    send(&client(), Method::GET, url, &[], empty()).await
}

/// A command prefix that runs `setup` (mounts) in a mount namespace of its own, then
/// execs the program appended to it, so that the mounts are the program's alone.
pub fn in_mount_namespace(setup: &str) -> Vec<String> {
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("{setup} && exec \"$0\" \"$@\""),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

// === audit and metrics ===

/// `sidelight audit verify LOCATION…` (`--db FILE` or `--url URL`) with
/// [`AUDIT_KEY_HEX`]: its exit code (-1 for a signal) and all it printed.
pub fn audit_verify(location: &[&str]) -> (i32, String) {
    let run = cli(["audit", "verify"])
        .args(location)
        .env("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)
        .run();
    (run.code.unwrap_or(-1), run.text())
}

/// A proxy's `/metrics`, as text.
pub async fn metrics_text(proxy: &impl Sidecar) -> String {
    String::from_utf8_lossy(&get(&proxy.admin_url("/metrics")).await.body).into_owned()
}

/// The value of the sample `series` (name and labels, as printed) in a Prometheus text
/// exposition, if it is there.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Signs in to the console at `admin` with `token`: the session cookie (`name=value`).
pub async fn console_session(admin: &str, token: &str) -> String {
    let cookie = |answer: &Answer, name: &str| {
        answer
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .unwrap()
    };
    let form = get(&format!("{admin}/console/login")).await;
    let login = cookie(&form, "sidelight_login");
    let page = String::from_utf8_lossy(&form.body).into_owned();
    let marker = r#"name="csrf" value=""#;
    let csrf = page[page.find(marker).unwrap() + marker.len()..]
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let answer = send(
        &client(),
        http::Method::POST,
        &format!("{admin}/console/login"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &login),
        ],
        full(format!("csrf={csrf}&token={token}")),
    )
    .await;
    assert_eq!(answer.status, 303);
    cookie(&answer, "sidelight_session")
}

pub async fn console_page(admin: &str, path: &str, session: &str) -> String {
    let answer = send(
        &client(),
        http::Method::GET,
        &format!("{admin}{path}"),
        &[("cookie", session)],
        empty(),
    )
    .await;
    assert_eq!(answer.status, 200, "{path}");
    String::from_utf8_lossy(&answer.body).into_owned()
}
