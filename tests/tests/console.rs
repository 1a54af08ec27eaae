//! The web console end to end, through the real binary: its doors over plain HTTP
//! (sessions, roles, CSRF, security headers), then a person's work in a real headless
//! Chromium driven through chromedriver (WebDriver): sign in with a token, read the
//! overview, open a record and read both texts, decide a queued review through the form,
//! and find the decision in the audit log (API) and on the record's page. The run saves
//! screenshots of the main pages under `target/console-screenshots/`.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver` (`tests/setup`
//! installs them); without them it fails, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use http::Method;
use serde_json::{Value, json};
use sidelight_e2e::live::{config, kserve_body, post};
use sidelight_e2e::model::ModelServer;
use sidelight_e2e::{AUDIT_KEY_HEX, Answer, Proxy, client, empty, full, send, sha256_hex};

const VIEWER: &str = "sl_console-viewer-token-0123456789";
const REVIEWER: &str = "sl_console-reviewer-token-0123456789";
const AUDITOR: &str = "sl_console-auditor-token-0123456789";
const ADMIN: &str = "sl_console-admin-token-0123456789";
const TOKENS: [&str; 4] = [VIEWER, REVIEWER, AUDITOR, ADMIN];

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn admin_section(auditor_extra: &str) -> String {
    let entry = |name: &str, role: &str, token: &str, extra: &str| {
        format!(
            "[[admin.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n{extra}",
            sha256_hex(token)
        )
    };
    [
        "[admin]\n".to_owned(),
        entry("vera", "viewer", VIEWER, ""),
        entry("rita", "reviewer", REVIEWER, ""),
        entry("audrey", "auditor", AUDITOR, auditor_extra),
        entry("ops", "admin", ADMIN, ""),
    ]
    .join("")
}

/// An audited route `m` with worded features (`colour` is personal data, masked for
/// reviewers), review on request, and the console's tokens.
fn console_config(model: &ModelServer, dir: &Path, auditor_extra: &str) -> String {
    let features = [
        (
            "a",
            "numeric",
            "display_name = \"account age\"\nunit = \"years\"\n",
        ),
        ("b", "numeric", "display_name = \"balance\"\n"),
        ("c", "numeric", "display_name = \"card usage\"\n"),
        (
            "colour",
            "categorical",
            "display_name = \"card colour\"\npii = true\n",
        ),
    ]
    .map(|(name, kind, extra)| {
        format!("[[routes.explain.features]]\nname = \"{name}\"\nkind = \"{kind}\"\n{extra}")
    })
    .join("");
    let routes = format!(
        "[audit]\npath = \"{}\"\n\
         [[routes]]\nname = \"m\"\npath_prefix = \"/v1/models/m\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\noutput = \"score\"\n\
         decision = {{ favourable = \"approved\", unfavourable = \"declined\" }}\n{features}\
         [routes.explain.surrogate]\nwarm_up_rows = 150\nretrain_every_rows = 60\n\
         min_r2 = 0.0\ntrees = 60\ndepth = 4\ncpu_share = 1.0\n\
         [routes.review]\nheader = \"x-sidelight-review\"\ncontest_within = \"30days\"\n{}",
        dir.join("audit.db").display(),
        admin_section(auditor_extra),
    );
    config(model, &dir.join("state"), &routes)
}

fn start(config: &str) -> Proxy {
    Proxy::start_with_env(config, &[("SIDELIGHT_AUDIT_KEY", AUDIT_KEY_HEX)])
}

/// A request to the admin listener with `headers` (no token is added).
async fn call(
    proxy: &Proxy,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let body = if body.is_empty() {
        empty()
    } else {
        full(body.to_owned())
    };
    send(&client(), method, &proxy.admin_url(path), headers, body).await
}

async fn api(proxy: &Proxy, token: &str, path: &str) -> Value {
    let auth = format!("Bearer {token}");
    let answer = call(proxy, Method::GET, path, &[("authorization", &auth)], "").await;
    assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    answer.json()
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {page}"))
        + r#"name="csrf" value=""#.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// `name=value` of the `Set-Cookie` for `name`, and the whole header.
fn set_cookie(answer: &Answer, name: &str) -> Option<(String, String)> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v))
}

/// Every console answer carries the security headers; pages are not cached.
fn assert_secure_headers(answer: &Answer, what: &str) {
    assert_eq!(header(answer, "content-security-policy"), CSP, "{what}");
    assert_eq!(
        header(answer, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    assert_eq!(header(answer, "referrer-policy"), "no-referrer", "{what}");
    if !header(answer, "content-type").starts_with("text/css") {
        assert_eq!(header(answer, "cache-control"), "no-store", "{what}");
    }
    let body = text(answer);
    assert!(
        !body.contains("<script") && !body.contains("<style") && !body.contains(" style="),
        "{what}: inline script or style in {body}"
    );
}

/// Signs in with `token` over plain HTTP; the session cookie (`name=value`).
async fn sign_in(proxy: &Proxy, token: &str) -> String {
    let form = call(proxy, Method::GET, "/console/login", &[], "").await;
    let (login_cookie, _) = set_cookie(&form, "sidelight_login").unwrap();
    let csrf = csrf_of(&text(&form));
    let answer = call(
        proxy,
        Method::POST,
        "/console/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &login_cookie),
        ],
        &format!("csrf={csrf}&token={token}"),
    )
    .await;
    assert_eq!(answer.status, 303, "{}", text(&answer));
    assert_eq!(header(&answer, "location"), "/console");
    set_cookie(&answer, "sidelight_session").unwrap().0
}

async fn page(proxy: &Proxy, path: &str, session: &str) -> Answer {
    call(proxy, Method::GET, path, &[("cookie", session)], "").await
}

async fn post_form(proxy: &Proxy, path: &str, session: &str, body: &str) -> Answer {
    call(
        proxy,
        Method::POST,
        path,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", session),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn the_console_checks_sessions_roles_csrf_and_sends_its_security_headers() {
    let model = ModelServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&console_config(&model, dir.path(), ""));

    // Without a session every page leads to the sign-in form; the root to the console.
    for path in [
        "/console",
        "/console/records",
        "/console/reviews",
        "/console/records/x",
        "/console/monitoring",
        "/console/duties",
    ] {
        let answer = call(&proxy, Method::GET, path, &[], "").await;
        assert_eq!(answer.status, 303, "{path}");
        assert_eq!(header(&answer, "location"), "/console/login", "{path}");
        assert_secure_headers(&answer, path);
    }
    let root = call(&proxy, Method::GET, "/", &[], "").await;
    assert_eq!(
        (root.status.as_u16(), header(&root, "location")),
        (303, "/console")
    );
    let css = call(&proxy, Method::GET, "/console/static/console.css", &[], "").await;
    assert_eq!(css.status, 200);
    assert!(header(&css, "content-type").starts_with("text/css"));
    assert_secure_headers(&css, "stylesheet");

    // The sign-in form: a CSRF token in a cookie scoped to the console, and in the form.
    let form = call(&proxy, Method::GET, "/console/login", &[], "").await;
    assert_eq!(form.status, 200);
    assert_secure_headers(&form, "sign-in form");
    let (login_cookie, whole) = set_cookie(&form, "sidelight_login").unwrap();
    assert!(
        whole.contains("HttpOnly") && whole.contains("SameSite=Strict"),
        "{whole}"
    );
    assert!(
        whole.contains("Path=/console") && !whole.contains("Secure"),
        "{whole}"
    );
    let login_csrf = csrf_of(&text(&form));
    assert_eq!(login_cookie, format!("sidelight_login={login_csrf}"));
    let form_headers = |cookie: &str| {
        vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", cookie),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect::<Vec<_>>()
    };
    let sign_in_with = async |headers: Vec<(&str, String)>, body: String| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        call(&proxy, Method::POST, "/console/login", &headers, &body).await
    };

    // A wrong token: the form again with an error, and no session cookie.
    let wrong = sign_in_with(
        form_headers(&login_cookie),
        format!("csrf={login_csrf}&token=sl_not-a-valid-token"),
    )
    .await;
    assert_eq!(wrong.status, 200);
    assert!(
        text(&wrong).contains("this token is not valid"),
        "{}",
        text(&wrong)
    );
    assert!(wrong.headers.get("set-cookie").is_none(), "{wrong:?}");
    assert_secure_headers(&wrong, "failed sign-in");
    // Without the form's CSRF token, with a wrong one, or from another site: refused.
    for (headers, body) in [
        (form_headers(&login_cookie), format!("token={VIEWER}")),
        (
            form_headers(&login_cookie),
            format!("csrf=forged&token={VIEWER}"),
        ),
        (
            form_headers("sidelight_login=other"),
            format!("csrf={login_csrf}&token={VIEWER}"),
        ),
        (
            {
                let mut h = form_headers(&login_cookie);
                h.push(("origin", "http://evil.example".to_owned()));
                h
            },
            format!("csrf={login_csrf}&token={VIEWER}"),
        ),
    ] {
        let refused = sign_in_with(headers, body.clone()).await;
        assert_eq!(refused.status, 403, "{body}");
        assert!(refused.headers.get("set-cookie").is_none());
    }

    // A viewer: the overview, and nothing that shows records.
    let viewer = sign_in(&proxy, VIEWER).await;
    let overview = page(&proxy, "/console", &viewer).await;
    assert_eq!(overview.status, 200);
    assert_secure_headers(&overview, "overview");
    let html = text(&overview);
    assert!(
        html.contains("<title>Overview · Sidelight console</title>"),
        "{html}"
    );
    assert!(
        html.contains("Signed in as <strong>vera</strong> (viewer)"),
        "{html}"
    );
    assert!(
        !html.contains("/console/records?"),
        "a viewer gets no records link"
    );
    for path in [
        "/console/records",
        "/console/records/x",
        "/console/reviews",
        "/console/monitoring",
    ] {
        let refused = page(&proxy, path, &viewer).await;
        assert_eq!(refused.status, 403, "{path}");
        assert!(text(&refused).contains("needs the"), "{path}");
        assert_secure_headers(&refused, path);
    }
    let viewer_csrf = csrf_of(&html);

    // A reviewer's forms without the session's CSRF token, or with another's: 403.
    let reviewer = sign_in(&proxy, REVIEWER).await;
    let queue = page(&proxy, "/console/reviews", &reviewer).await;
    assert_eq!(queue.status, 200, "{}", text(&queue));
    assert_secure_headers(&queue, "review queue");
    let reviewer_csrf = csrf_of(&text(&queue));
    for body in [
        "decision=confirm&reason=fine".to_owned(),
        "csrf=&decision=confirm&reason=fine".to_owned(),
        format!("csrf={viewer_csrf}&decision=confirm&reason=fine"),
    ] {
        let refused = post_form(&proxy, "/console/reviews/some-id", &reviewer, &body).await;
        assert_eq!(refused.status, 403, "{body}");
        assert_secure_headers(&refused, "refused decision");
    }
    // The right token from another site: refused too.
    let cross = call(
        &proxy,
        Method::POST,
        "/console/reviews/some-id",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &reviewer),
            ("sec-fetch-site", "cross-site"),
        ],
        &format!("csrf={reviewer_csrf}&decision=confirm&reason=fine"),
    )
    .await;
    assert_eq!(cross.status, 403);
    // With it, the decision goes through the desk (no such record: said on the queue).
    let decided = post_form(
        &proxy,
        "/console/reviews/some-id",
        &reviewer,
        &format!("csrf={reviewer_csrf}&decision=confirm&reason=fine"),
    )
    .await;
    assert_eq!(decided.status, 303);
    assert_eq!(header(&decided, "location"), "/console/reviews");
    let queue = page(&proxy, "/console/reviews", &reviewer).await;
    assert!(
        text(&queue).contains("Not recorded: no record has this id."),
        "{}",
        text(&queue)
    );

    // An auditor sees every page; each carries the headers.
    let auditor = sign_in(&proxy, AUDITOR).await;
    for (path, status) in [
        ("/console", 200),
        ("/console/records", 200),
        (
            "/console/records?route=m&review_state=pending&since=all",
            200,
        ),
        ("/console/records/no-such-record", 404),
        ("/console/reviews", 200),
        ("/console/monitoring", 200),
        ("/console/duties", 200),
        ("/console/reviews?state=contested", 200),
        ("/console/nothing-here", 404),
    ] {
        let answer = page(&proxy, path, &auditor).await;
        assert_eq!(answer.status, status, "{path}: {}", text(&answer));
        assert_secure_headers(&answer, path);
        assert!(text(&answer).contains("<h1>"), "{path}");
    }
    // An auditor's duties: the evidence pack downloads; a subject access for an
    // identifier with no records says so; a reviewer may not open the page.
    let pack = page(&proxy, "/console/duties/evidence?from=&to=", &auditor).await;
    assert_eq!(pack.status, 200, "{}", text(&pack));
    assert_eq!(header(&pack, "content-type"), "application/x-tar");
    let duties = text(&page(&proxy, "/console/duties", &auditor).await);
    let duties_csrf = csrf_of(&duties);
    let nobody = post_form(
        &proxy,
        "/console/duties/access",
        &auditor,
        &format!("csrf={duties_csrf}&subject_id=nobody&language=de"),
    )
    .await;
    assert_eq!(nobody.status, 404, "{}", text(&nobody));
    assert!(text(&nobody).contains("No records"));
    assert_eq!(page(&proxy, "/console/duties", &reviewer).await.status, 403);

    // Sign-out needs the CSRF token, and ends the session for good.
    let refused = post_form(&proxy, "/console/logout", &viewer, "csrf=wrong").await;
    assert_eq!(refused.status, 403);
    assert_eq!(page(&proxy, "/console", &viewer).await.status, 200);
    let out = post_form(
        &proxy,
        "/console/logout",
        &viewer,
        &format!("csrf={viewer_csrf}"),
    )
    .await;
    assert_eq!(
        (out.status.as_u16(), header(&out, "location")),
        (303, "/console/login")
    );
    let (cleared, whole) = set_cookie(&out, "sidelight_session").unwrap();
    assert_eq!(cleared, "sidelight_session=");
    assert!(whole.contains("Max-Age=0"), "{whole}");
    let after = page(&proxy, "/console", &viewer).await;
    assert_eq!(after.status, 303, "the session ended");

    // Revoking a token (config reload) ends its sessions at once.
    std::fs::write(
        &proxy.config_path,
        console_config(&model, dir.path(), "revoked = true\n"),
    )
    .unwrap();
    let auth = format!("Bearer {ADMIN}");
    let reload = call(
        &proxy,
        Method::POST,
        "/api/v1/config/reload",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    assert_eq!(page(&proxy, "/console", &auditor).await.status, 303);
    assert_eq!(page(&proxy, "/console", &reviewer).await.status, 200);

    // Sign-ins and sign-outs are in the audit log; no token is in any log line.
    let records = api(&proxy, ADMIN, "/api/v1/records?route=_admin&limit=1000").await;
    let actions: Vec<String> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["request"]["actor"], r["request"]["action"]))
        .collect();
    assert!(
        actions.contains(&"\"vera\" \"console.sign_in\"".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"\"vera\" \"console.sign_out\"".to_owned()),
        "{actions:?}"
    );
    let logs = proxy.log_text();
    for token in TOKENS {
        assert!(!logs.contains(token), "a token is in the logs");
    }
    assert!(!logs.contains(&login_csrf), "a CSRF token is in the logs");
}

// === the browser ===

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    const BINARY: &'static str = "/usr/bin/chromedriver";

    fn start() -> Self {
        assert!(
            Path::new(Self::BINARY).exists() && Path::new("/usr/bin/chromium").exists(),
            "the console's browser test needs Chromium and chromedriver: run tests/setup \
             (apt-get install chromium chromium-driver)"
        );
        let port = free_port();
        let child = Command::new(Self::BINARY)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", Self::BINARY));
        let driver = Driver { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    /// A WebDriver session with a fresh headless Chromium. This machine has no network:
    /// the flags keep Chromium from trying to reach one.
    async fn browser(&self, profile: &Path) -> Client {
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,1600".to_owned(),
            "--lang=en-US".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("headless Chromium did not start through chromedriver: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `target/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    // Test executables run from target/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits for the page whose `<h1>` is `title` (a click's navigation may still be on its
/// way).
async fn wait_for_page(browser: &Client, title: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h1 = match browser.find(Locator::Css("h1")).await {
            Ok(h1) => h1.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if h1 == title {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no page `{title}`; at {} with `{h1}`",
            browser.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn path_of(browser: &Client) -> String {
    browser.current_url().await.unwrap().path().to_owned()
}

#[tokio::test]
async fn a_reviewer_signs_in_reads_a_record_and_decides_in_a_real_browser() {
    let model = ModelServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&console_config(&model, dir.path(), ""));

    // Traffic until a surrogate explains, then some predictions the client sends to
    // review.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut i = 0;
    loop {
        for _ in 0..10 {
            post(&proxy, "/v1/models/m:predict", kserve_body(&[i]), &[]).await;
            i += 1;
        }
        // Three versions, so that the fidelity charts have a line to draw.
        let surrogates = api(&proxy, AUDITOR, "/api/v1/surrogates").await;
        let versions = surrogates["routes"][0]["history"]
            .as_array()
            .map_or(0, Vec::len);
        if !surrogates["routes"][0]["in_service"].is_null() && versions >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no surrogate: {surrogates}");
    }
    let mut tokens = Vec::new();
    for row in 0..6 {
        let answer = post(
            &proxy,
            "/v1/models/m:predict",
            kserve_body(&[row]),
            &[
                ("x-sidelight-review", "1"),
                ("x-sidelight-audience", "customer"),
            ],
        )
        .await;
        assert_eq!(answer.status, 200);
        tokens.push((
            header(&answer, "x-sidelight-record-id").to_owned(),
            header(&answer, "x-sidelight-feedback-token").to_owned(),
        ));
    }
    // The workbench's what-if asks again about a recent explained request.
    let explained = tokens[0].0.clone();
    // One of them the customer contests: it moves to the contested queue.
    let (contested_id, contested_token) = tokens.pop().unwrap();
    let contest = send(
        &client(),
        Method::POST,
        &proxy.url("/v1/contests"),
        &[("content-type", "application/json")],
        full(
            serde_json::json!({
                "id": contested_id,
                "token": contested_token,
                "reason": "My card colour was recorded wrongly"
            })
            .to_string(),
        ),
    )
    .await;
    assert_eq!(contest.status, 202, "{:?}", contest.body);
    // The record to work on: one the surrogate explains well, so that the customer's
    // text is not withheld.
    let pending = api(
        &proxy,
        AUDITOR,
        "/api/v1/records?route=m&review_state=pending",
    )
    .await;
    let pending = pending["records"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 5, "{pending:?}");
    let chosen = pending
        .iter()
        .min_by(|a, b| {
            let error = |r: &Value| {
                r["attributions"][0]["fidelity"]["local_error"]
                    .as_f64()
                    .unwrap_or(f64::INFINITY)
            };
            error(a).total_cmp(&error(b))
        })
        .unwrap();
    let id = chosen["id"].as_str().unwrap().to_owned();
    let local_error = chosen["attributions"][0]["fidelity"]["local_error"].clone();

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path()).await;
    let base = format!("http://{}", proxy.admin);
    let work = async {
        // Signing in.
        browser.goto(&format!("{base}/console")).await.unwrap();
        assert_eq!(path_of(&browser).await, "/console/login");
        assert!(browser.title().await.unwrap().starts_with("Sign in"));
        let token = browser.find(Locator::Id("token")).await.unwrap();
        token.send_keys(REVIEWER).await.unwrap();
        screenshot(&browser, "login").await;
        browser
            .find(Locator::Css("form.login button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        // The overview.
        wait_for_page(&browser, "Overview").await;
        assert_eq!(path_of(&browser).await, "/console");
        let who = text_of(&browser, ".who").await;
        assert!(who.contains("rita") && who.contains("reviewer"), "{who}");
        let route = text_of(&browser, "section.route").await;
        assert!(route.contains("Surrogate in service"), "{route}");
        let pending = text_of(&browser, "dl.facts a[href^='/console/reviews']").await;
        assert_eq!(pending, "5", "pending reviews");
        browser
            .find(Locator::Css("svg.fidelity title"))
            .await
            .expect("the fidelity chart");
        screenshot(&browser, "overview").await;

        // A record: the waterfall and both texts, with personal data masked.
        browser
            .goto(&format!("{base}/console/records/{id}"))
            .await
            .unwrap();
        assert!(text_of(&browser, "h1").await.starts_with("Record "));
        let customer = text_of(&browser, "#text-customer-0").await;
        let developer = text_of(&browser, "#text-developer-0").await;
        assert!(
            developer.contains("Pushed the prediction"),
            "developer text: {developer}"
        );
        assert!(
            !customer.contains("Pushed the prediction") && !customer.starts_with("No text"),
            "customer text (local error {local_error}): {customer}"
        );
        assert!(
            customer.contains("Decision: approved.") || customer.contains("Decision: declined."),
            "{customer}"
        );
        assert_ne!(customer, developer);
        assert!(developer.contains("•••"), "colour is masked: {developer}");
        let waterfall = browser
            .find(Locator::Css("svg.waterfall"))
            .await
            .expect("the waterfall chart");
        assert_eq!(
            waterfall.attr("role").await.unwrap().as_deref(),
            Some("img")
        );
        let bars = browser
            .find_all(Locator::Css("svg.waterfall rect"))
            .await
            .unwrap();
        assert_eq!(bars.len(), 4, "one bar per feature");
        assert_eq!(
            text_of(&browser, "#review-state").await,
            "pending (requested)"
        );
        screenshot(&browser, "record").await;

        // The queue: decide the record with an override, through the form.
        browser
            .find(Locator::LinkText("Review queue"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "Review queue").await;
        let items = browser
            .find_all(Locator::Css("article.review-item"))
            .await
            .unwrap();
        assert_eq!(items.len(), 5);
        screenshot(&browser, "reviews").await;
        let item = browser
            .find(Locator::Css(&format!("article[data-record=\"{id}\"]")))
            .await
            .unwrap();
        item.find(Locator::Css("input[value=override]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        item.find(Locator::Css("input[name=outcome]"))
            .await
            .unwrap()
            .send_keys("1.5")
            .await
            .unwrap();
        item.find(Locator::Css("textarea[name=reason]"))
            .await
            .unwrap()
            .send_keys("Score too high for this applicant's history")
            .await
            .unwrap();
        item.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flash = text_of(&browser, ".flash").await;
        assert!(
            flash.contains("Decision recorded") && flash.contains("overridden"),
            "{flash}"
        );
        assert_eq!(path_of(&browser).await, "/console/reviews");
        let left = browser
            .find_all(Locator::Css("article.review-item"))
            .await
            .unwrap();
        assert_eq!(left.len(), 4, "the decided record left the queue");
        let decisions = text_of(&browser, "#decisions").await;
        assert!(
            decisions.contains("Score too high") && decisions.contains("rita"),
            "{decisions}"
        );
        screenshot(&browser, "reviews-decided").await;

        // The contested queue: the customer's own words, and the month's counts.
        browser
            .goto(&format!("{base}/console/reviews?state=contested"))
            .await
            .unwrap();
        wait_for_page(&browser, "Review queue").await;
        let contested = browser
            .find(Locator::Css(&format!(
                "article[data-record=\"{contested_id}\"] .contest-reason"
            )))
            .await
            .expect("the contested record, with the customer's reason");
        assert_eq!(
            contested.text().await.unwrap(),
            "My card colour was recorded wrongly"
        );
        let counts = text_of(&browser, "#contest-counts").await;
        assert!(
            counts.contains("Contested") && counts.contains('1'),
            "{counts}"
        );
        screenshot(&browser, "reviews-contested").await;

        // The record's page shows the decision in its history.
        browser
            .goto(&format!("{base}/console/records/{id}"))
            .await
            .unwrap();
        assert_eq!(
            text_of(&browser, "#review-state").await,
            "overridden (requested)"
        );
        let history = text_of(&browser, "#review-history").await;
        assert!(
            history.contains("rita")
                && history.contains("override")
                && history.contains("1.5")
                && history.contains("Score too high for this applicant's history"),
            "{history}"
        );

        // Monitoring: fidelity, flags, and no made-up fairness charts.
        browser
            .find(Locator::LinkText("Monitoring"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "Monitoring").await;
        assert!(
            text_of(&browser, "#not-monitored")
                .await
                .contains("not configured")
        );
        browser
            .find(Locator::Css("svg.fidelity"))
            .await
            .expect("the fidelity chart");
        screenshot(&browser, "monitoring").await;

        // Signing out leads back to the form; the console is closed again.
        browser
            .find(Locator::Css(".who button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "Sign in").await;
        browser
            .goto(&format!("{base}/console/reviews"))
            .await
            .unwrap();
        assert_eq!(path_of(&browser).await, "/console/login");

        // An auditor's duties page: the notices, a subject's access, the evidence pack.
        let token = browser.find(Locator::Id("token")).await.unwrap();
        token.send_keys(AUDITOR).await.unwrap();
        browser
            .find(Locator::Css("form.login button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "Overview").await;
        browser
            .find(Locator::LinkText("Duties"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "Duties to the person").await;
        let notices = text_of(&browser, "#notice-routes").await;
        assert!(
            notices.contains("/v1/notice/m") && notices.contains("30 days"),
            "{notices}"
        );
        browser
            .find(Locator::Id("evidence-form"))
            .await
            .expect("the evidence form");
        browser
            .find(Locator::Id("access-form"))
            .await
            .expect("the subject access form");
        screenshot(&browser, "duties").await;

        // The workbench: the summary from the recorded attributions, a dependence
        // plot, a cohort comparison, and a what-if from a record's page.
        browser
            .find(Locator::LinkText("Workbench"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "Workbench").await;
        let summary = text_of(&browser, "table.summary").await;
        assert!(
            summary.contains("account") || summary.contains('a'),
            "{summary}"
        );
        browser
            .find(Locator::Css("svg.dependence"))
            .await
            .expect("the dependence plot");
        browser
            .find(Locator::Css("table.summary svg.strip circle"))
            .await
            .expect("a strip of predictions per feature");
        screenshot(&browser, "workbench").await;
        let cohort = browser
            .find(Locator::Css("form.cohorts input[name=a]"))
            .await
            .unwrap();
        cohort.send_keys("a=0.5..").await.unwrap();
        browser
            .find(Locator::Css("form.cohorts button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "Workbench").await;
        let cohorts = text_of(&browser, "table.cohorts").await;
        assert!(cohorts.contains("A − B"), "{cohorts}");
        screenshot(&browser, "workbench-cohorts").await;
        browser
            .goto(&format!("{base}/console/records/{explained}"))
            .await
            .unwrap();
        browser
            .find(Locator::Css("details.whatif summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let changes = browser
            .find(Locator::Css("details.whatif textarea"))
            .await
            .unwrap();
        changes.send_keys("a = 0.9").await.unwrap();
        browser
            .find(Locator::Css("details.whatif button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_page(&browser, "What if").await;
        let changed = text_of(&browser, "#whatif-changed").await;
        assert!(changed.parse::<f64>().is_ok(), "{changed}");
        screenshot(&browser, "whatif").await;
    };
    let outcome = std::panic::AssertUnwindSafe(work).catch_unwind().await;
    // The browser is closed whatever happened, before chromedriver is stopped.
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }

    // The decision is in the audit log, chained as a `_review` record.
    let reviews = api(&proxy, AUDITOR, "/api/v1/records?route=_review").await;
    let decision = reviews["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["request"])
        .find(|r| r["record_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no _review record for {id}: {reviews}"));
    assert_eq!(decision["decision"], "override");
    assert_eq!(decision["reviewer"], "rita");
    assert_eq!(decision["outcome"], json!(1.5));
    assert_eq!(
        decision["reason"],
        "Score too high for this applicant's history"
    );
    let record = api(&proxy, AUDITOR, &format!("/api/v1/records/{id}")).await;
    assert_eq!(record["review_state"], "overridden");
    let logs = proxy.log_text();
    assert!(!logs.contains(REVIEWER), "the token is in the logs");
}
