//! [`HostBuilder`]: the options of a [`Host`] and how they become its engine, linkers,
//! compile cache and epoch ticker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::budget::{self, MemoryBudget};
use super::cache::CompileCache;
use super::compile::{
    CompileLimits, Compiler, DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIMEOUT, MIN_COMPILE_MEMORY,
};
use super::config::CompileTier;
use super::epoch::EpochTicker;
use super::error::HostError;
use super::tiers::{Background, TierEngine, TierSettings};
use super::{DEFAULT_MAX_PLUGIN_BYTES, DEFAULT_TICK, Host, HostInner, descriptors, stats};

/// Builds a [`Host`]: its compile cache, how many instances may live at once and how much
/// memory they share, how plugins are compiled and whether guests count fuel. Every option
/// has a default ([`Host::new`] takes them all).
///
/// ```
/// use osiiso_host::{CacheOutcome, Host};
/// use std::time::Duration;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let cache = tempfile::tempdir()?;
/// let host = Host::builder()
///     .cache_dir(cache.path())
///     .max_instances(64)
///     .total_memory(512 << 20)
///     .compile_timeout(Duration::from_secs(60))
///     .build()?;
/// // The first load compiles the component into the cache; later loads read it back.
/// assert_eq!(host.load(echo_wasm)?.cache_outcome(), CacheOutcome::Miss);
/// assert_eq!(host.load(echo_wasm)?.cache_outcome(), CacheOutcome::Hit);
/// assert_eq!(host.compile_timeout(), Duration::from_secs(60));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
            compile_tier: CompileTier::Tiered,
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

    /// Which compiler makes native code of plugins (default [`CompileTier::Tiered`]).
    ///
    /// [`CompileTier::Baseline`] (wasmtime's Winch) compiles a never-seen plugin several
    /// times faster, so its first result comes sooner, and its code runs slower after that;
    /// [`CompileTier::Optimized`] (Cranelift) the other way round; [`CompileTier::Tiered`]
    /// starts on the first and moves to the second, compiled in the background, between two
    /// attempts. The README's performance section has the figures. Every limit holds on
    /// every tier, and each compiler keeps its own compile-cache entries.
    ///
    /// ```
    /// use osiiso_host::{AttemptControl, AttemptRequest, CompileTier, Host};
    /// use std::time::{Duration, Instant};
    /// # let echo_wasm = osiiso_test_artifacts::ECHO;
    /// let cache = tempfile::tempdir()?;
    /// let host = Host::builder().cache_dir(cache.path()).build()?;
    /// let plugin = host.load(echo_wasm)?;
    /// // Never seen: it starts on baseline code. Its first attempt starts the background
    /// // compilation, and attempts move to optimised code once Cranelift is done.
    /// assert_eq!(plugin.compile_tier(), CompileTier::Baseline);
    /// let echo = plugin.task("echo")?;
    /// echo.run_attempt(AttemptRequest {
    ///     input: &serde_json::json!(1),
    ///     attempt: 1,
    ///     control: AttemptControl::new(None),
    ///     display_name: "echo",
    ///     progress: None,
    /// });
    /// let give_up = Instant::now() + Duration::from_secs(120);
    /// while plugin.compile_tier() != CompileTier::Optimized && Instant::now() < give_up {
    ///     std::thread::sleep(Duration::from_millis(10));
    /// }
    /// assert_eq!(host.plugins_optimized(), 1);
    /// // The next load finds the optimised code in the cache.
    /// assert_eq!(host.load(echo_wasm)?.compile_tier(), CompileTier::Optimized);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// [`LoadError::CompileMemory`]. The host compiles one plugin at a time per compiler, so
    /// this bounds its compilations together too (twice, on a tiered host, whose background
    /// compilation has the same limits).
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
        let root = if self.cache_enabled {
            self.cache_dir.clone().or_else(CompileCache::default_root)
        } else {
            None
        };
        let settings = TierSettings {
            max_instances: self.max_instances,
            address_space_cap: self.address_space_cap,
            fuel: self.fuel_metering,
            compiler: &self.compiler,
            limits: CompileLimits {
                timeout: self.compile_timeout,
                memory: self.compile_memory,
            },
            cache_root: root,
            max_plugin_bytes: self.max_plugin_bytes,
        };
        let (first, optimized) = match self.compile_tier {
            // Under an address-space cap (a process worker's `--worker-memory`) there is no
            // room for two codes of a plugin: one tier, the optimised one.
            CompileTier::Tiered if self.address_space_cap.is_none() => {
                let first = TierEngine::new(CompileTier::Baseline, self.pooling, &settings)?;
                let optimized = TierEngine::new(CompileTier::Optimized, self.pooling, &settings)?
                    .for_background();
                (first, Some(Arc::new(optimized)))
            }
            CompileTier::Tiered => (
                TierEngine::new(CompileTier::Optimized, self.pooling, &settings)?,
                None,
            ),
            tier => (TierEngine::new(tier, self.pooling, &settings)?, None),
        };
        let engines: Vec<&wasmtime::Engine> = std::iter::once(&first.engine)
            .chain(optimized.as_deref().map(|tier| &tier.engine))
            .collect();
        let ticker = EpochTicker::start(&engines, self.tick).map_err(HostError::Ticker)?;
        // Raises the process's open-files limit and sizes the guests' share of it.
        let descriptor_pool = descriptors::pool().total();
        tracing::debug!(descriptor_pool, "descriptors guests may hold together");
        let total_memory = self.total_memory.unwrap_or_else(budget::default_total);
        Ok(Host {
            inner: Arc::new(HostInner {
                first: Arc::new(first),
                optimized,
                background: Background::default(),
                ticker,
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
                optimizations: Default::default(),
            }),
        })
    }
}
