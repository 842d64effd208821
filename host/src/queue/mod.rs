//! The task queue: the osiiso model, once, for every backend.
//!
//! A [`Queue`] admits tasks, orders them by priority, retries them with backoff, enforces
//! per-attempt and per-run timeouts, fail-first and must-complete, and records exactly one
//! [`TaskResult`] per task. How an attempt runs is its [`Backend`]'s only business: the
//! crate's backends are [`ThreadQueue`](crate::ThreadQueue), [`AsyncQueue`](crate::AsyncQueue)
//! and [`ProcessQueue`](crate::ProcessQueue), and [`backend`] describes how to write another.
//! The rules themselves — ordering, retries, timeouts, policies, statuses, error kinds — are
//! written down for users in `docs/queues.md`.
//!
//! ```
//! use osiiso_host::{Host, ThreadQueue};
//! use osiiso_host::queue::{TaskOptions, TaskStatus, Workers};
//! use serde_json::json;
//! # let score_wasm = osiiso_test_artifacts::SCORE;
//!
//! let host = Host::new()?;
//! let score = host.load(score_wasm)?.task("score")?;
//! let queue = ThreadQueue::builder().workers(Workers::Fixed(4)).build()?;
//! let handle = queue.submit(score.with_input(json!(10_000)), TaskOptions::new().retries(3))?;
//! let summary = queue.run()?;
//! println!("{summary}");
//! assert_eq!(handle.status(), TaskStatus::Succeeded);
//! assert!(handle.value()?.get::<u64>()? < 1_000_000_007, "a sum modulo a prime");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
mod builder;
mod checkpoint;
mod core;
mod driver;
mod error;
mod fanout;
mod group;
mod handle;
mod options;
mod rate;
mod result;
mod summary;
pub(crate) mod turns;
mod work;

use std::sync::Arc;
use std::time::Duration;

pub use self::backend::BackendError;
pub use self::builder::{OnComplete, OnProgress, OnRetry, OnStart, QueueBuilder};
pub use self::checkpoint::{Checkpoint, Hit, canonical_json};
pub use self::error::{CheckpointError, Closed, Error, ExecutionError, InvalidOption, StateError};
pub use self::fanout::{Checkpointing, KeyFn};
pub use self::group::{AsCompleted, BoundTask, Group, as_completed, as_completed_stream};
pub use self::handle::Handle;
pub use self::options::{FailPolicy, Mode, OnExit, Retention, TaskOptions, Workers};
pub use self::result::{TaskResult, TaskStatus};
pub use self::summary::{KEPT_FAILURES, RunStatus, RunSummary};
pub use self::work::{AsyncNativeTask, NativeFn, NativeFutureFn, NativeTask};

use self::backend::{AcceptsFutures, AcceptsNative, Backend, MAX_ATTEMPTS_PER_WORKER, Runner};
use self::core::{Admission, Core};
use self::work::Work;
use crate::attempt::TaskCall;
use crate::engine::Task;
use crate::wait;

/// Options of one [`run_with`](Queue::run_with): a time limit, strictness, and a fail policy
/// for this run only. The defaults (`RunOptions::default()`) are those of `run()`.
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::{Error, FailPolicy, RunOptions, TaskOptions};
/// use serde_json::json;
/// use std::time::Duration;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let plugin = Host::new()?.load(echo_wasm)?;
/// let (echo, fail) = (plugin.task("echo")?, plugin.task("fail")?);
/// let queue = ThreadQueue::builder().build()?;
/// let ok = queue.submit(echo.with_input(json!(1)), TaskOptions::new())?;
/// queue.submit(fail.with_input(json!("permanent")), TaskOptions::new())?;
///
/// // A strict run returns its failures as an error instead of a summary.
/// let strict = RunOptions::default()
///     .timeout(Duration::from_secs(60))
///     .strict(true)
///     .fail_policy(FailPolicy::Continue);
/// let Err(Error::Execution(failed)) = queue.run_with(strict) else { panic!("a task failed") };
/// assert_eq!(failed.results.len(), 1);
/// assert_eq!(failed.results[0].task, "echo/fail");
/// assert_eq!(ok.value()?, json!(1), "the other task ran to the end");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) strict: bool,
    pub(crate) fail_policy: Option<FailPolicy>,
}

impl RunOptions {
    /// Bounds this run (else the queue's `timeout`): what is not done then is cancelled
    /// (by the queue's `on_exit`) and the summary says `timed_out`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether a run with a failed task returns [`Error::Execution`] instead of its summary.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The fail policy of this run only (else the queue's).
    pub fn fail_policy(mut self, policy: FailPolicy) -> Self {
        self.fail_policy = Some(policy);
        self
    }
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
    /// Tasks whose state is in memory: every outstanding task, and every finished one that a
    /// handle or a group still holds (docs/queues.md §9.3). A finished task nobody holds is
    /// gone.
    pub live_tasks: usize,
    /// Results the queue itself holds: all of them under [`Retention::All`], at most
    /// [`KEPT_FAILURES`] under [`Retention::Counts`].
    pub held_results: usize,
}

/// A task queue whose attempts run on the backend `B`. See the [module documentation](self).
///
/// # What it keeps
///
/// A finished task whose [`Handle`] nobody holds leaves nothing behind: the queue keeps its
/// result (for [`results`](Self::results) and run summaries) under [`Retention::All`], the
/// default, and only counts it under [`Retention::Counts`]. A long or endless run should use
/// the latter and drop the handles it does not need: its memory then stays flat
/// ([`Stats::live_tasks`], [`Stats::held_results`]; docs/queues.md §9.3).
pub struct Queue<B: Backend> {
    core: Arc<Core>,
    backend: Arc<B>,
}

impl<B: Backend> std::fmt::Debug for Queue<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("backend", &B::NAME)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<B: Backend> Queue<B> {
    /// A builder with the defaults.
    pub fn builder() -> QueueBuilder<B> {
        QueueBuilder::new()
    }

    fn from_builder(builder: QueueBuilder<B>) -> Result<Self, Error> {
        let mut config = builder.config;
        let backend =
            B::build(builder.options, &config.settings()).map_err(|error| Error::Backend {
                backend: B::NAME,
                error,
            })?;
        if let Some(limit) = backend.discovered_auto_limit() {
            config.auto_limit = limit.clamp(1, B::MAX_WORKERS);
        }
        config.threads_per_worker = backend
            .attempts_per_worker()
            .clamp(1, MAX_ATTEMPTS_PER_WORKER);
        let backend = Arc::new(backend);
        let runner = backend.clone().runner();
        let core = Core::new(config, B::NAME, runner);
        if let Some(metrics) = &core.config.metrics {
            metrics.attach(core.as_source());
        }
        Ok(Self { core, backend })
    }

    /// The backend serving this queue.
    pub(crate) fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn admit_one(&self, work: Work, options: TaskOptions, block: bool) -> Result<Handle, Error> {
        let admitted = self
            .core
            .admit(vec![Admission::new(work, options)], block)?;
        Ok(admitted.into_iter().next().expect("one task, one handle"))
    }

    /// Submits a WASM task (`task.with_input(json)`). On a full bounded queue it blocks for
    /// room, or returns [`Error::QueueFull`] when the backend says so (AsyncQueue; see
    /// [`submit_async`](Self::submit_async)).
    ///
    /// ```
    /// use osiiso_host::{Host, ThreadQueue};
    /// use osiiso_host::queue::TaskOptions;
    /// use serde_json::json;
    /// # let echo_wasm = osiiso_test_artifacts::ECHO;
    ///
    /// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
    /// let queue = ThreadQueue::builder().build()?;
    /// let handle = queue.submit(echo.with_input(json!("hi")), TaskOptions::new().priority(1))?;
    /// queue.run()?;
    /// assert_eq!(handle.value()?, json!("hi"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, call: TaskCall, options: TaskOptions) -> Result<Handle, Error> {
        self.admit_one(call.into(), options, B::BLOCKING_SUBMIT)
    }

    /// Like [`submit`](Self::submit), but returns `Error::QueueFull` instead of blocking.
    pub fn try_submit(&self, call: TaskCall, options: TaskOptions) -> Result<Handle, Error> {
        self.admit_one(call.into(), options, false)
    }

    /// Submits a WASM task, waiting asynchronously for room on a bounded queue.
    pub async fn submit_async(
        &self,
        call: TaskCall,
        options: TaskOptions,
    ) -> Result<Handle, Error> {
        let work: Work = call.into();
        wait::notified(&self.core.room_notify, || {
            match self.admit_one(work.clone(), options.clone(), false) {
                Err(Error::QueueFull(_)) => None,
                other => Some(other),
            }
        })
        .await
    }

    /// Binds a task to base options: its submissions use them as defaults.
    pub fn bind(&self, task: &Task, options: TaskOptions) -> BoundTask<'_, B> {
        BoundTask::new(self, task.clone(), options)
    }

    /// Starts the workers; ready tasks start at once.
    pub fn start(&self) -> Result<(), Error> {
        self.core.start()
    }

    /// Starts, waits until idle (finite) or shut down (infinite), and returns the summary.
    /// Blocks the calling thread; inside a runtime, use [`run_async`](Self::run_async).
    pub fn run(&self) -> Result<RunSummary, Error> {
        self.core.run(RunOptions::default())
    }

    /// [`run`](Self::run) with options.
    pub fn run_with(&self, options: RunOptions) -> Result<RunSummary, Error> {
        self.core.run(options)
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

    /// Starts if needed and waits until idle; workers and the summary cursor stay.
    pub fn join(&self) -> Result<(), Error> {
        self.core.join()
    }

    /// `join()` for async code.
    pub async fn join_async(&self) -> Result<(), Error> {
        self.core.join_async().await
    }

    /// Graceful shutdown: stop accepting, drain everything, stop workers, close.
    pub fn shutdown(&self) {
        self.core.shutdown()
    }

    /// Graceful `shutdown()` for async code. Dropped while draining, the queue stays
    /// draining; a later shutdown completes it.
    pub async fn shutdown_async(&self) {
        self.core.shutdown_async().await
    }

    /// Forced shutdown: cancel everything, stop workers, close. Bounded.
    pub fn shutdown_force(&self) {
        self.core.shutdown_force()
    }

    /// Forced shutdown that never blocks; callable from anywhere, callbacks and signal
    /// handlers' threads included. On return, acceptance has stopped and queued and scheduled
    /// tasks are recorded cancelled; workers record the running ones shortly after, and the
    /// queue counts as closed once they have exited ([`wait_closed`](Self::wait_closed)
    /// waits for that). A `run()` in progress then returns its summary.
    pub fn cancel(&self) {
        self.core.cancel_all()
    }

    /// Waits until a shutdown has completed.
    pub fn wait_closed(&self) {
        self.core.wait_closed()
    }

    /// The summary of the results recorded since the last summary, with its duration counted
    /// from `started`; the next summary starts after it. `run()` cuts one as it ends; this is
    /// the summary of work that ended without a `run()` to give one — a queue shut down or
    /// cancelled before `run()` began returns [`Closed`] from it, and its tasks were recorded
    /// all the same.
    ///
    /// ```
    /// use std::time::Instant;
    /// use osiiso_host::ThreadQueue;
    /// use osiiso_host::queue::{Closed, Error, NativeTask, TaskOptions};
    ///
    /// let started = Instant::now();
    /// let queue = ThreadQueue::builder().build()?;
    /// queue.submit_native(NativeTask::new("one", || Ok(1)), TaskOptions::new())?;
    /// queue.start()?;
    /// queue.shutdown(); // the task finishes, and the queue closes
    /// assert!(matches!(queue.run(), Err(Error::Closed(Closed::ShutDown))));
    /// let summary = queue.take_summary(started);
    /// assert_eq!((summary.total_submitted, summary.succeeded), (1, 1));
    /// assert_eq!(queue.take_summary(started).total_submitted, 0);
    /// # Ok::<(), osiiso_host::queue::Error>(())
    /// ```
    pub fn take_summary(&self, started: std::time::Instant) -> RunSummary {
        self.core.take_summary(started)
    }

    /// Returns the queue to its initial state (see docs/queues.md §3.2).
    pub fn reset(&self) -> Result<(), Error> {
        self.core.reset()
    }

    /// Empties `results()` and resets the summary cursor.
    pub fn clear_results(&self) {
        self.core.clear_results()
    }

    /// Every result since construction, `reset()` or `clear_results()` (none when the queue
    /// keeps counts only: [`Retention::Counts`]).
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
    ///
    /// ```
    /// use osiiso_host::{Host, ThreadQueue};
    /// use osiiso_host::queue::TaskOptions;
    /// use serde_json::json;
    /// # let echo_wasm = osiiso_test_artifacts::ECHO;
    /// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
    /// let queue = ThreadQueue::builder().build()?;
    /// let values = queue.scope(|queue| {
    ///     let group = queue.map(&echo, (0..3).map(|i| json!(i)), TaskOptions::new())?;
    ///     group.values()
    /// })?;
    /// assert_eq!(values, [json!(0), json!(1), json!(2)]);
    /// assert!(queue.is_closed(), "the scope shut the queue down");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

impl<B: AcceptsNative> Queue<B> {
    /// Submits a native blocking closure (on an AsyncQueue it runs on the blocking pool).
    pub fn submit_native(&self, task: NativeTask, options: TaskOptions) -> Result<Handle, Error> {
        self.admit_one(task.into(), options, B::BLOCKING_SUBMIT)
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

impl<B: AcceptsFutures> Queue<B> {
    /// Submits a native async closure (a future made again for each attempt). A backend that
    /// runs attempts on threads cannot run one: it is refused with `Error::InvalidOption`.
    pub fn submit_future(
        &self,
        task: AsyncNativeTask,
        options: TaskOptions,
    ) -> Result<Handle, Error> {
        if let Runner::Blocking(_) = &self.core.runner {
            return Err(Error::invalid(
                "task",
                format!(
                    "the {} backend runs attempts on threads and cannot run async closures",
                    B::NAME
                ),
            ));
        }
        self.admit_one(task.into(), options, false)
    }
}

impl<B: Backend> Drop for Queue<B> {
    fn drop(&mut self) {
        if self.core.is_closed() {
            return;
        }
        if self.core.has_outstanding() {
            tracing::warn!("queue dropped with outstanding tasks; cancelling them");
        }
        match &self.core.runner {
            // Sync queues join their threads and reap their subprocesses, which is bounded.
            Runner::Blocking(_) => self.core.shutdown_force(),
            // An async queue signals and does not wait.
            Runner::Async(_) => self.core.cancel_all(),
        }
    }
}
