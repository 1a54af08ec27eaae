//! Binding the listeners and running them until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError};
use crate::forward::{ClientAddr, Forward};
use crate::metrics::Metrics;
use crate::route::RouteTable;
use crate::stack::{DataPlane, data_plane};

/// Why Sidelight could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    data_listener: TcpListener,
    admin_listener: TcpListener,
    data_plane: DataPlane,
    admin: Arc<AdminState>,
}

// === impl Sidelight ===

impl Sidelight {
    /// Validates `config` and binds both listeners.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let forward = Forward::new(&config)?;
        let routes = Arc::new(RouteTable::new(&config.routes, &metrics));
        let data_plane = data_plane(forward, routes, metrics);
        let upstream = config
            .upstream
            .base()
            .map_err(|message| ConfigError::Invalid {
                key: "upstream.url".to_owned(),
                message,
            })?;
        let admin = Arc::new(AdminState {
            registry,
            upstream,
            connect_timeout: config.upstream.connect_timeout,
            draining: Default::default(),
        });
        let data_listener = bind("server.listen", config.server.listen).await?;
        let admin_listener = bind("server.admin_listen", config.server.admin_listen).await?;
        Ok(Self {
            config,
            data_listener,
            admin_listener,
            data_plane,
            admin,
        })
    }

    /// Where the data listener accepts model traffic.
    pub fn data_addr(&self) -> SocketAddr {
        self.data_listener
            .local_addr()
            .unwrap_or(self.config.server.listen)
    }

    /// Where the admin listener answers health, readiness and metrics.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.config.server.admin_listen)
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets
    /// in-flight requests finish within `server.shutdown_grace`, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Drained {
        let Self {
            config,
            data_listener,
            admin_listener,
            data_plane,
            admin,
        } = self;
        let builder = connection_builder(&config);
        let data_graceful = GracefulShutdown::new();
        let admin_graceful = GracefulShutdown::new();

        let data_accept = accept_loop(&data_listener, &builder, &data_graceful, |peer| {
            let plane = data_plane.clone();
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer));
                plane.clone().oneshot(request)
            })
        });
        let mut admin_accept = Box::pin(accept_loop(
            &admin_listener,
            &builder,
            &admin_graceful,
            |_peer| {
                let state = admin.clone();
                hyper::service::service_fn(move |request: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin::handle(state, request).await) }
                })
            },
        ));

        tokio::select! {
            () = data_accept => {}
            () = &mut admin_accept => {}
            () = shutdown => {}
        }
        // The data accept loop is gone; closing its socket makes new connections fail at
        // once instead of queueing in the backlog until the process exits.
        drop(data_listener);
        admin.draining.store(true, Ordering::Relaxed);
        let in_flight = data_graceful.count();
        tracing::info!(
            grace = ?config.server.shutdown_grace,
            connections = in_flight,
            "shutting down: no new connections, waiting for in-flight requests"
        );

        // The admin port stays up while the data plane drains, so that /readyz can
        // report the drain to whoever watches it.
        let drained = tokio::select! {
            drained = tokio::time::timeout(config.server.shutdown_grace, data_graceful.shutdown()) => drained.is_ok(),
            () = &mut admin_accept => false,
        };
        let cut_connections = if drained {
            0
        } else {
            tracing::warn!(
                connections = in_flight,
                "grace period over; cutting the connections still open"
            );
            in_flight
        };
        drop(admin_accept);
        drop(admin_listener);
        let _ = tokio::time::timeout(Duration::from_secs(1), admin_graceful.shutdown()).await;
        tracing::info!("stopped");
        Drained { cut_connections }
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper starts the header-read timer whenever a connection waits for a request, so
    // it doubles as the keep-alive idle timeout for HTTP/1.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.idle_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.server.idle_timeout / 2)
        .keep_alive_timeout(Duration::from_secs(20));
    if config.server.http2 {
        builder
    } else {
        builder.http1_only()
    }
}

/// Accepts connections until the future is dropped; each connection is served on its
/// own task and watched by `graceful`.
async fn accept_loop<M, S>(
    listener: &TcpListener,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
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
    loop {
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
        let connection = builder
            .serve_connection(TokioIo::new(stream), make_service(peer))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %crate::error::chain(error.as_ref()), "connection ended with an error");
            }
        });
    }
}
