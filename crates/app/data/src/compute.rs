//! The compute pool: where explanations are computed, so that a costly request takes
//! its share of the pool's threads and never a data worker, which keeps forwarding
//! every other request. The pool is bounded twice: by its threads
//! (`server.compute_threads`), and by the jobs it accepts at once
//! (`server.compute_queue`); a request that finds it full is served unexplained at once
//! rather than queued, so the model's answer is never held up by other clients' work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::oneshot;

pub struct ComputePool {
    threads: rayon::ThreadPool,
    accepted: AtomicUsize,
    max_accepted: usize,
}

/// Set when the request that submitted a job stopped waiting for it; the job checks it
/// between rows and gives up.
#[derive(Clone, Default)]
pub struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The pool had no room for another job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

impl ComputePool {
    /// A pool of `threads` threads accepting at most `max_accepted` jobs at once
    /// (running or waiting).
    pub fn new(threads: usize, max_accepted: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("sidelight-compute-{i}"))
            // rayon aborts the process on a panic in a spawned job unless a handler
            // takes it: a bug in one explanation must cost that request its explanation
            // only (its sender is dropped, and the request passes through).
            .panic_handler(|_| tracing::error!("an explanation job panicked"))
            .build()?;
        Ok(Self {
            threads,
            accepted: AtomicUsize::new(0),
            max_accepted: max_accepted.max(1),
        })
    }

    /// Runs `job` on the pool, or refuses it when the pool has accepted as many jobs as
    /// it may. Inside the job, rayon's parallel iterators run on this pool (the job's
    /// thread is one of its workers) and spread over its idle threads.
    pub fn submit<T, F>(self: &Arc<Self>, job: F) -> Result<oneshot::Receiver<T>, PoolFull>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let taken = self
            .accepted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_accepted).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(PoolFull);
        }
        let (tx, rx) = oneshot::channel();
        let pool = self.clone();
        self.threads.spawn(move || {
            // Released however the job ends, a panic included.
            let _slot = Slot(&pool.accepted);
            let _ = tx.send(job());
        });
        Ok(rx)
    }
}

struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_frees_its_slots_when_jobs_end() {
        let pool = Arc::new(ComputePool::new(1, 2).unwrap());
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let blocked = pool
            .submit(move || {
                let _ = wait.lock().unwrap().recv();
                1
            })
            .unwrap();
        let queued = pool.submit(|| 2).unwrap();
        assert_eq!(pool.submit(|| 3).err(), Some(PoolFull));
        release.send(()).unwrap();
        assert_eq!(blocked.await.unwrap(), 1);
        assert_eq!(queued.await.unwrap(), 2);
        // A job that panics gives its slot back too.
        let _ = pool.submit(|| panic!("a bug in a job")).unwrap().await;
        assert_eq!(pool.submit(|| 4).unwrap().await.unwrap(), 4);
    }
}
