//! A host's compilers: for each compile tier it uses, the engine with its linkers, compile
//! cache and compile step ([`TierEngine`]); and for a tiered host, the thread that compiles
//! optimised code in the background ([`Background`]).
//!
//! A host of one tier has one [`TierEngine`]. A tiered host has two: Winch's, which a
//! never-seen plugin starts on, and Cranelift's, which it moves to once its optimised code is
//! compiled (`engine/plugin/optimize.rs`, `Plugin::optimize_in_background`). The two engines share the
//! epoch ticker, the instance permits and the memory budget, so every limit counts instances
//! of both tiers together.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::cache::{self, CacheOutcome, CompileCache};
use super::compile::{CompileLimits, CompileStep, Compiler};
use super::config::{self, CompileTier};
use super::error::HostError;
use super::store::AttemptState;
use super::{command, contract, fs_guard, interruptible};

/// What every tier of a host is built with.
pub(crate) struct TierSettings<'a> {
    pub(crate) max_instances: u32,
    pub(crate) address_space_cap: Option<u64>,
    pub(crate) fuel: bool,
    pub(crate) compiler: &'a Compiler,
    pub(crate) limits: CompileLimits,
    pub(crate) cache_root: Option<PathBuf>,
    pub(crate) max_plugin_bytes: u64,
}

/// A plugin's component, compiled for one tier's engine.
pub(crate) struct Compiled {
    pub(crate) tier: Arc<TierEngine>,
    pub(crate) component: Component,
    pub(crate) outcome: CacheOutcome,
}

/// One compiler's engine: what code of one tier is compiled, cached and run with.
pub(crate) struct TierEngine {
    /// [`CompileTier::Optimized`] or [`CompileTier::Baseline`].
    pub(crate) tier: CompileTier,
    pub(crate) engine: Engine,
    /// WASI and the host's imports with blocking host calls, for sync instances.
    pub(crate) linker: Linker<AttemptState>,
    /// The same with async host calls, for async instances.
    pub(crate) linker_async: Linker<AttemptState>,
    /// Compiled code of this engine, under its own fingerprint.
    pub(crate) cache: CompileCache,
    pub(crate) compile: CompileStep,
    /// Whether instances come from the pooling allocator.
    pub(crate) pooling: bool,
}

impl std::fmt::Debug for TierEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierEngine")
            .field("tier", &self.tier)
            .field("pooling", &self.pooling)
            .finish_non_exhaustive()
    }
}

impl TierEngine {
    /// The engine of `tier` (not [`CompileTier::Tiered`]), pooling instances as `pooling`
    /// asks (`None`: when the probe succeeds).
    pub(crate) fn new(
        tier: CompileTier,
        pooling: Option<bool>,
        settings: &TierSettings<'_>,
    ) -> Result<Self, HostError> {
        debug_assert_ne!(tier, CompileTier::Tiered);
        let engine_error = |e: wasmtime::Error| HostError::Engine(format!("{e:#}"));
        let (engine, pooling) = config::build_engine(
            settings.max_instances,
            pooling,
            settings.address_space_cap,
            settings.fuel,
            tier,
        )
        .map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        // In the sync linker an outgoing HTTP request blocks the worker thread until it
        // completes; it is bounded by the attempt's deadline (see `http`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| interruptible::shadow_blocking_io(&mut linker))
            .and_then(|()| fs_guard::guard_sync(&mut linker))
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker))
            .and_then(|()| contract::add_host_to_linker(&mut linker))
            .and_then(|()| command::core_module::add_exit_to_linker(&mut linker))
            .map_err(engine_error)?;
        let mut linker_async = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker_async)
            .and_then(|()| fs_guard::guard_async(&mut linker_async))
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker_async))
            .and_then(|()| contract::add_host_to_linker(&mut linker_async))
            .and_then(|()| command::core_module::add_exit_to_linker(&mut linker_async))
            .map_err(engine_error)?;
        let fingerprint = cache::engine_fingerprint(&engine);
        let cache = CompileCache::open(settings.cache_root.clone(), &fingerprint);
        let compile = CompileStep::new(
            settings.compiler,
            settings.limits,
            fingerprint,
            settings.address_space_cap,
            settings.fuel,
            tier,
            settings.max_plugin_bytes,
        )
        .map_err(HostError::Compiler)?;
        Ok(Self {
            tier,
            engine,
            linker,
            linker_async,
            cache,
            compile,
            pooling,
        })
    }

    /// The engine, whose compilations run in the background
    /// ([`CompileStep::in_background`]).
    pub(crate) fn for_background(mut self) -> Self {
        self.compile = self.compile.in_background();
        self
    }
}

/// Work in the background, one job at a time, on a thread started with the first job. The
/// thread ends once the host is dropped and its last job is done.
#[derive(Default)]
pub(crate) struct Background {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Jobs queued or running.
    pending: Arc<AtomicUsize>,
}

/// One piece of background work: compiling and installing a plugin's optimised code.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

impl Background {
    /// Queues `job` after the ones before it.
    pub(crate) fn run(&self, job: Job) {
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                tracing::error!("a background compilation panicked; its plugin keeps its code");
            }
            pending.fetch_sub(1, Ordering::Relaxed);
        });
        let mut jobs = self.jobs.lock();
        let job = match jobs.as_ref() {
            Some(sender) => match sender.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (sender, receiver) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("osiiso-optimize".into())
            .spawn(move || {
                for job in receiver {
                    job();
                }
            });
        match started {
            Ok(_) => {
                let _ = sender.send(job);
                *jobs = Some(sender);
            }
            // Without the thread the plugin keeps its baseline code, which is correct.
            Err(error) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(%error, "cannot start the background compiler thread");
            }
        }
    }

    /// Jobs queued or running now.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// The most plugins whose failed optimisation a host remembers; beyond, it forgets them all.
const MAX_FAILED_KEYS: usize = 4096;

/// What a tiered host's background compilations did.
#[derive(Default)]
pub(crate) struct Optimizations {
    done: AtomicU64,
    failed: AtomicU64,
    /// Cache keys of plugins whose optimised compilation failed: a later load of the same
    /// plugin does not try again (a compile bomb costs one compile timeout, not one per load).
    failed_keys: Mutex<HashSet<String>>,
}

impl Optimizations {
    /// A plugin moved to its optimised code.
    pub(crate) fn done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// The optimised compilation of the plugin under `key` failed.
    pub(crate) fn failed(&self, key: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut keys = self.failed_keys.lock();
        if keys.len() >= MAX_FAILED_KEYS {
            keys.clear();
        }
        keys.insert(key.to_string());
    }

    /// Whether the optimised compilation of the plugin under `key` failed before.
    pub(crate) fn failed_before(&self, key: &str) -> bool {
        self.failed_keys.lock().contains(key)
    }

    /// Plugins moved so far.
    pub(crate) fn done_count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Optimised compilations that failed so far.
    pub(crate) fn failed_count(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}
