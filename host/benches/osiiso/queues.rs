//! The queue benchmarks: a trivial WASM task through each queue vs the raw loop (B1–B3), pure
//! queue overhead with native closures (B4), and ProcessQueue scaling (B6).

use std::time::{Duration, Instant};

use anyhow::ensure;
use osiiso_host::metrics::Metrics;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{NativeTask, Queue, QueueBuilder, TaskOptions, Workers};
use osiiso_host::{AsyncQueue, Host, ProcessQueue, Task, TaskFailure, ThreadQueue};
use serde_json::{Value, json};

use crate::measure::{calibrate, fmt_rate, fmt_secs, fmt_x, median};
use crate::raw::{Raw, raw_two_threads};
use crate::{Scale, Verdict};

// ---------------------------------------------------------------------------------------------
// B1–B3: a trivial WASM task through a queue with 2 workers vs the raw loop on 2 threads.

/// Which queue B1–B3 drive.
#[derive(Clone, Copy)]
pub(crate) enum QueueUnderTest {
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
pub(crate) fn bench_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// With `OSIISO_BENCH_METRICS=1`, the queue fills a [`Metrics`] (what `run --http` does):
/// the per-task cost of the metrics is the difference with a run without it.
fn watched<K: Backend>(builder: QueueBuilder<K>) -> QueueBuilder<K> {
    static METRICS: std::sync::OnceLock<Option<Metrics>> = std::sync::OnceLock::new();
    let metrics = METRICS.get_or_init(|| {
        let on = std::env::var("OSIISO_BENCH_METRICS").is_ok_and(|v| v == "1");
        if on {
            println!("   (queues fill a Metrics: OSIISO_BENCH_METRICS=1)");
        }
        on.then(Metrics::new)
    });
    match metrics {
        Some(metrics) => builder.metrics(metrics),
        None => builder,
    }
}

/// Submits `n` noop tasks with `map`, runs the queue; returns (submission, total) time.
fn queue_noops(
    task: &Task,
    n: usize,
    which: QueueUnderTest,
) -> anyhow::Result<(Duration, Duration)> {
    match which {
        QueueUnderTest::Thread => time_queue(
            watched(ThreadQueue::builder().workers(Workers::Fixed(2))).build()?,
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

pub(crate) fn bench_queue(
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
// B4: native no-op closures, pure queue overhead.

pub(crate) fn bench_b4(scale: Scale) -> anyhow::Result<Vec<Verdict>> {
    let rounds = scale.count(3, 1);
    let n = scale.count(200_000, 1_000);
    println!(
        "   {rounds} rounds of {n} native no-op closures, Workers::Fixed(2), a new queue each"
    );
    let mut rates = Vec::new();
    for round in 1..=rounds {
        let queue = watched(ThreadQueue::builder().workers(Workers::Fixed(2))).build()?;
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
// B6: ProcessQueue scaling on CPU-bound work.

pub(crate) fn bench_b6(scale: Scale, host: &Host) -> anyhow::Result<Vec<Verdict>> {
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
