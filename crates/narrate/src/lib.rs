//! `sidelight-narrate`: attributions + schema + audience + locale -> sentences.
//!
//! The proxy explains each row with exact SHAP on a surrogate; this crate turns that
//! explanation into the text a person reads. It is pure: no file or network I/O, no
//! async, no logging. It receives `.ftl` sources as strings (the proxy reads the
//! configured directory) and returns strings.
//!
//! # What it must never do
//!
//! - Name a protected or non-customer-visible feature to a customer, or show its value:
//!   such features only ever count among "other factors".
//! - Give a customer an explanation that cannot be trusted without saying so: when the
//!   surrogate is off on this row (see [`FidelityPolicy`]) the customer text carries a
//!   caveat, and when it is far off there is no customer text at all
//!   (`withheld_reason = "low_fidelity"`).
//! - Show a customer figures they cannot read: customer text has no values, scores or
//!   contributions. The one exception is the next step, which may show the (rounded)
//!   target value of an actionable feature ("a shorter loan duration (about 18
//!   months)"), because that is a value the person knows and can act on.
//! - Panic on input that came from outside.
//!
//! # Audiences
//!
//! - [`Audience::Customer`]: the decision in the route's own words, then up to
//!   [`MAX_REASONS`] reasons among the visible features, largest |contribution| first,
//!   each with its direction ("counted against you") and, for numeric features with
//!   [`Typical`] values, a comparison ("longer than for most applicants"). A
//!   contribution under [`SMALL_SHARE`] of the largest is not named; what is not named
//!   is summed into "other factors", mentioned when that sum is not small. The next
//!   step ([`Narration::next_step`]) is given only when fidelity is good, the
//!   counterfactual reaches the target, and every change is on an actionable, visible
//!   feature within its bounds; the target is rounded towards the direction of the
//!   change, so "about" never promises less than the search found.
//! - [`Audience::Developer`]: the decision, model and surrogate predictions, surrogate
//!   version, local error, held-out R², base value and its space, then every
//!   attribution with its value and contribution, grouped into "pushed up", "pushed
//!   down" and "no effect", and the full counterfactual.
//! - [`Audience::Auditor`]: the developer text plus the record's consent and storage
//!   facts ([`AuditFacts`]).
//!
//! # Fidelity
//!
//! With the default [`FidelityPolicy`], a local error
//! `max(local_error, |surrogate_prediction - prediction|)` above 0.05 (output space) or
//! a held-out R² below 0.8 adds a caveat; a local error above 0.2 withholds the
//! customer text. Developers and auditors always get their text, with a line saying
//! which of the two applies; [`Narration::caveat`] is set for every audience.
//!
//! # Wording
//!
//! All words live in Project Fluent files: `locales/{en,de}/*.ftl`, built in with
//! `include_str!`. A business adds or overrides messages with
//! [`Narrator::with_overrides`]:
//!
//! - any built-in message (the variables it may use are listed in the English files);
//! - `feature-<name>` messages naming a feature in a language, with optional attributes
//!   `.your` ("your loan duration"), `.more` / `.less` (the comparatives, "longer"),
//!   `.step-more` / `.step-less` ("a shorter loan duration"). Without one, the display
//!   name is used in neutral built-in phrasing. `<name>` is the payload name with
//!   characters other than ASCII letters, digits, `_` and `-` replaced by `_`
//!   ([`feature_message_id`]);
//! - `custom-…` messages, which a route's overrides ([`RouteOverridesSpec`]) refer to.
//!
//! Every file is checked at start-up; an unknown message, attribute, variable or
//! reference is an error naming the file and line ([`NarrateError`]).
//!
//! ```
//! use sidelight_explain::{FeatureKind, Value};
//! use sidelight_narrate::{
//!     Audience, Decision, FeatureInfo, FidelityPolicy, Input, Narrator, RouteOverrides, Space,
//! };
//!
//! let narrator = Narrator::builtin().unwrap();
//! let mut duration = FeatureInfo::new("duration_months", FeatureKind::Numeric);
//! duration.display_name = Some("loan duration".into());
//! let features = [duration];
//! let decision = Decision { favourable: false, outcome: Some("declined".into()), higher_is_favourable: true };
//! let overrides = RouteOverrides::default();
//! let input = Input {
//!     features: &features,
//!     values: &[Value::Number(48.0)],
//!     contributions: &[-0.9],
//!     space: Space::Logit,
//!     base_value: 0.4,
//!     prediction: 0.38,
//!     surrogate_prediction: 0.37,
//!     local_error: 0.01,
//!     r2: 0.91,
//!     surrogate_version: 3,
//!     decision: &decision,
//!     next_step: None,
//!     audit: None,
//!     overrides: &overrides,
//!     fidelity: FidelityPolicy::default(),
//! };
//! let locale = narrator.negotiate(Some("en-GB,en;q=0.9"));
//! let text = narrator.narrate(&input, Audience::Customer, &locale).text.unwrap();
//! assert_eq!(
//!     text,
//!     "Decision: declined. The main reason for this result: your loan duration counted against you."
//! );
//! ```

mod catalogue;
mod compose;
mod error;
mod input;
mod locale;
mod narrator;
mod number;
mod overrides;
mod source;

pub use catalogue::{feature_message_id, notice_message_id, outcome_message_id, reason_message_id};
pub use compose::{ContrastInput, MAX_REASONS, SMALL_SHARE};
pub use error::{NarrateError, Result};
pub use input::{
    Audience, AuditFacts, Decision, DurationUnit, FeatureInfo, FidelityPolicy, Input, Narration,
    NextStep, Space, StepChange, Typical, ValueFormat,
};
pub use locale::Locale;
pub use narrator::{Arg, Narrator};
pub use overrides::{Origin, OverrideSpec, OverrideText, RouteOverrides, RouteOverridesSpec};
pub use source::FtlSource;
