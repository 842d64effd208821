//! The seam between the queue and the backends: what a backend is.
//!
//! The queue keeps every rule of docs/queues.md — admission, priorities, retries, timeouts,
//! policies, recording — and drives each task's attempts on its workers. A **backend** only
//! answers one question: *run this attempt, and stop it when its control says so.* It never
//! sees the queue's tasks, locks or workers.
//!
//! # Writing a backend
//!
//! A backend is a type that implements [`Backend`] and a runner trait:
//!
//! 1. **[`Backend`]**: its name (in results), its worker limits, its own options (set through
//!    [`QueueBuilder::backend_options`](super::QueueBuilder::backend_options), or, inside this
//!    crate, through builder methods on `QueueBuilder<YourBackend>` in the backend's folder),
//!    and how to build it from them.
//! 2. A runner, returned by [`Backend::runner`]:
//!    - [`BlockingRunner`] when an attempt occupies a thread: the queue gives each worker an OS
//!      thread and calls [`run`](BlockingRunner::run) on it. `run` must return within about
//!      one `poll` once [`AttemptControl::should_stop`](crate::AttemptControl::should_stop)
//!      is true, with the outcome [`AttemptControl::stopped_outcome`](crate::AttemptControl::stopped_outcome)
//!      gives (cancelled, or the timeout failure).
//!    - [`AsyncRunner`] when an attempt is a future: the queue's workers are tokio tasks that
//!      await [`run`](AsyncRunner::run). The future must resolve promptly once the control
//!      says stop ([`AttemptControl::stopped`](crate::AttemptControl::stopped) resolves then);
//!      if it has not one grace period later, the queue drops it.
//! 3. Optionally, [`Backend::attempts_per_worker`] above 1, for a backend that queues a few
//!    attempts in each of its workers: the queue then runs that many worker threads per
//!    worker, and a blocking runner that wants each worker to receive its attempts in the
//!    queue's order picks the worker between [`Attempt::wait_turn`] and
//!    [`Attempt::pass_turn`] (the process backend does).
//! 4. Optionally, marker traits: [`AcceptsNative`] if the embedder's native closures may run
//!    on its queues (the queue runs them itself, on the worker), [`AcceptsFutures`] for native
//!    async closures (async runners only).
//!
//! The outcome goes into an [`AttemptReport`]: a value, a [`TaskFailure`](crate::TaskFailure)
//! whose kind decides whether the queue retries, or cancelled; plus fuel and captured output
//! when the backend has them. A runner never retries, sleeps for backoff or records anything:
//! the queue does.
//!
//! Inside this crate a backend is one folder under `host/src/backend/`, re-exported from
//! `backend/mod.rs`, plus one line in the CLI's `--queue` values.
//!
//! # A toy backend
//!
//! A backend that answers every attempt with its input, without running any WebAssembly:
//!
//! ```
//! use std::sync::Arc;
//! use osiiso_host::queue::backend::{
//!     Attempt, Backend, BackendError, BlockingRunner, QueueSettings, Runner,
//! };
//! use osiiso_host::queue::{Queue, Workers};
//! use osiiso_host::{AttemptOutcome, AttemptReport};
//!
//! /// Echoes inputs: a stand-in for a real way of running attempts.
//! struct Echo {
//!     /// Its own option: a prefix for nothing in particular.
//!     label: String,
//! }
//!
//! impl Backend for Echo {
//!     type Options = String;
//!     const NAME: &'static str = "echo";
//!     const MAX_WORKERS: usize = 64;
//!
//!     fn auto_limit(cpus: usize) -> usize {
//!         cpus.max(1)
//!     }
//!
//!     fn build(label: String, _settings: &QueueSettings) -> Result<Self, BackendError> {
//!         if label.is_empty() {
//!             return Err(BackendError::setup("the echo backend needs a label"));
//!         }
//!         Ok(Echo { label })
//!     }
//!
//!     fn runner(self: Arc<Self>) -> Runner {
//!         Runner::Blocking(self)
//!     }
//! }
//!
//! impl BlockingRunner for Echo {
//!     fn run(&self, attempt: Attempt<'_>) -> AttemptReport {
//!         if attempt.control.should_stop() {
//!             return attempt.control.stopped_outcome(attempt.display_name).into();
//!         }
//!         AttemptOutcome::Succeeded(attempt.call.input().into()).into()
//!     }
//! }
//!
//! let queue = Queue::<Echo>::builder()
//!     .workers(Workers::Fixed(2))
//!     .backend_options("demo".to_string())
//!     .build()?;
//! // Submit `task.with_input(json)` calls and `queue.run()` as with any queue.
//! assert_eq!(queue.run()?.total_submitted, 0);
//!
//! // A build error is typed: the backend's name, and its own error as the cause.
//! let error = Queue::<Echo>::builder().build().unwrap_err();
//! assert!(matches!(
//!     &error,
//!     osiiso_host::queue::Error::Backend { backend: "echo", error: BackendError::Setup(_) }
//! ));
//! assert_eq!(error.to_string(), "echo backend: the echo backend needs a label");
//! # Ok::<(), osiiso_host::queue::Error>(())
//! ```

use std::sync::Arc;

use futures::future::BoxFuture;

use super::options::Workers;
use super::turns::Turn;
use crate::attempt::{AttemptControl, AttemptReport, ProgressFn, TaskCall};

/// What a backend is: how a queue's attempts run and stop. See the [module docs](self).
pub trait Backend: Send + Sync + Sized + 'static {
    /// The backend's own options; `Default` gives a working backend.
    type Options: Clone + Default + Send + Sync + 'static;
    /// Its name, in [`TaskResult::backend`](super::TaskResult::backend) and messages.
    const NAME: &'static str;
    /// The most workers a queue of this backend may have.
    const MAX_WORKERS: usize;
    /// Whether `submit` on a full bounded queue blocks for room (`false`: it returns
    /// [`Error::QueueFull`](super::Error::QueueFull) at once, and `submit_async` waits).
    const BLOCKING_SUBMIT: bool = true;

    /// The `Auto` worker limit for `cpus` CPUs (docs/queues.md §4.4).
    fn auto_limit(cpus: usize) -> usize;

    /// Builds the backend for one queue (connecting to what it needs); an error here is
    /// the queue builder's [`Error::Backend`](super::Error::Backend).
    fn build(options: Self::Options, settings: &QueueSettings) -> Result<Self, BackendError>;

    /// How the queue's workers run its attempts.
    fn runner(self: Arc<Self>) -> Runner;

    /// The `Auto` worker limit the built backend learned (the slots of the machines it
    /// reaches, say); `None` keeps [`auto_limit`](Self::auto_limit) of the CPU count.
    fn discovered_auto_limit(&self) -> Option<usize> {
        None
    }

    /// How many attempts one worker holds at once (at most 16): the queue runs this many
    /// worker threads per worker, each with one attempt, and the backend multiplexes them
    /// onto the worker (the process backend queues a few attempts in each subprocess, so
    /// that it never waits for the parent between two). 1, the default: one attempt per
    /// worker. Counts the queue reports ([`Stats::workers`](super::Stats::workers), the
    /// `slots` gauge) stay in workers.
    fn attempts_per_worker(&self) -> usize {
        1
    }
}

/// The most [`Backend::attempts_per_worker`] the queue accepts.
pub(crate) const MAX_ATTEMPTS_PER_WORKER: usize = 16;

/// Why a backend could not be built, or a worker of it could not start.
///
/// The backend's own error is kept as the cause: `downcast_ref` finds it (a
/// `NatsError` for the NATS backend, an `std::io::Error` for a runtime that did not start).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// [`Backend::build`] failed: what the backend needs is out of reach or refused it (a
    /// broker, a runtime, a setting it cannot use).
    #[error("{0}")]
    Setup(Arc<dyn std::error::Error + Send + Sync>),
    /// [`BlockingRunner::worker_started`] failed: the embedder's worker initializer returned
    /// this message. The queue logs it and is cancelled (docs/queues.md §10.3).
    #[error("worker initializer failed: {0}")]
    WorkerStart(String),
}

impl BackendError {
    /// A [`Setup`](Self::Setup) error from the backend's own error (or a message).
    pub fn setup(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Setup(Arc::from(error.into()))
    }

    /// The backend's own error behind a [`Setup`](Self::Setup), if it is an `E`.
    ///
    /// ```
    /// use osiiso_host::queue::BackendError;
    ///
    /// let error = BackendError::setup(std::io::Error::other("no runtime"));
    /// assert!(error.downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::Setup(error) => error.downcast_ref::<E>(),
            Self::WorkerStart(_) => None,
        }
    }
}

/// What a backend learns of the queue it serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueSettings {
    /// The epoch tick / check interval: stops must take effect within it.
    pub poll: std::time::Duration,
    /// The queue's worker setting.
    pub workers: Workers,
    /// The most workers the queue will run at once (the fixed count, or the `Auto` limit).
    pub slots: usize,
}

/// How a queue's workers run attempts.
#[derive(Clone)]
pub enum Runner {
    /// Each worker is an OS thread, and an attempt runs on it.
    Blocking(Arc<dyn BlockingRunner>),
    /// Each worker is a tokio task, and an attempt is a future.
    Async(Arc<dyn AsyncRunner>),
}

impl Runner {
    /// Releases what the backend holds (worker subprocesses, connections) at shutdown and
    /// reset.
    pub(crate) fn close(&self) {
        match self {
            Self::Blocking(runner) => runner.close(),
            Self::Async(runner) => runner.close(),
        }
    }
}

/// One attempt, as a runner sees it.
#[non_exhaustive]
pub struct Attempt<'a> {
    /// The WASM task and its input.
    pub call: &'a TaskCall,
    /// 1 for the first attempt, 2 for the first retry, ... (the same field as
    /// [`AttemptRequest::attempt`](crate::AttemptRequest::attempt)).
    pub attempt: u32,
    /// The task's name, for messages (the options' name, or the task's own).
    pub display_name: &'a str,
    /// The task's priority (lower runs first): the queue has already ordered attempts by
    /// it; a backend that queues attempts again (on a broker) keeps the order with it.
    pub priority: i32,
    /// Cancellation and deadline: the runner must stop within about one `poll` of
    /// [`should_stop`](AttemptControl::should_stop).
    pub control: &'a Arc<AttemptControl>,
    /// Where the guest's progress reports go (`progress(done, total)`): pass it to the
    /// engine's [`AttemptRequest::progress`](crate::AttemptRequest::progress), or carry the
    /// reports across to it. Calling it is cheap; the queue coalesces what it passes on.
    pub progress: Option<&'a ProgressFn>,
    /// Its place in the order the queue handed tasks to the workers: the first attempt of a
    /// task, when the backend holds several attempts per worker.
    turn: Option<Turn>,
}

impl<'a> Attempt<'a> {
    pub(crate) fn new(
        call: &'a TaskCall,
        attempt: u32,
        display_name: &'a str,
        priority: i32,
        control: &'a Arc<AttemptControl>,
        progress: Option<&'a ProgressFn>,
    ) -> Self {
        Self {
            call,
            attempt,
            display_name,
            priority,
            control,
            progress,
            turn: None,
        }
    }

    pub(crate) fn with_turn(mut self, turn: Option<Turn>) -> Self {
        self.turn = turn;
        self
    }

    /// For a backend that holds several attempts per worker
    /// ([`Backend::attempts_per_worker`]): blocks until every task the queue handed to a
    /// worker thread before this one has been [passed on](Self::pass_turn) (or its worker
    /// thread is done with it), so that the backend can give its attempts to its workers in
    /// the queue's order, whichever thread gets there first. True then, at once for a retry
    /// and when the backend holds one attempt per worker; false as soon as the control says
    /// stop (checked every `poll`).
    pub fn wait_turn(&self, poll: std::time::Duration) -> bool {
        match &self.turn {
            Some(turn) => turn.wait(poll, || self.control.should_stop()),
            None => true,
        }
    }

    /// Lets the tasks handed out after this one go on (see [`wait_turn`](Self::wait_turn));
    /// the queue does it when the attempt ends, if the runner has not.
    pub fn pass_turn(&self) {
        if let Some(turn) = &self.turn {
            turn.pass();
        }
    }
}

/// Runs attempts on the queue's worker threads.
pub trait BlockingRunner: Send + Sync + 'static {
    /// Runs one attempt on the calling worker thread, interruptibly.
    fn run(&self, attempt: Attempt<'_>) -> AttemptReport;

    /// Called on a new worker thread before its first attempt. An error is the
    /// initializer failure of docs/queues.md §10.3: it is logged and the queue is cancelled.
    fn worker_started(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Called on a worker thread that is about to exit for good.
    fn worker_stopped(&self) {}

    /// Releases what the backend holds, at shutdown and reset.
    fn close(&self) {}
}

/// Runs attempts as futures on the queue's tokio workers.
pub trait AsyncRunner: Send + Sync + 'static {
    /// Runs one attempt; resolves promptly once its control says stop.
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, AttemptReport>;

    /// The runtime the workers run on. `None`: the runtime of whoever starts the queue (or
    /// the one given to its builder).
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }

    /// Releases what the backend holds, at shutdown and reset.
    fn close(&self) {}
}

/// Backends whose queues accept the embedder's native blocking closures
/// ([`NativeTask`](super::NativeTask)). The queue runs them itself: inline on a worker thread
/// (abandoned on timeout or cancel), or on tokio's blocking pool.
pub trait AcceptsNative: Backend {}

/// Backends whose queues accept native async closures ([`AsyncNativeTask`](super::AsyncNativeTask)):
/// those with an [`AsyncRunner`].
pub trait AcceptsFutures: AcceptsNative {}
