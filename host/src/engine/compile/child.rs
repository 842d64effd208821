//! The parent's side of a compile process: start it under the compile limits, feed it the
//! component, read its one reply, and kill it at the deadline. A process that dies without
//! replying is described by what killed it.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::reply::Reply;
use super::serve::ServeArgs;
use super::{COMPILE_MARKER, CompileError, CompileLimits};

/// The end of the compile process's stderr kept for messages.
const STDERR_TAIL: usize = 4 << 10;
/// What the parent does between two looks at a process that replied but has not exited.
const EXIT_POLL: Duration = Duration::from_millis(2);
/// How often the parent asks whether a running compilation is to stop.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Compiles `wasm` in a child process of `program`; returns the serialized artifact.
pub(super) fn compile(
    program: &Path,
    args: &ServeArgs,
    wasm: &[u8],
    limits: &CompileLimits,
    max_artifact: u64,
    threads_per_core: usize,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, CompileError> {
    let started = Instant::now();
    // A timeout too long to add is as good as none.
    let deadline = started
        .checked_add(limits.timeout)
        .unwrap_or_else(|| started + Duration::from_secs(1 << 32));
    // The compile process reads exactly this much, reserved at once.
    let args = ServeArgs {
        max_input: (wasm.len() as u64).min(args.max_input),
        ..args.clone()
    };
    let mut child = CompileProcess::spawn(program, &args, limits, threads_per_core)?;
    let stdin = child.0.stdin.take().expect("piped");
    let mut stdout = child.0.stdout.take().expect("piped");
    let mut stderr = child.0.stderr.take().expect("piped");
    let (outcome, tail) = std::thread::scope(|scope| {
        // The component goes in on its own thread: a compile process that stops reading
        // must not stall the watch below. A write error means it died; its status says why.
        scope.spawn(move || {
            let mut stdin = stdin;
            let _ = stdin.write_all(wasm);
        });
        let tail = scope.spawn(move || read_tail(&mut stderr));
        let (sender, replies) = mpsc::sync_channel(1);
        scope.spawn(move || {
            let _ = sender.send(Reply::read(&mut stdout, max_artifact));
        });
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match replies.recv_timeout(left.min(STOP_POLL)) {
                Ok(reply) => match child.exit_by(deadline) {
                    Some(status) => break Ok((reply, status)),
                    None => break Err(Ended::Deadline),
                },
                Err(mpsc::RecvTimeoutError::Timeout) if stop() => break Err(Ended::Stopped),
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => break Err(Ended::Deadline),
            }
        };
        if outcome.is_err() {
            // Killed and reaped: every pipe closes, so the threads above end.
            child.kill();
        }
        (outcome, tail.join().unwrap_or_default())
    });
    let (reply, status) = match outcome {
        Ok(done) => done,
        Err(Ended::Stopped) => return Err(CompileError::Stopped),
        Err(Ended::Deadline) => {
            return Err(CompileError::Timeout {
                limit: limits.timeout,
            });
        }
    };
    tracing::debug!(
        elapsed = ?started.elapsed(),
        %status,
        "compile process finished"
    );
    match (reply, status.success()) {
        (Ok(Reply::Artifact(artifact)), true) => Ok(artifact),
        (Ok(Reply::Invalid(message)), true) => Err(CompileError::Invalid(message)),
        (Ok(Reply::Unadaptable(message)), true) => Err(CompileError::Unadaptable(message)),
        (Ok(Reply::Incompatible(message)), true) => Err(CompileError::Process(format!(
            "the compile process '{}' is another build of osiiso-host ({message}); point \
             OSIISO_HOST_BIN or HostBuilder::compiler at this build",
            program.display()
        ))),
        (Ok(Reply::Failed(message)), true) => Err(CompileError::Process(format!(
            "the compile process '{}' failed: {message}",
            program.display()
        ))),
        (reply, _) => Err(died(program, status, reply.err(), &tail, limits)),
    }
}

/// Why the parent killed a compile process.
enum Ended {
    /// It ran past the compile timeout.
    Deadline,
    /// The caller stopped it.
    Stopped,
}

/// Why a compile process ended without a reply (or with a reply and a bad status).
fn died(
    program: &Path,
    status: ExitStatus,
    protocol: Option<String>,
    tail: &str,
    limits: &CompileLimits,
) -> CompileError {
    let how = describe(status);
    let last_words = last_words(tail)
        .map(|line| format!(": {line}"))
        .unwrap_or_default();
    if status.signal() == Some(libc::SIGXCPU) {
        return CompileError::Timeout {
            limit: limits.timeout,
        };
    }
    // Allocation failures end a process that is out of its data limit: std aborts
    // ("memory allocation of N bytes failed"), wasmtime panics ("unhandled out-of-memory
    // error"); the kernel's OOM killer sends SIGKILL, which only this host sends otherwise,
    // and only at the deadline.
    let out_of_memory = OUT_OF_MEMORY.iter().any(|words| tail.contains(words))
        || status.signal() == Some(libc::SIGKILL);
    if out_of_memory {
        return CompileError::Memory {
            limit: limits.memory,
            detail: format!("the compile process {how}{last_words}"),
        };
    }
    CompileError::Process(format!(
        "the compile process '{}' {how}{}{last_words}; if the plugin is large, its compile \
         memory limit ({}, --compile-memory) may be too small",
        program.display(),
        protocol.map(|p| format!(" ({p})")).unwrap_or_default(),
        crate::units::format_size(limits.memory as usize),
    ))
}

/// What a process that ran out of memory says: std's abort, wasmtime's panic.
const OUT_OF_MEMORY: &[&str] = &["memory allocation of", "out-of-memory", "out of memory"];

/// The line of `tail` that says most about a death: the last one about memory, else the
/// last one that is not about backtraces.
fn last_words(tail: &str) -> Option<&str> {
    let said = || {
        tail.lines().map(str::trim).rev().filter(|line| {
            !line.is_empty()
                && !line.starts_with("note:")
                && !line.contains("backtrace")
                && !line.starts_with("at ")
                && !line.starts_with(|c: char| c.is_ascii_digit())
        })
    };
    said()
        .find(|line| OUT_OF_MEMORY.iter().any(|words| line.contains(words)))
        .or_else(|| said().next())
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}

/// Reads `input` to its end, keeping the last [`STDERR_TAIL`] bytes.
fn read_tail(input: &mut impl Read) -> String {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match input.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// A started compile process, killed and reaped when dropped.
struct CompileProcess(Child, bool);

impl CompileProcess {
    fn spawn(
        program: &Path,
        args: &ServeArgs,
        limits: &CompileLimits,
        threads_per_core: usize,
    ) -> Result<Self, CompileError> {
        let mut command = Command::new(program);
        command
            .arg(COMPILE_MARKER)
            .args(args.to_args())
            // Nothing of the host's environment, working directory or terminal: the
            // compile process gets its limits, a component and a pipe for the reply.
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Signals from the terminal go to the host, which decides.
            .process_group(0);
        let threads = compile_threads(limits.memory, threads_per_core);
        // wasmtime compiles functions in parallel on rayon's pool; every thread's stack counts
        // against the data limit, so a small limit gets fewer threads.
        command.env("RAYON_NUM_THREADS", threads.to_string());
        let data = limits.memory;
        let cpu = cpu_seconds(limits.timeout, threads);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec the closure only makes system calls (getppid, prctl,
        // getrlimit, setrlimit, _exit), which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    // The host died before the death signal was armed.
                    libc::_exit(1);
                }
                // Nothing it runs gains privileges; an abort under the limits writes no
                // core file of up to the whole limit.
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                cap(libc::RLIMIT_CORE, 0, 0)?;
                // An address-space cap of the host's (a process worker's `--worker-memory`)
                // is a soft limit its compile process lifts: compiling is bounded by the
                // data limit below, as everywhere.
                cap(libc::RLIMIT_AS, u64::MAX, u64::MAX)?;
                cap(libc::RLIMIT_DATA, data, data)?;
                cap(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))
            })
        };
        let child = command.spawn().map_err(|e| {
            CompileError::Process(format!(
                "cannot start the compile process '{}': {e}; set OSIISO_HOST_BIN to the \
                 osiiso-host binary, or choose one with HostBuilder::compiler",
                program.display()
            ))
        })?;
        Ok(Self(child, false))
    }

    /// Waits for the process to exit until `deadline`; `None` if it did not.
    fn exit_by(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => {
                    self.1 = true;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(EXIT_POLL),
                _ => return None,
            }
        }
    }

    /// Kills the process and anything it started (its process group), and reaps it.
    fn kill(&mut self) {
        if !self.1 {
            // SAFETY: signalling the group of a child this host has not reaped yet.
            unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
            let _ = self.0.kill();
            let _ = self.0.wait();
            self.1 = true;
        }
    }
}

impl Drop for CompileProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Sets a limit to `soft`/`hard`, never above the hard limit this process has (a soft limit
/// below it may rise up to it).
///
/// Only system calls: it runs between fork and exec.
fn cap(resource: Resource, soft: u64, hard: u64) -> std::io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with valid pointers.
    unsafe {
        if libc::getrlimit(resource, &mut current) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let hard = hard.min(current.rlim_max);
        let limit = libc::rlimit {
            rlim_cur: soft.min(hard),
            rlim_max: hard,
        };
        if libc::setrlimit(resource, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Memory per compile thread: a thread's stack and its share of the work.
const MEMORY_PER_THREAD: u64 = 64 << 20;

/// Threads a compile process uses: `per_core` per core, and at most one per
/// [`MEMORY_PER_THREAD`] of its memory limit.
fn compile_threads(memory: u64, per_core: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let affordable = usize::try_from(memory / MEMORY_PER_THREAD).unwrap_or(usize::MAX);
    cores.saturating_mul(per_core).min(affordable).max(1)
}

/// CPU seconds the compile process may use: the timeout on every thread it runs, plus one.
/// The wall-clock deadline stops it first; this stops it even if the host that watches it is
/// frozen.
fn cpu_seconds(timeout: Duration, threads: usize) -> u64 {
    timeout
        .as_secs()
        .saturating_add(1)
        .saturating_mul(threads as u64)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::last_words;

    #[test]
    fn last_words_prefer_what_ran_out() {
        let abort = "memory allocation of 4624 bytes failed\nmemory allocation of 1536 bytes \
                     failed\nskipping backtrace printing to avoid potential recursion\n";
        assert_eq!(
            last_words(abort),
            Some("memory allocation of 1536 bytes failed")
        );
        let panic = "\nthread 'main' panicked at src/x.rs:1:2:\nindex out of bounds\nnote: run \
                     with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(last_words(panic), Some("index out of bounds"));
        assert_eq!(last_words("\n\n"), None);
    }
}
