//! The queue core: admission, the ready heap, scheduled tasks, lifecycle, recording and
//! aborts (SEMANTICS.md §3–§7). Backends never see any of this; they only run attempts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde_json::Value;

use super::config::QueueConfig;
use super::error::Error;
use super::handle::{Handle, TaskCell, Work};
use super::options::{FailPolicy, Mode, OnExit, TaskOptions, Workers};
use super::rate::RateGate;
use super::result::{Backend, RunSummary, TaskResult, TaskStatus};
use crate::engine::AttemptReport;
use crate::failure::{CapturedOutput, TaskFailure};

mod asynchronous;

/// Messages of SEMANTICS.md §9.1.
pub(crate) const CANCELLED: &str = "cancelled";
pub(crate) const CANCELLED_BEFORE: &str = "cancelled before execution";
pub(crate) const CANCELLED_SHUTDOWN: &str = "cancelled during shutdown";

/// Runs one attempt of a task: what a backend supplies.
pub(crate) trait Executor: Send + Sync + 'static {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// Runs one attempt of the task on the calling worker thread, interruptibly through
    /// `control`.
    fn run_attempt(
        &self,
        worker: &super::worker::WorkerContext<'_>,
        cell: &Arc<TaskCell>,
        attempt: u32,
        control: &Arc<crate::AttemptControl>,
    ) -> AttemptOutcomeOrAbandoned;
    /// Prepares a new worker thread (the initializer, for ThreadQueue).
    fn init_worker(&self) -> Result<(), String> {
        Ok(())
    }
    /// Called on a worker thread that is about to exit for good.
    fn worker_exiting(&self) {}
    /// Releases what the backend holds (worker subprocesses) at shutdown and reset.
    fn close(&self) {}
    /// PIDs of worker subprocesses, for backends that have them.
    fn pids(&self) -> Vec<u32> {
        Vec::new()
    }
    /// The async side of this executor, when its workers are tokio tasks.
    fn as_async(&self) -> Option<&dyn crate::backend::asynchronous::AsyncExecutor> {
        None
    }
}

/// The end of an attempt, or `Abandoned` when a native closure was given up on and another
/// worker took over the task.
pub(crate) enum AttemptOutcomeOrAbandoned {
    Done(AttemptReport),
    Abandoned,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ReadyKey {
    priority: i32,
    seq: u64,
}

struct ReadyEntry {
    key: Reverse<ReadyKey>,
    cell: Arc<TaskCell>,
}

impl PartialEq for ReadyEntry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for ReadyEntry {}
impl PartialOrd for ReadyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ReadyEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// Everything behind the queue lock.
pub(crate) struct State {
    ready: BinaryHeap<ReadyEntry>,
    /// Ready entries whose task is not done yet (the heap keeps cancelled ones lazily).
    ready_live: usize,
    scheduled: BTreeMap<(Instant, u64), Arc<TaskCell>>,
    active: HashMap<u64, Arc<TaskCell>>,
    pub(crate) outstanding: usize,
    recording: usize,
    accepting: bool,
    started: bool,
    running: bool,
    halted: bool,
    closed: bool,
    /// `cancel()` ran; the queue closes once the last worker exits.
    close_pending: bool,
    /// The bound tokio runtime shut down (AsyncQueue): the queue is closed for good.
    runtime_gone: bool,
    draining: bool,
    timed_out: bool,
    seq: u64,
    results: Vec<Arc<TaskResult>>,
    cursor: usize,
    policy_override: Option<FailPolicy>,
    rate: Option<RateGate>,
    /// Workers currently counted (abandoned ones are not).
    live_workers: usize,
    /// Bumped to stop every worker.
    generation: u64,
    worker_threads: Vec<JoinHandle<()>>,
    timer_running: bool,
    pub(crate) supervisor_running: bool,
    pub(crate) worker_slots: Vec<Arc<WorkerSlot>>,
}

impl State {
    /// Forgets the join handle of an abandoned worker thread (it is never joined).
    pub(crate) fn worker_threads_detach(&mut self, id: std::thread::ThreadId) {
        self.worker_threads.retain(|t| t.thread().id() != id);
    }

    /// Stops counting an abandoned worker.
    pub(crate) fn live_workers_abandon(&mut self, slot: &Arc<WorkerSlot>) {
        self.worker_slots.retain(|s| !Arc::ptr_eq(s, slot));
        self.live_workers = self.live_workers.saturating_sub(1);
    }

    pub(crate) fn is_closed_flag(&self) -> bool {
        self.closed
    }
}

/// A worker's registration of the native closure it is running, so the supervisor can
/// abandon it on cancel or deadline.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    pub(crate) native: Mutex<Option<NativeRun>>,
    pub(crate) thread: Mutex<Option<std::thread::ThreadId>>,
}

pub(crate) struct NativeRun {
    pub(crate) cell: Arc<TaskCell>,
    pub(crate) control: Arc<crate::AttemptControl>,
    pub(crate) claimed: Arc<std::sync::atomic::AtomicBool>,
}

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
    /// The tokio runtime async workers run on, once bound.
    pub(crate) runtime: Mutex<Option<tokio::runtime::Handle>>,
    /// Waiters for idle, room, closed, timers.
    pub(crate) changed: Condvar,
    /// The same wake-ups for async waiters (`run_async`, `join_async`, `shutdown_async`).
    pub(crate) changed_async: tokio::sync::Notify,
    pub(crate) self_ref: Weak<Core>,
    pub(crate) backend: Backend,
    pub(crate) executor: Arc<dyn Executor>,
}

/// A `run()` in progress.
pub(crate) struct RunPlan {
    pub(crate) started_at: Instant,
    /// When the run timeout expires.
    pub(crate) deadline: Option<Instant>,
    pub(crate) finite: bool,
}

/// What a worker got from [`Core::take`].
pub(crate) enum Take {
    Task(Arc<TaskCell>),
    Stop,
}

impl Core {
    pub(crate) fn new(config: QueueConfig, executor: Arc<dyn Executor>) -> Arc<Self> {
        let backend = executor.backend();
        let rate = config.rate.map(|r| RateGate::new(r, config.burst));
        Arc::new_cyclic(|weak| Self {
            config,
            state: Mutex::new(State {
                ready: BinaryHeap::new(),
                ready_live: 0,
                scheduled: BTreeMap::new(),
                active: HashMap::new(),
                outstanding: 0,
                recording: 0,
                accepting: true,
                started: false,
                running: false,
                halted: false,
                closed: false,
                close_pending: false,
                runtime_gone: false,
                draining: false,
                timed_out: false,
                seq: 0,
                results: Vec::new(),
                cursor: 0,
                policy_override: None,
                rate,
                live_workers: 0,
                generation: 0,
                worker_threads: Vec::new(),
                timer_running: false,
                supervisor_running: false,
                worker_slots: Vec::new(),
            }),
            work_ready: Condvar::new(),
            work_notify: tokio::sync::Notify::new(),
            room_notify: tokio::sync::Notify::new(),
            runtime: Mutex::new(None),
            changed: Condvar::new(),
            changed_async: tokio::sync::Notify::new(),
            self_ref: weak.clone(),
            backend,
            executor,
        })
    }

    pub(crate) fn handle(&self, cell: &Arc<TaskCell>) -> Handle {
        Handle {
            cell: cell.clone(),
            core: self.self_ref.clone(),
        }
    }

    // ----- admission (§3.4) -----

    /// Admits a batch of tasks; blocks for room when `block` and the queue is bounded.
    pub(crate) fn admit(
        self: &Arc<Self>,
        batch: Vec<(Work, TaskOptions)>,
        block: bool,
    ) -> Result<Vec<Handle>, Error> {
        for (_, options) in &batch {
            options.validate()?;
        }
        let size = self.config.size;
        let mut handles = Vec::with_capacity(batch.len());
        let mut state = self.state.lock();
        for (work, options) in batch {
            loop {
                if state.runtime_gone {
                    return Err(Error::RuntimeGone);
                }
                if state.closed || !state.accepting || state.halted {
                    return Err(Error::Closed);
                }
                if size == 0 || state.outstanding < size {
                    break;
                }
                if !block {
                    return Err(Error::QueueFull(size));
                }
                self.changed.wait(&mut state);
            }
            let now = Instant::now();
            let target = match (options.delay, options.run_at) {
                (Some(delay), _) => now.checked_add(delay),
                (None, Some(at)) => {
                    let ahead = at
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    now.checked_add(ahead)
                }
                (None, None) => None,
            };
            let seq = state.seq;
            state.seq += 1;
            let scheduled_for = target.filter(|t| *t > now);
            let cell = Arc::new(TaskCell::new(work, options, seq, scheduled_for));
            state.outstanding += 1;
            match scheduled_for {
                Some(at) => {
                    state.scheduled.insert((at, seq), cell.clone());
                    self.ensure_timer(&mut state);
                    self.notify_changed();
                }
                None => self.enqueue_ready(&mut state, cell.clone()),
            }
            handles.push(self.handle(&cell));
        }
        Ok(handles)
    }

    /// Reserves a group id from the sequence counter.
    pub(crate) fn next_group_id(&self) -> String {
        let mut state = self.state.lock();
        let n = state.seq;
        state.seq += 1;
        format!("group-{n}")
    }

    fn enqueue_ready(&self, state: &mut State, cell: Arc<TaskCell>) {
        state.ready.push(ReadyEntry {
            key: Reverse(ReadyKey {
                priority: cell.options.priority,
                seq: cell.seq,
            }),
            cell,
        });
        state.ready_live += 1;
        self.wake_worker();
        if state.started && matches!(self.config.workers, Workers::Auto) {
            self.scale(state);
        }
    }

    // ----- workers (§4.4) -----

    fn worker_target(&self, state: &State) -> usize {
        match self.config.workers {
            Workers::Fixed(n) => n,
            Workers::Auto => {
                let floor = usize::from(self.config.mode == Mode::Infinite);
                floor.max(
                    self.config
                        .auto_limit
                        .min(state.ready_live + state.active.len()),
                )
            }
        }
    }

    /// Adds workers up to the target.
    pub(crate) fn scale(&self, state: &mut State) {
        if state.halted || state.closed || !state.started {
            return;
        }
        let target = self.worker_target(state);
        while state.live_workers < target {
            self.spawn_worker(state, None);
        }
    }

    /// Spawns one worker thread; `resume` continues a task whose native attempt was abandoned.
    pub(crate) fn spawn_worker(
        &self,
        state: &mut State,
        resume: Option<(Arc<TaskCell>, AttemptReport)>,
    ) {
        let Some(core) = self.self_ref.upgrade() else {
            return;
        };
        let generation = state.generation;
        let slot = Arc::new(WorkerSlot::default());
        if self.executor.as_async().is_some() {
            let Some(runtime) = self.runtime.lock().clone() else {
                tracing::error!("async queue started without a runtime");
                return;
            };
            state.worker_slots.push(slot.clone());
            state.live_workers += 1;
            let watch = crate::backend::asynchronous::RuntimeWatch::new(core, slot);
            runtime.spawn(crate::backend::asynchronous::worker(watch, generation));
            return;
        }
        state.worker_slots.push(slot.clone());
        state.live_workers += 1;
        let spawned = std::thread::Builder::new()
            .name("osiiso-worker".into())
            .spawn(move || super::worker::run(core, slot, generation, resume));
        match spawned {
            Ok(thread) => state.worker_threads.push(thread),
            Err(error) => {
                state.live_workers -= 1;
                tracing::error!(%error, "cannot spawn a worker thread");
            }
        }
    }

    /// Called by a worker when it exits for good.
    pub(crate) fn worker_exited(&self, slot: &Arc<WorkerSlot>, counted: bool) {
        if counted {
            self.executor.worker_exiting();
        }
        let mut state = self.state.lock();
        state.worker_slots.retain(|s| !Arc::ptr_eq(s, slot));
        if counted {
            state.live_workers = state.live_workers.saturating_sub(1);
        }
        if state.close_pending && state.live_workers == 0 {
            state.close_pending = false;
            state.closed = true;
        }
        self.notify_changed();
    }

    /// The next ready task for a worker of `generation`, `Stop`, or `None` when there is
    /// nothing to do yet. Tasks picked up while the queue is halted are recorded here.
    pub(crate) fn try_take(&self, generation: u64) -> Option<Take> {
        loop {
            let cell = {
                let mut state = self.state.lock();
                if state.generation != generation || state.closed {
                    return Some(Take::Stop);
                }
                let entry = state.ready.pop()?;
                let cell = entry.cell;
                if cell.is_done() {
                    continue;
                }
                state.ready_live -= 1;
                if !state.halted || cell.options.must_complete {
                    state.active.insert(cell.seq, cell.clone());
                    return Some(Take::Task(cell));
                }
                state.recording += 1;
                cell
            };
            self.record_cancelled(&cell, CANCELLED_SHUTDOWN, true);
        }
    }

    /// Whether an idle auto worker of an infinite queue may retire (§4.4).
    pub(crate) fn may_retire(&self) -> bool {
        if !(self.config.workers == Workers::Auto && self.config.mode == Mode::Infinite) {
            return false;
        }
        let state = self.state.lock();
        state.ready_live == 0 && state.live_workers > self.worker_target(&state)
    }

    /// Blocks until [`try_take`](Self::try_take) has something for a thread worker.
    pub(crate) fn take(&self, generation: u64) -> Take {
        loop {
            if let Some(take) = self.try_take(generation) {
                return take;
            }
            let mut state = self.state.lock();
            if state.ready_live > 0 || state.generation != generation || state.closed {
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

    // ----- timers (§4.2) -----

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

    fn timer_loop(&self) {
        let mut state = self.state.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = state.scheduled.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let cell = entry.remove();
                self.enqueue_ready(&mut state, cell);
            }
            match state.scheduled.keys().next().map(|k| k.0) {
                Some(next) if !state.closed => {
                    self.changed.wait_until(&mut state, next);
                }
                _ => {
                    state.timer_running = false;
                    return;
                }
            }
        }
    }

    fn promote_due(&self, state: &mut State) {
        let now = Instant::now();
        while let Some(entry) = state.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let cell = entry.remove();
            self.enqueue_ready(state, cell);
        }
    }

    // ----- the rate gate (§4.3) -----

    /// Reserves an attempt slot; returns when it may start.
    pub(crate) fn reserve_rate(&self) -> Option<Instant> {
        let mut state = self.state.lock();
        state.rate.as_mut().map(|gate| gate.reserve(Instant::now()))
    }

    // ----- lifecycle (§3.2) -----

    pub(crate) fn start(&self) -> Result<(), Error> {
        let mut state = self.state.lock();
        self.start_locked(&mut state)
    }

    fn start_locked(&self, state: &mut State) -> Result<(), Error> {
        if state.closed || state.close_pending {
            return Err(Error::ShutDown);
        }
        if self.executor.as_async().is_some() {
            self.bind_runtime(state)?;
        }
        state.halted = false;
        state.timed_out = false;
        state.started = true;
        self.promote_due(state);
        self.scale(state);
        Ok(())
    }

    /// Binds the AsyncQueue to the builder's runtime or the caller's (§10.2). Another runtime
    /// may take over only once nothing runs on the bound one.
    fn bind_runtime(&self, state: &State) -> Result<(), Error> {
        let wanted = self
            .config
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let mut bound = self.runtime.lock();
        match (bound.as_ref(), wanted) {
            (None, None) => return Err(Error::NoRuntime),
            (None, Some(wanted)) => *bound = Some(wanted),
            (Some(current), Some(wanted)) if current.id() != wanted.id() => {
                if state.live_workers > 0 || !state.active.is_empty() {
                    return Err(Error::RuntimeSwitch);
                }
                *bound = Some(wanted);
            }
            // The same runtime, or a call from outside any runtime: keep the bound one.
            _ => {}
        }
        Ok(())
    }

    fn is_idle(state: &State) -> bool {
        state.outstanding == 0 && state.recording == 0
    }

    /// Waits until idle, or until `deadline`. Returns false on timeout.
    fn wait_idle(&self, state: &mut MutexGuard<'_, State>, deadline: Option<Instant>) -> bool {
        self.wait_for_locked(state, Self::is_idle, deadline)
    }

    /// Blocks until `done` holds, or until `deadline`; false when the deadline came first.
    /// (`wait_for` in `asynchronous` is the same wait for async callers.)
    fn wait_for_locked(
        &self,
        state: &mut MutexGuard<'_, State>,
        done: impl Fn(&State) -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        while !done(state) {
            match deadline {
                Some(d) => {
                    if self.changed.wait_until(state, d).timed_out() {
                        return done(state);
                    }
                }
                None => self.changed.wait(state),
            }
        }
        true
    }

    /// Stops every worker and waits for their threads.
    fn stop_workers(&self, mut state: MutexGuard<'_, State>) -> MutexGuard<'_, State> {
        state.generation += 1;
        let threads = std::mem::take(&mut state.worker_threads);
        self.wake_workers_all();
        let me = std::thread::current().id();
        if threads.iter().all(|t| t.thread().id() != me) {
            // Async workers have no thread to join: wait for them to report their exit.
            self.wait_for_locked(&mut state, |s| s.live_workers == 0, None);
        }
        drop(state);
        for thread in threads {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
        self.state.lock()
    }

    /// Wakes one idle worker, thread or task.
    fn wake_worker(&self) {
        self.work_ready.notify_one();
        self.work_notify.notify_one();
    }

    /// Wakes every idle worker.
    fn wake_workers_all(&self) {
        self.work_ready.notify_all();
        self.work_notify.notify_waiters();
        self.room_notify.notify_waiters();
    }

    pub(crate) fn effective_policy(&self, state: &State) -> FailPolicy {
        state.policy_override.unwrap_or(self.config.fail_policy)
    }

    /// `run()` (§3.2), blocking the calling thread.
    pub(crate) fn run(&self, options: super::RunOptions) -> Result<RunSummary, Error> {
        let run = self.begin_run(&options)?;
        let mut state = self.state.lock();
        // A finite run waits until idle; an infinite one until a shutdown closes the queue.
        let timed_out = if run.finite {
            !self.wait_idle(&mut state, run.deadline)
        } else {
            !self.wait_for_locked(&mut state, |s| s.closed, run.deadline)
        };
        if timed_out {
            drop(state);
            self.run_timed_out();
            state = self.state.lock();
            self.wait_idle(&mut state, None);
        }
        if (run.finite || timed_out) && !state.closed {
            state = self.stop_workers(state);
        }
        self.end_run(state, &run, options.strict, timed_out)
    }

    /// Steps 1–3 of `run()`: refuse a second run, apply the policy, start.
    pub(crate) fn begin_run(&self, options: &super::RunOptions) -> Result<RunPlan, Error> {
        let started_at = Instant::now();
        let mut state = self.state.lock();
        if state.running {
            return Err(Error::RunInProgress);
        }
        state.running = true;
        state.policy_override = options.fail_policy;
        if let Err(error) = self.start_locked(&mut state) {
            state.running = false;
            state.policy_override = None;
            return Err(error);
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

    /// Step 6–7 of `run()`: the summary from the cursor, the flags cleared, `strict`.
    pub(crate) fn end_run(
        &self,
        mut state: MutexGuard<'_, State>,
        run: &RunPlan,
        strict: bool,
        timed_out: bool,
    ) -> Result<RunSummary, Error> {
        let summary = self.summary_locked(&mut state, run.started_at, timed_out);
        Self::clear_run_flags(&mut state);
        drop(state);
        if strict && summary.failed > 0 {
            return Err(Error::Execution(super::error::ExecutionError {
                results: summary.errors(),
            }));
        }
        Ok(summary)
    }

    /// What the end of a run, or the drop of a `run()` future, clears.
    pub(crate) fn clear_run_flags(state: &mut State) {
        state.timed_out = false;
        state.halted = false;
        state.running = false;
        state.policy_override = None;
    }

    fn summary_locked(&self, state: &mut State, run_start: Instant, timed_out: bool) -> RunSummary {
        let cut = state.results.len();
        let results: Vec<_> = state.results[state.cursor.min(cut)..cut]
            .iter()
            .filter(|r| !r.detached)
            .cloned()
            .collect();
        state.cursor = cut;
        RunSummary::from_results(results, run_start, timed_out)
    }

    /// `join()`: start if needed, wait until idle; workers and cursor stay.
    pub(crate) fn join(&self) -> Result<(), Error> {
        self.start_for_join()?;
        let mut state = self.state.lock();
        self.wait_idle(&mut state, None);
        Ok(())
    }

    /// The start of `join()`: a closed queue refuses, an unstarted one starts.
    fn start_for_join(&self) -> Result<(), Error> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(Error::ShutDown);
        }
        if !state.started {
            self.start_locked(&mut state)?;
        }
        Ok(())
    }

    /// Graceful shutdown (§3.2).
    pub(crate) fn shutdown(&self) {
        let mut state = self.state.lock();
        if !self.begin_shutdown(&mut state) {
            return;
        }
        self.wait_idle(&mut state, None);
        state.halted = true;
        state = self.stop_workers(state);
        self.finish_shutdown(state);
    }

    /// Steps 1–3 of a graceful shutdown; false if the queue is closed already.
    fn begin_shutdown(&self, state: &mut State) -> bool {
        if state.closed {
            self.notify_changed();
            return false;
        }
        if !state.started && state.outstanding > 0 {
            let _ = self.start_locked(state);
        }
        state.accepting = false;
        state.draining = true;
        self.notify_changed();
        self.room_notify.notify_waiters();
        true
    }

    /// The end of a graceful shutdown, once idle and without workers: closed.
    fn finish_shutdown(&self, mut state: MutexGuard<'_, State>) {
        state.closed = true;
        state.draining = false;
        self.notify_changed();
        drop(state);
        self.executor.close();
    }

    /// Forced shutdown: killing abort, stop workers, close.
    pub(crate) fn shutdown_force(&self) {
        self.cancel_all();
        let mut state = self.state.lock();
        self.wait_idle(&mut state, None);
        let mut state = self.stop_workers(state);
        state.close_pending = false;
        state.closed = true;
        self.notify_changed();
        drop(state);
        self.executor.close();
    }

    /// `cancel()`: stop accepting, killing abort; never blocks on running work.
    pub(crate) fn cancel_all(&self) {
        {
            let mut state = self.state.lock();
            state.accepting = false;
        }
        self.abort(false);
        let mut state = self.state.lock();
        // Closed once the workers have recorded their running tasks and exited.
        if state.live_workers == 0 {
            state.closed = true;
        } else if !state.closed {
            state.close_pending = true;
        }
        state.generation += 1;
        self.wake_workers_all();
        self.notify_changed();
    }

    /// Waits until a shutdown has completed and workers have exited.
    pub(crate) fn wait_closed(&self) {
        let mut state = self.state.lock();
        self.wait_for_locked(
            &mut state,
            |s| s.closed && s.live_workers == 0 && Self::is_idle(s),
            None,
        );
    }

    /// `reset()` (§3.2).
    pub(crate) fn reset(&self) -> Result<(), Error> {
        {
            let state = self.state.lock();
            if state.running {
                return Err(Error::ResetDuringRun);
            }
            if state.live_workers > 0 {
                return Err(Error::ResetWhileRunning);
            }
        }
        self.abort(false);
        let mut state = self.state.lock();
        self.wait_idle(&mut state, None);
        state.results.clear();
        state.cursor = 0;
        state.outstanding = 0;
        state.accepting = true;
        state.halted = false;
        state.closed = false;
        state.close_pending = false;
        state.runtime_gone = false;
        state.started = false;
        state.timed_out = false;
        state.draining = false;
        state.seq = 0;
        drop(state);
        *self.runtime.lock() = None;
        self.executor.close();
        Ok(())
    }

    pub(crate) fn clear_results(&self) {
        let mut state = self.state.lock();
        state.results.clear();
        state.cursor = 0;
    }

    // ----- aborts and cancellation (§7.2, §8.2) -----

    /// Halts and cancels: scheduled and queued tasks are recorded here, running ones are
    /// interrupted. The sparing form keeps `must_complete` tasks.
    pub(crate) fn abort(&self, sparing: bool) {
        let mut to_record = Vec::new();
        {
            let mut state = self.state.lock();
            state.halted = true;
            let scheduled = std::mem::take(&mut state.scheduled);
            for (key, cell) in scheduled {
                if sparing && cell.options.must_complete {
                    state.scheduled.insert(key, cell);
                } else if !cell.is_done() {
                    to_record.push(cell);
                }
            }
            let ready = std::mem::take(&mut state.ready).into_sorted_vec();
            state.ready_live = 0;
            // into_sorted_vec is ascending by Reverse(key): last element runs first.
            for entry in ready.into_iter().rev() {
                if entry.cell.is_done() {
                    continue;
                }
                if sparing && entry.cell.options.must_complete {
                    state.ready_live += 1;
                    state.ready.push(entry);
                } else {
                    to_record.push(entry.cell);
                }
            }
            for cell in state.active.values() {
                if !(sparing && cell.options.must_complete) {
                    cell.request_cancel();
                }
            }
            state.recording += to_record.len();
            self.notify_changed();
        }
        for cell in to_record {
            self.record_cancelled(&cell, CANCELLED_BEFORE, true);
        }
    }

    /// `Handle::cancel()`.
    pub(crate) fn cancel_task(&self, cell: &Arc<TaskCell>) -> bool {
        let mut state = self.state.lock();
        if cell.is_done() {
            return false;
        }
        if let Some(at) = cell.scheduled_for
            && state.scheduled.remove(&(at, cell.seq)).is_some()
        {
            state.recording += 1;
            drop(state);
            self.record_cancelled(cell, CANCELLED_BEFORE, true);
            return true;
        }
        if state.active.contains_key(&cell.seq) {
            drop(state);
            cell.request_cancel();
            return true;
        }
        // Queued: the heap entry is skipped lazily once the task is done.
        state.ready_live = state.ready_live.saturating_sub(1);
        state.recording += 1;
        drop(state);
        self.record_cancelled(cell, CANCELLED_BEFORE, true);
        true
    }

    // ----- recording (§6) -----

    /// Records a cancellation. `counted` says the caller already added to `recording`.
    pub(crate) fn record_cancelled(&self, cell: &Arc<TaskCell>, message: &str, counted: bool) {
        self.record(
            cell,
            TaskStatus::Cancelled,
            None,
            None,
            message.to_string(),
            None,
            counted,
        );
    }

    /// Records the final outcome of a task that went through its attempt loop.
    pub(crate) fn record_final(
        &self,
        cell: &Arc<TaskCell>,
        status: TaskStatus,
        value: Option<Value>,
        error: Option<TaskFailure>,
        message: String,
        output: Option<(Option<CapturedOutput>, Option<CapturedOutput>)>,
    ) {
        {
            let mut state = self.state.lock();
            state.recording += 1;
            state.active.remove(&cell.seq);
        }
        self.record(cell, status, value, error, message, output, true);
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        cell: &Arc<TaskCell>,
        status: TaskStatus,
        value: Option<Value>,
        error: Option<TaskFailure>,
        message: String,
        output: Option<(Option<CapturedOutput>, Option<CapturedOutput>)>,
        counted: bool,
    ) {
        if !counted {
            self.state.lock().recording += 1;
        }
        let result = {
            let cell_state = cell.state.lock();
            let finished_at = Instant::now();
            let (stdout, stderr) = output.unwrap_or_default();
            Arc::new(TaskResult {
                task_id: cell.id.clone(),
                name: cell.name.clone(),
                task: cell.work.identity(),
                priority: cell.options.priority,
                must_complete: cell.options.must_complete,
                group_id: cell.options.group_id.clone(),
                detached: cell.options.detached,
                scheduled_for: cell.scheduled_for,
                created_at: cell.created_at,
                metadata: cell.options.metadata.clone(),
                status,
                value,
                error,
                attempts: cell_state.attempts,
                started_at: cell_state.started_at,
                finished_at,
                started_wall: cell_state.started_wall,
                finished_wall: SystemTime::now(),
                duration: cell_state
                    .started_at
                    .map(|s| finished_at.saturating_duration_since(s))
                    .unwrap_or_default(),
                message,
                fuel_consumed: cell_state.fuel,
                stdout,
                stderr,
                backend: self.backend,
            })
        };
        if !cell.complete(result.clone(), &self.self_ref) {
            let mut state = self.state.lock();
            state.recording -= 1;
            self.notify_if_idle(&state);
            return;
        }
        let fail_first = {
            let mut state = self.state.lock();
            state.results.push(result.clone());
            state.outstanding -= 1;
            let trigger = status == TaskStatus::Failed
                && self.effective_policy(&state) == FailPolicy::FailFirst
                && !state.halted;
            if trigger {
                state.halted = true;
            }
            // Wake bounded submitters only when someone can be waiting for room: a wake-up
            // per task costs the run() waiter a context switch on every completion.
            if self.config.size > 0 {
                self.room_notify.notify_waiters();
                self.notify_changed();
            }
            trigger
        };
        if fail_first {
            self.abort(true);
        }
        if let Some(on_complete) = &self.config.on_complete
            && std::panic::catch_unwind(AssertUnwindSafe(|| on_complete(&result))).is_err()
        {
            tracing::error!("callback on_complete panicked");
        }
        let mut state = self.state.lock();
        state.recording -= 1;
        self.notify_if_idle(&state);
    }

    /// Wakes everyone waiting for a change of state, blocked or async.
    fn notify_changed(&self) {
        self.changed.notify_all();
        self.changed_async.notify_waiters();
    }

    /// Wakes the waiters for idleness (run, join, shutdown, wait_closed) once it is reached.
    fn notify_if_idle(&self, state: &State) {
        if Self::is_idle(state) {
            self.notify_changed();
        }
    }

    // ----- the attempt loop (§5.2) -----

    /// Whether the queue is halted (retries are suppressed for non-must-complete tasks).
    pub(crate) fn is_halted(&self) -> bool {
        self.state.lock().halted
    }

    // ----- introspection (§3.5) -----

    pub(crate) fn stats(&self) -> super::Stats {
        let state = self.state.lock();
        super::Stats {
            pending: state.outstanding.saturating_sub(state.active.len()),
            active: state.active.len(),
            scheduled: state.scheduled.len(),
            completed: state.results.len(),
            workers: state.live_workers,
            closed: state.closed,
        }
    }

    pub(crate) fn results(&self) -> Vec<Arc<TaskResult>> {
        self.state.lock().results.clone()
    }

    pub(crate) fn has_outstanding(&self) -> bool {
        self.state.lock().outstanding > 0
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".into())
}
