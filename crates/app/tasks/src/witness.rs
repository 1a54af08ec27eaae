//! The witness publisher (`audit.witness`): every `audit.witness_interval` it appends
//! the head of this proxy's chain to the witness file, when the head moved; once more
//! when the proxy stops, so that a clean shutdown's tail is witnessed too.

use std::sync::{Condvar, Mutex, PoisonError};

use sidelight_core::audit::WitnessPublisher;

/// The publisher as a background job.
pub struct WitnessJob {
    publisher: Mutex<Option<WitnessPublisher>>,
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl WitnessJob {
    pub fn new(publisher: WitnessPublisher) -> Self {
        Self {
            publisher: Mutex::new(Some(publisher)),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
        }
    }
}

impl crate::job::Job for WitnessJob {
    fn name(&self) -> String {
        "audit-witness".to_owned()
    }

    fn run(&self) {
        let Some(mut publisher) = self
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let every = publisher.interval;
        loop {
            publisher.publish();
            let stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
            let (stopping, _) = self
                .wake
                .wait_timeout_while(stopping, every, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            if *stopping {
                publisher.publish();
                return;
            }
        }
    }

    fn stop(&self) {
        *self.stopping.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}
