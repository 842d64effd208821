//! One-shot fan-outs (docs/queues.md §12): `tmap`, `amap` and `pmap` build a queue, map a task
//! over the items, run, and return the values in input order — or an error if any task failed
//! or was cancelled. And [`block_on`], a tokio runtime for a `main` that is not async.

use std::time::Duration;

use serde_json::Value;

use crate::backend::{AsyncQueue, ProcessContext, ProcessQueue, ThreadQueue, WorkerInit};
use crate::engine::Task;
use crate::json::Json;
use crate::queue::backend::Backend;
use crate::queue::{
    Checkpoint, Checkpointing, Error, KeyFn, Queue, QueueBuilder, Retention, RunOptions,
    TaskOptions, Workers,
};

/// The options of a one-shot helper.
///
/// ```
/// use osiiso_host::{HelperOptions, Host, tmap};
/// use serde_json::json;
/// # let double_wasm = osiiso_test_artifacts::DOUBLE;
/// let double = Host::new()?.load(double_wasm)?.task("double")?;
/// let values = tmap(&double, (1..=4).map(|n| json!(n)), HelperOptions::new().workers(2))?;
/// assert_eq!(values, [json!(2), json!(4), json!(6), json!(8)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct HelperOptions {
    workers: Option<usize>,
    rate: Option<f64>,
    timeout: Option<Duration>,
    checkpoint: Option<Checkpoint>,
    key: Option<KeyFn>,
    namespace: Option<String>,
    task_options: TaskOptions,
    context: Option<ProcessContext>,
    initializer: Option<WorkerInit>,
}

impl std::fmt::Debug for HelperOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperOptions")
            .field("workers", &self.workers)
            .field("timeout", &self.timeout)
            .field("checkpoint", &self.checkpoint)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl HelperOptions {
    /// Auto workers, no rate, no timeout, no checkpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fixed number of workers.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Attempts per second.
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate);
        self
    }

    /// A limit for the whole run; what is not done by then is cancelled (an error).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Restores inputs that succeeded before and records the ones that succeed now.
    pub fn checkpoint(mut self, checkpoint: &Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint.clone());
        self
    }

    /// The checkpoint namespace (default: the task's identity).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Derives each input's checkpoint key (default: its canonical JSON).
    pub fn key(mut self, key: impl Fn(&crate::TaskCall) -> String + Send + Sync + 'static) -> Self {
        self.key = Some(std::sync::Arc::new(key));
        self
    }

    /// The options of every task.
    pub fn task_options(mut self, options: TaskOptions) -> Self {
        self.task_options = options;
        self
    }

    /// How [`pmap`]'s worker processes start.
    pub fn context(mut self, context: ProcessContext) -> Self {
        self.context = Some(context);
        self
    }

    /// What [`pmap`]'s worker processes do before their first task.
    pub fn initializer(mut self, init: WorkerInit) -> Self {
        self.initializer = Some(init);
        self
    }

    fn configure<B: Backend>(&self, builder: QueueBuilder<B>) -> QueueBuilder<B> {
        // The group keeps every handle, so the values; the queue itself need not keep the
        // results as well.
        let mut builder = builder
            .workers(self.workers.map_or(Workers::Auto, Workers::Fixed))
            .retention(Retention::Counts);
        if let Some(rate) = self.rate {
            builder = builder.rate(rate);
        }
        builder
    }

    fn checkpointing(&self) -> Option<Checkpointing> {
        let checkpoint = self.checkpoint.as_ref()?;
        let mut checkpointing = Checkpointing::new(checkpoint);
        if let Some(namespace) = &self.namespace {
            checkpointing = checkpointing.namespace(namespace.clone());
        }
        if let Some(key) = &self.key {
            let key = key.clone();
            checkpointing = checkpointing.key(move |call| key(call));
        }
        Some(checkpointing)
    }

    fn run_options(&self) -> RunOptions {
        match self.timeout {
            Some(timeout) => RunOptions::default().timeout(timeout),
            None => RunOptions::default(),
        }
    }
}

/// Maps `task` over `items` on a [`ThreadQueue`]: the values in input order, or
/// [`Error::Execution`] if any task failed or was cancelled.
///
/// ```
/// use osiiso_host::{HelperOptions, Host, tmap};
/// use serde_json::json;
/// # let double_wasm = osiiso_test_artifacts::DOUBLE;
/// let double = Host::new()?.load(double_wasm)?.task("double")?;
/// let values = tmap(&double, (1..=5).map(|n| json!(n)), HelperOptions::new())?;
/// assert_eq!(values, [2, 4, 6, 8, 10].map(|n| json!(n)));
///
/// // One failed task fails the call; the error holds the failed results.
/// let error = tmap(&double, [json!(1), json!(i64::MAX)], HelperOptions::new()).unwrap_err();
/// assert_eq!(error.to_string(), "1 task(s) failed");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn tmap(
    task: &Task,
    items: impl IntoIterator<Item = Value>,
    options: HelperOptions,
) -> Result<Vec<Json>, Error> {
    let queue = options.configure(ThreadQueue::builder()).build()?;
    blocking_map(&queue, task, items, &options)
}

/// [`tmap`] on a [`ProcessQueue`]: each task runs in a worker subprocess. By default the
/// workers are `osiiso-host worker`; a program can be its own worker binary instead
/// ([`ProcessContext::CurrentExe`], with [`maybe_run_worker`](crate::maybe_run_worker) first
/// in `main`):
///
/// ```standalone_crate
/// use osiiso_host::backend::ProcessContext;
/// use osiiso_host::{HelperOptions, Host, pmap};
/// use serde_json::json;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     osiiso_host::maybe_run_worker();
///     # let double_wasm = osiiso_test_artifacts::DOUBLE;
///
///     let double = Host::new()?.load(double_wasm)?.task("double")?;
///     let options = HelperOptions::new()
///         .workers(2)
///         .context(ProcessContext::CurrentExe { args: Vec::new() });
///     let values = pmap(&double, (1..=4).map(|n| json!(n)), options)?;
///     assert_eq!(values, [json!(2), json!(4), json!(6), json!(8)]);
///     Ok(())
/// }
/// ```
pub fn pmap(
    task: &Task,
    items: impl IntoIterator<Item = Value>,
    options: HelperOptions,
) -> Result<Vec<Json>, Error> {
    let mut builder = options.configure(ProcessQueue::builder());
    if let Some(context) = &options.context {
        builder = builder.context(context.clone());
    }
    if let Some(init) = &options.initializer {
        builder = builder.initializer(init.clone());
    }
    let queue = builder.build()?;
    blocking_map(&queue, task, items, &options)
}

/// [`tmap`] on an [`AsyncQueue`] bound to the caller's runtime.
///
/// ```
/// use osiiso_host::{HelperOptions, Host, amap};
/// use serde_json::json;
/// # let double_wasm = osiiso_test_artifacts::DOUBLE;
/// let double = Host::new()?.load(double_wasm)?.task("double")?;
/// let runtime = tokio::runtime::Runtime::new()?;
/// let values = runtime.block_on(async {
///     amap(&double, (1..=100).map(|n| json!(n)), HelperOptions::new().workers(20)).await
/// })?;
/// assert_eq!(values.len(), 100);
/// assert_eq!(values[99], json!(200));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn amap(
    task: &Task,
    items: impl IntoIterator<Item = Value>,
    options: HelperOptions,
) -> Result<Vec<Json>, Error> {
    let queue = options.configure(AsyncQueue::builder()).build()?;
    queue.start()?;
    let mapped = map(&queue, task, items, &options);
    let outcome = match mapped {
        Ok(group) => match queue.run_with_async(options.run_options()).await {
            Ok(_) => group.values(),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match &outcome {
        Ok(_) => queue.shutdown_async().await,
        Err(_) => queue.shutdown_force(),
    }
    outcome
}

fn blocking_map<B: Backend>(
    queue: &Queue<B>,
    task: &Task,
    items: impl IntoIterator<Item = Value>,
    options: &HelperOptions,
) -> Result<Vec<Json>, Error> {
    queue.scope(|queue| {
        let group = map(queue, task, items, options)?;
        queue.run_with(options.run_options())?;
        group.values()
    })
}

fn map<B: Backend>(
    queue: &Queue<B>,
    task: &Task,
    items: impl IntoIterator<Item = Value>,
    options: &HelperOptions,
) -> Result<crate::queue::Group, Error> {
    let task_options = options.task_options.clone();
    match options.checkpointing() {
        Some(checkpointing) => queue.map_checkpointed(task, items, task_options, &checkpointing),
        None => queue.map(task, items, task_options),
    }
}

/// How [`block_on`] builds its runtime: `RuntimeConfig::default()` is a multi-thread runtime
/// without logging.
///
/// ```
/// use osiiso_host::RuntimeConfig;
/// let config = RuntimeConfig::default().current_thread(true);
/// assert_eq!(osiiso_host::block_on(async { 1 + 1 }, config)?, 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    current_thread: bool,
    debug: bool,
}

impl RuntimeConfig {
    /// A current-thread runtime instead of the multi-thread default.
    pub fn current_thread(mut self, current_thread: bool) -> Self {
        self.current_thread = current_thread;
        self
    }

    /// Debug-level `tracing` for this crate, if no subscriber is installed yet.
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }
}

/// Runs `future` to completion on a new tokio runtime (multi-thread unless asked otherwise)
/// and returns its output. It changes no global state and never replaces a `tracing`
/// subscriber that is already installed. Called inside a runtime, it returns an error.
///
/// ```
/// let answer = osiiso_host::block_on(async { 40 + 2 }, Default::default())?;
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Its typical use: an [`AsyncQueue`] driven from a `main` that is not async.
///
/// ```
/// use osiiso_host::queue::TaskOptions;
/// use osiiso_host::{AsyncQueue, Host, RuntimeConfig, block_on};
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
/// let summary = block_on(
///     async {
///         let queue = AsyncQueue::builder().build()?;
///         queue.map(&echo, (0..50).map(|i| json!(i)), TaskOptions::new())?;
///         queue.run_async().await
///     },
///     RuntimeConfig::default(),
/// )??;
/// assert_eq!(summary.succeeded, 50);
///
/// // Inside a runtime it refuses, rather than block one of the runtime's threads.
/// let nested = block_on(async { block_on(async {}, RuntimeConfig::default()).is_err() }, RuntimeConfig::default())?;
/// assert!(nested);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn block_on<F: std::future::Future>(
    future: F,
    config: RuntimeConfig,
) -> std::io::Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(std::io::Error::other(
            "osiiso_host::block_on was called inside a tokio runtime; await the future instead",
        ));
    }
    if config.debug {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("osiiso_host=debug,osiiso=debug")
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = if config.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    Ok(runtime.block_on(future))
}
