//! The async backend: workers are tokio tasks, and a WASM attempt is an async, fuel-metered
//! instance that yields often, so thousands can be in flight on a few threads. An attempt is
//! stopped by dropping its future at its cancellation or deadline (docs/queues.md §10.2). The
//! embedder's native async closures and blocking closures run on these queues too.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::attempt::AttemptReport;
use crate::engine::WarmPool;
use crate::queue::backend::{
    AcceptsFutures, AcceptsNative, AsyncRunner, Attempt, Backend, BackendError, QueueSettings,
    Runner,
};
use crate::queue::{Queue, QueueBuilder};

/// A queue on tokio: WASM attempts as async instances, native async closures and blocking
/// closures (on the blocking pool). The queue and its handles are `Send + Sync`; submit from
/// any thread. The first `start()` binds the caller's runtime (or the builder's).
///
/// Use the `_async` forms of `run`, `join` and `shutdown` inside a runtime; the plain forms
/// block the calling thread and suit code outside one.
///
/// What it keeps: every result, unless built with
/// [`.retention(Retention::Counts)`](crate::queue::QueueBuilder::retention), which keeps
/// counts only so that a run of any length stays flat; a [`Handle`](crate::queue::Handle) you
/// hold keeps its own task (docs/queues.md §9.3).
///
/// ```
/// use osiiso_host::{AsyncQueue, Host};
/// use osiiso_host::queue::{AsyncNativeTask, TaskOptions, Workers};
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
///
/// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
/// let runtime = tokio::runtime::Runtime::new()?;
/// runtime.block_on(async {
///     let queue = AsyncQueue::builder().workers(Workers::Fixed(100)).build()?;
///     let group = queue.map(&echo, (0..400).map(|i| json!(i)), TaskOptions::new())?;
///     let nap = queue.submit_future(
///         AsyncNativeTask::new("nap", || async {
///             tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///             Ok::<_, osiiso_host::TaskFailure>("rested")
///         }),
///         TaskOptions::new(),
///     )?;
///     let summary = queue.run_async().await?;
///     assert_eq!(summary.succeeded, 401);
///     assert_eq!(group.handles()[7].clone().await.value, Some(json!(7).into()));
///     assert_eq!(nap.value()?, json!("rested"));
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type AsyncQueue = Queue<Async>;

/// The async backend (see [`AsyncQueue`]).
pub struct Async {
    runtime: Option<tokio::runtime::Handle>,
    /// Warm instances, for plugins whose limits ask for reuse.
    warm: WarmPool,
}

/// The async backend's own options.
#[derive(Clone, Default, Debug)]
pub struct AsyncOptions {
    runtime: Option<tokio::runtime::Handle>,
}

impl Backend for Async {
    type Options = AsyncOptions;
    const NAME: &'static str = "async";
    const MAX_WORKERS: usize = 100_000;
    const BLOCKING_SUBMIT: bool = false;

    fn auto_limit(cpus: usize) -> usize {
        4.max(32.min(4 * cpus))
    }

    fn build(options: AsyncOptions, settings: &QueueSettings) -> Result<Self, BackendError> {
        Ok(Self {
            runtime: options.runtime,
            warm: WarmPool::new(settings.slots),
        })
    }

    fn runner(self: Arc<Self>) -> Runner {
        Runner::Async(self)
    }
}

impl AcceptsNative for Async {}

impl AcceptsFutures for Async {}

impl AsyncRunner for Async {
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, AttemptReport> {
        Box::pin(async move {
            let run = self
                .warm
                .run_async(attempt.call.task(), super::local_request(&attempt));
            // Dropping the attempt's future stops the guest at once.
            tokio::select! {
                biased;
                report = run => report,
                _ = attempt.control.stopped() => attempt.control.stopped_outcome(attempt.display_name).into(),
            }
        })
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.clone()
    }

    fn close(&self) {
        self.warm.clear();
    }
}

impl QueueBuilder<Async> {
    /// The tokio runtime the workers run on (default: the one `start()` is called in).
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.options.runtime = Some(handle);
        self
    }
}
