//! The engine layer: the only code that touches wasmtime.
//!
//! It fixes the few choices osiiso-host makes (one shared engine, epoch interruption with a
//! ticker thread, fuel, the pooling allocator behind a probe, an on-disk compile cache,
//! deny-by-default capabilities, outgoing `wasi:http` only to allowed hosts) and exposes them
//! as [`Host`], [`Plugin`], [`Task`], [`Limits`] and [`Sandbox`]. A queue runs an attempt
//! with [`Task::run_attempt`] and stops it with [`AttemptControl::cancel`].

mod attempt;
mod cache;
mod config;
mod contract;
mod epoch;
mod error;
mod http;
mod interruptible;
mod limits;
mod output;
mod plugin;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use attempt::{AttemptControl, AttemptOutcome, AttemptReport, AttemptRequest, ProgressFn};
pub use cache::CacheOutcome;
pub use error::{HostError, LoadError};
pub use limits::Limits;
pub use plugin::{Plugin, Task, TaskInfo};
pub use sandbox::{DirGrant, Sandbox};

use attempt::AttemptState;
use cache::CompileCache;
use epoch::EpochTicker;

/// Default epoch tick: how quickly a deadline or cancellation reaches a running guest.
const DEFAULT_TICK: Duration = Duration::from_millis(10);

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
    cache_root: Option<PathBuf>,
    linker: Linker<AttemptState>,
    linker_async: Linker<AttemptState>,
    cache: CompileCache,
    ticker: EpochTicker,
    pooling: bool,
    max_instances: u32,
    /// One permit per instance the pool can hold: waiting for one is the back-pressure that
    /// keeps pool exhaustion from ever failing a task.
    instance_permits: Arc<tokio::sync::Semaphore>,
}

/// The WebAssembly host: one engine, its linker, its compile cache and its epoch ticker.
///
/// Create one per process and share it (cloning is cheap); every queue and plugin uses it.
///
/// ```no_run
/// use osiiso_host::{Host, Limits};
/// let host = Host::builder().build()?;
/// let plugin = host.load("echo.wasm")?.with_limits(Limits::new().fuel(50_000_000));
/// for task in plugin.tasks() {
///     println!("{}: {}", task.name, task.description);
/// }
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
    small_address_space: bool,
    tick: Duration,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_enabled: true,
            max_instances: 1000,
            pooling: None,
            small_address_space: false,
            tick: DEFAULT_TICK,
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

    /// Keeps virtual-memory reservations small (no pooling, no multi-GiB guard regions), for
    /// processes under an address-space cap such as `RLIMIT_AS`. Slightly slower memory access.
    pub fn small_address_space(mut self, yes: bool) -> Self {
        self.small_address_space = yes;
        self
    }

    /// The epoch tick (default 10 ms): deadlines and cancellations reach guests within it.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Creates the engine, links the host interfaces and starts the epoch ticker.
    pub fn build(self) -> Result<Host, HostError> {
        let (engine, pooling) =
            config::build_engine(self.max_instances, self.pooling, self.small_address_space)
                .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        // In the sync linker an outgoing HTTP request blocks the worker thread until it
        // completes; it is bounded by the attempt's deadline (see `http`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| interruptible::shadow_blocking_io(&mut linker))
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker))
            .and_then(|()| contract::add_host_to_linker(&mut linker))
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker_async = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_async)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker_async))
            .and_then(|()| contract::add_host_to_linker(&mut linker_async))
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let root = if self.cache_enabled {
            self.cache_dir.or_else(CompileCache::default_root)
        } else {
            None
        };
        let cache = CompileCache::new(root.clone(), &engine);
        let ticker = EpochTicker::start(&engine, self.tick)?;
        Ok(Host {
            inner: Arc::new(HostInner {
                engine,
                cache_root: root,
                linker,
                linker_async,
                cache,
                ticker,
                pooling,
                max_instances: self.max_instances,
                instance_permits: Arc::new(tokio::sync::Semaphore::new(
                    self.max_instances as usize,
                )),
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

    /// Loads a plugin from a `.wasm` component (through the compile cache) or from an artifact
    /// written by [`Host::precompile`].
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Plugin, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load_inner(&name, Some(path), &bytes)
    }

    /// Loads a plugin from bytes; `name` is used in messages and task identities.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        self.load_inner(name, None, bytes)
    }

    fn load_inner(
        &self,
        name: &str,
        path: Option<&Path>,
        bytes: &[u8],
    ) -> Result<Plugin, LoadError> {
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| name.to_string());
        let hash = blake3::hash(bytes).to_hex().to_string();
        let (component, outcome) = if cache::is_artifact(bytes) {
            let component =
                cache::deserialize_entry(&self.inner.engine, bytes).map_err(|message| {
                    LoadError::Compile {
                        plugin: shown.clone(),
                        message: format!("precompiled artifact rejected: {message}"),
                    }
                })?;
            (component, CacheOutcome::Hit)
        } else {
            check_component_header(&shown, bytes)?;
            self.inner
                .cache
                .load_or_compile(&self.inner.engine, &hash, bytes)
                .map_err(|e| LoadError::Compile {
                    plugin: shown.clone(),
                    message: format!("{e:#}"),
                })?
        };
        tracing::debug!(plugin = name, cache = ?outcome, "plugin compiled");
        Plugin::load(self, name, path, hash, component, outcome).map_err(|e| rename(e, &shown))
    }

    /// Compiles a component and writes the artifact to `out`, or into the compile cache when
    /// `out` is `None`. Returns where it was written.
    pub fn precompile(
        &self,
        wasm: impl AsRef<Path>,
        out: Option<&Path>,
    ) -> Result<PathBuf, LoadError> {
        let wasm = wasm.as_ref();
        let plugin = self.load(wasm)?;
        let target =
            match out {
                Some(out) => out.to_path_buf(),
                None => self.inner.cache.entry_path(plugin.hash()).ok_or_else(|| {
                    LoadError::Compile {
                        plugin: wasm.display().to_string(),
                        message: "the compile cache is disabled; pass an output file".into(),
                    }
                })?,
            };
        let serialized = plugin
            .component()
            .serialize()
            .map_err(|e| LoadError::Compile {
                plugin: wasm.display().to_string(),
                message: format!("{e:#}"),
            })?;
        cache::write_entry(&target, &serialized).map_err(|source| LoadError::Read {
            path: target.clone(),
            source,
        })?;
        Ok(target)
    }

    /// The compile-cache directory, when the cache is enabled.
    pub fn cache_root(&self) -> Option<PathBuf> {
        self.inner.cache_root.clone()
    }

    /// Whether the compile cache is used.
    pub fn cache_enabled(&self) -> bool {
        self.inner.cache_root.is_some()
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
            || WASI_PACKAGES
                .iter()
                .any(|pkg| import.starts_with(pkg) && import.contains("@0.2."))
    }
}

/// Distinguishes "not wasm" and "a core module" from a component before compiling.
fn check_component_header(plugin: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(())
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        Err(LoadError::CoreModule {
            plugin: plugin.to_string(),
        })
    } else {
        Err(LoadError::NotWasm {
            plugin: plugin.to_string(),
        })
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
