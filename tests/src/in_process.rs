//! The whole application started inside the test process, through the library the
//! `sidelight` binary uses: no process to spawn, no binary to build, no log to wait for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sidelight_proxy::{Config, Sidelight};

use crate::{TEST_ADMIN_TOKEN, token_admins, with_test_token};

/// A running in-process Sidelight, stopped (gracefully) when dropped. It offers what
/// [`crate::Proxy`] offers for talking to it (`data`, `admin`, `url`, `admin_url`,
/// `admin_token`), so that a test switches with one line.
///
/// It cannot stand in where a test needs the process itself: signals, exit codes,
/// kill -9, its stdout/stderr or memory, or `SIDELIGHT_…` variables (which the
/// application would read from the environment this process shares with parallel tests;
/// the config here is loaded with no environment overrides at all).
pub struct InProcess {
    pub data: SocketAddr,
    pub admin: SocketAddr,
    /// The token its admin API accepts, when the helper configured it.
    pub admin_token: Option<&'static str>,
    /// The config file it was started with (a reload re-reads it).
    pub config_path: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// In a mutex so that the handle can be shared between tasks (a receiver is not Sync).
    stopped: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Binds Sidelight with `config` (TOML, listeners on port 0) and starts serving. A
    /// config without an `[admin]` section gets one with [`TEST_ADMIN_TOKEN`], as with
    /// [`crate::Proxy::start`].
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidelight.toml");
        let (config, test_token) = with_test_token(config);
        std::fs::write(&path, config).unwrap();
        let config = Config::load_with_env(Some(&path), Vec::new())
            .unwrap_or_else(|e| panic!("invalid configuration: {e}"));
        let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        // A runtime of its own on a thread of its own, as the binary has: the test's
        // runtime (one thread under #[tokio::test]) is not shared with the server, start
        // can be synchronous like Proxy::start, and drop can wait for the drain without
        // an async drop.
        std::thread::Builder::new()
            .name("sidelight-in-process".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let sidelight = match Sidelight::bind(config).await {
                        Ok(sidelight) => sidelight,
                        Err(e) => {
                            let _ = addrs_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = addrs_tx.send(Ok((sidelight.data_addr(), sidelight.admin_addr())));
                    let server = tokio::spawn(sidelight.run(async move {
                        let _ = shutdown_rx.await;
                    }));
                    let _ = server.await;
                });
                drop(runtime);
                let _ = stopped_tx.send(());
            })
            .unwrap();
        let (data, admin) = addrs_rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("sidelight did not start: {e}"));
        if test_token {
            token_admins().lock().unwrap().insert(admin);
        }
        Self {
            data,
            admin,
            admin_token: test_token.then_some(TEST_ADMIN_TOKEN),
            config_path: path,
            shutdown: Some(shutdown),
            stopped: std::sync::Mutex::new(stopped),
            _dir: dir,
        }
    }

    pub fn data_addr(&self) -> SocketAddr {
        self.data
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        token_admins().lock().unwrap().remove(&self.admin);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // A connection a test left open could hold the drain for the whole grace period;
        // past this the thread is left to finish on its own rather than hang the test.
        if let Ok(stopped) = self.stopped.lock() {
            let _ = stopped.recv_timeout(Duration::from_secs(10));
        }
    }
}
