//! The lifecycle of a queue seen from blocking callers (docs/queues.md §3.2): start, run, join,
//! the shutdowns, cancel and reset. `lifecycle_async` holds the same waits for async callers.

use std::time::Instant;

use parking_lot::MutexGuard;

use super::super::RunOptions;
use super::super::backend::Runner;
use super::super::error::{Closed, Error, ExecutionError, StateError};
use super::super::options::{Mode, OnExit};
use super::super::summary::RunSummary;
use super::state::ActiveRun;
use super::{Core, Phase, State};
use crate::wait;

/// A `run()` in progress.
pub(crate) struct RunPlan {
    pub(crate) started_at: Instant,
    /// When the run timeout expires.
    pub(crate) deadline: Option<Instant>,
    pub(crate) finite: bool,
}

impl Core {
    pub(crate) fn start(&self) -> Result<(), Error> {
        let mut state = self.state.lock();
        self.start_locked(&mut state)
    }

    pub(crate) fn start_locked(&self, state: &mut State) -> Result<(), Error> {
        if state.phase.is_closed() || matches!(state.phase, Phase::Closing | Phase::RuntimeLost) {
            return Err(Error::Closed(Closed::ShutDown));
        }
        if state.phase == Phase::Stopping {
            // The shutdown stopping the workers would not wait for new ones; the queue is
            // about to close, which an infinite run waits for.
            return Ok(());
        }
        if let Runner::Async(_) = &self.runner {
            self.bind_runtime(state)?;
        }
        state.halted = false;
        state.timed_out = false;
        if state.phase == Phase::Created {
            state.phase = Phase::Started;
        }
        self.promote_due(state);
        self.scale(state);
        Ok(())
    }

    /// Binds the runtime async workers run on (docs/queues.md §10.2): the backend's, the
    /// builder's or the caller's. Another runtime may take over only once nothing runs on
    /// the bound one.
    fn bind_runtime(&self, state: &State) -> Result<(), Error> {
        let Runner::Async(runner) = &self.runner else {
            return Ok(());
        };
        let wanted = runner
            .runtime()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let mut bound = self.runtime.lock();
        match (bound.as_ref(), wanted) {
            (None, None) => return Err(Error::State(StateError::NoRuntime)),
            (None, Some(wanted)) => *bound = Some(wanted),
            (Some(current), Some(wanted)) if current.id() != wanted.id() => {
                if state.workers.live > 0 || !state.active.is_empty() {
                    return Err(Error::State(StateError::RuntimeSwitch));
                }
                *bound = Some(wanted);
            }
            // The same runtime, or a call from outside any runtime: keep the bound one.
            _ => {}
        }
        Ok(())
    }

    /// `run()`, blocking the calling thread.
    pub(crate) fn run(&self, options: RunOptions) -> Result<RunSummary, Error> {
        let run = self.begin_run(&options)?;
        let mut state = self.state.lock();
        // A finite run waits until idle; an infinite one until a shutdown closes the queue.
        let timed_out = if run.finite {
            !self.wait_until(&mut state, run.deadline, State::is_idle)
        } else {
            !self.wait_until(&mut state, run.deadline, |s| s.phase.is_closed())
        };
        if timed_out {
            drop(state);
            self.run_timed_out();
            state = self.state.lock();
            self.wait_until(&mut state, None, State::is_idle);
        }
        if (run.finite || timed_out) && !state.phase.is_closed() {
            state = self.stop_workers(state);
        }
        self.end_run(state, &run, options.strict, timed_out)
    }

    /// Steps 1–3 of `run()`: refuse a second run, apply the policy, start.
    pub(crate) fn begin_run(&self, options: &RunOptions) -> Result<RunPlan, Error> {
        let started_at = Instant::now();
        let mut state = self.state.lock();
        if state.run.is_some() {
            return Err(Error::State(StateError::RunInProgress));
        }
        state.run = Some(ActiveRun {
            policy: options.fail_policy,
        });
        if let Err(error) = self.start_locked(&mut state) {
            state.run = None;
            return Err(error);
        }
        drop(state);
        if let Some(metrics) = &self.config.metrics {
            metrics.run_began();
        }
        let timeout = options.timeout.or(self.config.timeout);
        Ok(RunPlan {
            started_at,
            deadline: timeout.and_then(|t| started_at.checked_add(t)),
            finite: self.config.mode == Mode::Finite,
        })
    }

    /// The run timeout expired (§7.3): mark it and abort by `on_exit`.
    pub(crate) fn run_timed_out(&self) {
        self.state.lock().timed_out = true;
        self.abort(self.config.on_exit == OnExit::CompletePriority);
    }

    /// Steps 6–7 of `run()`: the summary from the cursor, the flags cleared, `strict`.
    pub(crate) fn end_run(
        &self,
        mut state: MutexGuard<'_, State>,
        run: &RunPlan,
        strict: bool,
        timed_out: bool,
    ) -> Result<RunSummary, Error> {
        let summary = Self::summary_locked(&mut state, run.started_at, timed_out);
        Self::clear_run(&mut state);
        drop(state);
        if let Some(metrics) = &self.config.metrics {
            metrics.run_ended();
        }
        if strict && summary.failed > 0 {
            return Err(Error::Execution(ExecutionError {
                results: summary.errors(),
            }));
        }
        Ok(summary)
    }

    /// What the end of a run, or the drop of a `run()` future, clears.
    pub(crate) fn clear_run(state: &mut State) {
        state.timed_out = false;
        state.halted = false;
        state.run = None;
    }

    /// The summary of what was recorded since the last one, without a run.
    pub(crate) fn take_summary(&self, started: Instant) -> RunSummary {
        Self::summary_locked(&mut self.state.lock(), started, false)
    }

    fn summary_locked(state: &mut State, run_start: Instant, timed_out: bool) -> RunSummary {
        state.results.cut_summary(run_start, timed_out)
    }

    /// `join()`: start if needed, wait until idle; workers and cursor stay.
    pub(crate) fn join(&self) -> Result<(), Error> {
        self.start_for_join()?;
        let mut state = self.state.lock();
        self.wait_until(&mut state, None, State::is_idle);
        Ok(())
    }

    /// The start of `join()`: a closed queue refuses, an unstarted one starts.
    pub(crate) fn start_for_join(&self) -> Result<(), Error> {
        let mut state = self.state.lock();
        if state.phase.is_closed() {
            return Err(Error::Closed(Closed::ShutDown));
        }
        if !state.phase.is_started() {
            self.start_locked(&mut state)?;
        }
        Ok(())
    }

    /// Graceful shutdown.
    pub(crate) fn shutdown(&self) {
        let mut state = self.state.lock();
        if !self.begin_shutdown(&mut state) {
            return;
        }
        self.wait_until(&mut state, None, State::is_idle);
        state.begin_stopping();
        state = self.stop_workers(state);
        self.finish_shutdown(state);
    }

    /// Steps 1–3 of a graceful shutdown; false if the queue is closed already.
    pub(crate) fn begin_shutdown(&self, state: &mut State) -> bool {
        if state.phase.is_closed() {
            self.notify_changed();
            return false;
        }
        if !state.phase.is_started() && state.outstanding > 0 {
            let _ = self.start_locked(state);
        }
        if state.phase.accepting() {
            state.phase = Phase::Draining;
        }
        self.notify_changed();
        self.room_notify.notify_waiters();
        true
    }

    /// The end of a graceful shutdown, once idle and without workers: closed.
    pub(crate) fn finish_shutdown(&self, mut state: MutexGuard<'_, State>) {
        self.mark_closed(&mut state);
        drop(state);
        self.runner.close();
    }

    /// The queue is closed: for good if its runtime is gone.
    pub(crate) fn mark_closed(&self, state: &mut State) {
        state.phase = match state.phase {
            Phase::RuntimeLost | Phase::RuntimeGone => Phase::RuntimeGone,
            _ => Phase::Closed,
        };
        self.notify_changed();
    }

    /// Forced shutdown: killing abort, stop workers, close.
    pub(crate) fn shutdown_force(&self) {
        self.cancel_all();
        let mut state = self.state.lock();
        self.wait_until(&mut state, None, State::is_idle);
        let state = self.stop_workers(state);
        self.finish_shutdown(state);
    }

    /// `cancel()`: stop accepting, killing abort; never blocks on running work.
    pub(crate) fn cancel_all(&self) {
        {
            let mut state = self.state.lock();
            if !state.phase.is_closed() && state.phase != Phase::RuntimeLost {
                state.phase = Phase::Closing;
            }
        }
        self.abort(false);
        let mut state = self.state.lock();
        // Closed once the workers have recorded their running tasks and exited.
        if state.phase == Phase::Closing && state.workers.live == 0 {
            state.phase = Phase::Closed;
        }
        state.workers.generation += 1;
        self.wake_workers_all();
        self.notify_changed();
    }

    /// Waits until a shutdown has completed and workers have exited.
    pub(crate) fn wait_closed(&self) {
        let mut state = self.state.lock();
        self.wait_until(&mut state, None, |s| {
            s.phase.is_closed() && s.workers.live == 0 && s.is_idle()
        });
    }

    /// `reset()` (§3.2).
    pub(crate) fn reset(&self) -> Result<(), Error> {
        {
            let state = self.state.lock();
            if state.run.is_some() {
                return Err(Error::State(StateError::ResetDuringRun));
            }
            if state.workers.live > 0 {
                return Err(Error::State(StateError::ResetWhileRunning));
            }
        }
        self.abort(false);
        let mut state = self.state.lock();
        self.wait_until(&mut state, None, State::is_idle);
        state.results.clear();
        state.outstanding = 0;
        state.phase = Phase::Created;
        state.halted = false;
        state.timed_out = false;
        state.seq = 0;
        drop(state);
        *self.runtime.lock() = None;
        self.runner.close();
        Ok(())
    }

    pub(crate) fn clear_results(&self) {
        self.state.lock().results.clear();
    }

    /// Blocks until `done` holds, or until `deadline`; false when the deadline came first.
    pub(crate) fn wait_until(
        &self,
        state: &mut MutexGuard<'_, State>,
        deadline: Option<Instant>,
        done: impl Fn(&State) -> bool,
    ) -> bool {
        wait::blocking_until(&self.changed, state, deadline, |s| done(s).then_some(())).is_some()
    }

    /// Stops every worker and waits for them: thread workers are joined, async ones report
    /// their exit.
    fn stop_workers(&self, mut state: MutexGuard<'_, State>) -> MutexGuard<'_, State> {
        state.workers.generation += 1;
        let threads = state.workers.take_threads();
        self.wake_workers_all();
        let me = std::thread::current().id();
        if threads.iter().all(|t| t.thread().id() != me) {
            self.wait_until(&mut state, None, |s| s.workers.live == 0);
        }
        drop(state);
        for thread in threads {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
        self.state.lock()
    }

    /// Wakes everyone waiting for a change of state, blocked or async.
    pub(crate) fn notify_changed(&self) {
        self.changed.notify_all();
        self.changed_async.notify_waiters();
    }

    /// Wakes the waiters for idleness (run, join, shutdown, wait_closed) once it is reached.
    pub(crate) fn notify_if_idle(&self, state: &State) {
        if state.is_idle() {
            self.notify_changed();
        }
    }
}
