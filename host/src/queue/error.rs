//! Errors of the queue API. One [`Error`] for every queue operation, grouped by what the
//! caller can do about it; the groups carry typed detail ([`InvalidOption`], [`Closed`],
//! [`StateError`], [`CheckpointError`], [`BackendError`]). Every message is part of the
//! contract.

use std::path::PathBuf;
use std::sync::Arc;

use super::backend::BackendError;
use super::result::TaskResult;

/// An error from a queue operation.
///
/// ```
/// use osiiso_host::ThreadQueue;
/// use osiiso_host::queue::{Error, Workers};
///
/// let error = ThreadQueue::builder().workers(Workers::Fixed(0)).build().unwrap_err();
/// match &error {
///     Error::InvalidOption(invalid) => assert_eq!(invalid.option(), "workers"),
///     other => panic!("unexpected: {other}"),
/// }
/// assert_eq!(error.to_string(), "workers must be > 0");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task option, a queue option or a run option is invalid: returned by
    /// [`TaskOptions::validate`](super::TaskOptions::validate), by the submit calls (which
    /// validate each task's options), by [`QueueBuilder::validate`](super::QueueBuilder::validate)
    /// and `build`, and for a native future submitted to a backend that runs attempts on
    /// threads.
    #[error(transparent)]
    InvalidOption(#[from] InvalidOption),
    /// The queue does not take the call any more: it is closing or shut down, or the runtime
    /// it was bound to is gone. Returned by the submit calls, `start`, `run` and `join`.
    #[error(transparent)]
    Closed(#[from] Closed),
    /// A bounded queue is full: `try_submit` always, `submit` on a backend whose submit does
    /// not block ([`Backend::BLOCKING_SUBMIT`](super::backend::Backend::BLOCKING_SUBMIT)).
    /// Carries the number of outstanding tasks.
    #[error("queue is full ({0} tasks outstanding)")]
    QueueFull(usize),
    /// The call is not allowed in the queue's present state (a second `run`, a `reset`
    /// during a run, an async queue without a runtime); waiting or calling it elsewhere helps.
    #[error(transparent)]
    State(#[from] StateError),
    /// A wait ran out of time: [`Handle::value`](super::Handle::value) before the task
    /// finished ("result not ready"), [`Handle::wait_timeout`](super::Handle::wait_timeout),
    /// or [`as_completed`](super::as_completed) past its timeout.
    #[error("{0}")]
    WaitTimeout(&'static str),
    /// Tasks failed or were cancelled: a strict run ([`RunOptions::strict`](super::RunOptions)),
    /// [`Group::values`](super::Group::values).
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// The one task asked for ([`Handle::value`](super::Handle::value)) was cancelled;
    /// carries its result's message.
    #[error("task cancelled: {0}")]
    Cancelled(String),
    /// The one task asked for ([`Handle::value`](super::Handle::value)) failed; carries its
    /// failure (kind, message, detail).
    #[error("{0}")]
    Failed(crate::TaskFailure),
    /// The backend could not be built (a broker out of reach, a runtime that did not start),
    /// returned by `QueueBuilder::build`.
    #[error("{backend} backend: {error}")]
    Backend {
        /// The backend's [`NAME`](super::backend::Backend::NAME).
        backend: &'static str,
        /// What went wrong.
        error: BackendError,
    },
    /// A checkpoint could not be used: the file, its database, a guest able to reach it, a
    /// group without a stable name.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl Error {
    pub(crate) fn not_ready() -> Self {
        Self::WaitTimeout("result not ready")
    }

    pub(crate) fn invalid(option: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidOption(InvalidOption::new(option, message))
    }
}

/// An option the queue cannot use: which one, and the message that says why.
///
/// ```
/// use osiiso_host::queue::{Error, TaskOptions};
///
/// let Err(Error::InvalidOption(invalid)) = TaskOptions::new().backoff(0.0).validate() else {
///     panic!("a backoff of 0 is refused");
/// };
/// assert_eq!(invalid.option(), "backoff");
/// assert_eq!(invalid.to_string(), "backoff must be > 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidOption {
    option: String,
    message: String,
}

impl InvalidOption {
    pub(crate) fn new(option: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            option: option.into(),
            message: message.into(),
        }
    }

    /// The option's name as the API and jobs files spell it (`workers`, `timeout`, `retries`;
    /// `options` for a set of unknown ones).
    pub fn option(&self) -> &str {
        &self.option
    }
}

/// Why a queue no longer takes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Closed {
    /// It is closing, draining or halted: submissions are refused (docs/queues.md §3.2).
    #[error("queue is not accepting tasks")]
    NotAccepting,
    /// It has been shut down and cannot start again: `start`, `run` and `join` after a
    /// shutdown, or after a `cancel` that closed it.
    #[error("queue has been shut down")]
    ShutDown,
    /// The tokio runtime an [`AsyncQueue`](crate::AsyncQueue) was bound to has shut down;
    /// the queue is closed.
    #[error("queue runtime has shut down")]
    RuntimeGone,
}

/// A call the queue's present state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// `run()` while another run is in progress.
    #[error("run() is already in progress")]
    RunInProgress,
    /// `reset()` during `run()`.
    #[error("cannot reset during run()")]
    ResetDuringRun,
    /// `reset()` while workers are alive.
    #[error("cannot reset while workers are running — call shutdown() first")]
    ResetWhileRunning,
    /// An async queue was started outside a tokio runtime and its builder was given none.
    #[error("no tokio runtime: start the queue inside a runtime or pass one to the builder")]
    NoRuntime,
    /// An async queue was started from another runtime while its workers or tasks still run
    /// on the one it is bound to.
    #[error("cannot switch runtimes while running")]
    RuntimeSwitch,
}

/// Why a checkpoint could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The checkpoint was used after [`Checkpoint::close`](super::Checkpoint::close).
    #[error("checkpoint is closed — close it after the queue has finished, not before")]
    Closed,
    /// A heterogeneous group was checkpointed without a stable name (no namespace and no
    /// explicit group id).
    #[error(
        "checkpointing a heterogeneous group needs a stable name — pass a namespace (or an explicit group id), since a generated group id never matches on resume"
    )]
    Namespace,
    /// The file exists and is not a checkpoint (a directory, a FIFO, another database, a
    /// table of another shape); it is left unchanged.
    #[error("'{}' is not an osiiso checkpoint: {reason}", path.display())]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
        /// What it is instead (escaped and bounded).
        reason: String,
    },
    /// The file could not be opened or prepared, or an operation on it failed (an I/O
    /// error, a locked or corrupt database, a step budget spent).
    #[error("checkpoint '{}': {reason}", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// What SQLite (or the step budget) said.
        reason: String,
    },
    /// A plugin's sandbox grants the guest a directory that holds the checkpoint: a guest
    /// able to write it could forge completions. Nothing is submitted.
    #[error(
        "checkpoint '{}' is inside '{}', which the plugin's sandbox grants to the guest as '{guest}': a guest that can write the checkpoint could forge its completions; keep it outside every granted directory",
        path.display(),
        granted.display()
    )]
    ReachableByGuest {
        /// The checkpoint file.
        path: PathBuf,
        /// The granted host directory.
        granted: PathBuf,
        /// Where the guest sees it.
        guest: String,
    },
}

/// Failed (and possibly cancelled) results, raised as one error.
#[derive(Debug, Clone)]
pub struct ExecutionError {
    /// The offending results.
    pub results: Vec<Arc<TaskResult>>,
}

impl std::fmt::Display for ExecutionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::result::TaskStatus;
        let failed = self
            .results
            .iter()
            .filter(|r| r.status == TaskStatus::Failed)
            .count();
        let cancelled = self.results.len() - failed;
        match (failed, cancelled) {
            (f_, 0) => write!(f, "{f_} task(s) failed"),
            (0, c) => write!(f, "{c} task(s) cancelled"),
            (f_, c) => write!(f, "{f_} task(s) failed; {c} task(s) cancelled"),
        }
    }
}

impl std::error::Error for ExecutionError {}
