//! The compute pool: where explanations are computed, so that a costly request takes
//! its share of the pool's threads and never a data worker, which keeps forwarding
//! every other request. The pool is bounded twice: by its threads
//! (`server.compute_threads`), and by the jobs it accepts at once
//! (`server.compute_queue`); a request that finds it full is served unexplained at once
//! rather than queued, so the model's answer is never held up by other clients' work.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::oneshot;

/// A task on the queue: one chunk of a batch.
type Task = Box<dyn FnOnce() + Send>;

pub struct ComputePool {
    queue: Arc<Queue>,
    threads: usize,
    accepted: AtomicUsize,
    max_accepted: usize,
}

/// Which queue a job's tasks wait in: small requests (a few rows, a few KiB) are taken
/// before anything large, so that a client sending the costliest requests the limits
/// allow delays the others by at most the task each thread is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Small,
    Large,
}

/// The first-in-first-out queues every compute thread takes its next task from, small
/// first (a work-stealing pool would run a batch's own next chunk first, and a large
/// batch would hold its thread until done).
#[derive(Default)]
struct Queue {
    tasks: Mutex<[VecDeque<Task>; 2]>,
    ready: Condvar,
    stopped: AtomicBool,
}

impl Queue {
    fn push(&self, lane: Lane, task: Task) {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)[lane as usize].push_back(task);
        self.ready.notify_one();
    }

    /// The next task, waiting for one; `None` once the pool is dropped.
    fn pop(&self) -> Option<Task> {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.stopped.load(Ordering::Acquire) {
                return None;
            }
            if let Some(task) = tasks.iter_mut().find_map(VecDeque::pop_front) {
                return Some(task);
            }
            tasks = self
                .ready
                .wait(tasks)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
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
    pub fn new(threads: usize, max_accepted: usize) -> std::io::Result<Self> {
        let queue = Arc::new(Queue::default());
        let threads = threads.max(1);
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("sidelight-compute-{i}"))
                .spawn(move || {
                    while let Some(task) = queue.pop() {
                        // A bug in one explanation must cost that request its
                        // explanation only: the batch sees its chunk fail.
                        let run = std::panic::AssertUnwindSafe(task);
                        if std::panic::catch_unwind(run).is_err() {
                            tracing::error!("an explanation task panicked");
                        }
                    }
                })?;
        }
        Ok(Self {
            queue,
            threads,
            accepted: AtomicUsize::new(0),
            max_accepted: max_accepted.max(1),
        })
    }

    /// Runs `work` over `0..len` on the pool in chunks of `chunk`, and sends back every
    /// chunk's output in order; or refuses at once when the pool has accepted as many
    /// jobs as it may (one job per call, however many chunks). A batch has at most one
    /// chunk per thread in the pool's first-in-first-out queue, and queues its next one
    /// as one ends: that is what keeps the pool fair, as a large batch takes turns with
    /// the small requests that come after it instead of holding every thread until it
    /// is done. Should a chunk panic, nothing is sent (the receiver sees the sender
    /// dropped).
    pub fn submit_chunked<T, F>(
        self: &Arc<Self>,
        lane: Lane,
        len: usize,
        chunk: usize,
        work: F,
    ) -> Result<oneshot::Receiver<Vec<T>>, PoolFull>
    where
        T: Send + 'static,
        F: Fn(std::ops::Range<usize>) -> Vec<T> + Send + Sync + 'static,
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
        let chunk = chunk.max(1);
        let ranges: Vec<std::ops::Range<usize>> = (0..len.div_ceil(chunk))
            .map(|i| i * chunk..((i + 1) * chunk).min(len))
            .collect();
        let batch = Arc::new(Batch {
            parts: std::sync::Mutex::new((0..ranges.len()).map(|_| None).collect()),
            remaining: AtomicUsize::new(ranges.len()),
            next: AtomicUsize::new(0),
            ranges,
            lane,
            work: Box::new(work),
            done: std::sync::Mutex::new(Some(tx)),
            pool: self.clone(),
        });
        if batch.ranges.is_empty() {
            batch.finish();
            return Ok(rx);
        }
        for _ in 0..self.threads {
            Batch::queue_next(&batch);
        }
        Ok(rx)
    }
}

/// The chunks of one [`ComputePool::submit_chunked`] call.
struct Batch<T: Send + 'static> {
    parts: std::sync::Mutex<Vec<Option<Vec<T>>>>,
    /// Chunks not yet ended.
    remaining: AtomicUsize,
    /// The next chunk to queue.
    next: AtomicUsize,
    ranges: Vec<std::ops::Range<usize>>,
    lane: Lane,
    #[allow(clippy::type_complexity)]
    work: Box<dyn Fn(std::ops::Range<usize>) -> Vec<T> + Send + Sync>,
    done: std::sync::Mutex<Option<oneshot::Sender<Vec<T>>>>,
    pool: Arc<ComputePool>,
}

impl<T: Send + 'static> Batch<T> {
    /// Queues the batch's next chunk, if any is left.
    fn queue_next(batch: &Arc<Self>) {
        let index = batch.next.fetch_add(1, Ordering::AcqRel);
        let Some(range) = batch.ranges.get(index).cloned() else {
            return;
        };
        let part = Part(batch.clone());
        batch.pool.queue.push(
            batch.lane,
            Box::new(move || {
                // However the chunk ends (a panic included), the part's drop queues the next
                // chunk and counts this one; the last one out finishes the batch.
                let output = (part.0.work)(range);
                if let Ok(mut parts) = part.0.parts.lock() {
                    parts[index] = Some(output);
                }
            }),
        );
    }

    /// Sends the outputs in order when every chunk gave one, and frees the job's slot.
    fn finish(&self) {
        let _slot = Slot(&self.pool.accepted);
        let parts = match self.parts.lock() {
            Ok(mut parts) => std::mem::take(&mut *parts),
            Err(_) => return,
        };
        let whole: Option<Vec<Vec<T>>> = parts.into_iter().collect();
        let sender = self.done.lock().ok().and_then(|mut done| done.take());
        if let (Some(whole), Some(sender)) = (whole, sender) {
            let _ = sender.send(whole.into_iter().flatten().collect());
        }
    }
}

/// One chunk of a batch, queued or running.
struct Part<T: Send + 'static>(Arc<Batch<T>>);

impl<T: Send + 'static> Drop for Part<T> {
    fn drop(&mut self) {
        Batch::queue_next(&self.0);
        if self.0.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finish();
        }
    }
}

impl Drop for ComputePool {
    fn drop(&mut self) {
        self.queue.stopped.store(true, Ordering::Release);
        self.queue.ready.notify_all();
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
            .submit_chunked(Lane::Large, 1, 1, move |_| {
                let _ = wait.lock().unwrap().recv();
                vec![1]
            })
            .unwrap();
        let queued = pool
            .submit_chunked(Lane::Large, 3, 2, |r| r.collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            pool.submit_chunked(Lane::Large, 1, 1, |_| vec![3]).err(),
            Some(PoolFull)
        );
        release.send(()).unwrap();
        assert_eq!(blocked.await.unwrap(), [1]);
        assert_eq!(
            queued.await.unwrap(),
            [0, 1, 2],
            "chunks come back in order"
        );
        // A chunk that panics fails its batch and gives the slot back.
        let failed = pool
            .submit_chunked(Lane::Large, 4, 1, |r| {
                assert!(r.start != 2, "a bug in one chunk");
                vec![r.start]
            })
            .unwrap();
        assert!(failed.await.is_err());
        let nothing: Vec<u8> = pool
            .submit_chunked(Lane::Large, 0, 1, |_| vec![0u8])
            .unwrap()
            .await
            .unwrap();
        assert!(nothing.is_empty());
        assert_eq!(
            pool.submit_chunked(Lane::Large, 2, 5, |r| r.collect::<Vec<_>>())
                .unwrap()
                .await
                .unwrap(),
            [0, 1]
        );
    }

    #[tokio::test]
    async fn a_small_job_goes_before_a_large_batchs_queued_chunks() {
        let pool = Arc::new(ComputePool::new(1, 4).unwrap());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = order.clone();
        let large = pool
            .submit_chunked(Lane::Large, 20, 1, move |r| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                seen.lock().unwrap().push("large");
                r.collect::<Vec<_>>()
            })
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(12));
        let seen = order.clone();
        let small = pool
            .submit_chunked(Lane::Small, 1, 1, move |_| {
                seen.lock().unwrap().push("small");
                vec![0]
            })
            .unwrap();
        small.await.unwrap();
        large.await.unwrap();
        let order = order.lock().unwrap();
        let at = order.iter().position(|s| *s == "small").unwrap();
        assert!(
            at < 19,
            "the small job ran after {at} of the batch's 20 chunks"
        );
    }
}
