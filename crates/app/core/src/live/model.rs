//! A trained surrogate ready to explain rows: the surrogate, one fast TreeSHAP explainer
//! per output, the facts an explanation states about it (version, fidelity), and what
//! the narrator and the next-step search need about each feature (words, visibility,
//! bounds, typical values), prepared once per surrogate rather than per request.

use serde::{Deserialize, Serialize};
use sidelight_explain::counterfactual::{
    Constraint, Query, SplitIndex, Target, counterfactual_indexed,
};
use sidelight_explain::shap::TreeExplainer;
use sidelight_explain::{FeatureKind, OutputKind, Surrogate, Value};
use sidelight_narrate::{
    AuditFacts, Decision, FeatureInfo, FidelityPolicy, Input, Locale, Narrator, NextStep,
    RouteOverrides, Space, StepChange, Typical, ValueFormat,
};

use crate::config::{Audience, DecisionConfig, ExplainConfig, FeatureConfig, FeatureKindConfig};

/// Facts about one trained surrogate, kept with it on disk and in the version history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub trained_at: u64,
    pub rows: usize,
    pub r2: f64,
    pub mae: f64,
    pub agreement: Option<f64>,
    /// Whether it passed the fidelity gate and was put into service.
    pub accepted: bool,
    /// Why it was or was not put into service.
    pub reason: String,
    /// What the gate measured, beyond `r2` (versions trained by this release on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateFacts>,
    /// Agreement of its attributions with KernelSHAP on the real model, for a few
    /// sampled rows (active distillation checks each accepted version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faithfulness: Option<Faithfulness>,
    /// Why it was taken out of service (or not restored) after it was accepted: it was
    /// trained on rows of a subject erased since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<String>,
}

/// The honest gate's figures for one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateFacts {
    /// Held-out real rows: distinct rows picked by content, none of them trained on.
    pub holdout_rows: usize,
    /// Distinct real rows in the window.
    pub distinct_rows: usize,
    /// The lower confidence bound of held-out R² the gate compared (absent: the point
    /// estimate was compared).
    pub r2_lower: Option<f64>,
    pub confidence: f64,
    /// R² on held-out synthetic rows (interventional: correlations broken), with
    /// distillation.
    pub synthetic_r2: Option<f64>,
    pub synthetic_holdout_rows: usize,
    /// Synthetic rows trained on.
    pub synthetic_rows: usize,
    /// Synthetic rows left out because they were made from a held-out row.
    #[serde(default)]
    pub synthetic_set_aside: usize,
    /// The boosting parameters chosen, and every candidate's validation R².
    pub trees: usize,
    pub depth: usize,
    pub learning_rate: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_r2: Vec<f64>,
}

/// How well a version's attributions agree with KernelSHAP against the real model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faithfulness {
    /// Rows checked.
    pub rows: usize,
    /// Mean Spearman rank correlation of the two attributions, per row.
    pub spearman: f64,
    /// Share of rows whose largest attribution is the same feature.
    pub top1: f64,
    /// Upstream calls spent.
    pub calls: usize,
}

/// A surrogate in service.
pub struct LiveModel {
    pub record: VersionRecord,
    pub surrogate: Surrogate,
    explainers: Vec<TreeExplainer>,
    /// Per ensemble, its split thresholds, collected once for every next-step search.
    split_indexes: Vec<SplitIndex>,
    /// The schema's feature names, in order.
    names: Vec<String>,
    /// What the narrator knows about each schema feature, in schema order.
    features: Vec<FeatureInfo>,
    /// The next-step search's constraint per encoded feature: only actionable features
    /// a customer may see can move, within their configured bounds.
    constraints: Vec<Constraint>,
    /// The next-step search's cost of moving each feature by one unit: the training
    /// window's standard deviation, so that one deviation costs as much as one category.
    scales: Vec<f64>,
    /// The configured groups present in the schema, with their members' schema indices.
    groups: Vec<Group>,
    /// The configured reason codes, with their features' schema indices.
    reasons: Vec<Reason>,
    /// Per schema feature, the range of the numbers the surrogate was trained on (none
    /// for other kinds, or a surrogate restored without its window).
    ranges: Vec<Option<(f64, f64)>>,
    /// Whose rows it learnt from, so that erasing one of them retires it.
    pub provenance: super::state::Provenance,
    /// For a surrogate whose personal levels were saved as pseudonyms: how a live row's
    /// values are mapped before it is read.
    mask: Option<super::state::LevelMask>,
}

/// What a request asks of the narration, with the route's wording.
pub struct Narrate<'a> {
    pub audience: Audience,
    pub locale: &'a Locale,
    pub narrator: &'a Narrator,
    pub overrides: &'a RouteOverrides,
    pub config: &'a ExplainConfig,
    /// The consent the request was served under.
    pub consent: sidelight_audit::Consent,
    /// Whether an audit log records the request.
    pub audited: bool,
    /// After this instant no next step is searched for (`limits.next_step_budget`);
    /// `None`: no limit.
    pub next_steps_until: Option<std::time::Instant>,
}

/// One row's explanation, as attached to a response.
#[derive(Debug, Clone, Serialize)]
pub struct RowExplanation {
    pub id: String,
    pub surrogate_version: u64,
    /// Which output was explained: the class index for class probabilities, else 0.
    pub output: usize,
    /// The surrogate's expected output, in `space`.
    pub base_value: f64,
    /// The surrogate's output for this row in `space`: `base_value` plus the sum of every
    /// feature's contribution, exactly (for probabilities, the logit of
    /// `surrogate_prediction`).
    pub surrogate_value: f64,
    /// What the model answered for this row (and output).
    pub prediction: f64,
    /// What the surrogate predicts, in the model's output space.
    pub surrogate_prediction: f64,
    pub fidelity: RowFidelity,
    /// `logit` for probabilities (attributions add up to the logit), else `output`.
    pub space: &'static str,
    pub attributions: Vec<Contribution>,
    /// Developers and auditors: each configured group's attribution, the sum of its
    /// members' (customers read the group in `attributions` instead).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupContribution>,
    /// The narration for the audience; `null` when withheld (see `withheld_reason`).
    pub text: Option<String>,
    /// What the customer could change (customers, unfavourable decisions only), or the
    /// counterfactual for developers when one was searched.
    pub next_step: Option<String>,
    /// Whether the explanation is only approximate for this row (the text says so).
    pub caveat: bool,
    /// The language of `text` and `next_step`.
    pub locale: String,
    /// Why `text` is `null`: `low_fidelity` or `invalid_input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld_reason: Option<&'static str>,
    /// An unfavourable decision's principal reasons, as stable codes (routes with
    /// `[[routes.explain.reasons]]`; none when the text is withheld).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reason_codes: Vec<ReasonCode>,
    /// Every feature's contribution in schema order, whatever the audience saw; kept for
    /// the probe check, never sent.
    #[serde(skip)]
    pub schema_contributions: Vec<f64>,
    /// The output at which the decision turns, for the review rules; never sent.
    #[serde(skip)]
    pub threshold: f64,
    /// A next step was due but not searched for: the request's next-step budget was
    /// spent. Never sent (the response's status says it).
    #[serde(skip)]
    pub next_step_skipped: bool,
    /// On a ranking route: which shown item this row is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<ShownItem>,
}

/// An item a ranking route showed: its place in the ranking, its position among the
/// request's candidates, and its id where the candidates carry one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShownItem {
    /// 1 for the first item shown.
    pub rank: usize,
    /// Its 0-based position in the request's candidates.
    pub candidate: usize,
    /// Its id, when the route names an id field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// How far this explanation can be trusted.
#[derive(Debug, Clone, Serialize)]
pub struct RowFidelity {
    /// |surrogate − model| for this row, in the model's output space.
    pub local_error: f64,
    /// The surrogate's R² on held-out traffic.
    pub r2: f64,
}

/// One principal reason for an unfavourable decision (`[[routes.explain.reasons]]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCode {
    pub code: String,
    /// Its statement in the explanation's language.
    pub statement: String,
    /// How much its features counted against the decision together, in the
    /// explanation's space (positive).
    pub weight: f64,
}

/// A configured reason code, resolved against the schema.
#[derive(Debug, Clone)]
struct Reason {
    code: String,
    statement: Option<String>,
    /// Schema indices of its features (a group's through its members) that the schema
    /// has.
    members: Vec<usize>,
}

/// The route's reason codes with their features' schema indices.
fn reasons(config: &ExplainConfig, names: &[String]) -> Vec<Reason> {
    let index = |name: &str| names.iter().position(|n| n == name);
    config
        .reasons
        .iter()
        .map(|reason| Reason {
            code: reason.code.clone(),
            statement: reason.statement.clone(),
            members: reason
                .features
                .iter()
                .flat_map(
                    |name| match config.groups.iter().find(|g| g.name == *name) {
                        Some(group) => group.features.iter().filter_map(|m| index(m)).collect(),
                        None => index(name).into_iter().collect::<Vec<_>>(),
                    },
                )
                .collect(),
        })
        .collect()
}

/// The reason codes of an unfavourable decision: each reason's features' contributions
/// summed and turned towards "against" (the decision's direction), those that counted
/// against it, most first, at most [`MAX_REASON_CODES`], each worded in `locale`.
/// Reasons never cover a protected feature (`config check` refuses them).
fn reason_codes(
    reasons: &[Reason],
    contributions: &[f64],
    higher_is_favourable: bool,
    narrator: &Narrator,
    locale: &Locale,
) -> Vec<ReasonCode> {
    let mut against: Vec<(f64, &Reason)> = reasons
        .iter()
        .map(|reason| {
            let total: f64 = reason
                .members
                .iter()
                .filter_map(|&i| contributions.get(i))
                .sum();
            (if higher_is_favourable { -total } else { total }, reason)
        })
        .filter(|(weight, _)| *weight > 0.0)
        .collect();
    against.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.code.cmp(&b.1.code)));
    against.truncate(sidelight_config::MAX_REASON_CODES);
    against
        .into_iter()
        .map(|(weight, reason)| ReasonCode {
            code: reason.code.clone(),
            statement: narrator
                .reason_statement(&reason.code, locale)
                .or_else(|| reason.statement.clone())
                .unwrap_or_else(|| reason.code.clone()),
            weight,
        })
        .collect()
}

/// A group's part in a prediction: the sum of its members' contributions.
#[derive(Debug, Clone, Serialize)]
pub struct GroupContribution {
    pub group: String,
    pub features: Vec<String>,
    pub contribution: f64,
}

/// A configured group, resolved against the schema.
#[derive(Debug, Clone)]
struct Group {
    name: String,
    members: Vec<usize>,
}

/// The route's groups whose members are all in the schema.
fn groups(config: &ExplainConfig, names: &[String]) -> Vec<Group> {
    config
        .groups
        .iter()
        .filter_map(|g| {
            let members: Vec<usize> = g
                .features
                .iter()
                .map(|m| names.iter().position(|n| n == m))
                .collect::<Option<_>>()?;
            Some(Group {
                name: g.name.clone(),
                members,
            })
        })
        .collect()
}

/// What the narrator reads for a customer when the route has groups: each group whose
/// members are all among `names` is appended as one feature carrying their sum
/// (visible only if every member is, protected if any is), and the members keep their
/// places (a next step may still change one) with nothing left to attribute to them.
fn group_for_customer(
    config: &ExplainConfig,
    names: &[String],
    features: &mut Vec<FeatureInfo>,
    values: &mut Vec<Value>,
    contributions: &mut Vec<f64>,
) {
    for group in groups(config, names) {
        let sum: f64 = group.members.iter().map(|&i| contributions[i]).sum();
        // Worded like a feature: a `feature-<name>` message where the narration has
        // one, else the name with underscores as spaces.
        let mut info = FeatureInfo::new(group.name, FeatureKind::Categorical);
        info.format = ValueFormat::Category;
        info.protected = group.members.iter().any(|&i| features[i].protected);
        info.customer_visible = group.members.iter().all(|&i| features[i].customer_visible);
        for &i in &group.members {
            contributions[i] = 0.0;
        }
        features.push(info);
        values.push(Value::Missing);
        contributions.push(sum);
    }
}

/// One feature's part in a prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Contribution {
    pub feature: String,
    pub value: Value,
    pub contribution: f64,
}

/// The next-step search is bounded so that it stays cheap on the request path: at most
/// two features changed together, and a narrow beam.
const MAX_CHANGES: usize = 2;
const BEAM_WIDTH: usize = 4;

/// The storage facts an auditor reads: what happens to this request, by whether an audit
/// log is configured and the consent it was served under.
const NOTHING_STORED: &str =
    "nothing about this request is written to disk (no audit log is configured)";
const RECORDED: &str = "a record of this request is in the tamper-evident audit log: payloads, features and texts under the route's privacy policy, sealed with AES-256-GCM, erasable by subject";
const DECISION_ONLY: &str = "the audit log records only the decision and its consent: no payload, features, subject or text";
const WINDOW_IN_MEMORY: &str = "its rows are held in memory only, to train the surrogate and for the probe check, until newer traffic replaces them";
const NOT_TRAINED: &str = "its rows are never used to train the surrogate";

fn storage_facts(consent: sidelight_audit::Consent, audited: bool) -> Vec<String> {
    use sidelight_audit::Consent;
    let record = match (audited, consent) {
        (false, _) => NOTHING_STORED,
        (true, Consent::None) => DECISION_ONLY,
        (true, _) => RECORDED,
    };
    let training = if consent == Consent::Full {
        WINDOW_IN_MEMORY
    } else {
        NOT_TRAINED
    };
    vec![record.to_owned(), training.to_owned()]
}

// === impl LiveModel ===

impl LiveModel {
    /// Prepares `surrogate` for the route `config`. `window` holds training rows in the
    /// surrogate's schema order (empty for a restored or seeded surrogate): typical
    /// values and search scales come from them.
    pub fn new(
        surrogate: Surrogate,
        record: VersionRecord,
        config: &ExplainConfig,
        window: &[Vec<Value>],
    ) -> Result<Self, ExplainError> {
        let explainers = surrogate
            .ensembles()
            .iter()
            .map(TreeExplainer::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ExplainError::Prepare)?;
        let split_indexes = surrogate.ensembles().iter().map(SplitIndex::new).collect();
        let names: Vec<String> = surrogate.schema().names().map(str::to_owned).collect();
        let stats = column_stats(&surrogate, window);
        let features: Vec<FeatureInfo> = surrogate
            .schema()
            .features()
            .iter()
            .zip(&stats)
            .map(|(feature, stats)| {
                let configured = config.features.iter().find(|f| f.name == feature.name);
                feature_info(&feature.name, feature.kind, configured, stats.typical)
            })
            .collect();
        let constraints = features
            .iter()
            .enumerate()
            .map(|(i, info)| constraint(&surrogate, i, info))
            .collect();
        let scales = features
            .iter()
            .zip(&stats)
            .map(|(info, stats)| scale(info, stats.std))
            .collect();
        let ranges = stats.iter().map(|s| s.range).collect();
        let groups = groups(config, &names);
        let reasons = reasons(config, &names);
        Ok(Self {
            record,
            surrogate,
            explainers,
            split_indexes,
            names,
            features,
            constraints,
            scales,
            ranges,
            groups,
            reasons,
            provenance: super::state::Provenance::default(),
            mask: None,
        })
    }

    /// Reads live rows through `mask` (the surrogate's levels of some features are
    /// pseudonyms).
    pub fn with_mask(mut self, mask: Option<super::state::LevelMask>) -> Self {
        if let Some(mask) = &mask {
            // A next step cannot name a level it only knows as a pseudonym.
            for (i, constraint) in self.constraints.iter_mut().enumerate() {
                if mask.masks(i) {
                    *constraint = Constraint::Fixed;
                }
            }
        }
        self.mask = mask;
        self
    }

    /// The features whose levels this surrogate holds as pseudonyms.
    pub fn pseudonymised(&self) -> Vec<String> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| self.mask.as_ref().is_some_and(|m| m.masks(*i)))
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Encodes a row in schema order, mapping the values of pseudonymised features first.
    fn encode(&self, row: &[Value]) -> Result<Vec<f64>, sidelight_explain::EncodeError> {
        match &self.mask {
            Some(mask) => self.surrogate.encode(&mask.apply(row)),
            None => self.surrogate.encode(row),
        }
    }

    /// The first feature of `row` (in schema order) that lies outside what the
    /// surrogate was trained on: a category it never saw, a value it cannot read, or a
    /// number outside the training window's range.
    pub fn out_of_distribution(&self, row: &[Value]) -> Option<&str> {
        let x = self.encode(row).ok()?;
        x.iter()
            .zip(row)
            .zip(&self.ranges)
            .zip(&self.names)
            .find(|(((x, raw), range), _)| {
                let unreadable = x.is_nan() && !matches!(raw, Value::Missing);
                let outside = range.is_some_and(|(lo, hi)| **x < lo || **x > hi);
                unreadable || outside
            })
            .map(|(_, name)| name.as_str())
    }

    pub fn version(&self) -> u64 {
        self.record.version
    }

    /// The schema's feature names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Which of the model's outputs is explained for a row it answered `outputs`: the
    /// configured class, or the most likely one; 0 for a single output.
    pub fn explained_output(&self, config: &ExplainConfig, outputs: &[f64]) -> usize {
        match self.surrogate.output() {
            OutputKind::MultiClass { .. } => config
                .explain_class
                .filter(|&c| c < outputs.len())
                .unwrap_or_else(|| sidelight_explain::fidelity::argmax(outputs)),
            _ => 0,
        }
    }

    /// The schema's features, in order.
    pub fn features(&self) -> &[FeatureInfo] {
        &self.features
    }

    /// Every feature's contribution to output `class` for `row` (both in schema order),
    /// in the space explanations are given in.
    pub fn contributions(&self, row: &[Value], class: usize) -> Result<Vec<f64>, ExplainError> {
        Ok(self.attribute(row, class)?.values)
    }

    /// The space attributions add up in: `logit` for probabilities, else `output`.
    pub fn space(&self) -> &'static str {
        if self.surrogate.output().is_probability() {
            "logit"
        } else {
            "output"
        }
    }

    /// A value of the attribution's space (a base value plus contributions) as the
    /// model's output: a probability for probabilities.
    pub fn to_output(&self, raw: f64) -> f64 {
        self.surrogate.output().to_output(raw)
    }

    /// The attribution of output `class` for `row`: base value, contributions (in schema
    /// order) and their sum, in the space explanations are given in.
    pub fn attribute(
        &self,
        row: &[Value],
        class: usize,
    ) -> Result<sidelight_explain::Attribution, ExplainError> {
        let explainer = self
            .explainers
            .get(class)
            .ok_or(ExplainError::NoOutput(class))?;
        let x = self.encode(row)?;
        explain_reusing_scratch(explainer, &x)
    }

    /// Explains one row, given in schema order, whose model output is `outputs`.
    pub fn explain(
        &self,
        id: String,
        row: &[Value],
        outputs: &[f64],
        ask: &Narrate<'_>,
    ) -> Result<RowExplanation, ExplainError> {
        let kind = self.surrogate.output();
        let class = self.explained_output(ask.config, outputs);
        let explainer = self
            .explainers
            .get(class)
            .ok_or(ExplainError::NoOutput(class))?;
        let x = self.encode(row)?;
        let attribution = explain_reusing_scratch(explainer, &x)?;
        let prediction = outputs.get(class).copied().unwrap_or(f64::NAN);
        let surrogate_prediction = kind.to_output(attribution.prediction);
        let local_error = (surrogate_prediction - prediction).abs();

        let rule = &ask.config.decision;
        let threshold = threshold(rule, kind, attribution.base_value);
        let decision = decide(rule, prediction, threshold);
        let favourable = decision.favourable;
        let policy = FidelityPolicy::default();
        // The search runs only where its answer can be shown: a customer with an
        // unfavourable decision on a row the surrogate fits well (the narrator drops
        // the next step otherwise, so searching would be wasted work).
        let trusted =
            local_error <= policy.caveat_local_error && self.record.r2 >= policy.caveat_r2;
        // A ranking has no decision to reverse: no next step (see `recommend`).
        let due = ask.audience == Audience::Customer
            && !favourable
            && trusted
            && ask.config.ranking.is_none();
        let in_budget = ask
            .next_steps_until
            .is_none_or(|until| std::time::Instant::now() < until);
        let next_step = (due && in_budget)
            .then(|| {
                let raw = kind.to_raw(threshold);
                let target = if rule.higher_is_favourable {
                    Target::AtLeast(raw)
                } else {
                    Target::AtMost(raw)
                };
                self.next_step(class, &x, row, target)
            })
            .flatten();
        let audit = (ask.audience == Audience::Auditor).then(|| AuditFacts {
            record_id: Some(id.clone()),
            consent: Some(ask.consent.as_str().to_owned()),
            storage: storage_facts(ask.consent, ask.audited),
        });
        // A customer reads each group as one reason.
        let grouped = (ask.audience == Audience::Customer && !self.groups.is_empty()).then(|| {
            let mut features = self.features.clone();
            let mut values = row.to_vec();
            let mut contributions = attribution.values.clone();
            group_for_customer(
                ask.config,
                &self.names,
                &mut features,
                &mut values,
                &mut contributions,
            );
            (features, values, contributions)
        });
        let (features, values, contributions) = match &grouped {
            Some((f, v, c)) => (f.as_slice(), v.as_slice(), c.as_slice()),
            None => (self.features.as_slice(), row, attribution.values.as_slice()),
        };
        let input = Input {
            features,
            values,
            contributions,
            space: if kind.is_probability() {
                Space::Logit
            } else {
                Space::Output
            },
            base_value: attribution.base_value,
            prediction,
            surrogate_prediction,
            local_error,
            r2: self.record.r2,
            surrogate_version: self.record.version,
            decision: &decision,
            next_step: next_step.as_ref(),
            audit: audit.as_ref(),
            overrides: ask.overrides,
            fidelity: policy,
        };
        let narration = narrate_row(ask.config, ask.narrator, &input, ask.audience, ask.locale);

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
        let group_contributions: Vec<GroupContribution> = self
            .groups
            .iter()
            .map(|g| GroupContribution {
                group: g.name.clone(),
                features: g.members.iter().map(|&i| self.names[i].clone()).collect(),
                contribution: g.members.iter().map(|&i| attribution.values[i]).sum(),
            })
            .collect();
        let reason_codes =
            if favourable || narration.withheld_reason.is_some() || ask.config.ranking.is_some() {
                Vec::new()
            } else {
                reason_codes(
                    &self.reasons,
                    &attribution.values,
                    rule.higher_is_favourable,
                    ask.narrator,
                    &narration.locale,
                )
            };
        let mut groups = Vec::new();
        if ask.audience == Audience::Customer {
            attributions = for_customer(attributions, &ask.config.features, &group_contributions);
        } else {
            attributions.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
            groups = group_contributions;
        }
        Ok(RowExplanation {
            id,
            surrogate_version: self.record.version,
            output: class,
            base_value: attribution.base_value,
            surrogate_value: attribution.prediction,
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
            groups,
            text: narration.text,
            next_step: narration.next_step,
            caveat: narration.caveat,
            locale: narration.locale.to_string(),
            withheld_reason: narration.withheld_reason,
            reason_codes,
            schema_contributions: attribution.values,
            threshold,
            next_step_skipped: due && !in_budget,
            item: None,
        })
    }

    /// The smallest change of actionable, customer-visible features (within their
    /// bounds) that moves the surrogate's output for `class` into `target`, decoded back
    /// to the row's values; `None` when nothing may move or the search fails.
    pub fn next_step(
        &self,
        class: usize,
        x: &[f64],
        row: &[Value],
        target: Target,
    ) -> Option<NextStep> {
        if self.constraints.iter().all(|c| *c == Constraint::Fixed) {
            return None;
        }
        let ensemble = self.surrogate.ensembles().get(class)?;
        let index = self.split_indexes.get(class)?;
        let query = Query {
            target,
            constraints: self.constraints.clone(),
            scales: self.scales.clone(),
            max_changes: MAX_CHANGES,
            beam_width: BEAM_WIDTH,
        };
        let found = counterfactual_indexed(ensemble, index, x, &query).ok()?;
        let mut changes = Vec::with_capacity(found.changes.len());
        for change in &found.changes {
            let info = self.features.get(change.feature)?;
            let from = match info.kind {
                FeatureKind::Numeric => Value::Number(change.from),
                _ => row.get(change.feature)?.clone(),
            };
            changes.push(StepChange {
                feature: change.feature,
                from,
                to: self.decode(change.feature, change.to)?,
            });
        }
        Some(NextStep {
            changes,
            reaches_target: found.reached,
        })
    }

    /// An encoded value back as the value a client would send.
    fn decode(&self, feature: usize, code: f64) -> Option<Value> {
        match self.features.get(feature)?.kind {
            FeatureKind::Numeric => Some(Value::Number(code)),
            FeatureKind::Boolean => Some(Value::Bool(code >= 0.5)),
            // A pseudonym names no level a client could send.
            FeatureKind::Categorical if self.mask.as_ref().is_some_and(|m| m.masks(feature)) => {
                None
            }
            FeatureKind::Categorical => {
                let levels = self.surrogate.encoder().levels(feature)?;
                let index = usize::try_from(code as i64).ok()?;
                levels.levels().get(index).cloned().map(Value::Text)
            }
        }
    }
}

/// The text `audience` reads about one row of a record's stored attributions (the
/// shape `record_attributions` writes: values, contributions, base value, prediction,
/// threshold, fidelity), written again with the route's words. The console shows a
/// reviewer both the customer's and the developer's text whatever the caller was shown.
/// The feature words come from `model` (the surrogate in service) where it knows the
/// feature, else from the route's config. `None` when the row lacks what narration
/// needs.
pub fn narrate_stored(
    row: &serde_json::Value,
    model: Option<&LiveModel>,
    config: &ExplainConfig,
    narrator: &Narrator,
    overrides: &RouteOverrides,
    audience: Audience,
    locale: &Locale,
) -> Option<sidelight_narrate::Narration> {
    let number = |key: &str| row.get(key).and_then(serde_json::Value::as_f64);
    let entries = row.get("attributions")?.as_array()?;
    let mut features = Vec::with_capacity(entries.len());
    let mut values = Vec::with_capacity(entries.len());
    let mut contributions = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = entry.get("feature")?.as_str()?;
        let value: Value = entry
            .get("value")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or(Value::Missing);
        let known = model.and_then(|m| {
            let i = m.names.iter().position(|n| n == name)?;
            m.features.get(i).cloned()
        });
        let info = known.unwrap_or_else(|| {
            let kind = match &value {
                Value::Bool(_) => FeatureKind::Boolean,
                Value::Text(_) => FeatureKind::Categorical,
                Value::Number(_) | Value::Missing => FeatureKind::Numeric,
            };
            let configured = config.features.iter().find(|f| f.name == name);
            feature_info(name, kind, configured, None)
        });
        features.push(info);
        values.push(value);
        contributions.push(entry.get("contribution")?.as_f64()?);
    }
    if audience == Audience::Customer {
        let names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
        group_for_customer(
            config,
            &names,
            &mut features,
            &mut values,
            &mut contributions,
        );
    }
    let base_value = number("base_value")?;
    let prediction = number("prediction")?;
    let space = if row.get("space").and_then(serde_json::Value::as_str) == Some("logit") {
        Space::Logit
    } else {
        Space::Output
    };
    let rule = &config.decision;
    let threshold = number("threshold")
        .or(rule.threshold)
        .unwrap_or(if space == Space::Logit {
            0.5
        } else {
            base_value
        });
    let decision = decide(rule, prediction, threshold);
    let fidelity = row.get("fidelity");
    let fidelity_number = |key: &str| {
        fidelity
            .and_then(|f| f.get(key))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let input = Input {
        features: &features,
        values: &values,
        contributions: &contributions,
        space,
        base_value,
        prediction,
        surrogate_prediction: number("surrogate_prediction").unwrap_or(f64::NAN),
        local_error: fidelity_number("local_error"),
        r2: fidelity_number("r2"),
        surrogate_version: row
            .get("surrogate_version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        decision: &decision,
        // The next-step search needs the surrogate of that version and the encoded row;
        // the stored text (what the caller saw) has the one that was offered.
        next_step: None,
        audit: None,
        overrides,
        fidelity: FidelityPolicy::default(),
    };
    Some(narrate_row(config, narrator, &input, audience, locale))
}

/// One row's text in the route's kind: a ranking's "recommended because…" (the
/// features not about the customer are about the item), else the decision's.
fn narrate_row(
    config: &ExplainConfig,
    narrator: &Narrator,
    input: &Input<'_>,
    audience: Audience,
    locale: &Locale,
) -> sidelight_narrate::Narration {
    match &config.ranking {
        Some(ranking) => {
            let about_item: Vec<bool> = input
                .features
                .iter()
                .map(|f| !ranking.is_context(&f.name))
                .collect();
            narrator.recommend(input, &about_item, narrator_audience(audience), locale)
        }
        None => narrator.narrate(input, narrator_audience(audience), locale),
    }
}

/// The configured audience as the narrator knows it (two crates, one meaning).
fn narrator_audience(audience: Audience) -> sidelight_narrate::Audience {
    match audience {
        Audience::Customer => sidelight_narrate::Audience::Customer,
        Audience::Developer => sidelight_narrate::Audience::Developer,
        Audience::Auditor => sidelight_narrate::Audience::Auditor,
    }
}

/// The decision for `prediction` against `threshold`, in the route's words.
fn decide(rule: &DecisionConfig, prediction: f64, threshold: f64) -> Decision {
    let favourable = if rule.higher_is_favourable {
        prediction >= threshold
    } else {
        prediction <= threshold
    };
    Decision {
        favourable,
        outcome: if favourable {
            rule.favourable.clone()
        } else {
            rule.unfavourable.clone()
        },
        higher_is_favourable: rule.higher_is_favourable,
    }
}

/// The output (for the explained class) at which the decision turns: configured, or
/// 0.5 for probabilities, or the surrogate's expected output for scores.
fn threshold(rule: &DecisionConfig, kind: &OutputKind, base_value: f64) -> f64 {
    rule.threshold.unwrap_or_else(|| {
        if kind.is_probability() {
            0.5
        } else {
            kind.to_output(base_value)
        }
    })
}

/// Typical values and spread of one schema feature in the training window.
#[derive(Debug, Clone, Copy, Default)]
struct ColumnStats {
    typical: Option<Typical>,
    std: Option<f64>,
    /// Smallest and largest value seen.
    range: Option<(f64, f64)>,
}

/// Per schema feature: quartiles and standard deviation of the numeric columns of
/// `window` (encoded, so text that is a number counts); nothing for other kinds or an
/// empty window. Rows that do not encode are left out.
fn column_stats(surrogate: &Surrogate, window: &[Vec<Value>]) -> Vec<ColumnStats> {
    let features = surrogate.schema().features();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); features.len()];
    for row in window {
        let Ok(x) = surrogate.encode(row) else {
            continue;
        };
        for ((column, feature), v) in columns.iter_mut().zip(features).zip(x) {
            if feature.kind == FeatureKind::Numeric && v.is_finite() {
                column.push(v);
            }
        }
    }
    columns
        .into_iter()
        .map(|mut column| {
            if column.len() < 2 {
                return ColumnStats::default();
            }
            column.sort_by(f64::total_cmp);
            let n = column.len() as f64;
            let mean = column.iter().sum::<f64>() / n;
            let variance = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let std = variance.sqrt();
            ColumnStats {
                typical: Some(Typical {
                    p25: quantile(&column, 0.25),
                    median: quantile(&column, 0.5),
                    p75: quantile(&column, 0.75),
                }),
                std: (std.is_finite() && std > 0.0).then_some(std),
                range: column.first().copied().zip(column.last().copied()),
            }
        })
        .collect()
}

/// The `q` quantile of sorted, non-empty `values`, interpolating between neighbours.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len().saturating_sub(1);
    let position = q * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let weight = position - below as f64;
    let (Some(lo), Some(hi)) = (sorted.get(below), sorted.get(above)) else {
        return f64::NAN;
    };
    lo + (hi - lo) * weight
}

/// The narrator's view of one schema feature. A feature the config does not list is
/// never named to a customer: nothing says whether it is protected.
fn feature_info(
    name: &str,
    kind: FeatureKind,
    configured: Option<&FeatureConfig>,
    typical: Option<Typical>,
) -> FeatureInfo {
    let mut info = FeatureInfo::new(name, kind);
    let Some(c) = configured else {
        info.customer_visible = false;
        return info;
    };
    // A ranking route's `context.budget` is "budget" to a reader until worded otherwise.
    info.display_name = c.display_name.clone().or_else(|| {
        name.strip_prefix(sidelight_protocol::CONTEXT_PREFIX)
            .or_else(|| name.strip_prefix(sidelight_protocol::ITEM_PREFIX))
            .map(|short| short.replace('_', " "))
    });
    info.unit = c.unit.clone();
    info.format = match c.kind {
        FeatureKindConfig::Categorical => ValueFormat::Category,
        FeatureKindConfig::Numeric | FeatureKindConfig::Boolean => {
            ValueFormat::from_unit(c.unit.as_deref())
        }
    };
    info.levels = c.levels.clone();
    info.protected = c.protected;
    info.customer_visible = c.customer_visible;
    info.actionable = c.actionable;
    info.min = c.min;
    info.max = c.max;
    info.typical = typical.filter(|_| kind == FeatureKind::Numeric);
    info
}

/// What the next-step search may do with feature `index`.
fn constraint(surrogate: &Surrogate, index: usize, info: &FeatureInfo) -> Constraint {
    // Suggesting a change the customer could not be shown, or could not make, is
    // pointless: such features stay as they are.
    if !(info.actionable && info.shown_to_customer()) {
        return Constraint::Fixed;
    }
    match info.kind {
        FeatureKind::Numeric => match (info.min, info.max) {
            (Some(min), Some(max)) if min.is_finite() && max.is_finite() && min <= max => {
                Constraint::Numeric {
                    min,
                    max,
                    step: None,
                }
            }
            // Without both bounds there is no range the business has vouched for.
            _ => Constraint::Fixed,
        },
        FeatureKind::Boolean => Constraint::Levels(vec![0.0, 1.0]),
        FeatureKind::Categorical => {
            let codes: Vec<f64> = surrogate
                .encoder()
                .levels(index)
                .map(|levels| {
                    levels
                        .levels()
                        .iter()
                        .enumerate()
                        .filter(|(_, level)| info.levels.is_empty() || info.levels.contains(level))
                        .map(|(code, _)| code as f64)
                        .collect()
                })
                .unwrap_or_default();
            if codes.is_empty() {
                Constraint::Fixed
            } else {
                Constraint::Levels(codes)
            }
        }
    }
}

/// The search's unit of change for one feature: the window's standard deviation, else a
/// quarter of the configured range, else 1.
fn scale(info: &FeatureInfo, std: Option<f64>) -> f64 {
    if let Some(std) = std {
        return std;
    }
    match (info.min, info.max) {
        (Some(min), Some(max)) if max > min && (max - min).is_finite() => (max - min) / 4.0,
        _ => 1.0,
    }
}

/// The name under which a customer sees the contributions of features they may not see.
const OTHER_FACTORS: &str = "other factors";

/// What a customer may see: only features the business declared visible and not
/// protected, with their values; the rest summed into one "other factors" entry, so the
/// contributions still add up to the prediction.
fn for_customer(
    attributions: Vec<Contribution>,
    features: &[FeatureConfig],
    groups: &[GroupContribution],
) -> Vec<Contribution> {
    let visible = |name: &str| {
        features
            .iter()
            .any(|f| f.name == name && f.customer_visible && !f.protected)
    };
    let in_group = |name: &str| groups.iter().any(|g| g.features.iter().any(|f| f == name));
    let mut hidden = 0.0;
    let mut shown: Vec<Contribution> = Vec::with_capacity(attributions.len());
    for a in attributions {
        if in_group(&a.feature) {
            continue;
        }
        if visible(&a.feature) {
            shown.push(a);
        } else {
            hidden += a.contribution;
        }
    }
    // A group is named only when every member may be: a protected member must not be
    // hinted at through the group it is in.
    for group in groups {
        if group.features.iter().all(|f| visible(f)) {
            shown.push(Contribution {
                feature: group.group.clone(),
                value: Value::Missing,
                contribution: group.contribution,
            });
        } else {
            hidden += group.contribution;
        }
    }
    shown.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
    if hidden != 0.0 {
        shown.push(Contribution {
            feature: OTHER_FACTORS.to_owned(),
            value: Value::Missing,
            contribution: hidden,
        });
    }
    shown
}

#[cfg(test)]
mod tests {
    use linfa::ParamGuard;
    use sidelight_explain::{Feature, GbtParams, Schema};

    use super::*;
    use crate::config::{OutputConfig, ProtocolName};

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// A credit-like model: longer and larger loans, a negative balance and youth
    /// (protected, not actionable) lower the probability of approval.
    fn credit_model(duration: f64, amount: f64, age: f64, checking: &str) -> f64 {
        let balance = match checking {
            "negative" => -1.0,
            "low" => 0.0,
            _ => 1.0,
        };
        sigmoid(2.5 - 0.07 * duration - 0.00015 * amount + 0.03 * (age - 35.0) + balance)
    }

    fn rows() -> Vec<(Vec<Value>, f64)> {
        (0..1500)
            .map(|i| {
                let duration = 4.0 + ((i * 37) % 69) as f64;
                let amount = 250.0 + ((i * 7919) % 15000) as f64;
                let age = 19.0 + ((i * 13) % 50) as f64;
                let checking = ["negative", "low", "good"][(i * 7) % 3];
                let p = credit_model(duration, amount, age, checking);
                (
                    vec![
                        Value::Number(duration),
                        Value::Number(amount),
                        Value::Number(age),
                        Value::Text(checking.to_owned()),
                    ],
                    p,
                )
            })
            .collect()
    }

    fn config() -> ExplainConfig {
        let feature = |name: &str, kind| FeatureConfig {
            name: name.to_owned(),
            kind,
            display_name: None,
            unit: None,
            levels: Vec::new(),
            pii: false,
            protected: false,
            customer_visible: true,
            actionable: false,
            min: None,
            max: None,
        };
        let actionable = |mut f: FeatureConfig, min, max| {
            f.actionable = true;
            f.min = Some(min);
            f.max = Some(max);
            f
        };
        let mut age = feature("age", FeatureKindConfig::Numeric);
        age.protected = true;
        age.customer_visible = false;
        // Actionable but protected: the search must never move it.
        age.actionable = true;
        age.min = Some(18.0);
        age.max = Some(90.0);
        ExplainConfig {
            protocol: ProtocolName::KserveV1,
            rows_pointer: None,
            outputs_pointer: None,
            attach: crate::config::AttachMode::Field,
            audience: Audience::Customer,
            audiences: Vec::new(),
            references: None,
            limits: Default::default(),
            output: OutputConfig::Probability,
            explain_class: None,
            features: vec![
                actionable(feature("duration", FeatureKindConfig::Numeric), 6.0, 60.0),
                actionable(
                    feature("amount", FeatureKindConfig::Numeric),
                    500.0,
                    15000.0,
                ),
                age,
                feature("checking", FeatureKindConfig::Categorical),
            ],
            decision: DecisionConfig::default(),
            wording: Default::default(),
            distill: Default::default(),
            groups: Vec::new(),
            reasons: Vec::new(),
            ranking: None,
            surrogate: Default::default(),
        }
    }

    /// An unfavourable decision's reason codes: each reason's features summed (a group
    /// through its members), turned towards "against" by the decision's direction,
    /// only those that counted against it, most first, at most four; a statement from
    /// the narration in the customer's language, else the config's.
    #[test]
    fn reason_codes_rank_what_counted_against_the_decision() {
        let names: Vec<String> = ["a", "b", "c", "d", "e", "f"].map(str::to_owned).to_vec();
        let reason = |code: &str, features: &[&str], statement: Option<&str>| {
            sidelight_config::ReasonConfig {
                code: code.to_owned(),
                features: features.iter().map(|f| (*f).to_owned()).collect(),
                statement: statement.map(str::to_owned),
            }
        };
        let mut config = config();
        config.groups = vec![crate::config::GroupConfig {
            name: "de".to_owned(),
            features: vec!["d".to_owned(), "e".to_owned()],
        }];
        config.reasons = vec![
            reason("A", &["a"], Some("Reason a")),
            reason("B", &["b"], Some("Reason b")),
            reason("C", &["c"], None),
            reason("DE", &["de"], Some("Reason d and e")),
            reason("F", &["f"], Some("Reason f")),
            reason("AB", &["a", "b"], Some("Reasons a and b")),
        ];
        let narrator = Narrator::builtin()
            .unwrap()
            .with_overrides(vec![
                sidelight_narrate::FtlSource::new("en", "en.ftl", "custom-reason-C = Reason c\n"),
                sidelight_narrate::FtlSource::new("de", "de.ftl", "custom-reason-C = Grund c\n"),
            ])
            .unwrap();
        // Higher is favourable: negative contributions count against.
        let contributions = [-0.5, 0.2, -0.1, -0.3, -0.25, -0.05];
        let english = Locale::english();
        let resolved = reasons(&config, &names);
        let codes = reason_codes(&resolved, &contributions, true, &narrator, &english);
        let listed: Vec<(&str, f64)> = codes.iter().map(|c| (c.code.as_str(), c.weight)).collect();
        assert_eq!(listed.len(), 4, "{listed:?}");
        assert_eq!(listed[0].0, "DE");
        assert!((listed[0].1 - 0.55).abs() < 1e-12);
        assert_eq!(listed[1].0, "A");
        assert_eq!(listed[2].0, "AB");
        assert!((listed[2].1 - 0.3).abs() < 1e-12);
        assert_eq!(listed[3].0, "C");
        assert!(
            codes.iter().all(|c| c.code != "B"),
            "b counted for the decision"
        );
        assert_eq!(codes[3].statement, "Reason c");
        assert_eq!(codes[1].statement, "Reason a");
        let german = Locale::parse("de").unwrap();
        let codes = reason_codes(&resolved, &contributions, true, &narrator, &german);
        assert_eq!(codes[3].statement, "Grund c");
        // Lower is favourable: the other way round.
        let codes = reason_codes(&resolved, &contributions, false, &narrator, &english);
        assert_eq!(
            codes.iter().map(|c| c.code.as_str()).collect::<Vec<_>>(),
            ["B"]
        );
    }

    fn trained() -> LiveModel {
        let data = rows();
        let (rows, outputs): (Vec<Vec<Value>>, Vec<f64>) = data.into_iter().unzip();
        let schema = Schema::new(vec![
            Feature::new("duration", FeatureKind::Numeric),
            Feature::new("amount", FeatureKind::Numeric),
            Feature::new("age", FeatureKind::Numeric),
            Feature::new("checking", FeatureKind::Categorical),
        ])
        .unwrap();
        let params = GbtParams::default()
            .n_trees(100)
            .max_depth(6)
            .learning_rate(0.1)
            .seed(1)
            .check()
            .unwrap();
        let surrogate = Surrogate::fit(
            schema,
            &rows,
            &outputs,
            OutputKind::BinaryProbability,
            &params,
        )
        .unwrap();
        let record = VersionRecord {
            version: 1,
            trained_at: 0,
            rows: rows.len(),
            r2: 0.95,
            mae: 0.0,
            agreement: None,
            accepted: true,
            reason: String::new(),
            gate: None,
            faithfulness: None,
            retired: None,
        };
        LiveModel::new(surrogate, record, &config(), &rows).unwrap()
    }

    #[test]
    fn next_steps_reach_the_target_on_the_surrogate_within_bounds() {
        let model = trained();
        let typical = model.features[0].typical.unwrap();
        assert!(typical.p25 < typical.median && typical.median < typical.p75);
        assert!(model.features[3].typical.is_none());
        assert_eq!(
            model.constraints[2],
            Constraint::Fixed,
            "protected age moved"
        );
        assert_eq!(model.constraints[3], Constraint::Fixed, "not actionable");

        let target = Target::AtLeast(0.0);
        let mut searched = 0;
        let mut reached = 0;
        let started = std::time::Instant::now();
        for (row, _) in rows().into_iter().take(600) {
            let x = model.surrogate.encode(&row).unwrap();
            if model.surrogate.predict_raw_encoded(&x)[0] >= 0.0 {
                continue;
            }
            searched += 1;
            let Some(step) = model.next_step(0, &x, &row, target) else {
                continue;
            };
            if !step.reaches_target {
                continue;
            }
            reached += 1;
            assert!(!step.changes.is_empty() && step.changes.len() <= MAX_CHANGES);
            let mut changed = row.clone();
            for change in &step.changes {
                assert!(change.feature < 2, "moved feature {}", change.feature);
                let Value::Number(to) = change.to else {
                    panic!("not a number: {:?}", change.to);
                };
                let (min, max) = if change.feature == 0 {
                    (6.0, 60.0)
                } else {
                    (500.0, 15000.0)
                };
                assert!((min..=max).contains(&to), "{to} outside [{min}, {max}]");
                changed[change.feature] = change.to.clone();
            }
            let raw = model.surrogate.predict_raw(&changed).unwrap()[0];
            assert!(
                target.reached(raw),
                "the step does not reach the target: {raw}"
            );
        }
        let per_search = started.elapsed() / searched.max(1);
        eprintln!("{searched} searches, {reached} reached; {per_search:?} per search");
        assert!(
            searched > 50 && reached * 2 > searched,
            "{reached}/{searched}"
        );
    }

    /// Groups: a developer gets each group's sum beside the features; a customer reads
    /// the group instead of its members, and a group with a protected member only as
    /// "other factors". Nothing is lost: the customer's entries still add up.
    #[test]
    fn customers_read_groups_and_developers_get_both() {
        let plain = trained();
        let mut config = config();
        config.groups = vec![
            crate::config::GroupConfig {
                name: "loan".to_owned(),
                features: vec!["duration".to_owned(), "amount".to_owned()],
            },
            crate::config::GroupConfig {
                name: "profile".to_owned(),
                features: vec!["age".to_owned(), "checking".to_owned()],
            },
        ];
        let data = rows();
        let window: Vec<Vec<Value>> = data.iter().map(|(r, _)| r.clone()).collect();
        let model = LiveModel::new(
            plain.surrogate.clone(),
            plain.record.clone(),
            &config,
            &window,
        )
        .unwrap();
        let narrator = Narrator::builtin().unwrap();
        let overrides = RouteOverrides::default();
        let locale = Locale::english();
        let ask = |audience| Narrate {
            audience,
            locale: &locale,
            narrator: &narrator,
            overrides: &overrides,
            config: &config,
            consent: sidelight_audit::Consent::Full,
            audited: false,
            next_steps_until: None,
        };
        for (row, output) in data.into_iter().step_by(131).take(6) {
            let dev = model
                .explain("r".into(), &row, &[output], &ask(Audience::Developer))
                .unwrap();
            let phi = &dev.schema_contributions;
            assert_eq!(dev.attributions.len(), 4);
            assert_eq!(dev.groups.len(), 2);
            assert_eq!(dev.groups[0].features, ["duration", "amount"]);
            assert!((dev.groups[0].contribution - (phi[0] + phi[1])).abs() < 1e-12);
            assert!((dev.groups[1].contribution - (phi[2] + phi[3])).abs() < 1e-12);

            let customer = model
                .explain("r".into(), &row, &[output], &ask(Audience::Customer))
                .unwrap();
            assert!(customer.groups.is_empty());
            let names: Vec<&str> = customer
                .attributions
                .iter()
                .map(|a| a.feature.as_str())
                .collect();
            assert_eq!(names, ["loan", OTHER_FACTORS], "{names:?}");
            let total: f64 = customer.attributions.iter().map(|a| a.contribution).sum();
            assert!((total - phi.iter().sum::<f64>()).abs() < 1e-9);
            let text = customer.text.unwrap_or_default();
            assert!(
                !text.contains("duration") && !text.contains("amount") && !text.contains("age"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_spent_next_step_budget_skips_the_search_and_says_so() {
        let model = trained();
        let narrator = Narrator::builtin().unwrap();
        let overrides = RouteOverrides::default();
        let config = config();
        let locale = Locale::english();
        let explain_all = |until| {
            let ask = Narrate {
                audience: Audience::Customer,
                locale: &locale,
                narrator: &narrator,
                overrides: &overrides,
                config: &config,
                consent: sidelight_audit::Consent::Full,
                audited: false,
                next_steps_until: until,
            };
            rows()
                .into_iter()
                .take(300)
                .map(|(row, output)| model.explain("r".into(), &row, &[output], &ask).unwrap())
                .collect::<Vec<_>>()
        };
        let unlimited = explain_all(None);
        assert!(unlimited.iter().any(|e| e.next_step.is_some()));
        assert!(unlimited.iter().all(|e| !e.next_step_skipped));
        let spent = explain_all(Some(std::time::Instant::now()));
        assert!(spent.iter().all(|e| e.next_step.is_none()));
        let due = unlimited.iter().filter(|e| e.next_step.is_some()).count();
        let skipped = spent.iter().filter(|e| e.next_step_skipped).count();
        assert!(
            skipped >= due,
            "{skipped} skipped, {due} found without a budget"
        );
    }

    /// The console writes texts again from a record's stored attributions: they must
    /// read as the ones written when the request was explained.
    #[test]
    fn stored_attributions_narrate_as_the_live_explanation() {
        let model = trained();
        let narrator = Narrator::builtin().unwrap();
        let overrides = RouteOverrides::default();
        let config = config();
        let locale = Locale::english();
        for (row, output) in rows().into_iter().step_by(97).take(8) {
            for audience in [Audience::Developer, Audience::Customer] {
                let ask = Narrate {
                    audience,
                    locale: &locale,
                    narrator: &narrator,
                    overrides: &overrides,
                    config: &config,
                    consent: sidelight_audit::Consent::Full,
                    audited: true,
                    next_steps_until: None,
                };
                let live = model
                    .explain("r".to_owned(), &row, &[output], &ask)
                    .unwrap();
                // The shape the audit record keeps (see `layer::record_attributions`).
                let attributions: Vec<serde_json::Value> = model
                    .names()
                    .iter()
                    .zip(&row)
                    .zip(&live.schema_contributions)
                    .map(|((feature, value), c)| {
                        serde_json::json!({ "feature": feature, "value": value, "contribution": c })
                    })
                    .collect();
                let stored = serde_json::json!({
                    "surrogate_version": live.surrogate_version,
                    "space": live.space,
                    "base_value": live.base_value,
                    "prediction": live.prediction,
                    "surrogate_prediction": live.surrogate_prediction,
                    "threshold": live.threshold,
                    "fidelity": live.fidelity,
                    "attributions": attributions,
                });
                let again = narrate_stored(
                    &stored,
                    Some(&model),
                    &config,
                    &narrator,
                    &overrides,
                    audience,
                    &locale,
                )
                .unwrap();
                assert_eq!(again.text, live.text, "{audience:?}");
                // Without the surrogate (retired since), the route's words still serve.
                let without = narrate_stored(
                    &stored, None, &config, &narrator, &overrides, audience, &locale,
                )
                .unwrap();
                assert_eq!(without.text.is_some(), live.text.is_some());
            }
        }
        assert!(
            narrate_stored(
                &serde_json::json!({ "attributions": [] }),
                None,
                &config,
                &narrator,
                &overrides,
                Audience::Developer,
                &locale
            )
            .is_none(),
            "no base value, no text"
        );
    }

    #[test]
    fn categorical_steps_decode_to_levels() {
        let mut config = config();
        config.features[3].actionable = true;
        let data = rows();
        let model = trained();
        let model = LiveModel::new(
            model.surrogate,
            model.record,
            &config,
            &data.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
        )
        .unwrap();
        let Constraint::Levels(codes) = &model.constraints[3] else {
            panic!("{:?}", model.constraints[3]);
        };
        assert_eq!(codes.len(), 3);
        for code in codes {
            let Some(Value::Text(level)) = model.decode(3, *code) else {
                panic!("code {code} does not decode");
            };
            assert!(["negative", "low", "good"].contains(&level.as_str()));
        }
        assert_eq!(model.decode(3, 7.0), None);
    }
}

/// Why a row could not be explained (the request is served unexplained).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The surrogate's trees cannot be prepared for TreeSHAP.
    #[error("cannot prepare TreeSHAP: {0}")]
    Prepare(sidelight_explain::shap::ShapError),
    /// The model gave an output the surrogate has no trees for.
    #[error("the surrogate has no output {0}")]
    NoOutput(usize),
    /// The row does not fit the surrogate's schema.
    #[error(transparent)]
    Encode(#[from] sidelight_explain::EncodeError),
    /// TreeSHAP refused the row.
    #[error(transparent)]
    Shap(sidelight_explain::shap::ShapError),
    /// TreeSHAP's working memory is in use on this thread (a re-entrant call).
    #[error("TreeSHAP's scratch space is in use on this thread")]
    ScratchBusy,
}

thread_local! {
    /// TreeSHAP's working memory, kept per worker thread so that explaining a row
    /// allocates nothing but its result.
    static SCRATCH: std::cell::RefCell<sidelight_explain::shap::Scratch> =
        std::cell::RefCell::new(sidelight_explain::shap::Scratch::default());
}

fn explain_reusing_scratch(
    explainer: &TreeExplainer,
    x: &[f64],
) -> Result<sidelight_explain::Attribution, ExplainError> {
    let mut values = vec![0.0; explainer.n_features()];
    SCRATCH.with(|scratch| {
        let mut scratch = scratch
            .try_borrow_mut()
            .map_err(|_| ExplainError::ScratchBusy)?;
        explainer
            .explain_into(x, &mut scratch, &mut values)
            .map_err(ExplainError::Shap)
    })?;
    // Local accuracy: the base value and the attributions add up to the surrogate's
    // output (to rounding, some 1e-15), which spares a second walk of every tree.
    let prediction = explainer.base_value() + values.iter().sum::<f64>();
    Ok(sidelight_explain::Attribution {
        base_value: explainer.base_value(),
        values,
        prediction,
    })
}
