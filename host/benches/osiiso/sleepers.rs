//! Sleeping tasks on AsyncQueue: B8 (10,000 at once, peak RSS) and the `sleepers` figures.

use std::time::{Duration, Instant};

use anyhow::ensure;
use osiiso_host::queue::{TaskOptions, Workers};
use osiiso_host::{AsyncQueue, Host, Task};
use serde_json::{Value, json};

use crate::measure::fmt_secs;
use crate::queues::bench_runtime;
use crate::{Scale, Verdict};

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

pub(crate) fn bench_b8(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
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

pub(crate) fn bench_sleepers(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
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
