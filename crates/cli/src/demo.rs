//! `sidelight demo`: a demo credit model, Sidelight in front of it, and traffic replayed
//! from the German credit data set, all in this process, with nothing to configure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sidelight_config::ADMIN_TOKEN_VARIABLE;
use sidelight_config::{
    AttachMode, Audience, AuditBackend, AuditConfig, AuditDurability, DecisionConfig,
    DistillConfig, ExplainConfig, FeatureConfig, FeatureKindConfig, GroupConfig, LogConfig,
    MonitorConfig, OutputConfig, PrivacyConfig, ProtectedConfig, ProtocolName, QueueFull,
    RankingConfig, ReasonConfig, ReviewConfig, Role, RouteConfig, StoreFailure, SurrogateConfig,
    TokenConfig, WordingConfig,
};
use sidelight_demo_model::data::applications;
use sidelight_demo_model::server::{PREDICT_PATH, RANK_PATH};
use sidelight_demo_model::traffic::{TrafficConfig, TrafficStats, replay};
use sidelight_proxy::{
    Config, FtlSource, Sidelight, SurrogateStatus, admin_get, post_json, post_json_with_headers,
};
use tokio::sync::watch;

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Where Sidelight accepts model traffic.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where Sidelight's admin endpoints answer.
    #[arg(long, default_value = "127.0.0.1:9100")]
    admin_listen: SocketAddr,
    /// Where the demo model listens (Sidelight's upstream).
    #[arg(long, default_value = "127.0.0.1:8000")]
    model_listen: SocketAddr,
    /// Replayed applications per second; 0 sends no traffic.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Where the audit log, its key, the trained surrogate and the report's config are
    /// kept. By default a fresh directory for this run (printed at start), so that runs
    /// and users never mix; name one to keep it across runs (a second run then explains
    /// at once and reads the first run's records).
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
}

/// The state directory of this run: the one asked for, or a fresh one under the
/// system's temporary directory, readable by this user only (it holds the audit key).
fn state_dir(asked: Option<&std::path::Path>) -> anyhow::Result<(std::path::PathBuf, bool)> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = asked {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        return Ok((dir.to_path_buf(), false));
    }
    let dir = std::env::temp_dir().join(format!(
        "sidelight-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    // Not recursive: the directory must be new, not one someone else prepared.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {} (use --state-dir DIR)", dir.display()))?;
    Ok((dir, true))
}

/// How the printed commands name this program: the path of the running executable, so
/// that they run as printed whether or not `sidelight` is on the PATH (after `cargo
/// run` it is not).
fn this_program() -> String {
    match std::env::current_exe() {
        Ok(path) => shell_word(&path.display().to_string()),
        Err(_) => "sidelight".to_owned(),
    }
}

/// `text` as one shell word: as it is when it holds only characters no shell treats
/// specially, in single quotes otherwise.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The German credit features as a business would describe them: display names, units,
/// and which attributes are protected (never named to a customer).
/// A demo feature a customer may read, with its display name and unit.
fn feature(
    name: &str,
    kind: FeatureKindConfig,
    display: &str,
    unit: Option<&str>,
) -> FeatureConfig {
    FeatureConfig {
        name: name.to_owned(),
        kind,
        display_name: Some(display.to_owned()),
        unit: unit.map(str::to_owned),
        levels: Vec::new(),
        pii: false,
        protected: false,
        customer_visible: true,
        actionable: false,
        min: None,
        max: None,
    }
}

fn credit_features() -> Vec<FeatureConfig> {
    use FeatureKindConfig::{Categorical, Numeric};
    let protected = |mut f: FeatureConfig| {
        f.protected = true;
        f.pii = true;
        f.customer_visible = false;
        f
    };
    let actionable = |mut f: FeatureConfig, min: f64, max: f64| {
        f.actionable = true;
        f.min = Some(min);
        f.max = Some(max);
        f
    };
    vec![
        feature(
            "checking_account",
            Categorical,
            "checking account balance",
            None,
        ),
        actionable(
            feature("duration_months", Numeric, "loan duration", Some("months")),
            4.0,
            72.0,
        ),
        feature("credit_history", Categorical, "credit history", None),
        feature("purpose", Categorical, "purpose of the loan", None),
        actionable(
            feature("credit_amount", Numeric, "loan amount", Some("DM")),
            250.0,
            20000.0,
        ),
        feature("savings", Categorical, "savings", None),
        feature("employed_since", Categorical, "time in current job", None),
        feature(
            "installment_rate_pct_income",
            Numeric,
            "instalment as a share of income",
            Some("%"),
        ),
        protected(feature(
            "personal_status_sex",
            Categorical,
            "personal status and sex",
            None,
        )),
        feature(
            "other_debtors",
            Categorical,
            "other debtors or guarantors",
            None,
        ),
        feature(
            "residence_since_years",
            Numeric,
            "years at current address",
            Some("years"),
        ),
        feature("property", Categorical, "property", None),
        protected(feature("age_years", Numeric, "age", Some("years"))),
        feature(
            "other_installment_plans",
            Categorical,
            "other instalment plans",
            None,
        ),
        feature("housing", Categorical, "housing", None),
        feature(
            "existing_credits",
            Numeric,
            "existing credits at this bank",
            None,
        ),
        feature("job", Categorical, "job", None),
        feature("dependents", Numeric, "dependents", None),
        feature("telephone", Categorical, "telephone", None),
        protected(feature(
            "foreign_worker",
            Categorical,
            "foreign worker",
            None,
        )),
    ]
}

/// The demo's fairness and drift monitor: personal status and sex (the data set's only
/// record of sex), and age in two groups split at 25, as the literature on this data set
/// does.
/// The recommender's route: the customer once and the candidates as a list, a ranked
/// answer matched by SKU, the top three explained; age is protected, and exposure
/// watches which range (budget or premium) each age group is shown.
fn shop_route() -> RouteConfig {
    use FeatureKindConfig::{Boolean, Categorical, Numeric};
    let mut age = feature("context.age", Numeric, "age", Some("years"));
    age.protected = true;
    age.pii = true;
    age.customer_visible = false;
    let mut tier = feature("item.tier", Categorical, "range", None);
    // The range is how exposure groups items; the customer reads the price instead.
    tier.customer_visible = false;
    RouteConfig {
        name: "shop".to_owned(),
        path_prefix: "/v1/models/shop".to_owned(),
        inspect_limit_bytes: 1024 * 1024,
        explain: Some(ExplainConfig {
            protocol: ProtocolName::Ranking,
            rows_pointer: None,
            outputs_pointer: None,
            attach: AttachMode::Field,
            audience: Audience::Customer,
            audiences: vec![Audience::Developer, Audience::Auditor],
            references: Some(true),
            limits: Default::default(),
            output: OutputConfig::Score,
            explain_class: None,
            features: vec![
                age,
                feature("context.outdoor_share", Numeric, "outdoor purchases", None),
                feature("context.budget", Numeric, "budget", Some("EUR")),
                feature("context.member", Boolean, "membership", None),
                feature("item.category", Categorical, "kind of product", None),
                feature("item.price", Numeric, "price", Some("EUR")),
                feature("item.weight_kg", Numeric, "weight", Some("kg")),
                feature("item.rating", Numeric, "rating", None),
                tier,
            ],
            decision: DecisionConfig::default(),
            wording: WordingConfig::default(),
            surrogate: SurrogateConfig {
                warm_up_rows: 2400,
                retrain_every_rows: 4800,
                ..SurrogateConfig::default()
            },
            distill: DistillConfig::default(),
            groups: Vec::new(),
            reasons: Vec::new(),
            ranking: Some(RankingConfig {
                top_k: 3,
                context: Some("/customer".to_owned()),
                candidates: Some("/items".to_owned()),
                id_field: Some("sku".to_owned()),
                ranked: Some("/recommendations".to_owned()),
                ranked_id: "sku".to_owned(),
                item_group: Some("item.tier".to_owned()),
                ..RankingConfig::default()
            }),
        }),
        privacy: PrivacyConfig {
            fields: [("context.age".to_owned(), "band:5".to_owned())].into(),
            ..PrivacyConfig::default()
        },
        monitor: Some(MonitorConfig {
            window_rows: 1000,
            every: Duration::from_secs(10),
            protected: vec![ProtectedConfig {
                feature: "context.age".to_owned(),
                privileged: ">=30".to_owned(),
                unprivileged: vec!["<30".to_owned()],
                bands: vec![30.0],
                header: None,
                reported: false,
            }],
            ..MonitorConfig::default()
        }),
        review: ReviewConfig::default(),
    }
}

fn credit_monitor() -> MonitorConfig {
    let protected =
        |feature: &str, bands: Vec<f64>, privileged: &str, unprivileged: &[&str]| ProtectedConfig {
            feature: feature.to_owned(),
            privileged: privileged.to_owned(),
            unprivileged: unprivileged.iter().map(|g| (*g).to_owned()).collect(),
            bands,
            header: None,
            reported: false,
        };
    MonitorConfig {
        window_rows: 1000,
        every: Duration::from_secs(10),
        protected: vec![
            protected(
                "personal_status_sex",
                Vec::new(),
                "male : single",
                &[
                    "female : divorced/separated/married",
                    "male : divorced/separated",
                    "male : married/widowed",
                ],
            ),
            protected("age_years", vec![25.0], ">=25", &["<25"]),
        ],
        ..MonitorConfig::default()
    }
}

/// A config for `sidelight report` over the demo's audit log: the log, its key, and the
/// route with its decision and protected attributes (the demo itself needs no file).
fn report_config(db: &std::path::Path, key: &std::path::Path) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let path = |p: &std::path::Path| quote(&p.display().to_string());
    let mut toml = format!(
        "# Written by `sidelight demo` for `sidelight report --config`.\n\
         [audit]\npath = {}\nkey_file = {}\n\n\
         [[routes]]\nname = \"credit\"\npath_prefix = \"/v1/models/credit\"\n\
         [routes.explain]\nprotocol = \"kserve_v1\"\n\
         [routes.explain.decision]\nthreshold = 0.5\nfavourable = \"approved\"\nunfavourable = \"declined\"\n\
         [routes.monitor]\n",
        path(db),
        path(key)
    );
    for p in credit_monitor().protected {
        let groups: Vec<String> = p.unprivileged.iter().map(|g| quote(g)).collect();
        toml.push_str(&format!(
            "\n[[routes.monitor.protected]]\nfeature = {}\nprivileged = {}\nunprivileged = [{}]\n",
            quote(&p.feature),
            quote(&p.privileged),
            groups.join(", ")
        ));
        if !p.bands.is_empty() {
            let bands: Vec<String> = p.bands.iter().map(|b| format!("{b:?}")).collect();
            toml.push_str(&format!("bands = [{}]\n", bands.join(", ")));
        }
    }
    // The recommender: its exposure by age group is in the report too.
    toml.push_str(
        "\n[[routes]]\nname = \"shop\"\npath_prefix = \"/v1/models/shop\"\n\
         [routes.explain]\nprotocol = \"ranking\"\n\
         [routes.explain.ranking]\ncontext = \"/customer\"\ncandidates = \"/items\"\n\
         id_field = \"sku\"\nranked = \"/recommendations\"\nranked_id = \"sku\"\ntop_k = 3\n\
         item_group = \"item.tier\"\n\
         [routes.monitor]\n[[routes.monitor.protected]]\nfeature = \"context.age\"\n\
         privileged = \">=30\"\nunprivileged = [\"<30\"]\nbands = [30.0]\n",
    );
    toml
}

/// The credit route's reason codes, worded by `custom-reason-<code>` in
/// examples/narration; none covers a protected feature (age, personal status).
fn credit_reasons() -> Vec<ReasonConfig> {
    [
        ("CHECKING_ACCOUNT", &["checking_account"][..]),
        ("LOAN_DURATION", &["duration_months"]),
        ("CREDIT_HISTORY", &["credit_history"]),
        ("LOAN_PURPOSE", &["purpose"]),
        ("LOAN_AMOUNT", &["credit_amount"]),
        ("SAVINGS", &["savings"]),
        ("EMPLOYMENT", &["employed_since", "job"]),
        ("INSTALMENT_RATE", &["installment_rate_pct_income"]),
        ("HOME", &["home"]),
        (
            "OTHER_CREDITS",
            &[
                "other_installment_plans",
                "existing_credits",
                "other_debtors",
            ],
        ),
    ]
    .into_iter()
    .map(|(code, features)| ReasonConfig {
        code: code.to_owned(),
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        statement: None,
    })
    .collect()
}

/// examples/narration/: embedded, so that the demo needs no files.
fn demo_wording() -> Vec<FtlSource> {
    vec![
        FtlSource::new(
            "en",
            "examples/narration/en/shop.ftl",
            include_str!("../../../examples/narration/en/shop.ftl"),
        ),
        FtlSource::new(
            "de",
            "examples/narration/de/shop.ftl",
            include_str!("../../../examples/narration/de/shop.ftl"),
        ),
        FtlSource::new(
            "en",
            "examples/narration/en/credit.ftl",
            include_str!("../../../examples/narration/en/credit.ftl"),
        ),
        FtlSource::new(
            "de",
            "examples/narration/de/credit.ftl",
            include_str!("../../../examples/narration/de/credit.ftl"),
        ),
    ]
}

pub(crate) fn run(args: DemoArgs) -> ExitCode {
    // The demo prints its own summary; only warnings and errors go to the log unless
    // RUST_LOG asks for more.
    let log = LogConfig {
        level: "warn".to_owned(),
        ..LogConfig::default()
    };
    if let Err(error) = crate::logging::init(&log) {
        eprintln!("sidelight demo: {error:#}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let result = crate::runtime().and_then(|rt| rt.block_on(demo(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sidelight demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        anyhow::bail!("--rate must be a number of requests per second, 0 or more");
    }
    let (stop, stopped) = watch::channel(false);
    let on_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let model_listener = tokio::net::TcpListener::bind(args.model_listen)
        .await
        .with_context(|| {
            format!(
                "cannot start the demo model on {} (--model-listen)",
                args.model_listen
            )
        })?;
    let model_addr = model_listener.local_addr()?;
    let model = tokio::spawn(sidelight_demo_model::server::serve(
        model_listener,
        on_stop(stopped.clone()),
    ));

    let mut config = Config::default();
    config.server.listen = args.listen;
    config.server.admin_listen = args.admin_listen;
    config.server.shutdown_grace = Duration::from_secs(5);
    // Everything runs on this machine: its own clients (the traffic generator, the
    // commands the demo prints) are the business's, and trusted.
    config.server.trust.sources = ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|net| net.parse().ok())
        .collect();
    config.upstream.url = format!("http://{model_addr}");
    let (state_dir, fresh) = state_dir(args.state_dir.as_deref())?;
    config.state.dir = state_dir.clone();
    let audit_key = demo_audit_key(&state_dir)?;
    let audit_db = state_dir.join("audit.db");
    config.audit = Some(AuditConfig {
        backend: AuditBackend::Sqlite,
        path: audit_db.clone(),
        url: None,
        url_file: None,
        writer: None,
        ca_file: None,
        poll_interval: Duration::from_secs(2),
        durability: AuditDurability::Sync,
        queue_capacity: 10_000,
        queue_full: QueueFull::Block,
        on_store_failure: StoreFailure::FailOpen,
        checkpoint_every: 1000,
        key_file: Some(audit_key.clone()),
        encrypt: true,
        retention: Some(Duration::from_secs(7 * 24 * 3600)),
        lock_timeout: Duration::from_secs(5),
        max_bytes: None,
        wal_max_bytes: 64 * 1024 * 1024,
        wal_checkpoint_wait: Duration::from_millis(200),
        witness: Some(state_dir.join("audit.witness")),
        witness_interval: Duration::from_secs(1),
    });
    config.routes.push(RouteConfig {
        name: "credit".to_owned(),
        path_prefix: "/v1/models/credit".to_owned(),
        inspect_limit_bytes: 1024 * 1024,
        explain: Some(ExplainConfig {
            protocol: ProtocolName::KserveV1,
            rows_pointer: None,
            outputs_pointer: None,
            attach: AttachMode::Field,
            audience: Audience::Customer,
            // The demo's clients are on this machine and trusted (server.trust): they
            // may read the developer's and the auditor's view as well.
            audiences: vec![Audience::Developer, Audience::Auditor],
            references: None,
            limits: Default::default(),
            output: OutputConfig::Probability,
            explain_class: None,
            features: credit_features(),
            decision: DecisionConfig {
                favourable: Some("approved".to_owned()),
                unfavourable: Some("declined".to_owned()),
                higher_is_favourable: true,
                threshold: Some(0.5),
            },
            wording: WordingConfig {
                decision: Some("custom-credit-decision".to_owned()),
                features: Default::default(),
            },
            surrogate: SurrogateConfig {
                warm_up_rows: 200,
                retrain_every_rows: 500,
                ..SurrogateConfig::default()
            },
            // The demo model is in this process and has no side effects: it may be asked
            // about synthetic rows, which teach the surrogate what traffic cannot.
            distill: DistillConfig {
                enabled: true,
                ..DistillConfig::default()
            },
            // Where an applicant lives and what they own go together in the data; a
            // customer reads them as one reason (worded as `feature-home` in
            // examples/narration).
            groups: vec![GroupConfig {
                name: "home".to_owned(),
                features: vec!["housing".to_owned(), "property".to_owned()],
            }],
            reasons: credit_reasons(),
            ranking: None,
        }),
        // Protected attributes are personal data (pii), pseudonymised by default; age
        // is kept as a five-year band instead, which an auditor can still read and which
        // still falls on one side of the monitor's split at 25.
        privacy: PrivacyConfig {
            fields: [("age_years".to_owned(), "band:5".to_owned())].into(),
            ..PrivacyConfig::default()
        },
        monitor: Some(credit_monitor()),
        // Close calls and a small random share go to the review queue.
        review: ReviewConfig {
            threshold_margin: Some(0.05),
            sample_rate: 0.01,
            // Customers may contest a decision for 30 days (POST /v1/contests).
            contest_within: Some(Duration::from_secs(30 * 86_400)),
            ..ReviewConfig::default()
        },
    });
    config.routes.push(shop_route());
    // A fresh admin token for this run: the admin API lets nobody in without one, and
    // the demo's user is its admin. Only its hash is configured; the token is printed.
    let admin_token =
        sidelight_proxy::new_token().context("the operating system's random generator failed")?;
    config.admin.tokens.push(TokenConfig {
        name: "demo".to_owned(),
        role: Role::Admin,
        sha256: sidelight_proxy::token_sha256(&admin_token),
        expires: None,
        revoked: false,
    });
    let sidelight = Sidelight::bind_with_wording(config, demo_wording())
        .await
        .context("cannot start Sidelight (use --listen / --admin-listen to pick other ports)")?;
    let proxy_addr = sidelight.data_addr();
    let admin_addr = sidelight.admin_addr();
    let surrogates = sidelight.surrogates();
    let proxy = tokio::spawn(sidelight.run(on_stop(stopped.clone())));

    // Before the first replayed request: the start of the report's reference period.
    let started = now_ms();
    let stats = Arc::new(TrafficStats::default());
    let traffic = (args.rate > 0.0).then(|| {
        tokio::spawn(replay(
            TrafficConfig {
                base_url: format!("http://{proxy_addr}"),
                rate_per_sec: args.rate,
                limit: None,
                with_shop: true,
            },
            stats.clone(),
            on_stop(stopped.clone()),
        ))
    });

    let program = this_program();
    print_welcome(model_addr, proxy_addr, admin_addr, &admin_token, args.rate)?;
    print_state(&state_dir, fresh);
    print_audit(&program, admin_addr, &audit_db, &audit_key)?;
    let report = ReportCommands::write(program, admin_addr, &state_dir, &audit_db, &audit_key)?;
    let url = format!("http://{proxy_addr}{PREDICT_PATH}");
    let duties = Duties {
        program: report.program.clone(),
        proxy: proxy_addr,
        admin: admin_addr,
        key: audit_key.clone(),
    };
    let samples = if args.rate > 0.0 {
        // The report lines wait for the first surrogate, so that they can name a
        // reference period that has data (the warm-up traffic).
        let surrogates = surrogates.clone();
        tokio::spawn(async move {
            in_service(&surrogates).await;
            report.print(Some((started, now_ms())));
            duties.print(&url).await;
            print_recommendations(&surrogates, proxy_addr).await;
            print_samples(surrogates, url).await;
        })
    } else {
        report.print(None);
        let surrogates = surrogates.clone();
        tokio::spawn(async move {
            in_service(&surrogates).await;
            duties.print(&url).await;
            print_recommendations(&surrogates, proxy_addr).await;
            print_samples(surrogates, url).await;
        })
    };

    let mut progress = tokio::time::interval(Duration::from_secs(15));
    progress.tick().await;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            _ = progress.tick() => {
                let s = stats.snapshot();
                let surrogate = surrogates
                    .routes()
                    .into_iter()
                    .map(|r| match r.version {
                        Some(v) => format!("surrogate v{v} in service (held-out R² {:.3})", r.r2.unwrap_or(f64::NAN)),
                        None => format!("warming up ({}/{} rows)", r.warm_up.0.min(r.warm_up.1), r.warm_up.1),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                println!("traffic: {} sent, {} ok, {} failed; {surrogate}", s.sent, s.ok, s.failed);
            }
        }
    }

    println!("stopping…");
    samples.abort();
    let _ = stop.send(true);
    if let Some(traffic) = traffic {
        traffic.await?.context("the traffic generator failed")?;
    }
    proxy.await?;
    model.await?.context("the demo model failed")?;
    let s = stats.snapshot();
    println!(
        "stopped: {} requests replayed, {} ok, {} failed",
        s.sent, s.ok, s.failed
    );
    Ok(())
}

fn print_welcome(
    model: SocketAddr,
    proxy: SocketAddr,
    admin: SocketAddr,
    token: &str,
    rate: f64,
) -> anyhow::Result<()> {
    let first = applications()
        .context("the embedded data set does not load")?
        .into_iter()
        .next()
        .context("the embedded data set is empty")?;
    let instance = shell_word(&serde_json::to_string(
        &serde_json::json!({ "instances": [first.application] }),
    )?);
    println!("Sidelight demo is running. Ctrl-C stops it.");
    println!();
    println!("  demo model (upstream):  http://{model}");
    println!("  sidelight (proxy):      http://{proxy}");
    println!("  sidelight admin:        http://{admin}");
    println!("  web console:            http://{admin}/console");
    println!("  admin token:            {token}");
    println!(
        "                          (role admin, valid while this demo runs; sign in to the console with it)"
    );
    println!();
    if rate > 0.0 {
        println!("Replaying the German credit data set through the proxy at {rate} requests/s.");
        println!();
    }
    println!("Try:");
    println!(
        "  curl -s http://{proxy}{PREDICT_PATH} -H 'content-type: application/json' -d {instance}"
    );
    println!(
        "  curl -s http://{proxy}{PREDICT_PATH} -H 'content-type: application/json' -H 'x-sidelight-audience: developer' -d {instance}"
    );
    println!(
        "  curl -s http://{proxy}{PREDICT_PATH} -H 'content-type: application/json' -H 'accept-language: de' -d {instance}"
    );
    println!("  export {ADMIN_TOKEN_VARIABLE}={token}");
    println!(
        "  curl -s http://{admin}/api/v1/surrogates -H \"authorization: Bearer ${ADMIN_TOKEN_VARIABLE}\""
    );
    println!(
        "  curl -s http://{admin}/api/v1/monitoring -H \"authorization: Bearer ${ADMIN_TOKEN_VARIABLE}\""
    );
    println!("  curl -s http://{admin}/readyz");
    println!("  curl -s http://{admin}/metrics | grep sidelight_requests_total");
    println!();
    Ok(())
}

/// The demo's audit key: made once, random, readable by the user only, and kept in the
/// state directory so that a second run can read the first run's records.
fn demo_audit_key(state_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join("audit.key");
    if path.exists() {
        return Ok(path);
    }
    // Two v4 UUIDs are 244 random bits from the OS generator: plenty for a demo key.
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{key}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Where this run keeps its files, and how to keep them across runs.
fn print_state(dir: &std::path::Path, fresh: bool) {
    if fresh {
        println!(
            "This run's files (audit log and key, surrogate, report config) are in {}, \
             made for this run; `--state-dir DIR` keeps them in DIR across runs.",
            dir.display()
        );
    } else {
        println!(
            "This run's files (audit log and key, surrogate, report config) are in {} (--state-dir).",
            dir.display()
        );
    }
    println!();
}

fn print_audit(
    program: &str,
    admin: SocketAddr,
    db: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<()> {
    // The records of one replayed applicant, by the pseudonym the proxy stores for them
    // (a keyed hash of `applicant-2` under this run's key).
    let keys = sidelight_audit::Keys::load(Some(key), None, sidelight_config::AUDIT_KEY_VARIABLE)
        .with_context(|| format!("cannot read the demo's audit key {}", key.display()))?;
    let subject = keys.pseudonym("applicant-2");
    let witness = shell_word(&db.with_file_name("audit.witness").display().to_string());
    let (db, key) = (
        shell_word(&db.display().to_string()),
        shell_word(&key.display().to_string()),
    );
    println!("Every request is in the audit log {db} (sealed; key {key}):");
    let auth = format!("-H \"authorization: Bearer ${ADMIN_TOKEN_VARIABLE}\"");
    println!("  curl -s 'http://{admin}/api/v1/records?limit=1' {auth}");
    println!("  curl -s 'http://{admin}/api/v1/records?subject={subject}&limit=5' {auth}");
    println!(
        "  curl -s -X POST http://{admin}/api/v1/erasure {auth} -H 'content-type: application/json' -d '{{\"subject_id\": \"applicant-1\"}}'"
    );
    println!("  {program} audit verify --db {db} --key-file {key} --witness {witness}");
    println!("  {program} audit export --db {db} --key-file {key} --format csv --out audit.csv");
    println!(
        "(the second line reads the records of the replayed applicant `applicant-2`, stored \
         under the pseudonym {subject}; the third erases `applicant-1`; `verify` checks the \
         log, its erasures and review states, and that it still reaches the last head the \
         proxy published to the witness file beside it)"
    );
    println!();
    Ok(())
}

/// What the report lines need: how to call this program, the admin address, and the
/// `report.toml` written for `sidelight report`.
struct ReportCommands {
    program: String,
    admin: SocketAddr,
    config: std::path::PathBuf,
}

impl ReportCommands {
    /// Writes the config `sidelight report` needs.
    fn write(
        program: String,
        admin: SocketAddr,
        state_dir: &std::path::Path,
        db: &std::path::Path,
        key: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let config = state_dir.join("report.toml");
        std::fs::write(&config, report_config(db, key))
            .with_context(|| format!("cannot write {}", config.display()))?;
        Ok(Self {
            program,
            admin,
            config,
        })
    }

    /// Prints how to get the audit report. With `periods` (the demo's start and the time
    /// its first surrogate came into service, Unix ms), the report covers the traffic
    /// since the surrogate came into service and its drift section compares it with the
    /// warm-up traffic before: a fresh log has no earlier period of the same length,
    /// which is the default reference.
    fn print(&self, periods: Option<(i64, i64)>) {
        let (admin, program) = (self.admin, &self.program);
        let config = shell_word(&self.config.display().to_string());
        let auth = format!("-H \"authorization: Bearer ${ADMIN_TOKEN_VARIABLE}\"");
        match periods {
            Some((start, in_service)) => {
                let (start, in_service) = (
                    sidelight_audit::rfc3339_ms(start),
                    sidelight_audit::rfc3339_ms(in_service),
                );
                println!(
                    "The audit report (fairness, drift, consent, reviews, erasures, verification) of \
                     the traffic since the surrogate came into service at {in_service}; its drift \
                     section compares it with the warm-up traffic since {start}:"
                );
                println!(
                    "  curl -s 'http://{admin}/api/v1/report?format=html&from={in_service}&reference_from={start}&reference_to={in_service}' {auth} > report.html"
                );
                println!(
                    "  {program} report --config {config} --from {in_service} --reference-from {start} --reference-to {in_service} --format html --out report-cli.html"
                );
            }
            None => {
                let today = sidelight_audit::rfc3339_ms(now_ms());
                let today = today.get(..10).unwrap_or("2026-01-01");
                println!(
                    "The audit report (fairness, drift, consent, reviews, erasures, verification); \
                     with no replayed traffic its drift section has no reference period to compare with:"
                );
                println!(
                    "  curl -s 'http://{admin}/api/v1/report?format=html' {auth} > report.html"
                );
                println!(
                    "  {program} report --config {config} --from {today} --format html --out report-cli.html"
                );
            }
        }
        println!();
        println!(
            "The developer's workbench over the recorded explanations: what the model relied on \
             this week (per feature, against last week), and every explained prediction with one \
             shap_<feature> column each, for a notebook (pandas: pd.read_parquet(\"credit.parquet\")):"
        );
        println!("  curl -s 'http://{admin}/api/v1/explanations/summary?route=credit' {auth}");
        println!(
            "  curl -s 'http://{admin}/api/v1/explanations/export?route=credit&format=parquet' {auth} > credit.parquet"
        );
        println!();
    }
}

/// The customer's side, walked through with one declined application the demo makes
/// itself for the customer `customer-demo`: the notice, a contest with the record's
/// token, the reviewer's decision, the customer's view of it, the customer's records,
/// and the evidence pack.
struct Duties {
    program: String,
    proxy: SocketAddr,
    admin: SocketAddr,
    key: std::path::PathBuf,
}

impl Duties {
    async fn print(&self, url: &str) {
        let Ok(applications) = applications() else {
            return;
        };
        let mut decided = None;
        for application in applications.iter().take(100) {
            let body = serde_json::json!({ "instances": [application.application] }).to_string();
            let headers = [("x-sidelight-subject", "customer-demo")];
            let Ok((200, answer, text)) =
                post_json_with_headers(url, &headers, body, Duration::from_secs(10)).await
            else {
                continue;
            };
            let declined = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|j| j["explanations"][0]["prediction"].as_f64())
                .is_some_and(|p| p < 0.5);
            let header = |name: &str| {
                answer
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            if let (true, Some(id), Some(token)) = (
                declined,
                header("x-sidelight-record-id"),
                header("x-sidelight-feedback-token"),
            ) {
                decided = Some((id, token));
                break;
            }
        }
        let Some((id, token)) = decided else {
            return;
        };
        let (proxy, admin, program) = (self.proxy, self.admin, &self.program);
        let key = shell_word(&self.key.display().to_string());
        let auth = format!("-H \"authorization: Bearer ${ADMIN_TOKEN_VARIABLE}\"");
        let json = "-H 'content-type: application/json'";
        println!(
            "The customer's side: the route's notice, then a declined application the demo just \
             made for the customer `customer-demo` (record {id}), contested with the token its \
             response carried, decided by a reviewer; the customer's records; the evidence pack:"
        );
        println!("  curl -s 'http://{proxy}/v1/notice/credit?format=json&lang=de'");
        println!(
            "  curl -s -X POST http://{proxy}/v1/contests {json} -d '{{\"id\": \"{id}\", \"token\": \"{token}\", \"reason\": \"My savings are higher than the form says.\"}}'"
        );
        println!("  curl -s 'http://{admin}/api/v1/reviews?state=contested' {auth}");
        println!(
            "  curl -s -X POST http://{admin}/api/v1/reviews/{id} {auth} {json} -d '{{\"decision\": \"confirm\", \"reason\": \"Savings checked against the statement: as on the form.\"}}'"
        );
        println!(
            "  curl -s http://{proxy}/v1/contests/{id} -H 'x-sidelight-feedback-token: {token}' -H 'accept-language: de'"
        );
        println!(
            "  curl -s -X POST http://{admin}/api/v1/subject-access {auth} {json} -d '{{\"subject_id\": \"customer-demo\", \"format\": \"html\"}}' > access.html"
        );
        println!("  curl -s 'http://{admin}/api/v1/evidence' {auth} > evidence.tar");
        println!("  {program} evidence verify evidence.tar --key-file {key}");
        println!(
            "(the notice is a page for the business's own site at http://{proxy}/v1/notice/credit; \
             contested decisions wait on the console's review queue, Queue: contested)"
        );
        println!();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

/// Waits until the first surrogate is in service on the credit route.
async fn in_service(surrogates: &SurrogateStatus) {
    in_service_on(surrogates, "credit").await;
}

/// Waits until the first surrogate is in service on `route`.
async fn in_service_on(surrogates: &SurrogateStatus, route: &str) {
    loop {
        if surrogates
            .routes()
            .iter()
            .any(|r| r.route == route && r.version.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Once the recommender's surrogate is in service: why two customers were shown their
/// top three, in their words, and why one item is ranked above another (printed as the
/// `curl` that asks, and its sentence).
async fn print_recommendations(surrogates: &SurrogateStatus, proxy: SocketAddr) {
    in_service_on(surrogates, "shop").await;
    let url = format!("http://{proxy}{RANK_PATH}");
    let timeout = Duration::from_secs(10);
    println!(
        "The recommender (route shop, a second model: an outdoor shop ranks 24 products \
         per customer; the three shown are explained, in the customer's words):"
    );
    let mut contrast = None;
    for (k, n) in [20_001_u64, 20_002].into_iter().enumerate() {
        let body = sidelight_demo_model::shop::request(n).to_string();
        let headers = [("x-sidelight-explain", "reference")];
        let Ok((200, answer, _)) = post_json_with_headers(&url, &headers, body, timeout).await
        else {
            continue;
        };
        let Some(reference) = answer
            .get("x-sidelight-explanation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            continue;
        };
        let kept_url = format!("http://{proxy}/v1/explanations/{reference}");
        let Ok((200, kept)) = admin_get(&kept_url, &[], timeout).await else {
            continue;
        };
        let Ok(kept) = serde_json::from_str::<serde_json::Value>(&kept) else {
            continue;
        };
        let shown = kept["explanations"].as_array().cloned().unwrap_or_default();
        println!("── customer {} ──", k + 1);
        for e in &shown {
            let label = format!(
                "#{} {}",
                e["item"]["rank"],
                e["item"]["id"].as_str().unwrap_or("?")
            );
            print_block(&label, e["text"].as_str().unwrap_or("(withheld)"));
        }
        // Two items whose explanations the customer could read (a text withheld for
        // poor fit gives no sentence in a comparison either).
        let readable: Vec<&serde_json::Value> =
            shown.iter().filter(|e| e["text"].is_string()).collect();
        if contrast.is_none() && readable.len() >= 2 {
            let id = |e: &serde_json::Value| e["item"]["id"].as_str().unwrap_or("").to_owned();
            let (a, b) = (readable[0], readable[readable.len() - 1]);
            contrast = Some((reference, id(a), id(b)));
        }
    }
    if let Some((reference, a, b)) = contrast {
        let compare = format!("http://{proxy}/v1/explanations/{reference}/compare?a={a}&b={b}");
        println!(
            "Why {a} is ranked above {b} (each feature's part of the difference of their scores):"
        );
        println!("  curl -s '{compare}'");
        if let Ok((200, answer)) = admin_get(&compare, &[], timeout).await {
            let text = serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|j| j["text"].as_str().map(str::to_owned));
            print_block(
                "customer, en",
                text.as_deref()
                    .unwrap_or("(no sentence: the surrogate fits one of the two too poorly)"),
            );
        }
    }
    println!(
        "(the console's Monitoring page shows which range, budget or premium, each age group \
         is shown: exposure)"
    );
    println!();
}

/// Once the first surrogate is in service, asks the proxy itself about three applicants
/// (two declined, one approved, when the first rows of the data set have them) and
/// prints what a customer and a developer read, in English and in German.
async fn print_samples(surrogates: SurrogateStatus, url: String) {
    in_service(&surrogates).await;
    let Ok(applications) = applications() else {
        return;
    };
    let mut declined = Vec::new();
    let mut approved = Vec::new();
    for application in applications.iter().take(60) {
        let body = serde_json::json!({ "instances": [application.application] }).to_string();
        let Some(explanation) = explain(&url, &body, "customer", "en").await else {
            continue;
        };
        let favourable = explanation["prediction"].as_f64().is_some_and(|p| p >= 0.5);
        // Declined applicants with a next step show the whole of a customer text.
        let with_step = explanation["next_step"].is_string();
        match (favourable, with_step) {
            (true, _) if approved.is_empty() => approved.push(body),
            (false, true) if declined.len() < 2 => declined.push(body),
            _ => {}
        }
        if approved.len() == 1 && declined.len() == 2 {
            break;
        }
    }
    let chosen: Vec<String> = declined.into_iter().chain(approved).collect();
    if chosen.is_empty() {
        return;
    }
    println!();
    println!("What customers and developers read (x-sidelight-audience, Accept-Language):");
    for (n, body) in chosen.iter().enumerate() {
        println!();
        println!("── applicant {} ──", n + 1);
        for audience in ["customer", "developer"] {
            for language in ["en", "de"] {
                let Some(explanation) = explain(&url, body, audience, language).await else {
                    continue;
                };
                let label = format!("{audience}, {language}");
                let text = explanation["text"].as_str().unwrap_or("(withheld)");
                print_block(&label, text);
                if let Some(step) = explanation["next_step"].as_str() {
                    print_block("", step);
                }
            }
        }
    }
    println!();
}

/// The first explanation of one call to the proxy, or `None` if there is none.
async fn explain(
    url: &str,
    body: &str,
    audience: &str,
    language: &str,
) -> Option<serde_json::Value> {
    let headers = [
        ("x-sidelight-audience", audience),
        ("accept-language", language),
    ];
    let (status, answer) = post_json(url, &headers, body.to_owned(), Duration::from_secs(10))
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&answer).ok()?;
    json.get("explanations")?.get(0).cloned()
}

/// Prints `text` in a column to the right of `label`.
fn print_block(label: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        let label = if i == 0 { label } else { "" };
        println!("  {label:<14} │ {line}");
    }
}
