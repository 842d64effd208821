//! The project's benchmarks, printed as ratios measured within one run of one process (these
//! machines are noisy, so each comparison interleaves its two sides):
//!
//! | name | what | against | goal |
//! |---|---|---|---|
//! | B1 | a trivial task, a fresh instance each, `ThreadQueue` with 2 workers | a raw-wasmtime loop on 2 threads | ≥ 0.85× |
//! | B2 | the same on `AsyncQueue` | the raw loop | ≥ 0.75× |
//! | B3 | the same on `ProcessQueue` | the raw loop | ≥ 0.5× |
//! | B4 | native no-op closures through `ThreadQueue` (queue overhead only) | — | ≥ 300k tasks/s |
//! | B5, B5b | a CPU-bound kernel in wasm (B5b: one without `%`) | the same Rust compiled natively | ≤ 1.15× the time |
//! | B6 | `ProcessQueue` with 2 workers on CPU-bound tasks | 1 worker | ≥ 1.85× |
//! | B7 | `osiiso-host run` of a trivial plugin, warm compile cache, the whole process | a cold cache | ≤ 20 ms, ≥ 5× faster |
//! | B8 | 10,000 concurrent sleeping tasks on `AsyncQueue` | — | completes, peak RSS ≤ 1.5 GiB |
//! | B9 | 20,000 trivial tasks on `NatsQueue` with 2 local `serve` nodes | `ProcessQueue`, 2 workers | ≥ 0.25× at window 256 |
//! | B10 | the CLI on 50,000 trivial inputs, fresh and `--reuse` | osiiso 1.1.0 under Python 3.13 | see `cli.rs` |
//! | B11 | `osiiso-host run` of the 12 MB JS and 19 MB Python foreign guests, empty cache, to the first result; then warm throughput | `--compile-tier baseline` vs `optimized` | first result ≤ 3 s |
//!
//! ```text
//! cargo bench -p osiiso-host --bench osiiso              # everything
//! cargo bench -p osiiso-host --bench osiiso -- b1 b7     # a subset
//! ```
//!
//! Names: `attempt`, `b1` … `b11`, `sleepers`, `memory`. Without `--bench` on the command line (which
//! `cargo bench` always passes, and `cargo test --benches` does not) every benchmark runs once
//! with tiny sizes as a smoke test; its verdicts mean nothing.
//!
//! Modules: `raw` (the raw-wasmtime baselines and `attempt`), `queues` (B1–B4, B6), `kernel`
//! (B5, B5b), `distributed` (B9, NATS), `cli` (B7, B10 with `osiiso_bench.py`), `coldstart` (B11), `sleepers` (B8 and `sleepers`),
//! `memory` (peak RSS of long CLI runs), `measure` (timing, load and formatting helpers).

mod cli;
mod coldstart;
#[cfg(feature = "nats")]
mod distributed;
mod kernel;
mod measure;
mod memory;
mod queues;
mod raw;
mod sleepers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use osiiso_host::{Host, Task};

use measure::{CpuSnapshot, fmt_f, print_other_load};
use queues::QueueUnderTest;
use raw::Raw;

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
    (
        "b5",
        "CPU-bound kernels: wasm (without and with fuel) / native; `%` kernel (B5), no-`%` kernel (B5b)",
    ),
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
        "b9",
        "20,000 trivial tasks: NatsQueue on 2 local nodes vs ProcessQueue 2 workers; 1 vs 2 nodes",
    ),
    (
        "b10",
        "the CLI on 50,000 trivial inputs vs osiiso 1.1.0 (Python 3.13), fresh and --reuse",
    ),
    (
        "b11",
        "cold start of the JS and Python foreign guests (empty cache): --compile-tier optimized, baseline and tiered",
    ),
    (
        "sleepers",
        "AsyncQueue: 1,000 x 100 ms sleepers on 1,000 workers; 100 sleepers beside a spinning guest",
    ),
    (
        "memory",
        "peak RSS of the CLI at 100k and 1M tasks (finite jsonl/json, infinite stdin), bytes per task; 4 x 60 MB values",
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

/// The workspace's target directory (the parent of `CARGO_TARGET_TMPDIR`).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
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
            "attempt" => raw::bench_attempt(scale, &noop()?, &raw(&host)?)?,
            "b1" => queues::bench_queue(scale, &noop()?, &raw(&host)?, QueueUnderTest::Thread)?,
            "b2" => queues::bench_queue(scale, &noop()?, &raw(&host)?, QueueUnderTest::Async)?,
            "b3" => queues::bench_queue(scale, &noop()?, &raw(&host)?, QueueUnderTest::Process)?,
            "b8" => sleepers::bench_b8(scale, &host)?,
            "sleepers" => sleepers::bench_sleepers(scale, &host)?,
            "b4" => queues::bench_b4(scale)?,
            "b5" => kernel::bench_b5(scale, &host)?,
            "b6" => queues::bench_b6(scale, &host)?,
            "b7" => cli::bench_b7(scale)?,
            #[cfg(feature = "nats")]
            "b9" => distributed::bench_b9(scale, &noop()?)?,
            "b10" => cli::bench_b10(scale)?,
            "b11" => coldstart::bench_b11(scale)?,
            "memory" => memory::bench_memory(scale)?,
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
// Verdicts and the summary.

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
