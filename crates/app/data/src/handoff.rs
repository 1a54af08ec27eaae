//! How one layer hands a value to the layer above it: in the response's extensions,
//! which only hold `Clone` values, so the value travels in a shared slot that the first
//! [`Handoff::take`] empties.

use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
pub struct Handoff<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Handoff<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(Mutex::new(Some(value))))
    }

    /// The value, once.
    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}
