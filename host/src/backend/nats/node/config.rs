//! How a node is configured: a consuming builder, like [`HostBuilder`](crate::HostBuilder)
//! and [`QueueBuilder`](crate::queue::QueueBuilder), checked by [`NodeConfig::validate`].

use std::path::PathBuf;
use std::time::Duration;

use super::super::NatsError;
use super::super::connection::split_servers;
use super::super::timing::{CONNECT_TIMEOUT, DEFAULT_LEASE, MIN_LEASE};
use super::MAX_SLOTS;
use crate::CompileTier;
use crate::metrics::Metrics;
use crate::queue::InvalidOption;

/// How a node is configured (`osiiso-host serve`): start from [`new`](Self::new) (or
/// [`Default`], the local server) and chain the settings.
///
/// ```
/// use std::time::Duration;
/// use osiiso_host::backend::NodeConfig;
///
/// let config = NodeConfig::new("nats://10.0.0.5:4222,nats://10.0.0.6:4222")
///     .slots(8)
///     .allow_dir("/srv/data")
///     .ack_wait(Duration::from_secs(60));
/// assert!(config.validate().is_ok());
/// // Checked before anything connects: the error names the option.
/// let error = NodeConfig::default().slots(0).validate().unwrap_err();
/// assert_eq!(error.to_string(), "slots must be from 1 to 1024");
/// ```
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub(super) servers: Vec<String>,
    pub(super) slots: usize,
    pub(super) allow_dirs: Vec<PathBuf>,
    pub(super) allow_http: Vec<String>,
    pub(super) allow_env: bool,
    pub(super) cache_dir: Option<PathBuf>,
    pub(super) cache: bool,
    pub(super) ack_wait: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) total_memory: Option<usize>,
    pub(super) replicas: Option<usize>,
    pub(super) wait_for_broker: bool,
    pub(super) compile_timeout: Option<Duration>,
    pub(super) compile_memory: Option<u64>,
    pub(super) compile_tier: CompileTier,
    pub(super) metrics: Option<Metrics>,
}

impl Default for NodeConfig {
    /// A node of the local server ([`DEFAULT_NATS_URL`](crate::backend::DEFAULT_NATS_URL)).
    fn default() -> Self {
        Self::new(super::super::DEFAULT_URL)
    }
}

impl NodeConfig {
    /// A node of `servers` (a URL, or a comma-separated list of one cluster's servers; `tls://`
    /// and `user:pass@` work as usual) with the defaults.
    pub fn new(servers: impl AsRef<str>) -> Self {
        Self {
            servers: split_servers([servers]),
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            allow_dirs: Vec::new(),
            allow_http: Vec::new(),
            allow_env: false,
            cache_dir: None,
            cache: true,
            ack_wait: DEFAULT_LEASE,
            connect_timeout: CONNECT_TIMEOUT,
            total_memory: None,
            replicas: None,
            wait_for_broker: false,
            compile_timeout: None,
            compile_memory: None,
            compile_tier: CompileTier::Tiered,
            metrics: None,
        }
    }

    /// Attempts run at once, from 1 to 1024 (default: the CPU count).
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }

    /// Lets submitters grant directories under `dir` (repeatable; none by default).
    pub fn allow_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.allow_dirs.push(dir.into());
        self
    }

    /// Lets submitters allow HTTP to `HOST[:PORT]` (repeatable; none by default).
    pub fn allow_http(mut self, destination: impl Into<String>) -> Self {
        self.allow_http.push(destination.into());
        self
    }

    /// Whether submitters may pass the node's environment to guests (`--inherit-env`;
    /// default no).
    pub fn allow_env(mut self, allow: bool) -> Self {
        self.allow_env = allow;
        self
    }

    /// Where the compile cache (and verified plugin copies) live; default as for the host.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Whether compiled plugins are cached on disk (default yes).
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache = enabled;
        self
    }

    /// How long the broker waits for word from the node about an attempt before it hands it
    /// to another node; the node renews every quarter of it while it holds an attempt. At
    /// least 1 s (default 30 s).
    pub fn ack_wait(mut self, lease: Duration) -> Self {
        self.ack_wait = lease;
        self
    }

    /// Fail one try of the first connection after this long (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Linear memory all running attempts may hold together (default: half the machine).
    pub fn total_memory(mut self, bytes: usize) -> Self {
        self.total_memory = Some(bytes);
        self
    }

    /// Replicas of the streams this node makes if they are missing (default: as many as the
    /// cluster has servers, up to 3).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Wait for the broker (and for JetStream) at start for as long as it takes, instead of
    /// failing at once with the servers in the error (`serve` waits; default no).
    pub fn wait_for_broker(mut self, wait: bool) -> Self {
        self.wait_for_broker = wait;
        self
    }

    /// How long compiling one plugin may take (default
    /// [`DEFAULT_COMPILE_TIMEOUT`](crate::DEFAULT_COMPILE_TIMEOUT)).
    pub fn compile_timeout(mut self, timeout: Duration) -> Self {
        self.compile_timeout = Some(timeout);
        self
    }

    /// The memory compiling one plugin may use (default
    /// [`DEFAULT_COMPILE_MEMORY`](crate::DEFAULT_COMPILE_MEMORY)).
    pub fn compile_memory(mut self, bytes: u64) -> Self {
        self.compile_memory = Some(bytes);
        self
    }

    /// The compiler of plugins (default [`CompileTier::Tiered`];
    /// [`HostBuilder::compile_tier`](crate::HostBuilder::compile_tier)).
    pub fn compile_tier(mut self, tier: CompileTier) -> Self {
        self.compile_tier = tier;
        self
    }

    /// Metrics the node fills: its slots, running and finished attempts, their duration, its
    /// broker connection, whether it drains, its memory budget (`serve --http`).
    pub fn metrics(mut self, metrics: &Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Checks the settings ([`NatsNode::connect`](super::NatsNode::connect) does too): an
    /// invalid one is [`NatsError::InvalidOption`], naming it.
    pub fn validate(&self) -> Result<(), NatsError> {
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return Err(InvalidOption::new(
                "slots",
                format!("slots must be from 1 to {MAX_SLOTS}"),
            )
            .into());
        }
        if self.ack_wait < MIN_LEASE {
            return Err(InvalidOption::new(
                "ack_wait",
                format!(
                    "ack_wait must be at least {}",
                    humantime::format_duration(MIN_LEASE)
                ),
            )
            .into());
        }
        Ok(())
    }
}
