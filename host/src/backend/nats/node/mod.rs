//! A node: `osiiso-host serve`. It takes attempts from the broker only for its free slots,
//! lowest band first, runs each with the same engine, limits and interruption as the local
//! backends, and reports it. Queue rules are the submitters' business, not a node's.
//!
//! - [`fetch`]: taking attempts (sweeps while there is work, long polls while there is none).
//! - [`execute`]: one attempt, from its message to its report.
//! - [`announce`]: "still running" to each submitter, and cancellations in.
//! - [`held`]: the attempts a node holds, and cancellations of those it has not seen.
//! - [`orphans`]: whether a submitter is gone.
//! - [`plugins`]: components from memory, disk or the broker, checked against their hash.
//! - [`watch`]: what the metrics see of a node, and where it records a finished attempt.

mod announce;
mod config;
mod execute;
mod fetch;
mod held;
mod orphans;
mod plugins;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{kv, object_store};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

pub use self::config::NodeConfig;
use self::held::Attempts;
use self::orphans::Liveness;
use self::plugins::NodePlugins;
use super::NatsError;
use super::connection::{Broker, ConnectSpec, patiently};
use super::grants::GrantPolicy;
use super::layout::{self, BANDS, NODE_INBOX_PREFIX};
use super::message::NodeInfo;
use super::timing::{LEAVE_PATIENCE, NODE_HEARTBEAT};
use crate::engine::{Host, WarmPool};
use crate::metrics::Metrics;

/// The most slots a node may have (and the most a node entry may claim).
pub(crate) const MAX_SLOTS: usize = 1024;
/// Attempts a node may hold at once, running, waiting for a slot or reporting.
const HANDLING: usize = 1 << 20;

/// What the attempts of a node share.
pub(crate) struct NodeShared {
    pub(crate) id: String,
    pub(crate) broker: Broker,
    slots: usize,
    /// Filled as attempts end, when anyone watches.
    pub(crate) metrics: Option<Metrics>,
    /// The fleet's lease (the band consumers' `ack_wait`), in milliseconds.
    lease: AtomicU64,
    /// This node's `--ack-wait`: the lease of consumers it makes.
    ack_wait: Duration,
    pub(crate) policy: GrantPolicy,
    pub(crate) plugins: NodePlugins,
    pub(crate) payloads: object_store::ObjectStore,
    pub(crate) warm: WarmPool,
    /// Attempts held here, and cancellations of attempts not (yet) seen: one lock, so a
    /// cancel that races an attempt's start is never lost.
    attempts: Mutex<Attempts>,
    submitters: kv::Store,
    /// What this node last learnt about submitters' liveness.
    alive: Mutex<HashMap<String, Liveness>>,
    pub(crate) busy: AtomicUsize,
    /// Wakes the announcer (an attempt whose clock starts now).
    pub(crate) announce_now: tokio::sync::Notify,
    /// Stops taking attempts (draining).
    pub(crate) draining: AtomicBool,
}

impl NodeShared {
    /// How often a held attempt's lease is renewed: a quarter of the fleet's lease.
    pub(crate) fn renew_every(&self) -> Duration {
        Duration::from_millis(self.lease.load(Ordering::Relaxed) / 4).max(Duration::from_millis(50))
    }
}

/// A node connected to its broker, ready to [`serve`](Self::serve): what `osiiso-host serve`
/// runs, embeddable in a program of your own. It runs attempts of every
/// [`NatsQueue`](crate::NatsQueue) on the same broker, in as many slots as it has.
///
/// This example needs a NATS server with JetStream, so it is compiled but not run as a doc
/// test (`host/examples/nats.rs` runs a node and a queue together).
///
/// ```no_run
/// use osiiso_host::backend::{NatsNode, NodeConfig};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let config = NodeConfig::new("nats://127.0.0.1:4222").slots(4);
///     let node = NatsNode::connect(config).await?;
///     println!("node {} takes attempts", node.id());
///     // It serves until `drain` resolves, then finishes the attempts it runs and leaves.
///     let (stop, drain) = tokio::sync::oneshot::channel::<()>();
///     let serving = tokio::spawn(node.serve(async { drain.await.ok(); }));
///     // ... until this program wants to stop:
///     stop.send(()).ok();
///     serving.await??;
///     Ok(())
/// }
/// ```
pub struct NatsNode {
    shared: Arc<NodeShared>,
    slots: usize,
    nodes: kv::Store,
    host_name: String,
}

impl NatsNode {
    /// Connects (failing fast, with the servers in the error, unless
    /// [`NodeConfig::wait_for_broker`]), sets up the broker layout and the engine.
    pub async fn connect(config: NodeConfig) -> Result<Self, NatsError> {
        config.validate()?;
        let id = layout::random_id("n");
        let mut builder = Host::builder()
            .cache(config.cache)
            .max_instances(u32::try_from(config.slots + 4).unwrap_or(u32::MAX))
            // Bytes from the broker never become native code.
            .allow_precompiled(false);
        if let Some(dir) = &config.cache_dir {
            builder = builder.cache_dir(dir);
        }
        if let Some(total) = config.total_memory {
            builder = builder.total_memory(total);
        }
        if let Some(timeout) = config.compile_timeout {
            builder = builder.compile_timeout(timeout);
        }
        if let Some(bytes) = config.compile_memory {
            builder = builder.compile_memory(bytes);
        }
        let host = builder.compile_tier(config.compile_tier).build()?;
        let policy = GrantPolicy::new(
            &config.allow_dirs,
            &config.allow_http,
            config.allow_env,
            host.cache_root().as_deref(),
        )
        .map_err(NatsError::Grants)?;
        let spec = ConnectSpec {
            servers: config.servers.clone(),
            connect_timeout: config.connect_timeout,
            name: format!("osiiso-host node {id}"),
            role: format!("node {id}"),
            replicas: config.replicas,
            inbox_prefix: Some(NODE_INBOX_PREFIX),
        };
        let (broker, patience) = if config.wait_for_broker {
            (Broker::connect_patiently(&spec).await?, None)
        } else {
            (Broker::connect(&spec).await?, Some(Duration::ZERO))
        };
        let (lease, store, payloads, nodes, submitters) =
            patiently(&broker, "setting up the NATS layout", patience, || async {
                let (_, lease) = bands(&broker, config.ack_wait).await?;
                Ok((
                    lease,
                    broker.plugins().await?,
                    broker.payloads().await?,
                    broker.nodes().await?,
                    broker.submitters().await?,
                ))
            })
            .await?;
        if let Some(metrics) = &config.metrics {
            metrics.watch_host(&host);
        }
        let shared = Arc::new(NodeShared {
            id,
            broker,
            slots: config.slots,
            metrics: config.metrics.clone(),
            lease: AtomicU64::new(lease.as_millis() as u64),
            ack_wait: config.ack_wait,
            policy,
            plugins: NodePlugins::new(host, store),
            payloads,
            warm: WarmPool::new(config.slots),
            attempts: Mutex::new(Attempts::default()),
            submitters,
            alive: Mutex::new(HashMap::new()),
            busy: AtomicUsize::new(0),
            announce_now: tokio::sync::Notify::new(),
            draining: AtomicBool::new(false),
        });
        if let Some(metrics) = &config.metrics {
            metrics.attach_node(shared.as_source());
        }
        Ok(Self {
            shared,
            slots: config.slots,
            nodes,
            host_name: hostname(),
        })
    }

    /// This node's id (unique per process).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Serves attempts until `drain` resolves, then finishes the attempts it runs (taking no
    /// new ones, handing back those it holds without a slot) and leaves the live set.
    pub async fn serve(
        self,
        drain: impl std::future::Future<Output = ()>,
    ) -> Result<(), NatsError> {
        let shared = self.shared.clone();
        let client = shared.broker.client.clone();
        let cancels = client
            .subscribe(layout::CANCEL_SUBJECTS)
            .await
            .map_err(|e| NatsError::broker("subscribe to cancellations", e))?;
        let listener = tokio::spawn(announce::listen_for_cancels(cancels, shared.clone()));
        let announcer = tokio::spawn(announce::announce(shared.clone()));
        let info = NodeInfo {
            id: shared.id.clone(),
            host: self.host_name.clone(),
            slots: self.slots,
            running: 0,
            cached: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let beat = tokio::spawn(heartbeat(self.nodes.clone(), shared.clone(), info));
        tracing::info!(node = %shared.id, slots = self.slots, "serving attempts");

        let handling = Arc::new(Semaphore::new(HANDLING));
        let fetcher = fetch::Fetcher::start(shared.clone(), self.slots, handling.clone()).await?;
        let stop = fetch::Stop::default();
        let fetch = fetcher.run(&stop);
        tokio::pin!(fetch);
        tokio::pin!(drain);
        tokio::select! {
            () = &mut fetch => {}
            () = &mut drain => {
                tracing::info!(node = %shared.id, "draining: finishing running attempts");
                shared.draining.store(true, Ordering::SeqCst);
                stop.set();
                fetch.await;
            }
        }
        // Every permit back means every attempt run and reported (or handed back).
        let _all = handling.acquire_many(HANDLING as u32).await;
        beat.abort();
        listener.abort();
        announcer.abort();
        let _ = tokio::time::timeout(LEAVE_PATIENCE, self.nodes.delete(&shared.id)).await;
        let _ = tokio::time::timeout(LEAVE_PATIENCE, client.flush()).await;
        tracing::info!(node = %shared.id, "stopped");
        Ok(())
    }
}

/// The band consumers, made with `ack_wait` where missing, and the fleet's lease (their
/// shortest `ack_wait`; the first node's `--ack-wait` sets it for everyone).
pub(crate) async fn bands(
    broker: &Broker,
    ack_wait: Duration,
) -> Result<(Vec<async_nats::jetstream::consumer::PullConsumer>, Duration), NatsError> {
    let attempts = broker.attempts().await?;
    let mut consumers = Vec::with_capacity(usize::from(BANDS));
    let mut lease = Duration::MAX;
    for band in 0..BANDS {
        let consumer = broker.band_consumer(&attempts, band, ack_wait).await?;
        lease = lease.min(consumer.cached_info().config.ack_wait);
        consumers.push(consumer);
    }
    if lease != ack_wait {
        tracing::warn!(
            lease = ?lease,
            ack_wait = ?ack_wait,
            "the fleet's lease was set by the node that made the consumers; this node follows it"
        );
    }
    Ok((consumers, lease))
}

impl NodeShared {
    /// Makes the layout again (a broker restarted with an empty store, say).
    pub(crate) async fn set_up_again(&self) {
        tracing::warn!("the band consumers do not answer; setting up the broker layout again");
        match bands(&self.broker, self.ack_wait).await {
            Ok((_, lease)) => {
                self.lease
                    .store(lease.as_millis() as u64, Ordering::Relaxed);
                let _ = self.broker.plugins().await;
                let _ = self.broker.payloads().await;
                let _ = self.broker.nodes().await;
                let _ = self.broker.submitters().await;
            }
            Err(error) => tracing::warn!(%error, "cannot set up the broker layout"),
        }
    }
}

/// Keeps the node in the live set, with what it runs and holds.
async fn heartbeat(nodes: kv::Store, shared: Arc<NodeShared>, mut info: NodeInfo) {
    let mut tick = tokio::time::interval(NODE_HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        info.running = shared.busy.load(Ordering::Relaxed);
        info.cached = shared.plugins.cached();
        if let Ok(value) = serde_json::to_vec(&info) {
            let put = nodes.put(&shared.id, Bytes::from(value));
            if let Ok(Err(error)) = tokio::time::timeout(NODE_HEARTBEAT, put).await {
                tracing::debug!(%error, "heartbeat failed");
            }
        }
    }
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    if ok {
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    } else {
        "unknown".to_string()
    }
}
