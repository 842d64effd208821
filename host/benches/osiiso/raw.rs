//! The raw-wasmtime baselines: a fresh-instance loop written directly against wasmtime, and
//! the `attempt` benchmark (the engine's single-attempt path against it, one thread).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use osiiso_host::{AttemptControl, AttemptOutcome, AttemptRequest, Task};
use serde_json::Value;
use wasmtime::component::{
    Component, ComponentExportIndex, HasSelf, InstancePre, Linker, ResourceTable, TypedFunc,
};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::measure::{calibrate, fmt_rate, fmt_secs, fmt_x, median, timed};
use crate::{Scale, Verdict};

// The WIT contract's types, generated from the same file as the host's
// (host/src/engine/contract.rs).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/task.wit",
        world: "plugin",
    });
}

use bindings::exports::osiiso::task::tasks::TaskError as RawTaskError;
use bindings::osiiso::task::host::{self as wit_host, Level};

fn describe(error: &RawTaskError) -> String {
    match error {
        RawTaskError::Failed(m) => format!("failed: {m}"),
        RawTaskError::Permanent(m) => format!("permanent: {m}"),
        RawTaskError::InvalidInput(m) => format!("invalid-input: {m}"),
    }
}

type RawInvoke = TypedFunc<(String, String), (Result<String, RawTaskError>,)>;

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl wit_host::Host for RawState {
    fn log(&mut self, _level: Level, message: String) {
        black_box(message);
    }

    fn progress(&mut self, done: u64, total: u64) {
        black_box((done, total));
    }

    fn cancelled(&mut self) -> bool {
        false
    }

    fn attempt(&mut self) -> u32 {
        1
    }
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A fresh-instance loop written directly against wasmtime: the engine configured like the
/// host's (host/src/engine/config.rs), WASI p2 plus the `osiiso:task/host` functions, and one
/// new store and instance per call.
#[derive(Clone)]
pub(crate) struct Raw {
    engine: Engine,
    pre: InstancePre<RawState>,
    invoke: ComponentExportIndex,
}

impl Raw {
    pub(crate) fn new(pooling: bool, wasm: &Path) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(true)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20)
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
        if pooling {
            let instances = 1000u32;
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(instances)
                .total_core_instances(instances * 8)
                .total_memories(instances * 2)
                .total_tables(instances * 4)
                .total_stacks(instances)
                .max_memory_size(4 << 30)
                .max_memories_per_component(4)
                .max_tables_per_component(8)
                .max_core_instances_per_component(32)
                .table_elements(100_000)
                .linear_memory_keep_resident(4 << 20)
                .table_keep_resident(64 << 10);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;
        let mut linker: Linker<RawState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wit_host::add_to_linker::<_, HasSelf<RawState>>(&mut linker, |state| state)?;
        let component = Component::from_file(&engine, wasm)?;
        let tasks = component
            .get_export_index(None, "osiiso:task/tasks@0.1.0")
            .ok_or_else(|| wasmtime::format_err!("no tasks export"))?;
        let invoke = component
            .get_export_index(Some(&tasks), "invoke")
            .ok_or_else(|| wasmtime::format_err!("no invoke export"))?;
        let pre = linker.instantiate_pre(&component)?;
        Ok(Self {
            engine,
            pre,
            invoke,
        })
    }

    /// One call in a fresh store and instance.
    fn call(&self, task: &str, input: &str) -> wasmtime::Result<String> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(true);
        let state = RawState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_fuel(u64::MAX)?;
        // Nothing ticks this engine's epoch, so the deadline is never reached.
        store.set_epoch_deadline(1);
        let instance = self.pre.instantiate(&mut store)?;
        let invoke: RawInvoke = instance.get_typed_func(&mut store, self.invoke)?;
        let (result,) = invoke.call(&mut store, (task.to_string(), input.to_string()))?;
        result.map_err(|e| wasmtime::format_err!("guest error {}", describe(&e)))
    }

    pub(crate) fn noop(&self) -> anyhow::Result<()> {
        let out = self
            .call("noop", "null")
            .map_err(|e| anyhow!("raw noop: {e:#}"))?;
        ensure!(out == "null", "raw noop returned {out}");
        Ok(())
    }
}

fn engine_noop(task: &Task) -> anyhow::Result<()> {
    let input = Value::Null;
    let report = task.run_attempt(AttemptRequest {
        input: &input,
        attempt: 1,
        control: AttemptControl::new(None),
        display_name: "noop",
        progress: None,
    });
    match report.outcome {
        AttemptOutcome::Succeeded(value) if value.is_null() => Ok(()),
        other => bail!("engine noop ended with {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// attempt: the engine's single-attempt path vs the raw loop, one thread.

pub(crate) fn bench_attempt(scale: Scale, task: &Task, raw: &Raw) -> anyhow::Result<Vec<Verdict>> {
    let rounds = scale.count(7, 1);
    let warm = scale.round(Duration::from_millis(300));
    let raw_rate = calibrate(warm, || raw.noop())?;
    calibrate(warm, || engine_noop(task))?;
    let n = ((raw_rate * scale.round(Duration::from_millis(300)).as_secs_f64()) as usize).max(10);
    println!(
        "   {rounds} interleaved rounds of {n} fresh-instance calls of scenario_flaky/noop(null)"
    );
    let (mut raw_rates, mut engine_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let r = n as f64 / timed(n, || raw.noop())?.as_secs_f64();
        let e = n as f64 / timed(n, || engine_noop(task))?.as_secs_f64();
        println!(
            "   round {round}: raw {} ({}/call)  engine {} ({}/call)  ratio {}",
            fmt_rate(r),
            fmt_secs(1.0 / r),
            fmt_rate(e),
            fmt_secs(1.0 / e),
            fmt_x(e / r)
        );
        raw_rates.push(r);
        engine_rates.push(e);
        ratios.push(e / r);
    }
    let (r, e) = (median(&mut raw_rates), median(&mut engine_rates));
    println!(
        "   median: raw wasmtime {} ({}/call), Task::run_attempt {} ({}/call)",
        fmt_rate(r),
        fmt_secs(1.0 / r),
        fmt_rate(e),
        fmt_secs(1.0 / e)
    );
    Ok(vec![Verdict::at_least(
        "attempt",
        "run_attempt / raw, median of round ratios",
        median(&mut ratios),
        0.9,
        fmt_x,
    )])
}

/// The raw loop on 2 threads, `n` calls in all (the reference of B1–B3).
pub(crate) fn raw_two_threads(raw: &Raw, n: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = [n / 2, n - n / 2]
            .into_iter()
            .map(|count| scope.spawn(move || timed(count, || raw.noop())))
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow!("raw thread panicked"))??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(start.elapsed())
}
