//! Recent explanations, kept so that a client in `reference` mode can fetch them with
//! `GET /v1/explanations/{id}`. Bounded: the oldest are forgotten first. (The audit log
//! will keep every explanation durably; this is only the short-term cache in front of it.)

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

/// The id → explanation JSON cache.
pub(crate) struct RecentExplanations {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Bytes>,
    order: VecDeque<String>,
}

impl RecentExplanations {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn insert(&self, id: String, json: Bytes) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.by_id.insert(id.clone(), json).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_id.remove(&oldest);
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Bytes> {
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
