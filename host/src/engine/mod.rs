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

use wasmtime::component::Component;

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
pub use plugin::Plugin;
pub use run::AttemptRequest;
pub use sandbox::{DirGrant, GuestStdio, Sandbox};
pub use task::{Task, TaskInfo, TaskKind};
pub use warm::WarmPool;

use budget::MemoryBudget;
use compile::CompileError;
use epoch::EpochTicker;
use tiers::{Background, Compiled, Optimizations, TierEngine};

/// Reads a plugin file of at most `limit` bytes.
pub(crate) fn read_plugin_file(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    cache::read_bounded(path, limit).map_err(|error| {
        if error.kind() == std::io::ErrorKind::FileTooLarge {
            LoadError::TooLarge {
                path: path.to_path_buf(),
                limit,
            }
        } else {
            LoadError::Read {
                path: path.to_path_buf(),
                error,
            }
        }
    })
}

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

    /// Loads a plugin from a `.wasm` component, through the compile cache. A precompiled
    /// artifact is refused unless the host [allows precompiled
    /// input](HostBuilder::allow_precompiled). The plugin's `list` runs under default
    /// [`Limits`]; see [`load_with_limits`](Self::load_with_limits).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Plugin, LoadError> {
        self.load_with_limits(path, Limits::default())
    }

    /// Loads a plugin whose attempts, and whose `list` call at load time, run under
    /// `limits`.
    pub fn load_with_limits(
        &self,
        path: impl AsRef<Path>,
        limits: Limits,
    ) -> Result<Plugin, LoadError> {
        self.load_file(path.as_ref(), limits, Purpose::Run)
    }

    /// Reads a plugin file and loads it, named by its file stem.
    fn load_file(
        &self,
        path: &Path,
        limits: Limits,
        purpose: Purpose,
    ) -> Result<Plugin, LoadError> {
        let bytes = read_plugin_file(path, self.inner.max_plugin_bytes)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load_inner(&name, Some(path), &bytes, limits, purpose)
    }

    /// Loads a plugin from bytes; `name` is used in messages and task identities.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        self.load_inner(name, None, bytes, Limits::default(), Purpose::Run)
    }

    fn load_inner(
        &self,
        name: &str,
        path: Option<&Path>,
        bytes: &[u8],
        limits: Limits,
        purpose: Purpose,
    ) -> Result<Plugin, LoadError> {
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| name.to_string());
        let began = std::time::Instant::now();
        let hash = blake3::hash(bytes).to_hex().to_string();
        // The compile cache keeps compiled code under the hash of the bytes compiled.
        let mut cache_key = hash.clone();
        let compiled = if cache::is_precompiled(bytes) {
            if !self.inner.allow_precompiled {
                return Err(LoadError::Precompiled { plugin: shown });
            }
            let (tier, component) =
                self.open_precompiled(bytes)
                    .map_err(|message| LoadError::Compile {
                        plugin: shown.clone(),
                        message: format!("precompiled artifact rejected: {message}"),
                    })?;
            Compiled {
                tier,
                component,
                outcome: CacheOutcome::Precompiled,
            }
        } else {
            // A WASI preview-1 program: the compile step adapts it into a component.
            if let Wasm::CoreModule = check_component_header(&shown, bytes)? {
                command::core_module::check(&shown, bytes)?;
                cache_key = command::core_module::cache_key(bytes);
            }
            self.compile(&cache_key, bytes, purpose)
                .map_err(|e| compile_failure(e, &shown))?
        };
        let (tier, outcome) = (compiled.tier.clone(), compiled.outcome);
        tracing::debug!(plugin = name, cache = ?outcome, tier = tier.tier.name(), "plugin compiled");
        self.inner.loads.loaded(outcome, began.elapsed());
        let plugin = Plugin::load(self, name, path, hash, compiled, limits)
            .map(|plugin| plugin.with_cache_key(cache_key))
            .map_err(|e| rename(e, &shown))?;
        if let Some(optimized) = &self.inner.optimized
            && !Arc::ptr_eq(&tier, optimized)
            && outcome != CacheOutcome::Precompiled
            && !self.inner.optimizations.failed_before(plugin.cache_key())
        {
            plugin.optimize_later(optimized.clone(), bytes.to_vec());
        }
        Ok(plugin)
    }

    /// Compiled code of `wasm` (whose compile-cache key is `key`), and the engine it is for.
    ///
    /// A tiered host loads the optimised code when the cache has it, and otherwise compiles
    /// with Winch (unless `purpose` is precompiling); a component that Winch refuses (it
    /// lacks tail calls, exceptions and GC) is compiled by Cranelift at once.
    fn compile(&self, key: &str, wasm: &[u8], purpose: Purpose) -> Result<Compiled, CompileError> {
        let with = |tier: &Arc<TierEngine>| {
            tier.cache
                .load_or_compile(&tier.engine, &tier.compile, key, wasm)
                .map(|(component, outcome)| Compiled {
                    tier: tier.clone(),
                    component,
                    outcome,
                })
        };
        let first = &self.inner.first;
        let Some(optimized) = &self.inner.optimized else {
            return with(first);
        };
        if purpose == Purpose::Precompile {
            return with(optimized);
        }
        if let Some(component) = optimized.cache.lookup(&optimized.engine, key) {
            return Ok(Compiled {
                tier: optimized.clone(),
                component,
                outcome: CacheOutcome::Hit,
            });
        }
        match with(first) {
            Err(CompileError::Invalid(message)) => {
                tracing::debug!(%message, "the baseline compiler refused the plugin; optimising");
                with(optimized)
            }
            other => other,
        }
    }

    /// A precompiled artifact opened by the engine it was made for.
    fn open_precompiled(&self, bytes: &[u8]) -> Result<(Arc<TierEngine>, Component), String> {
        let mut failure = String::new();
        for tier in self.inner.optimized.iter().chain([&self.inner.first]) {
            match cache::open_artifact(&tier.engine, bytes) {
                Ok(component) => return Ok((tier.clone(), component)),
                Err(message) => failure = message,
            }
        }
        Err(failure)
    }

    /// Compiles a component and writes the artifact to `out`, or into the compile cache when
    /// `out` is `None`. Returns where it was written. Only a regular file is replaced at
    /// `out`; a FIFO, device, directory or symbolic link there is refused and left as it is.
    pub fn precompile(
        &self,
        wasm: impl AsRef<Path>,
        out: Option<&Path>,
    ) -> Result<PathBuf, LoadError> {
        let wasm = wasm.as_ref();
        let plugin = self.load_file(wasm, Limits::default(), Purpose::Precompile)?;
        let Some(out) = out else {
            return plugin
                .code()
                .tier_engine()
                .cache
                .entry_path(plugin.cache_key())
                .ok_or_else(|| LoadError::Compile {
                    plugin: wasm.display().to_string(),
                    message: "the compile cache is disabled or not trusted; pass an output file"
                        .into(),
                });
        };
        let serialized = plugin
            .code()
            .component()
            .serialize()
            .map_err(|e| LoadError::Compile {
                plugin: wasm.display().to_string(),
                message: format!("{e:#}"),
            })?;
        cache::write_artifact(out, &serialized).map_err(|message| LoadError::Write {
            path: out.to_path_buf(),
            message,
        })?;
        Ok(out.to_path_buf())
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

/// Why a plugin is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To run it.
    Run,
    /// To write its optimised code out ([`Host::precompile`]).
    Precompile,
}

/// What kind of WebAssembly a plugin file holds.
enum Wasm {
    Component,
    CoreModule,
}

/// Distinguishes "not wasm" and "a core module" from a component before compiling.
fn check_component_header(plugin: &str, bytes: &[u8]) -> Result<Wasm, LoadError> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(Wasm::Component)
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        Ok(Wasm::CoreModule)
    } else {
        Err(LoadError::NotWasm {
            plugin: plugin.to_string(),
        })
    }
}

/// The load error of a compilation that failed.
fn compile_failure(error: CompileError, plugin: &str) -> LoadError {
    let plugin = plugin.to_string();
    match error {
        CompileError::Invalid(message) | CompileError::Unadaptable(message) => {
            LoadError::Compile { plugin, message }
        }
        CompileError::Timeout { limit } => LoadError::CompileTimeout { plugin, limit },
        CompileError::Memory { limit, detail } => LoadError::CompileMemory {
            plugin,
            limit,
            detail,
        },
        CompileError::Process(message) => LoadError::Compiler { plugin, message },
    }
}

/// Uses the path the user gave in messages instead of the bare plugin name.
fn rename(error: LoadError, shown: &str) -> LoadError {
    match error {
        LoadError::MissingExport { exports, .. } => LoadError::MissingExport {
            plugin: shown.to_string(),
            exports,
        },
        LoadError::UnsatisfiedImport { imports, .. } => LoadError::UnsatisfiedImport {
            plugin: shown.to_string(),
            imports,
        },
        LoadError::Contract { message, .. } => LoadError::Contract {
            plugin: shown.to_string(),
            message,
        },
        LoadError::Compile { message, .. } => LoadError::Compile {
            plugin: shown.to_string(),
            message,
        },
        other => other,
    }
}
