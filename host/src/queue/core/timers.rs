//! Scheduled tasks (docs/queues.md §4.2): a task whose `delay` or `run_at` lies ahead waits in
//! the scheduled set, and enters the ready queue with its original priority and sequence
//! number once due. One timer thread per queue, alive while something is scheduled.

use std::sync::Arc;
use std::time::Instant;

use super::super::handle::TaskCell;
use super::super::options::Workers;
use super::{Core, State};

impl Core {
    /// Puts a task in the ready queue and wakes a worker for it.
    pub(crate) fn enqueue_ready(&self, state: &mut State, cell: Arc<TaskCell>) {
        state.ready.push(cell);
        self.wake_worker();
        if state.phase.is_started() && matches!(self.config.workers, Workers::Auto) {
            self.scale(state);
        }
    }

    /// Puts a task in the scheduled set until `at`.
    pub(crate) fn schedule(&self, state: &mut State, at: Instant, cell: Arc<TaskCell>) {
        state.scheduled.insert((at, cell.seq), cell);
        self.ensure_timer(state);
        self.notify_changed();
    }

    /// Moves every scheduled task that is due into the ready queue.
    pub(crate) fn promote_due(&self, state: &mut State) {
        let now = Instant::now();
        while let Some(entry) = state.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let cell = entry.remove();
            self.enqueue_ready(state, cell);
        }
    }

    fn ensure_timer(&self, state: &mut State) {
        if state.timer_running {
            return;
        }
        let Some(core) = self.self_ref.upgrade() else {
            return;
        };
        state.timer_running = true;
        let spawned = std::thread::Builder::new()
            .name("osiiso-timer".into())
            .spawn(move || core.timer_loop());
        if spawned.is_err() {
            state.timer_running = false;
            tracing::error!("cannot spawn the timer thread");
        }
    }

    /// Promotes due tasks, then sleeps until the next one is due (or the schedule changes).
    fn timer_loop(&self) {
        let mut state = self.state.lock();
        loop {
            self.promote_due(&mut state);
            match state.scheduled.keys().next().map(|k| k.0) {
                Some(next) if !state.phase.is_closed() => {
                    self.changed.wait_until(&mut state, next);
                }
                _ => {
                    state.timer_running = false;
                    return;
                }
            }
        }
    }
}
