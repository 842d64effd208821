//! A node: `osiiso-host serve`. It takes attempts from the broker only for its free slots,
//! lowest band first, runs each with the same engine, limits and interruption as the local
//! backends, and reports it. Queue rules are the submitters' business, not a node's.

mod attempt;
mod plugins;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
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

/// The most slots a node may have (and the most a node entry may claim).
pub(crate) const MAX_SLOTS: usize = 1024;
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
    /// How long compiling one plugin may take (default
    /// [`DEFAULT_COMPILE_TIMEOUT`](crate::DEFAULT_COMPILE_TIMEOUT)).
    pub compile_timeout: Option<Duration>,
    /// The memory compiling one plugin may use (default
    /// [`DEFAULT_COMPILE_MEMORY`](crate::DEFAULT_COMPILE_MEMORY)).
    pub compile_memory: Option<u64>,
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
            compile_timeout: None,
            compile_memory: None,
        }
    }
}

/// What the attempts of a node share.
pub(crate) struct NodeShared {
    pub(crate) id: String,
    pub(crate) broker: Broker,
    /// The fleet's lease (the band consumers' `ack_wait`), in milliseconds.
    lease: AtomicU64,
    /// This node's `--ack-wait`: the lease of consumers it makes.
    ack_wait: Duration,
    pub(crate) policy: GrantPolicy,
    pub(crate) plugins: NodePlugins,
    pub(crate) warm: WarmPool,
    /// Attempts running here, and cancellations of attempts not (yet) seen: one lock, so a
    /// cancel that races an attempt's start is never lost.
    attempts: Mutex<Attempts>,
    submitters: kv::Store,
    /// Recent answers to "is this submitter alive?".
    alive: Mutex<Vec<(String, Instant, bool)>>,
    pub(crate) busy: AtomicUsize,
}

/// What runs here and what was cancelled.
#[derive(Default)]
struct Attempts {
    running: Vec<(String, Arc<AttemptControl>)>,
    /// Bounded: the oldest are forgotten first.
    cancelled: HashSet<String>,
    cancel_order: VecDeque<String>,
}

impl NodeShared {
    /// How often a running attempt's lease is renewed: a quarter of the fleet's lease.
    pub(crate) fn renew_every(&self) -> Duration {
        Duration::from_millis(self.lease.load(Ordering::Relaxed) / 4).max(Duration::from_millis(50))
    }

    /// Attempt `uid` is cancelled: stopped if it runs here, else remembered.
    fn cancel(&self, uid: &str) {
        let mut attempts = self.attempts.lock();
        if let Some((_, control)) = attempts.running.iter().find(|(id, _)| id == uid) {
            control.cancel();
            return;
        }
        if attempts.cancelled.insert(uid.to_string()) {
            attempts.cancel_order.push_back(uid.to_string());
            if attempts.cancel_order.len() > REMEMBERED_CANCELS
                && let Some(old) = attempts.cancel_order.pop_front()
            {
                attempts.cancelled.remove(&old);
            }
        }
    }

    pub(crate) fn was_cancelled(&self, uid: &str) -> bool {
        self.attempts.lock().cancelled.contains(uid)
    }

    /// Registers a running attempt; false if it was cancelled already.
    pub(crate) fn start(&self, uid: &str, control: &Arc<AttemptControl>) -> bool {
        let mut attempts = self.attempts.lock();
        if attempts.cancelled.contains(uid) {
            return false;
        }
        attempts.running.push((uid.to_string(), control.clone()));
        true
    }

    pub(crate) fn finish(&self, uid: &str) {
        self.attempts.lock().running.retain(|(id, _)| id != uid);
    }

    /// Whether `submitter` is alive (answers are reused for a heartbeat). It is gone only
    /// when its heartbeat entry has expired *and* nothing answers on its report subject
    /// while this node has been connected long enough for it to be back after a broker
    /// restart; anything less certain counts as alive.
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
            Ok(Ok(None)) => self.answers(submitter).await,
            _ => true,
        };
        self.alive.lock().push((submitter.to_string(), now, answer));
        answer
    }

    /// Whether something answers a ping on the submitter's report subject (or this node
    /// cannot tell).
    async fn answers(&self, submitter: &str) -> bool {
        if self.broker.connected_for() < layout::LIVENESS.saturating_mul(2) {
            return true;
        }
        let ping = self
            .broker
            .client
            .request(layout::report_subject(submitter), Bytes::new());
        match tokio::time::timeout(HEARTBEAT, ping).await {
            Ok(Err(error)) => error.kind() != async_nats::RequestErrorKind::NoResponders,
            _ => true,
        }
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
        if config.slots == 0 || config.slots > MAX_SLOTS {
            return Err(NatsError::Config(format!(
                "--slots must be from 1 to {MAX_SLOTS}"
            )));
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
        if let Some(timeout) = config.compile_timeout {
            builder = builder.compile_timeout(timeout);
        }
        if let Some(bytes) = config.compile_memory {
            builder = builder.compile_memory(bytes);
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
        let (consumers, lease) = bands(&broker, config.ack_wait).await?;
        let store = broker.plugins().await?;
        let nodes = broker.liveness(layout::NODES_BUCKET).await?;
        let submitters = broker.liveness(layout::SUBMITTERS_BUCKET).await?;
        let shared = Arc::new(NodeShared {
            id,
            broker,
            lease: AtomicU64::new(lease.as_millis() as u64),
            ack_wait: config.ack_wait,
            policy,
            plugins: NodePlugins::new(host, store),
            warm: WarmPool::new(config.slots),
            attempts: Mutex::new(Attempts::default()),
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
        let stop = Stop::default();
        let fetching = Fetcher {
            shared: shared.clone(),
            consumers: self.consumers,
            slots: slots.clone(),
            handling: handling.clone(),
            kicks,
            bands: AtomicU8::new(u8::MAX),
            last_sweep: Instant::now(),
            failures: 0,
        };
        let fetch = fetching.run(&stop);
        tokio::pin!(fetch);
        tokio::pin!(drain);
        tokio::select! {
            () = &mut fetch => {}
            () = &mut drain => {
                tracing::info!(node = %shared.id, "draining: finishing running attempts");
                // The fetcher stops between fetches: what it took, it runs.
                stop.set();
                fetch.await;
            }
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

/// Asks the fetch loop to stop at its next safe point.
#[derive(Default)]
struct Stop {
    set: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Stop {
    fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Resolves once set.
    async fn wait(&self) {
        crate::wait::notified(&self.notify, || self.is_set().then_some(())).await;
    }
}

/// The band consumers, made with `ack_wait` where missing, and the fleet's lease (their
/// shortest `ack_wait`; the first node's `--ack-wait` sets it for everyone).
async fn bands(
    broker: &Broker,
    ack_wait: Duration,
) -> Result<(Vec<PullConsumer>, Duration), NatsError> {
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
    /// Fetches that failed in a row.
    failures: u32,
}

impl Fetcher {
    async fn run(mut self, stop: &Stop) {
        loop {
            let first = tokio::select! {
                permit = self.slots.clone().acquire_owned() => permit,
                () = stop.wait() => return,
            };
            let Ok(first) = first else { return };
            if stop.is_set() {
                return;
            }
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
            if self.failures >= 10 {
                self.set_up_again().await;
            }
            if !took {
                tokio::select! {
                    () = self.idle() => {}
                    () = stop.wait() => return,
                }
            }
        }
    }

    /// After fetches kept failing (a broker restarted with an empty store, say): makes the
    /// layout again.
    async fn set_up_again(&mut self) {
        let shared = self.shared.clone();
        tracing::warn!("fetching keeps failing; setting up the broker layout again");
        self.failures = 0;
        match bands(&shared.broker, shared.ack_wait).await {
            Ok((consumers, lease)) => {
                self.consumers = consumers;
                shared
                    .lease
                    .store(lease.as_millis() as u64, Ordering::Relaxed);
                let _ = shared.broker.plugins().await;
                let _ = shared.broker.liveness(layout::NODES_BUCKET).await;
                let _ = shared.broker.liveness(layout::SUBMITTERS_BUCKET).await;
            }
            Err(error) => tracing::warn!(%error, "cannot set up the broker layout"),
        }
    }

    /// Up to `n` messages of `band`. Messages received before an error are kept: each one
    /// is a lease this node now holds.
    async fn fetch(&mut self, band: u8, n: usize) -> Vec<jetstream::Message> {
        let consumer = &self.consumers[usize::from(band)];
        let mut messages = Vec::with_capacity(n);
        let fetch = async {
            let mut batch = consumer
                .fetch()
                .max_messages(n)
                .expires(FETCH_WAIT)
                .messages()
                .await?;
            while let Some(message) = batch.next().await {
                messages.push(message?);
            }
            Ok::<_, async_nats::Error>(())
        };
        // A bounded wait whatever the server does (2.9 can leave a pull unanswered).
        let fetched = tokio::time::timeout(FETCH_WAIT + Duration::from_secs(2), fetch).await;
        match fetched {
            Ok(Err(error)) if messages.is_empty() => {
                self.failures += 1;
                tracing::debug!(band, %error, "fetch failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => self.failures = 0,
        }
        messages
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
        // Only a submitter's own attempts: `osiiso1.cancel.<submitter>` names `<submitter>-n`.
        let submitter = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default();
        if let Ok(uid) = std::str::from_utf8(&message.payload)
            && uid.len() <= 128
            && uid
                .strip_prefix(submitter)
                .is_some_and(|rest| rest.starts_with('-'))
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
