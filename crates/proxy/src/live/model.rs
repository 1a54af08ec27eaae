//! A trained surrogate ready to explain rows: the surrogate, one fast TreeSHAP explainer
//! per output, and the facts an explanation states about it (version, fidelity).

use serde::{Deserialize, Serialize};
use sidelight_explain::shap::TreeExplainer;
use sidelight_explain::{OutputKind, Surrogate, Value};

use crate::config::{Audience, FeatureConfig};

/// Facts about one trained surrogate, kept with it on disk and in the version history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct VersionRecord {
    pub(crate) version: u64,
    /// Seconds since the Unix epoch.
    pub(crate) trained_at: u64,
    pub(crate) rows: usize,
    pub(crate) r2: f64,
    pub(crate) mae: f64,
    pub(crate) agreement: Option<f64>,
    /// Whether it passed the fidelity gate and was put into service.
    pub(crate) accepted: bool,
    /// Why it was or was not put into service.
    pub(crate) reason: String,
}

/// A surrogate in service.
pub(crate) struct LiveModel {
    pub(crate) record: VersionRecord,
    pub(crate) surrogate: Surrogate,
    explainers: Vec<TreeExplainer>,
    /// For each schema feature, the position of its value in the incoming row names.
    names: Vec<String>,
}

/// One row's explanation, as attached to a response.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RowExplanation {
    pub(crate) id: String,
    pub(crate) surrogate_version: u64,
    /// Which output was explained: the class index for class probabilities, else 0.
    pub(crate) output: usize,
    /// The surrogate's expected output, in the space the attributions add up in.
    pub(crate) base_value: f64,
    /// What the model answered for this row (and output).
    pub(crate) prediction: f64,
    /// What the surrogate predicts, in the model's output space.
    pub(crate) surrogate_prediction: f64,
    pub(crate) fidelity: RowFidelity,
    /// `logit` for probabilities (attributions add up to the logit), else `output`.
    pub(crate) space: &'static str,
    pub(crate) attributions: Vec<Contribution>,
    pub(crate) text: Option<String>,
    /// Every feature's contribution in schema order, whatever the audience saw; kept for
    /// the probe check, never sent.
    #[serde(skip)]
    pub(crate) schema_contributions: Vec<f64>,
}

/// How far this explanation can be trusted.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RowFidelity {
    /// |surrogate − model| for this row, in the model's output space.
    pub(crate) local_error: f64,
    /// The surrogate's R² on held-out traffic.
    pub(crate) r2: f64,
}

/// One feature's part in a prediction.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Contribution {
    pub(crate) feature: String,
    pub(crate) value: Value,
    pub(crate) contribution: f64,
}

/// Local error above which a customer is told the explanation is approximate.
const CAVEAT_ERROR: f64 = 0.05;
/// Local error above which a customer gets no explanation at all.
const WITHHOLD_ERROR: f64 = 0.2;

// === impl LiveModel ===

impl LiveModel {
    pub(crate) fn new(surrogate: Surrogate, record: VersionRecord) -> Result<Self, String> {
        let explainers = surrogate
            .ensembles()
            .iter()
            .map(TreeExplainer::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot prepare TreeSHAP: {e}"))?;
        let names = surrogate.schema().names().map(str::to_owned).collect();
        Ok(Self {
            record,
            surrogate,
            explainers,
            names,
        })
    }

    pub(crate) fn version(&self) -> u64 {
        self.record.version
    }

    /// The schema's feature names, in order.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Explains one row, given in schema order, whose model output is `outputs`.
    pub(crate) fn explain(
        &self,
        id: String,
        row: &[Value],
        outputs: &[f64],
        explain_class: Option<usize>,
        audience: Audience,
        features: &[FeatureConfig],
    ) -> Result<RowExplanation, String> {
        let kind = self.surrogate.output();
        let class = match kind {
            OutputKind::MultiClass { .. } => explain_class
                .filter(|&c| c < outputs.len())
                .unwrap_or_else(|| sidelight_explain::fidelity::argmax(outputs)),
            _ => 0,
        };
        let explainer = self
            .explainers
            .get(class)
            .ok_or_else(|| format!("the surrogate has no output {class}"))?;
        let x = self.surrogate.encode(row).map_err(|e| e.to_string())?;
        let attribution = explainer.explain(&x).map_err(|e| e.to_string())?;
        let prediction = outputs.get(class).copied().unwrap_or(f64::NAN);
        let surrogate_prediction = kind.to_output(attribution.prediction);
        let mut attributions: Vec<Contribution> = self
            .names
            .iter()
            .zip(row)
            .zip(&attribution.values)
            .map(|((feature, value), contribution)| Contribution {
                feature: feature.clone(),
                value: value.clone(),
                contribution: *contribution,
            })
            .collect();
        attributions.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        let local_error = (surrogate_prediction - prediction).abs();
        let text = describe(&attributions, audience, features, local_error);
        if audience == Audience::Customer {
            attributions = for_customer(attributions, features);
        }
        Ok(RowExplanation {
            id,
            surrogate_version: self.record.version,
            output: class,
            base_value: attribution.base_value,
            prediction,
            surrogate_prediction,
            fidelity: RowFidelity {
                local_error,
                r2: self.record.r2,
            },
            space: if kind.is_probability() {
                "logit"
            } else {
                "output"
            },
            attributions,
            text,
            schema_contributions: attribution.values,
        })
    }
}

/// The name under which a customer sees the contributions of features they may not see.
const OTHER_FACTORS: &str = "other factors";

/// What a customer may see: only features the business declared visible and not
/// protected, with their values; the rest summed into one "other factors" entry, so the
/// contributions still add up to the prediction.
fn for_customer(attributions: Vec<Contribution>, features: &[FeatureConfig]) -> Vec<Contribution> {
    let visible = |name: &str| {
        features
            .iter()
            .any(|f| f.name == name && f.customer_visible && !f.protected)
    };
    let mut hidden = 0.0;
    let mut shown: Vec<Contribution> = Vec::with_capacity(attributions.len());
    for a in attributions {
        if visible(&a.feature) {
            shown.push(a);
        } else {
            hidden += a.contribution;
        }
    }
    if hidden != 0.0 {
        shown.push(Contribution {
            feature: OTHER_FACTORS.to_owned(),
            value: Value::Missing,
            contribution: hidden,
        });
    }
    shown
}

/// A plain sentence naming the main reasons. The narration stage will replace this with
/// localised, schema-aware wording; this keeps to its rules already: a customer never
/// sees a protected or hidden feature, figures, or an explanation that cannot be trusted.
fn describe(
    attributions: &[Contribution],
    audience: Audience,
    features: &[FeatureConfig],
    local_error: f64,
) -> Option<String> {
    let config = |name: &str| features.iter().find(|f| f.name == name);
    match audience {
        Audience::Developer => {
            let list = |up: bool| {
                attributions
                    .iter()
                    .filter(|a| (a.contribution > 0.0) == up && a.contribution != 0.0)
                    .take(3)
                    .map(|a| format!("{} ({:+.3})", a.feature, a.contribution))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (up, down) = (list(true), list(false));
            Some(format!(
                "Pushed up by: {}. Pushed down by: {}. Surrogate error here: {:.3}.",
                if up.is_empty() { "nothing" } else { &up },
                if down.is_empty() { "nothing" } else { &down },
                local_error
            ))
        }
        Audience::Customer => {
            if local_error > WITHHOLD_ERROR {
                return None;
            }
            let reasons: Vec<String> = attributions
                .iter()
                .filter(|a| a.contribution != 0.0)
                // Only features the business has declared visible: a feature of an inferred
                // schema may be protected without anyone having said so.
                .filter(|a| config(&a.feature).is_some_and(|f| f.customer_visible && !f.protected))
                .take(3)
                .map(|a| {
                    let name = config(&a.feature)
                        .and_then(|f| f.display_name.clone())
                        .unwrap_or_else(|| a.feature.replace('_', " "));
                    let direction = if a.contribution > 0.0 {
                        "helped"
                    } else {
                        "counted against"
                    };
                    format!("your {name} {direction}")
                })
                .collect();
            if reasons.is_empty() {
                return None;
            }
            let mut text = format!("The main reasons for this result: {}.", reasons.join("; "));
            if local_error > CAVEAT_ERROR {
                text.push_str(" This explanation is approximate.");
            }
            Some(text)
        }
    }
}
