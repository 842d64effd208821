//! B5 and B5b: CPU-bound kernels in wasm vs the same source compiled natively, side by side
//! without fuel metering (the CLI's default on the thread and process queues) and with it
//! (`--fuel`, the async queue). B5 is the `score` kernel (64-bit `%` by a constant); B5b the
//! `mix` kernel (no `%`: add, xor, shift and multiply only), to tell whether `%` is what makes
//! wasm slower.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use osiiso_host::{AttemptControl, AttemptOutcome, AttemptRequest, Host, Limits, Task};
use serde_json::json;

use wasmtime::OptLevel;

use crate::measure::{fmt_f, fmt_secs, fmt_x, median};
use crate::raw::Raw;
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
    // The CLI's default path on the thread and process queues: guest code without fuel
    // metering (`run --fuel N` compiles it in, as `host` does).
    let unmetered = Host::builder()
        .cache_dir(Path::new(env!("CARGO_TARGET_TMPDIR")).join("osiiso-bench-cache"))
        .fuel_metering(false)
        .build()
        .context("building the unmetered host")?;
    let mut verdicts = Vec::new();
    for kernel in &KERNELS {
        verdicts.extend(bench_kernel(scale, host, &unmetered, kernel)?);
    }
    Ok(verdicts)
}

fn bench_kernel(
    scale: Scale,
    metered: &Host,
    unmetered: &Host,
    kernel: &Kernel,
) -> anyhow::Result<Vec<Verdict>> {
    let fuel = 1_000_000_000_000u64;
    let name = kernel.task;
    let native_kernel = kernel.native;
    let fueled = metered
        .load(kernel.plugin)?
        .with_limits(Limits::new().fuel(fuel))
        .task(name)?;
    let plain = unmetered.load(kernel.plugin)?.task(name)?;

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
        "   {} {name}(n = {n}): {rounds} rounds of the plugin's kernel natively, in wasm without \
         fuel metering (the CLI's default on thread and process) and in wasm with fuel (budget \
         {fuel}; --fuel, and the async queue), rotating which goes first",
        kernel.bench
    );
    let native_once = || -> anyhow::Result<(u64, f64, Option<u64>)> {
        let start = Instant::now();
        let value = black_box(native_kernel(black_box(n)));
        Ok((value, start.elapsed().as_secs_f64(), None))
    };
    let wasm_once = |task: &Task| -> anyhow::Result<(u64, f64, Option<u64>)> {
        let (value, elapsed, consumed) = wasm_kernel(task, name, n)?;
        Ok((value, elapsed.as_secs_f64(), consumed))
    };
    // times[0] native, [1] wasm without fuel, [2] wasm with fuel.
    let mut times: [Vec<f64>; 3] = Default::default();
    let (mut plain_ratios, mut fuel_ratios) = (Vec::new(), Vec::new());
    let mut fuel_used = None;
    for round in 1..=rounds {
        let mut results = [(0, 0.0, None); 3];
        for k in 0..3 {
            let which = (k + round) % 3;
            results[which] = match which {
                0 => native_once()?,
                1 => wasm_once(&plain)?,
                _ => wasm_once(&fueled)?,
            };
        }
        let [
            (native, native_time, _),
            (wasm, plain_time, unmetered_fuel),
            (fueled_value, fuel_time, consumed),
        ] = results;
        ensure!(
            native == wasm && native == fueled_value,
            "{name}({n}): native {native} but wasm {wasm} (with fuel {fueled_value})"
        );
        ensure!(
            unmetered_fuel.is_none() && consumed.is_some(),
            "{name}: fuel_consumed {unmetered_fuel:?} without metering, {consumed:?} with"
        );
        println!(
            "   round {round}: native {}  wasm {} ({})  wasm with fuel {} ({})  (all = {native})",
            fmt_secs(native_time),
            fmt_secs(plain_time),
            fmt_x(plain_time / native_time),
            fmt_secs(fuel_time),
            fmt_x(fuel_time / native_time)
        );
        plain_ratios.push(plain_time / native_time);
        fuel_ratios.push(fuel_time / native_time);
        for (all, time) in times.iter_mut().zip([native_time, plain_time, fuel_time]) {
            all.push(time);
        }
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
        "   best: native {}  wasm {} ({})  wasm with fuel {} ({})",
        fmt_secs(best(&times[0])),
        fmt_secs(best(&times[1])),
        fmt_x(best(&times[1]) / best(&times[0])),
        fmt_secs(best(&times[2])),
        fmt_x(best(&times[2]) / best(&times[0]))
    );
    println!(
        "   median wasm with fuel / native: {} (what --fuel costs: {} of the wasm time)",
        fmt_x(median(&mut fuel_ratios.clone())),
        fmt_x(median(&mut fuel_ratios) / median(&mut plain_ratios.clone()))
    );

    code_settings(kernel, n, rounds)?;

    Ok(vec![Verdict::at_most(
        kernel.bench,
        &format!("wasm / native, {name}({n}), no fuel metering, median"),
        median(&mut plain_ratios),
        1.15,
        fmt_x,
    )])
}

/// What the code settings cost in the kernel's loop, on raw wasmtime (fresh instances, no
/// fuel): the host's settings (epoch checks, Cranelift's `speed`), without epoch checks (not
/// offered: deadlines and cancellation need them), and with Cranelift's `speed_and_size`;
/// rounds interleaved with the native kernel, medians of the ratios.
fn code_settings(kernel: &Kernel, n: u64, rounds: usize) -> anyhow::Result<()> {
    let variants: [(&str, bool, OptLevel); 3] = [
        ("epoch checks, speed (the host's)", true, OptLevel::Speed),
        ("no epoch checks", false, OptLevel::Speed),
        ("epoch checks, speed_and_size", true, OptLevel::SpeedAndSize),
    ];
    let plugin = Path::new(kernel.plugin);
    let raws = variants
        .iter()
        .map(|&(_, epochs, opt)| {
            let mut config = Raw::config(true);
            config
                .consume_fuel(false)
                .epoch_interruption(epochs)
                .cranelift_opt_level(opt);
            Raw::with_config(&config, false, plugin)
        })
        .collect::<wasmtime::Result<Vec<_>>>()
        .map_err(|e| anyhow::anyhow!("raw engines for {}: {e:#}", kernel.task))?;
    let input = n.to_string();
    let mut ratios = vec![Vec::new(); raws.len()];
    for _ in 0..rounds {
        let start = Instant::now();
        let native = black_box((kernel.native)(black_box(n)));
        let native_time = start.elapsed().as_secs_f64();
        for (raw, ratios) in raws.iter().zip(&mut ratios) {
            let start = Instant::now();
            let out = raw
                .call(kernel.task, &input)
                .map_err(|e| anyhow::anyhow!("raw {}: {e:#}", kernel.task))?;
            ratios.push(start.elapsed().as_secs_f64() / native_time);
            ensure!(
                out == native.to_string(),
                "raw {}({n}) returned {out}, native {native}",
                kernel.task
            );
        }
    }
    let line = variants
        .iter()
        .zip(&mut ratios)
        .map(|((label, ..), ratios)| format!("{label} {}", fmt_x(median(ratios))))
        .collect::<Vec<_>>()
        .join(", ");
    println!("   raw wasmtime, no fuel, wasm / native medians: {line}");
    Ok(())
}
