//! The messages the narrator formats, and the variables it offers each of them.
//!
//! This table is the contract between the Rust code and the `.ftl` files: a business's
//! file may override any of these messages, and may use only the variables listed for
//! it. Anything else in a file is a typo until proven otherwise, and is reported with
//! its file and line.

/// Message id -> the variables offered to it.
pub(crate) const MESSAGES: &[(&str, &[&str])] = &[
    ("value-yes", &[]),
    ("value-no", &[]),
    ("value-missing", &[]),
    ("value-quoted", &["text"]),
    ("value-money", &["number", "currency"]),
    ("value-percent", &["number"]),
    ("value-unit", &["number", "unit"]),
    ("unit-days", &["count"]),
    ("unit-months", &["count"]),
    ("unit-years", &["count"]),
    ("list-and", &[]),
    ("feature-default-your", &["feature"]),
    ("feature-default-more", &[]),
    ("feature-default-less", &[]),
    ("feature-default-step-more", &["feature"]),
    ("feature-default-step-less", &["feature"]),
    ("customer-decision", DECISION_VARIABLES),
    ("customer-reasons", &["count", "reasons"]),
    ("customer-reason", REASON_VARIABLES),
    ("customer-other-factors", &["effect"]),
    ("customer-no-reasons", &[]),
    ("customer-caveat", &[]),
    ("customer-next-step", &["count", "changes"]),
    ("customer-recommended", &["has_reasons", "reasons"]),
    ("customer-recommended-you", &["your", "feature"]),
    ("customer-recommended-item", &["feature"]),
    (
        "customer-contrast",
        &["item", "other", "has_reasons", "reasons"],
    ),
    (
        "customer-contrast-reason",
        &["feature", "comparison", "more", "less"],
    ),
    (
        "customer-step-change",
        &["kind", "phrase", "feature", "value"],
    ),
    ("dev-decision", DECISION_VARIABLES),
    (
        "dev-prediction",
        &["prediction", "surrogate", "local_error", "r2", "version"],
    ),
    ("dev-base", &["base", "space"]),
    ("dev-pushed-up", &["count", "items"]),
    ("dev-pushed-down", &["count", "items"]),
    ("dev-no-effect", &["count", "items"]),
    (
        "dev-attribution",
        &["feature", "name", "value", "contribution", "visibility"],
    ),
    ("dev-next-step", &["changes", "reaches"]),
    ("dev-step-change", &["feature", "name", "from", "to"]),
    ("dev-fidelity", &["level"]),
    ("audit-record", &["id"]),
    ("audit-consent", &["consent"]),
    ("audit-storage", &["facts"]),
    ("audit-none", &[]),
    // The transparency notice (`GET /v1/notice/{route}`).
    ("notice-default-title", &[]),
    ("notice-default-purpose", &[]),
    ("notice-uses-heading", &[]),
    ("notice-uses", &[]),
    ("notice-uses-hidden", &["count"]),
    ("notice-protected-heading", &[]),
    ("notice-protected", &[]),
    ("notice-fairness-monitored", &[]),
    ("notice-fairness-unmonitored", &[]),
    ("notice-fairness-fair", &["date"]),
    ("notice-fairness-disparity", &["date"]),
    ("notice-fairness-reviewed", &[]),
    ("notice-protected-given", &[]),
    ("notice-fairness-none", &[]),
    ("notice-reasons-heading", &[]),
    ("notice-reasons", &[]),
    ("notice-explanations", &[]),
    ("notice-record-heading", &[]),
    ("notice-record-kept", &["days"]),
    ("notice-record-kept-until-erased", &[]),
    ("notice-record-minimised", &["count"]),
    ("notice-record-encrypted", &[]),
    ("notice-record-none", &[]),
    ("notice-choices-heading", &[]),
    ("notice-consent-default-granted", &[]),
    ("notice-consent-default-denied", &[]),
    ("notice-consent-how", &[]),
    ("notice-access", &[]),
    ("notice-review-heading", &[]),
    ("notice-review-rules", &[]),
    ("notice-contest", &["days"]),
    ("notice-contest-offline", &[]),
    ("notice-generated", &["date"]),
    // The printable answer to a subject access request.
    ("access-title", &["subject"]),
    ("access-summary", &["count", "date"]),
    ("access-truncated", &[]),
    ("access-when", &[]),
    ("access-service", &[]),
    ("access-consent", &[]),
    ("access-request", &[]),
    ("access-explanation", &[]),
    ("access-no-explanation", &["why"]),
    ("access-reasons", &[]),
    ("access-information", &[]),
    ("access-review", &[]),
    ("access-by-you", &[]),
    ("access-by-reviewer", &[]),
    ("access-outcome", &[]),
    ("access-erased", &["date"]),
    // A customer's contest of a decision (`/v1/contests`).
    ("contest-received", &[]),
    ("contest-pending", &[]),
    ("contest-confirmed", &[]),
    ("contest-overridden", &[]),
    ("contest-unknown", &[]),
    ("contest-closed", &["days"]),
    ("contest-erased", &[]),
    ("contest-already", &[]),
    ("contest-unavailable", &[]),
    ("contest-reason-needed", &["max"]),
    ("contest-not-contested", &[]),
];

/// Variables offered to a decision sentence (`customer-decision`, a route's override).
pub(crate) const DECISION_VARIABLES: &[&str] = &["favourable", "has_outcome", "outcome"];

/// Variables offered to one customer reason (`customer-reason`, a feature's override).
pub(crate) const REASON_VARIABLES: &[&str] =
    &["your", "feature", "comparison", "more", "less", "effect"];

/// Messages describing one feature are named `feature-<name>`; their value is the
/// feature's name in that language and these attributes (all optional, no variables)
/// give the words around it.
pub(crate) const FEATURE_PREFIX: &str = "feature-";
pub(crate) const FEATURE_ATTRIBUTES: &[&str] =
    &["your", "more", "less", "step-more", "step-less", "because"];

/// A business's own messages, for route and feature overrides, are named `custom-…`;
/// their variables are checked where a route uses them.
pub(crate) const CUSTOM_PREFIX: &str = "custom-";

/// What a message id in a `.ftl` file may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A message of the table above, with the variables offered to it.
    Known(&'static [&'static str]),
    /// `feature-<name>`.
    Feature,
    /// `custom-…`.
    Custom,
}

pub(crate) fn kind(id: &str) -> Option<Kind> {
    if let Some((_, vars)) = MESSAGES.iter().find(|(m, _)| *m == id) {
        return Some(Kind::Known(vars));
    }
    if id.starts_with("feature-default-") {
        return None;
    }
    if id.len() > FEATURE_PREFIX.len() && id.starts_with(FEATURE_PREFIX) {
        return Some(Kind::Feature);
    }
    if id.len() > CUSTOM_PREFIX.len() && id.starts_with(CUSTOM_PREFIX) {
        return Some(Kind::Custom);
    }
    None
}

/// The Fluent id of the message that words the route's decision word `outcome` (the
/// config's `decision.favourable` or `decision.unfavourable`, e.g. `declined`) in one
/// language: `custom-outcome-` followed by the word, with every character that a Fluent
/// identifier cannot hold replaced by `_` (`custom-outcome-declined = abgelehnt`). A
/// language without it uses the config's word as it is.
pub fn outcome_message_id(outcome: &str) -> String {
    message_id(&[CUSTOM_PREFIX, "outcome-"], outcome)
}

/// The Fluent id of the message that states reason code `code` in one language:
/// `custom-reason-` followed by the code (`custom-reason-R01 = Zu geringe Ersparnisse`).
pub fn reason_message_id(code: &str) -> String {
    message_id(&[CUSTOM_PREFIX, "reason-"], code)
}

/// The Fluent id of the message describing feature `name`: `feature-` followed by the
/// name, with every character that a Fluent identifier cannot hold replaced by `_`.
pub fn feature_message_id(name: &str) -> String {
    message_id(&[FEATURE_PREFIX], name)
}

/// The Fluent id of a route's own notice sentence `part` (`title` or `purpose`):
/// `custom-notice-<route>-<part>` (`custom-notice-credit-purpose = …`), no variables.
pub fn notice_message_id(route: &str, part: &str) -> String {
    message_id(&[CUSTOM_PREFIX, "notice-"], &format!("{route}-{part}"))
}

/// `prefix` followed by `name`, with every character that a Fluent identifier cannot
/// hold replaced by `_`.
fn message_id(prefix: &[&str], name: &str) -> String {
    let mut id = prefix.concat();
    id.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
    id
}
