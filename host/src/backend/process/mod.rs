//! The process backend: each worker slot owns one persistent subprocess that runs attempts
//! in fresh instances. The parent keeps every rule of the queue; this module only sends an
//! attempt, waits for its reply, and kills and respawns a worker that dies, hangs or talks
//! nonsense (docs/queues.md §10.4).

mod channel;
mod child;
mod init;
mod logs;
pub(crate) mod protocol;
pub(crate) mod worker_main;

pub use self::init::{WorkerHook, WorkerHooks, WorkerInit};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

use self::channel::{Channel, SendError};
use self::child::{InitError, PidRegistry, WorkerProcess};
use self::protocol::{Request, RunRequest, encode_frame_into};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport};
use crate::backend::remote::{AttemptSpec, outbound};
use crate::engine::Host;
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::backend::{
    Attempt, Backend, BackendError, BlockingRunner, QueueSettings, Runner,
};
use crate::queue::turns::Turns;
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
    /// One per worker (their memory budgets share the host's).
    slots: Vec<Slot>,
    next_attempt: AtomicU64,
    /// Every live subprocess.
    pids: PidRegistry,
}

/// One worker: its subprocess, started at its first attempt and again after it dies.
#[derive(Default)]
struct Slot {
    channel: RwLock<Option<Arc<Channel>>>,
    /// Attempts given to it and not finished: a new attempt goes to the least loaded.
    load: AtomicUsize,
    /// The order its attempts are sent in: the order they were given to it.
    sends: Arc<Turns>,
}

/// The process backend's own options.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    context: ProcessContext,
    memory_limit: Option<u64>,
    init: Option<WorkerInit>,
    attempts_per_worker: Option<usize>,
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
            slots: (0..settings.slots.max(1))
                .map(|_| Slot::default())
                .collect(),
            next_attempt: AtomicU64::new(1),
            pids: PidRegistry::default(),
        })
    }

    fn runner(self: Arc<Self>) -> Runner {
        Runner::Blocking(self)
    }

    fn attempts_per_worker(&self) -> usize {
        self.options.attempts_per_worker.unwrap_or(1)
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

    /// How many attempts each worker subprocess holds at once (default 1, at most 16). Above
    /// 1, the next attempts wait in a worker while it runs one, so it never idles waiting for
    /// the parent and reads and answers them in batches: several times the throughput on
    /// short tasks. **The trade-off:** the queue runs that many worker threads per worker, so
    /// a task leaves the queue when it is sent, not when a worker is free: it counts as
    /// running and `on_start` fires then; a cancel, a fail-first halt or a run timeout ends a
    /// task waiting in a worker as `cancelled` (not "cancelled before execution"), and a
    /// fail-first halt lets the tasks already sent finish; a task submitted later cannot
    /// overtake them by priority. Each worker still receives (and runs, and a warm instance
    /// sees) its attempts in the order the queue handed the tasks out. A waiting attempt's
    /// timeout still runs only from when the attempt before it ends, and only the attempt a
    /// worker is running can get it killed (docs/queues.md §10.4). The CLI's
    /// `--attempts-per-worker` sets it (default 1: on the trivial tasks of README.md's
    /// performance section, 2 workers on 2 cores, 1 was the fastest).
    pub fn attempts_per_worker(mut self, attempts: usize) -> Self {
        self.options.attempts_per_worker = Some(attempts.clamp(1, 16));
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
    /// The least loaded worker, with this attempt counted in its load until the guard drops.
    fn pick(&self) -> (&Slot, LoadGuard<'_>) {
        let slot = self
            .slots
            .iter()
            .min_by_key(|slot| slot.load.load(Ordering::Relaxed))
            .expect("at least one slot");
        slot.load.fetch_add(1, Ordering::Relaxed);
        (slot, LoadGuard(&slot.load))
    }

    /// The slot's live subprocess, started (with its initializer) if it has none or its
    /// last one died. The error is the attempt's outcome.
    fn channel(
        &self,
        slot: &Slot,
        control: &AttemptControl,
        host: &Host,
    ) -> Result<Arc<Channel>, AttemptOutcome> {
        if let Some(channel) = slot.channel.read().as_ref()
            && !channel.is_dead()
        {
            return Ok(channel.clone());
        }
        // Held while a subprocess starts: the other attempts bound for this slot wait for it.
        let mut current = slot.channel.write();
        if let Some(channel) = current.as_ref()
            && !channel.is_dead()
        {
            return Ok(channel.clone());
        }
        *current = None;
        let cache_dir = host.cache_root();
        let options = worker_main::WorkerOptions {
            no_cache: cache_dir.is_none(),
            cache_dir,
            memory_limit: self.options.memory_limit,
            log_level: logs::parent_level(),
            allow_precompiled: host.allows_precompiled(),
            // The workers together stay within the parent's budget.
            total_memory: Some(host.total_memory() / self.slots.len()),
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
        let channel = Arc::new(Channel::new(process));
        *current = Some(channel.clone());
        Ok(channel)
    }
}

/// Takes an attempt off its slot's load.
struct LoadGuard<'a>(&'a AtomicUsize);

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often an attempt is sent again when the worker it was sent to turns out to be dead
/// before it left (each time to a new subprocess).
const SEND_TRIES: usize = 3;

impl BlockingRunner for Process {
    fn run(&self, attempt: Attempt<'_>) -> AttemptReport {
        let (call, name, control) = (attempt.call, attempt.display_name, attempt.control);
        let plugin = call.task().plugin();
        // Oversized work fails here, typed and never retried, before a worker is touched.
        let (path, input) = match outbound(&attempt, "worker process") {
            Ok(outbound) => outbound,
            Err(failure) => return AttemptReport::failed(failure),
        };
        // The tasks the queue handed out before this one pick their worker first, and each
        // worker receives its attempts in the order they picked it: a worker runs (and a warm
        // instance sees) its tasks in the queue's order (docs/queues.md §10.4).
        if !attempt.wait_turn(self.poll) {
            return control.stopped_outcome(name).into();
        }
        let (slot, _load) = self.pick();
        let send_turn = slot.sends.issue();
        attempt.pass_turn();
        if !send_turn.wait(self.poll, || control.should_stop()) {
            return control.stopped_outcome(name).into();
        }
        // Taken by the one send that encodes it (a dead worker refuses before encoding).
        let mut input = Some(input);
        let mut crash = None;
        for _ in 0..SEND_TRIES {
            let channel = match self.channel(slot, control, plugin.host()) {
                Ok(channel) => channel,
                Err(outcome) => return outcome.into(),
            };
            let sent = channel.send(
                &self.next_attempt,
                control,
                name,
                attempt.progress,
                |frame, attempt_id, held| {
                    // The time left is measured now, after any spawn and with the clock as the
                    // channel set it: the worker's deadline is the parent's.
                    let mut spec = AttemptSpec::new(&attempt, input.take().unwrap_or_default());
                    if held {
                        // It waits behind another attempt: the worker's clock starts when the
                        // attempt does, with the whole timeout (within a tighter limit).
                        spec.left_ms = match (spec.timeout_ms, spec.left_ms) {
                            (Some(timeout), Some(left)) => Some(timeout.min(left)),
                            (timeout, left) => timeout.or(left),
                        };
                    }
                    let request = RunRequest {
                        attempt_id,
                        plugin_path: path.to_path_buf(),
                        spec,
                    };
                    encode_frame_into(frame, &Request::Run(Box::new(request)))
                },
            );
            match sent {
                Ok(attempt_id) => {
                    // Sent: the next attempt for this worker may go.
                    send_turn.pass();
                    return channel.wait(attempt_id, control, name, self.poll);
                }
                Err(SendError::TooLarge(too_large)) => {
                    return AttemptReport::failed(TaskFailure::new(
                        FailureKind::Serialization,
                        format!("the attempt of task '{name}' is {too_large}"),
                    ));
                }
                Err(SendError::Dead(report)) => crash = Some(*report),
            }
        }
        // Its workers kept dying before it could be sent: the last death is its crash.
        crash.expect("SEND_TRIES > 0")
    }

    fn close(&self) {
        for slot in &self.slots {
            let channel = slot.channel.write().take();
            if let Some(channel) = channel {
                channel.close();
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Kill the workers now rather than when the last attempt lets go of its channel.
        for slot in &self.slots {
            if let Some(channel) = slot.channel.write().take() {
                channel.die("the queue was dropped".into());
            }
        }
    }
}
