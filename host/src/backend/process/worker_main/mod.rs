//! The worker side of the process backend: `osiiso-host worker` (or an embedder's binary that
//! calls [`maybe_run_worker`]). It reads requests on stdin, runs each attempt in a fresh
//! instance, and answers on the original stdout; guest output is captured in memory and
//! anything else printed to fd 1 goes to stderr, so nothing but frames reaches the protocol
//! channel. Its `tracing` events travel to the parent as frames.
//!
//! One thread does everything: between attempts it waits for the next request, and during an
//! attempt the engine's epoch check reads the channel for a cancellation (and keeps the
//! requests that arrived meanwhile, in order). The parent sends a few attempts ahead; the
//! worker runs them in the order they came and answers each, its replies buffered and
//! written in batches (before it waits, at most every millisecond, and at each epoch check).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, filter::LevelFilter};

use super::init::{WorkerHooks, WorkerInit};
use super::logs::ForwardLayer;
use super::protocol::{
    DoneReply, Frame, PROTOCOL_VERSION, Reply, Request, RunRequest, encode_frame_into, write_frame,
    write_frame_buffered,
};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::backend::loaded::LoadedPlugins;
use crate::engine::{Host, Plugin, WarmPool};
use crate::progress::ProgressCell;

use crate::failure::{FailureKind, TaskFailure};

mod control;
mod options;

use self::control::{ControlChannel, progress_sender, protocol_channel, watch};
pub use self::options::WorkerOptions;

/// Idle warm instances a worker keeps (its host holds four instances at most).
const WARM_INSTANCES: usize = 2;
/// The longest a written reply waits in the buffer while the worker runs more attempts.
const REPLY_BATCH_WAIT: Duration = Duration::from_millis(1);

/// The compiled plugins this worker has loaded, by content hash (whatever path named them).
type Plugins = LoadedPlugins<Plugin>;

/// Plugins a worker keeps loaded at most (as a NATS node does): a long-lived queue whose
/// plugins change keeps a bounded set of compiled code in each worker.
const LOADED_PLUGINS: usize = 32;

/// The marker argument an embedding binary recognises to act as a worker
/// (see [`ProcessContext::CurrentExe`](crate::backend::ProcessContext::CurrentExe)).
pub const WORKER_MARKER: &str = "--osiiso-worker";

/// If this process was started as a worker by
/// [`ProcessContext::CurrentExe`](crate::backend::ProcessContext::CurrentExe), serves as one
/// and exits; if it was started as a compile process, compiles and exits
/// ([`maybe_run_compiler`](crate::maybe_run_compiler)); otherwise returns. Call it first
/// thing in `main`.
pub fn maybe_run_worker() {
    maybe_run_worker_with(WorkerHooks::new());
}

/// [`maybe_run_worker`] for a binary that offers initializer hooks
/// ([`WorkerInit::hook`](crate::backend::WorkerInit::hook)).
pub fn maybe_run_worker_with(hooks: WorkerHooks) {
    crate::engine::maybe_run_compiler();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(position) = args.iter().position(|a| a == WORKER_MARKER) {
        let code = match WorkerOptions::from_args(&args[position + 1..]) {
            Ok(options) => run_worker_with(options, &hooks),
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
    run_worker_with(options, &WorkerHooks::new())
}

/// [`run_worker`] with initializer hooks.
pub fn run_worker_with(options: WorkerOptions, hooks: &WorkerHooks) -> i32 {
    let (requests, out) = match protocol_channel() {
        Ok(channel) => channel,
        Err(message) => {
            eprintln!("osiiso worker: {message}");
            return 3;
        }
    };
    if let Some(limit) = options.memory_limit {
        // One malloc arena: every extra thread arena reserves 64 MiB of address space, which
        // would count against the cap without holding anything.
        // SAFETY: mallopt before this process starts any thread.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        // The soft limit only: it holds for this process, which runs no native code but
        // its own, and its compile processes raise it back, so that compiling is bounded by
        // the compile memory limit rather than by the worker's.
        let mut rlimit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit with valid structs.
        let set = unsafe {
            libc::getrlimit(libc::RLIMIT_AS, &mut rlimit) == 0 && {
                rlimit.rlim_cur = limit.min(rlimit.rlim_max);
                libc::setrlimit(libc::RLIMIT_AS, &rlimit) == 0
            }
        };
        if !set {
            eprintln!("osiiso worker: cannot set the memory limit");
        }
    }
    if let Some(level) = options.log_level {
        let layer = ForwardLayer::new(out.clone()).with_filter(LevelFilter::from_level(level));
        // An embedder's binary may have installed a subscriber already; its own wins.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
    }
    let host = {
        let mut builder = Host::builder()
            .cache(!options.no_cache)
            .max_instances(4)
            .allow_precompiled(options.allow_precompiled)
            .fuel_metering(!options.no_fuel)
            .compile_tier(options.compile_tier)
            .tick(Duration::from_millis(10));
        if let Some(cap) = options.memory_limit {
            builder = builder.address_space_cap(cap);
        }
        if let Some(total) = options.total_memory {
            builder = builder.total_memory(total);
        }
        if let Some(timeout) = options.compile_timeout {
            builder = builder.compile_timeout(timeout);
        }
        if let Some(memory) = options.compile_memory {
            builder = builder.compile_memory(memory);
        }
        if let Some(dir) = &options.cache_dir {
            builder = builder.cache_dir(dir);
        }
        match builder.build() {
            Ok(host) => host,
            Err(error) => {
                tracing::error!("cannot build the worker's engine: {error}");
                return 3;
            }
        }
    };
    let send = |reply: &Reply| -> bool {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *out, reply).is_ok()
    };
    // A reply that may wait in the buffer for the rest of its batch.
    let send_buffered = |reply: &Reply| -> bool {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        write_frame_buffered(&mut *out, reply).is_ok()
    };
    let flush = || -> bool {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        out.flush().is_ok()
    };
    if !send(&Reply::Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
    }) {
        return 3;
    }

    let channel = Arc::new(Mutex::new(ControlChannel::new(requests)));
    let mut plugins = Plugins::new(LOADED_PLUGINS);
    // Instances kept warm between attempts, for plugins whose limits ask for reuse.
    let warm = WarmPool::new(WARM_INSTANCES);
    // When the oldest reply still in the buffer was written.
    let mut unflushed: Option<Instant> = None;
    // The encoded reply, its buffer reused.
    let mut reply = Vec::new();
    loop {
        let frame = {
            let mut channel = channel.lock().unwrap_or_else(|e| e.into_inner());
            // Replies leave before the worker waits: the parent is waiting for them.
            if unflushed.is_some() && !channel.has_request() {
                unflushed = None;
                if !flush() {
                    return 3;
                }
            }
            channel.next()
        };
        match frame {
            Ok(Frame::Message(Request::Run(request))) => {
                let skip = channel
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .start(request.attempt_id);
                let report = if skip {
                    // Cancelled while it waited behind another attempt: answered unrun.
                    AttemptOutcome::Cancelled.into()
                } else {
                    let progress = Arc::new(ProgressCell::new());
                    let report = run_one(
                        &host,
                        &mut plugins,
                        &warm,
                        &request,
                        watch(&channel, &out, &request),
                        progress_sender(&out, request.attempt_id, &progress),
                    );
                    // The last progress the parent has not heard yet goes before the result.
                    if let Some(last) = progress.take_pending()
                        && !send_buffered(&Reply::Progress {
                            attempt_id: request.attempt_id,
                            done: last.done,
                            total: last.total,
                        })
                    {
                        return 3;
                    }
                    report
                };
                encode_done(&mut reply, &request, report);
                let written = {
                    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                    out.write_all(&reply).is_ok()
                };
                if !written {
                    return 3;
                }
                let first = *unflushed.get_or_insert_with(Instant::now);
                if first.elapsed() >= REPLY_BATCH_WAIT {
                    unflushed = None;
                    if !flush() {
                        return 3;
                    }
                }
                if channel
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_closing()
                {
                    return if flush() { 0 } else { 3 };
                }
            }
            Ok(Frame::Message(Request::Init(init))) => {
                match initialize(&host, &mut plugins, hooks, &init) {
                    Ok(()) => {
                        if !send(&Reply::Ready) {
                            return 3;
                        }
                    }
                    Err(message) => {
                        send(&Reply::InitFailed { message });
                        return 4;
                    }
                }
            }
            Ok(Frame::Message(Request::Cancel { attempt_id })) => {
                channel
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remember_cancel(attempt_id);
            }
            Ok(Frame::Message(Request::Stop)) | Ok(Frame::Eof) => {
                return if flush() { 0 } else { 3 };
            }
            Ok(Frame::Undecodable(message)) => {
                if !send(&Reply::BadFrame { message }) {
                    return 3;
                }
            }
            Err(error) => {
                flush();
                tracing::error!("protocol error: {error}");
                return 3;
            }
        }
    }
}

/// The reply to an attempt, encoded into `frame`; when its value or captured output would
/// not fit in a frame, a `Serialization` failure that says so (the worker stays up; nothing
/// is retried).
fn encode_done(frame: &mut Vec<u8>, request: &RunRequest, report: AttemptReport) {
    let fuel = report.fuel_consumed;
    if let Err(too_large) = encode_frame_into(frame, &done(request.attempt_id, report)) {
        let failure = AttemptReport {
            fuel_consumed: fuel,
            ..AttemptReport::failed(TaskFailure::new(
                FailureKind::Serialization,
                format!(
                    "the result of task '{}' is {too_large}",
                    request.spec.display_name
                ),
            ))
        };
        // A failure with a bounded message always fits.
        let _ = encode_frame_into(frame, &done(request.attempt_id, failure));
    }
}

fn done(attempt_id: u64, report: AttemptReport) -> Reply {
    Reply::Done(Box::new(DoneReply::new(attempt_id, report)))
}

/// Runs the initializer: the preloads, then the hooks.
fn initialize(
    host: &Host,
    plugins: &mut Plugins,
    hooks: &WorkerHooks,
    init: &WorkerInit,
) -> Result<(), String> {
    for path in init.preloads() {
        let plugin = host
            .load(path)
            .map_err(|e| format!("cannot preload '{}': {e}", path.display()))?;
        let hash = plugin.hash().to_string();
        plugins.insert(&hash, plugin);
    }
    for (name, argument) in init.hooks() {
        hooks.call(name, argument)?;
    }
    Ok(())
}

fn run_one(
    host: &Host,
    plugins: &mut Plugins,
    warm: &WarmPool,
    request: &RunRequest,
    control: Arc<AttemptControl>,
    progress: ProgressFn,
) -> AttemptReport {
    let spec = &request.spec;
    let plugin = match plugins.get(&spec.plugin_hash) {
        Some(plugin) => plugin.clone(),
        None => match host.load(&request.plugin_path) {
            Ok(plugin) if plugin.hash() == spec.plugin_hash => {
                plugins.insert(&spec.plugin_hash, plugin.clone());
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
    spec.run(
        plugin,
        spec.sandbox.clone(),
        control,
        warm,
        "worker",
        Some(progress),
    )
}
