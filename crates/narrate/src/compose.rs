//! Composing the text of one audience from an [`Input`].
//!
//! The rules here are the ones an auditor will check; they are listed in the crate
//! docs. Everything is sorted by |contribution|, then by feature index, so that the same
//! input always gives the same text.

use std::cmp::Ordering;

use fluent_bundle::FluentArgs;
use sidelight_explain::{FeatureKind, Value};

use crate::catalogue::feature_message_id;
use crate::input::{
    Audience, DurationUnit, FeatureInfo, Input, Narration, Space, StepChange, ValueFormat,
};
use crate::locale::Locale;
use crate::narrator::Narrator;
use crate::number::{NumberStyle, round_towards, two_significant};

/// At most this many reasons are named to a customer.
pub const MAX_REASONS: usize = 3;

/// A contribution smaller than this share of the largest one (in absolute value) is not
/// named to a customer; it counts among "other factors", which are mentioned only when
/// their sum reaches the same share.
pub const SMALL_SHARE: f64 = 0.1;

/// How far an explanation can be trusted on this row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    Good,
    Caveat,
    Withhold,
}

fn trust(input: &Input<'_>) -> Trust {
    let policy = input.fidelity;
    let gap = (input.surrogate_prediction - input.prediction).abs();
    let error = input.local_error.abs().max(gap);
    if !(error.is_finite() && input.local_error.is_finite() && gap.is_finite())
        || error > policy.withhold_local_error
    {
        Trust::Withhold
    } else if error > policy.caveat_local_error || input.r2.is_nan() || input.r2 < policy.caveat_r2
    {
        Trust::Caveat
    } else {
        Trust::Good
    }
}

/// The features (at most [`MAX_REASONS`], strongest first) that `may_name` allows and
/// that pushed `values` up by at least [`SMALL_SHARE`] of the largest push: the reasons
/// for a recommendation or for one item above another.
fn strongest_for(values: &[f64], may_name: impl Fn(usize) -> bool) -> Vec<usize> {
    let largest = values.iter().fold(0.0_f64, |m, v| m.max(*v));
    let cut = SMALL_SHARE * largest;
    by_magnitude(values)
        .into_iter()
        .filter(|&i| values[i] > 0.0 && values[i] >= cut && may_name(i))
        .take(MAX_REASONS)
        .collect()
}

/// The feature indices by |contribution| descending, ties by index.
fn by_magnitude(contributions: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..contributions.len()).collect();
    order.sort_by(|&a, &b| {
        contributions[b]
            .abs()
            .total_cmp(&contributions[a].abs())
            .then(a.cmp(&b))
    });
    order
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn capitalise(text: String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first.is_lowercase() => first.to_uppercase().chain(chars).collect(),
        _ => text,
    }
}

/// A feature's words in one language.
struct Words {
    name: String,
    your: String,
    more: String,
    less: String,
    step_more: String,
    step_less: String,
    /// A clause saying why this feature placed an item high ("you often buy outdoor
    /// gear"), when the business gave one (`.because`).
    because: Option<String>,
}

struct Composer<'n, 'i> {
    narrator: &'n Narrator,
    lang: usize,
    style: NumberStyle,
    input: &'n Input<'i>,
}

// === impl Narrator (narrate) ===

impl Narrator {
    /// The text of one explained row for `audience`, in `locale` (or the closest
    /// language it has, else English). Never fails: input that does not add up
    /// (lengths differ, a contribution is not finite) gives no text and
    /// `withheld_reason = "invalid_input"`.
    pub fn narrate(&self, input: &Input<'_>, audience: Audience, locale: &Locale) -> Narration {
        let lang = self.language_index(locale);
        let used = self
            .languages
            .get(lang)
            .map_or_else(Locale::english, |l| l.locale.clone());
        let n = input.features.len();
        if input.values.len() != n
            || input.contributions.len() != n
            || input.contributions.iter().any(|c| !c.is_finite())
        {
            return Narration {
                text: None,
                caveat: false,
                next_step: None,
                withheld_reason: Some("invalid_input"),
                locale: used,
            };
        }
        let composer = Composer {
            narrator: self,
            lang,
            style: NumberStyle::for_language(used.language()),
            input,
        };
        let trust = trust(input);
        let (text, next_step, withheld_reason) = match audience {
            Audience::Customer => composer.customer(trust),
            Audience::Developer => composer.developer(trust, false),
            Audience::Auditor => composer.developer(trust, true),
        };
        Narration {
            text,
            caveat: trust != Trust::Good,
            next_step,
            withheld_reason,
            locale: used,
        }
    }
}

// === impl Narrator (words) ===

impl Narrator {
    /// A feature's words in language `lang`.
    fn feature_words(&self, lang: usize, feature: &FeatureInfo) -> Words {
        let id = feature_message_id(&feature.name);
        let name = self
            .own_message(lang, &id, None)
            .or_else(|| feature.display_name.clone())
            .unwrap_or_else(|| feature.name.replace('_', " "));
        let mut args = FluentArgs::new();
        args.set("feature", name.clone());
        let word = |attribute: &str, default: &str| {
            self.attribute(lang, &id, attribute)
                .unwrap_or_else(|| self.message(lang, default, Some(&args)))
        };
        Words {
            your: word("your", "feature-default-your"),
            more: word("more", "feature-default-more"),
            less: word("less", "feature-default-less"),
            step_more: word("step-more", "feature-default-step-more"),
            step_less: word("step-less", "feature-default-step-less"),
            because: self.attribute(lang, &id, "because"),
            name,
        }
    }

    /// `a, b and c` in language `lang`.
    fn join(&self, lang: usize, items: &[String]) -> String {
        match items {
            [] => String::new(),
            [one] => one.clone(),
            [init @ .., last] => {
                let and = self.message(lang, "list-and", None);
                format!("{} {and} {last}", init.join(", "))
            }
        }
    }
}

/// One side of a contrast the customer reads: the features, their values in the item
/// ranked higher (`a`) and the one below it (`b`), and each feature's part of the
/// difference of their scores.
#[derive(Debug, Clone, Copy)]
pub struct ContrastInput<'a> {
    /// The features, in the order of the other slices.
    pub features: &'a [FeatureInfo],
    /// Whether each feature is about the item (else about the customer).
    pub about_item: &'a [bool],
    /// Values in the item ranked higher.
    pub a: &'a [Value],
    /// Values in the item ranked lower.
    pub b: &'a [Value],
    /// Each feature's contribution to `score(a) − score(b)` (an exact split of it).
    pub difference: &'a [f64],
    /// How the customer knows the higher item, `a` (its name or id).
    pub item: &'a str,
    /// How the customer knows the lower item, `b`.
    pub other: &'a str,
}

// === impl Narrator (rankings) ===

impl Narrator {
    /// A customer's "why this recommendation": the strongest reasons that pushed the
    /// item's score up, about the customer (`about_item[i] == false`) and about the
    /// item, among the features a customer may read. The trust rules of
    /// [`Narrator::narrate`] apply (caveat, withheld); there is no next step (there is
    /// no decision to reverse). Developers and auditors get their usual text.
    pub fn recommend(
        &self,
        input: &Input<'_>,
        about_item: &[bool],
        audience: Audience,
        locale: &Locale,
    ) -> Narration {
        let mut narration = self.narrate(input, audience, locale);
        if audience != Audience::Customer {
            return narration;
        }
        narration.next_step = None;
        if narration.text.is_none() || about_item.len() != input.features.len() {
            return narration;
        }
        let lang = self.language_index(locale);
        let named = strongest_for(input.contributions, |i| {
            input.features[i].shown_to_customer()
        });
        // About the customer first, then about the item.
        let clauses: Vec<String> = [false, true]
            .iter()
            .flat_map(|&item_side| {
                named
                    .iter()
                    .filter(move |&&i| about_item[i] == item_side)
                    .map(move |&i| {
                        let words = self.feature_words(lang, &input.features[i]);
                        words.because.unwrap_or_else(|| {
                            let mut args = FluentArgs::new();
                            args.set("your", words.your);
                            args.set("feature", words.name);
                            let id = if item_side {
                                "customer-recommended-item"
                            } else {
                                "customer-recommended-you"
                            };
                            self.message(lang, id, Some(&args))
                        })
                    })
            })
            .collect();
        let mut args = FluentArgs::new();
        args.set("has_reasons", yes_no(!clauses.is_empty()));
        args.set("reasons", self.join(lang, &clauses));
        let mut text = capitalise(self.message(lang, "customer-recommended", Some(&args)));
        if narration.caveat {
            text.push(' ');
            text.push_str(&self.message(lang, "customer-caveat", None));
        }
        narration.text = Some(text);
        narration
    }

    /// "A is ranked above B mainly because its price is lower": the item's features, among
    /// those a customer may read, that count most for the item ranked higher, from an
    /// exact split of the difference of the two scores. `None` when the input does not
    /// add up.
    pub fn contrast(&self, input: &ContrastInput<'_>, locale: &Locale) -> Option<String> {
        let n = input.features.len();
        if [
            input.about_item.len(),
            input.a.len(),
            input.b.len(),
            input.difference.len(),
        ]
        .iter()
        .any(|&len| len != n)
            || input.difference.iter().any(|d| !d.is_finite())
        {
            return None;
        }
        let lang = self.language_index(locale);
        let named = strongest_for(input.difference, |i| {
            input.about_item[i] && input.features[i].shown_to_customer()
        });
        let reasons: Vec<String> = named
            .iter()
            .map(|&i| {
                let words = self.feature_words(lang, &input.features[i]);
                let comparison = match (&input.a[i], &input.b[i]) {
                    (Value::Number(a), Value::Number(b)) if a.is_finite() && b.is_finite() => {
                        match a.total_cmp(b) {
                            Ordering::Greater => "more",
                            Ordering::Less => "less",
                            Ordering::Equal => "other",
                        }
                    }
                    _ => "other",
                };
                let mut args = FluentArgs::new();
                args.set("feature", words.name);
                args.set("comparison", comparison);
                args.set("more", words.more);
                args.set("less", words.less);
                self.message(lang, "customer-contrast-reason", Some(&args))
            })
            .collect();
        let mut args = FluentArgs::new();
        args.set("item", input.item.to_owned());
        args.set("other", input.other.to_owned());
        args.set("has_reasons", yes_no(!reasons.is_empty()));
        args.set("reasons", self.join(lang, &reasons));
        // Not capitalised: the sentence may begin with an item's id, which is as it is.
        Some(self.message(lang, "customer-contrast", Some(&args)))
    }
}

// === impl Composer ===

impl Composer<'_, '_> {
    fn message(&self, id: &str, args: Option<&FluentArgs<'_>>) -> String {
        self.narrator.message(self.lang, id, args)
    }

    fn words(&self, feature: &FeatureInfo) -> Words {
        self.narrator.feature_words(self.lang, feature)
    }

    fn join_list(&self, items: &[String]) -> String {
        self.narrator.join(self.lang, items)
    }

    fn decision_args(&self) -> FluentArgs<'static> {
        let decision = self.input.decision;
        let mut args = FluentArgs::new();
        args.set("favourable", yes_no(decision.favourable));
        args.set("has_outcome", yes_no(decision.outcome.is_some()));
        // The route's word in the reader's language when its wording gives one
        // (`custom-outcome-<word>`), else the config's word as it is.
        let outcome = decision
            .outcome
            .as_deref()
            .map_or_else(String::new, |word| {
                self.narrator
                    .own_message(self.lang, &crate::catalogue::outcome_message_id(word), None)
                    .unwrap_or_else(|| word.to_owned())
            });
        args.set("outcome", outcome);
        args
    }

    /// "for" when the contribution helps the person.
    fn effect(&self, contribution: f64) -> &'static str {
        let helps = if self.input.decision.higher_is_favourable {
            contribution > 0.0
        } else {
            contribution < 0.0
        };
        if helps { "for" } else { "against" }
    }

    // --- customers ---

    fn customer(&self, trust: Trust) -> (Option<String>, Option<String>, Option<&'static str>) {
        if trust == Trust::Withhold {
            return (None, None, Some("low_fidelity"));
        }
        let input = self.input;
        let mut sentences = Vec::new();
        let decision_args = self.decision_args();
        sentences.push(
            self.narrator
                .route_decision(input.overrides, self.lang, &decision_args)
                .unwrap_or_else(|| self.message("customer-decision", Some(&decision_args))),
        );

        let largest = input
            .contributions
            .iter()
            .fold(0.0_f64, |m, c| m.max(c.abs()));
        let cut = SMALL_SHARE * largest;
        let named: Vec<usize> = by_magnitude(input.contributions)
            .into_iter()
            .filter(|&i| {
                let c = input.contributions[i].abs();
                input.features[i].shown_to_customer() && c > 0.0 && c >= cut
            })
            .take(MAX_REASONS)
            .collect();
        if named.is_empty() {
            sentences.push(self.message("customer-no-reasons", None));
        } else {
            let reasons: Vec<String> = named.iter().map(|&i| self.reason(i)).collect();
            let mut args = FluentArgs::new();
            args.set("count", reasons.len());
            args.set("reasons", reasons.join("; "));
            sentences.push(self.message("customer-reasons", Some(&args)));
        }
        let others: f64 = (0..input.features.len())
            .filter(|i| !named.contains(i))
            .map(|i| input.contributions[i])
            .sum();
        if others != 0.0 && others.abs() >= cut && named.len() < input.features.len() {
            let mut args = FluentArgs::new();
            args.set("effect", self.effect(others));
            sentences.push(self.message("customer-other-factors", Some(&args)));
        }
        if trust == Trust::Caveat {
            sentences.push(self.message("customer-caveat", None));
        }
        let text = sentences
            .into_iter()
            .map(capitalise)
            .collect::<Vec<_>>()
            .join(" ");
        // A next step computed on a surrogate that is off on this row is no advice.
        let next_step = if trust == Trust::Good {
            self.customer_next_step()
        } else {
            None
        };
        (Some(text), next_step, None)
    }

    fn reason(&self, i: usize) -> String {
        let input = self.input;
        let feature = &input.features[i];
        let words = self.words(feature);
        let comparison = match (&input.values[i], feature.typical) {
            (Value::Number(x), Some(t))
                if feature.kind == FeatureKind::Numeric
                    && feature.format != ValueFormat::Category
                    && x.is_finite()
                    && t.p25.is_finite()
                    && t.p75.is_finite() =>
            {
                if *x > t.p75 {
                    "higher"
                } else if *x < t.p25 {
                    "lower"
                } else {
                    "typical"
                }
            }
            _ => "none",
        };
        let mut args = FluentArgs::new();
        args.set("your", words.your);
        args.set("feature", words.name);
        args.set("comparison", comparison);
        args.set("more", words.more);
        args.set("less", words.less);
        args.set("effect", self.effect(input.contributions[i]));
        self.narrator
            .route_reason(input.overrides, &feature.name, self.lang, &args)
            .unwrap_or_else(|| self.message("customer-reason", Some(&args)))
    }

    /// The next step a customer may read: every change on an actionable, visible
    /// feature, within its bounds, and the whole step reaching the target; else none.
    fn customer_next_step(&self) -> Option<String> {
        let step = self.input.next_step?;
        if !step.reaches_target || step.changes.is_empty() {
            return None;
        }
        let mut changes = Vec::with_capacity(step.changes.len());
        for change in &step.changes {
            changes.push(self.customer_change(change)?);
        }
        let mut args = FluentArgs::new();
        args.set("count", changes.len());
        args.set("changes", self.join_list(&changes));
        Some(capitalise(self.message("customer-next-step", Some(&args))))
    }

    fn customer_change(&self, change: &StepChange) -> Option<String> {
        let feature = self.input.features.get(change.feature)?;
        if !(feature.actionable && feature.shown_to_customer()) {
            return None;
        }
        let words = self.words(feature);
        let mut args = FluentArgs::new();
        match (&change.from, &change.to) {
            (Value::Number(from), Value::Number(to)) if feature.kind == FeatureKind::Numeric => {
                let (from, to) = (*from, *to);
                let within = |x: f64| {
                    feature.min.is_none_or(|m| x >= m) && feature.max.is_none_or(|m| x <= m)
                };
                if !(from.is_finite() && to.is_finite() && within(to)) || from == to {
                    return None;
                }
                let unit = match feature.format {
                    ValueFormat::Duration { .. } | ValueFormat::Count | ValueFormat::Percent => 1.0,
                    _ => two_significant(to),
                };
                let mut rounded = round_towards(from, to, unit);
                if let Some(min) = feature.min {
                    rounded = rounded.max(min);
                }
                if let Some(max) = feature.max {
                    rounded = rounded.min(max);
                }
                let more = to > from;
                args.set("kind", if more { "more" } else { "less" });
                args.set(
                    "phrase",
                    if more {
                        words.step_more
                    } else {
                        words.step_less
                    },
                );
                args.set("value", self.number_text(feature, rounded, false));
            }
            (_, to @ (Value::Text(_) | Value::Bool(_))) => {
                if let Value::Text(level) = to {
                    if !feature.levels.is_empty() && !feature.levels.contains(level) {
                        return None;
                    }
                }
                if change.from == *to {
                    return None;
                }
                args.set("kind", "set");
                args.set("phrase", "");
                args.set("value", self.value_text(feature, to));
            }
            _ => return None,
        }
        args.set("feature", words.name);
        Some(self.message("customer-step-change", Some(&args)))
    }

    // --- values ---

    fn value_text(&self, feature: &FeatureInfo, value: &Value) -> String {
        match value {
            Value::Number(x) if x.is_nan() => self.message("value-missing", None),
            Value::Number(x) => self.number_text(feature, *x, true),
            Value::Bool(b) => self.message(if *b { "value-yes" } else { "value-no" }, None),
            Value::Text(text) => {
                let mut args = FluentArgs::new();
                args.set("text", text.clone());
                self.message("value-quoted", Some(&args))
            }
            Value::Missing => self.message("value-missing", None),
        }
    }

    /// A number in the feature's format; `precise` keeps up to four decimals.
    fn number_text(&self, feature: &FeatureInfo, x: f64, precise: bool) -> String {
        let max = if precise { 4 } else { 2 };
        let mut args = FluentArgs::new();
        let with_unit = |number: String, args: &mut FluentArgs<'_>| match &feature.unit {
            Some(unit) => {
                args.set("number", number);
                args.set("unit", unit.clone());
                self.message("value-unit", Some(args))
            }
            None => number,
        };
        match &feature.format {
            ValueFormat::Money { currency } => {
                let decimals = if x.fract() == 0.0 { 0 } else { 2 };
                args.set("number", self.style.format(x, decimals, decimals));
                args.set("currency", currency.clone());
                self.message("value-money", Some(&args))
            }
            ValueFormat::Percent => {
                args.set("number", self.style.format(x, 0, max));
                self.message("value-percent", Some(&args))
            }
            ValueFormat::Duration { unit } => {
                let id = match unit {
                    DurationUnit::Days => "unit-days",
                    DurationUnit::Months => "unit-months",
                    DurationUnit::Years => "unit-years",
                };
                let mut count = FluentArgs::new();
                count.set("count", x);
                args.set("number", self.style.format(x, 0, max));
                args.set("unit", self.message(id, Some(&count)));
                self.message("value-unit", Some(&args))
            }
            ValueFormat::Count => with_unit(
                self.style.format(x, 0, if precise { 4 } else { 0 }),
                &mut args,
            ),
            ValueFormat::Plain | ValueFormat::Category => {
                with_unit(self.style.format(x, 0, max), &mut args)
            }
        }
    }

    // --- developers and auditors ---

    fn developer(
        &self,
        trust: Trust,
        auditor: bool,
    ) -> (Option<String>, Option<String>, Option<&'static str>) {
        let input = self.input;
        let style = self.style;
        let mut lines = Vec::new();
        lines.push(self.message("dev-decision", Some(&self.decision_args())));

        let mut args = FluentArgs::new();
        args.set("prediction", style.format(input.prediction, 0, 4));
        args.set("surrogate", style.format(input.surrogate_prediction, 0, 4));
        args.set("local_error", style.format(input.local_error, 0, 4));
        args.set("r2", style.format(input.r2, 0, 3));
        args.set("version", input.surrogate_version.to_string());
        lines.push(self.message("dev-prediction", Some(&args)));

        let mut args = FluentArgs::new();
        args.set("base", style.format(input.base_value, 0, 4));
        args.set(
            "space",
            match input.space {
                Space::Logit => "logit",
                Space::Output => "output",
            },
        );
        lines.push(self.message("dev-base", Some(&args)));

        if trust != Trust::Good {
            let mut args = FluentArgs::new();
            args.set(
                "level",
                if trust == Trust::Withhold {
                    "withhold"
                } else {
                    "caveat"
                },
            );
            lines.push(self.message("dev-fidelity", Some(&args)));
        }

        let order = by_magnitude(input.contributions);
        let class = |c: f64| c.partial_cmp(&0.0).unwrap_or(Ordering::Equal);
        let groups = [
            ("dev-pushed-up", Ordering::Greater),
            ("dev-pushed-down", Ordering::Less),
            ("dev-no-effect", Ordering::Equal),
        ];
        for (id, sign) in groups {
            let items: Vec<String> = order
                .iter()
                .filter(|&&i| class(input.contributions[i]) == sign)
                .map(|&i| self.attribution(i))
                .collect();
            if !items.is_empty() {
                let mut args = FluentArgs::new();
                args.set("count", items.len());
                args.set("items", items.join("; "));
                lines.push(self.message(id, Some(&args)));
            }
        }

        let next_step = input.next_step.and_then(|step| {
            let changes: Vec<String> = step
                .changes
                .iter()
                .filter_map(|change| {
                    let feature = input.features.get(change.feature)?;
                    let mut args = FluentArgs::new();
                    args.set("feature", self.words(feature).name);
                    args.set("name", feature.name.clone());
                    args.set("from", self.value_text(feature, &change.from));
                    args.set("to", self.value_text(feature, &change.to));
                    Some(self.message("dev-step-change", Some(&args)))
                })
                .collect();
            if changes.is_empty() {
                return None;
            }
            let mut args = FluentArgs::new();
            args.set("changes", changes.join("; "));
            args.set("reaches", yes_no(step.reaches_target));
            Some(self.message("dev-next-step", Some(&args)))
        });
        if let Some(step) = &next_step {
            lines.push(step.clone());
        }

        if auditor {
            match input.audit {
                Some(facts)
                    if facts.record_id.is_some()
                        || facts.consent.is_some()
                        || !facts.storage.is_empty() =>
                {
                    if let Some(id) = &facts.record_id {
                        let mut args = FluentArgs::new();
                        args.set("id", id.clone());
                        lines.push(self.message("audit-record", Some(&args)));
                    }
                    if let Some(consent) = &facts.consent {
                        let mut args = FluentArgs::new();
                        args.set("consent", consent.clone());
                        lines.push(self.message("audit-consent", Some(&args)));
                    }
                    if !facts.storage.is_empty() {
                        let mut args = FluentArgs::new();
                        args.set("facts", facts.storage.join("; "));
                        lines.push(self.message("audit-storage", Some(&args)));
                    }
                }
                _ => lines.push(self.message("audit-none", None)),
            }
        }
        (Some(lines.join("\n")), next_step, None)
    }

    fn attribution(&self, i: usize) -> String {
        let input = self.input;
        let feature = &input.features[i];
        let mut args = FluentArgs::new();
        args.set("feature", self.words(feature).name);
        args.set("name", feature.name.clone());
        args.set("value", self.value_text(feature, &input.values[i]));
        args.set("contribution", self.style.signed(input.contributions[i], 3));
        args.set(
            "visibility",
            if feature.protected {
                "protected"
            } else if !feature.customer_visible {
                "hidden"
            } else {
                "shown"
            },
        );
        self.message("dev-attribution", Some(&args))
    }
}
