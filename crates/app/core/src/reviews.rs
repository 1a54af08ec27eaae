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

/// Review state shared by the data plane and the admin API.
#[derive(Default)]
pub struct Reviews {
    /// Held responses waiting for a decision, by record id.
    waiters: Mutex<HashMap<String, oneshot::Sender<Review>>>,
    /// Protected groups currently flagged: (feature, value as text).
    flagged: ArcSwap<HashSet<(String, String)>>,
    /// The monitors that join reported outcomes to their windows.
    monitors: Mutex<Vec<Weak<RouteMonitor>>>,
}

impl std::fmt::Debug for Reviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviews").finish_non_exhaustive()
    }
}

impl Reviews {
    /// The protected groups flagged now, as (feature, value).
    pub fn flagged_set(&self) -> Arc<HashSet<(String, String)>> {
        self.flagged.load_full()
    }

    /// Replaces the flagged groups (an admin's `PUT /api/v1/review-flags`).
    pub fn replace_flags(&self, groups: HashSet<(String, String)>) {
        self.flagged.store(Arc::new(groups));
    }

    /// Adds and removes flagged groups (the fairness monitor's); returns those of `add`
    /// that were not flagged already.
    pub fn update_flags(
        &self,
        add: &[(String, String)],
        remove: &[(String, String)],
    ) -> Vec<(String, String)> {
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
