//! What the caller tells the narrator about one explained row, and what it gets back.

use sidelight_explain::{FeatureKind, Value};

use crate::locale::Locale;
use crate::overrides::RouteOverrides;

/// Who reads the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The person the decision is about: top reasons in words, no figures, never a
    /// protected or hidden feature, a caveat or nothing when fidelity is low.
    Customer,
    /// Whoever debugs the model: every attribution with value and contribution, base
    /// value, surrogate version and fidelity.
    Developer,
    /// The developer view plus the consent and storage facts of the record.
    Auditor,
}

/// How a numeric value is written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// A plain number, followed by the feature's unit if it has one.
    #[default]
    Plain,
    /// An amount of money in `currency` ("DM", "EUR"): grouped digits, cents only if any.
    Money {
        /// Written after the amount.
        currency: String,
    },
    /// A percentage: the value is already in percent (35 means 35 %).
    Percent,
    /// A span of time, with the unit's word in the reader's language and number.
    Duration {
        /// The unit the value counts.
        unit: DurationUnit,
    },
    /// A whole count, followed by the feature's unit if it has one.
    Count,
    /// A code that only names a category; never compared with typical values.
    Category,
}

impl ValueFormat {
    /// The format a configured unit suggests: `months`/`years`/`days` are durations,
    /// `%` a percentage, a currency code or sign money, anything else plain.
    pub fn from_unit(unit: Option<&str>) -> Self {
        let Some(unit) = unit.map(str::trim) else {
            return Self::Plain;
        };
        match unit.to_ascii_lowercase().as_str() {
            "month" | "months" => Self::Duration {
                unit: DurationUnit::Months,
            },
            "year" | "years" => Self::Duration {
                unit: DurationUnit::Years,
            },
            "day" | "days" => Self::Duration {
                unit: DurationUnit::Days,
            },
            "%" | "percent" | "pct" => Self::Percent,
            "dm" | "eur" | "usd" | "gbp" | "chf" | "jpy" | "€" | "$" | "£" => Self::Money {
                currency: unit.to_owned(),
            },
            _ => Self::Plain,
        }
    }
}

/// The unit of a [`ValueFormat::Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DurationUnit {
    /// Days.
    Days,
    /// Months.
    Months,
    /// Years.
    Years,
}

/// Where most values of a numeric feature lie (from the training window): a value
/// above `p75` is "higher than for most", below `p25` "lower than for most".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Typical {
    /// 25th percentile.
    pub p25: f64,
    /// Median.
    pub median: f64,
    /// 75th percentile.
    pub p75: f64,
}

/// What the narrator knows about one feature; the proxy converts its feature config.
///
/// Words in other languages than the display name's come from a `feature-<name>`
/// message in that language's `.ftl` files (see the crate docs).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureInfo {
    /// The name in the payload.
    pub name: String,
    /// Numeric, boolean or categorical.
    pub kind: FeatureKind,
    /// What people call it ("loan duration"); the name is used when absent.
    pub display_name: Option<String>,
    /// The unit of a plain or count value ("DM", "years").
    pub unit: Option<String>,
    /// How its numeric values are written.
    pub format: ValueFormat,
    /// The known levels of a categorical feature.
    pub levels: Vec<String>,
    /// A protected attribute: never named, valued or hinted at to a customer.
    pub protected: bool,
    /// Whether a customer may see it named.
    pub customer_visible: bool,
    /// Whether the person could change it (a next step may suggest it).
    pub actionable: bool,
    /// Lower bound of an actionable numeric feature.
    pub min: Option<f64>,
    /// Upper bound of an actionable numeric feature.
    pub max: Option<f64>,
    /// Typical values, for "higher than for most applicants".
    pub typical: Option<Typical>,
}

impl FeatureInfo {
    /// A visible, unprotected, not actionable feature with no words but its name.
    pub fn new(name: impl Into<String>, kind: FeatureKind) -> Self {
        Self {
            name: name.into(),
            kind,
            display_name: None,
            unit: None,
            format: ValueFormat::Plain,
            levels: Vec::new(),
            protected: false,
            customer_visible: true,
            actionable: false,
            min: None,
            max: None,
            typical: None,
        }
    }

    /// Whether a customer may read about this feature at all.
    pub fn shown_to_customer(&self) -> bool {
        self.customer_visible && !self.protected
    }
}

/// The space the contributions and the base value are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Log-odds: the model returns a probability.
    Logit,
    /// The model's own output (regression).
    Output,
}

/// The decision the prediction led to, in the route's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the outcome is the one the person hoped for.
    pub favourable: bool,
    /// The route's word for the outcome ("approved", "declined"), if it has one.
    pub outcome: Option<String>,
    /// Whether a higher model output is better for the person (a probability of
    /// "good credit": yes; a default risk: no). Decides "for you" / "against you".
    pub higher_is_favourable: bool,
}

/// One change of a next step: feature `feature` (schema index) from `from` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepChange {
    /// Index into [`Input::features`].
    pub feature: usize,
    /// The row's value.
    pub from: Value,
    /// The suggested value.
    pub to: Value,
}

/// A next step, precomputed by the caller from the counterfactual search.
#[derive(Debug, Clone, PartialEq)]
pub struct NextStep {
    /// The changes, all together.
    pub changes: Vec<StepChange>,
    /// Whether the changed row reaches the favourable outcome on the surrogate.
    pub reaches_target: bool,
}

/// Facts an auditor reads with the record, worded by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFacts {
    /// The record's id.
    pub record_id: Option<String>,
    /// The consent state ("given for storage and training on 2026-01-02").
    pub consent: Option<String>,
    /// What was stored and how ("payload encrypted", "kept 90 days").
    pub storage: Vec<String>,
}

/// When an explanation needs a caveat, and when a customer gets none.
///
/// The local error is `max(local_error, |surrogate_prediction - prediction|)`, in the
/// model's output space (a probability for classifiers); `r2` is the surrogate's
/// held-out R². A non-finite error always withholds; a non-finite R² asks for a caveat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FidelityPolicy {
    /// Above this local error: caveat. Default 0.05.
    pub caveat_local_error: f64,
    /// Above this local error: no customer explanation. Default 0.2.
    pub withhold_local_error: f64,
    /// Below this held-out R²: caveat. Default 0.8.
    pub caveat_r2: f64,
}

impl Default for FidelityPolicy {
    fn default() -> Self {
        Self {
            caveat_local_error: 0.05,
            withhold_local_error: 0.2,
            caveat_r2: 0.8,
        }
    }
}

/// One explained row.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The schema, one entry per feature.
    pub features: &'a [FeatureInfo],
    /// The row's values, one per feature.
    pub values: &'a [Value],
    /// The SHAP contributions, one per feature, in `space`.
    pub contributions: &'a [f64],
    /// The space of the contributions and of `base_value`.
    pub space: Space,
    /// The expected surrogate output: `base_value + Σ contributions` is the surrogate's
    /// prediction in `space`.
    pub base_value: f64,
    /// The model's own prediction (output space).
    pub prediction: f64,
    /// The surrogate's prediction (output space).
    pub surrogate_prediction: f64,
    /// `|surrogate - model|` on this row, output space.
    pub local_error: f64,
    /// The surrogate's R² on held-out traffic.
    pub r2: f64,
    /// The surrogate version in service.
    pub surrogate_version: u64,
    /// The decision, in the route's words.
    pub decision: &'a Decision,
    /// The next step, if the counterfactual search found one.
    pub next_step: Option<&'a NextStep>,
    /// Facts for auditors.
    pub audit: Option<&'a AuditFacts>,
    /// The route's own sentences.
    pub overrides: &'a RouteOverrides,
    /// When to add a caveat or withhold.
    pub fidelity: FidelityPolicy,
}

/// The text for one audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narration {
    /// The explanation; `None` when withheld (see `withheld_reason`).
    pub text: Option<String>,
    /// Whether the explanation is only approximate for this row (the text then says so).
    pub caveat: bool,
    /// The next step, as its own sentence (customers: only actionable, visible features
    /// within their bounds, and only when it reaches the target).
    pub next_step: Option<String>,
    /// Why `text` is `None`: `"low_fidelity"` or `"invalid_input"`.
    pub withheld_reason: Option<&'static str>,
    /// The language the text is in.
    pub locale: Locale,
}
