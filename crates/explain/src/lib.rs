//! `sidelight-explain`: surrogate models of a black-box model and exact SHAP attributions.
//!
//! Pure: no I/O, no async, no threads of its own unless asked. What it must never do:
//! read files or sockets, log payload values, or panic on data that came from outside.

pub mod tree;

pub use tree::{Attribution, Ensemble, LEAF, Tree, TreeError};
