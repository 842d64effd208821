//! The thread backend: each worker is an OS thread, and a WASM attempt runs on it as a sync
//! instance; the epoch stops it within one tick (docs/queues.md §10.3). The embedder's native
//! closures run on these workers too (the queue runs them inline).

use std::sync::Arc;

use crate::attempt::AttemptReport;
use crate::engine::WarmPool;
use crate::queue::backend::{
    AcceptsNative, Attempt, Backend, BackendError, BlockingRunner, QueueSettings, Runner,
};
use crate::queue::{Queue, QueueBuilder};

/// A queue on OS threads: WASM tasks as sync instances, plus the embedder's blocking
/// closures.
///
/// A native closure cannot be interrupted: on timeout or cancel it is *abandoned* (its
/// thread finishes on its own and the outcome is discarded) and a new worker takes its
/// place, so a timeout with retries can run more copies of a closure than `workers`.
///
/// What it keeps: every result, unless built with
/// [`.retention(Retention::Counts)`](crate::queue::QueueBuilder::retention), which keeps
/// counts only so that a run of any length stays flat; a [`Handle`](crate::queue::Handle) you
/// hold keeps its own task (docs/queues.md §9.3).
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::{NativeTask, TaskOptions, Workers};
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
/// let queue = ThreadQueue::builder()
///     .workers(Workers::Fixed(4))
///     .initializer(|| Ok(()))
///     .build()?;
/// let group = queue.map(&echo, (1..=10).map(|n| json!(n)), TaskOptions::new())?;
/// // The embedder's own blocking code runs beside the plugin's tasks.
/// let native = queue.submit_native(
///     NativeTask::new("answer", || Ok::<_, osiiso_host::TaskFailure>(42)),
///     TaskOptions::new(),
/// )?;
/// let summary = queue.run()?;
/// assert_eq!(summary.succeeded, 11);
/// assert_eq!(group.values()?.len(), 10);
/// assert_eq!(native.value()?, json!(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type ThreadQueue = Queue<Thread>;

/// A ThreadQueue initializer: runs once per worker thread before its first task.
pub type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The thread backend (see [`ThreadQueue`]).
pub struct Thread {
    initializer: Option<Initializer>,
    /// Warm instances, for plugins whose limits ask for reuse.
    warm: WarmPool,
}

/// The thread backend's own options.
#[derive(Clone, Default)]
pub struct ThreadOptions {
    initializer: Option<Initializer>,
}

impl Backend for Thread {
    type Options = ThreadOptions;
    const NAME: &'static str = "thread";
    const MAX_WORKERS: usize = 1024;

    fn auto_limit(cpus: usize) -> usize {
        4.max(32.min(4 * cpus))
    }

    fn build(options: ThreadOptions, settings: &QueueSettings) -> Result<Self, BackendError> {
        Ok(Self {
            initializer: options.initializer,
            warm: WarmPool::new(settings.slots),
        })
    }

    fn runner(self: Arc<Self>) -> Runner {
        Runner::Blocking(self)
    }
}

impl AcceptsNative for Thread {}

impl BlockingRunner for Thread {
    fn run(&self, attempt: Attempt<'_>) -> AttemptReport {
        self.warm
            .run(attempt.call.task(), super::local_request(&attempt))
    }

    fn close(&self) {
        self.warm.clear();
    }

    fn worker_started(&self) -> Result<(), BackendError> {
        self.initializer
            .as_ref()
            .map_or(Ok(()), |init| init().map_err(BackendError::WorkerStart))
    }
}

impl QueueBuilder<Thread> {
    /// Runs once per worker thread before its first task; an error logs it and cancels the
    /// whole queue (docs/queues.md §10.3).
    pub fn initializer(
        mut self,
        f: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.options.initializer = Some(Arc::new(f));
        self
    }
}
