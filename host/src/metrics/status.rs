//! The status of a run or a node at a glance: what a status page shows, as plain data. Every
//! piece of guest text in it is already bounded (and stripped of what acts on a terminal);
//! whoever renders it must still escape it for its medium (HTML, say).

use std::time::{Duration, SystemTime};

use crate::failure::FailureKind;
use crate::progress::Progress;
use crate::text;

/// The longest task name or identity kept in a [`Status`], in bytes.
pub const MAX_STATUS_NAME: usize = 160;
/// The longest failure message kept in a [`Status`], in bytes.
pub const MAX_STATUS_MESSAGE: usize = 600;

/// A snapshot of everything a status page shows. See [`Metrics::status`](super::Metrics::status).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// What is being watched: `run (thread queue)`, `node 1f0c…`.
    pub title: String,
    /// Able to work: not draining, and (for a node) connected to its broker.
    pub healthy: bool,
    /// Shutting down: no new work is taken.
    pub draining: bool,
    /// For a node: whether its broker connection is up.
    pub broker_connected: Option<bool>,
    /// A node is watched: the results and the throughput count attempts (a node sees no
    /// task's end), and nothing is submitted or queued there.
    pub per_attempt: bool,
    /// Since the metrics were created.
    pub uptime: Duration,
    /// The counters.
    pub counts: Counts,
    /// Tasks (or attempts, on a node) finished per second, in equal slices of the last
    /// [`throughput_window`](Self::throughput_window), oldest first.
    pub throughput: Vec<f64>,
    /// The span the throughput series covers.
    pub throughput_window: Duration,
    /// Finished per second over the last minute.
    pub rate: f64,
    /// The longest-running attempts, longest first (at most the limit asked for).
    pub running: Vec<RunningAttempt>,
    /// The most recent failures, newest first.
    pub failures: Vec<RecentFailure>,
    /// The memory budget in use (live instances, values in flight) and the budget, in bytes (when a host is
    /// watched).
    pub memory: Option<(usize, usize)>,
}

/// Counters of a [`Status`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Tasks admitted.
    pub submitted: u64,
    /// Outstanding and not in their attempt loop (ready or scheduled).
    pub queued: u64,
    /// Attempts running now (tasks in their attempt loop, on a queue; slots in use, on a
    /// node).
    pub running: u64,
    /// Results by status (attempts by outcome, on a node).
    pub succeeded: u64,
    /// Results by status (attempts by outcome, on a node).
    pub failed: u64,
    /// Results by status (attempts by outcome, on a node).
    pub cancelled: u64,
    /// Attempts retried.
    pub retries: u64,
    /// Attempts finished, of every outcome.
    pub attempts: u64,
    /// Worker slots: a queue's live workers, a node's slots.
    pub slots: u64,
}

impl Counts {
    /// Results of every status.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }
}

/// One attempt running now.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunningAttempt {
    /// The task's id (32 hex digits), or the attempt's id on a node.
    pub id: String,
    /// The task's name (bounded, control characters escaped).
    pub name: String,
    /// `<plugin>/<task>` (bounded, control characters escaped).
    pub task: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Since the attempt started.
    pub elapsed: Duration,
    /// What the guest last said about its progress.
    pub progress: Option<Progress>,
}

impl RunningAttempt {
    /// An entry with guest text bounded and escaped.
    pub(crate) fn new(
        id: &str,
        name: &str,
        task: &str,
        attempt: u32,
        elapsed: Duration,
        progress: Option<Progress>,
    ) -> Self {
        Self {
            id: text::for_display(id, 64),
            name: text::for_display(name, MAX_STATUS_NAME),
            task: text::for_display(task, MAX_STATUS_NAME),
            attempt,
            elapsed,
            progress,
        }
    }
}

/// A task that failed for good.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecentFailure {
    /// When it was recorded.
    pub at: SystemTime,
    /// The task's name (bounded, control characters escaped).
    pub name: String,
    /// `<plugin>/<task>` (bounded, control characters escaped).
    pub task: String,
    /// The kind of the failure.
    pub kind: FailureKind,
    /// Its message (bounded, control characters escaped).
    pub message: String,
}

impl RecentFailure {
    /// An entry with guest text bounded and escaped.
    pub(crate) fn new(name: &str, task: &str, kind: FailureKind, message: &str) -> Self {
        Self {
            at: SystemTime::now(),
            name: text::for_display(name, MAX_STATUS_NAME),
            task: text::for_display(task, MAX_STATUS_NAME),
            kind,
            message: text::for_display(message, MAX_STATUS_MESSAGE),
        }
    }
}

/// What a watched queue or node tells at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    /// Ready or scheduled, not in the attempt loop.
    pub(crate) queued: u64,
    /// Running attempts.
    pub(crate) running: u64,
    /// Live workers, or a node's slots.
    pub(crate) slots: u64,
    /// No new work is taken.
    pub(crate) draining: bool,
    /// A node's broker connection, if it has one.
    pub(crate) broker_connected: Option<bool>,
    /// Times a node's broker connection came back after a loss.
    pub(crate) broker_reconnects: u64,
    /// A node's plugins found in memory, on disk, from the broker, and the seconds spent
    /// fetching from the broker.
    pub(crate) plugin_fetches: Option<([u64; 3], f64)>,
}

/// Something the metrics watch: a queue or a node. Asked only at a scrape or a status page,
/// never on the hot path.
pub(crate) trait Source: Send + Sync {
    /// What it is, for the status page's title.
    fn title(&self) -> String;
    /// Its gauges now.
    fn gauges(&self) -> Gauges;
    /// Up to `limit` of its running attempts, longest first, appended to `out`.
    fn running(&self, limit: usize, out: &mut Vec<RunningAttempt>);
}
