//! `sidelight-admin`: the control plane, on the admin listener. Health, readiness and
//! metrics; the admin JSON API under `/api/v1` with bearer tokens and roles (`auth`);
//! the audit records, erasure and reports read from the store (`records`,
//! `report_endpoint`); the reviewers' desk (`desk`); the developer's workbench over recorded
//! explanations (`workbench`); the probe check (`probe`); the web
//! console (`console`); and the checks a reload shares with `sidelight config check`
//! (`preflight`).
//!
//! What this crate must never do: be depended on by the data plane or the background
//! jobs; decide a role from anything but the path; answer an unauthenticated caller
//! with more than 401; or write a payload value, token or key to a log line.

pub mod access;
pub mod admin;
pub mod auth;
pub mod console;
pub mod desk;
pub mod evidence;
pub mod preflight;
pub mod probe;
pub mod records;
pub mod reload;
pub mod report_endpoint;
pub mod state;
pub mod whatif;
pub mod workbench;

use sidelight_config as config;
use sidelight_core::{audit, body, error, live, monitor, query};
