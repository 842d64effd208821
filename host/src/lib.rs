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
//! ## Run a plugin
//!
//! Load a component once, submit its tasks to a queue, run the queue to the end and read one
//! result per task. `echo_wasm` is the path of the `plugins/echo` component
//! (`cargo build --release --target wasm32-wasip2 -p echo`); its `greet` task answers
//! `{"name": "Ada", "excited": true}` with `{"message": "Hello, Ada!", ...}`.
//!
//! ```
//! use osiiso_host::queue::TaskOptions;
//! use osiiso_host::{Host, ThreadQueue};
//! use serde_json::json;
//! # let echo_wasm = osiiso_test_artifacts::ECHO;
//!
//! let host = Host::new()?;
//! let greet = host.load(echo_wasm)?.task("greet")?;
//!
//! let queue = ThreadQueue::builder().build()?;
//! let ada = queue.submit(greet.with_input(json!({"name": "Ada", "excited": true})), TaskOptions::new())?;
//! let bob = queue.submit(greet.with_input(json!({"name": "Bob"})), TaskOptions::new().retries(2))?;
//! let summary = queue.run()?;
//!
//! assert_eq!((summary.succeeded, summary.failed), (2, 0));
//! assert_eq!(ada.value()?.to_value()["message"], "Hello, Ada!");
//! assert_eq!(bob.value()?.to_value()["message"], "Hello, Bob.");
//! println!("{summary}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same tasks run on the other queues unchanged; [`tmap`], [`pmap`] and [`amap`] do the
//! whole build–submit–run in one call.
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
