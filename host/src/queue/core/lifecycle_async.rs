//! The lifecycle seen from async code (docs/queues.md §3.2, §10.2): `run`, `join` and
//! `shutdown` wait on the queue's async notifier instead of blocking a runtime thread, are
//! cancel-safe, and the queue notices when its runtime shuts down.

use std::sync::Arc;
use std::time::Instant;

use super::super::RunOptions;
use super::super::backend::Runner;
use super::super::driver::WorkerSlot;
use super::super::error::Error;
use super::super::handle::TaskCell;
use super::super::summary::RunSummary;
use super::recording::{CANCELLED, Record};
use super::{Core, Phase, State};
use crate::wait;

impl Core {
    /// Waits until `done` holds, or until `deadline`; false when the deadline came first.
    async fn wait_until_async(
        &self,
        deadline: Option<Instant>,
        done: impl Fn(&State) -> bool,
    ) -> bool {
        wait::notified_until(&self.changed_async, deadline, || {
            done(&self.state.lock()).then_some(())
        })
        .await
        .is_some()
    }

    /// `run()` for async code. If the future is dropped part-way, the workers keep running,
    /// the run's flags are cleared, the policy is restored and the summary cursor stays where
    /// it was.
    pub(crate) async fn run_async(&self, options: RunOptions) -> Result<RunSummary, Error> {
        let run = self.begin_run(&options)?;
        let guard = RunGuard { core: Some(self) };
        let timed_out = if run.finite {
            !self.wait_until_async(run.deadline, State::is_idle).await
        } else {
            !self
                .wait_until_async(run.deadline, |s| s.phase.is_closed())
                .await
        };
        if timed_out {
            self.run_timed_out();
            self.wait_until_async(None, State::is_idle).await;
        }
        if (run.finite || timed_out) && !self.state.lock().phase.is_closed() {
            self.stop_workers_async().await;
        }
        guard.disarm();
        self.end_run(self.state.lock(), &run, options.strict, timed_out)
    }

    /// `join()` for async code: start if needed, then wait until idle.
    pub(crate) async fn join_async(&self) -> Result<(), Error> {
        self.start_for_join()?;
        self.wait_until_async(None, State::is_idle).await;
        Ok(())
    }

    /// Graceful `shutdown()` for async code. Dropped while draining, the queue stays
    /// draining and a later shutdown completes it.
    pub(crate) async fn shutdown_async(&self) {
        if !self.begin_shutdown(&mut self.state.lock()) {
            return;
        }
        self.wait_until_async(None, State::is_idle).await;
        self.state.lock().begin_stopping();
        self.stop_workers_async().await;
        self.mark_closed(&mut self.state.lock());
        self.close_runner_async().await;
    }

    /// Releases what the backend holds without blocking a runtime thread: a blocking
    /// runner's close (reaping subprocesses) runs on the blocking pool.
    async fn close_runner_async(&self) {
        match &self.runner {
            Runner::Async(runner) => runner.close(),
            Runner::Blocking(runner) => {
                let runner = runner.clone();
                let _ = tokio::task::spawn_blocking(move || runner.close()).await;
            }
        }
    }

    /// Stops every worker and waits for them to exit, without blocking a thread.
    async fn stop_workers_async(&self) {
        {
            let mut state = self.state.lock();
            state.workers.generation += 1;
            self.wake_workers_all();
        }
        self.wait_until_async(None, |s| s.workers.live == 0).await;
        // Worker threads (a blocking runner's) have reported their exit: let them finish
        // unjoined rather than block this task on them.
        drop(self.state.lock().workers.take_threads());
    }

    /// The runtime dropped an async worker (it is shutting down): its task and every other
    /// outstanding one are recorded cancelled, and the queue closes for good; submissions get
    /// [`Closed::RuntimeGone`](super::super::Closed::RuntimeGone).
    pub(crate) fn runtime_gone(&self, slot: &Arc<WorkerSlot>, running: Option<Arc<TaskCell>>) {
        let outstanding = {
            let mut state = self.state.lock();
            let first = !matches!(state.phase, Phase::RuntimeLost | Phase::RuntimeGone);
            if first {
                // Not closed yet: waiters for "closed" must see every result recorded.
                state.phase = Phase::RuntimeLost;
            }
            first.then_some(state.outstanding)
        };
        if let Some(outstanding) = outstanding.filter(|n| *n > 0) {
            tracing::warn!(
                outstanding,
                "the runtime of an AsyncQueue shut down with work outstanding; recording it cancelled"
            );
        }
        self.abort(false);
        if let Some(cell) = running {
            self.record_final(&cell, Record::cancelled(CANCELLED, None));
        }
        // Closed for good once the last of its workers has recorded what it ran.
        self.state.lock().workers.generation += 1;
        self.worker_exited(slot, true);
    }
}

/// Undoes the flags of a `run_async()` whose future is dropped before it finishes.
struct RunGuard<'a> {
    core: Option<&'a Core>,
}

impl RunGuard<'_> {
    fn disarm(mut self) {
        self.core = None;
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Some(core) = self.core {
            let mut state = core.state.lock();
            Core::clear_run(&mut state);
            core.notify_changed();
        }
    }
}
