//! The connection to the broker: a list of servers (one cluster), notices on stderr when it
//! is lost and when it is back, and patience at start for a broker that is not up yet.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::ServerAddr;
use async_nats::jetstream::{self, Context};
use parking_lot::Mutex;

use super::NatsError;
use super::timing::{BACKOFF_FIRST, RECONNECT_STEP, REQUEST_TIMEOUT, backoff};

/// How to reach the broker.
#[derive(Debug, Clone)]
pub(crate) struct ConnectSpec {
    /// The servers, as given (URLs, `user:password@` and `tls://` included).
    pub servers: Vec<String>,
    /// Fail one try of the first connection after this long (a hung server, a black-holed
    /// address).
    pub connect_timeout: Duration,
    /// The connection's name, as the broker's monitoring shows it.
    pub name: String,
    /// Who connects, for the notices ("submitter", "node n…").
    pub role: String,
    /// Replicas of the streams this process makes (`None`: as many as the cluster allows, up
    /// to 3).
    pub replicas: Option<usize>,
    /// The inbox prefix (nodes have their own: docs/distributed.md).
    pub inbox_prefix: Option<&'static str>,
}

impl ConnectSpec {
    /// The servers, for messages (credentials removed).
    pub(crate) fn shown(&self) -> String {
        self.servers
            .iter()
            .map(|s| without_credentials(s))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The credentials the URLs carry (`user:password@`, or `token@`): the same for every
    /// server of the list, or none.
    fn credentials(
        addresses: &[ServerAddr],
    ) -> Result<Option<(String, Option<String>)>, NatsError> {
        let mut found: Option<(String, Option<String>)> = None;
        for address in addresses {
            let Some(user) = address.username() else {
                continue;
            };
            let these = (percent_decode(user), address.password().map(percent_decode));
            match &found {
                Some(known) if *known != these => {
                    return Err(NatsError::Servers(
                        "the NATS servers of one list must carry the same credentials".to_string(),
                    ));
                }
                _ => found = Some(these),
            }
        }
        Ok(found)
    }

    fn addresses(&self) -> Result<Vec<ServerAddr>, NatsError> {
        if self.servers.is_empty() {
            return Err(NatsError::Servers("no NATS server given".to_string()));
        }
        self.servers
            .iter()
            .map(|s| {
                s.parse::<ServerAddr>().map_err(|e| NatsError::Connect {
                    url: without_credentials(s),
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

/// Splits `--nats` values into servers: each may be a comma-separated list; blanks are
/// dropped.
pub(crate) fn split_servers<I, S>(values: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    values
        .into_iter()
        .flat_map(|v| {
            v.as_ref()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A URL without its `user:password@`, for messages.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        (None, Some(at)) => url[at + 1..].to_string(),
        _ => url.to_string(),
    }
}

/// `%XX` escapes of a URL part decoded (invalid ones kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the connection's events tell.
struct Link {
    /// When the connection was last re-established (long ago if never).
    connected_at: Mutex<Instant>,
    connections: AtomicU64,
    /// The loss was announced and the return not yet.
    lost: AtomicBool,
    /// Bumped at every reconnection.
    generation: tokio::sync::watch::Sender<u64>,
    /// The last permissions violation the server reported (it answers none of the requests
    /// it refuses: they time out, and this says why).
    refused: Mutex<Option<String>>,
}

/// A connection to the broker and its JetStream context.
#[derive(Clone)]
pub(crate) struct Broker {
    pub client: async_nats::Client,
    pub js: Context,
    /// The largest message the broker accepts.
    pub max_payload: usize,
    pub(crate) spec: Arc<ConnectSpec>,
    link: Arc<Link>,
    /// Streams whose replicas were warned about.
    pub(crate) warned: Arc<Mutex<HashSet<String>>>,
}

impl Broker {
    /// Connects, failing fast (one try of each server) with the servers in the error.
    pub(crate) async fn connect(spec: &ConnectSpec) -> Result<Self, NatsError> {
        let addresses = spec.addresses()?;
        // The first connection counts as long ago: only a reconnection is recent.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        let link = Arc::new(Link {
            connected_at: Mutex::new(long_ago),
            connections: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            generation: tokio::sync::watch::Sender::new(0),
            refused: Mutex::new(None),
        });
        let on_event = (link.clone(), spec.role.clone(), spec.shown());
        let mut options = async_nats::ConnectOptions::new()
            .name(&spec.name)
            .event_callback(move |event| {
                let (link, role, shown) = on_event.clone();
                async move { link.on_event(&event, &role, &shown) }
            })
            .connection_timeout(spec.connect_timeout)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Unbounded reconnects, each soon: a server's death or restart must not end a run.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                RECONNECT_STEP.saturating_mul(attempts.min(10) as u32)
            });
        if let Some(prefix) = spec.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        // The client does not read credentials from URLs by itself.
        options = match ConnectSpec::credentials(&addresses)? {
            Some((user, Some(password))) => options.user_and_password(user, password),
            Some((token, None)) => options.token(token),
            None => options,
        };
        let client =
            options
                .connect(addresses.as_slice())
                .await
                .map_err(|e| NatsError::Connect {
                    url: spec.shown(),
                    message: e.to_string(),
                })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let max_payload = client.server_info().max_payload;
        Ok(Self {
            client,
            js,
            max_payload,
            spec: Arc::new(spec.clone()),
            link,
            warned: Arc::default(),
        })
    }

    /// Connects, waiting for the broker as long as it takes (`serve` at start): one clear line
    /// when it is not there, one when it is.
    pub(crate) async fn connect_patiently(spec: &ConnectSpec) -> Result<Self, NatsError> {
        let mut pause = BACKOFF_FIRST;
        let mut last: Option<String> = None;
        let mut tries = 0u32;
        loop {
            match Self::connect(spec).await {
                Ok(broker) => {
                    if last.is_some() {
                        tracing::info!(servers = %spec.shown(), "reached the NATS server");
                    }
                    return Ok(broker);
                }
                Err(error @ (NatsError::Servers(_) | NatsError::Refused { .. })) => {
                    return Err(error);
                }
                Err(error) => {
                    let text = error.to_string();
                    tries += 1;
                    // Once, again when the reason changes, and about once a minute.
                    if last.as_deref() != Some(text.as_str()) || tries.is_multiple_of(12) {
                        tracing::warn!(
                            error = %text,
                            "waiting for the NATS server (trying again every few seconds)"
                        );
                    }
                    last = Some(text);
                }
            }
            tokio::time::sleep(pause).await;
            pause = backoff(pause);
        }
    }

    /// Whether the connection is up now.
    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// How long the connection has been up since the last reconnection (zero while it is
    /// down).
    pub(crate) fn connected_for(&self) -> Duration {
        if !self.is_connected() {
            return Duration::ZERO;
        }
        self.link.connected_at.lock().elapsed()
    }

    /// The last permissions violation the server reported, if any.
    pub(crate) fn refused(&self) -> Option<String> {
        self.link.refused.lock().clone()
    }

    /// Times the connection came back after a loss.
    pub(crate) fn reconnection_count(&self) -> u64 {
        *self.link.generation.borrow()
    }

    /// Changes at every reconnection.
    pub(crate) fn reconnections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.link.generation.subscribe()
    }
}

impl Link {
    fn on_event(&self, event: &async_nats::Event, role: &str, shown: &str) {
        match event {
            async_nats::Event::Connected => {
                if self.connections.fetch_add(1, Ordering::Relaxed) > 0 {
                    *self.connected_at.lock() = Instant::now();
                    self.generation.send_modify(|g| *g += 1);
                }
                if self.lost.swap(false, Ordering::Relaxed) {
                    tracing::warn!("{role}: the NATS server is back ({shown})");
                }
            }
            async_nats::Event::Disconnected if !self.lost.swap(true, Ordering::Relaxed) => {
                tracing::warn!(
                    "{role}: lost the NATS server ({shown}); attempts wait until it is back"
                );
            }
            async_nats::Event::ServerError(error) => {
                let text = error.to_string();
                if text.to_ascii_lowercase().contains("permissions violation") {
                    tracing::warn!("{role}: the NATS server refused: {text}");
                    *self.refused.lock() = Some(text);
                } else {
                    tracing::debug!(%error, "NATS server error");
                }
            }
            _ => {}
        }
    }
}

/// Tries `step` until it succeeds, pausing between tries, for as long as `patience` allows
/// (`None`: forever). Errors that no waiting fixes (a permission the broker refuses, more
/// replicas than servers) end it at once.
pub(crate) async fn patiently<T, F, Fut>(
    broker: &Broker,
    what: &str,
    patience: Option<Duration>,
    mut step: F,
) -> Result<T, NatsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, NatsError>>,
{
    let started = Instant::now();
    let mut pause = BACKOFF_FIRST;
    let mut warned = false;
    loop {
        let error = match step().await {
            Err(_) if broker.refused().is_some() => {
                let refused = broker.refused().unwrap_or_default();
                return Err(NatsError::Refused {
                    action: what.to_string(),
                    message: refused,
                });
            }
            Ok(value) => {
                if warned {
                    tracing::info!("{what}: done");
                }
                return Ok(value);
            }
            Err(error) => error,
        };
        let permanent = {
            let text = error.to_string().to_ascii_lowercase();
            text.contains("permission")
                || text.contains("insufficient resources")
                || text.contains("replicas")
                || text.contains("not enabled")
        };
        if permanent || patience.is_some_and(|p| started.elapsed() + pause > p) {
            return Err(error);
        }
        if !warned {
            tracing::warn!(%error, "{what}: waiting for JetStream (trying again every few seconds)");
            warned = true;
        }
        tokio::time::sleep(pause).await;
        pause = backoff(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_split_on_commas_and_repeat() {
        assert_eq!(
            split_servers(["nats://a:1, nats://b:2", "c:3", ""]),
            ["nats://a:1", "nats://b:2", "c:3"]
        );
        assert_eq!(without_credentials("nats://u:p@h:1"), "nats://h:1");
        assert_eq!(without_credentials("u:p@h:1"), "h:1");
        assert_eq!(without_credentials("tls://h:1"), "tls://h:1");
        assert_eq!(percent_decode("p%40ss%2"), "p@ss%2");
        let parse = |list: &[&str]| {
            let addresses: Vec<ServerAddr> = list.iter().map(|s| s.parse().unwrap()).collect();
            ConnectSpec::credentials(&addresses)
        };
        assert_eq!(
            parse(&["nats://u:p%40@a:1", "nats://b:2"]).unwrap(),
            Some(("u".to_string(), Some("p@".to_string())))
        );
        assert_eq!(
            parse(&["nats://tok@a:1"]).unwrap(),
            Some(("tok".to_string(), None))
        );
        assert!(parse(&["nats://u:p@a:1", "nats://v:p@b:2"]).is_err());
    }
}
