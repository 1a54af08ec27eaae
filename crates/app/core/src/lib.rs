//! `sidelight-core`: what the data plane, the control plane and the background jobs
//! share. Bodies and JSON errors, header names, the metrics registry's families, the one
//! clock, and the handles to the shared state: each route's surrogate and training
//! window ([`live::RouteLive`]), the audit log's writer ([`audit::AuditLog`]), the
//! monitor's window ([`monitor::RouteMonitor`]) and the review queue's held responses
//! ([`reviews::Reviews`]).
//!
//! Modules: `body`, `error`, `headers`, `clock`, `client` (calls to admin APIs and
//! webhooks), `metrics`, `inspection`, `query`, `audit`, `live`, `monitor`, `reviews`, `trust`
//! (whom the data port believes).
//!
//! What this crate must never do: serve a request or start a thread or task of its own
//! (serving is the planes', background work the jobs'), depend on the data plane, the
//! control plane or the jobs, or write a payload value, token or key to a log line.

pub mod audit;
pub mod body;
pub mod client;
pub mod clock;
pub mod error;
pub mod headers;
pub mod inspection;
pub mod live;
pub mod metrics;
pub mod monitor;
pub mod query;
pub mod reviews;
pub mod trust;

use sidelight_config as config;
