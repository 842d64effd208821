//! The engine layer: the only code that touches wasmtime.
//!
//! It fixes the few choices osiiso-host makes (one shared engine, epoch interruption with a
//! ticker thread, fuel, the pooling allocator behind a probe, an on-disk compile cache,
//! deny-by-default capabilities, outgoing `wasi:http` only to allowed hosts) and exposes them
//! as [`Host`], [`Plugin`], [`Task`], [`Limits`] and [`Sandbox`]. A queue runs an attempt
//! with [`Task::run_attempt`] and stops it with [`AttemptControl::cancel`](crate::AttemptControl::cancel).

pub(crate) mod budget;
mod builder;
mod cache;
mod call;
mod code;
mod command;
mod compile;
mod config;
mod contract;
mod descriptors;
mod epoch;
mod error;
mod fs_guard;
mod http;
mod interruptible;
mod limits;
mod load;
mod output;
mod plugin;
mod run;
mod sandbox;
mod stats;
mod store;
mod task;
mod tiers;
mod typed;
mod warm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use builder::HostBuilder;
pub use cache::CacheOutcome;
pub use compile::{
    COMPILE_MARKER, Compiler, DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIMEOUT, MIN_COMPILE_MEMORY,
    maybe_run_compiler,
};
pub(crate) use compile::{HOST_BINARY, host_binary};
pub use config::CompileTier;
pub use error::{HostError, LoadError};
#[cfg(feature = "nats")]
pub(crate) use http::HttpGrant;
pub use limits::Limits;
pub(crate) use load::read_plugin_file;
pub use plugin::Plugin;
pub use run::AttemptRequest;
pub use sandbox::{DirGrant, GuestStdio, Sandbox};
pub use task::{Task, TaskInfo, TaskKind};
pub use warm::WarmPool;

use budget::MemoryBudget;
use epoch::EpochTicker;
use tiers::{Background, Optimizations, TierEngine};

/// Default epoch tick: how quickly a deadline or cancellation reaches a running guest.
const DEFAULT_TICK: Duration = Duration::from_millis(10);
/// The largest plugin file read by default.
pub const DEFAULT_MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// WASI packages the host links (at version 0.2.x).
const WASI_PACKAGES: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:http/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

struct HostInner {
    /// The engine plugins are compiled for first: the host's one tier, or Winch's on a
    /// tiered host.
    first: Arc<TierEngine>,
    /// On a tiered host, Cranelift's engine, which plugins move to.
    optimized: Option<Arc<TierEngine>>,
    /// Where a tiered host compiles optimised code.
    background: Background,
    ticker: EpochTicker,
    max_instances: u32,
    /// One permit per instance the pool can hold: waiting for one is the back-pressure that
    /// keeps pool exhaustion from ever failing a task.
    instance_permits: Arc<tokio::sync::Semaphore>,
    /// Linear memory of every live instance together stays under this.
    memory_budget: Arc<MemoryBudget>,
    allow_precompiled: bool,
    max_plugin_bytes: u64,
    /// Plugin loads so far, for the metrics.
    loads: stats::LoadCounters,
    /// Guest code counts fuel.
    fuel_metering: bool,
    /// The compiler of plugins.
    compile_tier: CompileTier,
    /// What the background compilations did.
    optimizations: Optimizations,
}

/// The WebAssembly host: an engine per compile tier it uses, their linkers and compile
/// cache, and its epoch ticker.
///
/// Create one per process and share it (cloning is cheap); every queue and plugin uses it.
///
/// ```
/// use osiiso_host::{Host, Limits};
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let host = Host::builder().build()?;
/// let plugin = host.load(echo_wasm)?.with_limits(Limits::new().fuel(50_000_000));
/// for task in plugin.tasks() {
///     println!("{}: {}", task.name, task.description);
/// }
/// assert!(plugin.task("echo").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("pooling", &self.uses_pooling())
            .field("max_instances", &self.inner.max_instances)
            .field("fuel_metering", &self.inner.fuel_metering)
            .field("compile_tier", &self.inner.compile_tier)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A builder with the defaults.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// A host with the defaults.
    pub fn new() -> Result<Self, HostError> {
        Self::builder().build()
    }

    /// Plugin loads so far, for the metrics.
    pub(crate) fn load_stats(&self) -> stats::LoadStats {
        self.inner.loads.snapshot()
    }

    /// The compile-cache directory, when the cache is in use (enabled and trusted).
    pub fn cache_root(&self) -> Option<PathBuf> {
        self.inner.first.cache.root().map(Path::to_path_buf)
    }

    /// Whether the compile cache is used.
    pub fn cache_enabled(&self) -> bool {
        self.inner.first.cache.root().is_some()
    }

    /// How long compiling one plugin may take ([`HostBuilder::compile_timeout`]).
    pub fn compile_timeout(&self) -> Duration {
        self.inner.first.compile.limits().timeout
    }

    /// The memory compiling one plugin may use ([`HostBuilder::compile_memory`]).
    pub fn compile_memory(&self) -> u64 {
        self.inner.first.compile.limits().memory
    }

    /// The binary whose compile processes compile plugins; `None` when they compile in this
    /// process, where the compile limits do not apply ([`Compiler`]).
    pub fn compile_program(&self) -> Option<&Path> {
        self.inner.first.compile.program()
    }

    /// Whether [`load`](Self::load) accepts precompiled artifacts.
    pub fn allows_precompiled(&self) -> bool {
        self.inner.allow_precompiled
    }

    /// The total memory budget shared by this host's live instances, in bytes.
    pub fn total_memory(&self) -> usize {
        self.inner.memory_budget.total()
    }

    /// The part of the memory budget in use now: the linear memories of live instances, and
    /// the values a queue received from attempts and has not recorded yet (a value counts
    /// until its task's result is recorded and `on_complete` has returned). A report from
    /// [`Task::run_attempt`] is the caller's, and counts nothing.
    pub fn memory_in_use(&self) -> usize {
        self.inner.memory_budget.used()
    }

    pub(crate) fn memory_budget(&self) -> Arc<MemoryBudget> {
        self.inner.memory_budget.clone()
    }

    /// Whether guest code counts fuel ([`HostBuilder::fuel_metering`]).
    pub fn meters_fuel(&self) -> bool {
        self.inner.fuel_metering
    }

    /// Which compiler makes native code of plugins ([`HostBuilder::compile_tier`]).
    pub fn compile_tier(&self) -> CompileTier {
        self.inner.compile_tier
    }

    /// Whether instances come from the pooling allocator (on a tiered host: instances of
    /// optimised code; baseline code is instantiated on demand).
    pub fn uses_pooling(&self) -> bool {
        self.inner
            .optimized
            .as_ref()
            .unwrap_or(&self.inner.first)
            .pooling
    }

    /// Plugins moved to optimised code in the background so far.
    pub fn plugins_optimized(&self) -> u64 {
        self.inner.optimizations.done_count()
    }

    /// Background compilations that failed so far: those plugins keep running their baseline
    /// code (a warning says why; a compile limit, usually), and this host does not compile
    /// them again.
    pub fn optimizations_failed(&self) -> u64 {
        self.inner.optimizations.failed_count()
    }

    /// Background compilations queued or running now. A process that exits before they end
    /// leaves the optimised code uncompiled and out of the cache.
    pub fn optimizations_pending(&self) -> usize {
        self.inner.background.pending()
    }

    pub(crate) fn optimizations(&self) -> &Optimizations {
        &self.inner.optimizations
    }

    pub(crate) fn background(&self) -> &Background {
        &self.inner.background
    }

    /// The most instances that can be alive at once (the pool size).
    pub fn instance_capacity(&self) -> u32 {
        self.inner.max_instances
    }

    /// Asks the epoch ticker to tick at least every `interval`.
    pub fn request_tick(&self, interval: Duration) {
        self.inner.ticker.request(interval);
    }

    /// The current epoch tick.
    pub fn tick(&self) -> Duration {
        self.inner.ticker.interval()
    }

    /// Waits for room for one more live instance (async attempts).
    pub(crate) async fn instance_permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.inner
            .instance_permits
            .acquire()
            .await
            .expect("the instance semaphore is never closed")
    }

    /// A permit for an instance that outlives one call (a warm instance), if one is free.
    pub(crate) fn try_owned_instance_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.instance_permits.clone().try_acquire_owned().ok()
    }

    /// Waits for a permit for an instance that outlives one call.
    pub(crate) async fn owned_instance_permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.inner
            .instance_permits
            .clone()
            .acquire_owned()
            .await
            .expect("the instance semaphore is never closed")
    }

    /// Waits for room for one more live instance (sync attempts, off any runtime).
    pub(crate) fn instance_permit_blocking(&self) -> tokio::sync::SemaphorePermit<'_> {
        // A free permit (the usual case) without an executor around the wait.
        match self.inner.instance_permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => futures::executor::block_on(self.instance_permit()),
        }
    }

    /// Whether the host links an import of this name.
    pub(crate) fn provides(&self, import: &str) -> bool {
        import == contract::HOST_IMPORT
            || import == command::core_module::EXIT_IMPORT
            || WASI_PACKAGES
                .iter()
                .any(|pkg| import.starts_with(pkg) && import.contains("@0.2."))
    }
}
