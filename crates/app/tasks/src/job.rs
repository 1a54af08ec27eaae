//! Every piece of background work starts one way: as a [`Job`] on a thread of its own,
//! with a name, a way to ask it to stop, and a line in `/readyz`.
//!
//! Jobs never run on the data plane's threads: a trainer's fit or a monitor's
//! computation takes whole seconds of CPU, and requests must not wait behind it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// One piece of background work: a route's trainer, its monitor, the fleet's poller,
/// the alert delivery, the retention purge.
pub trait Job: Send + Sync + 'static {
    /// A short, stable name, unique among the jobs: `trainer/<route>`, `retention`, …
    /// It names the thread and the job's entry in `/readyz`.
    fn name(&self) -> String;

    /// Does the work until [`Job::stop`] is called (or the work is done), on the
    /// job's own thread.
    fn run(&self);

    /// Asks [`Job::run`] to return soon. Called once, at shutdown; must not block.
    fn stop(&self);

    /// Whether the thread should yield the CPU to request threads (`SCHED_IDLE`): for
    /// jobs whose results may come late but must never delay a response.
    fn yields_cpu(&self) -> bool {
        false
    }
}

/// The jobs started, for shutdown and for `/readyz`.
#[derive(Default)]
pub struct Jobs {
    running: Vec<Running>,
}

struct Running {
    job: Arc<dyn Job>,
    name: String,
    thread: Option<JoinHandle<()>>,
    /// Set when `run` returned (or panicked).
    ended: Arc<AtomicBool>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.running.iter().map(|r| &r.name))
            .finish()
    }
}

/// The background jobs' names and whether each still runs.
#[derive(Debug, Clone, Default)]
pub struct JobsReadiness(Vec<(String, Arc<AtomicBool>)>);

impl JobsReadiness {
    /// `{"<name>": "running" | "ended"}`, for `/readyz` (informational: a job that ended
    /// does not make the proxy unready, the traffic still flows).
    pub fn to_json(&self) -> serde_json::Value {
        let jobs: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(name, ended)| {
                let state = if ended.load(Ordering::Relaxed) {
                    "ended"
                } else {
                    "running"
                };
                (name.clone(), serde_json::Value::from(state))
            })
            .collect();
        serde_json::Value::Object(jobs)
    }
}

/// Sets the flag when dropped: `run` returned or unwound.
struct EndedOnDrop(Arc<AtomicBool>);

impl Drop for EndedOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Jobs {
    /// Starts `job` on a thread named `sidelight-<name>`. A job whose thread cannot be
    /// started is logged and reported as ended in `/readyz`.
    pub fn start(&mut self, job: Arc<dyn Job>) {
        let name = job.name();
        let ended = Arc::new(AtomicBool::new(false));
        let (worker, flag) = (job.clone(), ended.clone());
        let thread = std::thread::Builder::new()
            .name(format!("sidelight-{}", name.replace('/', "-")))
            .spawn(move || {
                let _ended = EndedOnDrop(flag);
                if worker.yields_cpu() {
                    lower_priority();
                }
                worker.run();
            })
            .map_err(|error| tracing::error!(%error, job = %name, "cannot start a background job"))
            .ok();
        if thread.is_none() {
            ended.store(true, Ordering::Relaxed);
        }
        self.running.push(Running {
            job,
            name,
            thread,
            ended,
        });
    }

    /// A view of the jobs' states for `/readyz`, valid while they run.
    pub fn readiness(&self) -> JobsReadiness {
        JobsReadiness(
            self.running
                .iter()
                .map(|r| (r.name.clone(), r.ended.clone()))
                .collect(),
        )
    }

    /// Asks every job to stop, then waits up to `grace` for their threads. Returns the
    /// names of the jobs still running after it: a trainer in the middle of a large fit
    /// is left to end with the process (it writes its file atomically, or not at all).
    pub async fn stop(mut self, grace: Duration) -> Vec<String> {
        for r in &self.running {
            r.job.stop();
        }
        let threads: Vec<(String, JoinHandle<()>)> = self
            .running
            .iter_mut()
            .filter_map(|r| Some((r.name.clone(), r.thread.take()?)))
            .collect();
        let names: Vec<String> = threads.iter().map(|(n, _)| n.clone()).collect();
        let joined = futures_util::future::join_all(
            threads
                .into_iter()
                .map(|(_, t)| tokio::task::spawn_blocking(move || t.join())),
        );
        if tokio::time::timeout(grace, joined).await.is_ok() {
            return Vec::new();
        }
        self.running
            .iter()
            .filter(|r| !r.ended.load(Ordering::Relaxed) && names.contains(&r.name))
            .map(|r| r.name.clone())
            .collect()
    }
}

/// Runs an async job's work on a runtime of the job's own thread, so that async jobs
/// start, stop and report exactly as the blocking ones do.
pub fn block_on(name: &str, work: impl Future<Output = ()>) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => {
            tracing::error!(%error, job = name, "cannot start a background job's runtime")
        }
    }
}

/// Makes the calling thread yield the CPU to request threads: a computation over a large
/// window takes whole seconds of CPU, and the job must wait, not the requests. Under
/// `SCHED_IDLE` a waking request thread preempts it at once (under `SCHED_BATCH` with
/// nice 19 the requests' p99 still rose by half on 2 cores); a saturated machine then
/// gives the job only a sliver of CPU, so its results come later, never the responses.
/// Lowering a thread's priority needs no privilege.
fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    ) {
        tracing::debug!(error = ?e, "could not lower a background job's priority");
    }
}
