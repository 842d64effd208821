//! How many workers a queue has (docs/queues.md §4.4) and what they take from the ready queue
//! (§5.1). The bodies of the workers live in the driver.

use std::sync::Arc;

use super::super::driver::{self, Resume, WorkerSlot};
use super::super::handle::TaskCell;
use super::super::options::{Mode, Workers};
use super::super::turns::Turn;
use super::recording::{CANCELLED_SHUTDOWN, Record};
use super::{Core, Phase, State};

/// What a worker got from [`Core::try_take`].
pub(crate) enum Take {
    /// A task, with its place in the order tasks were handed out when the backend holds
    /// several attempts per worker (its runner sends them to a worker in that order).
    Task(Arc<TaskCell>, Option<Turn>),
    Stop,
}

impl Core {
    /// Worker threads wanted now: the workers times the attempts each holds
    /// ([`Backend::attempts_per_worker`](super::super::backend::Backend::attempts_per_worker)).
    fn worker_target(&self, state: &State) -> usize {
        let per_worker = self.config.threads_per_worker;
        match self.config.workers {
            Workers::Fixed(n) => n * per_worker,
            Workers::Auto => {
                let floor = usize::from(self.config.mode == Mode::Infinite);
                floor.max(
                    (self.config.auto_limit * per_worker)
                        .min(state.ready.live() + state.active.len()),
                )
            }
        }
    }

    /// Adds workers up to the target; none while the queue is halted, closed or unstarted.
    pub(crate) fn scale(&self, state: &mut State) {
        if state.halted || state.phase.is_closed() || !state.phase.is_started() {
            return;
        }
        let target = self.worker_target(state);
        while state.workers.live < target {
            if !self.spawn_worker(state, None) {
                break;
            }
        }
    }

    /// Starts one worker; `resume` continues a task whose native attempt was abandoned.
    /// False if none could be started.
    pub(crate) fn spawn_worker(&self, state: &mut State, resume: Option<Resume>) -> bool {
        match self.self_ref.upgrade() {
            Some(core) => driver::spawn(&core, state, resume),
            None => false,
        }
    }

    /// Called by a worker when it exits for good; `counted` is false for a worker that was
    /// abandoned (it no longer counted).
    pub(crate) fn worker_exited(&self, slot: &Arc<WorkerSlot>, counted: bool) {
        if counted && let super::super::backend::Runner::Blocking(runner) = &self.runner {
            runner.worker_stopped();
        }
        let mut state = self.state.lock();
        state.workers.remove(slot, counted);
        if state.workers.live == 0 {
            match state.phase {
                Phase::Closing => state.phase = Phase::Closed,
                Phase::RuntimeLost => state.phase = Phase::RuntimeGone,
                _ => {}
            }
        }
        self.notify_changed();
    }

    /// The next ready task for a worker of `generation`, `Stop`, or `None` when there is
    /// nothing to do yet. Tasks picked up while the queue is halted are recorded here (§5.1).
    pub(crate) fn try_take(&self, generation: u64) -> Option<Take> {
        loop {
            let cell = {
                let mut state = self.state.lock();
                // Closing: `cancel()` ran, nothing more can come; a replacement worker
                // started after it (for an abandoned closure) stops here too.
                if state.workers.generation != generation
                    || state.phase.is_closed()
                    || state.phase == Phase::Closing
                {
                    return Some(Take::Stop);
                }
                let cell = state.ready.pop()?;
                if !state.halted || cell.options.must_complete {
                    state.active.insert(cell.seq, cell.clone());
                    // Issued under the lock: the turns follow the order of hand-out.
                    let turn = (self.config.threads_per_worker > 1).then(|| self.hand_off.issue());
                    return Some(Take::Task(cell, turn));
                }
                state.recording += 1;
                cell
            };
            self.record(&cell, Record::cancelled(CANCELLED_SHUTDOWN, None));
        }
    }

    /// Whether an idle auto worker of an infinite queue may retire (§4.4): checked under
    /// the lock, so a ready task is never stranded.
    pub(crate) fn may_retire(&self) -> bool {
        if !(self.config.workers == Workers::Auto && self.config.mode == Mode::Infinite) {
            return false;
        }
        let state = self.state.lock();
        state.ready.live() == 0 && state.workers.live > self.worker_target(&state)
    }

    /// Blocks until [`try_take`](Self::try_take) has something for a thread worker.
    pub(crate) fn take(&self, generation: u64) -> Take {
        loop {
            if let Some(take) = self.try_take(generation) {
                return take;
            }
            let mut state = self.state.lock();
            if state.ready.live() > 0
                || state.workers.generation != generation
                || state.phase.is_closed()
                || state.phase == Phase::Closing
            {
                continue;
            }
            let timed_out = self
                .work_ready
                .wait_for(&mut state, self.config.retire_idle_after)
                .timed_out();
            drop(state);
            if timed_out && self.may_retire() {
                return Take::Stop;
            }
        }
    }

    /// Wakes one idle worker, thread or task.
    pub(crate) fn wake_worker(&self) {
        self.work_ready.notify_one();
        self.work_notify.notify_one();
    }

    /// Wakes every idle worker and bounded submitter.
    pub(crate) fn wake_workers_all(&self) {
        self.work_ready.notify_all();
        self.work_notify.notify_waiters();
        self.room_notify.notify_waiters();
    }
}
