//! Worker threads: take ready tasks and run their attempt loops. Native blocking closures
//! run inline; a supervisor abandons one that overruns its deadline or is cancelled, and a
//! replacement worker carries the task on (SEMANTICS.md §10.1, §10.3).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::attempt::Step;

use super::core::{AttemptOutcomeOrAbandoned, Core, NativeRun, Take, WorkerSlot, panic_message};
use super::handle::{NativeFn, TaskCell};
use crate::engine::{AttemptControl, AttemptOutcome, AttemptReport};
use crate::failure::{FailureKind, TaskFailure};

/// What an executor may need from the worker running an attempt.
pub(crate) struct WorkerContext<'a> {
    pub(crate) core: &'a Arc<Core>,
    pub(crate) slot: &'a Arc<WorkerSlot>,
}

/// The body of a worker thread.
pub(crate) fn run(
    core: Arc<Core>,
    slot: Arc<WorkerSlot>,
    generation: u64,
    resume: Option<(Arc<TaskCell>, AttemptReport)>,
) {
    *slot.thread.lock() = Some(std::thread::current().id());
    let context = WorkerContext {
        core: &core,
        slot: &slot,
    };
    // Every worker thread runs the initializer, replacements included.
    let initialized = core.executor.init_worker();
    if let Err(message) = &initialized {
        tracing::error!(%message, "worker initializer failed; cancelling the queue");
        core.abort(false);
    }
    if let Some((cell, report)) = resume
        && run_task(&context, &cell, Some(report))
    {
        return core.worker_exited(&slot, false);
    }
    if initialized.is_err() {
        return core.worker_exited(&slot, true);
    }
    loop {
        match core.take(generation) {
            Take::Stop => return core.worker_exited(&slot, true),
            Take::Task(cell) => {
                if run_task(&context, &cell, None) {
                    // This thread was abandoned inside a native closure; a replacement took
                    // over its task and its place.
                    return core.worker_exited(&slot, false);
                }
            }
        }
    }
}

/// Drives a task's attempt loop on this worker thread (continuing after an abandoned native
/// attempt when `resumed` holds its report). Returns true if this thread was abandoned inside
/// a native closure and must exit.
fn run_task(
    worker: &WorkerContext<'_>,
    cell: &Arc<TaskCell>,
    resumed: Option<AttemptReport>,
) -> bool {
    let core = worker.core;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut step = match resumed {
            Some(report) => core.after_attempt(cell, report),
            None => core.begin_attempt(cell),
        };
        loop {
            step = match step {
                Step::Done => return false,
                Step::Sleep { until, then } => {
                    let cancelled = !sleep_until(cell, until);
                    core.after_sleep(cell, then, cancelled)
                }
                Step::Run { attempt, control } => {
                    match core.executor.run_attempt(worker, cell, attempt, &control) {
                        AttemptOutcomeOrAbandoned::Done(report) => core.after_attempt(cell, report),
                        AttemptOutcomeOrAbandoned::Abandoned => return true,
                    }
                }
            };
        }
    }));
    outcome.unwrap_or_else(|panic| {
        core.record_panic(cell, &*panic);
        false
    })
}

/// Sleeps until `until` unless the task is cancelled first. Returns false if cancelled.
fn sleep_until(cell: &TaskCell, until: Instant) -> bool {
    let mut st = cell.state.lock();
    loop {
        if cell.cancel_requested() {
            return false;
        }
        if Instant::now() >= until {
            return true;
        }
        cell.wake.wait_until(&mut st, until);
    }
}

/// Runs a native closure inline on this worker, registered with the supervisor so that a
/// cancellation or deadline abandons it within one `poll`.
pub(crate) fn run_native(
    worker: &WorkerContext<'_>,
    cell: &Arc<TaskCell>,
    control: &Arc<AttemptControl>,
    run: &NativeFn,
) -> AttemptOutcomeOrAbandoned {
    let claimed = Arc::new(AtomicBool::new(false));
    *worker.slot.native.lock() = Some(NativeRun {
        cell: cell.clone(),
        control: control.clone(),
        claimed: claimed.clone(),
    });
    ensure_supervisor(worker.core);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run()));
    worker.slot.native.lock().take();
    if claimed.swap(true, Ordering::AcqRel) {
        tracing::debug!(task = %cell.id, "abandoned native closure finished; its outcome is discarded");
        return AttemptOutcomeOrAbandoned::Abandoned;
    }
    let outcome = match outcome {
        Ok(Ok(value)) => AttemptOutcome::Succeeded(value),
        Ok(Err(failure)) => AttemptOutcome::Failed(failure),
        Err(panic) => {
            AttemptOutcome::Failed(TaskFailure::new(FailureKind::Panic, panic_message(&*panic)))
        }
    };
    AttemptOutcomeOrAbandoned::Done(AttemptReport {
        outcome,
        fuel_consumed: None,
        stdout: None,
        stderr: None,
    })
}

fn ensure_supervisor(core: &Arc<Core>) {
    let mut state = core.state.lock();
    if state.supervisor_running {
        return;
    }
    state.supervisor_running = true;
    let core = core.clone();
    let spawned = std::thread::Builder::new()
        .name("osiiso-supervisor".into())
        .spawn(move || supervise(core));
    if spawned.is_err() {
        state.supervisor_running = false;
        tracing::error!("cannot spawn the supervisor thread");
    }
}

/// Every `poll`, abandons native closures whose attempt was cancelled or timed out.
fn supervise(core: Arc<Core>) {
    let poll = core.config.poll;
    loop {
        std::thread::sleep(poll.min(Duration::from_millis(50)));
        let mut state = core.state.lock();
        let mut any = false;
        let slots = state.worker_slots.clone();
        for slot in slots {
            let mut native = slot.native.lock();
            let Some(run) = native.as_ref() else { continue };
            any = true;
            if !run.control.should_stop() || run.claimed.swap(true, Ordering::AcqRel) {
                continue;
            }
            let run = native.take().expect("checked above");
            drop(native);
            let outcome = if run.control.is_cancelled() {
                AttemptOutcome::Cancelled
            } else {
                let timeout = run.control.timeout().unwrap_or_default();
                AttemptOutcome::Failed(TaskFailure::timeout(&run.cell.name, timeout))
            };
            let report = AttemptReport {
                outcome,
                fuel_consumed: None,
                stdout: None,
                stderr: None,
            };
            // The stuck thread no longer counts as a worker, and is never joined.
            if let Some(id) = *slot.thread.lock() {
                state.worker_threads_detach(id);
            }
            state.live_workers_abandon(&slot);
            core.spawn_worker(&mut state, Some((run.cell, report)));
        }
        if !any || state.is_closed_flag() && state.worker_slots.is_empty() {
            state.supervisor_running = false;
            return;
        }
    }
}
