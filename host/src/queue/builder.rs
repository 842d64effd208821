//! Queue configuration and its builder (docs/queues.md §2.2). The options every queue has live
//! here; a backend's own options are its [`Backend::Options`], set with
//! [`QueueBuilder::backend_options`] or the backend's builder methods.

use std::sync::Arc;
use std::time::Duration;

use super::backend::{Backend, QueueSettings};
use super::error::Error;
use super::handle::Handle;
use super::options::{FailPolicy, Mode, OnExit, Retention, Workers};
use super::result::TaskResult;
use crate::failure::TaskFailure;
use crate::metrics::Metrics;
use crate::progress::Progress;

/// `on_start(handle)`: after the rate wait, before each attempt
/// ([`QueueBuilder::on_start`]).
pub type OnStart = Arc<dyn Fn(&Handle) + Send + Sync>;
/// `on_complete(result)`: once per task, for every outcome ([`QueueBuilder::on_complete`]).
pub type OnComplete = Arc<dyn Fn(&TaskResult) + Send + Sync>;
/// `on_retry(handle, failure)`: after a failed attempt that will be retried
/// ([`QueueBuilder::on_retry`]).
pub type OnRetry = Arc<dyn Fn(&Handle, &TaskFailure) + Send + Sync>;

/// `on_progress(handle, progress)`: a running attempt reported its progress (coalesced: at
/// most one call per [`PROGRESS_INTERVAL`](crate::PROGRESS_INTERVAL) per attempt,
/// plus the last value when the attempt ends; [`QueueBuilder::on_progress`]).
pub type OnProgress = Arc<dyn Fn(&Handle, Progress) + Send + Sync>;

/// A validated queue configuration.
#[derive(Clone)]
pub(crate) struct QueueConfig {
    pub(crate) workers: Workers,
    pub(crate) size: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) mode: Mode,
    pub(crate) fail_policy: FailPolicy,
    pub(crate) on_exit: OnExit,
    pub(crate) rate: Option<f64>,
    pub(crate) burst: u32,
    pub(crate) poll: Duration,
    pub(crate) retire_idle_after: Duration,
    pub(crate) on_start: Option<OnStart>,
    pub(crate) on_complete: Option<OnComplete>,
    pub(crate) on_retry: Option<OnRetry>,
    pub(crate) on_progress: Option<OnProgress>,
    /// Where the queue counts what it does.
    pub(crate) metrics: Option<Metrics>,
    pub(crate) retention: Retention,
    /// The `Auto` worker limit of this backend.
    pub(crate) auto_limit: usize,
    /// Worker threads per worker ([`Backend::attempts_per_worker`]).
    pub(crate) threads_per_worker: usize,
}

impl QueueConfig {
    /// What the backend learns of the queue.
    pub(crate) fn settings(&self) -> QueueSettings {
        QueueSettings {
            poll: self.poll,
            workers: self.workers,
            slots: match self.workers {
                Workers::Fixed(n) => n,
                Workers::Auto => self.auto_limit,
            },
        }
    }
}

/// Builds a queue: `ThreadQueue::builder()`, `AsyncQueue::builder()`, ... Every option has
/// the default of docs/queues.md §2.2; [`build`](Self::build) checks them.
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::{FailPolicy, Retention, TaskOptions, Workers};
/// use serde_json::json;
/// use std::time::Duration;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let plugin = Host::new()?.load(echo_wasm)?;
/// let queue = ThreadQueue::builder()
///     .workers(Workers::Fixed(1))
///     .size(1_000) // `submit` waits while 1000 tasks are outstanding
///     .timeout(Duration::from_secs(300)) // for each `run()`
///     .rate(500.0) // attempts per second, all workers together
///     .fail_policy(FailPolicy::FailFirst)
///     .retention(Retention::Counts)
///     .build()?;
/// queue.submit(plugin.task("fail")?.with_input(json!("permanent")), TaskOptions::new())?;
/// queue.map(&plugin.task("echo")?, [json!(1), json!(2)], TaskOptions::new())?;
/// let summary = queue.run()?;
/// // The first failure halted the queue: the tasks that had not started are cancelled.
/// assert_eq!((summary.failed, summary.cancelled), (1, 2));
///
/// assert!(ThreadQueue::builder().workers(Workers::Fixed(0)).build().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct QueueBuilder<B: Backend> {
    pub(crate) config: QueueConfig,
    pub(crate) options: B::Options,
}

impl<B: Backend> Clone for QueueBuilder<B> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            options: self.options.clone(),
        }
    }
}

impl<B: Backend> Default for QueueBuilder<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> QueueBuilder<B> {
    /// The defaults: auto workers, unbounded, finite, continue on failure.
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            options: B::Options::default(),
            config: QueueConfig {
                workers: Workers::Auto,
                size: 0,
                timeout: None,
                mode: Mode::Finite,
                fail_policy: FailPolicy::Continue,
                on_exit: OnExit::CompletePriority,
                rate: None,
                burst: 1,
                poll: Duration::from_millis(50),
                retire_idle_after: Duration::from_secs(30),
                on_start: None,
                on_complete: None,
                on_retry: None,
                on_progress: None,
                metrics: None,
                retention: Retention::All,
                auto_limit: B::auto_limit(cpus),
                threads_per_worker: 1,
            },
        }
    }

    /// The backend's own options (see [`Backend::Options`]).
    pub fn backend_options(mut self, options: B::Options) -> Self {
        self.options = options;
        self
    }

    /// Fixed or auto-scaled workers.
    pub fn workers(mut self, workers: Workers) -> Self {
        self.config.workers = workers;
        self
    }

    /// Maximum outstanding tasks (0 = unbounded).
    pub fn size(mut self, size: usize) -> Self {
        self.config.size = size;
        self
    }

    /// Limit per `run()`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Finite or infinite.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Continue or fail-first.
    pub fn fail_policy(mut self, policy: FailPolicy) -> Self {
        self.config.fail_policy = policy;
        self
    }

    /// What a run timeout cancels.
    pub fn on_exit(mut self, on_exit: OnExit) -> Self {
        self.config.on_exit = on_exit;
        self
    }

    /// Attempts per second, shared by all workers.
    pub fn rate(mut self, rate: f64) -> Self {
        self.config.rate = Some(rate);
        self
    }

    /// Attempts that may pass at once after an idle period (default 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.config.burst = burst;
        self
    }

    /// How quickly cancellations and deadlines reach running work (default 50 ms).
    pub fn poll(mut self, poll: Duration) -> Self {
        self.config.poll = poll;
        self
    }

    /// Idle time after which surplus auto workers retire in infinite mode (default 30 s).
    pub fn retire_idle_after(mut self, after: Duration) -> Self {
        self.config.retire_idle_after = after;
        self
    }

    /// What the queue keeps of recorded results: every one (the default), or counts only,
    /// for runs of any length in flat memory (docs/queues.md §9.3).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.config.retention = retention;
        self
    }

    /// Called before each attempt (after the rate wait), on the thread or task that runs it:
    /// a retried task starts once per attempt. Keep it short; it delays the attempt.
    ///
    /// A hook that panics is logged and ignored, as with every hook.
    ///
    /// ```
    /// use osiiso_host::{Host, ThreadQueue};
    /// use osiiso_host::queue::TaskOptions;
    /// use serde_json::json;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// # let echo_wasm = osiiso_test_artifacts::ECHO;
    /// // The `fail` task of the echo plugin fails (retryably) on every attempt.
    /// let fail = Host::new()?.load(echo_wasm)?.task("fail")?;
    /// let starts = Arc::new(AtomicU32::new(0));
    /// let counter = starts.clone();
    /// let queue = ThreadQueue::builder()
    ///     .on_start(move |handle| {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///         println!("{} starts attempt {}", handle.name(), handle.attempts());
    ///     })
    ///     .build()?;
    /// let handle = queue.submit(fail.with_input(json!("failed")), TaskOptions::new().retries(2))?;
    /// queue.run()?;
    /// assert_eq!(starts.load(Ordering::Relaxed), 3, "the first attempt and two retries");
    /// assert_eq!(handle.wait().attempts, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_start(mut self, f: impl Fn(&Handle) + Send + Sync + 'static) -> Self {
        self.config.on_start = Some(Arc::new(f));
        self
    }

    /// Called once per task with its final result, whatever the outcome: succeeded, failed
    /// or cancelled (a task cancelled before it started included). It runs before `run()`
    /// returns the summary that counts the task.
    ///
    /// ```
    /// use osiiso_host::{Host, ThreadQueue};
    /// use osiiso_host::queue::{TaskOptions, TaskStatus};
    /// use serde_json::json;
    /// use std::sync::{Arc, Mutex};
    /// # let echo_wasm = osiiso_test_artifacts::ECHO;
    /// let plugin = Host::new()?.load(echo_wasm)?;
    /// let finished = Arc::new(Mutex::new(Vec::new()));
    /// let log = finished.clone();
    /// let queue = ThreadQueue::builder()
    ///     .on_complete(move |result| log.lock().unwrap().push((result.name.clone(), result.status)))
    ///     .build()?;
    /// let echo = plugin.task("echo")?.with_input(json!("hi"));
    /// let fail = plugin.task("fail")?.with_input(json!("permanent"));
    /// queue.submit(echo, TaskOptions::new().name("greeting"))?;
    /// queue.submit(fail, TaskOptions::new().name("doomed"))?;
    /// queue.run()?;
    ///
    /// let mut finished = finished.lock().unwrap().clone();
    /// finished.sort_by(|a, b| a.0.cmp(&b.0));
    /// assert_eq!(finished, [
    ///     ("doomed".to_string(), TaskStatus::Failed),
    ///     ("greeting".to_string(), TaskStatus::Succeeded),
    /// ]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_complete(mut self, f: impl Fn(&TaskResult) + Send + Sync + 'static) -> Self {
        self.config.on_complete = Some(Arc::new(f));
        self
    }

    /// Called after a failed attempt that will be retried, with the attempt's failure; the
    /// last failure of a task that runs out of retries goes to
    /// [`on_complete`](Self::on_complete) instead. Only retryable failures are retried
    /// ([`FailureKind::is_retryable`](crate::FailureKind::is_retryable)).
    ///
    /// ```
    /// use osiiso_host::{FailureKind, Host, ThreadQueue};
    /// use osiiso_host::queue::TaskOptions;
    /// use serde_json::json;
    /// use std::sync::{Arc, Mutex};
    /// # let echo_wasm = osiiso_test_artifacts::ECHO;
    /// // The `fail` task of the echo plugin fails with the kind it is given.
    /// let fail = Host::new()?.load(echo_wasm)?.task("fail")?;
    /// let retried = Arc::new(Mutex::new(Vec::new()));
    /// let log = retried.clone();
    /// let queue = ThreadQueue::builder()
    ///     .on_retry(move |handle, failure| {
    ///         log.lock().unwrap().push((handle.name().to_string(), failure.kind));
    ///     })
    ///     .build()?;
    /// let options = TaskOptions::new().retries(2);
    /// queue.submit(fail.with_input(json!("failed")), options.clone().name("flaky"))?;
    /// queue.submit(fail.with_input(json!("permanent")), options.name("hopeless"))?;
    /// queue.run()?;
    /// // Two retries of the retryable failure; none of the permanent one.
    /// let retried = retried.lock().unwrap();
    /// assert_eq!(*retried, vec![("flaky".to_string(), FailureKind::Failed); 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_retry(mut self, f: impl Fn(&Handle, &TaskFailure) + Send + Sync + 'static) -> Self {
        self.config.on_retry = Some(Arc::new(f));
        self
    }

    /// Called with a running attempt's guest progress (`progress(done, total)` of the WIT
    /// contract), coalesced: at most one call per
    /// [`PROGRESS_INTERVAL`](crate::PROGRESS_INTERVAL) per attempt, plus the last
    /// value once the attempt ends, however often the guest reports.
    /// [`Handle::progress`] has the latest value at any time.
    ///
    /// ```
    /// use osiiso_host::{Host, Progress, ThreadQueue};
    /// use osiiso_host::queue::TaskOptions;
    /// use serde_json::json;
    /// use std::sync::{Arc, Mutex};
    /// # let score_wasm = osiiso_test_artifacts::SCORE;
    /// // `score(n)` reports `progress(i, n)` every million steps.
    /// let score = Host::new()?.load(score_wasm)?.task("score")?;
    /// let heard = Arc::new(Mutex::new(Vec::new()));
    /// let log = heard.clone();
    /// let queue = ThreadQueue::builder()
    ///     .on_progress(move |handle, progress| {
    ///         println!("{}: {progress}", handle.name());
    ///         log.lock().unwrap().push(progress);
    ///     })
    ///     .build()?;
    /// let handle = queue.submit(score.with_input(json!(3_000_000)), TaskOptions::new())?;
    /// queue.run()?;
    /// // However the calls were coalesced, the last one has the attempt's last report.
    /// let heard = heard.lock().unwrap();
    /// assert_eq!(heard.last(), Some(&Progress::new(3_000_000, 3_000_000)));
    /// assert_eq!(handle.progress(), Some(Progress::new(3_000_000, 3_000_000)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_progress(mut self, f: impl Fn(&Handle, Progress) + Send + Sync + 'static) -> Self {
        self.config.on_progress = Some(Arc::new(f));
        self
    }

    /// Counts what the queue does into `metrics` (tasks submitted, queued, running,
    /// finished by status and kind, retries, attempt durations, throughput): see
    /// [`crate::metrics`]. Several queues may share one [`Metrics`].
    pub fn metrics(mut self, metrics: &Metrics) -> Self {
        self.config.metrics = Some(metrics.clone());
        self
    }

    /// Checks the options in the order of docs/queues.md §2.2.
    pub fn validate(&self) -> Result<(), Error> {
        let c = &self.config;
        let invalid = |option: &'static str, message: &str| Err(Error::invalid(option, message));
        if c.workers == Workers::Fixed(0) {
            return invalid("workers", "workers must be > 0");
        }
        let max = B::MAX_WORKERS;
        if let Workers::Fixed(n) = c.workers
            && n > max
        {
            return Err(Error::invalid(
                "workers",
                format!("workers must be <= {max} on the {} backend", B::NAME),
            ));
        }
        if c.timeout == Some(Duration::ZERO) {
            return invalid("timeout", "timeout must be > 0");
        }
        if let Some(rate) = c.rate {
            if rate.is_nan() || rate <= 0.0 {
                return invalid("rate", "rate must be > 0");
            }
            if rate.is_infinite() {
                return invalid("rate", "rate must be finite");
            }
        }
        if c.burst < 1 {
            return invalid("burst", "burst must be >= 1");
        }
        if c.poll.is_zero() {
            return invalid("poll", "poll must be > 0");
        }
        if c.retire_idle_after.is_zero() {
            return invalid("retire_idle_after", "retire_idle_after must be > 0");
        }
        Ok(())
    }

    /// Validates the options and builds the queue. Workers start with `start()` or `run()`.
    pub fn build(self) -> Result<super::Queue<B>, Error> {
        self.validate()?;
        super::Queue::from_builder(self)
    }
}
