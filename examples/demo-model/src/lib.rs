//! The demo upstream for `sidelight demo`: a small credit-scoring model served over the
//! KServe v1 protocol, plus a traffic generator that replays the German credit data set.
//!
//! This crate is a stand-in for a customer's model API, not part of Sidelight: Sidelight
//! must work against it exactly as it would against any other upstream, so nothing here
//! may know about or cooperate with the proxy. It also never logs payload values (no
//! feature values, no scores) — only counts and errors — so that whatever shows up in a
//! demo's logs is what Sidelight chose to record.
//!
//! - [`data`]: the embedded data set (1,000 applications with their outcomes).
//! - [`model`]: a deterministic, nonlinear score with interactions.
//! - [`server`]: the model API (`serve`).
//! - [`shop`]: the second model, a product recommender over a generated catalogue.
//! - [`traffic`]: the replaying client (`replay`).

pub mod data;
pub mod model;
pub mod server;
pub mod shop;
pub mod traffic;
