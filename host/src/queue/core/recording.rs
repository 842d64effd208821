//! Recording a result (docs/queues.md §6), aborts (§7.2) and cancelling one task (§8.2).

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::super::handle::TaskCell;
use super::super::options::FailPolicy;
use super::super::result::{TaskResult, TaskStatus};
use super::{Core, State};
use crate::failure::{CapturedOutput, TaskFailure};
use crate::json::Json;

/// Messages of docs/queues.md §9.1.
pub(crate) const CANCELLED: &str = "cancelled";
pub(crate) const CANCELLED_BEFORE: &str = "cancelled before execution";
pub(crate) const CANCELLED_SHUTDOWN: &str = "cancelled during shutdown";

/// Captured stdout and stderr of a task's final attempt.
pub(crate) type Output = Option<(Option<CapturedOutput>, Option<CapturedOutput>)>;

/// How a task ended, ready to be recorded.
pub(crate) struct Record {
    status: TaskStatus,
    value: Option<Json>,
    error: Option<TaskFailure>,
    message: Cow<'static, str>,
    output: Output,
}

impl Record {
    pub(crate) fn succeeded(value: Json, output: Output) -> Self {
        Self {
            status: TaskStatus::Succeeded,
            value: Some(value),
            error: None,
            message: Cow::Borrowed(""),
            output,
        }
    }

    pub(crate) fn failed(failure: TaskFailure, output: Output) -> Self {
        Self {
            status: TaskStatus::Failed,
            value: None,
            message: Cow::Owned(failure.message.clone()),
            error: Some(failure),
            output,
        }
    }

    /// A task restored from a checkpoint: succeeded without an attempt.
    pub(crate) fn restored(value: Option<Json>) -> Self {
        Self {
            status: TaskStatus::Succeeded,
            message: Cow::Borrowed(if value.is_some() {
                "restored from checkpoint"
            } else {
                "restored from checkpoint (value not retained)"
            }),
            value,
            error: None,
            output: None,
        }
    }

    pub(crate) fn cancelled(message: &'static str, output: Output) -> Self {
        Self {
            status: TaskStatus::Cancelled,
            value: None,
            error: None,
            message: Cow::Borrowed(message),
            output,
        }
    }
}

impl Core {
    /// Records a task that went through its attempt loop (it leaves the active set).
    pub(crate) fn record_final(&self, cell: &Arc<TaskCell>, record: Record) {
        {
            let mut state = self.state.lock();
            state.recording += 1;
            state.active.remove(&cell.seq);
        }
        self.record(cell, record);
    }

    /// §6, steps 1–7, for a caller that already counted this recording in
    /// `state.recording`.
    pub(crate) fn record(&self, cell: &Arc<TaskCell>, record: Record) {
        let result = Arc::new(self.result_of(cell, record));
        if !cell.complete(result.clone(), &self.self_ref) {
            let mut state = self.state.lock();
            state.recording -= 1;
            self.notify_if_idle(&state);
            return;
        }
        if let Some(metrics) = &self.config.metrics {
            metrics.task_finished(&result);
        }
        let fail_first = {
            let mut state = self.state.lock();
            state.results.push(&result);
            state.outstanding -= 1;
            let trigger = result.status == TaskStatus::Failed
                && self.effective_policy(&state) == FailPolicy::FailFirst
                && !state.halted;
            if trigger {
                state.halted = true;
            }
            // Wake bounded submitters only when someone can be waiting for room: a wake-up
            // per task costs the run() waiter a context switch on every completion.
            if self.config.size > 0 {
                self.room_notify.notify_waiters();
                self.notify_changed();
            }
            trigger
        };
        if fail_first {
            self.abort(true);
        }
        if let Some(on_complete) = &self.config.on_complete
            && std::panic::catch_unwind(AssertUnwindSafe(|| on_complete(&result))).is_err()
        {
            tracing::error!("callback on_complete panicked");
        }
        // Recorded and handed on: the value no longer counts as in flight against the host's
        // memory budget (whoever keeps the result keeps it on their own account).
        if let Some(value) = &result.value {
            value.release();
        }
        let mut state = self.state.lock();
        state.recording -= 1;
        self.notify_if_idle(&state);
    }

    pub(crate) fn result_of(&self, cell: &TaskCell, record: Record) -> TaskResult {
        let cell_state = cell.state.lock();
        let finished_at = Instant::now();
        let (stdout, stderr) = record.output.unwrap_or_default();
        TaskResult {
            task_id: cell.id.clone(),
            name: cell.name.clone(),
            task: cell.work.identity(),
            priority: cell.options.priority,
            must_complete: cell.options.must_complete,
            group_id: cell.options.group_id.clone(),
            detached: cell.options.detached,
            scheduled_for: cell.scheduled_for,
            created_at: cell.created_at,
            metadata: cell.options.metadata.clone(),
            status: record.status,
            value: record.value,
            error: record.error,
            attempts: cell_state.attempts,
            started_at: cell_state.started_at,
            finished_at,
            started_wall: cell_state.started_wall,
            finished_wall: SystemTime::now(),
            duration: cell_state
                .started_at
                .map(|s| finished_at.saturating_duration_since(s))
                .unwrap_or_default(),
            message: record.message.into_owned(),
            fuel_consumed: cell_state.fuel,
            stdout,
            stderr,
            backend: self.backend,
        }
    }

    pub(crate) fn effective_policy(&self, state: &State) -> FailPolicy {
        state
            .run
            .as_ref()
            .and_then(|run| run.policy)
            .unwrap_or(self.config.fail_policy)
    }

    /// Halts and cancels (§7.2): scheduled and queued tasks are recorded here, running ones
    /// are interrupted. The sparing form keeps `must_complete` tasks.
    pub(crate) fn abort(&self, sparing: bool) {
        let spared = |cell: &TaskCell| sparing && cell.options.must_complete;
        let mut to_record = Vec::new();
        {
            let mut state = self.state.lock();
            state.halted = true;
            let scheduled = std::mem::take(&mut state.scheduled);
            for (key, cell) in scheduled {
                if spared(&cell) {
                    state.scheduled.insert(key, cell);
                } else if !cell.is_done() {
                    to_record.push(cell);
                }
            }
            for cell in state.ready.drain_in_order() {
                if spared(&cell) {
                    state.ready.push(cell);
                } else {
                    to_record.push(cell);
                }
            }
            for cell in state.active.values() {
                if !spared(cell) {
                    cell.request_cancel();
                }
            }
            state.recording += to_record.len();
            self.notify_changed();
        }
        for cell in to_record {
            self.record(&cell, Record::cancelled(CANCELLED_BEFORE, None));
        }
    }

    /// `Handle::cancel()` (§8.2).
    pub(crate) fn cancel_task(&self, cell: &Arc<TaskCell>) -> bool {
        let mut state = self.state.lock();
        if cell.is_done() {
            return false;
        }
        if state.active.contains_key(&cell.seq) {
            drop(state);
            cell.request_cancel();
            return true;
        }
        let scheduled = cell
            .scheduled_for
            .is_some_and(|at| state.scheduled.remove(&(at, cell.seq)).is_some());
        // Queued: the entry is skipped lazily by the next pop.
        if !scheduled && !state.ready.remove(cell) {
            // Picked up while the queue was halted, and being recorded by that worker.
            return true;
        }
        state.recording += 1;
        drop(state);
        self.record(cell, Record::cancelled(CANCELLED_BEFORE, None));
        true
    }
}
