//! The lifecycle of an AsyncQueue seen from async code (SEMANTICS.md §3.2, §10.2): `run`,
//! `join` and `shutdown` wait on the queue's async notifier instead of blocking a runtime
//! thread, are cancel-safe, and the queue notices when its runtime shuts down.

use std::sync::Arc;
use std::time::Instant;

use super::{Core, State, WorkerSlot};
use crate::queue::handle::TaskCell;
use crate::queue::{Error, RunOptions, RunSummary};

impl Core {
    /// Waits until `done` holds, or until `deadline`; false when the deadline came first.
    async fn wait_for(&self, done: impl Fn(&State) -> bool, deadline: Option<Instant>) -> bool {
        loop {
            let changed = self.changed_async.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change in between still wakes this wait.
            changed.as_mut().enable();
            if done(&self.state.lock()) {
                return true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline.into(), changed)
                        .await
                        .is_err()
                    {
                        return done(&self.state.lock());
                    }
                }
                None => changed.await,
            }
        }
    }

    /// `run()` for async code. If the future is dropped part-way, the workers keep running,
    /// `running`, `halted` and `timed_out` are cleared, the policy is restored and the
    /// summary cursor stays where it was.
    pub(crate) async fn run_async(&self, options: RunOptions) -> Result<RunSummary, Error> {
        let run = self.begin_run(&options)?;
        let guard = RunGuard { core: Some(self) };
        let timed_out = if run.finite {
            !self.wait_for(Self::is_idle, run.deadline).await
        } else {
            !self.wait_for(|state| state.closed, run.deadline).await
        };
        if timed_out {
            self.run_timed_out();
            self.wait_for(Self::is_idle, None).await;
        }
        if (run.finite || timed_out) && !self.state.lock().closed {
            self.stop_workers_async().await;
        }
        guard.disarm();
        self.end_run(self.state.lock(), &run, options.strict, timed_out)
    }

    /// `join()` for async code: start if needed, then wait until idle.
    pub(crate) async fn join_async(&self) -> Result<(), Error> {
        self.start_for_join()?;
        self.wait_for(Self::is_idle, None).await;
        Ok(())
    }

    /// Graceful `shutdown()` for async code. Dropped while draining, the queue stays
    /// draining and a later shutdown completes it.
    pub(crate) async fn shutdown_async(&self) {
        if !self.begin_shutdown(&mut self.state.lock()) {
            return;
        }
        self.wait_for(Self::is_idle, None).await;
        self.state.lock().halted = true;
        self.stop_workers_async().await;
        self.finish_shutdown(self.state.lock());
    }

    /// Stops every async worker and waits for them to exit.
    async fn stop_workers_async(&self) {
        {
            let mut state = self.state.lock();
            state.generation += 1;
            self.wake_workers_all();
        }
        self.wait_for(|state| state.live_workers == 0, None).await;
    }

    /// The runtime dropped an async worker (it is shutting down): its task and every other
    /// outstanding one are recorded cancelled, and the queue closes for good; submissions get
    /// [`Error::RuntimeGone`].
    pub(crate) fn runtime_gone(&self, slot: &Arc<WorkerSlot>, running: Option<Arc<TaskCell>>) {
        let outstanding = {
            let mut state = self.state.lock();
            let first = !state.runtime_gone;
            state.runtime_gone = true;
            state.accepting = false;
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
            self.finish_cancelled(&cell, None);
        }
        {
            let mut state = self.state.lock();
            state.closed = true;
            state.generation += 1;
        }
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
            Core::clear_run_flags(&mut state);
            core.notify_changed();
        }
    }
}
