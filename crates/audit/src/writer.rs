//! The group-commit writer: one thread owns the store and commits queued records in
//! batches, one transaction per batch.

use crate::record::Record;
use crate::store::{AuditStore, StoreError};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

/// How durable a record must be before the caller goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The [`Ack`] completes only after the batch holding the record is committed.
    Sync,
    /// The [`Ack`] is complete at once; the record is committed later.
    Async,
}

/// What to do with an `Async` record when the queue is full. `Sync` records always
/// wait for room: their caller waits for the commit anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Wait for room (backpressure).
    Block,
    /// Drop the record and count it.
    Shed,
}

/// Writer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Queue capacity in records (at least 1).
    pub queue_capacity: usize,
    /// Most records per transaction (at least 1).
    pub max_batch: usize,
    /// Full-queue policy for `Async` records.
    pub policy: QueuePolicy,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 10_000,
            max_batch: 512,
            policy: QueuePolicy::Block,
        }
    }
}

/// A point-in-time copy of the writer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterMetrics {
    /// Records accepted but not yet committed or failed (not yet durable).
    pub queued: u64,
    /// Records committed.
    pub committed: u64,
    /// `Async` records dropped because the queue was full.
    pub shed: u64,
    /// Records whose batch failed to commit.
    pub failed: u64,
    /// Transactions committed.
    pub batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    committed: AtomicU64,
    shed: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
}

/// Why a write was not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The batch holding the record failed to commit.
    #[error("audit store write failed: {0}")]
    Store(Arc<StoreError>),
    /// The writer stopped before the record was committed.
    #[error("audit writer stopped")]
    Stopped,
    /// The record was to be made on the writer's thread, and making it failed (a bug:
    /// only this record is lost, the batch and the writer go on).
    #[error("audit record could not be made")]
    Build,
}

/// A record to append: made already, or made on the writer's thread just before its
/// batch is sealed, so that a request hands over what it has and goes on (the privacy
/// policy, the attributions' JSON, sealing and hashing all happen there).
pub enum Pending {
    /// The record as it is (boxed: a record is large, and queued jobs move).
    Ready(Box<Record>),
    /// Makes the record; its `id` must be the one given, which the writer needs before.
    Deferred {
        /// The record's id.
        id: String,
        /// Makes it.
        build: Box<dyn FnOnce() -> Record + Send>,
    },
}

impl Pending {
    /// A record made on the writer's thread by `build`.
    pub fn deferred(id: String, build: impl FnOnce() -> Record + Send + 'static) -> Self {
        Self::Deferred {
            id,
            build: Box::new(build),
        }
    }

    /// The record's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Ready(record) => &record.id,
            Self::Deferred { id, .. } => id,
        }
    }

    /// The record, made now if deferred; `None` if making it panicked or made a record
    /// with another id.
    fn make(self) -> Option<Record> {
        match self {
            Self::Ready(record) => Some(*record),
            // The caller was told this id: a record made under another is refused.
            Self::Deferred { id, build } => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
                    .ok()
                    .filter(|record| record.id == id)
            }
        }
    }
}

impl From<Record> for Pending {
    fn from(record: Record) -> Self {
        Self::Ready(Box::new(record))
    }
}

impl std::fmt::Debug for Pending {
    /// The id only: a record's content never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Ready(_) => "Ready",
            Self::Deferred { .. } => "Deferred",
        };
        f.debug_struct("Pending")
            .field("kind", &kind)
            .field("id", &self.id())
            .finish()
    }
}

/// Why a record was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue was full and the policy is `Shed`; the record was counted and dropped.
    #[error("audit queue full: record shed")]
    Shed,
    /// The writer has stopped.
    #[error("audit writer stopped")]
    Stopped,
    /// Only from [`Writer::try_submit`]: the queue is full and the policy is `Block`; the
    /// record is handed back so the caller can wait somewhere it may block.
    #[error("audit queue full")]
    Full(Box<Pending>),
}

#[derive(Debug, Default)]
struct CompletionState {
    result: Option<Result<u64, WriteError>>,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct Completion {
    state: Mutex<CompletionState>,
    done: Condvar,
}

impl Completion {
    fn complete(&self, result: Result<u64, WriteError>) {
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if s.result.is_none() {
                s.result = Some(result);
            }
            s.waker.take()
        };
        self.done.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Acknowledgement of a submitted record.
///
/// For `Sync` records, [`Ack::wait`] blocks until the record's batch is committed and
/// returns its seq; `Ack` is also a `Future` with the same output, so async callers can
/// `.await` it without this crate depending on a runtime. For `Async` records both
/// complete at once with `Ok(None)`.
#[derive(Debug)]
pub struct Ack {
    completion: Option<Arc<Completion>>,
}

impl Ack {
    /// Whether the record is known to be committed or failed (always true for `Async`).
    pub fn is_done(&self) -> bool {
        self.completion.as_ref().is_none_or(|c| {
            c.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .result
                .is_some()
        })
    }

    /// Blocks until the record is committed (`Ok(Some(seq))`) or its batch failed.
    /// `Async` records return `Ok(None)` at once.
    pub fn wait(self) -> Result<Option<u64>, WriteError> {
        let Some(c) = self.completion else {
            return Ok(None);
        };
        let mut s = c.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = s.result.take() {
                return r.map(Some);
            }
            s = c.done.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Future for Ack {
    type Output = Result<Option<u64>, WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(c) = &self.completion else {
            return Poll::Ready(Ok(None));
        };
        let mut s = c.state.lock().unwrap_or_else(PoisonError::into_inner);
        match s.result.take() {
            Some(r) => Poll::Ready(r.map(Some)),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

struct Job {
    record: Option<Pending>,
    completion: Option<Arc<Completion>>,
}

impl Drop for Job {
    /// A job dropped without being completed (writer thread panicked or stopped) fails
    /// its ack instead of leaving the caller waiting forever.
    fn drop(&mut self) {
        if let Some(c) = self.completion.take() {
            c.complete(Err(WriteError::Stopped));
        }
    }
}

/// The group-commit writer. Dropping it (or [`Writer::shutdown`]) commits what is queued
/// and stops the thread.
pub struct Writer {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    policy: QueuePolicy,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("policy", &self.policy)
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl Writer {
    /// Starts the writer thread, which takes ownership of `store`.
    pub fn start<S: AuditStore + 'static>(store: S, config: WriterConfig) -> std::io::Result<Self> {
        let (tx, rx) = bounded(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let max_batch = config.max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("sidelight-audit-writer".to_owned())
            .spawn(move || run(store, &rx, max_batch, &c))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            policy: config.policy,
        })
    }

    /// Queues a record without ever blocking: where [`submit`](Self::submit) would wait
    /// for room (policy `Block`), this returns [`SubmitError::Full`] with the record.
    /// An async runtime's thread must not block; it hands a full-queue record to a thread
    /// that may.
    pub fn try_submit(
        &self,
        record: impl Into<Pending>,
        durability: Durability,
    ) -> Result<Ack, SubmitError> {
        let tx = self.tx.as_ref().ok_or(SubmitError::Stopped)?;
        let may_wait = self.policy == QueuePolicy::Block || durability == Durability::Sync;
        if may_wait && tx.is_full() {
            return Err(SubmitError::Full(Box::new(record.into())));
        }
        // Room now, or a policy that never waits: `submit` will not block (a race with
        // another sender can at worst make it wait for one batch).
        self.submit(record, durability)
    }

    /// Queues a record. With `Sync`, the returned [`Ack`] completes after the commit.
    pub fn submit(
        &self,
        record: impl Into<Pending>,
        durability: Durability,
    ) -> Result<Ack, SubmitError> {
        let tx = self.tx.as_ref().ok_or(SubmitError::Stopped)?;
        let completion = match durability {
            Durability::Sync => Some(Arc::new(Completion::default())),
            Durability::Async => None,
        };
        let job = Job {
            record: Some(record.into()),
            completion: completion.clone(),
        };
        self.counters.queued.fetch_add(1, Ordering::SeqCst);
        let sent = match (durability, self.policy) {
            (Durability::Async, QueuePolicy::Shed) => match tx.try_send(job) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    self.counters.queued.fetch_sub(1, Ordering::SeqCst);
                    self.counters.shed.fetch_add(1, Ordering::SeqCst);
                    return Err(SubmitError::Shed);
                }
                Err(TrySendError::Disconnected(_)) => Err(()),
            },
            _ => tx.send(job).map_err(|_| ()),
        };
        match sent {
            Ok(()) => Ok(Ack { completion }),
            Err(()) => {
                self.counters.queued.fetch_sub(1, Ordering::SeqCst);
                Err(SubmitError::Stopped)
            }
        }
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> WriterMetrics {
        let c = &self.counters;
        WriterMetrics {
            queued: c.queued.load(Ordering::SeqCst),
            committed: c.committed.load(Ordering::SeqCst),
            shed: c.shed.load(Ordering::SeqCst),
            failed: c.failed.load(Ordering::SeqCst),
            batches: c.batches.load(Ordering::SeqCst),
        }
    }

    /// Commits everything queued, then stops the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            // A panic in the writer thread has already failed its pending acks (dropped
            // jobs complete with `Stopped`); nothing more to report here.
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<S: AuditStore>(mut store: S, rx: &Receiver<Job>, max_batch: usize, counters: &Counters) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    let mut records: Vec<Record> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        records.clear();
        // Records still to be made are made here, off the requests' threads; one whose
        // making fails is answered alone and the batch goes on without it.
        jobs.retain_mut(|job| match job.record.take().and_then(Pending::make) {
            Some(record) => {
                records.push(record);
                true
            }
            None => {
                counters.failed.fetch_add(1, Ordering::SeqCst);
                counters.queued.fetch_sub(1, Ordering::SeqCst);
                if let Some(c) = job.completion.take() {
                    c.complete(Err(WriteError::Build));
                }
                false
            }
        });
        if jobs.is_empty() {
            continue;
        }
        let n = u64::try_from(jobs.len()).unwrap_or(u64::MAX);
        match store.append_batch(&records) {
            Ok(seqs) => {
                counters.committed.fetch_add(n, Ordering::SeqCst);
                counters.batches.fetch_add(1, Ordering::SeqCst);
                counters.queued.fetch_sub(n, Ordering::SeqCst);
                for (mut job, seq) in jobs.drain(..).zip(seqs) {
                    if let Some(c) = job.completion.take() {
                        c.complete(Ok(seq));
                    }
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                counters.failed.fetch_add(n, Ordering::SeqCst);
                counters.queued.fetch_sub(n, Ordering::SeqCst);
                for mut job in jobs.drain(..) {
                    if let Some(c) = job.completion.take() {
                        c.complete(Err(WriteError::Store(Arc::clone(&e))));
                    }
                }
            }
        }
    }
}
