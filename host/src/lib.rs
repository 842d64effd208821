//! # osiiso-host
//!
//! Run many small units of untrusted or third-party work — **plugins**, WebAssembly
//! components that export tasks — safely, fast and under a real task queue.
//!
//! - The engine ([`Host`], [`Plugin`], [`Task`], [`Limits`], [`Sandbox`]) loads and sandboxes
//!   components and runs one attempt at a time in a fresh instance.
//! - The queues ([`ThreadQueue`], [`AsyncQueue`], [`ProcessQueue`], and with the `nats`
//!   feature `NatsQueue` across machines) schedule attempts with priorities, retries,
//!   timeouts and policies; [`queue`] holds their shared API, and `docs/queues.md` their
//!   rules in full.
//! - [`backend`] holds the backends; [`queue::backend`] the seam a new one implements.
//! - [`metrics`] counts what the queues do, for Prometheus and a status page.
//! - Two small utilities are public on purpose, because an embedder showing plugin output or
//!   taking the CLI's settings needs the same rules: [`text`] makes guest text safe to print
//!   (control characters escaped, sizes bounded), and [`units`] parses and formats the
//!   durations and sizes that the CLI, jobs files and task options take (`250ms`, `64MiB`),
//!   with a typed error.
//!
//! ```no_run
//! use osiiso_host::{Host, ThreadQueue};
//! use osiiso_host::queue::TaskOptions;
//! use serde_json::json;
//!
//! let host = Host::new()?;
//! let echo = host.load("echo.wasm")?.task("echo")?;
//! let queue = ThreadQueue::builder().build()?;
//! let handle = queue.submit(echo.with_input(json!({"hello": "world"})), TaskOptions::new())?;
//! let summary = queue.run()?;
//! assert!(summary.ok());
//! println!("{}", handle.value()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod attempt;
pub mod backend;
mod engine;
mod failure;
mod helpers;
mod json;
pub mod metrics;
mod progress;
pub mod queue;
pub mod text;
pub mod units;
mod wait;

pub use attempt::{
    AttemptControl, AttemptOutcome, AttemptReport, ProgressFn, StopReason, TaskCall,
};
#[cfg(feature = "nats")]
pub use backend::NatsQueue;
pub use backend::worker_main::{
    WORKER_MARKER, WorkerOptions, maybe_run_worker, maybe_run_worker_with, run_worker,
    run_worker_with,
};
pub use backend::{AsyncQueue, ProcessQueue, ThreadQueue};
pub use engine::{
    AttemptRequest, COMPILE_MARKER, CacheOutcome, CompileTier, Compiler, DEFAULT_COMPILE_MEMORY,
    DEFAULT_COMPILE_TIMEOUT, DEFAULT_MAX_PLUGIN_BYTES, DirGrant, GuestStdio, Host, HostBuilder,
    HostError, Limits, LoadError, MIN_COMPILE_MEMORY, Plugin, Sandbox, Task, TaskInfo, TaskKind,
    WarmPool, maybe_run_compiler,
};
pub use failure::{CapturedOutput, FailureKind, TaskFailure};
pub use helpers::{HelperOptions, RuntimeConfig, amap, block_on, pmap, tmap};
pub use json::Json;
pub use progress::{PROGRESS_INTERVAL, Progress};
