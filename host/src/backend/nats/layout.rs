//! The broker layout: every stream, consumer, bucket and subject the NATS backend uses, and
//! the connection to the broker. Names carry the `OSIISO1` version; a change to a message
//! format gets new names rather than a silent mismatch.
//!
//! | thing | configuration |
//! |---|---|
//! | stream `OSIISO1_ATTEMPTS`, subjects `osiiso1.attempt.<band>.<submitter>` | work queue, file, dedup 2 min, max age 24 h |
//! | consumers `OSIISO1_BAND_<0..7>` (made by nodes) | pull, explicit ack, the node's `ack_wait`, max deliver 5 |
//! | object store `osiiso1-plugins` | components named `blake3-<hex>` |
//! | key-value `osiiso1-nodes`, `osiiso1-submitters` | liveness: entries expire 3 heartbeats after the last |
//! | core subjects | `osiiso1.report.<submitter>` (request/reply), `osiiso1.cancel.<submitter>`, `osiiso1.event.<submitter>`, `osiiso1.kick` |
//!
//! Reports travel as core requests that the submitter answers once it has taken them: a node
//! retries until it gets the answer, and only then acknowledges the attempt. That is as
//! durable as a stream of reports (a report is never dropped before the submitter has it),
//! and costs the broker no stored message, consumer or acknowledgement per attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context, kv, object_store};

use super::NatsError;

/// The stream of attempts waiting for a node.
pub(crate) const ATTEMPTS_STREAM: &str = "OSIISO1_ATTEMPTS";
/// The object store of plugins, by content hash.
pub(crate) const PLUGINS_BUCKET: &str = "osiiso1-plugins";
/// Live nodes: `NodeInfo` by node id.
pub(crate) const NODES_BUCKET: &str = "osiiso1-nodes";
/// Live submitters: any value, by submitter id.
pub(crate) const SUBMITTERS_BUCKET: &str = "osiiso1-submitters";
/// Wakes idle nodes: the payload is the band that has new work.
pub(crate) const KICK_SUBJECT: &str = "osiiso1.kick";
/// Every submitter's cancellations.
pub(crate) const CANCEL_SUBJECTS: &str = "osiiso1.cancel.*";

/// Priority bands: `clamp(priority, 0, 7)`, one consumer each.
pub(crate) const BANDS: u8 = 8;
/// How often nodes and submitters say they are alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// An entry of the liveness buckets expires this long after its last heartbeat.
pub(crate) const LIVENESS: Duration = Duration::from_secs(3);
/// The most a stored plugin may weigh (the host's default plugin bound).
pub(crate) const MAX_PLUGIN_BYTES: u64 = crate::engine::DEFAULT_MAX_PLUGIN_BYTES;
/// Deliveries of one attempt before the broker gives up on it; a node turns the second into
/// a crash report, so only nodes dying between fetch and report come near it.
const MAX_DELIVER: i64 = 5;

/// The band of a priority: lower runs first.
pub(crate) fn band(priority: i32) -> u8 {
    priority.clamp(0, i32::from(BANDS) - 1) as u8
}

/// The durable consumer of a band.
pub(crate) fn band_consumer_name(band: u8) -> String {
    format!("OSIISO1_BAND_{band}")
}

pub(crate) fn attempt_subject(band: u8, submitter: &str) -> String {
    format!("osiiso1.attempt.{band}.{submitter}")
}

pub(crate) fn report_subject(submitter: &str) -> String {
    format!("osiiso1.report.{submitter}")
}

pub(crate) fn cancel_subject(submitter: &str) -> String {
    format!("osiiso1.cancel.{submitter}")
}

pub(crate) fn event_subject(submitter: &str) -> String {
    format!("osiiso1.event.{submitter}")
}

pub(crate) fn plugin_object(hash: &str) -> String {
    format!("blake3-{hash}")
}

/// A token for a subject or a key: an id of ours is already one, but ids come back from
/// the broker, where anyone may have written them.
pub(crate) fn is_token(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How to reach the broker.
#[derive(Debug, Clone)]
pub(crate) struct ConnectSpec {
    pub url: String,
    /// Fail the first connection after this long (a hung server, a black-holed address).
    pub connect_timeout: Duration,
    /// The connection's name, as the broker's monitoring shows it.
    pub name: String,
}

/// A connection to the broker and its JetStream context.
#[derive(Clone)]
pub(crate) struct Broker {
    pub client: async_nats::Client,
    pub js: Context,
    /// The largest message the broker accepts.
    pub max_payload: usize,
    /// When the connection was last re-established (long ago if never).
    connected_at: Arc<Mutex<Instant>>,
}

impl Broker {
    /// Connects, failing fast (no retry of the first connection) with the URL in the error.
    pub(crate) async fn connect(spec: &ConnectSpec) -> Result<Self, NatsError> {
        // The first connection counts as long ago: only a reconnection is recent.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        let connected_at = Arc::new(Mutex::new(long_ago));
        let on_event = connected_at.clone();
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let client = async_nats::ConnectOptions::new()
            .name(&spec.name)
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected)
                    && connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0
                {
                    *on_event.lock() = Instant::now();
                }
                async {}
            })
            .connection_timeout(spec.connect_timeout)
            .request_timeout(Some(Duration::from_secs(5)))
            // Unbounded reconnects, each soon: a broker restart must not end a run.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100).saturating_mul(attempts.min(10) as u32)
            })
            .connect(spec.url.as_str())
            .await
            .map_err(|e| NatsError::Connect {
                url: spec.url.clone(),
                message: e.to_string(),
            })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(client.clone());
        let max_payload = client.server_info().max_payload;
        Ok(Self {
            client,
            js,
            max_payload,
            connected_at,
        })
    }

    /// How long the connection has been up since the last reconnection (zero while it is
    /// down).
    pub(crate) fn connected_for(&self) -> Duration {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Duration::ZERO;
        }
        self.connected_at.lock().elapsed()
    }

    /// The attempts stream, made if missing.
    pub(crate) async fn attempts(&self) -> Result<stream::Stream, NatsError> {
        let made = self
            .js
            .get_or_create_stream(stream::Config {
                name: ATTEMPTS_STREAM.to_string(),
                subjects: vec!["osiiso1.attempt.*.*".to_string()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: Duration::from_secs(120),
                max_age: Duration::from_secs(24 * 3600),
                ..Default::default()
            })
            .await;
        match made {
            Ok(stream) => Ok(stream),
            // Another node or submitter made it at the same moment (2.9 says "subjects
            // overlap" then): take theirs.
            Err(error) => self
                .js
                .get_stream(ATTEMPTS_STREAM)
                .await
                .map_err(|_| NatsError::broker("create the attempts stream", error)),
        }
    }

    /// The durable consumer of one band, made with `ack_wait` if missing (an existing one
    /// keeps its own: the whole fleet shares it).
    pub(crate) async fn band_consumer(
        &self,
        attempts: &stream::Stream,
        band: u8,
        ack_wait: Duration,
    ) -> Result<PullConsumer, NatsError> {
        let name = band_consumer_name(band);
        attempts
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    // `.*`, not `.>`: 2.9 refuses a filter that is not a subset token by token.
                    filter_subject: format!("osiiso1.attempt.{band}.*"),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait,
                    max_deliver: MAX_DELIVER,
                    // Nodes hold at most their slots; the broker's default (1000) would cap a fleet.
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| NatsError::broker("create a band consumer", e))
    }

    /// The plugin store, made if missing.
    pub(crate) async fn plugins(&self) -> Result<object_store::ObjectStore, NatsError> {
        match self.js.get_object_store(PLUGINS_BUCKET).await {
            Ok(store) => Ok(store),
            Err(_) => {
                let made = self
                    .js
                    .create_object_store(object_store::Config {
                        bucket: PLUGINS_BUCKET.to_string(),
                        storage: StorageType::File,
                        ..Default::default()
                    })
                    .await;
                match made {
                    Ok(store) => Ok(store),
                    Err(error) => self
                        .js
                        .get_object_store(PLUGINS_BUCKET)
                        .await
                        .map_err(|_| NatsError::broker("create the plugin store", error)),
                }
            }
        }
    }

    /// A liveness bucket (entries expire after [`LIVENESS`]), made if missing.
    ///
    /// The bucket's stream is made by hand: the client's `create_key_value` asks for account
    /// details that nats-server 2.9 describes in a shape the client cannot read.
    pub(crate) async fn liveness(&self, bucket: &str) -> Result<kv::Store, NatsError> {
        if let Ok(store) = self.js.get_key_value(bucket).await {
            return Ok(store);
        }
        let made = self
            .js
            .get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: LIVENESS,
                storage: StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                deny_purge: false,
                allow_direct: true,
                discard: DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            })
            .await;
        if let Err(error) = made {
            // Made by someone else meanwhile?
            if let Ok(store) = self.js.get_key_value(bucket).await {
                return Ok(store);
            }
            return Err(NatsError::broker("create a liveness bucket", error));
        }
        self.js
            .get_key_value(bucket)
            .await
            .map_err(|e| NatsError::broker("open a liveness bucket", e))
    }
}

/// The live nodes, read from the nodes bucket (entries that do not parse are skipped).
pub(crate) async fn live_nodes(nodes: &kv::Store) -> Result<Vec<super::wire::NodeInfo>, NatsError> {
    use futures::StreamExt;
    let keys = nodes
        .keys()
        .await
        .map_err(|e| NatsError::broker("list nodes", e))?;
    let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
    let mut live = Vec::with_capacity(keys.len());
    for key in keys {
        if let Ok(Some(value)) = nodes.get(&key).await
            && let Ok(info) = serde_json::from_slice::<super::wire::NodeInfo>(&value)
        {
            live.push(info);
        }
    }
    live.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(live)
}
