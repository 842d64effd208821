//! Timing, machine-load and formatting helpers shared by the benchmarks.

use std::time::{Duration, Instant};

/// Runs `f` until `budget` passes; returns how many calls fit.
pub(crate) fn calibrate(
    budget: Duration,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget || calls == 0 {
        f()?;
        calls += 1;
    }
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

pub(crate) fn timed(
    n: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed())
}

/// CPU time used by the whole machine and by this process (and its waited-for children),
/// from `/proc`, to tell whether other work skewed the figures of this 2-core machine.
#[derive(Clone, Copy)]
pub(crate) struct CpuSnapshot {
    at: Instant,
    machine_busy: f64,
    own: f64,
}

impl CpuSnapshot {
    /// Clock ticks per second of `/proc` (USER_HZ, 100 on Linux).
    const TICK: f64 = 100.0;

    pub(crate) fn take() -> Option<Self> {
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

impl CpuSnapshot {
    /// CPU seconds this process has used.
    #[cfg(feature = "nats")]
    pub(crate) fn own_seconds(&self) -> f64 {
        self.own
    }
}

/// Prints how much of the machine's CPU time other processes used between two snapshots.
pub(crate) fn print_other_load(when: &str, from: Option<CpuSnapshot>, to: Option<CpuSnapshot>) {
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

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

pub(crate) fn fmt_f(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}

pub(crate) fn fmt_x(ratio: f64) -> String {
    format!("{ratio:.3}x")
}

pub(crate) fn fmt_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M/s", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k/s", rate / 1e3)
    } else {
        format!("{rate:.1}/s")
    }
}

pub(crate) fn fmt_secs(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.3} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.2} µs", secs * 1e6)
    }
}

pub(crate) fn list_ms(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{:.1}", v * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
        + " ms"
}
