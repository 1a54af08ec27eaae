//! `sidelight-data`: the data plane. The tower stack every model request goes through
//! (observe, rescue, inspect, explain, record, review, attach, forward), the routes,
//! forwarding to the upstream, reading a bounded prefix of bodies, the narration's
//! wording, the listeners' TLS, the review rules, the data port's own endpoints (`/v1/explanations`,
//! `/v1/feedback`) and the upstream caller the probe check and distillation share.
//!
//! What this crate must never do: depend on the control plane or the background jobs;
//! change a prediction; fail a request because an optional stage (inspection,
//! explanation, narration, recording on `best_effort`) failed; block a request on
//! training; or write a payload value, token or key to a log line.

pub mod compare;
pub mod compute;
pub mod contest;
pub mod endpoints;
pub mod explain;
pub mod forward;
pub mod handoff;
pub mod inspect;
pub mod narration;
pub mod notice;
pub mod probe;
pub mod record;
pub mod review;
pub mod route;
pub mod stack;
pub mod tls;

use sidelight_config as config;
use sidelight_core::{audit, body, error, headers, live, metrics, monitor, query, trust};
