//! The queue core: the shared state of one queue and the rules of docs/queues.md §3–§7 over it,
//! one concern per module. Backends never see any of this; they only run attempts.
//!
//! - `state`: the phase, the ready queue, the scheduled set, the workers;
//! - `log`: what is kept of the recorded results (all, or counts);
//! - `admission`: validation, closed and full checks, placing a new task;
//! - `timers`: scheduled tasks falling due;
//! - `workers`: how many workers, what they take;
//! - `recording`: results, aborts, cancelling one task;
//! - `lifecycle`, `lifecycle_async`: start, run, join, shutdowns, cancel, reset;
//! - `watch`: what the metrics see of the queue, guest progress to the hook;
//! - `steps`: the attempt loop of docs/queues.md §5.2 as steps the drivers take.

mod admission;
mod lifecycle;
mod lifecycle_async;
mod log;
mod recording;
mod state;
mod steps;
mod timers;
mod watch;
mod workers;

use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::backend::Runner;
use super::builder::QueueConfig;
use super::handle::{Handle, LiveCount, TaskCell};
use super::rate::RateGate;
use super::result::TaskResult;
use super::turns::Turns;

pub(crate) use self::admission::Admission;
pub(crate) use self::recording::{CANCELLED, Record};
pub(crate) use self::state::{Phase, State};
pub(crate) use self::steps::Step;
pub(crate) use self::workers::Take;

/// The shared core of one queue.
pub(crate) struct Core {
    pub(crate) config: QueueConfig,
    pub(crate) state: Mutex<State>,
    /// Thread workers wait here for ready tasks.
    pub(crate) work_ready: Condvar,
    /// Async workers wait here for ready tasks.
    pub(crate) work_notify: tokio::sync::Notify,
    /// Async submitters wait here for room in a bounded queue.
    pub(crate) room_notify: tokio::sync::Notify,
    /// Waiters for idle, room, closed, timers.
    pub(crate) changed: Condvar,
    /// The same wake-ups for async waiters (`run_async`, `join_async`, `shutdown_async`).
    pub(crate) changed_async: tokio::sync::Notify,
    /// The tokio runtime async workers run on, once bound.
    pub(crate) runtime: Mutex<Option<tokio::runtime::Handle>>,
    pub(crate) self_ref: Weak<Core>,
    /// The backend's name, for results.
    pub(crate) backend: &'static str,
    /// How attempts run.
    pub(crate) runner: Runner,
    /// Counts this queue's tasks whose state is still in memory.
    pub(crate) live: LiveCount,
    /// The order tasks are handed to workers, for backends that hold several attempts per
    /// worker ([`Take::Task`]).
    pub(crate) hand_off: Arc<Turns>,
}

impl Core {
    pub(crate) fn new(config: QueueConfig, backend: &'static str, runner: Runner) -> Arc<Self> {
        let rate = config.rate.map(|r| RateGate::new(r, config.burst));
        let state = State::new(rate, config.retention);
        Arc::new_cyclic(|weak| Self {
            config,
            state: Mutex::new(state),
            work_ready: Condvar::new(),
            work_notify: tokio::sync::Notify::new(),
            room_notify: tokio::sync::Notify::new(),
            changed: Condvar::new(),
            changed_async: tokio::sync::Notify::new(),
            runtime: Mutex::new(None),
            self_ref: weak.clone(),
            backend,
            runner,
            live: LiveCount::default(),
            hand_off: Arc::default(),
        })
    }

    pub(crate) fn handle(&self, cell: &Arc<TaskCell>) -> Handle {
        Handle {
            cell: cell.clone(),
            core: self.self_ref.clone(),
        }
    }

    /// Reserves an attempt slot of the rate gate (§4.3); returns when it may start.
    pub(crate) fn reserve_rate(&self) -> Option<Instant> {
        let mut state = self.state.lock();
        state.rate.as_mut().map(|gate| gate.reserve(Instant::now()))
    }

    /// Whether the queue is halted (retries are suppressed for non-must-complete tasks).
    pub(crate) fn is_halted(&self) -> bool {
        self.state.lock().halted
    }

    pub(crate) fn stats(&self) -> super::Stats {
        let state = self.state.lock();
        super::Stats {
            pending: state.outstanding.saturating_sub(state.active.len()),
            active: state.active.len(),
            scheduled: state.scheduled.len(),
            completed: state.results.recorded(),
            workers: state.workers.live.div_ceil(self.config.threads_per_worker),
            closed: state.phase.is_closed(),
            live_tasks: self.live.get(),
            held_results: state.results.held(),
        }
    }

    pub(crate) fn results(&self) -> Vec<Arc<TaskResult>> {
        self.state.lock().results.all()
    }

    pub(crate) fn has_outstanding(&self) -> bool {
        self.state.lock().outstanding > 0
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().phase.is_closed()
    }
}
