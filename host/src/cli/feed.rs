//! Feeding a queue job by job: each job is resolved and submitted as it is read, with at most
//! a window of submitted tasks unfinished, so that the host holds a bounded number of inputs
//! however long the run (a finite run of millions of lines, or an endless stream). A bad job
//! is reported on stderr and skipped; a queue that stops taking work (fail-first, a run
//! timeout) or a stopped run (a signal, an output failure) ends the feeding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::anyhow;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{Error as QueueError, Handle, Queue};
use parking_lot::{Condvar, Mutex};

use super::jobs::{JobSpec, Origin};
use super::work::{CheckpointPlan, Resolver, Submission};

/// The most submitted tasks left unfinished (or twice the workers, if more): enough read
/// ahead to keep every worker busy, and a bound on what the queue holds — a few hundred bytes
/// a task, so about a megabyte, reached within the first few thousand tasks: a run of a
/// million tasks holds what a run of ten thousand does.
pub(crate) const WINDOW_TASKS: usize = 4_096;
/// The most input bytes (as read) of unfinished tasks: parsed, up to about 16 times as much.
/// A larger job still goes, alone.
pub(crate) const WINDOW_BYTES: usize = 16 << 20;

/// Jobs, read as they are needed.
pub(crate) type Jobs = Box<dyn Iterator<Item = anyhow::Result<JobSpec>> + Send>;

/// Room for unfinished tasks, counted in tasks and input bytes.
pub(crate) struct Window {
    state: Mutex<WindowState>,
    room: Condvar,
    max_tasks: usize,
}

#[derive(Default)]
struct WindowState {
    tasks: usize,
    bytes: usize,
    closed: bool,
    /// The input bytes of the job a feeder waits to submit, while it waits.
    waiting: Option<usize>,
}

impl Window {
    /// A window of `max_tasks` tasks (at least [`WINDOW_TASKS`]) and [`WINDOW_BYTES`].
    pub(crate) fn new(max_tasks: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(WindowState::default()),
            room: Condvar::new(),
            max_tasks: max_tasks.max(WINDOW_TASKS),
        })
    }

    /// Waits for room for a task of `bytes`; false once the window is closed. A feeder that
    /// found the window full waits until a quarter of it is free (or its job fits in the
    /// bytes left), so that it wakes once per batch of finished tasks, not once per task.
    fn enter(&self, bytes: usize) -> bool {
        let mut state = self.state.lock();
        if !state.closed && state.tasks > 0 && !self.fits(&state, bytes, self.max_tasks) {
            state.waiting = Some(bytes);
            while !state.closed && state.tasks > 0 && !self.fits(&state, bytes, self.low()) {
                self.room.wait(&mut state);
            }
            state.waiting = None;
        }
        if state.closed {
            return false;
        }
        state.tasks += 1;
        state.bytes += bytes;
        true
    }

    /// Whether a task of `bytes` fits with fewer than `max_tasks` tasks in.
    fn fits(&self, state: &WindowState, bytes: usize, max_tasks: usize) -> bool {
        state.tasks < max_tasks && state.bytes + bytes <= WINDOW_BYTES
    }

    /// Below this many tasks, a waiting feeder goes on.
    fn low(&self) -> usize {
        self.max_tasks - self.max_tasks / 4
    }

    /// A task of `bytes` finished (or was never submitted).
    fn leave(&self, bytes: usize) {
        let mut state = self.state.lock();
        state.tasks -= 1;
        state.bytes -= bytes;
        let wake = state
            .waiting
            .is_some_and(|waiting| state.tasks == 0 || self.fits(&state, waiting, self.low()));
        drop(state);
        if wake {
            self.room.notify_one();
        }
    }

    /// Wakes a feeder waiting for room and lets no more in: the run is stopping.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.room.notify_all();
    }
}

/// How a feeding ended.
pub(crate) enum Fed {
    /// Every job was read.
    Ended,
    /// The run was stopped (a signal, an output failure).
    Stopped,
    /// The queue stopped taking work before this job.
    Closed(Origin),
}

/// Submits jobs to a started queue.
pub(crate) struct Feeder<B: Backend> {
    pub(crate) queue: Arc<Queue<B>>,
    pub(crate) resolver: Resolver,
    pub(crate) plan: Option<CheckpointPlan>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) window: Arc<Window>,
    /// Lines reported and skipped.
    pub(crate) skipped: Arc<AtomicUsize>,
}

impl<B: Backend> Feeder<B> {
    /// Feeds every job, in order, and returns how it ended. Every handle (a restored one
    /// included, done already) is passed to `submitted` as it is admitted, in input order;
    /// none is kept.
    pub(crate) fn feed(&mut self, jobs: Jobs, submitted: &dyn Fn(&Handle)) -> Fed {
        for spec in jobs {
            if self.stop.load(Ordering::SeqCst) {
                return Fed::Stopped;
            }
            let spec = match spec {
                Ok(spec) => spec,
                Err(error) => {
                    self.skip(&error);
                    continue;
                }
            };
            let (origin, bytes) = (spec.origin.clone(), spec.bytes);
            let submission = match self.resolver.resolve(spec) {
                Ok(submission) => submission,
                Err(error) => {
                    self.skip(&error);
                    continue;
                }
            };
            if !self.window.enter(bytes) {
                return Fed::Stopped;
            }
            match futures::executor::block_on(self.submit_one(submission)) {
                Ok(handle) => {
                    let window = self.window.clone();
                    handle.add_done_callback(move |_| window.leave(bytes));
                    submitted(&handle);
                }
                Err(error) => {
                    self.window.leave(bytes);
                    match error {
                        QueueError::Closed(_) => {
                            let fed = match self.stop.load(Ordering::SeqCst) {
                                true => Fed::Stopped,
                                false => Fed::Closed(origin),
                            };
                            return fed;
                        }
                        error => self.skip(&anyhow!("{origin}: {error}")),
                    }
                }
            }
        }
        Fed::Ended
    }

    /// Feeds a stream until it ends, then shuts the queue down gracefully once everything
    /// has finished (infinite mode).
    pub(crate) fn run(mut self, jobs: Jobs, submitted: &dyn Fn(&Handle)) {
        let fed = self.feed(jobs, submitted);
        if matches!(fed, Fed::Ended) && !self.stop.load(Ordering::SeqCst) {
            self.queue.shutdown();
        }
    }

    fn skip(&self, error: &anyhow::Error) {
        use std::io::Write as _;
        self.skipped.fetch_add(1, Ordering::SeqCst);
        let message = osiiso_host::text::escape_control_keep_newlines(&format!("{error:#}"));
        let _ = writeln!(std::io::stderr(), "error: {message} (skipped)");
    }

    async fn submit_one(&self, (call, options): Submission) -> Result<Handle, QueueError> {
        let Some(plan) = &self.plan else {
            return self.queue.submit_async(call, options).await;
        };
        loop {
            let item = vec![(call.clone(), options.clone())];
            match self
                .queue
                .submit_checkpointed(item, &plan.checkpoint, &plan.namespace, &plan.key)
            {
                // A bounded async queue is full: wait a moment for room.
                Err(QueueError::QueueFull(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                // One handle per item, always.
                Ok(mut handles) => return Ok(handles.pop().expect("one handle for one item")),
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_window_holds_a_feeder_back_until_tasks_finish_or_it_closes() {
        let window = Window::new(0);
        // One task always goes, however large.
        assert!(window.enter(WINDOW_BYTES * 2));
        let (started, waiting) = (window.clone(), Arc::new(AtomicBool::new(true)));
        let flag = waiting.clone();
        let feeder = std::thread::spawn(move || {
            let entered = started.enter(1);
            flag.store(false, Ordering::SeqCst);
            entered
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(waiting.load(Ordering::SeqCst), "over the byte window");
        window.leave(WINDOW_BYTES * 2);
        assert!(feeder.join().unwrap());
        window.close();
        assert!(!window.enter(1), "a closed window lets nothing in");
    }

    #[test]
    fn a_feeder_waiting_on_a_full_window_goes_on_once_a_quarter_is_free() {
        let window = Window::new(0);
        for _ in 0..WINDOW_TASKS {
            assert!(window.enter(0));
        }
        let (blocked, waiting) = (window.clone(), Arc::new(AtomicBool::new(true)));
        let flag = waiting.clone();
        let feeder = std::thread::spawn(move || {
            let entered = blocked.enter(0);
            flag.store(false, Ordering::SeqCst);
            entered
        });
        while window.state.lock().waiting.is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..WINDOW_TASKS / 4 {
            window.leave(0);
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            waiting.load(Ordering::SeqCst),
            "three quarters are still in"
        );
        window.leave(0);
        assert!(feeder.join().unwrap());
        assert_eq!(window.state.lock().tasks, WINDOW_TASKS - WINDOW_TASKS / 4);
    }

    #[test]
    fn the_window_counts_tasks() {
        let window = Window::new(0);
        for _ in 0..WINDOW_TASKS {
            assert!(window.enter(0));
        }
        let blocked = window.clone();
        let feeder = std::thread::spawn(move || blocked.enter(0));
        window.close();
        assert!(!feeder.join().unwrap(), "woken by close, not let in");
    }
}
