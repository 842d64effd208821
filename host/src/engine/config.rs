//! The wasmtime configuration osiiso-host fixes, and the pooling-allocator probe.

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy,
};

/// Size of the stack wasm may use; below the async fiber stack so host calls have room.
pub(crate) const MAX_WASM_STACK: usize = 1 << 20;
/// Fiber stack for async calls (and for sync calls that go through fibers).
const ASYNC_STACK: usize = 2 << 20;
/// Linear-memory slots in the pool are sized for the 32-bit maximum; this is address space,
/// not memory.
const POOL_MAX_MEMORY: usize = 4 << 30;

/// The most core instances, linear memories and tables one instance of a plugin may have: the
/// pool's slots are sized for them, and the store limiter holds every engine to them too.
pub(crate) const MAX_CORE_INSTANCES: usize = 32;
pub(crate) const MAX_MEMORIES: usize = 4;
pub(crate) const MAX_TABLES: usize = 8;

/// Address space a capped worker process needs besides linear memory: its code, heap,
/// thread stacks and compiled plugins.
const CAPPED_PROCESS_OVERHEAD: u64 = 160 << 20;

/// Which compiler turns a host's plugins into native code
/// ([`HostBuilder::compile_tier`](crate::HostBuilder::compile_tier)).
///
/// Every tier keeps every limit: fuel metering, epoch interruption (deadlines, cancellation),
/// memory caps, and the compile process's time and memory limits. Code of one compiler loads
/// only into an engine of that compiler; the compile cache keeps the two apart.
///
/// ```
/// use osiiso_host::{CompileTier, Host};
///
/// // The default: a never-seen plugin starts on baseline code, then moves to optimised code.
/// assert_eq!(Host::new()?.compile_tier(), CompileTier::Tiered);
/// let host = Host::builder().compile_tier(CompileTier::Baseline).build()?;
/// assert_eq!(host.compile_tier(), CompileTier::Baseline);
/// # Ok::<(), osiiso_host::HostError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompileTier {
    /// Both, one after the other (the default). A plugin whose optimised code is in the
    /// compile cache loads it, as [`Optimized`](Self::Optimized) does. A never-seen one is
    /// compiled with Winch first, so its first result comes sooner; Cranelift then compiles
    /// it in the background, under the same compile limits, and every attempt that starts
    /// after that runs the optimised code ([`Plugin::compile_tier`](crate::Plugin::compile_tier)
    /// says which code a plugin runs now).
    #[default]
    Tiered,
    /// Cranelift, the optimising compiler: the fastest code, compiled slowly (a 12 MB
    /// JavaScript component takes about 6 s on 2 cores).
    Optimized,
    /// Winch, wasmtime's baseline compiler: compiles several times faster, and the code runs
    /// slower (README, "Performance").
    Baseline,
}

impl CompileTier {
    /// The tier's name on the command line: `tiered`, `optimized` or `baseline`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiered => "tiered",
            Self::Optimized => "optimized",
            Self::Baseline => "baseline",
        }
    }

    /// The tier named `name` ([`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Tiered, Self::Optimized, Self::Baseline]
            .into_iter()
            .find(|tier| tier.name() == name)
    }
}

/// Builds the engine, with the pooling allocator when the probe succeeds.
///
/// Returns the engine and whether it pools instances.
pub(crate) fn build_engine(
    max_instances: u32,
    pooling: Option<bool>,
    address_space_cap: Option<u64>,
    fuel: bool,
    tier: CompileTier,
) -> wasmtime::Result<(Engine, bool)> {
    if address_space_cap.is_some() {
        return Ok((compile_engine(address_space_cap, fuel, tier)?, false));
    }
    if pooling != Some(false) {
        let mut config = code_config(None, fuel, tier);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(max_instances)));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, true)),
            Err(error) if pooling.is_none() => {
                tracing::debug!(%error, "pooling allocator unavailable; allocating on demand");
            }
            Err(error) => return Err(error),
        }
    }
    Ok((compile_engine(None, fuel, tier)?, false))
}

/// An engine with the code settings of a host built with this `address_space_cap`, `fuel`
/// metering and compile `tier`, and
/// instances allocated on demand. The instance allocator does not change compiled code, so
/// what this engine compiles loads into every engine [`build_engine`] makes for the same cap:
/// the compile process uses it.
pub(crate) fn compile_engine(
    address_space_cap: Option<u64>,
    fuel: bool,
    tier: CompileTier,
) -> wasmtime::Result<Engine> {
    Engine::new(&code_config(address_space_cap, fuel, tier))
}

/// Everything that shapes compiled code (compiler, features, fuel, epochs, memory tunables).
///
/// Winch (the baseline tier) in wasmtime 48 on x86-64 supports what the optimised tier uses:
/// components (their trampolines are compiled by Cranelift), fuel, epoch interruption, SIMD
/// (with AVX), multi-memory, the pooling allocator and serialized artifacts. It does not
/// support tail calls, exceptions, relaxed SIMD or GC, which wasmtime then leaves off: a
/// component that needs them fails to compile on that tier with the compiler's message.
fn code_config(address_space_cap: Option<u64>, fuel: bool, tier: CompileTier) -> Config {
    let mut config = Config::new();
    config.strategy(match tier {
        CompileTier::Baseline => Strategy::Winch,
        CompileTier::Optimized | CompileTier::Tiered => Strategy::Cranelift,
    });
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Fuel counting costs instructions in every loop of the guest (about a fifth of a
        // tight integer loop's, README "Performance"): compiled in only when asked for.
        .consume_fuel(fuel)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
    if let Some(cap) = address_space_cap {
        // Under an address-space cap (RLIMIT_AS) the usual multi-GiB reservation per linear
        // memory cannot be made. Reserve most of the cap once, so that a memory grows in
        // place up to about the cap: reserving little and growing in small steps would
        // copy the whole memory on every step. The reservation depends on the cap alone,
        // so every worker with the same cap shares compiled code.
        let reservation = cap
            .saturating_sub(CAPPED_PROCESS_OVERHEAD)
            .max(cap / 4)
            .max(16 << 20)
            & !0xffff;
        config
            .memory_reservation(reservation)
            .memory_guard_size(0)
            .memory_reservation_for_growth(0)
            .memory_may_move(false)
            .guard_before_linear_memory(false);
    }
    config
}

/// The pooling allocator's configuration for `instances` component instances.
fn pool(instances: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    // A Rust component has a handful of core instances (the program plus the canonical
    // ABI shims); leave headroom for other toolchains.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(POOL_MAX_MEMORY)
        .max_memories_per_component(MAX_MEMORIES as u32)
        .max_tables_per_component(MAX_TABLES as u32)
        .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
        .table_elements(100_000);
    let reset = MemoryReset::detect();
    pool.pagemap_scan(if reset == MemoryReset::PagemapScan {
        Enabled::Yes
    } else {
        Enabled::No
    })
    .linear_memory_keep_resident(reset.keep_resident())
    .table_keep_resident(64 << 10);
    pool
}

/// How a pooled slot's linear memory is made clean for its next instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryReset {
    /// The kernel's `PAGEMAP_SCAN` (Linux 6.7+) finds the pages the guest wrote, and only
    /// those are reset: a trivial task costs a few pages, not the whole resident window.
    PagemapScan,
    /// Without it, the first `keep_resident` bytes are re-zeroed every time (cheaper than
    /// the page faults of decommitting them), and the rest is decommitted.
    Memset,
}

impl MemoryReset {
    /// `PagemapScan` where the kernel supports it and the machine has no swap: a dirty page
    /// that is swapped out is not reported as present, so it would be neither reset nor
    /// decommitted, and the next guest in that slot could read it.
    pub(crate) fn detect() -> Self {
        if PoolingAllocationConfig::is_pagemap_scan_available() && !swap_enabled() {
            Self::PagemapScan
        } else {
            Self::Memset
        }
    }

    /// Bytes of each slot kept committed between instances.
    fn keep_resident(self) -> usize {
        match self {
            // Only dirty pages are touched: a larger window costs nothing for small tasks
            // and spares big ones the page faults.
            Self::PagemapScan => 16 << 20,
            Self::Memset => 4 << 20,
        }
    }
}

/// Whether any swap space is configured (`SwapTotal` in `/proc/meminfo`); unknown counts
/// as yes.
fn swap_enabled() -> bool {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return true;
    };
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("SwapTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .is_none_or(|kib| kib > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cache::engine_fingerprint;

    /// The compile process's engine makes code every engine of a host with the same cap
    /// loads: the instance allocator is not part of the compiled code.
    #[test]
    fn the_compile_engine_matches_every_host_engine() {
        for tier in [CompileTier::Optimized, CompileTier::Baseline] {
            for fuel in [true, false] {
                for (pooling, cap) in [
                    (Some(true), None),
                    (Some(false), None),
                    (None, Some(512 << 20)),
                ] {
                    let (engine, _) = build_engine(8, pooling, cap, fuel, tier).unwrap();
                    assert_eq!(
                        engine_fingerprint(&engine),
                        engine_fingerprint(&compile_engine(cap, fuel, tier).unwrap()),
                        "pooling {pooling:?}, cap {cap:?}, fuel {fuel}, tier {tier:?}"
                    );
                }
            }
        }
        assert_ne!(
            engine_fingerprint(&compile_engine(None, true, CompileTier::Optimized).unwrap()),
            engine_fingerprint(&compile_engine(None, true, CompileTier::Baseline).unwrap()),
            "the tier changes the code, so it must reach the compile process and the cache"
        );
        assert_ne!(
            engine_fingerprint(&compile_engine(None, true, CompileTier::Optimized).unwrap()),
            engine_fingerprint(
                &compile_engine(Some(512 << 20), true, CompileTier::Optimized).unwrap()
            ),
            "a cap changes the code, so it must reach the compile process"
        );
        assert_ne!(
            engine_fingerprint(&compile_engine(None, true, CompileTier::Optimized).unwrap()),
            engine_fingerprint(&compile_engine(None, false, CompileTier::Optimized).unwrap()),
            "fuel metering changes the code, so it must reach the compile process"
        );
    }
}
