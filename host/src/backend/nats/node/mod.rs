//! A node: `osiiso-host serve`. It takes attempts from the broker only for its free slots,
//! lowest band first, runs each with the same engine, limits and interruption as the local
//! backends, and reports it. Queue rules are the submitters' business, not a node's.

mod attempt;
mod plugins;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use self::plugins::NodePlugins;
use super::NatsError;
use super::grants::GrantPolicy;
use super::layout::{self, BANDS, Broker, ConnectSpec, HEARTBEAT};
use super::wire::NodeInfo;
use crate::attempt::AttemptControl;
use crate::engine::{Host, WarmPool};

/// How long a node sleeps when every band is empty before it looks again (attempts that
/// come back after a lost node are announced by nobody).
const IDLE_SWEEP: Duration = Duration::from_millis(250);
/// How long a fetch waits for a band's first message (a just-published message can take a
/// moment to become visible to a pull).
const FETCH_WAIT: Duration = Duration::from_millis(3);
/// Attempts a node may hold at once, running or reporting.
const HANDLING: usize = 1 << 20;
/// Cancellations remembered for attempts this node has not seen yet.
const REMEMBERED_CANCELS: usize = 100_000;

/// How a node is configured (`osiiso-host serve`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The broker, e.g. `nats://127.0.0.1:4222` (`tls://` and `user:pass@` work as usual).
    pub url: String,
    /// Attempts run at once (default: the CPU count).
    pub slots: usize,
    /// Directories under which submitters may grant directories.
    pub allow_dirs: Vec<PathBuf>,
    /// `HOST[:PORT]`s submitters may allow HTTP to.
    pub allow_http: Vec<String>,
    /// Whether submitters may pass the node's environment (`--inherit-env`).
    pub allow_env: bool,
    /// The compile cache (and verified plugin copies); default as for the host.
    pub cache_dir: Option<PathBuf>,
    /// Without the compile cache.
    pub no_cache: bool,
    /// How long the broker waits for word from the node about an attempt before it hands it
    /// to another node; the node renews every quarter of it while an attempt runs.
    pub ack_wait: Duration,
    /// Fail the first connection after this long.
    pub connect_timeout: Duration,
    /// Linear memory all running attempts may hold together (default: half the machine).
    pub total_memory: Option<usize>,
}

impl NodeConfig {
    /// A node of `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            allow_dirs: Vec::new(),
            allow_http: Vec::new(),
            allow_env: false,
            cache_dir: None,
            no_cache: false,
            ack_wait: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(3),
            total_memory: None,
        }
    }
}

/// What the attempts of a node share.
pub(crate) struct NodeShared {
    pub(crate) id: String,
    pub(crate) broker: Broker,
    pub(crate) ack_wait: Duration,
    pub(crate) policy: GrantPolicy,
    pub(crate) plugins: NodePlugins,
    pub(crate) warm: WarmPool,
    /// Attempts running now, by uid.
    pub(crate) running: Mutex<Vec<(String, Arc<AttemptControl>)>>,
    /// Attempts cancelled before this node took them (bounded, oldest forgotten first).
    cancelled: Mutex<(HashSet<String>, VecDeque<String>)>,
    submitters: kv::Store,
    /// Recent answers to "is this submitter alive?".
    alive: Mutex<Vec<(String, Instant, bool)>>,
    pub(crate) busy: AtomicUsize,
}

impl NodeShared {
    /// Whether attempt `uid` was cancelled; a running one is stopped.
    fn cancel(&self, uid: &str) {
        if let Some((_, control)) = self.running.lock().iter().find(|(id, _)| id == uid) {
            control.cancel();
            return;
        }
        let mut cancelled = self.cancelled.lock();
        if cancelled.0.insert(uid.to_string()) {
            cancelled.1.push_back(uid.to_string());
            if cancelled.1.len() > REMEMBERED_CANCELS
                && let Some(old) = cancelled.1.pop_front()
            {
                cancelled.0.remove(&old);
            }
        }
    }

    pub(crate) fn was_cancelled(&self, uid: &str) -> bool {
        self.cancelled.lock().0.contains(uid)
    }

    /// Whether `submitter` is in the live set (answers are reused for a heartbeat).
    pub(crate) async fn submitter_alive(&self, submitter: &str) -> bool {
        let now = Instant::now();
        {
            let mut alive = self.alive.lock();
            alive.retain(|(_, at, _)| now.duration_since(*at) < HEARTBEAT);
            if let Some((_, _, answer)) = alive.iter().find(|(id, _, _)| id == submitter) {
                return *answer;
            }
        }
        let answer = match tokio::time::timeout(HEARTBEAT, self.submitters.get(submitter)).await {
            Ok(Ok(value)) => value.is_some(),
            // No answer says nothing: run it (the submitter drops what it no longer wants).
            _ => true,
        };
        self.alive.lock().push((submitter.to_string(), now, answer));
        answer
    }
}

/// A node connected to its broker, ready to [`serve`](Self::serve).
pub struct NatsNode {
    shared: Arc<NodeShared>,
    slots: usize,
    consumers: Vec<PullConsumer>,
    nodes: kv::Store,
    host_name: String,
}

impl NatsNode {
    /// Connects (failing fast, with the URL in the error), sets up the broker layout and
    /// the engine.
    pub async fn connect(config: NodeConfig) -> Result<Self, NatsError> {
        if config.slots == 0 {
            return Err(NatsError::Config("--slots must be at least 1".into()));
        }
        let id = format!("n{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut builder = Host::builder()
            .cache(!config.no_cache)
            .max_instances(u32::try_from(config.slots + 4).unwrap_or(u32::MAX))
            // Bytes from the broker never become native code.
            .allow_precompiled(false);
        if let Some(dir) = &config.cache_dir {
            builder = builder.cache_dir(dir);
        }
        if let Some(total) = config.total_memory {
            builder = builder.total_memory(total);
        }
        let host = builder
            .build()
            .map_err(|e| NatsError::Config(format!("cannot build the engine: {e}")))?;
        let policy = GrantPolicy::new(
            &config.allow_dirs,
            &config.allow_http,
            config.allow_env,
            host.cache_root().as_deref(),
        )
        .map_err(NatsError::Config)?;
        let broker = Broker::connect(&ConnectSpec {
            url: config.url.clone(),
            connect_timeout: config.connect_timeout,
            name: format!("osiiso-host node {id}"),
        })
        .await?;
        let attempts = broker.attempts().await?;
        let mut consumers = Vec::with_capacity(usize::from(BANDS));
        for band in 0..BANDS {
            consumers.push(
                broker
                    .band_consumer(&attempts, band, config.ack_wait)
                    .await?,
            );
        }
        let store = broker.plugins().await?;
        let nodes = broker.liveness(layout::NODES_BUCKET).await?;
        let submitters = broker.liveness(layout::SUBMITTERS_BUCKET).await?;
        let shared = Arc::new(NodeShared {
            id,
            broker,
            ack_wait: config.ack_wait,
            policy,
            plugins: NodePlugins::new(host, store),
            warm: WarmPool::new(config.slots),
            running: Mutex::new(Vec::new()),
            cancelled: Mutex::new((HashSet::new(), VecDeque::new())),
            submitters,
            alive: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
        });
        let host_name = hostname();
        Ok(Self {
            shared,
            slots: config.slots,
            consumers,
            nodes,
            host_name,
        })
    }

    /// This node's id (unique per process).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Serves attempts until `drain` resolves, then finishes the attempts it holds (taking
    /// no new ones) and leaves the live set.
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
        let kicks = client
            .subscribe(layout::KICK_SUBJECT)
            .await
            .map_err(|e| NatsError::broker("subscribe to kicks", e))?;
        let listener = tokio::spawn(listen_for_cancels(cancels, shared.clone()));
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

        let slots = Arc::new(Semaphore::new(self.slots));
        let handling = Arc::new(Semaphore::new(HANDLING));
        let fetching = Fetcher {
            shared: shared.clone(),
            consumers: self.consumers,
            slots: slots.clone(),
            handling: handling.clone(),
            kicks,
            bands: AtomicU8::new(u8::MAX),
            last_sweep: Instant::now(),
        };
        tokio::select! {
            () = fetching.run() => {}
            () = drain => tracing::info!(node = %shared.id, "draining: finishing running attempts"),
        }
        // Every permit back means every attempt run and reported.
        let _all = handling.acquire_many(HANDLING as u32).await;
        beat.abort();
        listener.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.nodes.delete(&shared.id)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
        tracing::info!(node = %shared.id, "stopped");
        Ok(())
    }
}

/// The fetch loop: attempts for free slots, lowest band first.
struct Fetcher {
    shared: Arc<NodeShared>,
    consumers: Vec<PullConsumer>,
    slots: Arc<Semaphore>,
    /// One permit per attempt between fetch and acknowledgement.
    handling: Arc<Semaphore>,
    kicks: async_nats::Subscriber,
    /// Bands that may have work (kicked, or not yet seen empty since the last sweep).
    bands: AtomicU8,
    last_sweep: Instant,
}

impl Fetcher {
    async fn run(mut self) {
        loop {
            let Ok(first) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let mut permits = vec![first];
            while let Ok(permit) = self.slots.clone().try_acquire_owned() {
                permits.push(permit);
            }
            self.take_kicks();
            if self.last_sweep.elapsed() >= IDLE_SWEEP {
                self.bands.store(u8::MAX, Ordering::Relaxed);
                self.last_sweep = Instant::now();
            }
            let mut took = false;
            for band in 0..BANDS {
                if permits.is_empty() {
                    break;
                }
                if self.bands.load(Ordering::Relaxed) & (1 << band) == 0 {
                    continue;
                }
                let messages = self.fetch(band, permits.len()).await;
                if messages.len() < permits.len() {
                    self.bands.fetch_and(!(1 << band), Ordering::Relaxed);
                }
                for message in messages {
                    took = true;
                    let permit = permits.pop().expect("no more messages than permits");
                    let Ok(handling) = self.handling.clone().try_acquire_owned() else {
                        // Never: a slot is held per attempt, and there are fewer slots.
                        continue;
                    };
                    tokio::spawn(attempt::handle(
                        self.shared.clone(),
                        message,
                        permit,
                        handling,
                    ));
                }
                if took {
                    // Lower bands first: look at them again before going on.
                    break;
                }
            }
            drop(permits);
            if !took {
                self.idle().await;
            }
        }
    }

    /// Up to `n` messages of `band`.
    async fn fetch(&self, band: u8, n: usize) -> Vec<jetstream::Message> {
        let consumer = &self.consumers[usize::from(band)];
        let fetch = async {
            let mut batch = consumer
                .fetch()
                .max_messages(n)
                .expires(FETCH_WAIT)
                .messages()
                .await?;
            let mut messages = Vec::with_capacity(n);
            while let Some(message) = batch.next().await {
                messages.push(message?);
            }
            Ok::<_, async_nats::Error>(messages)
        };
        // A bounded wait whatever the server does (2.9 can leave a pull unanswered).
        match tokio::time::timeout(FETCH_WAIT + Duration::from_secs(2), fetch).await {
            Ok(Ok(messages)) => messages,
            Ok(Err(error)) => {
                tracing::debug!(band, %error, "fetch failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Notes the bands named by kicks that arrived meanwhile.
    fn take_kicks(&mut self) {
        while let Some(Some(kick)) = self.kicks.next().now_or_never() {
            self.bands.fetch_or(
                kick.payload.first().copied().unwrap_or(u8::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Waits for a kick or the next sweep.
    async fn idle(&mut self) {
        let sweep = self.last_sweep + IDLE_SWEEP;
        tokio::select! {
            kick = self.kicks.next() => {
                let bands = kick.and_then(|k| k.payload.first().copied()).unwrap_or(u8::MAX);
                self.bands.fetch_or(bands, Ordering::Relaxed);
            }
            () = tokio::time::sleep_until(sweep.into()) => {}
        }
    }
}

/// Stops running attempts (and remembers queued ones) that their submitter cancelled.
async fn listen_for_cancels(mut cancels: async_nats::Subscriber, shared: Arc<NodeShared>) {
    while let Some(message) = cancels.next().await {
        if let Ok(uid) = std::str::from_utf8(&message.payload)
            && uid.len() <= 128
        {
            shared.cancel(uid);
        }
    }
}

/// Keeps the node in the live set, with what it runs and holds.
async fn heartbeat(nodes: kv::Store, shared: Arc<NodeShared>, mut info: NodeInfo) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        info.running = shared.busy.load(Ordering::Relaxed);
        info.cached = shared.plugins.cached();
        if let Ok(value) = serde_json::to_vec(&info) {
            let put = nodes.put(&shared.id, Bytes::from(value));
            if let Ok(Err(error)) = tokio::time::timeout(HEARTBEAT, put).await {
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
