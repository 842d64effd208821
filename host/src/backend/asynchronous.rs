//! The async backend: workers are tokio tasks; a WASM attempt is an async, fuel-metered
//! instance that yields often, so thousands can be in flight on a few threads. An attempt is
//! stopped by dropping its future (cancel or deadline); the epoch check stops it too.
//! Native blocking closures go to the blocking pool (abandoned on timeout or cancel); native
//! async closures are awaited and dropped at their next `.await`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::engine::{AttemptControl, AttemptOutcome, AttemptReport, AttemptRequest};
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::{AttemptOutcomeOrAbandoned, Core, Step, Take, WorkerSlot};
use crate::queue::{Backend, Executor, TaskCell, Work, WorkerContext};

/// Runs attempts as futures.
pub(crate) trait AsyncExecutor: Send + Sync {
    fn run_attempt_async<'a>(
        &'a self,
        cell: &'a Arc<TaskCell>,
        attempt: u32,
        control: &'a Arc<AttemptControl>,
    ) -> BoxFuture<'a, AttemptReport>;
}

pub(crate) struct AsyncBackendExecutor;

impl Executor for AsyncBackendExecutor {
    fn backend(&self) -> Backend {
        Backend::Async
    }

    fn run_attempt(
        &self,
        _worker: &WorkerContext<'_>,
        _cell: &Arc<TaskCell>,
        _attempt: u32,
        _control: &Arc<AttemptControl>,
    ) -> AttemptOutcomeOrAbandoned {
        unreachable!("async queues drive attempts through run_attempt_async")
    }

    fn as_async(&self) -> Option<&dyn AsyncExecutor> {
        Some(self)
    }
}

impl AsyncExecutor for AsyncBackendExecutor {
    fn run_attempt_async<'a>(
        &'a self,
        cell: &'a Arc<TaskCell>,
        attempt: u32,
        control: &'a Arc<AttemptControl>,
    ) -> BoxFuture<'a, AttemptReport> {
        Box::pin(async move {
            let work = run_work(cell, attempt, control);
            let deadline = control.deadline();
            tokio::select! {
                biased;
                report = work => report,
                () = cell.cancelled() => report(AttemptOutcome::Cancelled),
                () = sleep_until(deadline) => report(AttemptOutcome::Failed(TaskFailure::timeout(
                    &cell.name,
                    control.timeout().unwrap_or_default(),
                ))),
            }
        })
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn report(outcome: AttemptOutcome) -> AttemptReport {
    AttemptReport {
        outcome,
        fuel_consumed: None,
        stdout: None,
        stderr: None,
    }
}

fn native_outcome(result: Result<serde_json::Value, TaskFailure>) -> AttemptReport {
    report(match result {
        Ok(value) => AttemptOutcome::Succeeded(value),
        Err(failure) => AttemptOutcome::Failed(failure),
    })
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> AttemptReport {
    report(AttemptOutcome::Failed(TaskFailure::new(
        FailureKind::Panic,
        crate::queue::panic_message(payload),
    )))
}

async fn run_work(
    cell: &Arc<TaskCell>,
    attempt: u32,
    control: &Arc<AttemptControl>,
) -> AttemptReport {
    match &cell.work {
        Work::Wasm { task, input } => {
            task.run_attempt_async(AttemptRequest {
                input,
                attempt,
                control: control.clone(),
                display_name: &cell.name,
                progress: None,
            })
            .await
        }
        Work::Native { run, .. } => {
            let run = run.clone();
            match tokio::task::spawn_blocking(move || run()).await {
                Ok(result) => native_outcome(result),
                Err(error) if error.is_panic() => panicked(&*error.into_panic()),
                Err(error) => report(AttemptOutcome::Failed(TaskFailure::new(
                    FailureKind::Panic,
                    format!("the blocking task did not finish: {error}"),
                ))),
            }
        }
        Work::Future { make, .. } => match AssertUnwindSafe(make()).catch_unwind().await {
            Ok(result) => native_outcome(result),
            Err(payload) => panicked(&*payload),
        },
    }
}

/// The body of an async worker: take ready tasks and drive their attempt loops. The watch is
/// made before the future is spawned, so a future tokio drops without ever polling it (the
/// runtime is gone, or shuts down first) is noticed as well.
pub(crate) async fn worker(mut watch: RuntimeWatch, generation: u64) {
    let core = watch.core.clone();
    let executor = core.executor.clone();
    if let Some(run) = executor.as_async() {
        loop {
            let notified = core.work_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match core.try_take(generation) {
                Some(Take::Stop) => break,
                Some(Take::Task(cell)) => {
                    watch.running = Some(cell.clone());
                    drive(&core, run, &cell).await;
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
    }
    watch.exited = true;
    core.worker_exited(&watch.slot, true);
}

/// Notices a worker future dropped before it exited: tokio drops the tasks of a runtime that
/// shuts down, and nothing of the queue may vanish silently with them (SEMANTICS.md §10.2).
pub(crate) struct RuntimeWatch {
    core: Arc<Core>,
    slot: Arc<WorkerSlot>,
    /// The task this worker is driving.
    running: Option<Arc<TaskCell>>,
    exited: bool,
}

impl RuntimeWatch {
    pub(crate) fn new(core: Arc<Core>, slot: Arc<WorkerSlot>) -> Self {
        Self {
            core,
            slot,
            running: None,
            exited: false,
        }
    }
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

/// Drives one task's attempt loop; a panic in it is recorded as a `Panic` failure.
async fn drive(core: &Arc<Core>, executor: &dyn AsyncExecutor, cell: &Arc<TaskCell>) {
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
                Step::Run { attempt, control } => {
                    let report = executor.run_attempt_async(cell, attempt, &control).await;
                    core.after_attempt(cell, report)
                }
            };
        }
    };
    if let Err(panic) = AssertUnwindSafe(attempts).catch_unwind().await {
        core.record_panic(cell, &*panic);
    }
}
