//! One worker subprocess, seen from the parent: spawn, handshake and initializer (read by
//! the queue worker that started it), then handed to a [`Channel`](super::channel::Channel);
//! death detected by waiting on the process itself.

use std::collections::BTreeSet;
use std::io::BufWriter;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::ProcessContext;
use super::init::WorkerInit;
use super::logs;
use super::protocol::{Frame, FrameReader, PROTOCOL_VERSION, Reply, Request, write_frame};
use super::worker_main::{WORKER_MARKER, WorkerOptions};
use crate::attempt::AttemptControl;
use crate::failure::{FailureKind, TaskFailure};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a worker did not become ready.
pub(super) enum InitError {
    /// The initializer failed, or the worker died or misbehaved running it.
    Failed(String),
    /// The attempt was cancelled meanwhile; the worker was killed.
    Cancelled,
}

/// What the worker said.
pub(super) enum Event {
    Reply(Reply),
    /// A frame that did not decode, or a broken stream.
    Garbage(String),
    Eof,
}

/// PIDs of the live worker processes of one executor.
pub(crate) type PidRegistry = Arc<Mutex<BTreeSet<u32>>>;

/// A worker that is starting: its process, its request pipe and its reply stream.
pub(crate) struct WorkerProcess {
    pub(super) process: ProcessHandle,
    pub(super) stdin: BufWriter<ChildStdin>,
    pub(super) replies: FrameReader,
    /// The reply stream ended or broke; nothing more will come from it.
    broken: bool,
}

/// The process of a worker: alive, or exited and reaped.
pub(crate) struct ProcessHandle {
    registry: PidRegistry,
    child: Child,
    pid: u32,
    exit: Option<ExitStatus>,
}

impl WorkerProcess {
    /// Starts a worker and waits for its handshake.
    pub(super) fn spawn(
        context: &ProcessContext,
        options: &WorkerOptions,
        registry: &PidRegistry,
    ) -> Result<Self, TaskFailure> {
        let mut command = command(context, options)?;
        // Only the child's own stdio crosses: std opens every other descriptor close-on-exec.
        // Its own process group: a Ctrl-C at the terminal reaches the parent, which
        // coordinates, and not the workers behind its back.
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = spawn_detached_from_thread(command).map_err(|e| {
            start_failure(format!(
                "cannot start worker process '{program}': {e}; set the queue's `context` \
                 (ProcessContext) or OSIISO_HOST_BIN to the osiiso-host binary"
            ))
        })?;
        let stdin = BufWriter::new(child.stdin.take().expect("piped"));
        let replies = FrameReader::new(child.stdout.take().expect("piped"))
            .map_err(|e| start_failure(format!("cannot read from the worker: {e}")))?;
        let pid = child.id();
        let mut process = Self {
            process: ProcessHandle {
                registry: registry.clone(),
                child,
                pid,
                exit: None,
            },
            stdin,
            replies,
            broken: false,
        };
        match process.next_event(HANDSHAKE_TIMEOUT) {
            Some(Event::Reply(Reply::Hello { version, pid: _ })) if version == PROTOCOL_VERSION => {
                tracing::debug!(pid, "worker process started");
                registry.lock().insert(pid);
                Ok(process)
            }
            Some(Event::Reply(Reply::Hello { version, .. })) => {
                process.kill();
                Err(start_failure(format!(
                    "worker '{program}' speaks protocol {version}, this host speaks {PROTOCOL_VERSION}"
                )))
            }
            _ => {
                let status = process.reap();
                Err(start_failure(format!(
                    "worker '{program}' did not complete its handshake ({status})"
                )))
            }
        }
    }

    pub(super) fn send(&mut self, request: &Request) -> std::io::Result<()> {
        write_frame(&mut self.stdin, request)
    }

    /// The next thing the worker said, waiting at most `wait`. Its log records go to this
    /// process's `tracing` on the way.
    pub(super) fn next_event(&mut self, wait: Duration) -> Option<Event> {
        if self.broken {
            std::thread::sleep(wait);
            return None;
        }
        let deadline = Instant::now() + wait;
        let event = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.replies.next::<Reply>(Some(wait)) {
                Ok(None) => return None,
                Ok(Some(Frame::Message(Reply::Log(record)))) => {
                    logs::emit(self.process.pid, &record);
                    // A worker that logs without pause must not keep its caller from
                    // checking for cancellation and deadlines.
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Ok(Some(Frame::Message(reply))) => break Event::Reply(reply),
                Ok(Some(Frame::Undecodable(message))) => break Event::Garbage(message),
                Ok(Some(Frame::Eof)) => break Event::Eof,
                Err(error) => break Event::Garbage(error.to_string()),
            }
        };
        self.broken = !matches!(event, Event::Reply(_));
        Some(event)
    }

    /// Runs the initializer (docs/queues.md §10.4), giving up if the attempt is cancelled.
    pub(super) fn initialize(
        &mut self,
        init: &WorkerInit,
        control: &AttemptControl,
        poll: Duration,
    ) -> Result<(), InitError> {
        if let Err(error) = self.send(&Request::Init(init.clone())) {
            return Err(InitError::Failed(format!(
                "cannot send the initializer to the worker: {error}"
            )));
        }
        loop {
            match self.next_event(poll) {
                Some(Event::Reply(Reply::Ready)) => return Ok(()),
                Some(Event::Reply(Reply::InitFailed { message })) => {
                    self.reap();
                    return Err(InitError::Failed(message));
                }
                Some(Event::Reply(other)) => {
                    self.kill();
                    return Err(InitError::Failed(format!(
                        "the worker answered its initializer with {other:?}"
                    )));
                }
                Some(Event::Garbage(message)) => {
                    self.kill();
                    return Err(InitError::Failed(format!(
                        "the worker sent a malformed frame during its initializer: {message}"
                    )));
                }
                Some(Event::Eof) => {
                    let status = self.reap();
                    return Err(InitError::Failed(format!(
                        "the worker died during its initializer ({status})"
                    )));
                }
                // Only a cancellation stops it: the initializer (a cold compile, say) may
                // outlast the first task's timeout, and a worker killed for that would
                // start over on every spawn.
                None if control.is_cancelled() => {
                    self.kill();
                    return Err(InitError::Cancelled);
                }
                None if self.has_exited() => {
                    let status = self.reap();
                    return Err(InitError::Failed(format!(
                        "the worker died during its initializer ({status})"
                    )));
                }
                None => {}
            }
        }
    }

    pub(super) fn has_exited(&mut self) -> bool {
        self.process.has_exited()
    }

    pub(super) fn reap(&mut self) -> String {
        self.process.reap()
    }

    pub(crate) fn kill(&mut self) {
        self.process.kill()
    }
}

impl ProcessHandle {
    /// Its PID.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has exited (checked with `waitpid`, not the pipe).
    pub(super) fn has_exited(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
            if self.exit.is_some() {
                self.registry.lock().remove(&self.pid);
            }
        }
        self.exit.is_some()
    }

    /// Waits up to 2 s for the process to exit, then kills it; always reaps. Describes the
    /// exit: `exit code N` or `signal N`.
    pub(super) fn reap(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.has_exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !self.has_exited() {
            self.kill();
        }
        describe(self.exit)
    }

    /// `SIGKILL` and reap.
    pub(crate) fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
            self.registry.lock().remove(&self.pid);
        }
    }

    /// Graceful close once `Stop` was sent: wait, then `SIGTERM`, then `SIGKILL`; always
    /// reaped.
    pub(super) fn close(&mut self) {
        for (signal, wait) in [(None, 2000), (Some(libc::SIGTERM), 1000)] {
            if let Some(signal) = signal {
                // SAFETY: signalling our own, not yet reaped child.
                unsafe { libc::kill(self.pid as libc::pid_t, signal) };
            }
            let deadline = Instant::now() + Duration::from_millis(wait);
            while !self.has_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.has_exited() {
                return;
            }
        }
        self.kill();
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

type SpawnJob = (Command, Sender<std::io::Result<Child>>);

/// Spawns `command` from one long-lived thread. Workers set a parent-death signal, and Linux
/// sends it when the *thread* that forked them exits; queue worker threads come and go, so
/// they must not be the ones that fork.
fn spawn_detached_from_thread(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("osiiso-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the worker spawner thread");
        Mutex::new(tx)
    });
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the worker spawner thread is gone"))?;
    result
        .recv()
        .map_err(|_| std::io::Error::other("the worker spawner thread is gone"))?
}

fn start_failure(message: String) -> TaskFailure {
    TaskFailure::new(FailureKind::WorkerStart, message)
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "unknown status".into(),
        },
        None => "status unknown".into(),
    }
}

fn command(context: &ProcessContext, options: &WorkerOptions) -> Result<Command, TaskFailure> {
    let mut command = match context {
        ProcessContext::Default => {
            let mut command = Command::new(default_binary());
            command.arg("worker");
            command
        }
        ProcessContext::CurrentExe { args } => {
            let exe = std::env::current_exe()
                .map_err(|e| start_failure(format!("cannot locate the current executable: {e}")))?;
            let mut command = Command::new(exe);
            command.args(args).arg(WORKER_MARKER);
            command
        }
        ProcessContext::Command { program, args, env } => {
            let mut command = Command::new(program);
            command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
            command
        }
    };
    command.args(options.to_args());
    Ok(command)
}

/// Where the `osiiso-host` binary is, for the default context: the compile process's binary
/// ([`host_binary`](crate::engine::host_binary)), else `osiiso-host` on `PATH`.
fn default_binary() -> PathBuf {
    crate::engine::host_binary().unwrap_or_else(|| PathBuf::from(crate::engine::HOST_BINARY))
}
