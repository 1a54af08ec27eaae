//! The retention purge (`audit.retention`): erases payloads older than the window at
//! start and then every hour (or every tenth of the window, if shorter), with a
//! connection of its own, so that a long purge never holds up the writer or a query.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use sidelight_audit::Erasure;
use sidelight_core::audit::RetentionPurge;
use sidelight_core::clock::now_ms;

/// How often the purge runs, at most.
const EVERY: Duration = Duration::from_secs(3600);

/// The purge as a background job.
pub struct RetentionJob {
    purge: Mutex<Option<RetentionPurge>>,
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl RetentionJob {
    pub fn new(purge: RetentionPurge) -> Self {
        Self {
            purge: Mutex::new(Some(purge)),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
        }
    }
}

impl crate::job::Job for RetentionJob {
    fn name(&self) -> String {
        "audit-retention".to_owned()
    }

    fn run(&self) {
        let Some(mut purge) = self
            .purge
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let window = purge.window;
        let every = (window / 10).clamp(Duration::from_secs(1), EVERY);
        loop {
            let cutoff =
                now_ms().saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
            match purge.store.erase(&Erasure::Before(cutoff), now_ms()) {
                Ok(0) => {}
                Ok(n) => {
                    purge.count_erased(n);
                    tracing::info!(records = n, retention = ?window, "audit retention erased old payloads");
                }
                Err(error) => {
                    tracing::warn!(%error, kind = error.kind(), "audit retention purge failed; retrying later");
                }
            }
            if let Some(fleet) = &purge.fleet {
                if let Err(error) = fleet.erase_training_before(cutoff) {
                    tracing::warn!(%error, kind = error.kind(), "retention of the fleet's training rows failed; retrying later");
                }
            }
            let stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
            let (stopping, _) = self
                .wake
                .wait_timeout_while(stopping, every, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            if *stopping {
                return;
            }
        }
    }

    fn stop(&self) {
        *self.stopping.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}
