//! The attempt loop of docs/queues.md §5.2 as a step machine, so that a thread worker and an
//! async worker drive the very same rules: the driver only sleeps, runs an attempt, and
//! feeds the outcome back.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::super::handle::TaskCell;
use super::super::result::TaskStatus;
use super::super::work::Work;
use super::{CANCELLED, Core, Record};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::failure::TaskFailure;
use crate::metrics::Outcome;

/// What the driver must do next.
pub(crate) enum Step {
    /// Wait until `until` (a rate wait or a retry delay) unless the task is cancelled, then
    /// call [`Core::after_sleep`] with `then`.
    Sleep { until: Instant, then: AfterSleep },
    /// Run attempt number `attempt` under `control`, then call [`Core::after_attempt`].
    Run {
        attempt: u32,
        control: Arc<AttemptControl>,
        /// Where a WASM attempt reports its guest progress.
        progress: Option<ProgressFn>,
    },
    /// The task is recorded.
    Done,
}

/// Where a sleep leads.
#[derive(Clone, Copy)]
pub(crate) enum AfterSleep {
    /// The rate wait is over: start the attempt.
    StartAttempt,
    /// The retry delay is over: go back to the top of the loop.
    Retry,
}

impl Core {
    /// The top of the loop (step 1–2): cancellation, then the rate gate.
    pub(crate) fn begin_attempt(&self, cell: &Arc<TaskCell>) -> Step {
        if cell.cancel_requested() {
            return self.finish_cancelled(cell);
        }
        match self.reserve_rate() {
            Some(at) if at > Instant::now() => Step::Sleep {
                until: at,
                then: AfterSleep::StartAttempt,
            },
            _ => self.start_attempt(cell),
        }
    }

    /// After a sleep; `cancelled` says the wait ended because the task was cancelled.
    pub(crate) fn after_sleep(
        &self,
        cell: &Arc<TaskCell>,
        then: AfterSleep,
        cancelled: bool,
    ) -> Step {
        if cancelled || cell.cancel_requested() {
            return self.finish_cancelled(cell);
        }
        match then {
            AfterSleep::StartAttempt => self.start_attempt(cell),
            AfterSleep::Retry => self.begin_attempt(cell),
        }
    }

    /// Steps 3–4: count the attempt, arm its control, call `on_start`.
    fn start_attempt(&self, cell: &Arc<TaskCell>) -> Step {
        let control = AttemptControl::new(cell.options.timeout);
        let now = Instant::now();
        let attempt = {
            let mut st = cell.state.lock();
            st.attempts += 1;
            st.status = TaskStatus::Running;
            if st.started_at.is_none() {
                st.started_at = Some(now);
                st.started_wall = Some(SystemTime::now());
            }
            st.attempt_started = Some(now);
            st.control = Some(control.clone());
            st.attempts
        };
        // Only a WASM guest reports progress; a retry starts over.
        let progress = match &cell.work {
            Work::Wasm(_) => {
                if attempt > 1 {
                    cell.progress.reset();
                }
                Some(self.progress_fn(cell))
            }
            _ => None,
        };
        if cell.cancel_requested() {
            control.cancel();
        }
        if let Some(on_start) = &self.config.on_start {
            let handle = self.handle(cell);
            if std::panic::catch_unwind(AssertUnwindSafe(|| on_start(&handle))).is_err() {
                tracing::error!("callback on_start panicked");
            }
        }
        Step::Run {
            attempt,
            control,
            progress,
        }
    }

    /// Steps 6–8: record the outcome, or decide on a retry.
    pub(crate) fn after_attempt(&self, cell: &Arc<TaskCell>, report: AttemptReport) -> Step {
        let output = Some((report.stdout, report.stderr));
        let started = {
            let mut st = cell.state.lock();
            st.control = None;
            if let Some(fuel) = report.fuel_consumed {
                st.fuel = Some(st.fuel.unwrap_or(0).saturating_add(fuel));
            }
            st.attempt_started
        };
        self.flush_progress(cell);
        if let Some(metrics) = &self.config.metrics {
            let took = started.map(|at| at.elapsed()).unwrap_or_default();
            metrics.attempt_finished(Outcome::of(&report.outcome), took, report.fuel_consumed);
        }
        let failure = match report.outcome {
            AttemptOutcome::Succeeded(value) => {
                // The value counts against the host's memory budget from here until it is
                // recorded (docs/queues.md §9.3), wherever the attempt ran.
                if let Work::Wasm(call) = &cell.work {
                    value.charge(&call.task().plugin().host().memory_budget());
                }
                self.record_final(cell, Record::succeeded(value, output));
                return Step::Done;
            }
            AttemptOutcome::Cancelled => {
                self.record_final(cell, Record::cancelled(CANCELLED, output));
                return Step::Done;
            }
            AttemptOutcome::Failed(failure) => failure,
        };
        let attempts = cell.state.lock().attempts;
        let retry = failure.kind.is_retryable()
            && attempts <= cell.options.retries
            && !cell.cancel_requested()
            && (!self.is_halted() || cell.options.must_complete);
        if !retry {
            self.record_final(cell, Record::failed(failure, output));
            return Step::Done;
        }
        cell.state.lock().status = TaskStatus::Retrying;
        if let Some(metrics) = &self.config.metrics {
            metrics.task_retried();
        }
        if let Some(on_retry) = &self.config.on_retry {
            let handle = self.handle(cell);
            if std::panic::catch_unwind(AssertUnwindSafe(|| on_retry(&handle, &failure))).is_err() {
                tracing::error!("callback on_retry panicked");
            }
        }
        let pause = cell.options.retry_pause(attempts);
        if pause.is_zero() {
            return self.begin_attempt(cell);
        }
        Step::Sleep {
            // A pause beyond the clock's range: wait until cancelled.
            until: Instant::now().checked_add(pause).unwrap_or_else(far_future),
            then: AfterSleep::Retry,
        }
    }

    /// Records a task in its attempt loop as cancelled (a cancellation before an attempt,
    /// during a rate wait or a retry delay).
    fn finish_cancelled(&self, cell: &Arc<TaskCell>) -> Step {
        self.record_final(cell, Record::cancelled(CANCELLED, None));
        Step::Done
    }

    /// Records a panic of the engine's own per-task code as a `Panic` failure (§5.1).
    pub(crate) fn record_panic(&self, cell: &Arc<TaskCell>, payload: &(dyn std::any::Any + Send)) {
        self.record_final(cell, Record::failed(TaskFailure::from_panic(payload), None));
    }
}

/// About thirty years from now: a pause that never ends before a cancellation.
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(std::time::Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}
