//! Workers on OS threads (docs/queues.md §10.1, §10.3). A WASM attempt runs on the worker
//! thread through the backend's [`BlockingRunner`]. A native closure runs inline, registered
//! with a supervisor that abandons it on cancel or deadline within one `poll`: its thread
//! finishes on its own and its outcome is discarded, and a replacement worker carries the task
//! on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::super::backend::{Attempt, BlockingRunner, Runner};
use super::super::core::Step;
use super::super::core::{Core, State, Take};
use super::super::handle::TaskCell;
use super::super::turns::Turn;
use super::super::work::{NativeFn, Work};
use super::{Resume, WorkerSlot};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport};
use crate::failure::TaskFailure;

/// The native closure a worker is running.
pub(super) struct NativeRun {
    cell: Arc<TaskCell>,
    control: Arc<AttemptControl>,
    /// Set by whoever settles the attempt first: the closure returning, or the supervisor.
    claimed: Arc<AtomicBool>,
}

/// Starts a worker thread; `resume` continues a task whose native attempt was abandoned.
pub(super) fn spawn(core: &Arc<Core>, state: &mut State, resume: Option<Resume>) -> bool {
    let Runner::Blocking(runner) = &core.runner else {
        return false;
    };
    let runner = runner.clone();
    let generation = state.workers.generation;
    let slot = Arc::new(WorkerSlot::default());
    state.workers.add(slot.clone());
    let core = core.clone();
    let spawned = std::thread::Builder::new()
        .name("osiiso-worker".into())
        .spawn(move || {
            Worker {
                core: &core,
                slot: &slot,
                runner: &*runner,
            }
            .run(generation, resume)
        });
    match spawned {
        Ok(thread) => {
            // Workers that retired (infinite mode) have finished: forget them, so that an
            // endless run does not keep a handle per worker it ever started.
            state.workers.threads.retain(|t| !t.is_finished());
            state.workers.threads.push(thread);
            true
        }
        Err(error) => {
            state.workers.live -= 1;
            tracing::error!(%error, "cannot spawn a worker thread");
            false
        }
    }
}

struct Worker<'a> {
    core: &'a Arc<Core>,
    slot: &'a Arc<WorkerSlot>,
    runner: &'a dyn BlockingRunner,
}

impl Worker<'_> {
    /// The body of a worker thread.
    fn run(&self, generation: u64, resume: Option<Resume>) {
        let core = self.core;
        *self.slot.thread.lock() = Some(std::thread::current().id());
        // Every worker thread runs the initializer, replacements included (§10.3).
        let initialized = self.runner.worker_started();
        if let Err(message) = &initialized {
            tracing::error!(%message, "worker initializer failed; cancelling the queue");
            core.abort(false);
        }
        if let Some((cell, report)) = resume
            && self.run_task(&cell, Some(report), None)
        {
            return core.worker_exited(self.slot, false);
        }
        if initialized.is_err() {
            return core.worker_exited(self.slot, true);
        }
        loop {
            match core.take(generation) {
                Take::Stop => return core.worker_exited(self.slot, true),
                Take::Task(cell, turn) => {
                    if self.run_task(&cell, None, turn) {
                        // This thread was abandoned inside a native closure; a replacement
                        // took over its task and its place.
                        return core.worker_exited(self.slot, false);
                    }
                }
            }
        }
    }

    /// Drives a task's attempt loop (continuing after an abandoned native attempt when
    /// `resumed` holds its report). `turn`, the task's place in the order of hand-out, goes
    /// with its first attempt and passes after it. True if this thread was abandoned and
    /// must exit.
    fn run_task(
        &self,
        cell: &Arc<TaskCell>,
        resumed: Option<AttemptReport>,
        mut turn: Option<Turn>,
    ) -> bool {
        let core = self.core;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut step = match resumed {
                Some(report) => core.after_attempt(cell, report),
                None => core.begin_attempt(cell),
            };
            loop {
                step = match step {
                    Step::Done => return false,
                    Step::Sleep { until, then } => {
                        let cancelled = !cell.sleep_until(until);
                        core.after_sleep(cell, then, cancelled)
                    }
                    Step::Run {
                        attempt,
                        control,
                        progress,
                    } => {
                        let report = match &cell.work {
                            Work::Wasm(call) => self.runner.run(
                                Attempt::new(
                                    call,
                                    attempt,
                                    &cell.name,
                                    cell.options.priority,
                                    &control,
                                    progress.as_ref(),
                                )
                                .with_turn(turn.take()),
                            ),
                            Work::Native { run, .. } => {
                                match self.run_native(cell, &control, run) {
                                    Some(report) => report,
                                    None => return true,
                                }
                            }
                            Work::Future { .. } => unreachable!(
                                "native futures are admitted only by backends with an async runner"
                            ),
                        };
                        core.after_attempt(cell, report)
                    }
                };
            }
        }));
        outcome.unwrap_or_else(|panic| {
            core.record_panic(cell, &*panic);
            false
        })
    }

    /// Runs a native closure inline, registered with the supervisor; `None` if it was
    /// abandoned meanwhile.
    fn run_native(
        &self,
        cell: &Arc<TaskCell>,
        control: &Arc<AttemptControl>,
        run: &NativeFn,
    ) -> Option<AttemptReport> {
        let claimed = Arc::new(AtomicBool::new(false));
        *self.slot.native.lock() = Some(NativeRun {
            cell: cell.clone(),
            control: control.clone(),
            claimed: claimed.clone(),
        });
        ensure_supervisor(self.core);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run()));
        self.slot.native.lock().take();
        if claimed.swap(true, Ordering::AcqRel) {
            tracing::debug!(task = %cell.id, "abandoned native closure finished; its outcome is discarded");
            return None;
        }
        Some(match outcome {
            Ok(result) => AttemptOutcome::from(result).into(),
            Err(panic) => AttemptReport::failed(TaskFailure::from_panic(&*panic)),
        })
    }
}

fn ensure_supervisor(core: &Arc<Core>) {
    let mut state = core.state.lock();
    if state.workers.supervisor_running {
        return;
    }
    state.workers.supervisor_running = true;
    let core = core.clone();
    let spawned = std::thread::Builder::new()
        .name("osiiso-supervisor".into())
        .spawn(move || supervise(&core));
    if spawned.is_err() {
        state.workers.supervisor_running = false;
        tracing::error!("cannot spawn the supervisor thread");
    }
}

/// Every `poll`, abandons native closures whose attempt was cancelled or timed out.
fn supervise(core: &Arc<Core>) {
    let poll = core.config.poll.min(Duration::from_millis(50));
    loop {
        std::thread::sleep(poll);
        let mut state = core.state.lock();
        let mut any = false;
        for slot in state.workers.slots.clone() {
            let mut native = slot.native.lock();
            let Some(run) = native.as_ref() else { continue };
            any = true;
            if !run.control.should_stop() || run.claimed.swap(true, Ordering::AcqRel) {
                continue;
            }
            let Some(run) = native.take() else { continue };
            drop(native);
            let report = run.control.stopped_outcome(&run.cell.name).into();
            // The stuck thread no longer counts as a worker, and is never joined.
            if let Some(id) = *slot.thread.lock() {
                state.workers.threads.retain(|t| t.thread().id() != id);
            }
            state.workers.remove(&slot, true);
            core.spawn_worker(&mut state, Some((run.cell, report)));
        }
        if !any || state.phase.is_closed() && state.workers.slots.is_empty() {
            state.workers.supervisor_running = false;
            return;
        }
    }
}
