//! The driver: the bodies of a queue's workers. A worker takes ready tasks and drives each
//! one's attempt loop (the step machine of `core/steps.rs`), asking the backend's runner to run
//! each WASM attempt and running the embedder's native closures itself.
//!
//! - `blocking`: workers are OS threads (a [`BlockingRunner`](super::BlockingRunner)); native
//!   closures run inline, and a supervisor abandons one that overruns its deadline or is
//!   cancelled, while a replacement worker carries the task on.
//! - `tasks`: workers are tokio tasks (an [`AsyncRunner`](super::AsyncRunner)); attempts are
//!   futures, dropped when they must stop.

mod blocking;
mod tasks;

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::backend::Runner;
use super::core::{Core, State};
use super::handle::TaskCell;
use crate::attempt::AttemptReport;

/// A task whose native attempt was abandoned, with the outcome to continue from.
pub(crate) type Resume = (Arc<TaskCell>, AttemptReport);

/// Starts one worker of the kind the runner needs. False if none could be started.
pub(crate) fn spawn(core: &Arc<Core>, state: &mut State, resume: Option<Resume>) -> bool {
    match &core.runner {
        Runner::Blocking(_) => blocking::spawn(core, state, resume),
        Runner::Async(_) => tasks::spawn(core, state),
    }
}

/// The workers of one queue, behind the queue lock.
#[derive(Default)]
pub(crate) struct Workers {
    /// Workers counted toward the target (abandoned ones are not).
    pub(crate) live: usize,
    /// Bumped to stop every worker.
    pub(crate) generation: u64,
    threads: Vec<JoinHandle<()>>,
    slots: Vec<Arc<WorkerSlot>>,
    /// The thread that abandons overrunning native closures is alive.
    supervisor_running: bool,
}

impl Workers {
    fn add(&mut self, slot: Arc<WorkerSlot>) {
        self.slots.push(slot);
        self.live += 1;
    }

    /// Forgets an exited worker; `counted` is false for one that was abandoned already.
    pub(crate) fn remove(&mut self, slot: &Arc<WorkerSlot>, counted: bool) {
        self.slots.retain(|s| !Arc::ptr_eq(s, slot));
        if counted {
            self.live = self.live.saturating_sub(1);
        }
    }

    /// The join handles of the worker threads, to join them outside the lock.
    pub(crate) fn take_threads(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.threads)
    }
}

/// One worker's registration: which thread it is, and the native closure it is running, so
/// that the supervisor can abandon it.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    native: Mutex<Option<blocking::NativeRun>>,
    thread: Mutex<Option<std::thread::ThreadId>>,
}
