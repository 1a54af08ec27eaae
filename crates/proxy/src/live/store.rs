//! Short-term stores keyed by request id, bounded: the oldest entries are forgotten
//! first. (The audit log will keep every explanation durably; these are only caches in
//! front of it.)
//!
//! - [`RecentExplanations`]: the explanation JSON of requests in `reference` mode, for
//!   `GET /v1/explanations/{id}`;
//! - [`RecentRequests`]: the rows and surrogate attributions of every explained request,
//!   so that the probe check can ask the real model about them later. It holds payload
//!   values in memory only, as the training window does; nothing here is ever logged.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sidelight_explain::Value;

use super::RouteLive;

/// The id → explanation JSON cache.
pub(crate) type RecentExplanations = Recent<Bytes>;

/// The id → explained request cache of the probe check.
pub(crate) type RecentRequests = Recent<Arc<StoredRequest>>;

/// An explained request, as the probe check needs it.
pub(crate) struct StoredRequest {
    pub(crate) route: Arc<RouteLive>,
    /// The path and query the client sent, which the probe sends its rows to.
    pub(crate) target: String,
    /// The surrogate's feature names; every row is in this order.
    pub(crate) names: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
    /// One per row.
    pub(crate) explanations: Vec<StoredExplanation>,
}

/// The surrogate's attribution of one row, as it was attached.
pub(crate) struct StoredExplanation {
    pub(crate) surrogate_version: u64,
    /// The output explained (the class, for class probabilities).
    pub(crate) output: usize,
    /// Whether the attributions add up in logit space (probability outputs).
    pub(crate) logit: bool,
    pub(crate) base_value: f64,
    /// Per feature, in [`StoredRequest::names`] order.
    pub(crate) contributions: Vec<f64>,
}

/// A bounded id → `T` map that forgets the oldest insertions first.
pub(crate) struct Recent<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

struct Inner<T> {
    by_id: HashMap<String, T>,
    order: VecDeque<String>,
}

impl<T: Clone> Recent<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                by_id: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn insert(&self, id: String, value: T) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.by_id.insert(id.clone(), value).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_id.remove(&oldest);
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<T> {
        self.inner.lock().ok()?.by_id.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_explanations_are_forgotten_first() {
        let store = RecentExplanations::new(2);
        store.insert("a".into(), Bytes::from_static(b"1"));
        store.insert("b".into(), Bytes::from_static(b"2"));
        store.insert("c".into(), Bytes::from_static(b"3"));
        assert_eq!(store.get("a"), None);
        assert_eq!(store.get("b").as_deref(), Some(&b"2"[..]));
        assert_eq!(store.get("c").as_deref(), Some(&b"3"[..]));
    }
}
