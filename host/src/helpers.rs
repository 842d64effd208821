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
pub fn tmap(
    task: &Task,
    items: impl IntoIterator<Item = Value>,
    options: HelperOptions,
) -> Result<Vec<Json>, Error> {
    let queue = options.configure(ThreadQueue::builder()).build()?;
    blocking_map(&queue, task, items, &options)
}

/// [`tmap`] on a [`ProcessQueue`]: each task runs in a worker subprocess.
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
