//! The engine layer: the only code that touches wasmtime.
//!
//! It fixes the few choices osiiso-host makes (one shared engine, epoch interruption with a
//! ticker thread, fuel, the pooling allocator behind a probe, an on-disk compile cache,
//! deny-by-default capabilities, outgoing `wasi:http` only to allowed hosts) and exposes them
//! as [`Host`], [`Plugin`], [`Task`], [`Limits`] and [`Sandbox`]. A queue runs an attempt
//! with [`Task::run_attempt`] and stops it with [`AttemptControl::cancel`](crate::AttemptControl::cancel).

pub(crate) mod budget;
mod cache;
mod call;
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
mod typed;
mod warm;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use cache::CacheOutcome;
pub use compile::{
    COMPILE_MARKER, Compiler, DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIMEOUT, MIN_COMPILE_MEMORY,
    maybe_run_compiler,
};
pub(crate) use compile::{HOST_BINARY, sibling_binary};
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
use cache::CompileCache;
use compile::{CompileError, CompileLimits, CompileStep};
use epoch::EpochTicker;
use store::AttemptState;

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
    engine: Engine,
    linker: Linker<AttemptState>,
    linker_async: Linker<AttemptState>,
    cache: CompileCache,
    compile: CompileStep,
    ticker: EpochTicker,
    pooling: bool,
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
}

/// The WebAssembly host: one engine, its linker, its compile cache and its epoch ticker.
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
            .field("pooling", &self.inner.pooling)
            .field("max_instances", &self.inner.max_instances)
            .field("fuel_metering", &self.inner.fuel_metering)
            .field("compile_tier", &self.inner.compile_tier)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    cache_dir: Option<PathBuf>,
    cache_enabled: bool,
    max_instances: u32,
    pooling: Option<bool>,
    address_space_cap: Option<u64>,
    tick: Duration,
    total_memory: Option<usize>,
    allow_precompiled: bool,
    max_plugin_bytes: u64,
    fuel_metering: bool,
    compile_tier: CompileTier,
    compiler: Compiler,
    compile_timeout: Duration,
    compile_memory: u64,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_enabled: true,
            max_instances: 1000,
            pooling: None,
            address_space_cap: None,
            tick: DEFAULT_TICK,
            total_memory: None,
            allow_precompiled: false,
            max_plugin_bytes: DEFAULT_MAX_PLUGIN_BYTES,
            fuel_metering: true,
            compile_tier: CompileTier::Optimized,
            compiler: Compiler::Auto,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            compile_memory: DEFAULT_COMPILE_MEMORY,
        }
    }
}

impl HostBuilder {
    /// Where precompiled components are kept (default `$XDG_CACHE_HOME/osiiso-host`).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Turns the compile cache on or off (on by default).
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache_enabled = enabled;
        self
    }

    /// The most instances alive at once; sizes the pooling allocator (default 1000).
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n.max(1);
        self
    }

    /// Forces the pooling allocator on or off; by default a probe decides.
    pub fn pooling(mut self, enabled: bool) -> Self {
        self.pooling = Some(enabled);
        self
    }

    /// Sizes virtual-memory reservations for a process whose address space is capped at
    /// `cap` bytes (`RLIMIT_AS`): no pooling and no multi-GiB guard regions, and one linear
    /// memory may grow in place up to most of the cap. Memory accesses are bounds-checked,
    /// which is slightly slower.
    pub fn address_space_cap(mut self, cap: u64) -> Self {
        self.address_space_cap = Some(cap);
        self
    }

    /// The most linear memory all live instances of this host may hold together (default:
    /// half of the machine's memory, or of the process's cgroup limit when lower). An
    /// attempt whose growth does not fit waits for others to finish; one that could never
    /// fit fails with [`MemoryLimit`](crate::FailureKind::MemoryLimit).
    pub fn total_memory(mut self, bytes: usize) -> Self {
        self.total_memory = Some(bytes.max(1));
        self
    }

    /// Lets [`Host::load`] deserialize precompiled artifacts (`osiiso-host compile -o`, or a
    /// wasmtime `.cwasm`). **Trusted input only**: an artifact is native code, and loading
    /// one runs whatever it contains with the host's privileges. Off by default, so that a
    /// file named `plugin.wasm` can never choose native code.
    pub fn allow_precompiled(mut self, yes: bool) -> Self {
        self.allow_precompiled = yes;
        self
    }

    /// The largest plugin file [`Host::load`] reads (default 256 MiB).
    pub fn max_plugin_bytes(mut self, bytes: u64) -> Self {
        self.max_plugin_bytes = bytes;
        self
    }

    /// Whether guest code counts fuel (default on).
    ///
    /// Metering is compiled into the code: it costs instructions in every loop (a fifth of a
    /// tight integer loop's, see the README's performance section) whether or not an attempt
    /// has a budget. Turned off, guests run at full speed and stop by epoch as usual
    /// (deadlines, cancellation), but:
    /// - a plugin whose [`Limits::fuel`] sets a budget cannot run: each of its attempts fails
    ///   with [`PluginLoad`](crate::FailureKind::PluginLoad), never retried;
    /// - results carry no `fuel_consumed`;
    /// - async guests yield to the executor at every epoch tick instead of every ~100k fuel
    ///   (a spinning guest still cannot starve the others, at a coarser grain).
    ///
    /// The CLI turns it on for `--fuel` and for `--queue async` only.
    ///
    /// ```
    /// use osiiso_host::{AttemptControl, AttemptOutcome, AttemptRequest, Host};
    /// use serde_json::json;
    /// # let echo_wasm = osiiso_test_artifacts::ECHO;
    /// let host = Host::builder().fuel_metering(false).build()?;
    /// assert!(!host.meters_fuel());
    /// let echo = host.load(echo_wasm)?.task("echo")?;
    /// let report = echo.run_attempt(AttemptRequest {
    ///     input: &json!("hi"),
    ///     attempt: 1,
    ///     control: AttemptControl::new(None),
    ///     display_name: "echo",
    ///     progress: None,
    /// });
    /// assert_eq!(report.outcome, AttemptOutcome::Succeeded(json!("hi").into()));
    /// assert_eq!(report.fuel_consumed, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fuel_metering(mut self, yes: bool) -> Self {
        self.fuel_metering = yes;
        self
    }

    /// Which compiler makes native code of plugins (default [`CompileTier::Optimized`]).
    ///
    /// [`CompileTier::Baseline`] (wasmtime's Winch) compiles a never-seen plugin several
    /// times faster, so its first result comes sooner, and its code runs slower after that:
    /// the README's performance section has the figures for both. Every limit holds on both
    /// tiers, and each keeps its own compile-cache entries.
    pub fn compile_tier(mut self, tier: CompileTier) -> Self {
        self.compile_tier = tier;
        self
    }

    /// Where plugins are compiled (default [`Compiler::Auto`]: a compile process, under
    /// the compile limits).
    pub fn compiler(mut self, compiler: Compiler) -> Self {
        self.compiler = compiler;
        self
    }

    /// How long compiling one plugin may take (default 2 minutes), in a compile process: a
    /// load that takes longer fails with [`LoadError::CompileTimeout`] (with a zero timeout,
    /// every compilation does). A cache hit does not compile.
    pub fn compile_timeout(mut self, timeout: Duration) -> Self {
        self.compile_timeout = timeout;
        self
    }

    /// The memory compiling one plugin may use (default 2 GiB, at least
    /// [`MIN_COMPILE_MEMORY`]), in a compile process: a load that needs more fails with
    /// [`LoadError::CompileMemory`]. The host compiles one plugin at a time, so this bounds
    /// its compilations together too.
    pub fn compile_memory(mut self, bytes: u64) -> Self {
        self.compile_memory = bytes.max(MIN_COMPILE_MEMORY);
        self
    }

    /// The epoch tick (default 10 ms): deadlines and cancellations reach guests within it.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Creates the engine, links the host interfaces and starts the epoch ticker.
    ///
    /// The first host of a process also raises the process's soft open-files limit
    /// (`RLIMIT_NOFILE`) to its hard limit and gives guests three quarters of it, shared by
    /// all their attempts (see [`Limits::max_open_files`]); the rest stays the host's.
    pub fn build(self) -> Result<Host, HostError> {
        let (engine, pooling) = config::build_engine(
            self.max_instances,
            self.pooling,
            self.address_space_cap,
            self.fuel_metering,
            self.compile_tier,
        )
        .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        // In the sync linker an outgoing HTTP request blocks the worker thread until it
        // completes; it is bounded by the attempt's deadline (see `http`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| interruptible::shadow_blocking_io(&mut linker))
            .and_then(|()| fs_guard::guard_sync(&mut linker))
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker))
            .and_then(|()| contract::add_host_to_linker(&mut linker))
            .and_then(|()| command::core_module::add_exit_to_linker(&mut linker))
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker_async = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_async)
            .and_then(|()| fs_guard::guard_async(&mut linker_async))
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker_async))
            .and_then(|()| contract::add_host_to_linker(&mut linker_async))
            .and_then(|()| command::core_module::add_exit_to_linker(&mut linker_async))
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let root = if self.cache_enabled {
            self.cache_dir.or_else(CompileCache::default_root)
        } else {
            None
        };
        let fingerprint = cache::engine_fingerprint(&engine);
        let cache = CompileCache::open(root, &fingerprint);
        let compile = CompileStep::new(
            &self.compiler,
            CompileLimits {
                timeout: self.compile_timeout,
                memory: self.compile_memory,
            },
            fingerprint,
            self.address_space_cap,
            self.fuel_metering,
            self.compile_tier,
            self.max_plugin_bytes,
        )
        .map_err(HostError::Compiler)?;
        let ticker = EpochTicker::start(&engine, self.tick).map_err(HostError::Ticker)?;
        // Raises the process's open-files limit and sizes the guests' share of it.
        let descriptor_pool = descriptors::pool().total();
        tracing::debug!(descriptor_pool, "descriptors guests may hold together");
        let total_memory = self.total_memory.unwrap_or_else(budget::default_total);
        Ok(Host {
            inner: Arc::new(HostInner {
                engine,
                linker,
                linker_async,
                cache,
                compile,
                ticker,
                pooling,
                max_instances: self.max_instances,
                instance_permits: Arc::new(tokio::sync::Semaphore::new(
                    self.max_instances as usize,
                )),
                memory_budget: MemoryBudget::new(total_memory),
                allow_precompiled: self.allow_precompiled,
                max_plugin_bytes: self.max_plugin_bytes,
                loads: stats::LoadCounters::default(),
                fuel_metering: self.fuel_metering,
                compile_tier: self.compile_tier,
            }),
        })
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
        let path = path.as_ref();
        let bytes = read_plugin_file(path, self.inner.max_plugin_bytes)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load_inner(&name, Some(path), &bytes, limits)
    }

    /// Loads a plugin from bytes; `name` is used in messages and task identities.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        self.load_inner(name, None, bytes, Limits::default())
    }

    fn load_inner(
        &self,
        name: &str,
        path: Option<&Path>,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<Plugin, LoadError> {
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| name.to_string());
        let began = std::time::Instant::now();
        let hash = blake3::hash(bytes).to_hex().to_string();
        // The compile cache keeps compiled code under the hash of the bytes compiled.
        let mut cache_key = hash.clone();
        let (component, outcome) = if cache::is_precompiled(bytes) {
            if !self.inner.allow_precompiled {
                return Err(LoadError::Precompiled { plugin: shown });
            }
            let component = cache::open_artifact(&self.inner.engine, bytes).map_err(|message| {
                LoadError::Compile {
                    plugin: shown.clone(),
                    message: format!("precompiled artifact rejected: {message}"),
                }
            })?;
            (component, CacheOutcome::Precompiled)
        } else {
            // A WASI preview-1 program becomes a component first.
            let adapted = match check_component_header(&shown, bytes)? {
                Wasm::Component => None,
                Wasm::CoreModule => Some(command::core_module::componentize(&shown, bytes)?),
            };
            if let Some(adapted) = &adapted {
                cache_key = blake3::hash(adapted).to_hex().to_string();
            }
            self.inner
                .cache
                .load_or_compile(
                    &self.inner.engine,
                    &self.inner.compile,
                    &cache_key,
                    adapted.as_deref().unwrap_or(bytes),
                )
                .map_err(|e| compile_failure(e, &shown))?
        };
        tracing::debug!(plugin = name, cache = ?outcome, "plugin compiled");
        self.inner.loads.loaded(outcome, began.elapsed());
        Plugin::load(self, name, path, hash, component, outcome, limits)
            .map(|plugin| plugin.with_cache_key(cache_key))
            .map_err(|e| rename(e, &shown))
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
        let plugin = self.load(wasm)?;
        let Some(out) = out else {
            return self
                .inner
                .cache
                .entry_path(plugin.cache_key())
                .ok_or_else(|| LoadError::Compile {
                    plugin: wasm.display().to_string(),
                    message: "the compile cache is disabled or not trusted; pass an output file"
                        .into(),
                });
        };
        let serialized = plugin
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
        self.inner.cache.root().map(Path::to_path_buf)
    }

    /// Whether the compile cache is used.
    pub fn cache_enabled(&self) -> bool {
        self.inner.cache.root().is_some()
    }

    /// How long compiling one plugin may take ([`HostBuilder::compile_timeout`]).
    pub fn compile_timeout(&self) -> Duration {
        self.inner.compile.limits().timeout
    }

    /// The memory compiling one plugin may use ([`HostBuilder::compile_memory`]).
    pub fn compile_memory(&self) -> u64 {
        self.inner.compile.limits().memory
    }

    /// The binary whose compile processes compile plugins; `None` when they compile in this
    /// process, where the compile limits do not apply ([`Compiler`]).
    pub fn compile_program(&self) -> Option<&Path> {
        self.inner.compile.program()
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

    /// Whether instances come from the pooling allocator.
    pub fn uses_pooling(&self) -> bool {
        self.inner.pooling
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
        futures::executor::block_on(self.instance_permit())
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<AttemptState> {
        &self.inner.linker
    }

    pub(crate) fn linker_async(&self) -> &Linker<AttemptState> {
        &self.inner.linker_async
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
        CompileError::Invalid(message) => LoadError::Compile { plugin, message },
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
