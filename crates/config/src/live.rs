//! Configuration of live explanations: per route, which protocol the model speaks, how
//! explanations are attached, the feature schema, and the surrogate's lifecycle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where Sidelight keeps what must survive a restart (trained surrogates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// A directory, created if missing. Relative paths are taken from the working
    /// directory.
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("sidelight-state"),
        }
    }
}

/// The wording of explanations that a business edits without recompiling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NarrationConfig {
    /// A directory of `<locale>/*.ftl` files (`en/credit.ftl`, `de/credit.ftl`), read at
    /// start-up and laid over the built-in English and German wording. Absent: only the
    /// built-in wording.
    pub dir: Option<PathBuf>,
}

/// How a route's prediction becomes a decision, in the route's own words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionConfig {
    /// The route's word for the favourable outcome ("approved").
    #[serde(default)]
    pub favourable: Option<String>,
    /// The route's word for the unfavourable outcome ("declined").
    #[serde(default)]
    pub unfavourable: Option<String>,
    /// Whether a higher model output is better for the person (a probability of good
    /// credit: yes; a default risk: no).
    #[serde(default = "yes")]
    pub higher_is_favourable: bool,
    /// The model output (for the explained class) at which the decision turns
    /// favourable. Default: 0.5 for probabilities; for scores, the surrogate's expected
    /// output (its base value).
    #[serde(default)]
    pub threshold: Option<f64>,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            favourable: None,
            unfavourable: None,
            higher_is_favourable: true,
            threshold: None,
        }
    }
}

/// A route's own sentences for customers. Each value is either the id of a `custom-…`
/// message in the narration files (one per language) or a literal Fluent pattern, used
/// for every language.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WordingConfig {
    /// Replaces the decision sentence; may use `$favourable` (yes | no),
    /// `$has_outcome` (yes | no) and `$outcome`.
    pub decision: Option<String>,
    /// Feature name -> replaces that feature's reason sentence; may use `$your`,
    /// `$feature`, `$comparison` (higher | lower | typical | none), `$more`, `$less` and
    /// `$effect` (for | against).
    pub features: BTreeMap<String, String>,
}

/// The wire format of a route's model API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolName {
    /// KServe v1: `instances` in, `predictions` out.
    KserveV1,
    /// Open Inference Protocol v2 (KServe v2, Triton, MLServer).
    OpenInferenceV2,
    /// The MLflow scoring server.
    Mlflow,
    /// Any JSON, with rows and outputs located by `rows_pointer` and `outputs_pointer`.
    Pointer,
    /// A recommendation API: the customer's context once and a list of candidates in,
    /// scores or a ranked list out, located by `[routes.explain.ranking]`.
    Ranking,
}

/// How an explanation reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// An `"explanations"` array added as the last member of the JSON response.
    Field,
    /// A compact summary in the `x-sidelight-explanation` header.
    Header,
    /// An id in `x-sidelight-explanation-id`, to fetch from `GET /v1/explanations/{id}`.
    Reference,
    /// Nothing attached (the surrogate still learns from the traffic).
    Off,
}

impl AttachMode {
    /// Parses the value of the `x-sidelight-explain` request header.
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "field" => Some(Self::Field),
            "header" => Some(Self::Header),
            "reference" => Some(Self::Reference),
            "off" | "none" => Some(Self::Off),
            _ => None,
        }
    }
}

/// Who reads the explanation's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The person the prediction is about: no figures, no protected or hidden features.
    Customer,
    /// Whoever debugs the model: every attribution.
    Developer,
    /// The developer view plus the consent and storage facts of the record.
    Auditor,
}

impl Audience {
    /// The name used in the config and in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Developer => "developer",
            Self::Auditor => "auditor",
        }
    }

    /// Parses the value of the `x-sidelight-audience` request header.
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "customer" => Some(Self::Customer),
            "developer" => Some(Self::Developer),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }
}

/// What the model's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputConfig {
    /// Decide from the first rows: one value per row in [0, 1] is a probability, several
    /// values per row are class probabilities, anything else a score.
    Auto,
    /// A real-valued score, explained as is.
    Score,
    /// Probabilities (one per row, or one per class); explained in logit space.
    Probability,
}

/// The kind of a configured feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKindConfig {
    /// A number.
    Numeric,
    /// true / false.
    Boolean,
    /// One of a set of text levels.
    Categorical,
}

/// One feature of a route's schema. Only `name` and `kind` drive the surrogate; the
/// rest tells later stages how to word, protect and act on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// The name in the payload (object key, v2 input name or column).
    pub name: String,
    /// numeric, boolean or categorical.
    pub kind: FeatureKindConfig,
    /// What people call it ("loan duration").
    #[serde(default)]
    pub display_name: Option<String>,
    /// The unit of a numeric feature ("months", "DM").
    #[serde(default)]
    pub unit: Option<String>,
    /// The known levels of a categorical feature, in a meaningful order.
    #[serde(default)]
    pub levels: Vec<String>,
    /// Personal data: subject to the privacy policy of the audit log.
    #[serde(default)]
    pub pii: bool,
    /// A protected attribute: never named to a customer, watched for fairness.
    #[serde(default)]
    pub protected: bool,
    /// Whether a customer may see this feature named in their explanation.
    #[serde(default = "yes")]
    pub customer_visible: bool,
    /// Whether the person could change it (a counterfactual may suggest it).
    #[serde(default)]
    pub actionable: bool,
    /// Lower bound of an actionable numeric feature.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper bound of an actionable numeric feature.
    #[serde(default)]
    pub max: Option<f64>,
}

fn yes() -> bool {
    true
}

/// When and how the route's surrogate is (re)trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurrogateConfig {
    /// No explanation until this many rows have been seen; responses say how far along.
    pub warm_up_rows: usize,
    /// The training window: the most recent rows kept for training…
    pub window_rows: usize,
    /// …and at most this many bytes of them (text values weigh their length).
    pub window_bytes: usize,
    /// Retrain after this many new rows…
    pub retrain_every_rows: usize,
    /// …or this long after the last training, if any new row arrived.
    #[serde(with = "humantime_serde")]
    pub retrain_interval: Duration,
    /// The fidelity gate: a new surrogate replaces the current one only if its R² on
    /// held-out traffic reaches this.
    pub min_r2: f64,
    /// Share of distinct rows held out to measure fidelity: picked by content, so a row
    /// keeps its side, and never trained on (replayed traffic cannot inflate R²).
    pub holdout_fraction: f64,
    /// No version is judged on fewer held-out rows than this; the trainer waits for
    /// more distinct traffic instead.
    pub min_holdout_rows: usize,
    /// The gate compares the lower bound of held-out R² at this confidence (bootstrap)
    /// with `min_r2`; 0 compares the point estimate.
    pub gate_confidence: f64,
    /// Choose depth and learning rate by validation among the configured ones and two
    /// neighbours (three fits and a refit per training, within `cpu_share`).
    pub tune: bool,
    /// Trees per ensemble.
    pub trees: usize,
    /// Depth of each tree.
    pub depth: usize,
    /// Boosting learning rate.
    pub learning_rate: f64,
    /// Largest share of one CPU that training may use, in (0, 1]; the trainer pauses
    /// between trees to keep to it, so request latency holds while it works.
    pub cpu_share: f64,
    /// A surrogate file (from `sidelight surrogate fit`) to start from when no trained
    /// surrogate is in the state directory yet.
    pub seed_model: Option<PathBuf>,
}

impl Default for SurrogateConfig {
    fn default() -> Self {
        Self {
            warm_up_rows: 200,
            window_rows: 5000,
            window_bytes: 64 * 1024 * 1024,
            retrain_every_rows: 1000,
            retrain_interval: Duration::from_secs(600),
            min_r2: 0.8,
            holdout_fraction: 0.2,
            min_holdout_rows: 30,
            gate_confidence: 0.9,
            tune: true,
            trees: 100,
            depth: 6,
            learning_rate: 0.1,
            cpu_share: 0.5,
            seed_model: None,
        }
    }
}

/// Live explanations for one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainConfig {
    /// The model API's wire format.
    pub protocol: ProtocolName,
    /// With `protocol = "pointer"`: a JSON Pointer to the rows (an array, or one object).
    #[serde(default)]
    pub rows_pointer: Option<String>,
    /// With `protocol = "pointer"`: a JSON Pointer to the outputs.
    #[serde(default)]
    pub outputs_pointer: Option<String>,
    /// How explanations are attached unless the request asks otherwise.
    #[serde(default = "default_attach")]
    pub attach: AttachMode,
    /// Whose words the text is in unless the request asks otherwise.
    #[serde(default = "default_audience")]
    pub audience: Audience,
    /// The other audiences a client may ask for with `x-sidelight-audience`; developer
    /// and auditor also need a trusted client (`[server.trust]`). A request for any
    /// other is served `audience`, and the response's `x-sidelight-audience` says it was
    /// downgraded. Empty: only `audience`.
    #[serde(default)]
    pub audiences: Vec<Audience>,
    /// Whether explanations may be kept for `GET /v1/explanations/{ref}` (by `attach` or
    /// a request's `x-sidelight-explain: reference`). Default: only when `attach` is
    /// `reference`; otherwise a request for it is served `field`.
    #[serde(default)]
    pub references: Option<bool>,
    /// What one request may cost.
    #[serde(default)]
    pub limits: ExplainLimits,
    /// What the model outputs.
    #[serde(default = "default_output")]
    pub output: OutputConfig,
    /// With one probability per class: the class (index) to explain; by default the
    /// predicted one.
    #[serde(default)]
    pub explain_class: Option<usize>,
    /// The features; inferred from traffic when empty.
    #[serde(default)]
    pub features: Vec<FeatureConfig>,
    /// How the prediction becomes a decision, and its words.
    #[serde(default)]
    pub decision: DecisionConfig,
    /// The route's own sentences.
    #[serde(default)]
    pub wording: WordingConfig,
    /// The surrogate's lifecycle.
    #[serde(default)]
    pub surrogate: SurrogateConfig,
    /// Active distillation: asking the model about synthetic rows (opt-in).
    #[serde(default)]
    pub distill: DistillConfig,
    /// Features people read together (customers read the group).
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// The principal reasons an unfavourable decision can give, each a stable code
    /// (`[[routes.explain.reasons]]`): the form adverse-action notices use.
    #[serde(default)]
    pub reasons: Vec<ReasonConfig>,
    /// A ranking route (`[routes.explain.ranking]`): the rows are candidates for one
    /// customer, and only the top `top_k` shown are explained.
    #[serde(default)]
    pub ranking: Option<RankingConfig>,
}

/// A ranking route: a recommendation API's candidates, each explained row the
/// customer's context joined to one candidate item, and only the items shown (the top
/// `top_k` by score) explained. With `protocol = "ranking"` the request keeps the
/// context once (`context`) and the candidates as a list (`candidates`), and the answer
/// gives scores in request order (`scores`) or a ranked list of `{id, score}` matched
/// to the candidates by id (`ranked`). With another protocol every row of the batch is
/// one candidate, the answer one score per row, and `context_features` says which
/// columns are about the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingConfig {
    /// Items explained per request: the `top_k` highest scores (the rest pass, and are
    /// still learned from).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// `protocol = "ranking"`: a JSON Pointer to the object of features every
    /// candidate shares (the customer, the session).
    #[serde(default)]
    pub context: Option<String>,
    /// `protocol = "ranking"`: a JSON Pointer to the list of candidates.
    #[serde(default)]
    pub candidates: Option<String>,
    /// The member of each candidate that holds its id (not a feature).
    #[serde(default)]
    pub id_field: Option<String>,
    /// `protocol = "ranking"`: a JSON Pointer to the scores, one per candidate in
    /// request order.
    #[serde(default)]
    pub scores: Option<String>,
    /// `protocol = "ranking"`: a JSON Pointer to a ranked list of objects, each naming
    /// its candidate by `ranked_id` and its score by `ranked_score`.
    #[serde(default)]
    pub ranked: Option<String>,
    /// The member of a ranked entry holding the candidate's id.
    #[serde(default = "default_ranked_id")]
    pub ranked_id: String,
    /// The member of a ranked entry holding its score.
    #[serde(default = "default_ranked_score")]
    pub ranked_score: String,
    /// With a plain batch protocol: the columns that are about the customer (the rest
    /// are about the item). With `protocol = "ranking"` the request's shape says it:
    /// context features are named `context.<name>`, item features `item.<name>`.
    #[serde(default)]
    pub context_features: Vec<String>,
    /// The item feature whose levels group items for exposure fairness (the share of
    /// shown slots each group receives, per protected group of customers).
    #[serde(default)]
    pub item_group: Option<String>,
}

impl Default for RankingConfig {
    fn default() -> Self {
        Self {
            top_k: default_top_k(),
            context: None,
            candidates: None,
            id_field: None,
            scores: None,
            ranked: None,
            ranked_id: default_ranked_id(),
            ranked_score: default_ranked_score(),
            context_features: Vec::new(),
            item_group: None,
        }
    }
}

fn default_top_k() -> usize {
    3
}

fn default_ranked_id() -> String {
    "id".to_owned()
}

fn default_ranked_score() -> String {
    "score".to_owned()
}

impl RankingConfig {
    /// Whether the feature `name` is about the customer (else it is about the item).
    pub fn is_context(&self, name: &str) -> bool {
        name.starts_with(sidelight_protocol::CONTEXT_PREFIX)
            || self.context_features.iter().any(|c| c == name)
    }
}

/// One reason code: the features (or groups) it stands for, never a protected one, and
/// its statement. An unfavourable decision lists the codes whose features counted
/// against it most (at most [`MAX_REASON_CODES`]), each worded by the narration's
/// `custom-reason-<code>` message in the customer's language, else by `statement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonConfig {
    /// A stable code ("R01", "INSUFFICIENT_SAVINGS"): letters, digits, `_` and `-`.
    pub code: String,
    /// The configured features or groups it covers.
    pub features: Vec<String>,
    /// Its statement when the narration has no `custom-reason-<code>` message in a
    /// language ("Insufficient savings").
    #[serde(default)]
    pub statement: Option<String>,
}

/// How many reason codes an unfavourable decision lists at most (Regulation B's
/// adverse-action notices give no more than four principal reasons).
pub const MAX_REASON_CODES: usize = 4;

/// What one request may cost a route's explanation and learning
/// (`[routes.explain.limits]`). Past a limit the model's answer goes on unexplained
/// (or without next steps), with `x-sidelight-status` saying which limit it met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplainLimits {
    /// Rows of one request that are explained; a larger batch is not explained
    /// (`too_many_rows`) nor trained on.
    pub max_rows: usize,
    /// How long explaining one request may take, waiting for the compute pool
    /// included; past it the answer goes on unexplained (`explain_budget_exceeded`).
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
    /// How long the next-step search ("what would change the decision") may take per
    /// request; the rows it did not reach get no next step (`next_steps_skipped`).
    #[serde(with = "humantime_serde")]
    pub next_step_budget: Duration,
    /// Features per row read from a route without configured features; a row with
    /// more is not trained on.
    pub max_features: usize,
    /// Bytes of one text value kept in the training window; longer ones are cut.
    pub max_cell_bytes: usize,
    /// Requests that must agree on the same feature names before a route without
    /// configured features trains on them (one request never decides the columns).
    pub column_agreement: usize,
}

impl Default for ExplainLimits {
    fn default() -> Self {
        Self {
            max_rows: 1000,
            budget: Duration::from_millis(250),
            next_step_budget: Duration::from_millis(50),
            max_features: 512,
            max_cell_bytes: 256,
            column_agreement: 3,
        }
    }
}

/// A named group of correlated features ("family situation": marital status and
/// relationship). Its attribution is the sum of its members' (exact: SHAP values add).
/// Customers read the group as one reason; developers and auditors get both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's name ("family_situation"), worded for people like a feature's: by a
    /// `feature-<name>` message of the narration where there is one, else the name
    /// with underscores as spaces.
    pub name: String,
    /// Its members: configured features, at least two, each in at most one group.
    pub features: Vec<String>,
}

/// Active distillation: Sidelight asks the upstream itself about synthetic rows made
/// from the training window (hybrids of two real rows, and perturbations of recent
/// ones), so that the surrogate learns what the model does where traffic is silent —
/// above all, which of two correlated features it reads. The calls go straight to the
/// upstream marked `x-sidelight-probe: 1`, never through the data port, and are never
/// recorded, monitored or counted as traffic. They are extra load on the model: a model
/// whose calls have side effects (billing, rate limits shared with customers, writes)
/// must not use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// Off unless turned on.
    pub enabled: bool,
    /// Budget: synthetic rows per real row the route has seen.
    pub synthetic_per_real: f64,
    /// Budget: upstream calls per second, at most.
    pub max_calls_per_second: f64,
    /// Rows per call (protocols that take batches; the pointer protocol sends one).
    pub batch_rows: usize,
    /// Synthetic rows kept for training (the newest).
    pub max_rows: usize,
    /// Share of hybrid rows among the synthetic ones (the rest are perturbations),
    /// before the generator adapts to what the model refuses.
    pub hybrid_share: f64,
    /// A call slower than this counts as a sign of load: distillation backs off.
    #[serde(with = "humantime_serde")]
    pub slow_call: Duration,
    /// Longest pause after errors or slow calls.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Rows of each accepted surrogate checked against KernelSHAP on the real model
    /// (the faithfulness figure); 0 turns the check off.
    pub faithfulness_rows: usize,
    /// Upstream calls each of those checks may make.
    pub faithfulness_calls: usize,
    /// At most one check this often: a version accepted sooner after the last check
    /// waits (and one replaced before its turn is never checked).
    #[serde(with = "humantime_serde")]
    pub faithfulness_every: Duration,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            synthetic_per_real: 4.0,
            max_calls_per_second: 5.0,
            batch_rows: 64,
            max_rows: 20_000,
            hybrid_share: 0.5,
            slow_call: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            faithfulness_rows: 3,
            faithfulness_calls: 100,
            faithfulness_every: Duration::from_secs(600),
        }
    }
}

fn default_attach() -> AttachMode {
    AttachMode::Field
}

fn default_audience() -> Audience {
    Audience::Customer
}

fn default_output() -> OutputConfig {
    OutputConfig::Auto
}

impl ExplainConfig {
    /// Whether explanations may be kept by reference.
    pub fn references_allowed(&self) -> bool {
        self.references
            .unwrap_or(self.attach == AttachMode::Reference)
    }

    /// Whether a client may ask for `audience` (trust aside).
    pub fn audience_allowed(&self, audience: Audience) -> bool {
        audience == self.audience || self.audiences.contains(&audience)
    }

    /// Checks `[routes.explain.ranking]` against the protocol.
    fn validate_ranking(&self, key: &str) -> Result<(), (String, String)> {
        let at = |field: &str| format!("{key}.ranking.{field}");
        let Some(r) = &self.ranking else {
            if self.protocol == ProtocolName::Ranking {
                return Err((
                    format!("{key}.ranking"),
                    "is required with protocol = \"ranking\" (context, candidates, and scores or ranked)".into(),
                ));
            }
            return Ok(());
        };
        if r.top_k == 0 || r.top_k > 100 {
            return Err((at("top_k"), "must be between 1 and 100".into()));
        }
        if r.top_k > self.limits.max_rows {
            return Err((at("top_k"), "must be at most limits.max_rows".into()));
        }
        for (field, value) in [
            ("context", &r.context),
            ("candidates", &r.candidates),
            ("scores", &r.scores),
            ("ranked", &r.ranked),
        ] {
            if let Some(p) = value
                .as_ref()
                .filter(|p| !sidelight_protocol::pointer_is_valid(p))
            {
                return Err((
                    at(field),
                    format!(
                        "`{p}` is not a JSON Pointer (RFC 6901: \"\" or /a/b, with ~0 and ~1 escapes)"
                    ),
                ));
            }
        }
        // With configured features, the names the ranking refers to must be among them.
        let configured =
            |name: &str| self.features.is_empty() || self.features.iter().any(|f| f.name == name);
        if let Some(item) = r.item_group.as_deref().filter(|i| !configured(i)) {
            return Err((
                at("item_group"),
                format!("`{item}` is not a configured feature"),
            ));
        }
        if let Some(name) = r.context_features.iter().find(|c| !configured(c)) {
            return Err((
                at("context_features"),
                format!("`{name}` is not a configured feature"),
            ));
        }
        if let Some(item) = r.item_group.as_deref().filter(|i| r.is_context(i)) {
            return Err((
                at("item_group"),
                format!("`{item}` is about the customer; items are grouped by an item feature"),
            ));
        }
        if self.protocol == ProtocolName::Ranking {
            for (field, value) in [("context", &r.context), ("candidates", &r.candidates)] {
                match value.as_deref() {
                    None => {
                        return Err((at(field), "is required with protocol = \"ranking\"".into()));
                    }
                    Some("") => {
                        return Err((
                            at(field),
                            "must point into the body (\"/customer\"), not be the whole of it"
                                .into(),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if let Some((i, f)) = self.features.iter().enumerate().find(|(_, f)| {
                !f.name.starts_with(sidelight_protocol::CONTEXT_PREFIX)
                    && !f.name.starts_with(sidelight_protocol::ITEM_PREFIX)
            }) {
                return Err((
                    format!("{key}.features[{i}].name"),
                    format!(
                        "`{}` is neither context.<name> nor item.<name>: a ranking route's rows name the context's features and the candidates' apart",
                        f.name
                    ),
                ));
            }
            match (&r.scores, &r.ranked) {
                (None, None) => {
                    return Err((
                        at("scores"),
                        "one of scores (a score per candidate, in request order) and ranked (a list of {id, score}) is required with protocol = \"ranking\"".into(),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err((at("ranked"), "give scores or ranked, not both".into()));
                }
                (None, Some(_)) if r.id_field.is_none() => {
                    return Err((
                        at("id_field"),
                        "is required with ranked: the answer names candidates by id".into(),
                    ));
                }
                _ => {}
            }
            if !r.context_features.is_empty() {
                return Err((
                    at("context_features"),
                    "is for plain batch protocols; with protocol = \"ranking\" the context's features are the ones under `context`".into(),
                ));
            }
        } else {
            for (field, given) in [
                ("context", r.context.is_some()),
                ("candidates", r.candidates.is_some()),
                ("id_field", r.id_field.is_some()),
                ("scores", r.scores.is_some()),
                ("ranked", r.ranked.is_some()),
            ] {
                if given {
                    return Err((
                        at(field),
                        "is for protocol = \"ranking\"; with a plain batch protocol each row is one candidate and the answer one score per row".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the values that types cannot; `key` is the config path of this table.
    pub fn validate(&self, key: &str) -> Result<(), (String, String)> {
        let at = |field: &str| format!("{key}.{field}");
        let limits = &self.limits;
        for (field, value) in [
            ("limits.max_rows", limits.max_rows),
            ("limits.max_features", limits.max_features),
            ("limits.max_cell_bytes", limits.max_cell_bytes),
            ("limits.column_agreement", limits.column_agreement),
            ("surrogate.window_bytes", self.surrogate.window_bytes),
        ] {
            if value == 0 {
                return Err((at(field), "must be at least 1".into()));
            }
        }
        if limits.budget.is_zero() {
            return Err((at("limits.budget"), "must be longer than zero".into()));
        }
        if self.protocol == ProtocolName::Pointer {
            for (field, value) in [
                ("rows_pointer", &self.rows_pointer),
                ("outputs_pointer", &self.outputs_pointer),
            ] {
                match value {
                    None => {
                        return Err((at(field), "is required with protocol = \"pointer\"".into()));
                    }
                    Some(p) if !sidelight_protocol::pointer_is_valid(p) => {
                        return Err((
                            at(field),
                            format!(
                                "`{p}` is not a JSON Pointer (RFC 6901: \"\" or /a/b, with ~0 and ~1 escapes)"
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        self.validate_ranking(key)?;
        let s = &self.surrogate;
        if s.warm_up_rows < 20 {
            return Err((at("surrogate.warm_up_rows"), "must be at least 20".into()));
        }
        if s.window_rows < s.warm_up_rows {
            return Err((
                at("surrogate.window_rows"),
                format!(
                    "must be at least surrogate.warm_up_rows ({})",
                    s.warm_up_rows
                ),
            ));
        }
        if s.retrain_every_rows == 0 {
            return Err((
                at("surrogate.retrain_every_rows"),
                "must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&s.min_r2) {
            return Err((at("surrogate.min_r2"), "must be between 0 and 1".into()));
        }
        if !(s.holdout_fraction > 0.0 && s.holdout_fraction < 0.5) {
            return Err((
                at("surrogate.holdout_fraction"),
                "must be in (0, 0.5)".into(),
            ));
        }
        if s.min_holdout_rows < 5 {
            return Err((
                at("surrogate.min_holdout_rows"),
                "must be at least 5".into(),
            ));
        }
        if !(0.0..1.0).contains(&s.gate_confidence) {
            return Err((
                at("surrogate.gate_confidence"),
                "must be in [0, 1) (0 compares the point estimate)".into(),
            ));
        }
        let d = &self.distill;
        if d.enabled {
            if !(d.synthetic_per_real.is_finite() && d.synthetic_per_real > 0.0) {
                return Err((
                    at("distill.synthetic_per_real"),
                    "must be a number above 0 while distill.enabled = true (a budget of zero \
                     asks nothing: set enabled = false instead)"
                        .into(),
                ));
            }
            if !(d.max_calls_per_second.is_finite() && d.max_calls_per_second > 0.0) {
                return Err((
                    at("distill.max_calls_per_second"),
                    "must be a number above 0 while distill.enabled = true".into(),
                ));
            }
            if !(1..=1024).contains(&d.batch_rows) {
                return Err((
                    at("distill.batch_rows"),
                    "must be between 1 and 1024".into(),
                ));
            }
            if d.max_rows < d.batch_rows {
                return Err((
                    at("distill.max_rows"),
                    "must be at least distill.batch_rows".into(),
                ));
            }
            if !(0.0..=1.0).contains(&d.hybrid_share) {
                return Err((at("distill.hybrid_share"), "must be between 0 and 1".into()));
            }
            if d.faithfulness_rows > 0 && d.faithfulness_calls < 10 {
                return Err((
                    at("distill.faithfulness_calls"),
                    "must be at least 10 when faithfulness_rows > 0".into(),
                ));
            }
        }
        if !(s.cpu_share > 0.0 && s.cpu_share <= 1.0) {
            return Err((at("surrogate.cpu_share"), "must be in (0, 1]".into()));
        }
        if s.trees == 0 || s.depth == 0 || s.depth > 16 {
            return Err((
                at("surrogate.depth"),
                "trees must be at least 1 and depth between 1 and 16".into(),
            ));
        }
        if !(s.learning_rate > 0.0 && s.learning_rate <= 1.0) {
            return Err((at("surrogate.learning_rate"), "must be in (0, 1]".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, feature) in self.features.iter().enumerate() {
            if !names.insert(feature.name.as_str()) {
                return Err((
                    format!("{key}.features[{i}].name"),
                    format!("`{}` is listed twice", feature.name),
                ));
            }
            if let (Some(min), Some(max)) = (feature.min, feature.max) {
                if min > max {
                    return Err((format!("{key}.features[{i}].min"), "is above max".into()));
                }
            }
        }
        let mut grouped = std::collections::HashSet::new();
        for (i, group) in self.groups.iter().enumerate() {
            let at_group = |field: &str| format!("{key}.groups[{i}].{field}");
            if group.name.trim().is_empty() {
                return Err((at_group("name"), "must not be empty".into()));
            }
            if names.contains(group.name.as_str()) {
                return Err((
                    at_group("name"),
                    format!(
                        "`{}` is also a feature's name; a group needs a name of its own",
                        group.name
                    ),
                ));
            }
            if group.features.len() < 2 {
                return Err((
                    at_group("features"),
                    "a group needs at least two features".into(),
                ));
            }
            for member in &group.features {
                if !names.contains(member.as_str()) {
                    return Err((
                        at_group("features"),
                        format!(
                            "`{member}` is not a configured feature of this route (groups name \
                             features listed in [[routes.explain.features]])"
                        ),
                    ));
                }
                if !grouped.insert(member.as_str()) {
                    return Err((
                        at_group("features"),
                        format!("`{member}` is already in another group"),
                    ));
                }
            }
        }
        let mut codes = std::collections::HashSet::new();
        for (i, reason) in self.reasons.iter().enumerate() {
            let at_reason = |field: &str| format!("{key}.reasons[{i}].{field}");
            let well_formed = !reason.code.is_empty()
                && reason
                    .code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !well_formed {
                return Err((
                    at_reason("code"),
                    format!(
                        "`{}` is not a code: use letters, digits, `_` and `-`",
                        reason.code
                    ),
                ));
            }
            if !codes.insert(reason.code.as_str()) {
                return Err((
                    at_reason("code"),
                    format!("`{}` is listed twice", reason.code),
                ));
            }
            if reason.features.is_empty() {
                return Err((
                    at_reason("features"),
                    "a reason needs at least one feature or group".into(),
                ));
            }
            for name in &reason.features {
                let members: Vec<&str> = match self.groups.iter().find(|g| g.name == *name) {
                    Some(group) => group.features.iter().map(String::as_str).collect(),
                    None if names.contains(name.as_str()) => vec![name.as_str()],
                    None => {
                        return Err((
                            at_reason("features"),
                            format!(
                                "`{name}` is not a configured feature or group of this route \
                                 (reasons name features listed in [[routes.explain.features]])"
                            ),
                        ));
                    }
                };
                let protected = members
                    .iter()
                    .find(|m| self.features.iter().any(|f| f.name == **m && f.protected));
                if let Some(protected) = protected {
                    return Err((
                        at_reason("features"),
                        format!(
                            "`{protected}` is protected: a reason for a decision never names a \
                             protected feature"
                        ),
                    ));
                }
            }
            if reason
                .statement
                .as_deref()
                .is_some_and(|s| s.trim().is_empty())
            {
                return Err((at_reason("statement"), "must not be empty".into()));
            }
        }
        if let Some(t) = self.decision.threshold {
            let probability = self.output == OutputConfig::Probability;
            if !t.is_finite() || (probability && !(0.0..=1.0).contains(&t)) {
                return Err((
                    at("decision.threshold"),
                    "must be a finite number (between 0 and 1 for output = \"probability\")".into(),
                ));
            }
        }
        for name in self.wording.features.keys() {
            if !names.contains(name.as_str()) {
                let known = if self.features.is_empty() {
                    "no features are configured; list them in [[routes.explain.features]] \
                     to word them"
                        .to_owned()
                } else {
                    format!(
                        "the route's features are: {}",
                        self.features
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err((
                    at(&format!("wording.features.{name}")),
                    format!("`{name}` is not a feature of this route; {known}"),
                ));
            }
        }
        Ok(())
    }
}
