//! The backends: how one attempt executes and how it is interrupted. Each one is a folder
//! that implements the seam of [`crate::queue::backend`]; the queue semantics live in
//! [`crate::queue`] and none of them is written here.
//!
//! | backend | workers | an attempt |
//! |---|---|---|
//! | [`Thread`] | OS threads | a sync instance on the worker thread |
//! | [`Async`] | tokio tasks | an async, fuel-metered instance that yields often |
//! | [`Process`] | a coordinator thread per persistent subprocess | a fresh instance in the subprocess |
//! | [`Nats`] (feature `nats`) | tokio tasks, one attempt in flight each | on an `osiiso-host serve` node, through NATS JetStream |

use crate::engine::AttemptRequest;
use crate::queue::backend::Attempt;

mod asynchronous;
mod loaded;
#[cfg(feature = "nats")]
mod nats;
mod process;
mod remote;
mod thread;

pub use self::asynchronous::{Async, AsyncOptions, AsyncQueue};
#[cfg(feature = "nats")]
pub use self::nats::{
    CachedPlugin, DEFAULT_URL as DEFAULT_NATS_URL, Nats, NatsError, NatsNode, NatsOptions,
    NatsQueue, NodeConfig, NodeInfo, live_nodes,
};
pub(crate) use self::process::worker_main;
pub use self::process::{
    Process, ProcessContext, ProcessOptions, ProcessQueue, WorkerHook, WorkerHooks, WorkerInit,
};
pub use self::thread::{Initializer, Thread, ThreadOptions, ThreadQueue};

/// The engine's request for an attempt that runs in this process (thread and async).
fn local_request<'a>(attempt: &Attempt<'a>) -> AttemptRequest<'a> {
    AttemptRequest {
        input: attempt.call.input(),
        attempt: attempt.attempt,
        control: attempt.control.clone(),
        display_name: attempt.display_name,
        progress: attempt.progress.cloned(),
    }
}
