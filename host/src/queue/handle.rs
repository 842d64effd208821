//! Handles: the caller's view of one submitted task (docs/queues.md §8.1).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use super::core::{Admission, Core};
use super::error::Error;
use super::options::TaskOptions;
use super::result::{TaskResult, TaskStatus};
use super::work::Work;
use crate::attempt::AttemptControl;
use crate::failure::TaskFailure;
use crate::json::Json;
use crate::progress::{Progress, ProgressCell};
use crate::wait;

/// A callback run once, when the task is done (docs/queues.md §6 step 3).
pub(crate) type DoneCallback = Box<dyn FnOnce(&Handle) + Send>;

/// Mutable per-task state, behind the cell's lock.
pub(crate) struct CellState {
    pub(crate) status: TaskStatus,
    pub(crate) attempts: u32,
    pub(crate) started_at: Option<Instant>,
    pub(crate) started_wall: Option<std::time::SystemTime>,
    pub(crate) fuel: Option<u64>,
    pub(crate) control: Option<Arc<AttemptControl>>,
    /// When the current (or last) attempt started.
    pub(crate) attempt_started: Option<Instant>,
    callbacks: Vec<DoneCallback>,
}

/// Counts the tasks of one queue whose state is in memory ([`Stats::live_tasks`](super::Stats)).
#[derive(Default)]
pub(crate) struct LiveCount(Arc<AtomicUsize>);

impl LiveCount {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn token(&self) -> LiveToken {
        self.0.fetch_add(1, Ordering::Relaxed);
        LiveToken(self.0.clone())
    }
}

/// One task counted in a [`LiveCount`] until its cell is dropped.
struct LiveToken(Arc<AtomicUsize>);

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One admitted task: shared by its handles, the queue and the worker running it. Once the
/// task is recorded, only handles (and groups) keep it: the queue lets go of it.
pub(crate) struct TaskCell {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) options: TaskOptions,
    pub(crate) seq: u64,
    pub(crate) created_at: Instant,
    pub(crate) scheduled_for: Option<Instant>,
    pub(crate) work: Work,
    pub(crate) state: Mutex<CellState>,
    /// What the current attempt's guest last said about its progress.
    pub(crate) progress: ProgressCell,
    done: Condvar,
    result: OnceLock<Arc<TaskResult>>,
    cancel_requested: AtomicBool,
    /// In the ready queue, waiting for a worker. Changed only under the queue lock: it tells
    /// a pickup from a cancellation in place, whichever comes first.
    pub(crate) queued: AtomicBool,
    /// Wakes a retry delay or rate wait when the task is cancelled.
    pub(crate) wake: Condvar,
    /// The same, for async waiters; also wakes async handle waiters on completion.
    pub(crate) notify: tokio::sync::Notify,
    _live: LiveToken,
}

impl TaskCell {
    pub(crate) fn new(
        admission: Admission,
        seq: u64,
        scheduled_for: Option<Instant>,
        live: &LiveCount,
    ) -> Self {
        let Admission {
            work,
            options,
            on_done,
        } = admission;
        let name = options.name.clone().unwrap_or_else(|| work.default_name());
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name,
            options,
            seq,
            created_at: Instant::now(),
            scheduled_for,
            work,
            state: Mutex::new(CellState {
                status: TaskStatus::Pending,
                attempts: 0,
                started_at: None,
                started_wall: None,
                fuel: None,
                control: None,
                attempt_started: None,
                callbacks: on_done.into_iter().collect(),
            }),
            progress: ProgressCell::new(),
            done: Condvar::new(),
            result: OnceLock::new(),
            cancel_requested: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            wake: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            _live: live.token(),
        }
    }

    pub(crate) fn result(&self) -> Option<&Arc<TaskResult>> {
        self.result.get()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.result.get().is_some()
    }

    pub(crate) fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Acquire)
    }

    /// Flags the task as cancelled and interrupts its running attempt, if any.
    pub(crate) fn request_cancel(&self) {
        self.cancel_requested.store(true, Ordering::Release);
        let state = self.state.lock();
        if let Some(control) = &state.control {
            control.cancel();
        }
        drop(state);
        self.wake.notify_all();
        self.notify.notify_waiters();
    }

    /// Resolves once the task is flagged cancelled.
    pub(crate) async fn cancelled(&self) {
        wait::notified(&self.notify, || self.cancel_requested().then_some(())).await
    }

    /// Resolves once the task has its result.
    pub(crate) async fn finished(&self) -> Arc<TaskResult> {
        wait::notified(&self.notify, || self.result.get().cloned()).await
    }

    /// Blocks until the task has its result, or `deadline` passes.
    pub(crate) fn wait_done(&self, deadline: Option<Instant>) -> Option<Arc<TaskResult>> {
        let mut state = self.state.lock();
        wait::blocking_until(&self.done, &mut state, deadline, |_| {
            self.result.get().cloned()
        })
    }

    /// Sleeps until `until` unless the task is cancelled first: false if it was.
    pub(crate) fn sleep_until(&self, until: Instant) -> bool {
        let mut state = self.state.lock();
        let cancelled = wait::blocking_until(&self.wake, &mut state, Some(until), |_| {
            self.cancel_requested().then_some(())
        });
        cancelled.is_none()
    }

    /// Sets the result once (§6 step 1–3). Returns false if a result already existed.
    pub(crate) fn complete(self: &Arc<Self>, result: Arc<TaskResult>, core: &Weak<Core>) -> bool {
        let status = result.status;
        if self.result.set(result).is_err() {
            return false;
        }
        let callbacks = {
            let mut state = self.state.lock();
            state.status = status;
            state.control = None;
            std::mem::take(&mut state.callbacks)
        };
        self.done.notify_all();
        self.wake.notify_all();
        self.notify.notify_waiters();
        if !callbacks.is_empty() {
            let handle = Handle {
                cell: self.clone(),
                core: core.clone(),
            };
            for callback in callbacks {
                if std::panic::catch_unwind(AssertUnwindSafe(|| callback(&handle))).is_err() {
                    tracing::error!("done callback panicked for task {}", self.id);
                }
            }
        }
        true
    }
}

/// The caller's view of one submitted task. Cheap to clone, `Send + Sync`, and may outlive
/// its queue. It keeps its task (the input, and the result once done) for as long as it is
/// held; once the task is recorded, handles are all that keep it.
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::{TaskOptions, TaskStatus};
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
/// let queue = ThreadQueue::builder().build()?;
/// let handle = queue.submit(echo.with_input(json!(7)), TaskOptions::new().name("seven"))?;
/// assert_eq!(handle.status(), TaskStatus::Pending);
/// handle.add_done_callback(|h| println!("{} is done", h.name()));
/// queue.run()?;
/// let result = handle.wait();
/// assert_eq!(result.attempts, 1);
/// assert_eq!(handle.value()?, json!(7));
/// assert!(!handle.cancel(), "a finished task cannot be cancelled");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) cell: Arc<TaskCell>,
    pub(crate) core: Weak<Core>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("task_id", &self.cell.id)
            .field("name", &self.cell.name)
            .field("status", &self.status())
            .finish()
    }
}

impl Handle {
    /// 32 lowercase hex digits.
    pub fn task_id(&self) -> &str {
        &self.cell.id
    }

    /// The task name.
    pub fn name(&self) -> &str {
        &self.cell.name
    }

    /// The priority.
    pub fn priority(&self) -> i32 {
        self.cell.options.priority
    }

    /// Whether it survives sparing aborts.
    pub fn must_complete(&self) -> bool {
        self.cell.options.must_complete
    }

    /// Admission time.
    pub fn created_at(&self) -> Instant {
        self.cell.created_at
    }

    /// The group label.
    pub fn group_id(&self) -> Option<&str> {
        self.cell.options.group_id.as_deref()
    }

    /// Whether it is left out of run summaries.
    pub fn detached(&self) -> bool {
        self.cell.options.detached
    }

    /// When it becomes ready, if it was scheduled.
    pub fn scheduled_for(&self) -> Option<Instant> {
        self.cell.scheduled_for
    }

    /// Metadata from the options.
    pub fn metadata(&self) -> &Value {
        &self.cell.options.metadata
    }

    /// What the guest of the current (or last) attempt last said about its progress
    /// (`progress(done, total)` of the WIT contract); `None` before it said anything. A
    /// retry starts over. See [`QueueBuilder::on_progress`](super::QueueBuilder::on_progress)
    /// to be told as it changes.
    pub fn progress(&self) -> Option<Progress> {
        self.cell.progress.latest()
    }

    /// The options it was submitted with.
    pub fn options(&self) -> &TaskOptions {
        &self.cell.options
    }

    /// Current status.
    pub fn status(&self) -> TaskStatus {
        self.cell.state.lock().status
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.cell.state.lock().attempts
    }

    /// Whether it has a final result.
    pub fn is_done(&self) -> bool {
        self.cell.is_done()
    }

    /// Whether it ended cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cell
            .result()
            .is_some_and(|r| r.status == TaskStatus::Cancelled)
    }

    /// The result, once final (always the same `Arc`).
    pub fn result(&self) -> Option<Arc<TaskResult>> {
        self.cell.result().cloned()
    }

    /// The failure, if it failed.
    pub fn error(&self) -> Option<TaskFailure> {
        self.cell.result().and_then(|r| r.error.clone())
    }

    /// The value (the JSON the task returned: [`Json::get`] parses it); or the failure, a
    /// cancellation, or "result not ready".
    pub fn value(&self) -> Result<Json, Error> {
        let result = self.cell.result().ok_or_else(Error::not_ready)?;
        result_value(result)
    }

    /// Cancels the task (docs/queues.md §8.2). Returns true if it was not finished yet.
    pub fn cancel(&self) -> bool {
        match self.core.upgrade() {
            Some(core) => core.cancel_task(&self.cell),
            None => false,
        }
    }

    /// Calls `f` once the task is done (at once, on this thread, if it already is).
    pub fn add_done_callback(&self, f: impl FnOnce(&Handle) + Send + 'static) {
        {
            let mut state = self.cell.state.lock();
            if !self.cell.is_done() {
                state.callbacks.push(Box::new(f));
                return;
            }
        }
        f(self);
    }

    /// Waits for the result from async code, on any runtime (also: `handle.await`).
    pub async fn wait_async(&self) -> Arc<TaskResult> {
        self.cell.finished().await
    }

    /// Blocks until the task is done. Do not call it on a runtime thread; use `.await`.
    pub fn wait(&self) -> Arc<TaskResult> {
        match self.cell.wait_done(None) {
            Some(result) => result,
            None => unreachable!("a wait without a deadline ends only with the result"),
        }
    }

    /// Blocks until the task is done or `timeout` passes (`Error::WaitTimeout`).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Arc<TaskResult>, Error> {
        self.cell
            .wait_done(Instant::now().checked_add(timeout))
            .ok_or_else(Error::not_ready)
    }
}

pub(crate) fn result_value(result: &TaskResult) -> Result<Json, Error> {
    match result.status {
        TaskStatus::Succeeded => Ok(result.value.clone().unwrap_or_else(Json::null)),
        TaskStatus::Cancelled => Err(Error::Cancelled(result.message.clone())),
        _ => Err(Error::Failed(result.error.clone().unwrap_or_else(|| {
            TaskFailure::new(crate::FailureKind::Failed, result.message.clone())
        }))),
    }
}

impl std::future::IntoFuture for Handle {
    type Output = Arc<TaskResult>;
    type IntoFuture = futures::future::BoxFuture<'static, Arc<TaskResult>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.cell.finished().await })
    }
}
