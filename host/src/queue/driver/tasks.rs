//! Workers on tokio tasks (docs/queues.md §10.1, §10.2). A WASM attempt is the backend's
//! [`AsyncRunner`] future; a native async closure is awaited; a native blocking closure goes to
//! the blocking pool. Every attempt future is dropped once its control says stop, after a
//! grace that lets a runner report (with its fuel and output) first.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::super::backend::{AsyncRunner, Attempt, Runner};
use super::super::core::Step;
use super::super::core::{Core, State, Take};
use super::super::handle::TaskCell;
use super::super::work::Work;
use super::WorkerSlot;
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::failure::TaskFailure;

/// Starts a worker task on the bound runtime.
pub(super) fn spawn(core: &Arc<Core>, state: &mut State) -> bool {
    let Some(runtime) = core.runtime.lock().clone() else {
        tracing::error!("async queue started without a runtime");
        return false;
    };
    let generation = state.workers.generation;
    let slot = Arc::new(WorkerSlot::default());
    state.workers.add(slot.clone());
    // Made before the future is spawned, so that a future the runtime drops without ever
    // polling it is noticed too.
    let watch = RuntimeWatch {
        core: core.clone(),
        slot,
        running: None,
        exited: false,
    };
    runtime.spawn(worker(watch, generation));
    true
}

/// The body of an async worker: take ready tasks and drive their attempt loops.
async fn worker(mut watch: RuntimeWatch, generation: u64) {
    let core = watch.core.clone();
    let Runner::Async(runner) = &core.runner else {
        unreachable!("async workers serve async runners");
    };
    loop {
        let notified = core.work_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match core.try_take(generation) {
            Some(Take::Stop) => break,
            // Async runners take no turns: they never hold several attempts per worker.
            Some(Take::Task(cell, _turn)) => {
                watch.running = Some(cell.clone());
                drive(&core, &**runner, &cell).await;
                watch.running = None;
            }
            None => {
                let idle = tokio::time::timeout(core.config.retire_idle_after, notified).await;
                if idle.is_err() && core.may_retire() {
                    break;
                }
            }
        }
    }
    watch.exited = true;
    core.worker_exited(&watch.slot, true);
}

/// Drives one task's attempt loop; a panic in it is recorded as a `Panic` failure.
async fn drive(core: &Arc<Core>, runner: &dyn AsyncRunner, cell: &Arc<TaskCell>) {
    let attempts = async {
        let mut step = core.begin_attempt(cell);
        loop {
            step = match step {
                Step::Done => return,
                Step::Sleep { until, then } => {
                    let cancelled = tokio::select! {
                        () = tokio::time::sleep_until(until.into()) => false,
                        () = cell.cancelled() => true,
                    };
                    core.after_sleep(cell, then, cancelled)
                }
                Step::Run {
                    attempt,
                    control,
                    progress,
                } => {
                    let report =
                        run_attempt(core, runner, cell, attempt, &control, progress.as_ref()).await;
                    core.after_attempt(cell, report)
                }
            };
        }
    };
    if let Err(panic) = AssertUnwindSafe(attempts).catch_unwind().await {
        core.record_panic(cell, &*panic);
    }
}

/// One attempt, stopped when its control says so: native work at once, a runner's future
/// after a grace that lets it report first.
async fn run_attempt(
    core: &Core,
    runner: &dyn AsyncRunner,
    cell: &TaskCell,
    attempt: u32,
    control: &Arc<AttemptControl>,
    progress: Option<&ProgressFn>,
) -> AttemptReport {
    let stopped = |grace: Duration| async move {
        control.stopped().await;
        tokio::time::sleep(grace).await;
        control.stopped_outcome(&cell.name).into()
    };
    match &cell.work {
        Work::Wasm(call) => {
            let attempt = runner.run(Attempt::new(
                call,
                attempt,
                &cell.name,
                cell.options.priority,
                control,
                progress,
            ));
            let grace = core
                .config
                .poll
                .saturating_mul(2)
                .max(Duration::from_millis(100));
            tokio::select! {
                biased;
                report = attempt => report,
                report = stopped(grace) => report,
            }
        }
        Work::Native { run, .. } => {
            let run = run.clone();
            let blocking = async {
                match tokio::task::spawn_blocking(move || run()).await {
                    Ok(result) => AttemptOutcome::from(result).into(),
                    Err(error) if error.is_panic() => {
                        AttemptReport::failed(TaskFailure::from_panic(&*error.into_panic()))
                    }
                    Err(error) => AttemptReport::failed(TaskFailure::new(
                        crate::FailureKind::Panic,
                        format!("the blocking task did not finish: {error}"),
                    )),
                }
            };
            tokio::select! {
                biased;
                report = blocking => report,
                report = stopped(Duration::ZERO) => report,
            }
        }
        Work::Future { make, .. } => {
            let future = async {
                match AssertUnwindSafe(make()).catch_unwind().await {
                    Ok(result) => AttemptOutcome::from(result).into(),
                    Err(panic) => AttemptReport::failed(TaskFailure::from_panic(&*panic)),
                }
            };
            tokio::select! {
                biased;
                report = future => report,
                report = stopped(Duration::ZERO) => report,
            }
        }
    }
}

/// Notices a worker future dropped before it exited: tokio drops the tasks of a runtime that
/// shuts down, and nothing of the queue may vanish silently with them (docs/queues.md §10.2).
struct RuntimeWatch {
    core: Arc<Core>,
    slot: Arc<WorkerSlot>,
    /// The task this worker is driving.
    running: Option<Arc<TaskCell>>,
    exited: bool,
}

impl Drop for RuntimeWatch {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        let (core, slot, running) = (self.core.clone(), self.slot.clone(), self.running.take());
        // The drop may happen inside a `spawn` that holds the queue lock, and callbacks run
        // while recording: finish on a thread of its own.
        let spawned = std::thread::Builder::new()
            .name("osiiso-runtime-gone".into())
            .spawn(move || core.runtime_gone(&slot, running));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot record the tasks of a runtime that shut down");
        }
    }
}
