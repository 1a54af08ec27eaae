//! Exposure in rankings: of the top-`k` slots shown to the customers of one protected
//! group, the share that items of each item group receive. A recommender that shows
//! one group of customers mostly expensive items, or another mostly one brand, shows
//! here as shares that differ between customer groups.
//!
//! Each slot is counted as one trial, with a Wilson interval at the given confidence.
//! Slots of one ranking are not independent draws, so the interval is narrower than a
//! per-ranking one would be; it is a statement about the slots shown, as the counts
//! are.
//!
//! [`compare_exposure`] gives each unprivileged customer group's share of an item
//! group minus the privileged group's, with a Newcombe interval, and the verdict of
//! the statistical parity difference: [`Verdict::Fail`] only when the whole interval
//! lies beyond `max_difference`, [`Verdict::InsufficientData`] while either group has
//! fewer than `min_group_size` slots.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fairness::{Estimate, FairnessConfig, Verdict, difference_verdict};
use crate::stats::{Interval, newcombe_difference, wilson_interval};

/// One ranking shown: the customer's protected group, and the item group of each item
/// in the top slots, in rank order.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownRanking<'a> {
    /// The customer's group (`None`: not known, and not counted).
    pub customer_group: Option<&'a str>,
    /// Per shown slot, its item's group (`None`: the item is in no configured group).
    pub item_groups: Vec<Option<&'a str>>,
}

/// One item group's share of a customer group's slots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemShare {
    /// The item group.
    pub item_group: String,
    /// Slots its items took.
    pub slots: u64,
    /// `slots / total slots of the customer group`.
    pub share: f64,
    /// Wilson interval of the share; `None` below `min_slots`.
    pub interval: Option<Interval>,
}

/// The exposure of every item group to one customer group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupExposure {
    /// The customer group.
    pub customer_group: String,
    /// Rankings shown to it.
    pub rankings: u64,
    /// Slots shown to it, items in no configured group included.
    pub slots: u64,
    /// Per item group, in name order; items in no configured group are `"(other)"`.
    pub shares: Vec<ItemShare>,
}

/// Exposure per customer group, in group name order. Customer groups with fewer than
/// `min_slots` slots get no intervals (their shares are still given).
pub fn exposure(
    rankings: &[ShownRanking<'_>],
    confidence: f64,
    min_slots: u64,
) -> Vec<GroupExposure> {
    let mut by_group: BTreeMap<&str, (u64, BTreeMap<&str, u64>)> = BTreeMap::new();
    for ranking in rankings {
        let Some(group) = ranking.customer_group else {
            continue;
        };
        let (count, slots) = by_group.entry(group).or_default();
        *count += 1;
        for item in &ranking.item_groups {
            *slots.entry(item.unwrap_or("(other)")).or_default() += 1;
        }
    }
    by_group
        .into_iter()
        .map(|(group, (count, slots))| {
            let total: u64 = slots.values().sum();
            GroupExposure {
                customer_group: group.to_owned(),
                rankings: count,
                slots: total,
                shares: slots
                    .into_iter()
                    .map(|(item_group, n)| ItemShare {
                        item_group: item_group.to_owned(),
                        slots: n,
                        share: n as f64 / total.max(1) as f64,
                        interval: (total >= min_slots)
                            .then(|| wilson_interval(n, total, confidence))
                            .flatten(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// One item group's share for an unprivileged customer group against the privileged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExposureComparison {
    /// The item group.
    pub item_group: String,
    /// The unprivileged customer group (the first term of the difference).
    pub unprivileged: String,
    /// The privileged customer group.
    pub privileged: String,
    /// `share(unprivileged) − share(privileged)`, with its interval; `None` while a
    /// group has no slots.
    pub difference: Option<Estimate>,
    /// As the statistical parity difference's.
    pub verdict: Verdict,
}

/// Compares every unprivileged customer group's exposure to the privileged group's,
/// item group by item group (every item group either saw). Customer groups that were
/// shown nothing are compared as having no slots (insufficient data).
pub fn compare_exposure(
    groups: &[GroupExposure],
    privileged: &str,
    unprivileged: &[String],
    config: &FairnessConfig,
) -> Vec<ExposureComparison> {
    let find = |name: &str| groups.iter().find(|g| g.customer_group == name);
    let share = |group: Option<&GroupExposure>, item: &str| -> (u64, u64) {
        group.map_or((0, 0), |g| {
            let slots = g
                .shares
                .iter()
                .find(|s| s.item_group == item)
                .map_or(0, |s| s.slots);
            (slots, g.slots)
        })
    };
    let p = find(privileged);
    let mut out = Vec::new();
    for u_name in unprivileged {
        let u = find(u_name);
        let mut items: Vec<&str> = [u, p]
            .iter()
            .flatten()
            .flat_map(|g| g.shares.iter().map(|s| s.item_group.as_str()))
            .collect();
        items.sort_unstable();
        items.dedup();
        for item in items {
            let (su, nu) = share(u, item);
            let (sp, np) = share(p, item);
            let difference = match (
                wilson_interval(su, nu, config.confidence),
                wilson_interval(sp, np, config.confidence),
            ) {
                (Some(wu), Some(wp)) if nu > 0 && np > 0 => {
                    let (ru, rp) = (su as f64 / nu as f64, sp as f64 / np as f64);
                    let ci = newcombe_difference(ru, wu, rp, wp);
                    Some(Estimate {
                        value: ru - rp,
                        lower: ci.lower,
                        upper: ci.upper,
                    })
                }
                _ => None,
            };
            let min = config.min_group_size.max(1);
            out.push(ExposureComparison {
                item_group: item.to_owned(),
                unprivileged: u_name.clone(),
                privileged: privileged.to_owned(),
                difference,
                verdict: difference_verdict(difference, nu >= min && np >= min, config),
            });
        }
    }
    out
}

/// Exposure of one protected attribute's customer groups, compared and judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExposureCheck {
    /// Per customer group, each item group's share.
    pub groups: Vec<GroupExposure>,
    /// Per unprivileged customer group and item group, against the privileged group.
    pub comparisons: Vec<ExposureComparison>,
    /// The worst of the comparisons' verdicts ([`Verdict::Pass`] with none).
    pub verdict: Verdict,
}

/// [`exposure`] of `rankings`, then [`compare_exposure`], then the worst verdict: what
/// the monitor and the report both show.
pub fn check_exposure(
    rankings: &[ShownRanking<'_>],
    privileged: &str,
    unprivileged: &[String],
    config: &FairnessConfig,
) -> ExposureCheck {
    let groups = exposure(rankings, config.confidence, config.min_group_size);
    let comparisons = compare_exposure(&groups, privileged, unprivileged, config);
    let verdict = comparisons
        .iter()
        .map(|c| c.verdict)
        .fold(Verdict::Pass, Verdict::worst);
    ExposureCheck {
        groups,
        comparisons,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shares_are_counted_per_customer_group() {
        let shown = [
            ShownRanking {
                customer_group: Some("18-25"),
                item_groups: vec![Some("budget"), Some("budget"), Some("premium")],
            },
            ShownRanking {
                customer_group: Some("26+"),
                item_groups: vec![Some("premium"), None],
            },
            ShownRanking {
                customer_group: None,
                item_groups: vec![Some("premium")],
            },
        ];
        let out = exposure(&shown, 0.95, 1);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].customer_group, "18-25");
        assert_eq!(out[0].slots, 3);
        assert_eq!(out[0].shares[0].item_group, "budget");
        assert_eq!(out[0].shares[0].slots, 2);
        assert!((out[0].shares[0].share - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(out[1].shares[0].item_group, "(other)");
        // Below the minimum, shares without intervals.
        assert!(exposure(&shown, 0.95, 10)[0].shares[0].interval.is_none());
    }

    #[test]
    fn a_group_shown_one_brand_far_more_often_fails() {
        let mut shown = Vec::new();
        for _ in 0..100 {
            shown.push(ShownRanking {
                customer_group: Some("p"),
                item_groups: vec![Some("premium"), Some("budget")],
            });
            shown.push(ShownRanking {
                customer_group: Some("u"),
                item_groups: vec![Some("budget"), Some("budget")],
            });
        }
        let groups = exposure(&shown, 0.95, 1);
        let config = FairnessConfig::default();
        let compared = compare_exposure(&groups, "p", &["u".to_owned()], &config);
        let premium = compared.iter().find(|c| c.item_group == "premium").unwrap();
        let d = premium.difference.unwrap();
        assert!((d.value + 0.5).abs() < 1e-12, "{d:?}");
        assert_eq!(premium.verdict, Verdict::Fail);
        // Too few slots for a verdict.
        let few = compare_exposure(
            &exposure(&shown[..4], 0.95, 1),
            "p",
            &["u".to_owned()],
            &config,
        );
        assert!(few.iter().all(|c| c.verdict == Verdict::InsufficientData));
        // A customer group never shown anything is compared as having no slots.
        let absent = compare_exposure(&groups, "p", &["nobody".to_owned()], &config);
        assert!(absent.iter().all(|c| c.difference.is_none()));
    }

    proptest! {
        /// Against counting by hand: every customer group's shares add up to one, each
        /// share is its slots over the group's slots, and each interval holds its share.
        #[test]
        fn shares_add_up_and_match_the_counts(
            raw in proptest::collection::vec((0u8..3, proptest::collection::vec(0u8..4, 0..5)), 0..40),
        ) {
            let customers = ["a", "b", "c"];
            let items = [Some("x"), Some("y"), Some("z"), None];
            let shown: Vec<ShownRanking<'_>> = raw
                .iter()
                .map(|(c, slots)| ShownRanking {
                    customer_group: Some(customers[*c as usize]),
                    item_groups: slots.iter().map(|i| items[*i as usize]).collect(),
                })
                .collect();
            for group in exposure(&shown, 0.95, 1) {
                let mine: Vec<&ShownRanking<'_>> = shown
                    .iter()
                    .filter(|r| r.customer_group == Some(group.customer_group.as_str()))
                    .collect();
                prop_assert_eq!(group.rankings, mine.len() as u64);
                let total: usize = mine.iter().map(|r| r.item_groups.len()).sum();
                prop_assert_eq!(group.slots, total as u64);
                if total > 0 {
                    let sum: f64 = group.shares.iter().map(|s| s.share).sum();
                    prop_assert!((sum - 1.0).abs() < 1e-9);
                }
                for share in &group.shares {
                    let name = share.item_group.as_str();
                    let by_hand = mine
                        .iter()
                        .flat_map(|r| &r.item_groups)
                        .filter(|g| g.unwrap_or("(other)") == name)
                        .count() as u64;
                    prop_assert_eq!(share.slots, by_hand);
                    if let Some(interval) = share.interval {
                        prop_assert!(interval.contains(share.share));
                    }
                }
            }
        }
    }
}
