//! The process backend: each worker slot owns one persistent subprocess that runs attempts
//! in fresh instances. The parent keeps every rule of the queue; this module only sends an
//! attempt, waits for its reply, and kills and respawns a worker that dies, hangs or talks
//! nonsense (docs/queues.md §10.4).

mod child;
mod init;
mod logs;
pub(crate) mod protocol;
pub(crate) mod worker_main;

pub use self::init::{WorkerHook, WorkerHooks, WorkerInit};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use self::child::{Event, InitError, PidRegistry, WorkerProcess};
use self::protocol::{Reply, Request, RunRequest, encode_frame};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::backend::remote::{AttemptSpec, outbound};
use crate::engine::Host;
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::backend::{
    Attempt, Backend, BackendError, BlockingRunner, QueueSettings, Runner,
};
use crate::queue::{Queue, QueueBuilder};

/// A queue whose workers are persistent, isolated subprocesses: for CPU-heavy parallel work,
/// crash containment and OS memory caps. It runs WASM tasks only (they must cross a process
/// boundary). Its initializer is data ([`WorkerInit`]) that each subprocess runs before its
/// first task.
///
/// What it keeps: every result, unless built with
/// [`.retention(Retention::Counts)`](crate::queue::QueueBuilder::retention), which keeps
/// counts only so that a run of any length stays flat; a [`Handle`](crate::queue::Handle) you
/// hold keeps its own task (docs/queues.md §9.3).
///
/// ```
/// use osiiso_host::ProcessQueue;
/// use osiiso_host::backend::{ProcessContext, WorkerInit};
/// use osiiso_host::queue::Workers;
///
/// // Subprocesses start lazily, at a slot's first task: building and running an empty queue
/// // starts none.
/// let queue = ProcessQueue::builder()
///     .workers(Workers::Fixed(2))
///     .worker_memory(512 << 20)
///     .context(ProcessContext::Default)
///     .initializer(WorkerInit::new().preload("plugins/score.wasm"))
///     .build()?;
/// assert!(queue.run()?.ok());
/// assert!(queue.worker_pids().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With tasks, in a program that is its own worker binary
/// ([`ProcessContext::CurrentExe`]): its `main` calls [`maybe_run_worker`](crate::maybe_run_worker)
/// first, which serves attempts and exits when the queue starts the program as a worker, and
/// returns at once otherwise. (The default context runs `osiiso-host worker` instead.)
///
/// ```standalone_crate
/// use osiiso_host::backend::ProcessContext;
/// use osiiso_host::queue::{TaskOptions, Workers};
/// use osiiso_host::{Host, ProcessQueue};
/// use serde_json::json;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     osiiso_host::maybe_run_worker();
///     # let double_wasm = osiiso_test_artifacts::DOUBLE;
///
///     let double = Host::new()?.load(double_wasm)?.task("double")?;
///     let queue = ProcessQueue::builder()
///         .workers(Workers::Fixed(2))
///         .context(ProcessContext::CurrentExe { args: Vec::new() })
///         .build()?;
///     let group = queue.map(&double, (1..=6).map(|n| json!(n)), TaskOptions::new())?;
///     let summary = queue.run()?;
///     assert_eq!(summary.succeeded, 6);
///     assert!(summary.results.iter().all(|r| r.backend == "process"));
///     assert_eq!(group.values()?, [2, 4, 6, 8, 10, 12].map(|n| json!(n)));
///     queue.shutdown();
///     assert!(queue.worker_pids().is_empty(), "shutdown ends the subprocesses");
///     Ok(())
/// }
/// ```
pub type ProcessQueue = Queue<Process>;

/// How worker subprocesses are started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProcessContext {
    /// The `osiiso-host` binary's hidden `worker` subcommand. The binary is the current
    /// executable if it is `osiiso-host`, else `$OSIISO_HOST_BIN`, else an `osiiso-host` next
    /// to (or one directory above) the current executable, else `osiiso-host` on `PATH`.
    #[default]
    Default,
    /// Re-executes the current binary with `args` plus the worker marker; its `main` must call
    /// [`crate::maybe_run_worker`] first.
    CurrentExe {
        /// Arguments placed before the marker.
        args: Vec<String>,
    },
    /// Any other command that serves the protocol (it is given the worker options as
    /// arguments after `args`).
    Command {
        /// The program.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables.
        env: Vec<(String, String)>,
    },
}

/// The grace a worker gets to report after a deadline or cancel, before it is killed.
fn grace(poll: Duration) -> Duration {
    poll.saturating_mul(2).max(Duration::from_millis(100))
}

/// The process backend (see [`ProcessQueue`]).
pub struct Process {
    options: ProcessOptions,
    poll: Duration,
    /// How many workers may run at once (their memory budgets share the host's).
    slots: usize,
    next_attempt: AtomicU64,
    /// Subprocesses of workers that stopped, kept for the next run.
    idle: Mutex<Vec<WorkerProcess>>,
    /// The subprocess of each live worker, by worker thread.
    busy: Mutex<Vec<(std::thread::ThreadId, WorkerProcess)>>,
    /// Every live subprocess, checked out or not.
    pids: PidRegistry,
}

/// The process backend's own options.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    context: ProcessContext,
    memory_limit: Option<u64>,
    init: Option<WorkerInit>,
}

impl Backend for Process {
    type Options = ProcessOptions;
    const NAME: &'static str = "process";
    const MAX_WORKERS: usize = 256;

    fn auto_limit(cpus: usize) -> usize {
        1.max(32.min(cpus))
    }

    fn build(options: ProcessOptions, settings: &QueueSettings) -> Result<Self, BackendError> {
        Ok(Self {
            options,
            poll: settings.poll,
            slots: settings.slots,
            next_attempt: AtomicU64::new(1),
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(Vec::new()),
            pids: PidRegistry::default(),
        })
    }

    fn runner(self: Arc<Self>) -> Runner {
        Runner::Blocking(self)
    }
}

impl QueueBuilder<Process> {
    /// What each worker subprocess does before its first task: preload plugins, call hooks
    /// registered by name in the worker binary. A failure fails the task that caused the
    /// spawn with `WorkerStart`; the queue goes on (docs/queues.md §10.4).
    pub fn initializer(mut self, init: WorkerInit) -> Self {
        self.options.init = Some(init);
        self
    }

    /// How worker subprocesses start (default: `osiiso-host worker`).
    pub fn context(mut self, context: ProcessContext) -> Self {
        self.options.context = context;
        self
    }

    /// An OS address-space cap (`RLIMIT_AS`) for each worker subprocess, in bytes. A task
    /// may use linear memory up to about the cap.
    pub fn worker_memory(mut self, bytes: u64) -> Self {
        self.options.memory_limit = Some(bytes);
        self
    }
}

impl Queue<Process> {
    /// PIDs of the worker subprocesses alive now (they may change after a crash or timeout).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.backend().pids.lock().iter().copied().collect()
    }
}

impl Process {
    /// This worker thread's subprocess: its own, an idle one, or a new one that has run the
    /// initializer. The error is the attempt's outcome.
    fn checkout(
        &self,
        control: &AttemptControl,
        host: &Host,
    ) -> Result<WorkerProcess, AttemptOutcome> {
        let me = std::thread::current().id();
        {
            let mut busy = self.busy.lock();
            if let Some(i) = busy.iter().position(|(id, _)| *id == me) {
                return Ok(busy.swap_remove(i).1);
            }
        }
        if let Some(process) = self.idle.lock().pop() {
            return Ok(process);
        }
        let cache_dir = host.cache_root();
        let options = worker_main::WorkerOptions {
            no_cache: cache_dir.is_none(),
            cache_dir,
            memory_limit: self.options.memory_limit,
            log_level: logs::parent_level(),
            allow_precompiled: host.allows_precompiled(),
            // The workers together stay within the parent's budget.
            total_memory: Some(host.total_memory() / self.slots.max(1)),
            // Guest code is compiled as in the parent.
            no_fuel: !host.meters_fuel(),
            compile_tier: host.compile_tier(),
            compile_timeout: Some(host.compile_timeout()),
            compile_memory: Some(host.compile_memory()),
        };
        let mut process = WorkerProcess::spawn(&self.options.context, &options, &self.pids)
            .map_err(AttemptOutcome::Failed)?;
        if let Some(init) = &self.options.init {
            match process.initialize(init, control, self.poll) {
                Ok(()) => {}
                Err(InitError::Failed(message)) => {
                    return Err(AttemptOutcome::Failed(TaskFailure::new(
                        FailureKind::WorkerStart,
                        format!("worker initializer failed: {message}"),
                    )));
                }
                Err(InitError::Cancelled) => return Err(AttemptOutcome::Cancelled),
            }
        }
        Ok(process)
    }

    fn checkin(&self, process: WorkerProcess) {
        self.busy
            .lock()
            .push((std::thread::current().id(), process));
    }

    /// Runs one attempt in `process`; returns the report and whether the process may be kept.
    fn attempt(
        &self,
        process: &mut WorkerProcess,
        name: &str,
        attempt_id: u64,
        frame: &[u8],
        control: &Arc<AttemptControl>,
        progress: Option<&ProgressFn>,
    ) -> (AttemptReport, bool) {
        if let Err(error) = process.send_encoded(frame) {
            let why = format!("cannot send the attempt: {error}");
            return (crashed(process, control, name, &why), false);
        }
        let mut stop_deadline: Option<Instant> = None;
        let mut cancel_sent = false;
        loop {
            let why = match process.next_event(self.poll) {
                Some(Event::Reply(Reply::Done(done))) if done.attempt_id == attempt_id => {
                    return (done.into_report(), true);
                }
                Some(Event::Reply(Reply::Progress {
                    attempt_id: id,
                    done,
                    total,
                })) => {
                    // Progress of an attempt that already ended is stale: dropped.
                    if id == attempt_id
                        && let Some(progress) = progress
                    {
                        progress(done, total);
                    }
                    None
                }
                Some(Event::Reply(Reply::BadFrame { message })) => {
                    let report = AttemptReport::failed(TaskFailure::new(
                        FailureKind::Serialization,
                        format!("the worker could not decode the request: {message}"),
                    ));
                    return (report, true);
                }
                Some(Event::Reply(other)) => {
                    Some(format!("the worker sent an unexpected reply: {other:?}"))
                }
                Some(Event::Garbage(message)) => {
                    Some(format!("the worker sent a malformed frame: {message}"))
                }
                Some(Event::Eof) => Some("the worker closed its channel".to_string()),
                None if process.has_exited() => Some("the worker exited".to_string()),
                None => None,
            };
            if let Some(why) = why {
                return (crashed(process, control, name, &why), false);
            }
            if control.is_cancelled() && !cancel_sent {
                cancel_sent = true;
                let _ = process.send(&Request::Cancel { attempt_id });
                stop_deadline.get_or_insert_with(|| Instant::now() + grace(self.poll));
            }
            if let Some(deadline) = control.deadline()
                && stop_deadline.is_none()
                && Instant::now() >= deadline
            {
                stop_deadline = Some(deadline + grace(self.poll));
            }
            if stop_deadline.is_some_and(|d| Instant::now() >= d) {
                // It did not report within the grace: kill it. The classification gives
                // cancelled or timeout, never a crash.
                process.kill();
                return (control.stopped_outcome(name).into(), false);
            }
        }
    }
}

/// The report of an attempt whose worker died or broke the protocol: cancellation and the
/// deadline take precedence over the crash (docs/queues.md §5.2).
fn crashed(
    process: &mut WorkerProcess,
    control: &AttemptControl,
    name: &str,
    why: &str,
) -> AttemptReport {
    let status = process.reap();
    if control.should_stop() {
        return control.stopped_outcome(name).into();
    }
    AttemptReport::failed(
        TaskFailure::new(
            FailureKind::WorkerCrashed,
            format!("worker process died ({status})"),
        )
        .with_detail(why),
    )
}

impl BlockingRunner for Process {
    fn run(&self, attempt: Attempt<'_>) -> AttemptReport {
        let (call, name, control) = (attempt.call, attempt.display_name, attempt.control);
        let plugin = call.task().plugin();
        // Oversized work fails here, typed and never retried, before a worker is touched.
        let (path, input) = match outbound(&attempt, "worker process") {
            Ok(outbound) => outbound,
            Err(failure) => return AttemptReport::failed(failure),
        };
        let mut process = match self.checkout(control, plugin.host()) {
            Ok(process) => process,
            Err(outcome) => return outcome.into(),
        };
        let attempt_id = self.next_attempt.fetch_add(1, Ordering::Relaxed);
        // Measured now, after any spawn: the worker's deadline is the parent's.
        let request = Request::Run(Box::new(RunRequest {
            attempt_id,
            plugin_path: path.to_path_buf(),
            spec: AttemptSpec::new(&attempt, input),
        }));
        let frame = match encode_frame(&request) {
            Ok(frame) => frame,
            Err(too_large) => {
                self.checkin(process);
                return AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("the attempt of task '{name}' is {too_large}"),
                ));
            }
        };
        let (report, keep) = self.attempt(
            &mut process,
            name,
            attempt_id,
            &frame,
            control,
            attempt.progress,
        );
        if keep {
            self.checkin(process);
        } else {
            process.kill();
        }
        report
    }

    fn worker_stopped(&self) {
        let me = std::thread::current().id();
        let mut busy = self.busy.lock();
        if let Some(i) = busy.iter().position(|(id, _)| *id == me) {
            let (_, process) = busy.swap_remove(i);
            self.idle.lock().push(process);
        }
    }

    fn close(&self) {
        let processes: Vec<_> = self
            .idle
            .lock()
            .drain(..)
            .chain(self.busy.lock().drain(..).map(|(_, p)| p))
            .collect();
        for process in processes {
            process.close();
        }
    }
}
