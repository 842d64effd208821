//! The vocabulary of one attempt, shared by the engine, the queue and every backend: the task
//! and input an attempt runs ([`TaskCall`]), the handle that stops it ([`AttemptControl`]),
//! and what it produced ([`AttemptOutcome`], [`AttemptReport`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine::Task;
use crate::failure::{CapturedOutput, TaskFailure};
use crate::json::Json;

/// A WASM task with its JSON input: what every queue submits (`task.with_input(json)`).
#[derive(Clone, Debug)]
pub struct TaskCall {
    task: Task,
    input: Value,
}

impl TaskCall {
    /// The task with this input.
    pub fn new(task: Task, input: Value) -> Self {
        Self { task, input }
    }

    /// The task.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The input.
    pub fn input(&self) -> &Value {
        &self.input
    }
}

/// Why an attempt must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The attempt (or its task, or the queue) was cancelled.
    Cancelled,
    /// The attempt's deadline passed.
    Deadline,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cancelled => f.write_str("attempt cancelled by the host"),
            Self::Deadline => f.write_str("attempt deadline passed"),
        }
    }
}

impl std::error::Error for StopReason {}

/// A poll for a cancellation that arrives from outside the process's memory (a worker
/// process reads its control channel this way, without a second thread).
pub(crate) type CancelWatch = Box<dyn Fn() -> bool + Send + Sync>;

/// The interruption handle of one attempt, shared between whoever runs it and whoever may
/// stop it. A runner must notice [`should_stop`](Self::should_stop) within about one `poll`
/// (the engine's epoch callback checks it every tick, so a guest stops even if it never calls
/// the host); async code can await [`stopped`](Self::stopped).
pub struct AttemptControl {
    cancelled: AtomicBool,
    /// What `deadline` counts from.
    origin: Instant,
    /// The deadline in nanoseconds after `origin`; `NO_DEADLINE` for none.
    deadline: AtomicU64,
    /// The limit a restarted clock keeps (the run's, when it was tighter than the timeout).
    cap: Option<Instant>,
    timeout: Option<Duration>,
    watch: Option<CancelWatch>,
    cancel_notify: tokio::sync::Notify,
}

impl std::fmt::Debug for AttemptControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptControl")
            .field("cancelled", &self.cancelled)
            .field("deadline", &self.deadline())
            .field("timeout", &self.timeout)
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

impl AttemptControl {
    /// A control whose deadline is `timeout` from now.
    pub fn new(timeout: Option<Duration>) -> Arc<Self> {
        Self::build(timeout, timeout, None)
    }

    /// A control for an attempt that has `left` of its `timeout` still to run (it started
    /// elsewhere, and crossed a process or machine boundary to get here).
    pub fn with_time_left(timeout: Option<Duration>, left: Option<Duration>) -> Arc<Self> {
        Self::build(timeout, left, None)
    }

    /// Like [`with_time_left`](Self::with_time_left), asking `watch` for a cancellation at
    /// every check.
    pub(crate) fn watched(
        timeout: Option<Duration>,
        left: Option<Duration>,
        watch: CancelWatch,
    ) -> Arc<Self> {
        Self::build(timeout, left, Some(watch))
    }

    fn build(
        timeout: Option<Duration>,
        left: Option<Duration>,
        watch: Option<CancelWatch>,
    ) -> Arc<Self> {
        let origin = Instant::now();
        let deadline = left.and_then(|t| origin.checked_add(t));
        // A `left` shorter than the timeout is another limit (the run's): it stays.
        let cap = match (timeout, left) {
            (Some(timeout), Some(left)) if left < timeout => deadline,
            (None, Some(_)) => deadline,
            _ => None,
        };
        Arc::new(Self {
            cancelled: AtomicBool::new(false),
            origin,
            deadline: AtomicU64::new(Self::encode(origin, deadline)),
            cap,
            timeout,
            watch,
            cancel_notify: tokio::sync::Notify::new(),
        })
    }

    const NO_DEADLINE: u64 = u64::MAX;

    fn encode(origin: Instant, deadline: Option<Instant>) -> u64 {
        deadline.map_or(Self::NO_DEADLINE, |d| {
            d.saturating_duration_since(origin)
                .as_nanos()
                .min(u128::from(Self::NO_DEADLINE - 1)) as u64
        })
    }

    /// The attempt waits somewhere before it begins (for a machine to take it): its timeout
    /// does not run until [`restart_clock`](Self::restart_clock) (docs/queues.md §7.1); a
    /// tighter limit it was given still holds.
    pub fn hold_clock(&self) {
        if self.timeout.is_none() {
            return;
        }
        self.deadline
            .store(Self::encode(self.origin, self.cap), Ordering::Release);
        self.cancel_notify.notify_waiters();
    }

    /// The attempt really begins now: it waited somewhere first (for a machine to take it),
    /// and its timeout counts from here (docs/queues.md §7.1), within any tighter limit it
    /// was given. Awaiting [`stopped`](Self::stopped) follows the change.
    pub fn restart_clock(&self) {
        let Some(timeout) = self.timeout else { return };
        let Some(restarted) = Instant::now().checked_add(timeout) else {
            return;
        };
        let deadline = self.cap.map_or(restarted, |cap| cap.min(restarted));
        self.deadline
            .store(Self::encode(self.origin, Some(deadline)), Ordering::Release);
        self.cancel_notify.notify_waiters();
    }

    /// Polls the watch, if any, and reports whether the attempt is cancelled.
    fn poll_cancelled(&self) -> bool {
        if let Some(watch) = &self.watch
            && !self.is_cancelled()
            && watch()
        {
            self.cancel();
        }
        self.is_cancelled()
    }

    /// Asks the attempt to stop; it is recorded as cancelled.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel_notify.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Whether the deadline has passed.
    pub fn deadline_passed(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// The per-attempt timeout this control enforces.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match self.deadline.load(Ordering::Acquire) {
            Self::NO_DEADLINE => None,
            nanos => Some(self.origin + Duration::from_nanos(nanos)),
        }
    }

    /// Why the attempt must stop now, if it must: a cancellation comes first.
    pub fn stop_reason(&self) -> Option<StopReason> {
        if self.poll_cancelled() {
            Some(StopReason::Cancelled)
        } else if self.deadline_passed() {
            Some(StopReason::Deadline)
        } else {
            None
        }
    }

    /// True once the attempt should stop for either reason.
    pub fn should_stop(&self) -> bool {
        self.stop_reason().is_some()
    }

    /// Resolves when the attempt must stop: at its cancellation or at its deadline (as it
    /// stands then: a [`restart_clock`](Self::restart_clock) moves it).
    pub async fn stopped(&self) -> StopReason {
        loop {
            // Registered before the checks, so a cancel or restart between them is seen.
            let changed = self.cancel_notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_cancelled() {
                return StopReason::Cancelled;
            }
            let deadline = self.deadline();
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut changed => {}
                () = expired => {
                    if self.is_cancelled() {
                        return StopReason::Cancelled;
                    }
                    if self.deadline() == deadline {
                        return StopReason::Deadline;
                    }
                }
            }
        }
    }

    /// The outcome of an attempt the host stopped: cancelled, or the task's timeout failure
    /// (docs/queues.md §5.2: a cancellation takes precedence over the deadline). Every
    /// backend classifies a stop with this one rule.
    pub fn stopped_outcome(&self, task_name: &str) -> AttemptOutcome {
        if self.is_cancelled() {
            AttemptOutcome::Cancelled
        } else {
            AttemptOutcome::Failed(TaskFailure::timeout(
                task_name,
                self.timeout.unwrap_or_default(),
            ))
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The task returned this JSON value (kept as its text).
    Succeeded(Json),
    /// The task failed.
    Failed(TaskFailure),
    /// The attempt was cancelled before it produced an outcome.
    Cancelled,
}

impl From<Result<Json, TaskFailure>> for AttemptOutcome {
    fn from(result: Result<Json, TaskFailure>) -> Self {
        match result {
            Ok(value) => Self::Succeeded(value),
            Err(failure) => Self::Failed(failure),
        }
    }
}

/// Everything one attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    /// The outcome.
    pub outcome: AttemptOutcome,
    /// Fuel the attempt consumed: `None` when the host does not meter fuel
    /// ([`HostBuilder::fuel_metering`](crate::HostBuilder::fuel_metering)) or nothing ran.
    pub fuel_consumed: Option<u64>,
    /// Captured stdout (tail).
    pub stdout: Option<CapturedOutput>,
    /// Captured stderr (tail).
    pub stderr: Option<CapturedOutput>,
}

impl AttemptReport {
    /// A report of `outcome` with no fuel figure and no captured output.
    pub fn new(outcome: AttemptOutcome) -> Self {
        Self {
            outcome,
            fuel_consumed: None,
            stdout: None,
            stderr: None,
        }
    }

    /// A report of a failure.
    pub fn failed(failure: TaskFailure) -> Self {
        Self::new(AttemptOutcome::Failed(failure))
    }

    /// This report with the fuel the attempt consumed.
    pub fn with_fuel(mut self, fuel_consumed: Option<u64>) -> Self {
        self.fuel_consumed = fuel_consumed;
        self
    }

    /// This report with the captured output.
    pub fn with_output(
        mut self,
        stdout: Option<CapturedOutput>,
        stderr: Option<CapturedOutput>,
    ) -> Self {
        self.stdout = stdout;
        self.stderr = stderr;
        self
    }
}

impl From<AttemptOutcome> for AttemptReport {
    fn from(outcome: AttemptOutcome) -> Self {
        Self::new(outcome)
    }
}

/// Callback for progress reports: `(done, total)`.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;
