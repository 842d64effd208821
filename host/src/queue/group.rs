//! Groups, bound tasks and completion-order iteration (docs/queues.md §8.3–§8.4).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Queue;
use super::backend::Backend;
use super::error::{Error, ExecutionError};
use super::handle::{Handle, result_value};
use super::options::TaskOptions;
use super::result::TaskStatus;
use super::summary::RunSummary;
use crate::engine::Task;
use crate::json::Json;

/// Tasks submitted together, with one group id: what [`Queue::map`] (one task over many
/// inputs) and [`Queue::group`] (any tasks) return. Wait for the members together, read
/// their values in input order, or cancel them all. Cloning is cheap (it clones the handles).
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::TaskOptions;
/// use serde_json::json;
/// # let double_wasm = osiiso_test_artifacts::DOUBLE;
/// let double = Host::new()?.load(double_wasm)?.task("double")?;
/// let queue = ThreadQueue::builder().build()?;
/// queue.start()?;
///
/// let group = queue.map(&double, (1..=3).map(|n| json!(n)), TaskOptions::new())?;
/// assert_eq!(group.len(), 3);
/// assert!(group.iter().all(|h| h.group_id() == Some(group.group_id())));
/// let summary = group.wait();
/// assert_eq!(summary.succeeded, 3);
/// assert_eq!(group.values()?, [json!(2), json!(4), json!(6)]);
///
/// // Any tasks, under an id of your own; `values` fails if any member did.
/// let mixed = queue.group(
///     vec![double.with_input(json!(21)), double.with_input(json!(i64::MAX))],
///     TaskOptions::new().group_id("batch-7"),
/// )?;
/// assert_eq!(mixed.group_id(), "batch-7");
/// assert_eq!((mixed.wait().succeeded, mixed.wait().failed), (1, 1));
/// assert!(mixed.values().is_err(), "doubling i64::MAX overflows");
/// queue.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// In async code, [`wait_async`](Self::wait_async) waits without blocking a thread, and
/// [`as_completed_stream`] yields the members as they finish.
#[derive(Debug, Clone)]
pub struct Group {
    group_id: String,
    handles: Vec<Handle>,
}

impl Group {
    pub(crate) fn new(group_id: String, handles: Vec<Handle>) -> Self {
        Self { group_id, handles }
    }

    /// The group id written into every member's options.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The handles, in submission order.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether the group is empty.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Iterates the handles in submission order.
    pub fn iter(&self) -> std::slice::Iter<'_, Handle> {
        self.handles.iter()
    }

    /// Cancels every member; returns how many cancellations took.
    pub fn cancel(&self) -> usize {
        self.handles.iter().filter(|h| h.cancel()).count()
    }

    /// Waits for every member; the summary lists them in submission order.
    pub fn wait(&self) -> RunSummary {
        let start = Instant::now();
        let results = self.handles.iter().map(Handle::wait).collect();
        RunSummary::from_results(results, start, false)
    }

    /// Waits asynchronously for every member; the summary lists them in submission order.
    pub async fn wait_async(&self) -> RunSummary {
        let start = Instant::now();
        let mut results = Vec::with_capacity(self.handles.len());
        for handle in &self.handles {
            results.push(handle.wait_async().await);
        }
        RunSummary::from_results(results, start, false)
    }

    /// Like [`wait`](Self::wait), with one budget for the whole group.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<RunSummary, Error> {
        let start = Instant::now();
        let deadline = start.checked_add(timeout);
        let mut results = Vec::with_capacity(self.handles.len());
        for handle in &self.handles {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            results.push(handle.wait_timeout(left)?);
        }
        Ok(RunSummary::from_results(results, start, false))
    }

    /// The values in input order, or `Error::Execution` if any member failed or was cancelled.
    pub fn values(&self) -> Result<Vec<Json>, Error> {
        let results: Vec<_> = self.handles.iter().map(Handle::wait).collect();
        let offending: Vec<_> = results
            .iter()
            .filter(|r| r.status != TaskStatus::Succeeded)
            .cloned()
            .collect();
        if !offending.is_empty() {
            return Err(ExecutionError { results: offending }.into());
        }
        results.iter().map(|r| result_value(r)).collect()
    }
}

impl<'a> IntoIterator for &'a Group {
    type Item = &'a Handle;
    type IntoIter = std::slice::Iter<'a, Handle>;
    fn into_iter(self) -> Self::IntoIter {
        self.handles.iter()
    }
}

/// A task bound to a queue with base options (`q.bind(task, opts)`).
pub struct BoundTask<'q, B: Backend> {
    queue: &'q Queue<B>,
    task: Task,
    options: TaskOptions,
}

impl<'q, B: Backend> BoundTask<'q, B> {
    pub(crate) fn new(queue: &'q Queue<B>, task: Task, options: TaskOptions) -> Self {
        Self {
            queue,
            task,
            options,
        }
    }

    /// Submits one input with the bound options, changed by `overrides` if given.
    pub fn submit(&self, input: Value, overrides: Option<TaskOptions>) -> Result<Handle, Error> {
        let options = overrides.unwrap_or_else(|| self.options.clone());
        self.queue.submit(self.task.with_input(input), options)
    }

    /// One task per input, as a group, with the bound options.
    pub fn map(&self, inputs: impl IntoIterator<Item = Value>) -> Result<Group, Error> {
        self.queue.map(&self.task, inputs, self.options.clone())
    }

    /// The bound options.
    pub fn options(&self) -> &TaskOptions {
        &self.options
    }
}

/// Yields handles in completion order; already-done handles first, in input order. With a
/// `timeout`, the iterator yields `Err(WaitTimeout)` once it runs out, and ends.
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::{TaskOptions, as_completed};
/// use serde_json::json;
/// use std::time::Duration;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
/// let queue = ThreadQueue::builder().build()?;
/// let group = queue.map(&echo, (0..5).map(|i| json!(i)), TaskOptions::new())?;
/// queue.start()?;
/// let mut seen = 0;
/// for handle in as_completed(group.handles(), Some(Duration::from_secs(30))) {
///     let handle = handle?;
///     println!("{} finished: {:?}", handle.task_id(), handle.value());
///     seen += 1;
/// }
/// assert_eq!(seen, 5);
/// queue.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn as_completed(handles: &[Handle], timeout: Option<Duration>) -> AsCompleted {
    let (tx, rx) = mpsc::channel();
    let mut ready = std::collections::VecDeque::new();
    let mut pending = 0;
    for handle in handles {
        if handle.is_done() {
            ready.push_back(handle.clone());
        } else {
            pending += 1;
            let tx = tx.clone();
            handle.add_done_callback(move |h| {
                let _ = tx.send(h.clone());
            });
        }
    }
    AsCompleted {
        ready,
        pending,
        rx,
        deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        expired: false,
    }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted {
    ready: std::collections::VecDeque<Handle>,
    pending: usize,
    rx: mpsc::Receiver<Handle>,
    deadline: Option<Instant>,
    expired: bool,
}

impl Iterator for AsCompleted {
    type Item = Result<Handle, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(handle) = self.ready.pop_front() {
            return Some(Ok(handle));
        }
        if self.pending == 0 || self.expired {
            return None;
        }
        let received = match self.deadline {
            Some(deadline) => self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok(),
            None => self.rx.recv().ok(),
        };
        match received {
            Some(handle) => {
                self.pending -= 1;
                Some(Ok(handle))
            }
            None => {
                self.expired = true;
                Some(Err(Error::WaitTimeout(
                    "handles did not complete within timeout",
                )))
            }
        }
    }
}

/// Yields handles as they complete, as a `Stream` (the async form of [`as_completed`]).
pub fn as_completed_stream(
    handles: &[Handle],
) -> impl futures::Stream<Item = Handle> + Send + 'static {
    use futures::stream::{FuturesUnordered, StreamExt};
    let (done, pending): (Vec<Handle>, Vec<Handle>) =
        handles.iter().cloned().partition(Handle::is_done);
    let pending: FuturesUnordered<_> = pending
        .into_iter()
        .map(|h| async move {
            h.wait_async().await;
            h
        })
        .collect();
    futures::stream::iter(done).chain(pending)
}
