//! The benchmarks of DESIGN.md §10, printed as ratios measured within one run of one process
//! (these machines are noisy, so each comparison interleaves its two sides).
//!
//! ```text
//! cargo bench -p osiiso-host --bench osiiso              # everything
//! cargo bench -p osiiso-host --bench osiiso -- b1 b7     # a subset
//! ```
//!
//! Names: `attempt`, `b1` … `b8`. Without `--bench` on the command line (which
//! `cargo bench` always passes, and `cargo test --benches` does not) every benchmark runs once
//! with tiny sizes as a smoke test; its verdicts mean nothing.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use osiiso_host::AsyncQueue;
use osiiso_host::ProcessQueue;
use osiiso_host::ThreadQueue;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{NativeTask, Queue, TaskOptions, Workers};
use osiiso_host::{
    AttemptControl, AttemptOutcome, AttemptRequest, Host, Limits, Task, TaskFailure,
};
use serde_json::{Value, json};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, InstancePre, Lift, Linker, ResourceTable,
    TypedFunc,
};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Every benchmark, in the order they run.
const BENCHES: &[(&str, &str)] = &[
    (
        "attempt",
        "single attempt (Task::run_attempt) vs raw wasmtime, 1 thread",
    ),
    (
        "b1",
        "trivial WASM task: ThreadQueue 2 workers vs raw wasmtime on 2 threads",
    ),
    (
        "b2",
        "trivial WASM task: AsyncQueue 2 workers vs raw wasmtime on 2 threads",
    ),
    (
        "b3",
        "trivial WASM task: ProcessQueue 2 workers vs raw wasmtime on 2 threads",
    ),
    ("b4", "native no-op closures through ThreadQueue, 2 workers"),
    ("b5", "CPU-bound kernel: wasm (fuel on) / native"),
    (
        "b6",
        "CPU-bound tasks: ProcessQueue 2 workers vs 1 worker (warm workers)",
    ),
    (
        "b7",
        "`osiiso-host run` whole process: warm vs cold compile cache",
    ),
    (
        "b8",
        "10,000 concurrent sleeping tasks on AsyncQueue: completes, peak RSS",
    ),
    (
        "sleepers",
        "AsyncQueue: 1,000 x 100 ms sleepers on 1,000 workers; 100 sleepers beside a spinning guest",
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let mut selected: Vec<&str> = Vec::new();
    for arg in args.iter().filter(|a| !a.starts_with('-')) {
        let name = arg.to_ascii_lowercase();
        if name == "all" {
            selected.extend(BENCHES.iter().map(|(n, _)| *n));
        } else if let Some((n, _)) = BENCHES.iter().find(|(n, _)| *n == name) {
            selected.push(n);
        } else {
            eprintln!("unknown benchmark '{arg}'; choose among:");
            for (n, about) in BENCHES {
                eprintln!("  {n:<8} {about}");
            }
            return ExitCode::from(2);
        }
    }
    if selected.is_empty() {
        selected.extend(BENCHES.iter().map(|(n, _)| *n));
    }
    let mut seen = Vec::new();
    selected.retain(|n| {
        let first = !seen.contains(n);
        seen.push(*n);
        first
    });

    match run(&selected, Scale::new(full)) {
        Ok(verdicts) => {
            print_summary(&verdicts, full);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("benchmark failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sizes: the real ones, or tiny ones for the smoke test.
#[derive(Clone, Copy)]
struct Scale {
    full: bool,
}

impl Scale {
    fn new(full: bool) -> Self {
        Self { full }
    }

    /// How long one side of one round should take.
    fn round(self, full: Duration) -> Duration {
        if self.full {
            full
        } else {
            Duration::from_millis(5)
        }
    }

    fn count(self, full: usize, smoke: usize) -> usize {
        if self.full { full } else { smoke }
    }
}

fn run(selected: &[&str], scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let total = Instant::now();
    if !scale.full {
        println!("SMOKE MODE (no --bench argument): tiny sizes, figures and verdicts mean nothing");
    }
    let cache_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osiiso-bench-cache");
    let host = Host::builder()
        .cache_dir(&cache_dir)
        .build()
        .context("building the host")?;
    println!(
        "host: pooling allocator {}, epoch tick {:?}, {} CPUs",
        if host.uses_pooling() { "on" } else { "off" },
        host.tick(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let before = CpuSnapshot::take();
    std::thread::sleep(Duration::from_millis(300));
    let run_start = CpuSnapshot::take();
    print_other_load("in the 0.3 s before starting", before, run_start);
    let mut raw_cache: Option<Raw> = None;
    let mut raw = |host: &Host| -> anyhow::Result<Raw> {
        if raw_cache.is_none() {
            let wasm = Path::new(osiiso_test_artifacts::SCENARIO_FLAKY);
            let raw = Raw::new(host.uses_pooling(), wasm)
                .map_err(|e| anyhow!("raw wasmtime set-up: {e:#}"))?;
            raw_cache = Some(raw);
        }
        Ok(raw_cache.clone().expect("just set"))
    };
    let noop = || -> anyhow::Result<Task> {
        Ok(host
            .load(osiiso_test_artifacts::SCENARIO_FLAKY)?
            .task("noop")?)
    };

    let mut verdicts = Vec::new();
    for name in selected {
        let about = BENCHES
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, a)| *a);
        println!();
        println!("== {}: {about}", name.to_uppercase());
        let started = Instant::now();
        let found = match *name {
            "attempt" => bench_attempt(scale, &noop()?, &raw(&host)?)?,
            "b1" => bench_queue(scale, &noop()?, &raw(&host)?, QueueUnderTest::Thread)?,
            "b2" => bench_queue(scale, &noop()?, &raw(&host)?, QueueUnderTest::Async)?,
            "b3" => bench_queue(scale, &noop()?, &raw(&host)?, QueueUnderTest::Process)?,
            "b8" => bench_b8(scale, &host)?,
            "sleepers" => bench_sleepers(scale, &host)?,
            "b4" => bench_b4(scale)?,
            "b5" => bench_b5(scale, &host)?,
            "b6" => bench_b6(scale, &host)?,
            "b7" => bench_b7(scale)?,
            other => bail!("no benchmark {other}"),
        };
        for verdict in &found {
            println!("   {verdict}");
        }
        println!("   ({} s)", fmt_f(started.elapsed().as_secs_f64(), 1));
        verdicts.extend(found);
    }
    println!();
    println!("total time {} s", fmt_f(total.elapsed().as_secs_f64(), 1));
    print_other_load("during the run", run_start, CpuSnapshot::take());
    Ok(verdicts)
}

// ---------------------------------------------------------------------------------------------
// The raw-wasmtime reference loop.

/// `task-error` of the WIT contract.
#[derive(ComponentType, Lift, Debug)]
#[component(variant)]
enum RawTaskError {
    #[component(name = "failed")]
    Failed(String),
    #[component(name = "permanent")]
    Permanent(String),
    #[component(name = "invalid-input")]
    InvalidInput(String),
}

impl RawTaskError {
    fn describe(&self) -> String {
        match self {
            Self::Failed(m) => format!("failed: {m}"),
            Self::Permanent(m) => format!("permanent: {m}"),
            Self::InvalidInput(m) => format!("invalid-input: {m}"),
        }
    }
}

/// `level` of the WIT contract.
#[derive(ComponentType, Lift, Debug, Clone, Copy)]
#[allow(dead_code, reason = "constructed by `Lift` from guest values")]
#[component(enum)]
#[repr(u8)]
enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

type RawInvoke = TypedFunc<(String, String), (Result<String, RawTaskError>,)>;

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
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
struct Raw {
    engine: Engine,
    pre: InstancePre<RawState>,
    invoke: ComponentExportIndex,
}

impl Raw {
    fn new(pooling: bool, wasm: &Path) -> wasmtime::Result<Self> {
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
        let mut host = linker.instance("osiiso:task/host@0.1.0")?;
        host.func_wrap("log", |_store, (_level, message): (Level, String)| {
            black_box(message);
            Ok(())
        })?;
        host.func_wrap("progress", |_store, (done, total): (u64, u64)| {
            black_box((done, total));
            Ok(())
        })?;
        host.func_wrap("cancelled", |_store, (): ()| Ok((false,)))?;
        host.func_wrap("attempt", |_store, (): ()| Ok((1u32,)))?;
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
        result.map_err(|e| wasmtime::format_err!("guest error {}", e.describe()))
    }

    fn noop(&self) -> anyhow::Result<()> {
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
        AttemptOutcome::Succeeded(Value::Null) => Ok(()),
        other => bail!("engine noop ended with {other:?}"),
    }
}

/// Runs `f` until `budget` passes; returns how many calls fit.
fn calibrate(budget: Duration, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget || calls == 0 {
        f()?;
        calls += 1;
    }
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

fn timed(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// attempt: the engine's single-attempt path vs the raw loop, one thread.

fn bench_attempt(scale: Scale, task: &Task, raw: &Raw) -> anyhow::Result<Vec<Verdict>> {
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

// ---------------------------------------------------------------------------------------------
// B1: ThreadQueue with 2 workers vs the raw loop on 2 threads.

fn raw_two_threads(raw: &Raw, n: usize) -> anyhow::Result<Duration> {
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

/// Which queue B1–B3 drive.
#[derive(Clone, Copy)]
enum QueueUnderTest {
    Thread,
    Async,
    Process,
}

impl QueueUnderTest {
    fn label(self) -> (&'static str, &'static str, f64) {
        match self {
            Self::Thread => ("B1", "ThreadQueue", 0.85),
            Self::Async => ("B2", "AsyncQueue", 0.75),
            Self::Process => ("B3", "ProcessQueue", 0.5),
        }
    }
}

/// The runtime async queues bind in these benchmarks.
fn bench_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Submits `n` noop tasks with `map`, runs the queue; returns (submission, total) time.
fn queue_noops(
    task: &Task,
    n: usize,
    which: QueueUnderTest,
) -> anyhow::Result<(Duration, Duration)> {
    match which {
        QueueUnderTest::Thread => time_queue(
            ThreadQueue::builder().workers(Workers::Fixed(2)).build()?,
            task,
            n,
        ),
        QueueUnderTest::Async => time_queue(
            AsyncQueue::builder()
                .workers(Workers::Fixed(2))
                .runtime(bench_runtime().handle().clone())
                .build()?,
            task,
            n,
        ),
        QueueUnderTest::Process => time_queue(
            ProcessQueue::builder().workers(Workers::Fixed(2)).build()?,
            task,
            n,
        ),
    }
}

fn time_queue<K: Backend>(
    queue: Queue<K>,
    task: &Task,
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let group = queue.map(task, (0..n).map(|_| Value::Null), TaskOptions::new())?;
    let submitted = start.elapsed();
    let summary = queue.run()?;
    let total = start.elapsed();
    ensure!(
        summary.succeeded == n && group.len() == n,
        "queue run: {} of {n} succeeded ({} failed)",
        summary.succeeded,
        summary.failed
    );
    drop(group);
    drop(summary);
    drop(queue);
    Ok((submitted, total))
}

fn bench_queue(
    scale: Scale,
    task: &Task,
    raw: &Raw,
    which: QueueUnderTest,
) -> anyhow::Result<Vec<Verdict>> {
    let (bench, queue_name, target) = which.label();
    let rounds = scale.count(5, 1);
    let warm = scale.round(Duration::from_millis(200));
    let raw_rate = calibrate(warm, || raw.noop())?;
    queue_noops(task, scale.count(2_000, 10), which)?;
    let n =
        ((2.0 * raw_rate * scale.round(Duration::from_millis(400)).as_secs_f64()) as usize).max(20);
    println!("   {rounds} interleaved rounds of {n} noop tasks (fresh instance each)");
    let (mut raw_rates, mut queue_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let r = n as f64 / raw_two_threads(raw, n)?.as_secs_f64();
        let (submitted, total) = queue_noops(task, n, which)?;
        let q = n as f64 / total.as_secs_f64();
        println!(
            "   round {round}: raw 2 threads {}  queue {} (map {} + run {})  ratio {}",
            fmt_rate(r),
            fmt_rate(q),
            fmt_secs(submitted.as_secs_f64()),
            fmt_secs((total - submitted).as_secs_f64()),
            fmt_x(q / r)
        );
        raw_rates.push(r);
        queue_rates.push(q);
        ratios.push(q / r);
    }
    let (r, q) = (median(&mut raw_rates), median(&mut queue_rates));
    println!(
        "   median: raw wasmtime 2 threads {}, {queue_name} 2 workers {} (submission included)",
        fmt_rate(r),
        fmt_rate(q)
    );
    Ok(vec![Verdict::at_least(
        bench,
        &format!("{queue_name} / raw, median of round ratios"),
        median(&mut ratios),
        target,
        fmt_x,
    )])
}

// ---------------------------------------------------------------------------------------------
// B8: many concurrent sleeping tasks on AsyncQueue.

/// Peak resident set of this process (`VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `n` tasks that sleep 100 ms on an AsyncQueue with `n` workers; the whole time.
fn sleep_together(sleep: &Task, n: usize) -> anyhow::Result<Duration> {
    let queue = AsyncQueue::builder()
        .workers(Workers::Fixed(n))
        .runtime(bench_runtime().handle().clone())
        .build()?;
    let start = Instant::now();
    let group = queue.map(sleep, (0..n).map(|_| json!(100)), TaskOptions::new())?;
    let summary = queue.run()?;
    let elapsed = start.elapsed();
    ensure!(summary.succeeded == n, "sleepers: {summary}");
    drop(group);
    Ok(elapsed)
}

fn bench_b8(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
    let n = scale.count(10_000, 50);
    let sleep = host
        .load(osiiso_test_artifacts::SCENARIO_FLAKY)?
        .task("sleep")?;
    let elapsed = sleep_together(&sleep, n)?;
    let peak = peak_rss().unwrap_or(0) as f64;
    println!(
        "   {n} tasks sleeping 100 ms each, {n} workers: {} total; peak RSS of this process {:.0} MiB (includes earlier benchmarks when run together; run `-- b8` alone for B8)",
        fmt_secs(elapsed.as_secs_f64()),
        peak / (1 << 20) as f64
    );
    Ok(vec![Verdict::at_most(
        "B8",
        "peak RSS, MiB",
        peak / (1 << 20) as f64,
        1536.0,
        |v| format!("{v:.0}"),
    )])
}

// ---------------------------------------------------------------------------------------------
// The AsyncQueue figures of issue 4: many sleepers at once, and sleepers beside a spinner.

fn bench_sleepers(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
    let plugin = host.load(osiiso_test_artifacts::SCENARIO_FLAKY)?;
    let sleep = plugin.task("sleep")?;
    let n = scale.count(1_000, 20);
    let all_sleepers = sleep_together(&sleep, n)?;
    println!(
        "   {n} tasks sleeping 100 ms, {n} workers: {}",
        fmt_secs(all_sleepers.as_secs_f64())
    );

    // One runtime thread, so only the spinner's fuel yields let the sleepers run.
    let grind = host
        .load(osiiso_test_artifacts::HOSTILE_IGNORES_CANCEL)?
        .task("grind")?;
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sleepers = scale.count(100, 5);
    let (alone, beside) = single.block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(sleepers + 1))
            .build()?;
        let time_sleepers = |queue: &AsyncQueue| -> anyhow::Result<_> {
            let group = queue.map(&sleep, (0..sleepers).map(|_| json!(20)), TaskOptions::new())?;
            Ok(async move {
                let start = Instant::now();
                for handle in group.iter() {
                    ensure!(handle.clone().await.ok(), "a sleeper failed");
                }
                Ok::<_, anyhow::Error>(start.elapsed())
            })
        };
        queue.start()?;
        let alone = time_sleepers(&queue)?.await?;
        let spinner = queue.submit(grind.with_input(Value::Null), TaskOptions::new())?;
        let beside = time_sleepers(&queue)?.await?;
        ensure!(!spinner.is_done(), "the spinner stopped early");
        spinner.cancel();
        queue.run_async().await?;
        Ok::<_, anyhow::Error>((alone, beside))
    })?;
    println!(
        "   {sleepers} tasks sleeping 20 ms on a current-thread runtime: alone {}, beside a spinning guest {}",
        fmt_secs(alone.as_secs_f64()),
        fmt_secs(beside.as_secs_f64())
    );
    Ok(vec![
        Verdict::at_most(
            "ASYNC",
            "1,000 x 100 ms sleepers, 1,000 workers, seconds",
            all_sleepers.as_secs_f64(),
            2.0,
            |v| format!("{v:.2}"),
        ),
        Verdict::at_most(
            "ASYNC",
            "100 x 20 ms sleepers beside a spinner, seconds",
            beside.as_secs_f64(),
            0.5,
            |v| format!("{v:.2}"),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// B4: native no-op closures, pure queue overhead.

fn bench_b4(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let rounds = scale.count(3, 1);
    let n = scale.count(200_000, 1_000);
    println!(
        "   {rounds} rounds of {n} native no-op closures, Workers::Fixed(2), a new queue each"
    );
    let mut rates = Vec::new();
    for round in 1..=rounds {
        let queue = ThreadQueue::builder().workers(Workers::Fixed(2)).build()?;
        let start = Instant::now();
        for _ in 0..n {
            queue.submit_native(
                NativeTask::new("noop", || Ok::<_, TaskFailure>(())),
                TaskOptions::new(),
            )?;
        }
        let submitted = start.elapsed();
        let summary = queue.run()?;
        let total = start.elapsed();
        ensure!(
            summary.succeeded == n,
            "{} of {n} succeeded",
            summary.succeeded
        );
        let ran = total - submitted;
        let rate = n as f64 / total.as_secs_f64();
        println!(
            "   round {round}: submit {} ({}/task)  run {} ({})  end to end {}",
            fmt_secs(submitted.as_secs_f64()),
            fmt_secs(submitted.as_secs_f64() / n as f64),
            fmt_secs(ran.as_secs_f64()),
            fmt_rate(n as f64 / ran.as_secs_f64()),
            fmt_rate(rate)
        );
        rates.push(rate);
        let dropping = Instant::now();
        drop(summary);
        drop(queue);
        if round == 1 {
            println!(
                "   (dropping the summary and queue of {n} results: {})",
                fmt_secs(dropping.elapsed().as_secs_f64())
            );
        }
    }
    let rate = median(&mut rates);
    println!("   median end-to-end (submit + run): {}", fmt_rate(rate));
    Ok(vec![Verdict::at_least(
        "B4",
        "native no-ops/s, end to end (submit+run)",
        rate,
        300_000.0,
        fmt_rate,
    )])
}

// ---------------------------------------------------------------------------------------------
// B5: CPU-bound kernel in wasm (fuel on) vs native.

/// The `score` plugin's own source, compiled natively. (The `score` crate cannot be a
/// dependency: as a native `cdylib` it fails to link, its export names contain `:`.)
#[path = "../../plugins/score/src/lib.rs"]
#[allow(
    dead_code,
    clippy::manual_is_multiple_of,
    reason = "a plugin's source, as written"
)]
mod score;

fn wasm_score(task: &Task, n: u64) -> anyhow::Result<(u64, Duration, Option<u64>)> {
    let input = json!(n);
    let start = Instant::now();
    let report = task.run_attempt(AttemptRequest {
        input: &input,
        attempt: 1,
        control: AttemptControl::new(None),
        display_name: "score",
        progress: None,
    });
    let elapsed = start.elapsed();
    match report.outcome {
        AttemptOutcome::Succeeded(value) => {
            let value = value.as_u64().context("score returned a non-integer")?;
            Ok((value, elapsed, report.fuel_consumed))
        }
        other => bail!("wasm score({n}) ended with {other:?}"),
    }
}

fn bench_b5(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
    let fuel = 1_000_000_000_000u64;
    let task = host
        .load(osiiso_test_artifacts::SCORE)?
        .with_limits(Limits::new().fuel(fuel))
        .task("score")?;

    // Pick n so one native call takes about 0.4 s.
    let probe_n = scale.count(4_000_000, 10_000) as u64;
    let start = Instant::now();
    black_box(score::score_kernel(black_box(probe_n)));
    let per_iter = start.elapsed().as_secs_f64() / probe_n as f64;
    let n = if scale.full {
        (((0.4 / per_iter) / 1e6).round().max(2.0) * 1e6) as u64
    } else {
        2_000_000
    };
    let rounds = scale.count(5, 1);
    println!(
        "   score(n = {n}): {rounds} rounds, the plugin's kernel natively and in wasm (fuel budget \
         {fuel}), alternating which goes first"
    );
    let native_once = || {
        let start = Instant::now();
        let value = black_box(score::score_kernel(black_box(n)));
        (value, start.elapsed().as_secs_f64())
    };
    let (mut ratios, mut native_times, mut wasm_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut fuel_used = None;
    for round in 1..=rounds {
        let ((native, native_time), (wasm, wasm_time, consumed)) = if round % 2 == 1 {
            let native = native_once();
            (native, wasm_score(&task, n)?)
        } else {
            let wasm = wasm_score(&task, n)?;
            (native_once(), wasm)
        };
        let wasm_time = wasm_time.as_secs_f64();
        ensure!(
            native == wasm,
            "score({n}): native {native} but wasm {wasm}"
        );
        println!(
            "   round {round}: native {}  wasm {}  ratio {}  (both = {native})",
            fmt_secs(native_time),
            fmt_secs(wasm_time),
            fmt_x(wasm_time / native_time)
        );
        ratios.push(wasm_time / native_time);
        native_times.push(native_time);
        wasm_times.push(wasm_time);
        fuel_used = consumed;
    }
    if let Some(consumed) = fuel_used {
        println!(
            "   fuel consumed by one wasm call: {consumed} ({} per iteration)",
            fmt_f(consumed as f64 / n as f64, 1)
        );
    }
    let best = |times: &[f64]| times.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "   best: native {}  wasm {}  (best/best {})",
        fmt_secs(best(&native_times)),
        fmt_secs(best(&wasm_times)),
        fmt_x(best(&wasm_times) / best(&native_times))
    );

    Ok(vec![Verdict::at_most(
        "B5",
        &format!("wasm / native, score({n}), median"),
        median(&mut ratios),
        1.15,
        fmt_x,
    )])
}

// ---------------------------------------------------------------------------------------------
// B6: ProcessQueue scaling on CPU-bound work.

fn bench_b6(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
    let task = host.load(osiiso_test_artifacts::SCORE)?.task("score")?;
    // Each task takes about 25 ms natively; a round of 1 worker about 0.8 s.
    let n = scale.count(1_500_000, 10_000) as u64;
    let tasks = scale.count(32, 4);
    let rounds = scale.count(5, 1);
    let queues = [1, 2].map(|workers| {
        ProcessQueue::builder()
            .workers(Workers::Fixed(workers))
            .build()
    });
    let [one, two] = queues;
    let (one, two) = (one?, two?);
    let run = |queue: &ProcessQueue| -> anyhow::Result<Duration> {
        let start = Instant::now();
        let group = queue.map(&task, (0..tasks).map(|_| json!(n)), TaskOptions::new())?;
        let summary = queue.run()?;
        ensure!(summary.succeeded == tasks, "B6 run: {summary}");
        drop(group);
        Ok(start.elapsed())
    };
    // Workers persist across runs: spawn them (and load the plugin) before measuring.
    run(&one)?;
    run(&two)?;
    println!("   {rounds} interleaved rounds of {tasks} x score({n}), workers spawned beforehand");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let (t1, t2) = if round % 2 == 1 {
            let t1 = run(&one)?;
            (t1, run(&two)?)
        } else {
            let t2 = run(&two)?;
            (run(&one)?, t2)
        };
        let ratio = t1.as_secs_f64() / t2.as_secs_f64();
        println!(
            "   round {round}: 1 worker {}  2 workers {}  speed-up {}",
            fmt_secs(t1.as_secs_f64()),
            fmt_secs(t2.as_secs_f64()),
            fmt_x(ratio)
        );
        ratios.push(ratio);
    }
    Ok(vec![Verdict::at_least(
        "B6",
        "ProcessQueue 2 workers / 1 worker, median",
        median(&mut ratios),
        1.85,
        fmt_x,
    )])
}

// ---------------------------------------------------------------------------------------------
// B7: the whole `osiiso-host run` process, warm vs cold compile cache.

fn host_binary() -> anyhow::Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_osiiso-host"));
    ensure!(bin.exists(), "{} does not exist", bin.display());
    Ok(bin)
}

fn run_echo(bin: &Path, cache_dir: &Path) -> anyhow::Result<(Duration, String)> {
    let start = Instant::now();
    let output = Command::new(bin)
        .arg("run")
        .arg(osiiso_test_artifacts::ECHO)
        .args([
            "echo",
            "--input",
            "1",
            "--output",
            "jsonl",
            "-q",
            "--cache-dir",
        ])
        .arg(cache_dir)
        .env_remove("RUST_LOG")
        .env_remove("OSIISO_CACHE_DIR")
        .output()
        .context("spawning osiiso-host")?;
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    ensure!(
        output.status.success() && !stdout.is_empty(),
        "osiiso-host run failed ({}): stdout {stdout:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((elapsed, stdout))
}

fn bench_b7(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let bin = host_binary()?;
    let (cold_runs, warm_runs) = (scale.count(3, 1), scale.count(10, 2));
    println!(
        "   {} run {} echo --input 1 --output jsonl -q --cache-dir DIR",
        bin.display(),
        Path::new(osiiso_test_artifacts::ECHO)
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
    );
    let scratch = tempfile::tempdir()?;
    let warm_dir = scratch.path().join("warm");
    let mut cold = Vec::new();
    let mut first_output = String::new();
    for i in 0..cold_runs {
        // The first cold run fills the cache the warm runs use.
        let dir = if i == 0 {
            warm_dir.clone()
        } else {
            scratch.path().join(format!("cold-{i}"))
        };
        let (elapsed, stdout) = run_echo(&bin, &dir)?;
        if i == 0 {
            first_output = stdout;
        }
        cold.push(elapsed.as_secs_f64());
    }
    println!("   stdout: {first_output}");
    run_echo(&bin, &warm_dir)?; // page cache, not counted
    let mut warm = Vec::new();
    for _ in 0..warm_runs {
        warm.push(run_echo(&bin, &warm_dir)?.0.as_secs_f64());
    }
    println!(
        "   cold cache ({cold_runs} runs, fresh empty dir each): {}",
        list_ms(&cold)
    );
    println!("   warm cache ({warm_runs} runs): {}", list_ms(&warm));
    let (cold_median, warm_median) = (median(&mut cold), median(&mut warm));
    println!(
        "   median: cold {}  warm {}",
        fmt_secs(cold_median),
        fmt_secs(warm_median)
    );
    Ok(vec![
        Verdict::at_most(
            "B7",
            "warm-cache run, whole process",
            warm_median,
            0.020,
            fmt_secs,
        ),
        Verdict::at_least("B7", "cold / warm", cold_median / warm_median, 5.0, fmt_x),
    ])
}

// ---------------------------------------------------------------------------------------------
// Verdicts and formatting.

struct Verdict {
    bench: &'static str,
    what: String,
    shown: String,
    target: String,
    pass: bool,
}

impl Verdict {
    fn at_least(
        bench: &'static str,
        what: &str,
        value: f64,
        min: f64,
        fmt: fn(f64) -> String,
    ) -> Self {
        Self {
            bench,
            what: what.to_string(),
            shown: fmt(value),
            target: format!(">= {}", fmt(min)),
            pass: value >= min,
        }
    }

    fn at_most(
        bench: &'static str,
        what: &str,
        value: f64,
        max: f64,
        fmt: fn(f64) -> String,
    ) -> Self {
        Self {
            bench,
            what: what.to_string(),
            shown: fmt(value),
            target: format!("<= {}", fmt(max)),
            pass: value <= max,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<8} {:<42} {:>10}   target {:<11} {}",
            self.bench,
            self.what,
            self.shown,
            self.target,
            if self.pass { "PASS" } else { "MISS" }
        )
    }
}

fn print_summary(verdicts: &[Verdict], full: bool) {
    println!();
    println!(
        "== SUMMARY{}",
        if full {
            ""
        } else {
            " (smoke mode: meaningless)"
        }
    );
    for verdict in verdicts {
        println!("   {verdict}");
    }
    let missed = verdicts.iter().filter(|v| !v.pass).count();
    println!(
        "   {} of {} targets met",
        verdicts.len() - missed,
        verdicts.len()
    );
}

/// CPU time used by the whole machine and by this process (and its waited-for children),
/// from `/proc`, to tell whether other work skewed the figures of this 2-core machine.
#[derive(Clone, Copy)]
struct CpuSnapshot {
    at: Instant,
    machine_busy: f64,
    own: f64,
}

impl CpuSnapshot {
    /// Clock ticks per second of `/proc` (USER_HZ, 100 on Linux).
    const TICK: f64 = 100.0;

    fn take() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<f64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
        let total: f64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0.0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = own_stat.rsplit_once(')')?.1;
        let fields: Vec<f64> = after_name
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse().ok())
            .collect();
        Some(Self {
            at: Instant::now(),
            machine_busy: (total - idle) / Self::TICK,
            own: fields.iter().sum::<f64>() / Self::TICK,
        })
    }
}

/// Prints how much of the machine's CPU time other processes used between two snapshots.
fn print_other_load(when: &str, from: Option<CpuSnapshot>, to: Option<CpuSnapshot>) {
    let (Some(from), Some(to)) = (from, to) else {
        return;
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let wall = to.at.duration_since(from.at).as_secs_f64();
    let other = ((to.machine_busy - from.machine_busy) - (to.own - from.own)).max(0.0);
    let share = other / (wall * cpus);
    println!(
        "other processes used {:.0}% of the {cpus} CPUs {when}{}",
        share * 100.0,
        if share >= 0.10 {
            "  (WARNING: the machine is busy; figures are unreliable)"
        } else {
            ""
        }
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn fmt_f(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

fn fmt_x(ratio: f64) -> String {
    format!("{ratio:.3}x")
}

fn fmt_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M/s", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k/s", rate / 1e3)
    } else {
        format!("{rate:.1}/s")
    }
}

fn fmt_secs(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.3} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.2} µs", secs * 1e6)
    }
}

fn list_ms(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{:.1}", v * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
        + " ms"
}
