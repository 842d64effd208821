//! B5 and B5b: CPU-bound kernels in wasm (fuel on) vs the same source compiled natively. B5
//! is the `score` kernel (64-bit `%` by a constant); B5b the `mix` kernel (no `%`: add, xor,
//! shift and multiply only), to tell whether `%` is what makes wasm slower.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use osiiso_host::{AttemptControl, AttemptOutcome, AttemptRequest, Host, Limits, Task};
use serde_json::json;

use crate::measure::{fmt_f, fmt_secs, fmt_x, median};
use crate::{Scale, Verdict};

/// The `score` plugin's own source, compiled natively. (The `score` crate cannot be a
/// dependency: as a native `cdylib` it fails to link, its export names contain `:`.)
#[path = "../../../plugins/score/src/lib.rs"]
#[allow(
    dead_code,
    clippy::manual_is_multiple_of,
    reason = "a plugin's source, as written"
)]
mod score;

/// The `mix` plugin's source, compiled natively the same way.
#[path = "../../../plugins/mix/src/lib.rs"]
#[allow(dead_code, reason = "a plugin's source, as written")]
mod mix;

/// One kernel: its plugin and task, and the native function of the same source.
struct Kernel {
    bench: &'static str,
    plugin: &'static str,
    task: &'static str,
    native: fn(u64) -> u64,
}

const KERNELS: [Kernel; 2] = [
    Kernel {
        bench: "B5",
        plugin: osiiso_test_artifacts::SCORE,
        task: "score",
        native: score::score_kernel,
    },
    Kernel {
        bench: "B5b",
        plugin: osiiso_test_artifacts::MIX,
        task: "mix",
        native: mix::mix_kernel,
    },
];

fn wasm_kernel(task: &Task, name: &str, n: u64) -> anyhow::Result<(u64, Duration, Option<u64>)> {
    let input = json!(n);
    let start = Instant::now();
    let report = task.run_attempt(AttemptRequest {
        input: &input,
        attempt: 1,
        control: AttemptControl::new(None),
        display_name: name,
        progress: None,
    });
    let elapsed = start.elapsed();
    match report.outcome {
        AttemptOutcome::Succeeded(value) => {
            let value = value
                .get::<u64>()
                .ok()
                .with_context(|| format!("{name} returned a non-integer"))?;
            Ok((value, elapsed, report.fuel_consumed))
        }
        other => bail!("wasm {name}({n}) ended with {other:?}"),
    }
}

pub(crate) fn bench_b5(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
    let mut verdicts = Vec::new();
    for kernel in &KERNELS {
        verdicts.push(bench_kernel(scale, host, kernel)?);
    }
    Ok(verdicts)
}

fn bench_kernel(scale: Scale, host: &Host, kernel: &Kernel) -> anyhow::Result<Verdict> {
    let fuel = 1_000_000_000_000u64;
    let name = kernel.task;
    let native_kernel = kernel.native;
    let task = host
        .load(kernel.plugin)?
        .with_limits(Limits::new().fuel(fuel))
        .task(name)?;

    // Pick n so one native call takes about 0.4 s.
    let probe_n = scale.count(4_000_000, 10_000) as u64;
    let start = Instant::now();
    black_box(native_kernel(black_box(probe_n)));
    let per_iter = start.elapsed().as_secs_f64() / probe_n as f64;
    let n = if scale.full {
        (((0.4 / per_iter) / 1e6).round().max(2.0) * 1e6) as u64
    } else {
        2_000_000
    };
    let rounds = scale.count(5, 1);
    println!(
        "   {} {name}(n = {n}): {rounds} rounds, the plugin's kernel natively and in wasm (fuel \
         budget {fuel}), alternating which goes first",
        kernel.bench
    );
    let native_once = || {
        let start = Instant::now();
        let value = black_box(native_kernel(black_box(n)));
        (value, start.elapsed().as_secs_f64())
    };
    let (mut ratios, mut native_times, mut wasm_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut fuel_used = None;
    for round in 1..=rounds {
        let ((native, native_time), (wasm, wasm_time, consumed)) = if round % 2 == 1 {
            let native = native_once();
            (native, wasm_kernel(&task, name, n)?)
        } else {
            let wasm = wasm_kernel(&task, name, n)?;
            (native_once(), wasm)
        };
        let wasm_time = wasm_time.as_secs_f64();
        ensure!(
            native == wasm,
            "{name}({n}): native {native} but wasm {wasm}"
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

    Ok(Verdict::at_most(
        kernel.bench,
        &format!("wasm / native, {name}({n}), median"),
        median(&mut ratios),
        1.15,
        fmt_x,
    ))
}
