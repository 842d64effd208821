//! What an operator watches: Prometheus metrics and the status of a run or a node.
//!
//! A [`Metrics`] is a set of counters that queues fill as they work
//! ([`QueueBuilder::metrics`](crate::queue::QueueBuilder::metrics)) and that an embedder
//! serves or reads:
//!
//! - [`Metrics::encode`] writes them in the Prometheus text format, through the
//!   `prometheus-client` crate; `Metrics` is also a prometheus-client
//!   [`Collector`], so it can join an embedder's own [`Registry`];
//! - [`Metrics::status`] takes a [`Status`]: the counts, the throughput of the last minutes,
//!   the running attempts with their guest progress, the last failures;
//! - [`StatusServer`] serves them over HTTP: `/metrics`, `/healthz` and a status page at `/`.
//!
//! Recording costs a few relaxed atomic additions per task, with no lock and no allocation
//! (a failure also keeps a bounded copy of its message); gauges such as the queued and running
//! tasks are read from the queues only when someone looks.
//!
//! ```
//! use osiiso_host::metrics::Metrics;
//! use osiiso_host::queue::{NativeTask, TaskOptions};
//! use osiiso_host::ThreadQueue;
//!
//! let metrics = Metrics::new();
//! let queue = ThreadQueue::builder().metrics(&metrics).build()?;
//! queue.submit_native(NativeTask::new("one", || Ok::<_, osiiso_host::TaskFailure>(1)), TaskOptions::new())?;
//! queue.run()?;
//! let text = metrics.encode();
//! assert!(text.contains("osiiso_tasks_finished_total{status=\"succeeded\"} 1"));
//! assert_eq!(metrics.status(10).counts.succeeded, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Collector`]: prometheus_client::collector::Collector
//! [`Registry`]: prometheus_client::registry::Registry

mod encode;
mod histogram;
mod page;
mod server;
mod status;
mod throughput;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::registry::Registry;

pub use self::server::{
    CONNECTION_LIFETIME, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_REQUEST_HEAD, PAGE_RUNNING,
    StatusServer,
};
pub use self::status::{
    Counts, MAX_STATUS_MESSAGE, MAX_STATUS_NAME, RecentFailure, RunningAttempt, Status,
};
pub(crate) use self::status::{Gauges, Source};

use self::histogram::DurationHistogram;
use self::throughput::Throughput;
use crate::engine::Host;
use crate::failure::FailureKind;
use crate::queue::{TaskResult, TaskStatus};

/// The content type of [`Metrics::encode`]: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How many failures [`Status::failures`] keeps.
pub const RECENT_FAILURES: usize = 20;

/// How an attempt ended, as the metrics count it: a value, a cancellation, or a failure of
/// its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Cancelled,
    Failed(FailureKind),
}

impl Outcome {
    const COUNT: usize = 2 + FailureKind::ALL.len();

    fn index(self) -> usize {
        match self {
            Self::Succeeded => 0,
            Self::Cancelled => 1,
            Self::Failed(kind) => 2 + kind.index(),
        }
    }

    fn label(index: usize) -> &'static str {
        match index {
            0 => "succeeded",
            1 => "cancelled",
            i => FailureKind::ALL[i - 2].as_str(),
        }
    }

    pub(crate) fn of(outcome: &crate::AttemptOutcome) -> Self {
        match outcome {
            crate::AttemptOutcome::Succeeded(_) => Self::Succeeded,
            crate::AttemptOutcome::Cancelled => Self::Cancelled,
            crate::AttemptOutcome::Failed(failure) => Self::Failed(failure.kind),
        }
    }
}

/// Metrics of queues and nodes, and the status they make up. Cheap to clone: clones share
/// the same counters. See the [module documentation](self).
#[derive(Clone)]
pub struct Metrics {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("submitted", &self.shared.submitted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

struct Shared {
    created: Instant,
    submitted: AtomicU64,
    /// Results by `Outcome` index: succeeded, cancelled, failed by kind.
    finished: [AtomicU64; Outcome::COUNT],
    retries: AtomicU64,
    /// Attempts by `Outcome` index.
    attempts: [AtomicU64; Outcome::COUNT],
    attempt_duration: DurationHistogram,
    fuel: AtomicU64,
    /// When the current (or last) run began and ended.
    run: Mutex<(Option<Instant>, Option<Instant>)>,
    /// Finished tasks (or attempts, on a node) over time.
    throughput: Throughput,
    failures: Mutex<VecDeque<RecentFailure>>,
    sources: Mutex<Vec<Weak<dyn Source>>>,
    hosts: Mutex<Vec<Host>>,
    /// Marked draining by its owner (a CLI that received a signal, say).
    draining: AtomicBool,
    /// A node is watched: the throughput counts attempts (a node sees no task's end).
    per_attempt: AtomicBool,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                created: Instant::now(),
                submitted: AtomicU64::new(0),
                finished: std::array::from_fn(|_| AtomicU64::new(0)),
                retries: AtomicU64::new(0),
                attempts: std::array::from_fn(|_| AtomicU64::new(0)),
                attempt_duration: DurationHistogram::default(),
                fuel: AtomicU64::new(0),
                run: Mutex::new((None, None)),
                throughput: Throughput::new(0),
                failures: Mutex::new(VecDeque::with_capacity(RECENT_FAILURES)),
                sources: Mutex::new(Vec::new()),
                hosts: Mutex::new(Vec::new()),
                draining: AtomicBool::new(false),
                per_attempt: AtomicBool::new(false),
            }),
        }
    }

    /// The metrics in the Prometheus text format ([`CONTENT_TYPE`]), encoded by
    /// prometheus-client.
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::with_capacity(8 << 10);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }

    /// Watches `host` too: plugin loads and compile time, the memory its live instances
    /// hold.
    pub fn watch_host(&self, host: &Host) {
        self.shared.hosts.lock().push(host.clone());
    }

    /// Marks the watched process as draining (or not): [`Status::healthy`] turns false.
    pub fn set_draining(&self, draining: bool) {
        self.shared.draining.store(draining, Ordering::Relaxed);
    }

    /// Takes a sample of the throughput history now, as a status page's clock does every
    /// second (a scrape or [`status`](Self::status) takes one too).
    pub fn sample(&self) {
        self.shared.throughput.sample(self.finished_count());
    }

    /// Whether the watched queues and nodes are able to work: none draining, every node
    /// connected to its broker.
    pub fn healthy(&self) -> bool {
        let gauges = self.gauges();
        !gauges.draining && gauges.broker_connected != Some(false)
    }

    /// A snapshot for a status page, with at most `running` running attempts (the longest
    /// running first).
    pub fn status(&self, running: usize) -> Status {
        self.sample();
        let shared = &self.shared;
        let gauges = self.gauges();
        let mut attempts = Vec::new();
        let mut titles = Vec::new();
        for source in self.sources() {
            titles.push(source.title());
            source.running(running, &mut attempts);
        }
        attempts.sort_by_key(|a| std::cmp::Reverse(a.elapsed));
        attempts.truncate(running);
        let finished = self.finished_count();
        let per_attempt = shared.per_attempt.load(Ordering::Relaxed);
        // A node's results are its attempts'.
        let results = if per_attempt {
            &shared.attempts
        } else {
            &shared.finished
        };
        let counts = Counts {
            submitted: shared.submitted.load(Ordering::Relaxed),
            queued: gauges.queued,
            running: gauges.running,
            succeeded: results[Outcome::Succeeded.index()].load(Ordering::Relaxed),
            cancelled: results[Outcome::Cancelled.index()].load(Ordering::Relaxed),
            failed: results[2..].iter().map(|n| n.load(Ordering::Relaxed)).sum(),
            retries: shared.retries.load(Ordering::Relaxed),
            attempts: shared
                .attempts
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum(),
            slots: gauges.slots,
        };
        Status {
            title: if titles.is_empty() {
                "osiiso-host".to_string()
            } else {
                titles.join(", ")
            },
            healthy: !gauges.draining && gauges.broker_connected != Some(false),
            draining: gauges.draining,
            broker_connected: gauges.broker_connected,
            per_attempt,
            uptime: shared.created.elapsed(),
            counts,
            throughput: shared.throughput.series(120, finished),
            throughput_window: throughput::WINDOW,
            rate: shared.throughput.rate(finished),
            running: attempts,
            failures: shared.failures.lock().iter().rev().cloned().collect(),
            memory: self.memory(),
        }
    }

    /// What the throughput counts: results of tasks, or attempts when a node is watched.
    fn finished_count(&self) -> u64 {
        let counted = if self.shared.per_attempt.load(Ordering::Relaxed) {
            &self.shared.attempts
        } else {
            &self.shared.finished
        };
        counted.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    fn sources(&self) -> Vec<Arc<dyn Source>> {
        let mut sources = self.shared.sources.lock();
        sources.retain(|s| s.strong_count() > 0);
        sources.iter().filter_map(Weak::upgrade).collect()
    }

    fn gauges(&self) -> Gauges {
        let mut total = Gauges {
            draining: self.shared.draining.load(Ordering::Relaxed),
            ..Gauges::default()
        };
        for source in self.sources() {
            let gauges = source.gauges();
            total.queued += gauges.queued;
            total.running += gauges.running;
            total.slots += gauges.slots;
            total.draining |= gauges.draining;
            total.broker_reconnects += gauges.broker_reconnects;
            if let Some((found, seconds)) = gauges.plugin_fetches {
                let (sum, time) = total.plugin_fetches.get_or_insert(([0; 3], 0.0));
                for (sum, n) in sum.iter_mut().zip(found) {
                    *sum += n;
                }
                *time += seconds;
            }
            total.broker_connected = match (total.broker_connected, gauges.broker_connected) {
                (Some(a), Some(b)) => Some(a && b),
                (a, b) => a.or(b),
            };
        }
        total
    }

    fn memory(&self) -> Option<(usize, usize)> {
        let hosts = self.shared.hosts.lock();
        (!hosts.is_empty()).then(|| {
            hosts.iter().fold((0, 0), |(used, total), host| {
                (used + host.memory_in_use(), total + host.total_memory())
            })
        })
    }

    // Recording, by the queues and nodes that fill these metrics.

    /// Watches a queue.
    pub(crate) fn attach(&self, source: Weak<dyn Source>) {
        let mut sources = self.shared.sources.lock();
        sources.retain(|s| s.strong_count() > 0);
        sources.push(source);
    }

    /// Watches a node: the throughput counts its attempts.
    pub(crate) fn attach_node(&self, source: Weak<dyn Source>) {
        self.shared.per_attempt.store(true, Ordering::Relaxed);
        self.attach(source);
    }

    /// `n` tasks were admitted.
    pub(crate) fn tasks_submitted(&self, n: u64) {
        self.shared.submitted.fetch_add(n, Ordering::Relaxed);
    }

    /// An attempt ended.
    pub(crate) fn attempt_finished(&self, outcome: Outcome, duration: Duration, fuel: Option<u64>) {
        let shared = &self.shared;
        shared.attempts[outcome.index()].fetch_add(1, Ordering::Relaxed);
        shared.attempt_duration.observe(duration);
        if let Some(fuel) = fuel {
            shared.fuel.fetch_add(fuel, Ordering::Relaxed);
        }
    }

    /// A failed attempt will be retried.
    pub(crate) fn task_retried(&self) {
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A task's result was recorded.
    pub(crate) fn task_finished(&self, result: &TaskResult) {
        let outcome = match (result.status, &result.error) {
            (TaskStatus::Succeeded, _) => Outcome::Succeeded,
            (TaskStatus::Failed, Some(error)) => Outcome::Failed(error.kind),
            (TaskStatus::Failed, None) => Outcome::Failed(FailureKind::Failed),
            _ => Outcome::Cancelled,
        };
        self.shared.finished[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if let Outcome::Failed(kind) = outcome {
            let message = result.error.as_ref().map_or("", |e| e.message.as_str());
            self.failed(RecentFailure::new(
                &result.name,
                &result.task,
                kind,
                message,
            ));
        }
    }

    /// Keeps a failure for the status page (the last [`RECENT_FAILURES`]).
    pub(crate) fn failed(&self, failure: RecentFailure) {
        let mut failures = self.shared.failures.lock();
        if failures.len() == RECENT_FAILURES {
            failures.pop_front();
        }
        failures.push_back(failure);
    }

    /// A `run()` began.
    pub(crate) fn run_began(&self) {
        *self.shared.run.lock() = (Some(Instant::now()), None);
    }

    /// A `run()` ended.
    pub(crate) fn run_ended(&self) {
        self.shared.run.lock().1 = Some(Instant::now());
    }

    fn run_duration(&self) -> f64 {
        match *self.shared.run.lock() {
            (Some(start), Some(end)) => end.saturating_duration_since(start).as_secs_f64(),
            (Some(start), None) => start.elapsed().as_secs_f64(),
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests;
