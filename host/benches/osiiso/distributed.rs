//! B9: trivial tasks through a NatsQueue on local `osiiso-host serve` nodes vs a ProcessQueue
//! with 2 workers, in one run: throughput, time per task and submit→result latency with 1,
//! 16 and 256 tasks outstanding; 1 node vs 2 nodes; and the CPU each process spent, which
//! says where the time goes.
//!
//! The server runs with its monitoring port: `/varz` gives the messages that passed through it
//! per attempt, `/connz` the messages each idle node sends per second.
//!
//! Needs a nats-server (`OSIISO_NATS_SERVER_215`, `OSIISO_NATS_SERVER`, else `nats-server`
//! on `PATH`); without one B9 is skipped.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{Queue, QueueBuilder, TaskOptions, Workers};
use osiiso_host::{NatsQueue, ProcessQueue, Task};
use parking_lot::Mutex;
use serde_json::Value;

use crate::measure::{fmt_f, fmt_rate, fmt_x, median};
use crate::{Scale, Verdict};

const BIN: &str = env!("CARGO_BIN_EXE_osiiso-host");

fn nats_server() -> Option<PathBuf> {
    for var in ["OSIISO_NATS_SERVER_215", "OSIISO_NATS_SERVER"] {
        if let Some(path) = std::env::var_os(var) {
            return Some(PathBuf::from(path));
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds a process has used so far (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum::<f64>()
        / 100.0
}

/// The body of `GET path` on the server's monitoring port, as JSON.
fn monitor(port: u16, path: &str) -> anyhow::Result<Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .context("no HTTP body")?;
    Ok(serde_json::from_str(body)?)
}

/// Messages into and out of the server so far (`/varz`).
fn server_messages(port: u16) -> anyhow::Result<(f64, f64)> {
    let varz = monitor(port, "/varz")?;
    let count = |field: &str| varz[field].as_f64().unwrap_or(0.0);
    Ok((count("in_msgs"), count("out_msgs")))
}

/// Messages each node's connection has sent to the server so far (`/connz`), by name.
fn node_messages(port: u16) -> anyhow::Result<HashMap<String, f64>> {
    let connz = monitor(port, "/connz?limit=1024")?;
    Ok(connz["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            name.contains("node")
                .then(|| (name.to_string(), c["in_msgs"].as_f64().unwrap_or(0.0)))
        })
        .collect())
}

/// What one measured run gave.
struct Run {
    rate: f64,
    per_task: Duration,
    p50: Duration,
    p99: Duration,
}

/// `n` noop tasks with at most `window` outstanding (a bounded queue: `submit` waits for
/// room), timing each from its submission to its result.
fn closed_loop<B: Backend>(
    builder: QueueBuilder<B>,
    task: &Task,
    n: usize,
    window: usize,
) -> anyhow::Result<Run> {
    let finished: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let record = finished.clone();
    let queue: Queue<B> = builder
        .size(window)
        .on_complete(move |result| {
            record.lock().insert(result.task_id.clone(), Instant::now());
        })
        .build()?;
    queue.start()?;
    let mut submitted = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let handle = queue.submit(task.with_input(Value::Null), TaskOptions::new())?;
        submitted.push((handle.task_id().to_string(), Instant::now()));
    }
    let summary = queue.run()?;
    let elapsed = start.elapsed();
    ensure!(
        summary.succeeded == n,
        "{} of {n} succeeded",
        summary.succeeded
    );
    let finished = finished.lock();
    let mut latencies: Vec<f64> = submitted
        .iter()
        .filter_map(|(id, at)| Some(finished.get(id)?.duration_since(*at).as_secs_f64()))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        Duration::from_secs_f64(latencies.get(i).copied().unwrap_or(0.0))
    };
    Ok(Run {
        rate: n as f64 / elapsed.as_secs_f64(),
        per_task: elapsed / n as u32,
        p50: pick(0.5),
        p99: pick(0.99),
    })
}

fn ms(d: Duration) -> String {
    fmt_f(d.as_secs_f64() * 1e3, 2)
}

fn show(label: &str, run: &Run) {
    println!(
        "   {label:<34} {:>10}  {:>7} µs/task  latency p50 {} ms  p99 {} ms",
        fmt_rate(run.rate),
        fmt_f(run.per_task.as_secs_f64() * 1e6, 0),
        ms(run.p50),
        ms(run.p99)
    );
}

pub(crate) fn bench_b9(scale: Scale, task: &Task) -> anyhow::Result<Vec<Verdict>> {
    let Some(server_bin) = nats_server() else {
        println!("   SKIPPED: no nats-server (set OSIISO_NATS_SERVER or put one on PATH)");
        return Ok(Vec::new());
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let monitor_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("nats://127.0.0.1:{port}");
    let store = tempfile::tempdir()?;
    let server = Killed(
        Command::new(&server_bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor_port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", server_bin.display()))?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osiiso-bench-cache");
    let node = || -> anyhow::Result<Killed> {
        Ok(Killed(
            Command::new(BIN)
                .args(["serve", "--nats", &url])
                .env("OSIISO_CACHE_DIR", &cache)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ))
    };
    let mut nodes = vec![node()?, node()?];
    let nats = |window: usize| {
        NatsQueue::builder()
            .nats(&url)
            .workers(Workers::Fixed(window))
    };
    let process = || ProcessQueue::builder().workers(Workers::Fixed(2));
    // Warm up: nodes up, plugin uploaded and compiled, workers spawned.
    std::thread::sleep(Duration::from_millis(1500));
    closed_loop(nats(16), task, scale.count(500, 20), 16)?;
    closed_loop(process(), task, scale.count(500, 20), 16)?;

    // Idle: what two nodes with nothing to do send to the broker.
    let idle = scale
        .round(Duration::from_secs(10))
        .max(Duration::from_secs(1));
    let before = node_messages(monitor_port)?;
    std::thread::sleep(idle);
    let after = node_messages(monitor_port)?;
    let rates: Vec<String> = after
        .iter()
        .map(|(name, n)| {
            let sent = n - before.get(name).copied().unwrap_or(0.0);
            fmt_f(sent / idle.as_secs_f64(), 2)
        })
        .collect();
    println!(
        "   idle nodes: messages sent per second each: {}",
        rates.join(", ")
    );

    let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
    let big = scale.count(20_000, 200);
    println!(
        "   2 nodes of {slots} slots (the default) vs ProcessQueue 2 workers; window = tasks outstanding"
    );
    let mut ratios = Vec::new();
    for (window, n) in [
        (1, scale.count(2_000, 20)),
        (16, scale.count(5_000, 50)),
        (256, big),
    ] {
        let p = closed_loop(process(), task, n, window)?;
        show(&format!("ProcessQueue, window {window}"), &p);
        let cpu_before: Vec<f64> = std::iter::once(server.0.id())
            .chain(nodes.iter().map(|n| n.0.id()))
            .map(cpu_seconds)
            .collect();
        let own_before = crate::measure::CpuSnapshot::take();
        let messages_before = server_messages(monitor_port)?;
        let q = closed_loop(nats(window), task, n, window)?;
        let messages_after = server_messages(monitor_port)?;
        let own_after = crate::measure::CpuSnapshot::take();
        show(&format!("NatsQueue 2 nodes, window {window}"), &q);
        println!(
            "   broker messages per attempt at window {window}: {} in, {} out",
            fmt_f((messages_after.0 - messages_before.0) / n as f64, 2),
            fmt_f((messages_after.1 - messages_before.1) / n as f64, 2)
        );
        if window == 256 {
            ratios.push(q.rate / p.rate);
            let spent: Vec<f64> = std::iter::once(server.0.id())
                .chain(nodes.iter().map(|n| n.0.id()))
                .map(cpu_seconds)
                .zip(&cpu_before)
                .map(|(after, before)| after - before)
                .collect();
            let own = match (own_before, own_after) {
                (Some(a), Some(b)) => b.own_seconds() - a.own_seconds(),
                _ => 0.0,
            };
            let per = |secs: f64| fmt_f(secs * 1e6 / n as f64, 0);
            println!(
                "   CPU per task at window 256: nats-server {} µs, nodes {} µs, submitter {} µs",
                per(spent[0]),
                per(spent[1..].iter().sum()),
                per(own)
            );
        }
    }
    // Scaling: the same window on one node.
    let two = closed_loop(nats(256), task, big, 256)?;
    drop(nodes.pop());
    std::thread::sleep(Duration::from_secs(4));
    let one = closed_loop(nats(256), task, big, 256)?;
    show("NatsQueue 2 nodes, window 256 (again)", &two);
    show("NatsQueue 1 node, window 256", &one);
    println!("   2 nodes / 1 node: {}", fmt_x(two.rate / one.rate));
    drop(nodes);
    drop(server);
    Ok(vec![Verdict::at_least(
        "B9",
        "NatsQueue 2 nodes / ProcessQueue 2 workers, window 256",
        median(&mut ratios),
        0.25,
        fmt_x,
    )])
}
