//! Bounded windows of observations: the last `N`, those newer than a cut-off, or both.
//!
//! The proxy pushes each observation with its time as it happens and computes the
//! monitors over [`Window::iter`] or [`Window::values`]. Eviction is from the front, in
//! arrival order: times are expected not to go backwards (an observation pushed with an
//! earlier time than those before it stays until everything ahead of it has left).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// What a window keeps. With both limits an observation leaves when either says so;
/// with neither the window keeps everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowLimits {
    /// Keep at most this many observations (the most recent).
    pub max_len: Option<usize>,
    /// Keep observations no older than this many milliseconds before the newest time
    /// pushed (or the `now` given to [`Window::expire`]).
    pub max_age_ms: Option<i64>,
}

/// A bounded window of timed observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Window<T> {
    entries: VecDeque<(UnixMillis, T)>,
    limits: WindowLimits,
}

impl<T> Window<T> {
    /// An empty window with these limits, which stay fixed for its life
    /// (`WindowLimits::default()` keeps everything).
    pub fn new(limits: WindowLimits) -> Self {
        Self {
            entries: VecDeque::new(),
            limits,
        }
    }

    /// A window of the last `max_len` observations.
    pub fn last(max_len: usize) -> Self {
        Self::new(WindowLimits {
            max_len: Some(max_len),
            max_age_ms: None,
        })
    }

    /// A window of the observations of the last `max_age_ms` milliseconds.
    pub fn recent(max_age_ms: i64) -> Self {
        Self::new(WindowLimits {
            max_len: None,
            max_age_ms: Some(max_age_ms),
        })
    }

    /// The limits the window was made with.
    pub fn limits(&self) -> WindowLimits {
        self.limits
    }

    /// Adds an observation made at `time`, then evicts what the limits no longer allow
    /// (by age relative to `time`). Returns how many were evicted.
    pub fn push(&mut self, time: UnixMillis, item: T) -> usize {
        self.entries.push_back((time, item));
        let mut evicted = self.expire(time);
        if let Some(max) = self.limits.max_len {
            while self.entries.len() > max {
                self.entries.pop_front();
                evicted += 1;
            }
        }
        evicted
    }

    /// Evicts observations older than `now − max_age_ms` (none without an age limit).
    pub fn expire(&mut self, now: UnixMillis) -> usize {
        match self.limits.max_age_ms {
            Some(age) => self.evict_before(now.saturating_sub(age)),
            None => 0,
        }
    }

    /// Evicts observations made before `cutoff` from the front. Returns how many.
    pub fn evict_before(&mut self, cutoff: UnixMillis) -> usize {
        let mut evicted = 0;
        while self.entries.front().is_some_and(|(t, _)| *t < cutoff) {
            self.entries.pop_front();
            evicted += 1;
        }
        evicted
    }

    /// Observations held. Age is only applied on [`push`](Self::push) and
    /// [`expire`](Self::expire): call `expire(now)` first for the count as of now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the window holds no observation (see [`len`](Self::len) on age).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every observation; the limits stay.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Observations with their times, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (UnixMillis, &T)> + Clone + '_ {
        self.entries.iter().map(|(t, x)| (*t, x))
    }

    /// Observations without their times, oldest first.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &T> + Clone + '_ {
        self.entries.iter().map(|(_, x)| x)
    }

    /// The oldest and newest times, if any.
    pub fn span(&self) -> Option<(UnixMillis, UnixMillis)> {
        Some((self.entries.front()?.0, self.entries.back()?.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_keeps_the_last() {
        let mut w = Window::last(3);
        for i in 0..5 {
            w.push(i, i * 10);
        }
        assert_eq!(w.values().copied().collect::<Vec<_>>(), [20, 30, 40]);
        assert_eq!(w.span(), Some((2, 4)));
    }

    #[test]
    fn time_window_keeps_the_recent() {
        let mut w = Window::recent(100);
        w.push(0, 'a');
        w.push(50, 'b');
        assert_eq!(w.push(120, 'c'), 1); // 'a' is older than 120 − 100
        assert_eq!(w.values().copied().collect::<String>(), "bc");
        assert_eq!(w.expire(300), 2);
        assert!(w.is_empty());
    }

    #[test]
    fn both_limits() {
        let mut w = Window::new(WindowLimits {
            max_len: Some(2),
            max_age_ms: Some(10),
        });
        w.push(0, 1);
        w.push(1, 2);
        w.push(2, 3);
        assert_eq!(w.len(), 2);
        w.push(20, 4);
        assert_eq!(w.values().copied().collect::<Vec<_>>(), [4]);
        assert_eq!(w.evict_before(i64::MAX), 1);
        let mut none: Window<u8> = Window::new(WindowLimits::default());
        for i in 0..1000 {
            none.push(i, 0);
        }
        assert_eq!(none.len(), 1000);
        let mut zero = Window::last(0);
        zero.push(0, ());
        assert!(zero.is_empty());
    }
}
