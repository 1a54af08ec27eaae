//! Binding the listeners and running them until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admin;
use crate::audit::AuditLog;
use crate::auth::{AccessPolicy, Auth};
use crate::config::{Config, ConfigError};
use crate::forward::{ClientAddr, Forward};
use crate::live::{RecentExplanations, RecentRequests};
use crate::metrics::Metrics;
use crate::route::RouteTable;
use crate::stack::{DataPlane, data_plane};
use sidelight_admin::probe::Prober;
use sidelight_admin::reload::Reloader;
use sidelight_admin::state::AdminState;
use sidelight_data::compute::ComputePool;
use sidelight_data::endpoints::FeedbackLimit;
use sidelight_data::probe::UpstreamCaller;
use sidelight_data::stack::{Activity, Shared};
use sidelight_tasks::alert::{AlertDelivery, Alerter};
use sidelight_tasks::fleet::{FleetGauges, FleetTasks};
use sidelight_tasks::job::Jobs;
use sidelight_tasks::monitor::{MonitorGauges, MonitorJob};

/// How long shutdown waits for a trainer in the middle of a fit.
const TRAINER_GRACE: Duration = Duration::from_secs(5);

/// How many requests' explanations are kept for `GET /v1/explanations/{id}`, and how
/// many explained requests for the probe check.
const RECENT_EXPLANATIONS: usize = 10_000;
/// The most bytes of rows ([`crate::live::row_weight`]) kept for the probe check in all,
/// whatever the batch sizes and the values' lengths.
const RECENT_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// The longest a client may take over the TLS handshake; a connection that has not
/// finished it by then is closed.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
use tokio::sync::watch;

/// Why Sidelight could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The compute pool's threads could not be started.
    #[error(
        "cannot start the compute pool of {threads} threads (server.compute_threads): {source}"
    )]
    Compute {
        threads: usize,
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr} (from key `{key}`): {source}")]
    Bind {
        /// The config key that named the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the grace period ran out and that were cut.
    pub cut_connections: usize,
}

/// A bound, not yet running Sidelight: the listeners exist, so their addresses are
/// known (useful with port 0), and nothing is served until [`Sidelight::run`].
pub struct Sidelight {
    config: Config,
    data_listener: std::net::TcpListener,
    admin_listener: TcpListener,
    routes: Arc<RouteTable>,
    admin: Arc<AdminState>,
    audit: Option<Arc<AuditLog>>,
    /// TLS on the data listener (`server.tls`) and the admin listener (`admin.tls`).
    data_tls: Option<TlsAcceptor>,
    admin_tls: Option<TlsAcceptor>,
    /// Delivers the monitors' alerts once running.
    alerter: Arc<Alerter>,
    /// The trainer gauges of a fleet (PostgreSQL audit log).
    fleet_gauges: Option<FleetGauges>,
    /// One per monitored route, started with the rest of the background work.
    monitor_jobs: Vec<Arc<MonitorJob>>,
    /// Where explanations are computed.
    compute: Arc<ComputePool>,
}

// === impl Sidelight ===

impl Sidelight {
    /// Validates `config` and binds both listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        Self::bind_with_wording(config, Vec::new()).await
    }

    /// Like [`Sidelight::bind`], with `.ftl` sources the caller embeds (the demo's
    /// wording), loaded before those of `narration.dir`.
    pub async fn bind_with_wording(
        config: Config,
        wording: Vec<sidelight_narrate::FtlSource>,
    ) -> Result<Self, StartError> {
        config.validate()?;
        // Tokens and certificates are read before anything listens, so that a missing
        // file stops start-up naming its key rather than serving without it.
        let policy = AccessPolicy::from_config(&config.admin)?;
        if policy.token_count() == 0 {
            tracing::warn!(
                "no admin tokens configured: every /api/v1 endpoint answers 401 until one is \
                 added (sidelight token new --name NAME --role admin)"
            );
        }
        let auth = Arc::new(Auth::new(policy));
        let alpn = crate::tls::alpn(config.server.http2);
        let data_tls = match &config.server.tls {
            Some(tls) => Some(crate::tls::acceptor(tls, "server.tls", alpn.clone())?),
            None => None,
        };
        let admin_tls = match &config.admin.tls {
            Some(tls) => Some(crate::tls::acceptor(tls, "admin.tls", alpn)?),
            None => None,
        };
        let mut wording = crate::narration::prepare(&config, wording)?;
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        // Opened before anything listens: a store that cannot be opened, or a missing
        // key, stops start-up with the key named rather than serving unaudited.
        let audit = match &config.audit {
            Some(audit) => Some(AuditLog::open(audit, &config.upstream.url, &mut registry)?),
            None => None,
        };
        if config.routes.iter().any(|r| r.explain.is_some()) {
            // Saved surrogates are personal data: only Sidelight's user may read them.
            crate::live::state::create_private_dir(&config.state.dir).map_err(|e| {
                ConfigError::Invalid {
                    key: "state.dir".to_owned(),
                    message: format!("cannot create {}: {e}", config.state.dir.display()),
                }
            })?;
            if crate::live::state::open_to_others(&config.state.dir) {
                tracing::warn!(
                    path = %config.state.dir.display(),
                    "state.dir lets users other than its owner and group in: its files are written 0600, but others may list them (or replace them, if they may write); `chmod o-rwx` it"
                );
            }
        }
        let routes = Arc::new(RouteTable::new(
            &config.routes,
            metrics,
            &config.state.dir,
            &mut wording,
            audit.as_deref(),
        )?);
        let monitor_gauges = MonitorGauges::register(&mut registry);
        let fleet_gauges = audit
            .as_ref()
            .and_then(|a| a.fleet.as_ref())
            .map(|_| FleetGauges::register(&mut registry));
        let alerter = Alerter::new(&config.alerts, &mut registry)?;
        let live_metrics = crate::live::LiveMetrics::register(&mut registry);
        let mut monitor_jobs = Vec::new();
        for live in routes.live_routes() {
            live.attach_metrics(live_metrics.clone());
            if let Some(monitor) = &live.monitor {
                let job = MonitorJob::new(
                    monitor.clone(),
                    Some(monitor_gauges.clone()),
                    audit.as_ref().map(|a| a.reviews.clone()),
                );
                // Weak: the route owns its monitor.
                let route = Arc::downgrade(&live);
                job.attach_alerts(
                    alerter.clone(),
                    Some(Box::new(move || {
                        route
                            .upgrade()
                            .map(|l| l.fidelity_series())
                            .unwrap_or_default()
                    })),
                );
                // In a fleet the figures are every replica's together; the job talks to
                // the database on a connection of its own.
                if let Some(fleet) = audit.as_ref().and_then(|a| a.fleet.as_ref()) {
                    let store = fleet
                        .store
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .another();
                    job.attach_fleet(store);
                }
                monitor_jobs.push(Arc::new(job));
            }
        }
        let upstream = config.upstream.base()?;
        // The probe check keeps the same number of requests as reference mode does
        // explanations, and reaches the upstream with a client of its own, off the data
        // plane, so that its calls are never counted as traffic.
        let caller = Arc::new(UpstreamCaller::new(
            crate::forward::upstream_client(&config),
            upstream.clone(),
            config.upstream.request_timeout,
        ));
        let probe = Arc::new(Prober::new(
            Arc::new(RecentRequests::with_max_weight(
                RECENT_EXPLANATIONS,
                RECENT_REQUEST_BYTES,
            )),
            caller,
        ));
        let explanations = Arc::new(RecentExplanations::with_max_weight(
            RECENT_EXPLANATIONS,
            usize::try_from(config.server.explanation_store_bytes).unwrap_or(usize::MAX),
        ));
        let admin = Arc::new(AdminState {
            surrogates: crate::live::SurrogateStatus::new(routes.live_routes()),
            erasable: crate::records::Erasable {
                audit: audit.clone(),
                routes: routes.live_routes(),
                explanations,
                requests: probe.requests.clone(),
            },
            probe,
            registry,
            upstream,
            connect_timeout: config.upstream.connect_timeout,
            draining: Default::default(),
            reloader: Reloader::new(&config, auth.clone()),
            auth,
            console: sidelight_admin::console::session::Console::new(config.admin.tls.is_some()),
            jobs: std::sync::OnceLock::new(),
        });
        let data_listener = bind("server.listen", config.server.listen)
            .await?
            .into_std()
            .map_err(|source| StartError::Bind {
                key: "server.listen",
                addr: config.server.listen,
                source,
            })?;
        let admin_listener = bind("server.admin_listen", config.server.admin_listen).await?;
        let compute = ComputePool::new(config.server.compute_threads, config.server.compute_queue)
            .map(Arc::new)
            .map_err(|source| StartError::Compute {
                threads: config.server.compute_threads,
                source,
            })?;
        Ok(Self {
            compute,
            config,
            data_listener,
            admin_listener,
            routes,
            admin,
            audit,
            data_tls,
            admin_tls,
            alerter,
            fleet_gauges,
            monitor_jobs,
        })
    }

    /// Re-reads the config file and applies the admin tokens; see [`Reloader`]. Stays
    /// valid while Sidelight runs (the `sidelight` command calls it on SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.admin.reloader.clone()
    }

    /// Where the data listener accepts model traffic.
    pub fn data_addr(&self) -> SocketAddr {
        self.data_listener
            .local_addr()
            .unwrap_or(self.config.server.listen)
    }

    /// A view of the routes' surrogates that stays valid while Sidelight runs.
    pub fn surrogates(&self) -> crate::live::SurrogateStatus {
        self.admin.surrogates.clone()
    }

    /// Where the admin listener answers health, readiness and metrics.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.config.server.admin_listen)
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets
    /// in-flight requests finish within `server.shutdown_grace`, and returns.
    ///
    /// Model traffic is served by `server.workers` threads, each with its own
    /// single-threaded runtime, accept loop and upstream connection pool, so that a
    /// request and its upstream exchange stay on one thread: no cross-thread wake-ups,
    /// which on a small machine cost more CPU than the proxying itself. The admin
    /// listener runs on the caller's runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Drained {
        let Self {
            config,
            data_listener,
            admin_listener,
            routes,
            admin,
            audit,
            data_tls,
            admin_tls,
            alerter,
            fleet_gauges,
            monitor_jobs,
            compute,
        } = self;
        let (stop_workers, stop) = watch::channel(false);
        let recent = admin.erasable.explanations.clone();
        let requests = admin.probe.requests.clone();
        let live_routes = routes.live_routes();
        let fleet = match (audit.as_ref().and_then(|a| a.fleet.clone()), fleet_gauges) {
            (Some(fleet), Some(gauges)) => {
                let (recent, requests) = (recent.clone(), requests.clone());
                Some(FleetTasks {
                    fleet,
                    gauges,
                    forget: Box::new(move |subject| {
                        recent.forget_subject(subject) + requests.forget_subject(subject)
                    }),
                })
            }
            _ => None,
        };
        let mut jobs = Jobs::default();
        if let Some(fleet) = fleet {
            for job in sidelight_tasks::fleet::jobs(&live_routes, fleet) {
                jobs.start(job);
            }
        }
        for live in &live_routes {
            if !live.is_shared() {
                jobs.start(Arc::new(sidelight_tasks::trainer::Trainer(live.clone())));
            }
            if let Some(distiller) =
                sidelight_tasks::distill::DistillJob::for_route(live, &admin.probe.caller)
            {
                jobs.start(Arc::new(distiller));
            }
        }
        for job in monitor_jobs {
            jobs.start(job);
        }
        jobs.start(Arc::new(AlertDelivery::new(alerter, audit.clone())));
        if let Some(publisher) = audit.as_ref().and_then(|a| a.take_witness()) {
            jobs.start(Arc::new(sidelight_tasks::witness::WitnessJob::new(
                publisher,
            )));
        }
        if let Some(purge) = audit.as_ref().and_then(|a| a.take_retention()) {
            jobs.start(Arc::new(sidelight_tasks::retention::RetentionJob::new(
                purge,
            )));
        }
        let _ = admin.jobs.set(jobs.readiness());
        let mut workers = Vec::new();
        let connections = Arc::new(tokio::sync::Semaphore::new(config.server.max_connections));
        let trust = Arc::new(crate::trust::Trust::from_config(&config.server.trust));
        let shared = Shared {
            recent: recent.clone(),
            requests: requests.clone(),
            audit: audit.clone(),
            feedback_limit: Arc::new(FeedbackLimit::new(trust.feedback_per_minute)),
            pool: compute.clone(),
            trust,
            reference_max_bytes: usize::try_from(config.server.explanation_max_bytes)
                .unwrap_or(usize::MAX),
            kept_records: sidelight_data::notice::KeptRecords::from_config(config.audit.as_ref()),
        };
        for index in 0..config.server.workers.max(1) {
            let listener = match data_listener.try_clone() {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, worker = index, "cannot share the data listener");
                    break;
                }
            };
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let worker = Worker {
                config: config.clone(),
                listener,
                routes: routes.clone(),
                shared: shared.clone(),
                stop: stop.clone(),
                tls: data_tls.clone(),
                connections: connections.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("sidelight-data-{index}"))
                .spawn(move || {
                    let _ = done_tx.send(worker.run());
                });
            match spawned {
                Ok(_) => workers.push(done_rx),
                Err(error) => tracing::error!(%error, worker = index, "cannot start a data worker"),
            }
        }
        // Only the workers' clones remain: when they drop theirs, the socket closes.
        drop(data_listener);

        let builder = connection_builder(&config);
        let admin_graceful = Connections::new(config.server.idle_timeout);
        let mut admin_accept = Box::pin(accept_loop(
            &admin_listener,
            &builder,
            &admin_graceful,
            admin_tls.as_ref(),
            None,
            |_peer| {
                let state = admin.clone();
                hyper::service::service_fn(move |request: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin::handle(state, request).await) }
                })
            },
        ));

        tokio::select! {
            () = &mut admin_accept => {}
            () = shutdown => {}
        }
        admin.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            grace = ?config.server.shutdown_grace,
            "shutting down: no new connections, waiting for in-flight requests"
        );
        let _ = stop_workers.send(true);

        // The admin port stays up while the data plane drains, so that /readyz can
        // report the drain to whoever watches it.
        let mut cut_connections = 0;
        let drained = async {
            for worker in workers {
                cut_connections += worker.await.unwrap_or(0);
            }
        };
        tokio::select! {
            () = drained => {}
            () = &mut admin_accept => {}
        }
        if cut_connections > 0 {
            tracing::warn!(
                connections = cut_connections,
                "grace period over; cut the connections still open"
            );
        }
        for live in &live_routes {
            live.stop();
        }
        // A trainer in the middle of a fit stops pausing and finishes it; a large window
        // can still take a while, so shutdown waits a bounded time and then leaves the
        // thread to end with the process (it writes its file atomically, or not at all).
        let still = jobs.stop(TRAINER_GRACE).await;
        if !still.is_empty() {
            tracing::warn!(jobs = ?still, "background jobs still busy at shutdown; their results are dropped");
        }
        drop(admin_accept);
        drop(admin_listener);
        let _ = tokio::time::timeout(Duration::from_secs(1), admin_graceful.shutdown()).await;
        tracing::info!("stopped");
        Drained { cut_connections }
    }
}

/// One data-plane thread.
struct Worker {
    config: Config,
    listener: std::net::TcpListener,
    routes: Arc<RouteTable>,
    /// The stores, the audit log and the trust rules, shared by every worker.
    shared: Shared,
    stop: watch::Receiver<bool>,
    tls: Option<TlsAcceptor>,
    /// `server.max_connections`, shared by every worker.
    connections: Arc<tokio::sync::Semaphore>,
}

// === impl Worker ===

impl Worker {
    /// Serves until told to stop, drains, and returns how many connections it cut.
    fn run(self) -> usize {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot start a data worker runtime");
                return 0;
            }
        };
        runtime.block_on(self.serve())
    }

    async fn serve(self) -> usize {
        let Self {
            config,
            listener,
            routes,
            shared,
            mut stop,
            tls,
            connections,
        } = self;
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
        {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot use the data listener");
                return 0;
            }
        };
        let forward = match Forward::new(&config) {
            Ok(forward) => forward,
            Err(error) => {
                tracing::error!(%error, "cannot build the upstream client");
                return 0;
            }
        };
        let routes_metrics = routes.metrics().clone();
        let plane: DataPlane = data_plane(forward, routes, shared);
        // Tokio interrupts its driver (an eventfd write) whenever a timer is armed that
        // expires before the driver's next planned wake-up. Every request arms timeouts
        // far in the future; a tick every 500 ms keeps the planned wake-up nearer than
        // any of them, which saves a system call per request.
        let housekeeping = tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
            }
        });
        let builder = connection_builder(&config);
        let graceful = Connections::new(config.server.idle_timeout);
        let cap = ConnectionCap {
            permits: connections,
            waited: routes_metrics
                .limits
                .get_or_create(&crate::metrics::LimitLabels {
                    limit: "max_connections",
                })
                .clone(),
        };
        {
            let accept = accept_loop(
                &listener,
                &builder,
                &graceful,
                tls.as_ref(),
                Some(&cap),
                |peer| {
                    let plane = plane.clone();
                    hyper::service::service_fn(move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(ClientAddr(peer));
                        plane.clone().oneshot(request)
                    })
                },
            );
            tokio::select! {
                () = accept => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
        }
        drop(listener);
        housekeeping.abort();
        match tokio::time::timeout(config.server.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => 0,
            // Those still open when the grace ran out are cut as the worker ends.
            Err(_) => graceful.count(),
        }
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// hyper's own limit on request headers (HTTP/1).
const DEFAULT_MAX_HEADERS: usize = 100;

fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper starts the header-read timer whenever a connection waits for a request, so
    // it doubles as the keep-alive idle timeout for HTTP/1.
    let head = config.server.max_header_bytes.max(8192);
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.idle_timeout)
        .keep_alive(true)
        // A request head that does not fit the read buffer is answered 431.
        .max_buf_size(head);
    // hyper keeps the default count's headers on the stack; any other count costs an
    // allocation per request, so it is set only when changed.
    if config.server.max_headers != DEFAULT_MAX_HEADERS {
        http1.max_headers(config.server.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .keep_alive_interval(config.server.http2_keep_alive)
        .keep_alive_timeout(config.server.http2_keep_alive);
    if config.server.http2 {
        builder
    } else {
        builder.http1_only()
    }
}

/// The connections of one listener: each is closed gracefully once idle for
/// `idle_timeout` (HTTP/1 and HTTP/2 alike: hyper's HTTP/2 server has no idle timeout of
/// its own, and pings only find peers that vanished), or when the listener shuts down.
/// A graceful close never cuts a request in flight: HTTP/2 sends GOAWAY and lets open
/// streams finish, HTTP/1 closes after the current response.
struct Connections {
    stop: watch::Sender<bool>,
    idle_timeout: Duration,
}

/// One connection's share of [`Connections`], taken before it is served (a TLS
/// connection takes it before its handshake, so that a shutdown waits for that too).
struct Watcher {
    stop: watch::Receiver<bool>,
    idle_timeout: Duration,
}

impl Connections {
    fn new(idle_timeout: Duration) -> Self {
        Self {
            stop: watch::channel(false).0,
            idle_timeout,
        }
    }

    fn watcher(&self) -> Watcher {
        Watcher {
            stop: self.stop.subscribe(),
            idle_timeout: self.idle_timeout,
        }
    }

    fn watch<C, E>(
        &self,
        connection: C,
        activity: Arc<Activity>,
        close: fn(Pin<&mut C>),
    ) -> impl Future<Output = Result<(), E>> + use<C, E>
    where
        C: Future<Output = Result<(), E>>,
    {
        self.watcher().watch(connection, activity, close)
    }

    /// Connections not yet ended.
    fn count(&self) -> usize {
        self.stop.receiver_count()
    }

    /// Tells every connection to close gracefully and waits until all have ended.
    async fn shutdown(&self) {
        self.stop.send_replace(true);
        self.stop.closed().await;
    }
}

impl Watcher {
    /// Completes once the listener shuts down (or is gone).
    async fn stopping(&mut self) {
        let _ = self.stop.wait_for(|stop| *stop).await;
    }

    async fn watch<C, E>(
        mut self,
        connection: C,
        activity: Arc<Activity>,
        close: fn(Pin<&mut C>),
    ) -> Result<(), E>
    where
        C: Future<Output = Result<(), E>>,
    {
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        if *self.stop.borrow_and_update() {
            close(connection.as_mut());
            closing = true;
        }
        let mut check = tokio::time::Instant::now() + self.idle_timeout;
        loop {
            tokio::select! {
                result = connection.as_mut() => return result,
                // Told to stop, or the listener is gone: close either way.
                _ = self.stop.changed(), if !closing => {
                    close(connection.as_mut());
                    closing = true;
                }
                () = tokio::time::sleep_until(check), if !closing => {
                    let now = tokio::time::Instant::now();
                    match activity.idle_since() {
                        Some(since) if since + self.idle_timeout <= now => {
                            close(connection.as_mut());
                            closing = true;
                        }
                        Some(since) => check = since + self.idle_timeout,
                        // Busy: look again a whole timeout later.
                        None => check = now + self.idle_timeout,
                    }
                }
            }
        }
    }
}

/// A connection's service that notes when each request begins and hands the request
/// its connection's [`Activity`] (the data plane holds the connection busy with it
/// until the answer is made); it adds no wrapping of the response future.
struct Touch<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<Request<B>> for Touch<S>
where
    S: hyper::service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: Request<B>) -> S::Future {
        self.activity.touch();
        request.extensions_mut().insert(self.activity.clone());
        self.inner.call(request)
    }
}

/// `server.max_connections`: the permits, shared by the workers, and the count of times
/// a new connection had to wait for one.
struct ConnectionCap {
    permits: Arc<tokio::sync::Semaphore>,
    waited: prometheus_client::metrics::counter::Counter,
}

/// A permit for one more connection under `cap`, waiting while the cap is reached
/// (counted, and said in the log at most once a minute); `None` once the semaphore is
/// closed.
async fn admit(
    cap: &ConnectionCap,
    cap_logged: &mut Option<std::time::Instant>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let cap_permits = &cap.permits;
    if let Ok(permit) = cap_permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    cap.waited.inc();
    if cap_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
        tracing::warn!("server.max_connections reached: new connections wait until one closes");
        *cap_logged = Some(std::time::Instant::now());
    }
    cap_permits.clone().acquire_owned().await.ok()
}

/// Accepts connections until the future is dropped; each connection is served on its
/// own task and watched by `graceful` (which closes it once idle, or on shutdown). With `tls`, the handshake runs in that task too,
/// so that a slow or silent client never holds up the accept loop. With `connections`,
/// each connection holds a permit while open: at the cap the loop stops accepting, and
/// new connections wait in the kernel's listen queue rather than take memory here.
async fn accept_loop<M, S>(
    listener: &TcpListener,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &Connections,
    tls: Option<&TlsAcceptor>,
    connections: Option<&ConnectionCap>,
    make_service: M,
) where
    M: Fn(SocketAddr) -> S,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = http::Response<crate::body::ProxyBody>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut cap_logged: Option<std::time::Instant> = None;
    loop {
        let permit = match connections {
            Some(cap) => match admit(cap, &mut cap_logged).await {
                Some(permit) => Some(permit),
                None => return,
            },
            None => None,
        };
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let service = Touch {
            inner: make_service(peer),
            activity: activity.clone(),
        };
        let Some(acceptor) = tls else {
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let watched = graceful.watch(connection, activity, |c| c.graceful_shutdown());
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(error) = watched.await {
                    tracing::debug!(%peer, error = %crate::error::chain(error.as_ref()), "connection ended with an error");
                }
            });
            continue;
        };
        let (acceptor, builder) = (acceptor.clone(), builder.clone());
        // Counted from before the handshake: a shutdown waits for it, and the connection
        // is told to close as soon as it is served.
        let mut watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            // A shutdown does not wait for handshakes: nothing was asked yet.
            let handshake = tokio::select! {
                result = handshake => result,
                () = watcher.stopping() => return,
            };
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let watched = watcher.watch(connection, activity, |c| c.graceful_shutdown());
            if let Err(error) = watched.await {
                tracing::debug!(%peer, error = %crate::error::chain(error.as_ref()), "connection ended with an error");
            }
        });
    }
}
