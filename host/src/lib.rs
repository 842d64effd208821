//! # osiiso-host
//!
//! Run many small units of untrusted or third-party work — **plugins**, WebAssembly
//! components that export tasks — safely, fast and under a real task queue.
//!
//! The engine layer ([`Host`], [`Plugin`], [`Task`]) loads and sandboxes components and runs
//! one attempt at a time in a fresh instance under [`Limits`]; the queues schedule attempts
//! with priorities, retries, timeouts and policies (see `SEMANTICS.md`).
#![deny(missing_docs)]

mod backend;
pub mod engine;
pub mod failure;
pub mod queue;
pub mod text;
pub mod units;

pub use backend::process::worker_main::{
    WORKER_MARKER, WorkerOptions, maybe_run_worker, maybe_run_worker_with, run_worker,
    run_worker_with,
};
pub use backend::process::{WorkerHooks, WorkerInit};
pub use engine::{
    AttemptControl, AttemptOutcome, AttemptReport, AttemptRequest, CacheOutcome, DirGrant,
    GuestStdio, Host, HostBuilder, HostError, Limits, LoadError, Plugin, ProgressFn, Sandbox, Task,
    TaskInfo,
};
pub use failure::{CapturedOutput, FailureKind, TaskFailure};
pub use queue::{ProcessQueue, RunSummary, TaskOptions, TaskResult, ThreadQueue};
