//! The process backend: each worker slot owns one persistent subprocess that runs attempts
//! in fresh instances. The parent keeps every rule of the queue; this module only sends an
//! attempt, waits for its reply, and kills and respawns a worker that dies, hangs or talks
//! nonsense (SEMANTICS.md §10.4).

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
use self::protocol::{Reply, Request, RunRequest, WireOutcome, encode_frame};
use crate::engine::{AttemptControl, AttemptOutcome, AttemptReport};
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::{AttemptOutcomeOrAbandoned, Backend, Executor, TaskCell, Work, WorkerContext};

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
    (poll * 2).max(Duration::from_millis(100))
}

pub(crate) struct ProcessExecutor {
    context: ProcessContext,
    memory_limit: Option<u64>,
    init: Option<WorkerInit>,
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

impl ProcessExecutor {
    pub(crate) fn new(
        context: ProcessContext,
        memory_limit: Option<u64>,
        init: Option<WorkerInit>,
        poll: Duration,
        slots: usize,
    ) -> Self {
        Self {
            context,
            memory_limit,
            init,
            poll,
            slots,
            next_attempt: AtomicU64::new(1),
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(Vec::new()),
            pids: PidRegistry::default(),
        }
    }

    /// PIDs of the live worker subprocesses.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.pids.lock().iter().copied().collect()
    }

    /// This worker thread's subprocess: its own, an idle one, or a new one that has run the
    /// initializer. The error is the attempt's outcome.
    fn checkout(
        &self,
        control: &AttemptControl,
        host: &crate::engine::Host,
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
            memory_limit: self.memory_limit,
            log_level: logs::parent_level(),
            allow_precompiled: host.allows_precompiled(),
            // The workers together stay within the parent's budget.
            total_memory: Some(host.total_memory() / self.slots.max(1)),
        };
        let mut process = WorkerProcess::spawn(&self.context, &options, &self.pids)
            .map_err(AttemptOutcome::Failed)?;
        if let Some(init) = &self.init {
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
        cell: &TaskCell,
        attempt_id: u64,
        frame: &[u8],
        control: &Arc<AttemptControl>,
    ) -> (AttemptReport, bool) {
        if let Err(error) = process.send_encoded(frame) {
            return (
                crashed(
                    process,
                    control,
                    &cell.name,
                    &format!("cannot send the attempt: {error}"),
                ),
                false,
            );
        }
        let mut stop_deadline: Option<Instant> = None;
        let mut cancel_sent = false;
        loop {
            match process.next_event(self.poll) {
                Some(Event::Reply(Reply::Done(done))) if done.attempt_id == attempt_id => {
                    let outcome = match done.outcome {
                        WireOutcome::Succeeded(json) => match serde_json::from_str(&json) {
                            Ok(value) => AttemptOutcome::Succeeded(value),
                            Err(e) => AttemptOutcome::Failed(TaskFailure::new(
                                FailureKind::Serialization,
                                format!("the worker sent a value that is not JSON: {e}"),
                            )),
                        },
                        WireOutcome::Failed(failure) => AttemptOutcome::Failed(failure),
                        WireOutcome::Cancelled => AttemptOutcome::Cancelled,
                    };
                    let report = AttemptReport {
                        outcome,
                        fuel_consumed: done.fuel_consumed,
                        stdout: done.stdout,
                        stderr: done.stderr,
                    };
                    return (report, true);
                }
                Some(Event::Reply(Reply::BadFrame { message })) => {
                    let report = AttemptReport::failed(TaskFailure::new(
                        FailureKind::Serialization,
                        format!("the worker could not decode the request: {message}"),
                    ));
                    return (report, true);
                }
                Some(Event::Reply(other)) => {
                    let message = format!("the worker sent an unexpected reply: {other:?}");
                    return (crashed(process, control, &cell.name, &message), false);
                }
                Some(Event::Garbage(message)) => {
                    let message = format!("the worker sent a malformed frame: {message}");
                    return (crashed(process, control, &cell.name, &message), false);
                }
                Some(Event::Eof) => {
                    return (
                        crashed(
                            process,
                            control,
                            &cell.name,
                            "the worker closed its channel",
                        ),
                        false,
                    );
                }
                None => {}
            }
            if process.has_exited() {
                return (
                    crashed(process, control, &cell.name, "the worker exited"),
                    false,
                );
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
                return (interrupted(control, &cell.name).into(), false);
            }
        }
    }
}

/// The outcome of an attempt stopped by a cancellation or its deadline.
fn interrupted(control: &AttemptControl, name: &str) -> AttemptOutcome {
    if control.is_cancelled() {
        AttemptOutcome::Cancelled
    } else {
        AttemptOutcome::Failed(TaskFailure::timeout(
            name,
            control.timeout().unwrap_or_default(),
        ))
    }
}

/// The report of an attempt whose worker died or broke the protocol: cancellation and the
/// deadline take precedence over the crash (SEMANTICS.md §5.2).
fn crashed(
    process: &mut WorkerProcess,
    control: &AttemptControl,
    name: &str,
    why: &str,
) -> AttemptReport {
    let status = process.reap();
    if control.is_cancelled() || control.deadline_passed() {
        return interrupted(control, name).into();
    }
    AttemptReport::failed(
        TaskFailure::new(
            FailureKind::WorkerCrashed,
            format!("worker process died ({status})"),
        )
        .with_detail(why),
    )
}

impl Executor for ProcessExecutor {
    fn backend(&self) -> Backend {
        Backend::Process
    }

    fn run_attempt(
        &self,
        _worker: &WorkerContext<'_>,
        cell: &Arc<TaskCell>,
        attempt: u32,
        control: &Arc<AttemptControl>,
    ) -> AttemptOutcomeOrAbandoned {
        let Work::Wasm { task, input } = &cell.work else {
            return AttemptOutcomeOrAbandoned::Done(AttemptReport::failed(TaskFailure::new(
                FailureKind::Serialization,
                "a ProcessQueue runs WASM tasks only",
            )));
        };
        let plugin = task.plugin();
        let Some(path) = plugin.path() else {
            return AttemptOutcomeOrAbandoned::Done(AttemptReport::failed(TaskFailure::new(
                FailureKind::Serialization,
                format!(
                    "plugin '{}' was not loaded from a file, so a worker process cannot load it",
                    plugin.name()
                ),
            )));
        };
        // Oversized work fails here, typed and never retried, before a worker is touched.
        let input = input.to_string();
        if let Err(failure) = plugin.limits().check_input(&cell.name, input.len()) {
            return AttemptOutcomeOrAbandoned::Done(AttemptReport::failed(failure));
        }
        let host = plugin.host();
        let mut process = match self.checkout(control, host) {
            Ok(process) => process,
            Err(outcome) => return AttemptOutcomeOrAbandoned::Done(outcome.into()),
        };
        let millis = |t: Duration| t.as_millis().min(u64::MAX as u128) as u64;
        let attempt_id = self.next_attempt.fetch_add(1, Ordering::Relaxed);
        let request = Request::Run(Box::new(RunRequest {
            attempt_id,
            plugin_path: path.to_path_buf(),
            plugin_hash: plugin.hash().to_string(),
            task: task.name().to_string(),
            display_name: cell.name.clone(),
            input,
            attempt,
            timeout_ms: control.timeout().map(millis),
            // Measured now, after any spawn: the worker's deadline is the parent's.
            left_ms: control
                .deadline()
                .map(|d| millis(d.saturating_duration_since(Instant::now()))),
            limits: plugin.limits().clone(),
            sandbox: plugin.sandbox().clone(),
        }));
        let frame = match encode_frame(&request) {
            Ok(frame) => frame,
            Err(too_large) => {
                self.checkin(process);
                return AttemptOutcomeOrAbandoned::Done(AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("the attempt of task '{}' is {too_large}", cell.name),
                )));
            }
        };
        let (report, keep) = self.attempt(&mut process, cell, attempt_id, &frame, control);
        if keep {
            self.checkin(process);
        } else {
            process.kill();
        }
        AttemptOutcomeOrAbandoned::Done(report)
    }

    fn worker_exiting(&self) {
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

    fn pids(&self) -> Vec<u32> {
        ProcessExecutor::pids(self)
    }
}
