//! The NATS backend: attempts run on `osiiso-host serve` nodes, on any machine that reaches
//! a NATS JetStream server (or cluster). The submitter's queue keeps every rule
//! (docs/queues.md); a node runs one attempt interruptibly and reports it. See [`NatsQueue`]
//! and docs/distributed.md (the protocol, its timings and its threat model).
//!
//! - [`connection`]: the servers, the notices when they go away and come back.
//! - [`layout`]: the streams, consumers, buckets and subjects.
//! - [`timing`]: every timing constant, and how they relate.
//! - [`frame`]: the frames attempts and reports travel in, and the keys that sign them.
//! - [`message`]: what the messages hold.
//! - [`payload`]: objects of the stores, read back bounded and checked.
//! - [`submitter`]: publishing attempts and taking their reports (the queue's side).
//! - [`node`]: `serve`: fetching, running and reporting attempts.
//! - [`grants`]: what a node lets submitters grant.

mod alarm;
mod connection;
mod error;
mod frame;
mod grants;
mod layout;
mod message;
mod node;
mod payload;
mod submitter;
mod timing;

pub use self::error::NatsError;
pub use self::message::{CachedPlugin, NodeInfo};
pub use self::node::{NatsNode, NodeConfig};

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use self::connection::{Broker, ConnectSpec, split_servers};
use self::submitter::Submitter;
use crate::attempt::AttemptReport;
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::backend::{AsyncRunner, Attempt, Backend, BackendError, QueueSettings, Runner};
use crate::queue::{Queue, QueueBuilder};

/// The broker URL when none is given.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// A queue whose attempts run on `osiiso-host serve` nodes through NATS JetStream: the same
/// builder, handles, hooks and summary as every queue, with attempts spread over machines.
/// WASM tasks only (they travel as data). `workers` is how many attempts this queue has in
/// flight; `Auto` is the sum of the slots of the nodes alive when it is built.
///
/// Execution is at least once: a node that stalls past its lease, or a broker that
/// restarts, can run an attempt twice; the queue still records exactly one result per task.
/// While the broker is out of reach, attempts wait for it (their timeouts do not run).
///
/// ```no_run
/// use osiiso_host::{Host, NatsQueue};
/// use osiiso_host::queue::TaskOptions;
/// use serde_json::json;
///
/// let score = Host::new()?.load("score.wasm")?.task("score")?;
/// // The servers of one cluster: any of them will do, and the run rides through the death
/// // of one.
/// let queue = NatsQueue::builder()
///     .nats("nats://10.0.0.5:4222,nats://10.0.0.6:4222,nats://10.0.0.7:4222")
///     .build()?;
/// let group = queue.map(&score, (0..1000).map(|i| json!(i)), TaskOptions::new().retries(2))?;
/// println!("{}", queue.run()?);
/// println!("{:?}", group.values()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type NatsQueue = Queue<Nats>;

/// The NATS backend's own options.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    servers: Vec<String>,
    connect_timeout: Duration,
    replicas: Option<usize>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            servers: vec![DEFAULT_URL.to_string()],
            connect_timeout: timing::CONNECT_TIMEOUT,
            replicas: None,
        }
    }
}

/// The NATS backend (see [`NatsQueue`]).
pub struct Nats {
    spec: ConnectSpec,
    /// Its own runtime: the connection, the report dispatcher and the queue's workers.
    runtime: Option<tokio::runtime::Runtime>,
    submitter: Mutex<Option<Arc<Submitter>>>,
    /// Held while a submitter starts again after a `close`: one at a time.
    starting: tokio::sync::Mutex<()>,
    /// Slots of the nodes alive at build time.
    live_slots: usize,
    /// Submitters still leaving (removing their entry, deleting their payloads).
    leaving: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Backend for Nats {
    type Options = NatsOptions;
    const NAME: &'static str = "nats";
    const MAX_WORKERS: usize = 100_000;

    fn auto_limit(_cpus: usize) -> usize {
        // Without live nodes to count: a window that keeps a small fleet busy.
        16
    }

    fn build(options: NatsOptions, _settings: &QueueSettings) -> Result<Self, BackendError> {
        // One thread: a submitter waits on the broker, and every extra thread is a hand-off
        // per message.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("osiiso-nats")
            .enable_all()
            .build()
            .map_err(|e| {
                BackendError::setup(std::io::Error::new(
                    e.kind(),
                    format!("cannot start its runtime: {e}"),
                ))
            })?;
        let spec = ConnectSpec {
            servers: options.servers,
            connect_timeout: options.connect_timeout,
            name: "osiiso-host submitter".to_string(),
            role: "submitter".to_string(),
            replicas: options.replicas,
            inbox_prefix: None,
        };
        let setup = async {
            let broker = Broker::connect(&spec).await?;
            let submitter = Submitter::start(broker.clone(), Some(timing::SETUP_PATIENCE)).await?;
            let nodes = broker.nodes().await?;
            let slots = layout::live_nodes(&nodes)
                .await
                .map(|nodes| {
                    // Entries are written by whoever reaches the broker: bounded.
                    nodes
                        .iter()
                        .map(|n| n.slots.min(node::MAX_SLOTS))
                        .fold(0usize, usize::saturating_add)
                })
                .unwrap_or(0);
            Ok::<_, NatsError>((submitter, slots))
        };
        // Inside another runtime (a builder called from async code) nothing may block it:
        // the set-up runs on a thread of its own.
        let (submitter, live_slots) = if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| scope.spawn(|| runtime.block_on(setup)).join())
                .map_err(|_| BackendError::setup("its set-up panicked"))?
        } else {
            runtime.block_on(setup)
        }
        .map_err(BackendError::setup)?;
        if live_slots == 0 {
            tracing::warn!(
                servers = %spec.shown(),
                "no osiiso-host serve node is alive on this NATS server; attempts wait until one starts"
            );
        }
        Ok(Self {
            spec,
            runtime: Some(runtime),
            submitter: Mutex::new(Some(submitter)),
            starting: tokio::sync::Mutex::new(()),
            live_slots,
            leaving: Mutex::new(Vec::new()),
        })
    }

    fn runner(self: Arc<Self>) -> Runner {
        Runner::Async(self)
    }

    fn discovered_auto_limit(&self) -> Option<usize> {
        (self.live_slots > 0).then_some(self.live_slots)
    }
}

impl Nats {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the backend")
            .handle()
    }

    /// The submitter, started again after a `close` (a queue that was reset).
    async fn submitter(&self) -> Result<Arc<Submitter>, TaskFailure> {
        if let Some(submitter) = self.submitter.lock().clone() {
            return Ok(submitter);
        }
        let _starting = self.starting.lock().await;
        if let Some(submitter) = self.submitter.lock().clone() {
            return Ok(submitter);
        }
        let started = async {
            let broker = Broker::connect(&self.spec).await?;
            Submitter::start(broker, Some(timing::SETUP_PATIENCE)).await
        };
        let submitter = started
            .await
            .map_err(|e| TaskFailure::new(FailureKind::WorkerStart, e.to_string()))?;
        *self.submitter.lock() = Some(submitter.clone());
        Ok(submitter)
    }
}

impl AsyncRunner for Nats {
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, AttemptReport> {
        Box::pin(async move {
            match self.submitter().await {
                Ok(submitter) => submitter.run(attempt).await,
                Err(failure) => AttemptReport::failed(failure),
            }
        })
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        Some(self.handle().clone())
    }

    fn close(&self) {
        let submitter = self.submitter.lock().take();
        if let Some(submitter) = submitter
            && let Some(leaving) = submitter.stop(self.handle())
        {
            self.leaving.lock().push(leaving);
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.close();
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Inside a runtime nothing may block.
                runtime.shutdown_background();
            } else {
                // Leaving the live set gets a moment to finish: a
                // runtime that shuts down drops its tasks.
                let leaving: Vec<_> = self.leaving.lock().drain(..).collect();
                runtime.block_on(async {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(3),
                        futures::future::join_all(leaving),
                    )
                    .await;
                });
                runtime.shutdown_timeout(Duration::from_millis(500));
            }
        }
    }
}

impl QueueBuilder<Nats> {
    /// The NATS servers: a URL such as `nats://10.0.0.5:4222`, or a comma-separated list of
    /// the servers of one cluster (default `nats://127.0.0.1:4222`); `tls://` and
    /// `user:password@` work as for any NATS client.
    pub fn nats(mut self, servers: impl AsRef<str>) -> Self {
        self.options.servers = split_servers([servers]);
        self
    }

    /// How long one try of the first connection may take before `build` fails (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Replicas of the streams this queue makes if they are missing (default: as many as the
    /// cluster has servers, up to 3). Existing streams keep theirs.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.options.replicas = Some(replicas);
        self
    }
}

/// The nodes alive on the broker of `servers` (a URL or a comma-separated list): what
/// `osiiso-host nodes` shows.
pub async fn live_nodes(
    servers: &str,
    connect_timeout: Duration,
) -> Result<Vec<NodeInfo>, NatsError> {
    let broker = Broker::connect(&ConnectSpec {
        servers: split_servers([servers]),
        connect_timeout,
        name: "osiiso-host nodes".to_string(),
        role: "nodes".to_string(),
        replicas: None,
        inbox_prefix: None,
    })
    .await?;
    // Only read: a broker no node ever used has no nodes bucket yet, and none alive.
    match broker.js.get_key_value(layout::NODES_BUCKET).await {
        Ok(nodes) => layout::live_nodes(&nodes).await,
        Err(error) if error.to_string().contains("not found") => Ok(Vec::new()),
        Err(error) => Err(NatsError::broker("open the nodes bucket", error)),
    }
}
