//! The review queue's shared state: responses held for a reviewer's decision, the
//! protected groups flagged for review, and the monitors that join outcomes reported
//! later. The rules that send a prediction to review are the data plane's; the
//! reviewers' endpoints are the control plane's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use arc_swap::ArcSwap;
use serde_json::Value as Json;
use sidelight_audit::Review;
use tokio::sync::oneshot;

use crate::monitor::RouteMonitor;

/// A protected group flagged for review: on one route (the fairness monitor's, which
/// found the disparity on that route's traffic), or on every route (an admin's flag
/// without a route).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flag {
    /// The route whose predictions it sends to review; `None`: every route's.
    pub route: Option<String>,
    /// The protected feature.
    pub feature: String,
    /// The group: the feature's value (or band) as text.
    pub value: String,
}

impl Flag {
    /// A flag on `route`'s predictions only.
    pub fn on_route(route: &str, feature: &str, value: &str) -> Self {
        Self {
            route: Some(route.to_owned()),
            feature: feature.to_owned(),
            value: value.to_owned(),
        }
    }

    /// Whether it sends `route`'s predictions with `feature` = `value` to review.
    pub fn applies(&self, route: &str, feature: &str, value: &str) -> bool {
        self.route.as_deref().is_none_or(|r| r == route)
            && self.feature == feature
            && self.value == value
    }
}

/// Review state shared by the data plane and the admin API.
#[derive(Default)]
pub struct Reviews {
    /// Held responses waiting for a decision, by record id.
    waiters: Mutex<HashMap<String, oneshot::Sender<Review>>>,
    /// Protected groups currently flagged.
    flagged: ArcSwap<HashSet<Flag>>,
    /// Predictions sent to review by a flag, per route, since the monitor last logged
    /// them: so that the log says how many once, not a line per prediction.
    flag_hits: Mutex<HashMap<String, u64>>,
    /// The monitors that join reported outcomes to their windows.
    monitors: Mutex<Vec<Weak<RouteMonitor>>>,
}

impl std::fmt::Debug for Reviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviews").finish_non_exhaustive()
    }
}

impl Reviews {
    /// The protected groups flagged now.
    pub fn flagged_set(&self) -> Arc<HashSet<Flag>> {
        self.flagged.load_full()
    }

    /// Replaces the flagged groups (an admin's `PUT /api/v1/review-flags`).
    pub fn replace_flags(&self, groups: HashSet<Flag>) {
        self.flagged.store(Arc::new(groups));
    }

    /// Counts a prediction of `route` sent to review by a flag.
    pub fn count_flag_hit(&self, route: &str) {
        *self
            .flag_hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.to_owned())
            .or_insert(0) += 1;
    }

    /// The predictions of `route` sent to review by a flag since the last call.
    pub fn take_flag_hits(&self, route: &str) -> u64 {
        self.flag_hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(route)
            .unwrap_or(0)
    }

    /// Adds and removes flagged groups (the fairness monitor's); returns those of `add`
    /// that were not flagged already.
    pub fn update_flags(&self, add: &[Flag], remove: &[Flag]) -> Vec<Flag> {
        let mut added = Vec::new();
        self.flagged.rcu(|current| {
            added.clear();
            let mut set = HashSet::clone(current);
            for g in remove {
                set.remove(g);
            }
            for g in add {
                if set.insert(g.clone()) {
                    added.push(g.clone());
                }
            }
            set
        });
        added
    }

    /// Has `monitor` join the outcomes reported from now on.
    pub fn watch_outcomes(&self, monitor: &Arc<RouteMonitor>) {
        self.monitors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(monitor));
    }

    /// The monitors still running (copied out, so that none is called under the lock).
    fn monitors(&self) -> Vec<Arc<RouteMonitor>> {
        self.monitors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Passes a reported outcome to the monitors; returns how many rows they joined.
    pub fn join_outcome(&self, id: &str, outcome: &Json, row: Option<usize>) -> usize {
        self.monitors()
            .iter()
            .map(|m| m.join_outcome(id, outcome, row))
            .sum()
    }

    /// Passes protected attributes reported after the prediction to the monitors;
    /// returns how many rows they joined.
    pub fn join_attributes(&self, id: &str, attributes: &serde_json::Map<String, Json>) -> usize {
        self.monitors()
            .iter()
            .map(|m| m.join_attributes(id, attributes))
            .sum()
    }

    /// Registers a held response; the receiver completes with the decision.
    pub fn hold(&self, record_id: &str) -> oneshot::Receiver<Review> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record_id.to_owned(), tx);
        rx
    }

    /// Forgets a held response (its deadline passed).
    pub fn release(&self, record_id: &str) {
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(record_id);
    }

    /// Completes the held response of the decided record, if one waits.
    pub fn decided(&self, review: &Review) {
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&review.record_id);
        if let Some(tx) = waiter {
            let _ = tx.send(review.clone());
        }
    }
}
