//! `sidelight-proxy`: the reverse proxy that stands in front of a model's HTTP API.
//!
//! It forwards every request to the upstream unchanged in meaning (hop-by-hop headers
//! removed, forwarding headers and a request id added), streams bodies it does not need
//! to read, answers its own failures as JSON errors, and exposes health, readiness,
//! Prometheus metrics and the admin API on a separate admin listener. On routes with
//! live explanations it learns a surrogate from the traffic, attaches explanations in
//! the audience's words, and writes the audit log.
//!
//! The whole application is [`Sidelight`]: bind it from a [`Config`], read the bound
//! addresses, then [`Sidelight::run`] it until a shutdown future completes. Tests start it
//! in-process exactly as the `sidelight` binary does.
//!
//! This crate only wires the rooms together: `sidelight-core` (what they share),
//! `sidelight-data` (the data plane), `sidelight-tasks` (background jobs) and
//! `sidelight-admin` (the control plane); dependencies point that way and no further.
//!
//! What this crate must never do: change a prediction, fail a request because an
//! optional stage (inspection, explanation, narration) failed, panic on anything a client or
//! upstream sends, or write a payload value, token or key to a log line.

mod server;

use sidelight_admin::{admin, auth, preflight, records};
use sidelight_core::{audit, body, client, error, live, metrics, trust};
use sidelight_data::{forward, narration, route, stack, tls};

pub use auth::{new_token, token_sha256};
pub use client::{AdminClientError, admin_get, admin_post, post_json, post_json_with_headers};
pub use preflight::check_files;
pub use server::{Drained, Sidelight, StartError};
pub use sidelight_admin::reload::{ReloadError, ReloadReport, Reloader};
/// The configuration, parsed and validated (the `sidelight-config` crate).
pub use sidelight_config as config;
pub use sidelight_config::{Config, ConfigError};
pub use sidelight_core::live::{
    RouteSurrogate, SchemaInferError, SurrogateStatus, infer_from_requests,
};
/// A `.ftl` text for [`Sidelight::bind_with_wording`].
pub use sidelight_narrate::FtlSource;
