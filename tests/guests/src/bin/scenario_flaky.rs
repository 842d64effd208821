//! Deterministic outcomes for queue scenarios: fail until an attempt, sleep, spin politely.
use osiiso_guest::{TaskError, task};
use serde::Deserialize;

#[derive(Deserialize)]
struct Flaky {
    /// The attempt that succeeds (1 = first).
    succeed_on: u32,
    #[serde(default)]
    value: serde_json::Value,
}

/// Fails (retryable) until attempt `succeed_on`, then returns `value`.
#[task]
fn flaky(spec: Flaky) -> Result<serde_json::Value, TaskError> {
    let attempt = osiiso_guest::attempt();
    if attempt < spec.succeed_on {
        Err(TaskError::failed(format!("attempt {attempt} failed")))
    } else {
        Ok(spec.value)
    }
}

/// `flaky` with suggested options: 2 retries and a 30 s timeout per attempt.
#[task(retries = 2, timeout = "30s")]
fn suggests(spec: Flaky) -> Result<serde_json::Value, TaskError> {
    flaky(spec)
}

/// Fails permanently.
#[task]
fn permanent() -> Result<(), TaskError> {
    Err(TaskError::permanent("no retry can fix this"))
}

/// Returns its input; the trivial task of the benchmarks.
#[task]
fn noop(input: serde_json::Value) -> serde_json::Value {
    input
}

/// Busy-waits `ms` milliseconds of wall time, checking `cancelled()` as it goes.
#[task]
fn busy(ms: u64) -> Result<u64, TaskError> {
    let start = std::time::Instant::now();
    while start.elapsed().as_millis() < ms as u128 {
        if osiiso_guest::cancelled() {
            return Err(TaskError::failed("noticed cancellation"));
        }
    }
    Ok(ms)
}

/// Sleeps `ms` milliseconds through WASI clocks (an async host gives the thread to others).
#[task]
fn sleep(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[derive(Deserialize)]
struct Mark {
    tag: String,
    #[serde(default)]
    ms: u64,
}

/// Appends `tag` to `/marks/log` (a test's count of executions), then sleeps `ms`.
#[task]
fn mark(spec: Mark) -> Result<String, TaskError> {
    use std::io::Write as _;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/marks/log")
        .map_err(|e| TaskError::permanent(format!("cannot open /marks/log: {e}")))?;
    // One write per line: concurrent appends must not interleave.
    log.write_all(format!("{}\n", spec.tag).as_bytes())
        .map_err(|e| TaskError::failed(e.to_string()))?;
    std::thread::sleep(std::time::Duration::from_millis(spec.ms));
    Ok(spec.tag)
}

#[derive(Deserialize)]
struct Steps {
    steps: u64,
    /// Busy-wait between two steps.
    #[serde(default)]
    ms: u64,
    /// Progress reports made first, as fast as the guest can (a flood the host coalesces).
    #[serde(default)]
    flood: u64,
}

/// A long task that says how far it is: `progress(i, steps)` after each of `steps` steps of
/// `ms` milliseconds, after `flood` reports in a tight loop. Returns `steps`.
#[task]
fn steps(spec: Steps) -> Result<u64, TaskError> {
    for i in 0..spec.flood {
        osiiso_guest::progress(i, spec.flood);
    }
    for i in 1..=spec.steps {
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < u128::from(spec.ms) {
            if osiiso_guest::cancelled() {
                return Err(TaskError::failed("noticed cancellation"));
            }
        }
        osiiso_guest::progress(i, spec.steps);
    }
    Ok(spec.steps)
}

fn main() {}
