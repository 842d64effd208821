//! Everything behind the queue lock: the lifecycle phase (docs/queues.md §3.1), the ready
//! queue, the scheduled set, the tasks in their attempt loop, the results and the workers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::super::driver::Workers;
use super::super::handle::TaskCell;
use super::super::options::FailPolicy;
use super::super::options::Retention;
use super::super::rate::RateGate;
use super::log::ResultLog;

/// Where the queue is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Constructed or reset: submissions queue up, no workers.
    Created,
    /// Started (`start`, `run`, `join`): ready tasks run at once. Stays after a finite run.
    Started,
    /// A graceful shutdown is draining: no admissions; everything outstanding runs.
    Draining,
    /// A graceful shutdown has drained and is stopping its workers: no admissions, and no
    /// worker starts (a `start` or `run` now waits for the close instead).
    Stopping,
    /// `cancel()` ran: no admissions; closed once the last worker has exited.
    Closing,
    /// Shut down.
    Closed,
    /// The tokio runtime of an AsyncQueue shut down; what it left is being recorded.
    RuntimeLost,
    /// The tokio runtime of an AsyncQueue shut down: closed for good.
    RuntimeGone,
}

impl Phase {
    /// Whether submissions are admitted (halting aside).
    pub(crate) fn accepting(self) -> bool {
        matches!(self, Self::Created | Self::Started)
    }

    /// Whether a shutdown has completed.
    pub(crate) fn is_closed(self) -> bool {
        matches!(self, Self::Closed | Self::RuntimeGone)
    }

    /// Whether workers may run.
    pub(crate) fn is_started(self) -> bool {
        !matches!(self, Self::Created)
    }
}

/// A `run()` in progress.
pub(crate) struct ActiveRun {
    /// The fail policy of this run only, if one was given.
    pub(crate) policy: Option<FailPolicy>,
}

/// Everything behind the queue lock.
pub(crate) struct State {
    pub(crate) phase: Phase,
    /// A `run()` in progress.
    pub(crate) run: Option<ActiveRun>,
    /// An abort happened: non-`must_complete` pickups are cancelled, retries suppressed.
    pub(crate) halted: bool,
    /// The current run hit its timeout.
    pub(crate) timed_out: bool,
    pub(crate) ready: ReadyQueue,
    pub(crate) scheduled: BTreeMap<(Instant, u64), Arc<TaskCell>>,
    /// Tasks inside their attempt loop, by sequence number.
    pub(crate) active: HashMap<u64, Arc<TaskCell>>,
    /// Admitted and not yet recorded.
    pub(crate) outstanding: usize,
    /// Recordings between §6 step 1 and step 7.
    pub(crate) recording: usize,
    /// Sequence numbers (and generated group ids).
    pub(crate) seq: u64,
    /// What is kept of the recorded results, and where the next run summary starts.
    pub(crate) results: ResultLog,
    pub(crate) rate: Option<RateGate>,
    /// The timer thread that promotes scheduled tasks is alive.
    pub(crate) timer_running: bool,
    pub(crate) workers: Workers,
}

impl State {
    pub(crate) fn new(rate: Option<RateGate>, retention: Retention) -> Self {
        Self {
            phase: Phase::Created,
            run: None,
            halted: false,
            timed_out: false,
            ready: ReadyQueue::default(),
            scheduled: BTreeMap::new(),
            active: HashMap::new(),
            outstanding: 0,
            recording: 0,
            seq: 0,
            results: ResultLog::new(retention),
            rate,
            timer_running: false,
            workers: Workers::default(),
        }
    }

    /// Step 5 of a graceful shutdown, once drained: halted, and no worker starts from here on.
    pub(crate) fn begin_stopping(&mut self) {
        self.halted = true;
        if self.phase == Phase::Draining {
            self.phase = Phase::Stopping;
        }
    }

    /// Nothing outstanding and no recording in progress.
    pub(crate) fn is_idle(&self) -> bool {
        self.outstanding == 0 && self.recording == 0
    }

    /// Takes the next sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }
}

/// The ready queue (§4.1): lowest priority first, FIFO among equal priorities, ordered by
/// `(priority, seq)`. One FIFO per priority: a task is almost always admitted after every
/// task of its priority that is still queued, so it goes to the back in O(1); a scheduled task
/// that falls due keeps its original, older place and is inserted where it belongs.
///
/// A task cancelled while queued stays until a pop skips it; its `queued` flag, changed only
/// under the queue lock, says whether its entry is live, and the queue keeps its own count of
/// live entries.
#[derive(Default)]
pub(crate) struct ReadyQueue {
    by_priority: BTreeMap<i32, VecDeque<Arc<TaskCell>>>,
    live: usize,
}

impl ReadyQueue {
    pub(crate) fn push(&mut self, cell: Arc<TaskCell>) {
        cell.queued.store(true, Ordering::Relaxed);
        let fifo = self.by_priority.entry(cell.options.priority).or_default();
        match fifo.back() {
            Some(last) if last.seq > cell.seq => {
                let at = fifo.partition_point(|queued| queued.seq < cell.seq);
                fifo.insert(at, cell);
            }
            _ => fifo.push_back(cell),
        }
        self.live += 1;
    }

    /// The first live task, lowest priority first, FIFO among equals.
    pub(crate) fn pop(&mut self) -> Option<Arc<TaskCell>> {
        while let Some(mut entry) = self.by_priority.first_entry() {
            let fifo = entry.get_mut();
            while let Some(cell) = fifo.pop_front() {
                if cell.queued.swap(false, Ordering::Relaxed) {
                    if fifo.is_empty() {
                        entry.remove();
                    }
                    self.live -= 1;
                    return Some(cell);
                }
            }
            entry.remove();
        }
        None
    }

    /// Takes a queued task out where it stands (it is being cancelled); false if it was not
    /// queued (a worker took it first).
    pub(crate) fn remove(&mut self, cell: &TaskCell) -> bool {
        let queued = cell.queued.swap(false, Ordering::Relaxed);
        if queued {
            self.live -= 1;
        }
        queued
    }

    /// Live tasks waiting for a worker.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Empties the queue; the live tasks in the order they would have run.
    pub(crate) fn drain_in_order(&mut self) -> Vec<Arc<TaskCell>> {
        self.live = 0;
        std::mem::take(&mut self.by_priority)
            .into_values()
            .flatten()
            .filter(|cell| cell.queued.swap(false, Ordering::Relaxed))
            .collect()
    }
}
