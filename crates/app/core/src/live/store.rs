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
pub type RecentExplanations = Recent<Bytes>;

/// The id → explained request cache of the probe check.
pub type RecentRequests = Recent<Arc<StoredRequest>>;

/// An explained request, as the probe check needs it.
pub struct StoredRequest {
    pub route: Arc<RouteLive>,
    /// The path and query the client sent, which the probe sends its rows to.
    pub target: String,
    /// The surrogate's feature names; every row is in this order.
    pub names: Vec<String>,
    pub rows: Arc<Vec<Vec<Value>>>,
    /// One per row.
    pub explanations: Vec<StoredExplanation>,
}

/// The surrogate's attribution of one row, as it was attached.
pub struct StoredExplanation {
    pub surrogate_version: u64,
    /// The output explained (the class, for class probabilities).
    pub output: usize,
    /// Whether the attributions add up in logit space (probability outputs).
    pub logit: bool,
    pub base_value: f64,
    /// Per feature, in [`StoredRequest::names`] order.
    pub contributions: Vec<f64>,
}

/// A bounded id → `T` map that forgets the oldest insertions first: at most `capacity`
/// entries, and at most `max_weight` in all (each entry weighs what its inserter says,
/// so that a few huge batches cannot hold much more memory than many small ones).
pub struct Recent<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    max_weight: usize,
}

struct Inner<T> {
    /// Value, weight, and the pseudonymous subject it belongs to.
    by_id: HashMap<String, (T, usize, Option<Arc<str>>)>,
    order: VecDeque<String>,
    weight: usize,
}

impl<T: Clone> Recent<T> {
    pub fn new(capacity: usize) -> Self {
        Self::with_max_weight(capacity, usize::MAX)
    }

    pub fn with_max_weight(capacity: usize, max_weight: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                by_id: HashMap::new(),
                order: VecDeque::new(),
                weight: 0,
            }),
            capacity: capacity.max(1),
            max_weight,
        }
    }

    pub fn insert(&self, id: String, value: T, subject: Option<Arc<str>>) {
        self.insert_weighted(id, value, 0, subject);
    }

    pub fn insert_weighted(&self, id: String, value: T, weight: usize, subject: Option<Arc<str>>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        self.put(&mut inner, id, value, weight, subject);
    }

    fn put(
        &self,
        inner: &mut Inner<T>,
        id: String,
        value: T,
        weight: usize,
        subject: Option<Arc<str>>,
    ) {
        inner.weight = inner.weight.saturating_add(weight);
        match inner.by_id.insert(id.clone(), (value, weight, subject)) {
            Some((_, old, _)) => inner.weight -= old,
            None => inner.order.push_back(id),
        }
        // The newest entry always stays, even if it alone is over the weight limit.
        while inner.order.len() > self.capacity
            || (inner.weight > self.max_weight && inner.order.len() > 1)
        {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some((_, w, _)) = inner.by_id.remove(&oldest) {
                inner.weight -= w;
            }
        }
    }

    /// Inserts `value` under `id` unless something is kept under `id` already (which
    /// stays): an id is never taken over. Whether it was inserted.
    pub fn insert_new(
        &self,
        id: String,
        value: T,
        weight: usize,
        subject: Option<Arc<str>>,
    ) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        // Checked and inserted under one lock: two inserts of one id cannot both win.
        if inner.by_id.contains_key(&id) {
            return false;
        }
        self.put(&mut inner, id, value, weight, subject);
        true
    }

    /// Forgets every entry of a subject; returns how many there were.
    pub fn forget_subject(&self, subject: &str) -> usize {
        let Ok(mut inner) = self.inner.lock() else {
            return 0;
        };
        let gone: Vec<String> = inner
            .by_id
            .iter()
            .filter(|(_, (_, _, s))| s.as_deref() == Some(subject))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            if let Some((_, w, _)) = inner.by_id.remove(id) {
                inner.weight -= w;
            }
        }
        inner.order.retain(|id| !gone.contains(id));
        gone.len()
    }

    pub fn get(&self, id: &str) -> Option<T> {
        self.inner
            .lock()
            .ok()?
            .by_id
            .get(id)
            .map(|(v, _, _)| v.clone())
    }

    /// The newest entry `wanted` accepts.
    pub fn newest(&self, wanted: impl Fn(&T) -> bool) -> Option<T> {
        let inner = self.inner.lock().ok()?;
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.by_id.get(id))
            .map(|(v, _, _)| v)
            .find(|v| wanted(v))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_explanations_are_forgotten_first() {
        let store = RecentExplanations::new(2);
        store.insert("a".into(), Bytes::from_static(b"1"), None);
        store.insert("b".into(), Bytes::from_static(b"2"), None);
        store.insert("c".into(), Bytes::from_static(b"3"), None);
        assert_eq!(store.get("a"), None);
        assert_eq!(store.get("b").as_deref(), Some(&b"2"[..]));
        assert_eq!(store.get("c").as_deref(), Some(&b"3"[..]));
    }

    #[test]
    fn heavy_entries_push_out_old_ones() {
        let store = Recent::with_max_weight(10, 5);
        store.insert_weighted("a".into(), 1, 2, None);
        store.insert_weighted("b".into(), 2, 2, None);
        store.insert_weighted("c".into(), 3, 2, None);
        assert_eq!(store.get("a"), None);
        assert_eq!((store.get("b"), store.get("c")), (Some(2), Some(3)));
        // Replacing an entry replaces its weight.
        store.insert_weighted("c".into(), 4, 1, None);
        store.insert_weighted("d".into(), 5, 2, None);
        assert_eq!(
            (store.get("b"), store.get("c"), store.get("d")),
            (Some(2), Some(4), Some(5))
        );
        // One entry over the limit on its own is still kept: it is the newest.
        store.insert_weighted("e".into(), 6, 100, None);
        assert_eq!((store.get("d"), store.get("e")), (None, Some(6)));
    }

    #[test]
    fn an_id_once_taken_is_never_taken_over() {
        let store = Recent::with_max_weight(10, 100);
        assert!(store.insert_new("a".into(), 1, 1, None));
        assert!(!store.insert_new("a".into(), 2, 1, None));
        assert_eq!(store.get("a"), Some(1));
    }
}
