//! The task queue: the osiiso model (SEMANTICS.md), once, for every backend.
//!
//! A [`Queue`] admits tasks, orders them by priority, retries them with backoff, enforces
//! per-attempt and per-run timeouts, fail-first and must-complete, and records exactly one
//! [`TaskResult`] per task. How an attempt runs is the backend's only business:
//! [`ThreadQueue`] runs it on a dedicated OS thread.
//!
//! ```no_run
//! use osiiso_host::Host;
//! use osiiso_host::queue::{TaskOptions, ThreadQueue, Workers};
//! use serde_json::json;
//!
//! let host = Host::new()?;
//! let score = host.load("score.wasm")?.task("score")?;
//! let queue = ThreadQueue::builder().workers(Workers::Fixed(4)).build()?;
//! let handle = queue.submit(score.with_input(json!(10_000)), TaskOptions::new().retries(3))?;
//! let summary = queue.run()?;
//! println!("{summary}");
//! println!("{}", handle.value()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod attempt;
mod config;
mod core;
mod error;
mod group;
mod handle;
mod options;
mod rate;
mod result;
mod worker;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use crate::backend::process::{ProcessContext, WorkerHook, WorkerHooks, WorkerInit};
pub use config::{Initializer, OnComplete, OnRetry, OnStart, QueueBuilder};
pub use error::{Error, ExecutionError};
pub use group::{AsCompleted, BoundTask, Group, as_completed, as_completed_stream};
pub use handle::{AsyncNativeTask, Handle, NativeFn, NativeFutureFn, NativeTask, TaskCall};
pub use options::{FailPolicy, Mode, OnExit, TaskOptions, Workers};
pub use result::{Backend, RunSummary, TaskResult, TaskStatus};

pub(crate) use self::attempt::Step;
pub(crate) use self::core::{
    AttemptOutcomeOrAbandoned, Core, Executor, Take, WorkerSlot, panic_message,
};
pub(crate) use self::handle::{TaskCell, Work};
pub(crate) use self::worker::{WorkerContext, run_native};
use crate::engine::Task;

/// A backend: how a queue's attempts execute. Sealed; see [`Thread`].
pub trait Kind: sealed::Sealed + Send + Sync + 'static {}

mod sealed {
    use std::sync::Arc;

    /// What the queue needs from a backend, hidden from the public API.
    #[allow(private_interfaces)]
    pub trait Sealed {
        /// The `Auto` worker limit for `cpus` CPUs.
        fn auto_limit(cpus: usize) -> usize;
        /// The most workers a queue of this backend may have.
        fn max_workers() -> usize;
        /// Whether `submit` blocks for room on a bounded queue (else `QueueFull`).
        fn blocking_submit() -> bool {
            true
        }
        /// Whether dropping the queue may wait for its workers (async queues only signal).
        fn blocking_drop() -> bool {
            true
        }
        /// The attempt executor for a queue with this configuration.
        fn executor(config: &super::config::QueueConfig) -> Arc<dyn super::Executor>;
    }
}

/// The thread backend: each worker is an OS thread; WASM attempts run as sync instances on
/// it; native closures run inline and are abandoned on timeout or cancel.
#[derive(Debug)]
pub enum Thread {}

impl Kind for Thread {}

impl Thread {
    /// The most workers (OS threads) a queue of this backend may have.
    pub const MAX_WORKERS: usize = 1024;
}

#[allow(private_interfaces)]
impl sealed::Sealed for Thread {
    fn max_workers() -> usize {
        Self::MAX_WORKERS
    }

    fn auto_limit(cpus: usize) -> usize {
        4.max(32.min(4 * cpus))
    }

    fn executor(config: &config::QueueConfig) -> Arc<dyn Executor> {
        Arc::new(crate::backend::thread::ThreadExecutor::new(
            config.initializer.clone(),
        ))
    }
}

/// The process backend: each worker slot owns a persistent subprocess (`osiiso-host worker`)
/// that runs attempts in fresh instances; a crash fails only the attempt it was running.
#[derive(Debug)]
pub enum Process {}

impl Kind for Process {}

impl Process {
    /// The most workers (worker subprocesses) a queue of this backend may have.
    pub const MAX_WORKERS: usize = 256;
}

#[allow(private_interfaces)]
impl sealed::Sealed for Process {
    fn max_workers() -> usize {
        Self::MAX_WORKERS
    }

    fn auto_limit(cpus: usize) -> usize {
        1.max(32.min(cpus))
    }

    fn executor(config: &config::QueueConfig) -> Arc<dyn Executor> {
        let slots = match config.workers {
            Workers::Fixed(n) => n,
            Workers::Auto => config.auto_limit,
        };
        Arc::new(crate::backend::process::ProcessExecutor::new(
            config.context.clone(),
            config.worker_memory,
            config.worker_init.clone(),
            config.poll,
            slots,
        ))
    }
}

/// A queue whose workers are persistent, isolated subprocesses: for CPU-heavy parallel work,
/// crash containment and OS memory caps. It runs WASM tasks only. Its initializer is data
/// ([`WorkerInit`]) that each subprocess runs before its first task.
pub type ProcessQueue = Queue<Process>;

/// A queue on OS threads: WASM tasks as sync instances, plus the embedder's blocking
/// closures.
///
/// A native closure cannot be interrupted: on timeout or cancel it is *abandoned* (its
/// thread finishes on its own and the outcome is discarded) and a new worker takes its
/// place, so a timeout with retries can run more copies of a closure than `workers`.
pub type ThreadQueue = Queue<Thread>;

/// Options of one `run()`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Bounds this run (else the queue's `timeout`).
    pub timeout: Option<Duration>,
    /// Return `Error::Execution` if any task failed.
    pub strict: bool,
    /// Overrides the fail policy for this run only.
    pub fail_policy: Option<FailPolicy>,
}

/// A snapshot of a queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Outstanding, not active.
    pub pending: usize,
    /// Inside their attempt loop.
    pub active: usize,
    /// Waiting for `delay`/`run_at`.
    pub scheduled: usize,
    /// Results recorded since construction, `reset()` or `clear_results()`.
    pub completed: usize,
    /// Live workers.
    pub workers: usize,
    /// Whether shutdown has completed.
    pub closed: bool,
}

/// A task queue with the backend `K`. See the [module documentation](self).
pub struct Queue<K: Kind = Thread> {
    core: Arc<Core>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Kind> std::fmt::Debug for Queue<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<K: Kind> Queue<K> {
    /// A builder with the defaults.
    pub fn builder() -> QueueBuilder<K> {
        QueueBuilder::new()
    }

    pub(crate) fn from_config(config: config::QueueConfig) -> Self {
        let executor = <K as sealed::Sealed>::executor(&config);
        Self {
            core: Core::new(config, executor),
            kind: PhantomData,
        }
    }

    fn admit(&self, batch: Vec<(Work, TaskOptions)>, block: bool) -> Result<Vec<Handle>, Error> {
        let poll = self.core.config.poll;
        for (work, _) in &batch {
            if let Work::Wasm { task, .. } = work {
                task.plugin().host().request_tick(poll);
            }
        }
        self.core.admit(batch, block)
    }

    fn admit_one(&self, work: Work, options: TaskOptions, block: bool) -> Result<Handle, Error> {
        Ok(self.admit(vec![(work, options)], block)?.remove(0))
    }

    /// Submits a WASM task (`task.with_input(json)`). On a bounded queue, the sync queues
    /// block for room; an [`AsyncQueue`] returns `Error::QueueFull` (see `submit_wait`).
    pub fn submit(&self, call: TaskCall, options: TaskOptions) -> Result<Handle, Error> {
        self.admit_one(
            call.into(),
            options,
            <K as sealed::Sealed>::blocking_submit(),
        )
    }

    /// Like [`submit`](Self::submit), but returns `Error::QueueFull` instead of blocking.
    pub fn try_submit(&self, call: TaskCall, options: TaskOptions) -> Result<Handle, Error> {
        self.admit_one(call.into(), options, false)
    }

    /// Submits one task per input, as one group (`map`). Inputs are never unpacked.
    pub fn map(
        &self,
        task: &Task,
        inputs: impl IntoIterator<Item = Value>,
        options: TaskOptions,
    ) -> Result<Group, Error> {
        let items = inputs
            .into_iter()
            .map(|input| task.with_input(input))
            .collect();
        self.group(items, options)
    }

    /// Submits several tasks as one group; the id is `options.group_id` or `group-<n>`.
    pub fn group(&self, items: Vec<TaskCall>, options: TaskOptions) -> Result<Group, Error> {
        options.validate()?;
        let group_id = match &options.group_id {
            Some(id) => id.clone(),
            None => self.core.next_group_id(),
        };
        let options = options.group_id(group_id.clone());
        let batch = items
            .into_iter()
            .map(|c| (c.into(), options.clone()))
            .collect();
        let handles = self.admit(batch, <K as sealed::Sealed>::blocking_submit())?;
        Ok(Group::new(group_id, handles))
    }

    /// Binds a task to base options: its submissions use them as defaults.
    pub fn bind(&self, task: &Task, options: TaskOptions) -> BoundTask<'_, K> {
        BoundTask::new(self, task.clone(), options)
    }

    /// Starts the workers; ready tasks start at once.
    pub fn start(&self) -> Result<(), Error> {
        self.core.start()
    }

    /// Starts, waits until idle (finite) or shut down (infinite), and returns the summary.
    pub fn run(&self) -> Result<RunSummary, Error> {
        self.core.run(RunOptions::default())
    }

    /// [`run`](Self::run) with options.
    pub fn run_with(&self, options: RunOptions) -> Result<RunSummary, Error> {
        self.core.run(options)
    }

    /// Starts if needed and waits until idle; workers and the summary cursor stay.
    pub fn join(&self) -> Result<(), Error> {
        self.core.join()
    }

    /// Graceful shutdown: stop accepting, drain everything, stop workers, close.
    pub fn shutdown(&self) {
        self.core.shutdown()
    }

    /// Forced shutdown: cancel everything, stop workers, close. Bounded.
    pub fn shutdown_force(&self) {
        self.core.shutdown_force()
    }

    /// Forced shutdown that never blocks; callable from anywhere, callbacks included. On
    /// return, acceptance has stopped and queued and scheduled tasks are recorded cancelled;
    /// workers record the running ones shortly after, and the queue counts as closed once
    /// they have exited ([`wait_closed`](Self::wait_closed) waits for that).
    pub fn cancel(&self) {
        self.core.cancel_all()
    }

    /// Waits until a shutdown has completed.
    pub fn wait_closed(&self) {
        self.core.wait_closed()
    }

    /// Returns the queue to its initial state (see SEMANTICS.md §3.2).
    pub fn reset(&self) -> Result<(), Error> {
        self.core.reset()
    }

    /// Empties `results()` and resets the summary cursor.
    pub fn clear_results(&self) {
        self.core.clear_results()
    }

    /// Every result since construction, `reset()` or `clear_results()`.
    pub fn results(&self) -> Vec<Arc<TaskResult>> {
        self.core.results()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Tasks inside their attempt loop.
    pub fn active_count(&self) -> usize {
        self.stats().active
    }

    /// Outstanding tasks not yet active.
    pub fn pending_count(&self) -> usize {
        self.stats().pending
    }

    /// True once a shutdown has completed.
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Runs `body` with the queue started; shuts down gracefully if it returns `Ok`, forces a
    /// shutdown otherwise (or on panic, which is resumed).
    pub fn scope<T, E>(&self, body: impl FnOnce(&Self) -> Result<T, E>) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.start()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(self))) {
            Ok(Ok(value)) => {
                self.shutdown();
                Ok(value)
            }
            Ok(Err(error)) => {
                self.shutdown_force();
                Err(error)
            }
            Err(panic) => {
                self.shutdown_force();
                std::panic::resume_unwind(panic)
            }
        }
    }
}

/// Backends that accept the embedder's native closures (not [`Process`]: its tasks must
/// cross a process boundary).
pub trait AcceptsNative: Kind {}

impl AcceptsNative for Thread {}

impl<K: AcceptsNative> Queue<K> {
    /// Submits a native blocking closure (on an [`AsyncQueue`] it runs on the blocking
    /// pool).
    pub fn submit_native(&self, task: NativeTask, options: TaskOptions) -> Result<Handle, Error> {
        self.admit_one(
            task.into(),
            options,
            <K as sealed::Sealed>::blocking_submit(),
        )
    }

    /// Like [`submit_native`](Self::submit_native), but `Error::QueueFull` instead of blocking.
    pub fn try_submit_native(
        &self,
        task: NativeTask,
        options: TaskOptions,
    ) -> Result<Handle, Error> {
        self.admit_one(task.into(), options, false)
    }
}

impl Queue<Process> {
    /// PIDs of the worker subprocesses alive now (they may change after a crash or timeout).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.core.executor.pids()
    }
}

impl<K: Kind> Drop for Queue<K> {
    fn drop(&mut self) {
        if self.core.is_closed() {
            return;
        }
        if self.core.has_outstanding() {
            tracing::warn!("queue dropped with outstanding tasks; cancelling them");
        }
        if <K as sealed::Sealed>::blocking_drop() {
            self.core.shutdown_force();
        } else {
            self.core.cancel_all();
        }
    }
}

/// The async backend: workers are tokio tasks; WASM attempts are async, fuel-metered
/// instances that yield often, so thousands can wait at once.
#[derive(Debug)]
pub enum Async {}

impl Kind for Async {}

impl Async {
    /// The most workers (tokio tasks) a queue of this backend may have.
    pub const MAX_WORKERS: usize = 100_000;
}

impl AcceptsNative for Async {}

#[allow(private_interfaces)]
impl sealed::Sealed for Async {
    fn max_workers() -> usize {
        Self::MAX_WORKERS
    }

    fn auto_limit(cpus: usize) -> usize {
        4.max(32.min(4 * cpus))
    }

    fn blocking_submit() -> bool {
        false
    }

    fn blocking_drop() -> bool {
        false
    }

    fn executor(_config: &config::QueueConfig) -> Arc<dyn Executor> {
        Arc::new(crate::backend::asynchronous::AsyncBackendExecutor)
    }
}

/// A queue on tokio: WASM attempts as async instances, native async closures and blocking
/// closures (on the blocking pool). The queue and its handles are `Send + Sync`; submit from
/// any thread. The first `start()` binds the caller's runtime (or the builder's).
///
/// Use the `_async` forms of `run`, `join` and `shutdown` inside a runtime; the plain forms
/// block the calling thread and suit code outside one.
pub type AsyncQueue = Queue<Async>;

impl Queue<Async> {
    /// Submits a native async closure, called again for each attempt.
    pub fn submit_async(
        &self,
        task: AsyncNativeTask,
        options: TaskOptions,
    ) -> Result<Handle, Error> {
        self.admit_one(task.into(), options, false)
    }

    /// Submits a WASM task, waiting for room on a bounded queue.
    pub async fn submit_wait(&self, call: TaskCall, options: TaskOptions) -> Result<Handle, Error> {
        let work: Work = call.into();
        loop {
            let room = self.core.room_notify.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.admit_one(work.clone(), options.clone(), false) {
                Err(Error::QueueFull(_)) => room.await,
                other => return other,
            }
        }
    }

    /// `run()` for async code; it never blocks a runtime thread. Dropping the future leaves
    /// the workers running and the summary cursor where it was (the next run reports what
    /// finished meanwhile).
    pub async fn run_async(&self) -> Result<RunSummary, Error> {
        self.run_with_async(RunOptions::default()).await
    }

    /// `run_with()` for async code.
    pub async fn run_with_async(&self, options: RunOptions) -> Result<RunSummary, Error> {
        self.core.run_async(options).await
    }

    /// `join()` for async code.
    pub async fn join_async(&self) -> Result<(), Error> {
        self.core.join_async().await
    }

    /// Graceful `shutdown()` for async code. Dropped while draining, the queue stays
    /// draining; a later shutdown completes it.
    pub async fn shutdown_async(&self) {
        self.core.shutdown_async().await
    }
}
