//! The worker side of the process backend: `osiiso-host worker` (or an embedder's binary that
//! calls [`run_worker`]). It reads requests on stdin, runs each attempt in a fresh instance,
//! and answers on the original stdout; guest output is captured in memory and anything else
//! printed to fd 1 goes to stderr, so nothing but frames reaches the protocol channel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::protocol::{
    DoneReply, Frame, PROTOCOL_VERSION, Reply, Request, RunRequest, WireOutcome, read_frame,
    write_frame,
};
use crate::engine::{AttemptControl, AttemptOutcome, AttemptReport, AttemptRequest, Host, Plugin};
use crate::failure::{FailureKind, TaskFailure};

/// The attempt running now, so a `Cancel` can reach it.
type CurrentAttempt = Arc<Mutex<Option<(u64, Arc<AttemptControl>)>>>;

/// How a worker process is configured (from its command line).
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// The compile cache shared with the parent.
    pub cache_dir: Option<PathBuf>,
    /// Do not use the compile cache.
    pub no_cache: bool,
    /// OS address-space cap for this process (`RLIMIT_AS`), in bytes.
    pub memory_limit: Option<u64>,
}

impl WorkerOptions {
    /// The arguments that reproduce these options after the worker subcommand or marker.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(dir) = &self.cache_dir {
            args.push("--cache-dir".into());
            args.push(dir.display().to_string());
        }
        if self.no_cache {
            args.push("--no-cache".into());
        }
        if let Some(limit) = self.memory_limit {
            args.push("--memory-limit".into());
            args.push(limit.to_string());
        }
        args
    }

    /// Parses the worker arguments the parent passes after the worker subcommand or marker.
    pub fn from_args(args: &[String]) -> Result<Self, String> {
        let mut options = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--cache-dir" => options.cache_dir = it.next().map(PathBuf::from),
                "--no-cache" => options.no_cache = true,
                "--memory-limit" => {
                    let value = it.next().ok_or("--memory-limit needs a value")?;
                    options.memory_limit = Some(value.parse().map_err(|_| "bad --memory-limit")?);
                }
                other => return Err(format!("unknown worker argument '{other}'")),
            }
        }
        Ok(options)
    }
}

/// The marker argument an embedding binary recognises to act as a worker
/// (see [`crate::queue::ProcessContext::CurrentExe`]).
pub const WORKER_MARKER: &str = "--osiiso-worker";

/// If this process was started as a worker by [`crate::queue::ProcessContext::CurrentExe`],
/// serves as one and exits; otherwise returns. Call it first thing in `main`.
pub fn maybe_run_worker() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(position) = args.iter().position(|a| a == WORKER_MARKER) {
        let code = match WorkerOptions::from_args(&args[position + 1..]) {
            Ok(options) => run_worker(options),
            Err(message) => {
                eprintln!("osiiso worker: {message}");
                2
            }
        };
        std::process::exit(code);
    }
}

/// Serves requests on stdin until `Stop` or end of input; returns the exit code.
pub fn run_worker(options: WorkerOptions) -> i32 {
    // SAFETY: plain libc calls on this process's own descriptors and attributes.
    let protocol_fd = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        let fd = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            eprintln!("osiiso worker: cannot set up the protocol channel");
            return 3;
        }
        fd
    };
    if let Some(limit) = options.memory_limit {
        let rlimit = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) } != 0 {
            eprintln!("osiiso worker: cannot set the memory limit");
        }
    }
    // SAFETY: `protocol_fd` is a fresh descriptor owned by nothing else.
    let out = Arc::new(Mutex::new(BufWriter::new(unsafe {
        File::from_raw_fd(protocol_fd)
    })));
    let host = {
        let mut builder = Host::builder()
            .cache(!options.no_cache)
            .max_instances(4)
            .small_address_space(options.memory_limit.is_some())
            .tick(Duration::from_millis(10));
        if let Some(dir) = &options.cache_dir {
            builder = builder.cache_dir(dir);
        }
        match builder.build() {
            Ok(host) => host,
            Err(error) => {
                eprintln!("osiiso worker: {error}");
                return 3;
            }
        }
    };
    let send = |reply: &Reply| -> bool {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *out, reply).is_ok()
    };
    if !send(&Reply::Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
    }) {
        return 3;
    }

    let current: CurrentAttempt = Arc::default();
    let (jobs, job_rx) = mpsc::channel::<Box<RunRequest>>();
    let runner = {
        let current = current.clone();
        let out = out.clone();
        std::thread::spawn(move || {
            let mut plugins: HashMap<(PathBuf, String), Plugin> = HashMap::new();
            for request in job_rx {
                let control = AttemptControl::new(request.timeout_ms.map(Duration::from_millis));
                *current.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((request.attempt_id, control.clone()));
                let report = run_one(&host, &mut plugins, &request, control);
                current.lock().unwrap_or_else(|e| e.into_inner()).take();
                let reply = Reply::Done(Box::new(DoneReply {
                    attempt_id: request.attempt_id,
                    outcome: match report.outcome {
                        AttemptOutcome::Succeeded(value) => {
                            WireOutcome::Succeeded(value.to_string())
                        }
                        AttemptOutcome::Failed(failure) => WireOutcome::Failed(failure),
                        AttemptOutcome::Cancelled => WireOutcome::Cancelled,
                    },
                    fuel_consumed: report.fuel_consumed,
                    stdout: report.stdout,
                    stderr: report.stderr,
                }));
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                if write_frame(&mut *out, &reply).is_err() {
                    return;
                }
            }
        })
    };

    let mut input = BufReader::new(std::io::stdin().lock());
    let code = loop {
        match read_frame::<Request>(&mut input) {
            Ok(Frame::Message(Request::Run(request))) => {
                if jobs.send(request).is_err() {
                    break 3;
                }
            }
            Ok(Frame::Message(Request::Cancel { attempt_id })) => {
                if let Some((id, control)) = &*current.lock().unwrap_or_else(|e| e.into_inner())
                    && *id == attempt_id
                {
                    control.cancel();
                }
            }
            Ok(Frame::Message(Request::Stop)) | Ok(Frame::Eof) => break 0,
            Ok(Frame::Undecodable(message)) => {
                if !send(&Reply::BadFrame { message }) {
                    break 3;
                }
            }
            Err(error) => {
                eprintln!("osiiso worker: protocol error: {error}");
                break 3;
            }
        }
    };
    drop(jobs);
    if code == 0 {
        let _ = runner.join();
    }
    let _ = out.lock().map(|mut o| o.flush());
    code
}

fn run_one(
    host: &Host,
    plugins: &mut HashMap<(PathBuf, String), Plugin>,
    request: &RunRequest,
    control: Arc<AttemptControl>,
) -> AttemptReport {
    let key = (request.plugin_path.clone(), request.plugin_hash.clone());
    let plugin = match plugins.get(&key) {
        Some(plugin) => plugin.clone(),
        None => match host.load(&request.plugin_path) {
            Ok(plugin) if plugin.hash() == request.plugin_hash => {
                plugins.insert(key, plugin.clone());
                plugin
            }
            Ok(_) => {
                return AttemptReport::failed(TaskFailure::new(
                    FailureKind::PluginLoad,
                    format!(
                        "plugin '{}' changed on disk since the queue loaded it",
                        request.plugin_path.display()
                    ),
                ));
            }
            Err(error) => {
                return AttemptReport::failed(TaskFailure::new(
                    FailureKind::PluginLoad,
                    error.to_string(),
                ));
            }
        },
    };
    let plugin = plugin
        .with_limits(request.limits.clone())
        .with_sandbox(request.sandbox.clone());
    let task = match plugin.task(&request.task) {
        Ok(task) => task,
        Err(error) => {
            return AttemptReport::failed(TaskFailure::new(
                FailureKind::PluginLoad,
                error.to_string(),
            ));
        }
    };
    let input: serde_json::Value = match serde_json::from_str(&request.input) {
        Ok(input) => input,
        Err(error) => {
            return AttemptReport::failed(TaskFailure::new(
                FailureKind::Serialization,
                format!("cannot decode the input sent to the worker: {error}"),
            ));
        }
    };
    task.run_attempt(AttemptRequest {
        input: &input,
        attempt: request.attempt,
        control,
        display_name: &request.display_name,
        progress: None,
    })
}
