//! Errors of the queue API; every message is part of the contract.

use std::sync::Arc;

use super::result::TaskResult;

/// An error from a queue operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task or queue option is invalid.
    #[error("{0}")]
    InvalidOption(String),
    /// The queue does not accept tasks (closed, draining or halted).
    #[error("queue is not accepting tasks")]
    Closed,
    /// The queue has been shut down; it cannot start again.
    #[error("queue has been shut down")]
    ShutDown,
    /// A bounded queue is full.
    #[error("queue is full ({0} tasks outstanding)")]
    QueueFull(usize),
    /// `run()` was called while another run is in progress.
    #[error("run() is already in progress")]
    RunInProgress,
    /// `reset()` during `run()`.
    #[error("cannot reset during run()")]
    ResetDuringRun,
    /// `reset()` while workers are alive.
    #[error("cannot reset while workers are running — call shutdown() first")]
    ResetWhileRunning,
    /// An async queue was started outside a tokio runtime and was given none.
    #[error("no tokio runtime: start the queue inside a runtime or pass one to the builder")]
    NoRuntime,
    /// An AsyncQueue was started from another runtime while its workers or tasks still run on
    /// the one it is bound to.
    #[error("cannot switch runtimes while running")]
    RuntimeSwitch,
    /// The tokio runtime an AsyncQueue was bound to has shut down; the queue is closed.
    #[error("queue runtime has shut down")]
    RuntimeGone,
    /// A wait ran out of time.
    #[error("{0}")]
    WaitTimeout(&'static str),
    /// Tasks failed (strict runs, `values()`, `raise_for_errors`).
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// The task was cancelled; carries the result's message.
    #[error("task cancelled: {0}")]
    Cancelled(String),
    /// The task failed; carries the failure.
    #[error("{0}")]
    Failed(crate::TaskFailure),
    /// The backend could not be set up (a broker out of reach, say); the message says why.
    #[error("{0}")]
    Backend(String),
    /// The checkpoint was used after `close()`.
    #[error("checkpoint is closed — close it after the queue has finished, not before")]
    CheckpointClosed,
    /// A checkpoint key could not be derived from an element.
    #[error(
        "cannot derive a checkpoint key from {0} — pass a key function to map()/group() to derive one yourself"
    )]
    CheckpointKey(String),
    /// A heterogeneous group was checkpointed without a stable name.
    #[error(
        "checkpointing a heterogeneous group needs a stable name — pass a namespace (or an explicit group id), since a generated group id never matches on resume"
    )]
    CheckpointNamespace,
    /// The checkpoint file cannot be used (not a database, not a checkpoint, an I/O error);
    /// the message names the file.
    #[error("{0}")]
    Checkpoint(String),
}

impl Error {
    pub(crate) fn not_ready() -> Self {
        Self::WaitTimeout("result not ready")
    }
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
