//! Group fairness of decisions over a window, for one protected attribute.
//!
//! # Inputs and terms
//!
//! Each observation is a [`Decision`]: the observation's group for the protected
//! attribute, whether the model's decision was the **favourable** one (the loan granted,
//! the offer made), and, once feedback has arrived, the true **outcome** (`true` = the
//! favourable outcome was deserved: the loan was repaid). The attribute has one
//! **privileged** group and one or more **unprivileged** groups
//! ([`ProtectedAttribute`]); observations of any other group are counted as `unlisted`
//! and otherwise ignored.
//!
//! Per group ([`GroupStats`]), each rate with its counts and a Wilson score interval at
//! the configured confidence ([`crate::stats::wilson_interval`]):
//!
//! - selection rate `SR = favourable decisions / observations`;
//! - true positive rate `TPR = favourable decisions among outcome = true / outcome = true`;
//! - false positive rate `FPR = favourable decisions among outcome = false / outcome = false`.
//!
//! # Comparisons and signs
//!
//! Every comparison is **unprivileged minus (or over) privileged** ([`GroupComparison`]):
//!
//! - statistical parity difference `SPD = SR_u − SR_p` (negative: the unprivileged group
//!   is selected less often);
//! - disparate impact `DI = SR_u / SR_p` (below 1: selected less often); the four-fifths
//!   rule asks `DI ≥ 0.8`;
//! - equal opportunity difference `EOD = TPR_u − TPR_p`;
//! - false positive rate difference `FPR_u − FPR_p`;
//! - average odds difference `AOD = ((FPR_u − FPR_p) + (TPR_u − TPR_p)) / 2`.
//!
//! Fairlearn reports `demographic_parity_difference` and `equalized_odds_difference` as
//! `max − min` over all groups, never negative; [`FairnessReport::demographic_parity_range`]
//! and [`FairnessReport::equalized_odds_range`] give those figures.
//!
//! # Verdicts
//!
//! A [`Verdict`] is given per comparison for disparate impact, statistical parity and
//! equal opportunity. It is [`Verdict::InsufficientData`] when either group has fewer
//! than `min_group_size` observations (0 counts as 1; for equal opportunity:
//! observations with `outcome = true`). Otherwise the interval decides, so that a small
//! group's noise is not reported as unfairness:
//!
//! - **Disparate impact** — the ratio interval is `[L_u / U_p, U_u / L_p]`, from the two
//!   Wilson intervals `[L, U]` of the selection rates. [`Verdict::Fail`] when its upper
//!   bound is below the four-fifths threshold: even the most favourable pair of rates
//!   consistent with the data breaks the rule. A false alarm (a fail while the true
//!   ratio meets the rule) needs `SR_u`'s true value above `U_u` or `SR_p`'s below `L_p`,
//!   each a one-sided miss of probability about `(1 − confidence) / 2`, so its
//!   probability is at most about `1 − confidence` (5 % by default), whatever the group
//!   sizes. [`Verdict::Inconclusive`] when the point estimate is below the threshold but
//!   the interval reaches it; [`Verdict::Pass`] when the point estimate meets it. When
//!   the privileged group is never selected the ratio is undefined (`None`) and the
//!   unprivileged group cannot be selected less often: pass.
//! - **Statistical parity / equal opportunity** — Newcombe's hybrid score interval for the
//!   difference ([`crate::stats::newcombe_difference`]). [`Verdict::Fail`] when the whole
//!   interval lies beyond `±max_difference` (either direction: a group favoured or
//!   disfavoured by more than the bound), [`Verdict::Inconclusive`] when only the point
//!   estimate does, [`Verdict::Pass`] when `|difference| ≤ max_difference`.

use serde::{Deserialize, Serialize};

use crate::MonitorError;
use crate::stats::{Interval, newcombe_difference, normal_critical_value, wilson_with_z};

/// One observed decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The observation's group for the protected attribute.
    pub group: &'a str,
    /// Whether the decision was the favourable one.
    pub favourable: bool,
    /// The true outcome from feedback (`true` = favourable outcome deserved), if known.
    pub outcome: Option<bool>,
}

/// A protected attribute and its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedAttribute {
    /// The attribute's name, for reports ("age_band", "sex").
    pub name: String,
    /// The privileged (reference) group.
    pub privileged: String,
    /// The groups compared with the privileged one; at least one.
    pub unprivileged: Vec<String>,
}

/// How fairness is judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessConfig {
    /// Two-sided confidence of every interval, in `(0, 1)`. Default 0.95.
    pub confidence: f64,
    /// Fewest observations a group needs before a verdict. Default 30.
    pub min_group_size: u64,
    /// The disparate impact threshold of the four-fifths rule. Default 0.8.
    pub four_fifths: f64,
    /// The largest acceptable |SPD| and |EOD|. Default 0.1.
    pub max_difference: f64,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            confidence: 0.95,
            min_group_size: 30,
            four_fifths: 0.8,
            max_difference: 0.1,
        }
    }
}

/// A proportion with its counts and interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// The numerator: favourable decisions among the observations counted in `trials`.
    pub successes: u64,
    /// The denominator: the observations the rate is over (all of the group's, or only
    /// those with a given outcome).
    pub trials: u64,
    /// `successes / trials`; `None` when `trials = 0`.
    pub rate: Option<f64>,
    /// The Wilson score interval; `None` when `trials = 0`.
    pub interval: Option<Interval>,
}

impl Rate {
    fn new(successes: u64, trials: u64, z: f64) -> Self {
        Self {
            successes,
            trials,
            rate: (trials > 0).then(|| successes as f64 / trials as f64),
            interval: wilson_with_z(successes, trials, z),
        }
    }
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// The group's label, as in the [`ProtectedAttribute`].
    pub group: String,
    /// Whether this is the privileged (reference) group; exactly one group of a report
    /// is.
    pub privileged: bool,
    /// Observations of this group.
    pub count: u64,
    /// Favourable decisions over observations.
    pub selection: Rate,
    /// Observations whose outcome is known.
    pub with_outcome: u64,
    /// Favourable decisions among observations with `outcome = true`.
    pub true_positive_rate: Rate,
    /// Favourable decisions among observations with `outcome = false`.
    pub false_positive_rate: Rate,
}

/// A figure with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The point estimate from the observed rates.
    pub value: f64,
    /// Lower bound of the interval at [`FairnessConfig::confidence`]; at most `value`.
    pub lower: f64,
    /// Upper bound of the interval; at least `value`. Verdicts of [`Verdict::Fail`] are
    /// decided on the bounds, not on `value`.
    pub upper: f64,
}

/// The outcome of one fairness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The point estimate meets the rule.
    Pass,
    /// A group is below the minimum sample size (or the figure is undefined).
    InsufficientData,
    /// The point estimate breaks the rule but the confidence interval still reaches it.
    Inconclusive,
    /// The rule is broken with confidence: the whole interval is on the wrong side.
    Fail,
}

impl Verdict {
    /// The more severe of two verdicts (`Fail` > `Inconclusive` > `InsufficientData` >
    /// `Pass`).
    pub fn worst(self, other: Self) -> Self {
        self.max(other)
    }
}

/// One unprivileged group against the privileged one. Signs: unprivileged minus (or
/// over) privileged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupComparison {
    /// The unprivileged group: the first term of every difference, the numerator of
    /// every ratio.
    pub unprivileged: String,
    /// The privileged group: the second term of every difference, the denominator of
    /// every ratio.
    pub privileged: String,
    /// `SR_u − SR_p` with Newcombe's interval; `None` if a group has no observation.
    pub statistical_parity_difference: Option<Estimate>,
    /// `SR_u / SR_p` with the interval `[L_u / U_p, U_u / L_p]`; `None` if a group has
    /// no observation or the privileged group was never selected.
    pub disparate_impact: Option<Estimate>,
    /// `TPR_u − TPR_p` with Newcombe's interval; `None` without positive outcomes in
    /// both groups.
    pub equal_opportunity_difference: Option<Estimate>,
    /// `FPR_u − FPR_p` with Newcombe's interval; `None` without negative outcomes in
    /// both groups.
    pub false_positive_rate_difference: Option<Estimate>,
    /// `((FPR_u − FPR_p) + (TPR_u − TPR_p)) / 2`; `None` unless both differences exist.
    pub average_odds_difference: Option<f64>,
    /// The four-fifths rule on disparate impact.
    pub disparate_impact_verdict: Verdict,
    /// `|SPD| ≤ max_difference`.
    pub statistical_parity_verdict: Verdict,
    /// `|EOD| ≤ max_difference`.
    pub equal_opportunity_verdict: Verdict,
}

/// Fairness of a window of decisions for one protected attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FairnessReport {
    /// The protected attribute's name ([`ProtectedAttribute::name`]).
    pub attribute: String,
    /// The settings the report was computed with, so that a stored report says which
    /// confidence and thresholds its verdicts used.
    pub config: FairnessConfig,
    /// Every observation seen, listed groups or not.
    pub total: u64,
    /// Observations of a group that is neither privileged nor unprivileged.
    pub unlisted: u64,
    /// The privileged group first, then the unprivileged ones in the order configured.
    pub groups: Vec<GroupStats>,
    /// One per unprivileged group, in the order configured.
    pub comparisons: Vec<GroupComparison>,
    /// The most severe verdict of all comparisons ([`Verdict::worst`]).
    pub verdict: Verdict,
}

impl FairnessReport {
    /// Fairlearn's `demographic_parity_difference`: the largest minus the smallest
    /// selection rate over the listed groups that have observations (never negative).
    pub fn demographic_parity_range(&self) -> Option<f64> {
        range(self.groups.iter().filter_map(|g| g.selection.rate))
    }

    /// Fairlearn's `equalized_odds_difference` (its default `agg="worst_case"`): the
    /// larger of the TPR range and the FPR range over the listed groups.
    pub fn equalized_odds_range(&self) -> Option<f64> {
        let tpr = range(self.groups.iter().filter_map(|g| g.true_positive_rate.rate))?;
        let fpr = range(
            self.groups
                .iter()
                .filter_map(|g| g.false_positive_rate.rate),
        )?;
        Some(tpr.max(fpr))
    }
}

fn range(rates: impl Iterator<Item = f64>) -> Option<f64> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut any = false;
    for r in rates {
        any = true;
        lo = lo.min(r);
        hi = hi.max(r);
    }
    any.then_some(hi - lo)
}

/// One group's decision counts: what [`fairness_from_counts`] reads. Counts add and
/// subtract exactly, so a window keeps them as rows arrive and leave, and the counts of
/// several windows (replicas of a fleet) merge by adding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCounts {
    /// Observations.
    pub count: u64,
    /// Favourable decisions.
    pub favourable: u64,
    /// Observations whose reported outcome is favourable.
    pub positives: u64,
    /// Favourable decisions among `positives`.
    pub true_positives: u64,
    /// Observations whose reported outcome is unfavourable.
    pub negatives: u64,
    /// Favourable decisions among `negatives`.
    pub false_positives: u64,
}

impl GroupCounts {
    /// Counts one decision in (`sign = 1`) or out (`sign = -1`); counting out what was
    /// never counted in saturates at zero rather than wrap.
    pub fn count(&mut self, favourable: bool, outcome: Option<bool>, sign: i8) {
        let step = |c: &mut u64, on: bool| {
            if on {
                *c = if sign >= 0 {
                    c.saturating_add(1)
                } else {
                    c.saturating_sub(1)
                };
            }
        };
        step(&mut self.count, true);
        step(&mut self.favourable, favourable);
        step(&mut self.positives, outcome == Some(true));
        step(
            &mut self.true_positives,
            outcome == Some(true) && favourable,
        );
        step(&mut self.negatives, outcome == Some(false));
        step(
            &mut self.false_positives,
            outcome == Some(false) && favourable,
        );
    }

    /// Adds another window's counts of the same group.
    pub fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.favourable += other.favourable;
        self.positives += other.positives;
        self.true_positives += other.true_positives;
        self.negatives += other.negatives;
        self.false_positives += other.false_positives;
    }
}

impl FairnessConfig {
    /// Checks the configuration: confidence in `(0, 1)`, a finite positive four-fifths
    /// threshold and a finite non-negative difference bound.
    pub fn validate(&self) -> Result<(), MonitorError> {
        if normal_critical_value(self.confidence).is_none() {
            return Err(MonitorError::InvalidConfig(
                "fairness confidence must be between 0 and 1".into(),
            ));
        }
        if !(self.four_fifths.is_finite() && self.four_fifths > 0.0) {
            return Err(MonitorError::InvalidConfig(
                "four_fifths must be a positive number".into(),
            ));
        }
        if !(self.max_difference.is_finite() && self.max_difference >= 0.0) {
            return Err(MonitorError::InvalidConfig(
                "max_difference must be a non-negative number".into(),
            ));
        }
        Ok(())
    }
}

/// Computes group fairness of `decisions` for `attribute` (see the module docs for every
/// definition). One pass over the decisions; memory is per group, not per observation.
///
/// Errors when the configuration is invalid, the attribute lists no unprivileged group,
/// or a group is listed twice.
pub fn fairness<'a>(
    attribute: &ProtectedAttribute,
    decisions: impl IntoIterator<Item = Decision<'a>>,
    config: &FairnessConfig,
) -> Result<FairnessReport, MonitorError> {
    let (names, z) = groups_of(attribute, config)?;

    let mut counts = vec![GroupCounts::default(); names.len()];
    let mut total = 0u64;
    let mut unlisted = 0u64;
    for d in decisions {
        total += 1;
        // Few groups: a linear scan of short strings beats hashing every label.
        match names.iter().position(|n| *n == d.group) {
            Some(i) => counts[i].count(d.favourable, d.outcome, 1),
            None => unlisted += 1,
        }
    }
    report(attribute, &names, &counts, total, unlisted, config, z)
}

/// Group fairness from counts kept elsewhere: `counts[0]` is the privileged group's,
/// then the unprivileged groups' in the attribute's order; `total` counts every
/// observation, `unlisted` those of no listed group. The same report as [`fairness`]
/// over the decisions the counts came from.
pub fn fairness_from_counts(
    attribute: &ProtectedAttribute,
    counts: &[GroupCounts],
    total: u64,
    unlisted: u64,
    config: &FairnessConfig,
) -> Result<FairnessReport, MonitorError> {
    let (names, z) = groups_of(attribute, config)?;
    if counts.len() != names.len() {
        return Err(MonitorError::InvalidConfig(format!(
            "protected attribute {:?}: {} group counts for {} groups",
            attribute.name,
            counts.len(),
            names.len()
        )));
    }
    report(attribute, &names, counts, total, unlisted, config, z)
}

/// The attribute's groups, privileged first, and the intervals' critical value.
fn groups_of<'a>(
    attribute: &'a ProtectedAttribute,
    config: &FairnessConfig,
) -> Result<(Vec<&'a str>, f64), MonitorError> {
    config.validate()?;
    let z = normal_critical_value(config.confidence)
        .ok_or_else(|| MonitorError::InvalidConfig("invalid confidence".into()))?;
    if attribute.unprivileged.is_empty() {
        return Err(MonitorError::InvalidConfig(format!(
            "protected attribute {:?} lists no unprivileged group",
            attribute.name
        )));
    }
    let names: Vec<&str> = std::iter::once(attribute.privileged.as_str())
        .chain(attribute.unprivileged.iter().map(String::as_str))
        .collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(MonitorError::InvalidConfig(format!(
                "protected attribute {:?} lists group {name:?} twice",
                attribute.name
            )));
        }
    }
    Ok((names, z))
}

fn report(
    attribute: &ProtectedAttribute,
    names: &[&str],
    counts: &[GroupCounts],
    total: u64,
    unlisted: u64,
    config: &FairnessConfig,
    z: f64,
) -> Result<FairnessReport, MonitorError> {
    let groups: Vec<GroupStats> = names
        .iter()
        .zip(counts)
        .enumerate()
        .map(|(i, (name, c))| GroupStats {
            group: (*name).to_owned(),
            privileged: i == 0,
            count: c.count,
            selection: Rate::new(c.favourable, c.count, z),
            with_outcome: c.positives + c.negatives,
            true_positive_rate: Rate::new(c.true_positives, c.positives, z),
            false_positive_rate: Rate::new(c.false_positives, c.negatives, z),
        })
        .collect();

    let privileged = &groups[0];
    let comparisons: Vec<GroupComparison> = groups[1..]
        .iter()
        .map(|u| compare(u, privileged, config))
        .collect();
    let verdict = comparisons.iter().fold(Verdict::Pass, |acc, c| {
        acc.worst(c.disparate_impact_verdict)
            .worst(c.statistical_parity_verdict)
            .worst(c.equal_opportunity_verdict)
    });
    Ok(FairnessReport {
        attribute: attribute.name.clone(),
        config: *config,
        total,
        unlisted,
        groups,
        comparisons,
        verdict,
    })
}

fn difference(u: &Rate, p: &Rate) -> Option<Estimate> {
    let (ru, rp) = (u.rate?, p.rate?);
    let ci = newcombe_difference(ru, u.interval?, rp, p.interval?);
    Some(Estimate {
        value: ru - rp,
        lower: ci.lower,
        upper: ci.upper,
    })
}

fn ratio(u: &Rate, p: &Rate) -> Option<Estimate> {
    let (ru, rp) = (u.rate?, p.rate?);
    let (wu, wp) = (u.interval?, p.interval?);
    if rp <= 0.0 || wp.lower <= 0.0 {
        return None;
    }
    Some(Estimate {
        value: ru / rp,
        lower: wu.lower / wp.upper,
        upper: wu.upper / wp.lower,
    })
}

pub(crate) fn difference_verdict(
    estimate: Option<Estimate>,
    enough: bool,
    config: &FairnessConfig,
) -> Verdict {
    let Some(e) = estimate.filter(|_| enough) else {
        return Verdict::InsufficientData;
    };
    let t = config.max_difference;
    if e.lower > t || e.upper < -t {
        Verdict::Fail
    } else if e.value.abs() > t {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

fn compare(u: &GroupStats, p: &GroupStats, config: &FairnessConfig) -> GroupComparison {
    let min = config.min_group_size.max(1);
    let enough_selected = u.count >= min && p.count >= min;
    let enough_positive = u.true_positive_rate.trials >= min && p.true_positive_rate.trials >= min;

    let spd = difference(&u.selection, &p.selection);
    let di = ratio(&u.selection, &p.selection);
    let eod = difference(&u.true_positive_rate, &p.true_positive_rate);
    let fprd = difference(&u.false_positive_rate, &p.false_positive_rate);
    let aod = match (eod, fprd) {
        (Some(t), Some(f)) => Some((t.value + f.value) / 2.0),
        _ => None,
    };

    let disparate_impact_verdict = if !enough_selected {
        Verdict::InsufficientData
    } else {
        match di {
            // The privileged group was never selected: nobody can be selected less often.
            None => Verdict::Pass,
            Some(e) if e.upper < config.four_fifths => Verdict::Fail,
            Some(e) if e.value < config.four_fifths => Verdict::Inconclusive,
            Some(_) => Verdict::Pass,
        }
    };

    GroupComparison {
        unprivileged: u.group.clone(),
        privileged: p.group.clone(),
        statistical_parity_difference: spd,
        disparate_impact: di,
        equal_opportunity_difference: eod,
        false_positive_rate_difference: fprd,
        average_odds_difference: aod,
        disparate_impact_verdict,
        statistical_parity_verdict: difference_verdict(spd, enough_selected, config),
        equal_opportunity_verdict: difference_verdict(eod, enough_positive, config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr() -> ProtectedAttribute {
        ProtectedAttribute {
            name: "sex".into(),
            privileged: "m".into(),
            unprivileged: vec!["f".into()],
        }
    }

    /// `n` decisions of `group`: `fav` favourable, with outcome tallies
    /// (favourable & outcome true, favourable & false, unfavourable & true,
    /// unfavourable & false) taken from the front; the rest have no outcome.
    fn make(
        group: &'static str,
        n: usize,
        fav: usize,
        tp: usize,
        fp: usize,
        fneg: usize,
        tn: usize,
    ) -> Vec<Decision<'static>> {
        let mut out = Vec::new();
        for i in 0..fav {
            let outcome = if i < tp {
                Some(true)
            } else if i < tp + fp {
                Some(false)
            } else {
                None
            };
            out.push(Decision {
                group,
                favourable: true,
                outcome,
            });
        }
        for i in 0..n - fav {
            let outcome = if i < fneg {
                Some(true)
            } else if i < fneg + tn {
                Some(false)
            } else {
                None
            };
            out.push(Decision {
                group,
                favourable: false,
                outcome,
            });
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_table() {
        // group m (privileged): 100 decisions, 60 favourable.
        //   outcomes: favourable & true 40, favourable & false 10,
        //             unfavourable & true 10, unfavourable & false 30 (10 unknown).
        //   SR = 0.6, TPR = 40/50 = 0.8, FPR = 10/40 = 0.25.
        // group f: 100 decisions, 30 favourable.
        //   favourable & true 24, favourable & false 6, unfavourable & true 16,
        //   unfavourable & false 44 (10 unknown).
        //   SR = 0.3, TPR = 24/40 = 0.6, FPR = 6/50 = 0.12.
        // SPD = 0.3 − 0.6 = −0.3; DI = 0.3/0.6 = 0.5; EOD = 0.6 − 0.8 = −0.2;
        // FPR difference = 0.12 − 0.25 = −0.13; AOD = (−0.13 − 0.2)/2 = −0.165.
        // One extra observation of group "x" is unlisted.
        let mut d = make("m", 100, 60, 40, 10, 10, 30);
        d.extend(make("f", 100, 30, 24, 6, 16, 44));
        d.push(Decision {
            group: "x",
            favourable: true,
            outcome: None,
        });
        let r = fairness(&attr(), d.iter().copied(), &FairnessConfig::default()).unwrap();
        assert_eq!(r.total, 201);
        assert_eq!(r.unlisted, 1);
        let (m, f) = (&r.groups[0], &r.groups[1]);
        assert!(m.privileged && !f.privileged);
        assert_eq!((m.count, m.selection.successes), (100, 60));
        assert_eq!(
            (m.true_positive_rate.successes, m.true_positive_rate.trials),
            (40, 50)
        );
        assert_eq!(
            (
                m.false_positive_rate.successes,
                m.false_positive_rate.trials
            ),
            (10, 40)
        );
        assert_eq!(m.with_outcome, 90);
        assert_eq!(
            (f.true_positive_rate.successes, f.true_positive_rate.trials),
            (24, 40)
        );
        assert_eq!(
            (
                f.false_positive_rate.successes,
                f.false_positive_rate.trials
            ),
            (6, 50)
        );
        let c = &r.comparisons[0];
        assert!(close(c.statistical_parity_difference.unwrap().value, -0.3));
        assert!(close(c.disparate_impact.unwrap().value, 0.5));
        assert!(close(c.equal_opportunity_difference.unwrap().value, -0.2));
        assert!(close(
            c.false_positive_rate_difference.unwrap().value,
            -0.13
        ));
        assert!(close(c.average_odds_difference.unwrap(), -0.165));
        // Wilson 95 %: SR_f = 30/100 → [0.218949, 0.395849]; SR_m = 60/100 →
        // [0.502003, 0.690599]. DI interval upper = 0.395849/0.502003 = 0.788541 < 0.8:
        // a significant four-fifths violation.
        let di = c.disparate_impact.unwrap();
        assert!((di.upper - 0.395_849 / 0.502_003).abs() < 1e-5, "{di:?}");
        assert_eq!(c.disparate_impact_verdict, Verdict::Fail);
        // SPD −0.3: Newcombe's interval lies below −0.1.
        assert_eq!(c.statistical_parity_verdict, Verdict::Fail);
        // EOD −0.2 on 40 and 50 positives: the interval reaches −0.1 → inconclusive.
        let eod = c.equal_opportunity_difference.unwrap();
        assert!(eod.upper > -0.1 && eod.lower < -0.1, "{eod:?}");
        assert_eq!(c.equal_opportunity_verdict, Verdict::Inconclusive);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(close(r.demographic_parity_range().unwrap(), 0.3));
        // max(|TPR range| 0.2, |FPR range| 0.13)
        assert!(close(r.equalized_odds_range().unwrap(), 0.2));
    }

    #[test]
    fn small_groups_raise_no_alarm() {
        // 3 of 10 against 6 of 10: the same rates as above, DI = 0.5, but Wilson's
        // intervals ([0.107791, 0.603222] and [0.312674, 0.831820]) give a ratio interval
        // reaching 0.603222/0.312674 = 1.93: inconclusive, not fail, even with the
        // minimum size lowered.
        let mut d = make("m", 10, 6, 0, 0, 0, 0);
        d.extend(make("f", 10, 3, 0, 0, 0, 0));
        let config = FairnessConfig {
            min_group_size: 10,
            ..Default::default()
        };
        let r = fairness(&attr(), d.iter().copied(), &config).unwrap();
        let c = &r.comparisons[0];
        assert!(close(c.disparate_impact.unwrap().value, 0.5));
        assert_eq!(c.disparate_impact_verdict, Verdict::Inconclusive);
        assert_eq!(c.statistical_parity_verdict, Verdict::Inconclusive);
        // No outcomes at all: equal opportunity has no data.
        assert_eq!(c.equal_opportunity_difference, None);
        assert_eq!(c.average_odds_difference, None);
        assert_eq!(c.equal_opportunity_verdict, Verdict::InsufficientData);
        // With the default minimum (30) nothing is judged.
        let r = fairness(&attr(), d.iter().copied(), &FairnessConfig::default()).unwrap();
        let c = &r.comparisons[0];
        assert_eq!(c.disparate_impact_verdict, Verdict::InsufficientData);
        assert_eq!(c.statistical_parity_verdict, Verdict::InsufficientData);
        assert_eq!(r.verdict, Verdict::InsufficientData);
    }

    #[test]
    fn identical_groups_pass() {
        let mut d = make("m", 200, 50, 30, 20, 10, 100);
        d.extend(make("f", 200, 50, 30, 20, 10, 100));
        let r = fairness(&attr(), d.iter().copied(), &FairnessConfig::default()).unwrap();
        let c = &r.comparisons[0];
        assert_eq!(c.statistical_parity_difference.unwrap().value, 0.0);
        assert_eq!(c.disparate_impact.unwrap().value, 1.0);
        assert_eq!(c.average_odds_difference, Some(0.0));
        assert_eq!(r.verdict, Verdict::Pass);
    }

    #[test]
    fn privileged_never_selected() {
        let mut d = make("m", 50, 0, 0, 0, 0, 0);
        d.extend(make("f", 50, 5, 0, 0, 0, 0));
        let r = fairness(&attr(), d.iter().copied(), &FairnessConfig::default()).unwrap();
        let c = &r.comparisons[0];
        assert_eq!(c.disparate_impact, None);
        assert_eq!(c.disparate_impact_verdict, Verdict::Pass);
        assert!(close(c.statistical_parity_difference.unwrap().value, 0.1));
    }

    #[test]
    fn several_unprivileged_groups() {
        let a = ProtectedAttribute {
            name: "age".into(),
            privileged: "25-60".into(),
            unprivileged: vec!["<25".into(), ">60".into()],
        };
        let mut d = make("25-60", 100, 50, 0, 0, 0, 0);
        d.extend(make("<25", 100, 45, 0, 0, 0, 0));
        d.extend(make(">60", 100, 20, 0, 0, 0, 0));
        let r = fairness(&a, d.iter().copied(), &FairnessConfig::default()).unwrap();
        assert_eq!(r.comparisons.len(), 2);
        assert_eq!(r.comparisons[0].unprivileged, "<25");
        assert!(close(r.comparisons[0].disparate_impact.unwrap().value, 0.9));
        assert_eq!(r.comparisons[0].disparate_impact_verdict, Verdict::Pass);
        assert!(close(r.comparisons[1].disparate_impact.unwrap().value, 0.4));
        assert_eq!(r.comparisons[1].disparate_impact_verdict, Verdict::Fail);
        assert!(close(r.demographic_parity_range().unwrap(), 0.3));
    }

    #[test]
    fn bad_specs_are_errors() {
        let mut a = attr();
        a.unprivileged.clear();
        assert!(fairness(&a, [], &FairnessConfig::default()).is_err());
        let mut a = attr();
        a.unprivileged.push("m".into());
        assert!(fairness(&a, [], &FairnessConfig::default()).is_err());
        let config = FairnessConfig {
            confidence: 1.5,
            ..Default::default()
        };
        assert!(fairness(&attr(), [], &config).is_err());
        // An empty window is not an error: everything is insufficient.
        let r = fairness(&attr(), [], &FairnessConfig::default()).unwrap();
        assert_eq!(r.verdict, Verdict::InsufficientData);
        assert_eq!(r.groups[0].selection.rate, None);
    }

    #[test]
    fn report_serialises() {
        let d = make("m", 40, 20, 0, 0, 0, 0);
        let r = fairness(&attr(), d.iter().copied(), &FairnessConfig::default()).unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["comparisons"][0]["disparate_impact_verdict"],
            "insufficient_data"
        );
        assert_eq!(json["groups"][0]["selection"]["rate"], 0.5);
        assert_eq!(
            json["groups"][1]["selection"]["rate"],
            serde_json::Value::Null
        );
    }
}
