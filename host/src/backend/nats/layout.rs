//! The broker layout: every stream, consumer, bucket and subject the NATS backend uses, made
//! where missing with the replication the cluster allows. Names carry the protocol version
//! (`OSIISO2`, `osiiso2`); a change to a message format gets new names rather than a silent
//! mismatch.
//!
//! | thing | configuration |
//! |---|---|
//! | stream `OSIISO2_ATTEMPTS`, subjects `osiiso2.attempt.<band>.<submitter>.<token>` | work queue, file, dedup 2 min, max age 24 h |
//! | consumers `OSIISO2_BAND_<0..7>` | pull, explicit ack, the fleet's lease, max deliver 5 |
//! | object store `osiiso2-plugins` | components named `blake3-<hex>` |
//! | object store `osiiso2-payloads` | inputs and reports too large for a message; max age 24 h |
//! | key-value `osiiso2-submitters`, `osiiso2-nodes` | liveness: entries expire 3 s / 10 s after the last refresh |
//! | core subjects | `osiiso2.report.<submitter>` (request/reply), `osiiso2.event.<submitter>`, `osiiso2.cancel.<submitter>` |
//!
//! Every stream is made with [`Broker::replicas`] replicas: `--replicas`, else
//! `min(3, servers in the cluster)`. An existing stream keeps its own (with a warning when it
//! differs): the layout is shared by everyone on the broker.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{kv, object_store};

use super::NatsError;
use super::connection::Broker;
use super::timing::{DUPLICATE_WINDOW, MAX_AGE, NODE_LIVENESS, SUBMITTER_LIVENESS};

/// The stream of attempts waiting for a node.
pub(crate) const ATTEMPTS_STREAM: &str = "OSIISO2_ATTEMPTS";
/// The object store of plugins, by content hash.
pub(crate) const PLUGINS_BUCKET: &str = "osiiso2-plugins";
/// The object store of bodies too large for a message (inputs and reports).
pub(crate) const PAYLOADS_BUCKET: &str = "osiiso2-payloads";
/// Live nodes: `NodeInfo` by node id.
pub(crate) const NODES_BUCKET: &str = "osiiso2-nodes";
/// Live submitters: any value, by submitter id.
pub(crate) const SUBMITTERS_BUCKET: &str = "osiiso2-submitters";
/// Every submitter's cancellations (nodes listen to all).
pub(crate) const CANCEL_SUBJECTS: &str = "osiiso2.cancel.*";
/// The inbox prefix of nodes: attempts are delivered under it, so a broker's permissions can
/// keep everyone but nodes from reading them (docs/distributed.md).
pub(crate) const NODE_INBOX_PREFIX: &str = "_INBOX_OSIISO2_NODE";

/// Priority bands: `clamp(priority, 0, 7)`, one consumer each.
pub(crate) const BANDS: u8 = 8;
/// The most a stored plugin may weigh (the host's default plugin bound).
pub(crate) const MAX_PLUGIN_BYTES: u64 = crate::engine::DEFAULT_MAX_PLUGIN_BYTES;
/// The largest body (an input, a report) that travels through the payload store: the frame
/// limit of the process backend's workers, the bound of every queue that sends attempts away.
pub(crate) const MAX_PAYLOAD_BYTES: u64 = 64 << 20;
/// Deliveries of one attempt before the broker gives up on it; a node turns the second into
/// a redelivery notice, so only nodes dying between fetch and report come near it.
const MAX_DELIVER: i64 = 5;
/// Pull requests a band consumer holds at once: a long poll per node and band, and a sweep.
const MAX_WAITING: i64 = 100_000;
/// The most replicas a stream is made with by default.
const DEFAULT_REPLICAS: usize = 3;

/// The band of a priority: lower runs first.
pub(crate) fn band(priority: i32) -> u8 {
    priority.clamp(0, i32::from(BANDS) - 1) as u8
}

/// The durable consumer of a band.
pub(crate) fn band_consumer_name(band: u8) -> String {
    format!("OSIISO2_BAND_{band}")
}

pub(crate) fn attempt_subject(band: u8, submitter: &str, token: &str) -> String {
    format!("osiiso2.attempt.{band}.{submitter}.{token}")
}

/// The subjects of every queued attempt of `submitter` (any band).
pub(crate) fn submitter_attempts(submitter: &str) -> String {
    format!("osiiso2.attempt.*.{submitter}.*")
}

pub(crate) fn report_subject(submitter: &str) -> String {
    format!("osiiso2.report.{submitter}")
}

pub(crate) fn cancel_subject(submitter: &str) -> String {
    format!("osiiso2.cancel.{submitter}")
}

pub(crate) fn event_subject(submitter: &str) -> String {
    format!("osiiso2.event.{submitter}")
}

pub(crate) fn plugin_object(hash: &str) -> String {
    format!("blake3-{hash}")
}

/// The payload object of an attempt's input.
pub(crate) fn input_object(submitter: &str, token: &str) -> String {
    format!("in-{submitter}-{token}")
}

/// The payload object of a node's report of an attempt.
pub(crate) fn report_object(submitter: &str, token: &str, node: &str) -> String {
    format!("out-{submitter}-{token}-{node}")
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

/// A fresh random id: `prefix` and 24 hex digits (96 bits: not guessable).
pub(crate) fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

impl Broker {
    /// The replicas new streams get: the `--replicas` given, else `min(3, servers in the
    /// cluster)`.
    pub(crate) fn replicas(&self) -> usize {
        self.spec
            .replicas
            .unwrap_or_else(|| self.cluster_size().min(DEFAULT_REPLICAS))
    }

    /// The servers of the cluster this connection reached, as the server says (1 alone).
    fn cluster_size(&self) -> usize {
        let info = self.client.server_info();
        if info.cluster.is_some() {
            info.connect_urls.len().max(1)
        } else {
            1
        }
    }

    /// Warns (once per stream and process) when an existing stream's replicas differ from
    /// what this process would make.
    fn check_replicas(&self, stream: &str, actual: usize) {
        let wanted = self.replicas();
        if actual != wanted && self.warned.lock().insert(stream.to_string()) {
            tracing::warn!(
                stream,
                replicas = actual,
                wanted,
                "an existing stream of the layout has other replicas than this process would \
                 make; following it (change it with `nats stream edit {stream} --replicas N`)"
            );
        }
    }

    /// A stream of the layout, made if missing; another process making it at the same moment
    /// is no error (2.9 says "subjects overlap" then).
    async fn stream(
        &self,
        config: stream::Config,
        action: &'static str,
    ) -> Result<stream::Stream, NatsError> {
        let name = config.name.clone();
        let made = self.js.get_or_create_stream(config).await;
        let mut stream = match made {
            Ok(stream) => stream,
            Err(error) => self
                .js
                .get_stream(&name)
                .await
                .map_err(|_| NatsError::broker(action, error))?,
        };
        let replicas = match stream.info().await {
            Ok(info) => info.config.num_replicas,
            Err(_) => stream.cached_info().config.num_replicas,
        };
        self.check_replicas(&name, replicas);
        Ok(stream)
    }

    /// The attempts stream, made if missing.
    pub(crate) async fn attempts(&self) -> Result<stream::Stream, NatsError> {
        self.stream(
            stream::Config {
                name: ATTEMPTS_STREAM.to_string(),
                subjects: vec!["osiiso2.attempt.*.*.*".to_string()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: MAX_AGE,
                num_replicas: self.replicas(),
                ..Default::default()
            },
            "create the attempts stream",
        )
        .await
    }

    /// The durable consumer of one band, made with `lease` if missing (an existing one keeps
    /// its own: the whole fleet shares it).
    pub(crate) async fn band_consumer(
        &self,
        attempts: &stream::Stream,
        band: u8,
        lease: Duration,
    ) -> Result<PullConsumer, NatsError> {
        let name = band_consumer_name(band);
        attempts
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    // `.*.*`, not `.>`: 2.9 refuses a filter that is not a subset token by token.
                    filter_subject: format!("osiiso2.attempt.{band}.*.*"),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: lease,
                    max_deliver: MAX_DELIVER,
                    // Nodes hold at most their slots; the broker's default (1000) would cap a fleet.
                    max_ack_pending: 100_000,
                    max_waiting: MAX_WAITING,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| NatsError::broker("create a band consumer", e))
    }

    /// An object store of the layout, made if missing.
    async fn object_store(
        &self,
        bucket: &str,
        max_age: Duration,
        action: &'static str,
    ) -> Result<object_store::ObjectStore, NatsError> {
        let store = match self.js.get_object_store(bucket).await {
            Ok(store) => store,
            Err(_) => {
                let made = self
                    .js
                    .create_object_store(object_store::Config {
                        bucket: bucket.to_string(),
                        storage: StorageType::File,
                        max_age,
                        num_replicas: self.replicas(),
                        ..Default::default()
                    })
                    .await;
                match made {
                    Ok(store) => store,
                    Err(error) => self
                        .js
                        .get_object_store(bucket)
                        .await
                        .map_err(|_| NatsError::broker(action, error))?,
                }
            }
        };
        let stream = format!("OBJ_{bucket}");
        if let Ok(info) = self.js.get_stream(&stream).await {
            self.check_replicas(&stream, info.cached_info().config.num_replicas);
        }
        Ok(store)
    }

    /// The plugin store, made if missing.
    pub(crate) async fn plugins(&self) -> Result<object_store::ObjectStore, NatsError> {
        self.object_store(PLUGINS_BUCKET, Duration::ZERO, "create the plugin store")
            .await
    }

    /// The payload store, made if missing.
    pub(crate) async fn payloads(&self) -> Result<object_store::ObjectStore, NatsError> {
        self.object_store(PAYLOADS_BUCKET, MAX_AGE, "create the payload store")
            .await
    }

    /// A liveness bucket, made if missing: entries expire `max_age` after their last write.
    ///
    /// The bucket's stream is made by hand: the client's `create_key_value` asks for account
    /// details that nats-server 2.9 describes in a shape the client cannot read.
    async fn liveness(&self, bucket: &str, max_age: Duration) -> Result<kv::Store, NatsError> {
        if let Ok(store) = self.js.get_key_value(bucket).await {
            let stream = format!("KV_{bucket}");
            if let Ok(info) = self.js.get_stream(&stream).await {
                self.check_replicas(&stream, info.cached_info().config.num_replicas);
            }
            return Ok(store);
        }
        self.stream(
            stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                storage: StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                deny_purge: false,
                allow_direct: true,
                discard: DiscardPolicy::New,
                num_replicas: self.replicas(),
                ..Default::default()
            },
            "create a liveness bucket",
        )
        .await?;
        self.js
            .get_key_value(bucket)
            .await
            .map_err(|e| NatsError::broker("open a liveness bucket", e))
    }

    /// The live nodes.
    pub(crate) async fn nodes(&self) -> Result<kv::Store, NatsError> {
        self.liveness(NODES_BUCKET, NODE_LIVENESS).await
    }

    /// The live submitters.
    pub(crate) async fn submitters(&self) -> Result<kv::Store, NatsError> {
        self.liveness(SUBMITTERS_BUCKET, SUBMITTER_LIVENESS).await
    }
}

/// The live nodes, read from the nodes bucket (entries that do not parse are skipped).
pub(crate) async fn live_nodes(
    nodes: &kv::Store,
) -> Result<Vec<super::message::NodeInfo>, NatsError> {
    use futures::StreamExt;
    let keys = nodes
        .keys()
        .await
        .map_err(|e| NatsError::broker("list nodes", e))?;
    let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
    let mut live = Vec::with_capacity(keys.len());
    for key in keys {
        if let Ok(Some(value)) = nodes.get(&key).await
            && let Ok(info) = serde_json::from_slice::<super::message::NodeInfo>(&value)
        {
            live.push(info);
        }
    }
    live.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_tokens_and_random() {
        let a = random_id("s");
        assert!(is_token(&a) && a.len() == 25, "{a}");
        assert_ne!(a, random_id("s"));
        assert!(!is_token("a.b") && !is_token("") && !is_token("*") && !is_token(&"a".repeat(65)));
    }
}
