//! What the admin endpoints and the console look at: the state the server builds at
//! bind time and shares with every admin request.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::auth::Auth;
use crate::config::UpstreamBase;
use crate::reload::Reloader;

/// What the admin endpoints look at.
pub struct AdminState {
    pub registry: Registry,
    pub upstream: UpstreamBase,
    pub connect_timeout: Duration,
    /// Set when shutdown begins, so that load balancers stop sending new traffic.
    pub draining: AtomicBool,
    pub surrogates: crate::live::SurrogateStatus,
    pub probe: Arc<crate::probe::Prober>,
    /// The audit log and what erasure reaches.
    pub erasable: crate::records::Erasable,
    /// Who may call the API; swapped by a reload.
    pub auth: Arc<Auth>,
    /// Re-reads the config file for `POST /api/v1/config/reload` (and SIGHUP).
    pub reloader: Reloader,
    /// The web console's sessions (see `console`).
    pub console: crate::console::session::Console,
    /// The background jobs, once started.
    pub jobs: std::sync::OnceLock<sidelight_tasks::job::JobsReadiness>,
}

impl AdminState {
    /// The review queue's endpoints, over the audit log and the live routes.
    pub fn desk(&self) -> crate::desk::ReviewDesk {
        crate::desk::ReviewDesk {
            audit: self.erasable.audit.clone(),
            reviews: self
                .erasable
                .audit
                .as_ref()
                .map(|a| a.reviews.clone())
                .unwrap_or_default(),
            routes: self.erasable.routes.clone(),
        }
    }
}
