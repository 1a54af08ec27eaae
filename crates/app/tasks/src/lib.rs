//! `sidelight-tasks`: the background jobs. Each route's trainer and distiller, the
//! fleet's trainers and poller (PostgreSQL), each monitored route's computation, the
//! alert delivery, the audit log's retention purge and witness, all behind one [`job::Job`]
//! trait: a name, a way to stop, and a line in `/readyz`.
//!
//! What this crate must never do: run on a data-plane thread or make a request wait on
//! its work; depend on the control plane; change the surrogate in service except by an
//! atomic swap of one that passed the fidelity gate; or write a payload value, token or
//! key to a log line.

pub mod alert;
pub mod distill;
pub mod fleet;
pub mod job;
pub mod monitor;
pub mod retention;
pub mod trainer;
pub mod witness;

use sidelight_config as config;
use sidelight_core::{audit, live};
