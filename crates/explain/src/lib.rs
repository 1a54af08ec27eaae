//! `sidelight-explain`: surrogate models of a black-box model and exact SHAP attributions.
//!
//! Pure: no I/O, no async, no threads of its own unless asked. What it must never do:
//! read files or sockets, log payload values, or panic on data that came from outside.

pub mod counterfactual;
pub mod distill;
pub mod encode;
pub mod fidelity;
pub mod format;
pub mod gbt;
pub mod linear;
mod output;
mod rng;
pub mod schema;
pub mod shap;
pub mod surrogate;
pub mod tree;

pub use counterfactual::{Constraint, Counterfactual, CounterfactualError, Query, Target};
pub use distill::{
    Synthetic, SyntheticKind, UnseenSplit, hybrids, is_held_out, perturbations, r2_lower_bound,
    row_key, unseen_split,
};
pub use encode::{EncodeError, Encoder, Levels};
pub use fidelity::{Fidelity, FidelityError, HoldoutSplit, local_fidelity, split_holdout};
pub use format::{FORMAT_VERSION, FormatError};
pub use gbt::{FitReport, GbtError, GbtParams, GbtRegressor, GbtValidParams};
pub use linear::{LinearError, LinearSurrogate};
pub use schema::{Feature, FeatureKind, Schema, SchemaError, Value};
pub use shap::{
    InterventionalExplainer, KernelOptions, LinearExplainer, ShapError, TreeExplainer, kernel_shap,
    tree_shap_reference,
};
pub use surrogate::{
    FitProgress, Holdout, OutputKind, PROBABILITY_CLIP, Surrogate, SurrogateError,
    SurrogateMetadata,
};
pub use tree::{Attribution, Ensemble, LEAF, Tree, TreeError};
