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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, filter::LevelFilter};

use super::init::{WorkerHooks, WorkerInit};
use super::logs::{ForwardLayer, SharedWriter};
use super::protocol::{
    DoneReply, Frame, FrameReader, PROTOCOL_VERSION, Reply, Request, RunRequest, encode_frame_into,
    write_frame, write_frame_buffered,
};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::engine::{CompileTier, Host, Plugin, WarmPool};
use crate::progress::{Progress, ProgressCell};

use crate::failure::{FailureKind, TaskFailure};

/// Idle warm instances a worker keeps (its host holds four instances at most).
const WARM_INSTANCES: usize = 2;
/// The longest a written reply waits in the buffer while the worker runs more attempts.
const REPLY_BATCH_WAIT: Duration = Duration::from_millis(1);
/// How often a running attempt's checks read the request pipe, at most.
const CANCEL_READ_INTERVAL: Duration = Duration::from_millis(1);
/// Cancellations of attempts not started yet that a worker remembers (the parent has a few
/// in flight; anything past this is dropped, oldest first).
const MAX_REMEMBERED_CANCELS: usize = 1024;

/// The compiled plugins this worker has loaded, by content hash (whatever path named them).
type Plugins = HashMap<String, Plugin>;

/// Plugins a worker keeps loaded at most (as a NATS node does): a long-lived queue whose
/// plugins change keeps a bounded set of compiled code in each worker. A plugin loaded again
/// after it was dropped comes from the compile cache.
const LOADED_PLUGINS: usize = 32;

/// Keeps `plugin` loaded under `hash`, dropping another one first if the worker holds
/// [`LOADED_PLUGINS`] already (its running attempts keep their code until they end).
fn keep<P>(plugins: &mut HashMap<String, P>, hash: &str, plugin: P) {
    if plugins.len() >= LOADED_PLUGINS
        && !plugins.contains_key(hash)
        && let Some(dropped) = plugins.keys().next().cloned()
    {
        plugins.remove(&dropped);
    }
    plugins.insert(hash.to_string(), plugin);
}

/// How a worker process is configured (from its command line).
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// The compile cache shared with the parent.
    pub cache_dir: Option<PathBuf>,
    /// Do not use the compile cache.
    pub no_cache: bool,
    /// OS address-space cap for this process (`RLIMIT_AS`), in bytes.
    pub memory_limit: Option<u64>,
    /// The most verbose `tracing` level to forward to the parent (none: forward nothing).
    pub log_level: Option<Level>,
    /// Load precompiled artifacts (the parent's host allows them).
    pub allow_precompiled: bool,
    /// The memory budget of this worker's live instances (its share of the parent's).
    pub total_memory: Option<usize>,
    /// Run guest code without fuel metering (the parent's host does not meter fuel).
    pub no_fuel: bool,
    /// How long compiling one plugin may take (the parent's compile timeout).
    pub compile_timeout: Option<Duration>,
    /// The memory compiling one plugin may use (the parent's compile memory limit).
    pub compile_memory: Option<u64>,
    /// The compiler of plugins (the parent's).
    pub compile_tier: CompileTier,
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
        if let Some(level) = self.log_level {
            args.push("--log-level".into());
            args.push(level.to_string());
        }
        if self.allow_precompiled {
            args.push("--allow-precompiled".into());
        }
        if let Some(total) = self.total_memory {
            args.push("--total-memory".into());
            args.push(total.to_string());
        }
        if self.no_fuel {
            args.push("--no-fuel".into());
        }
        if let Some(timeout) = self.compile_timeout {
            args.push("--compile-timeout-ms".into());
            args.push(timeout.as_millis().min(u64::MAX.into()).to_string());
        }
        if let Some(memory) = self.compile_memory {
            args.push("--compile-memory".into());
            args.push(memory.to_string());
        }
        if self.compile_tier != CompileTier::default() {
            args.push("--compile-tier".into());
            args.push(self.compile_tier.name().into());
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
                "--log-level" => {
                    let value = it.next().ok_or("--log-level needs a value")?;
                    options.log_level = Some(value.parse().map_err(|_| "bad --log-level")?);
                }
                "--allow-precompiled" => options.allow_precompiled = true,
                "--no-fuel" => options.no_fuel = true,
                "--compile-tier" => {
                    let value = it.next().ok_or("--compile-tier needs a value")?;
                    options.compile_tier =
                        CompileTier::from_name(value).ok_or("bad --compile-tier")?;
                }
                "--total-memory" => {
                    let value = it.next().ok_or("--total-memory needs a value")?;
                    options.total_memory = Some(value.parse().map_err(|_| "bad --total-memory")?);
                }
                "--compile-timeout-ms" => {
                    let value = it.next().ok_or("--compile-timeout-ms needs a value")?;
                    let millis = value.parse().map_err(|_| "bad --compile-timeout-ms")?;
                    options.compile_timeout = Some(Duration::from_millis(millis));
                }
                "--compile-memory" => {
                    let value = it.next().ok_or("--compile-memory needs a value")?;
                    options.compile_memory =
                        Some(value.parse().map_err(|_| "bad --compile-memory")?);
                }
                other => return Err(format!("unknown worker argument '{other}'")),
            }
        }
        Ok(options)
    }
}

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
        let rlimit = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) } != 0 {
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

    let channel = Arc::new(Mutex::new(ControlChannel {
        requests,
        pending: VecDeque::new(),
        cancels: BTreeSet::new(),
        started: 0,
        last_read: None,
        closing: false,
    }));
    let mut plugins = Plugins::new();
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
                if channel.lock().unwrap_or_else(|e| e.into_inner()).closing {
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

/// Takes over the protocol channel: the original stdin for requests and stdout for replies,
/// kept on close-on-exec descriptors; fd 0 then reads /dev/null and fd 1 goes to stderr, so
/// stray prints and child processes cannot touch the stream.
fn protocol_channel() -> Result<(FrameReader, SharedWriter), String> {
    // SAFETY: plain libc calls on this process's own descriptors and attributes.
    let (input, output) = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        let input = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        let output = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        // Nothing this process starts (a hook's helper, say) may read requests or write
        // frames: fd 0 becomes /dev/null and fd 1 stderr.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if input < 0 || output < 0 || null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err("cannot set up the protocol channel".into());
        }
        libc::close(null);
        // SAFETY: both are fresh descriptors owned by nothing else.
        (OwnedFd::from_raw_fd(input), OwnedFd::from_raw_fd(output))
    };
    let requests = FrameReader::new(input).map_err(|e| format!("cannot read requests: {e}"))?;
    let out = Arc::new(Mutex::new(BufWriter::new(File::from(output))));
    Ok((requests, out))
}

/// The request stream, read between attempts by the main loop and during an attempt by the
/// epoch check.
struct ControlChannel {
    requests: FrameReader,
    /// Frames read during an attempt that are not for it, in order.
    pending: VecDeque<Frame<Request>>,
    /// Attempts the parent asked to cancel: the running one, or ones not started yet.
    cancels: BTreeSet<u64>,
    /// The id of the last attempt started (ids grow in the order the parent sends them).
    started: u64,
    /// When a running attempt's check last read the pipe.
    last_read: Option<Instant>,
    /// The parent asked the worker to stop, or went away.
    closing: bool,
}

impl ControlChannel {
    /// Whether a request can be had without waiting: one already read, or one in the pipe
    /// now (read without waiting, and kept for [`next`](Self::next)).
    fn has_request(&mut self) -> bool {
        if !self.pending.is_empty() || self.requests.has_frame() {
            return true;
        }
        self.last_read = Some(Instant::now());
        match self.requests.next::<Request>(Some(Duration::ZERO)) {
            Ok(Some(frame)) => {
                self.pending.push_back(frame);
                true
            }
            Ok(None) => false,
            // `next` reports it again.
            Err(_) => true,
        }
    }

    /// The next request, waiting for it.
    fn next(&mut self) -> std::io::Result<Frame<Request>> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        loop {
            let frame = self.requests.next(None)?;
            // It read the pipe (unless the frame was buffered, read no longer ago).
            self.last_read = Some(Instant::now());
            if let Some(frame) = frame {
                return Ok(frame);
            }
        }
    }

    /// Attempt `id` starts; true if it was cancelled before it did (it is answered
    /// `Cancelled` without running).
    fn start(&mut self, id: u64) -> bool {
        self.started = id;
        // Cancellations of attempts that have ended are stale.
        self.cancels = self.cancels.split_off(&id);
        self.cancels.remove(&id)
    }

    /// Notes a cancellation of the running attempt or of one not started yet.
    fn remember_cancel(&mut self, id: u64) {
        if id < self.started {
            return;
        }
        self.cancels.insert(id);
        if self.cancels.len() > MAX_REMEMBERED_CANCELS {
            self.cancels.pop_first();
        }
    }

    /// Takes the requests already read, and reads what has arrived without waiting (the
    /// pipe at most once per [`CANCEL_READ_INTERVAL`], counting the main loop's reads: a
    /// short attempt costs no read of its own); true if `attempt_id` is to stop.
    fn poll_cancel(&mut self, attempt_id: u64) -> bool {
        let now = Instant::now();
        let read = self
            .last_read
            .is_none_or(|last| now.duration_since(last) >= CANCEL_READ_INTERVAL);
        if read {
            self.last_read = Some(now);
        }
        while !self.closing {
            if !read && !self.requests.has_frame() {
                return self.cancels.contains(&attempt_id);
            }
            match self.requests.next::<Request>(Some(Duration::ZERO)) {
                Ok(None) => return self.cancels.contains(&attempt_id),
                Ok(Some(Frame::Message(Request::Cancel { attempt_id: id }))) => {
                    self.remember_cancel(id);
                }
                Ok(Some(frame @ (Frame::Message(Request::Stop) | Frame::Eof))) => {
                    self.closing = true;
                    self.pending.push_back(frame);
                }
                Ok(Some(frame)) => self.pending.push_back(frame),
                Err(error) => {
                    tracing::error!("protocol error: {error}");
                    self.closing = true;
                }
            }
        }
        true
    }
}

/// The control of one attempt: its deadline, and a watch that, whenever the engine checks,
/// reads cancellations from the channel and sends the replies waiting in the buffer.
fn watch(
    channel: &Arc<Mutex<ControlChannel>>,
    out: &SharedWriter,
    request: &RunRequest,
) -> Arc<AttemptControl> {
    let attempt_id = request.attempt_id;
    let (channel, out) = (channel.clone(), out.clone());
    let (timeout, left) = request.spec.clock();
    AttemptControl::watched(
        timeout,
        left,
        Box::new(move || {
            // The replies of the attempts before this one wait at most one check.
            if let Ok(mut out) = out.try_lock()
                && !out.buffer().is_empty()
            {
                let _ = out.flush();
            }
            // Checks from another thread (an HTTP watcher) skip a read already in progress.
            channel
                .try_lock()
                .is_ok_and(|mut channel| channel.poll_cancel(attempt_id))
        }),
    )
}

/// Where the guest's progress goes: a `Progress` frame to the parent, coalesced to at most
/// one per `PROGRESS_INTERVAL` however often the guest reports.
fn progress_sender(out: &SharedWriter, attempt_id: u64, cell: &Arc<ProgressCell>) -> ProgressFn {
    let (out, cell) = (out.clone(), cell.clone());
    Arc::new(move |done, total| {
        if cell.report(Progress::new(done, total), true) {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write_frame(
                &mut *out,
                &Reply::Progress {
                    attempt_id,
                    done,
                    total,
                },
            );
        }
    })
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
        keep(plugins, &hash, plugin);
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
                keep(plugins, &spec.plugin_hash, plugin.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_keeps_a_bounded_set_of_plugins() {
        let mut plugins = HashMap::new();
        for i in 0..LOADED_PLUGINS * 3 {
            keep(&mut plugins, &format!("hash-{i}"), i);
            assert!(plugins.len() <= LOADED_PLUGINS);
        }
        assert_eq!(plugins.len(), LOADED_PLUGINS);
        // The newest is always kept, and keeping a plugin again replaces nothing else.
        assert_eq!(
            plugins.get(&format!("hash-{}", LOADED_PLUGINS * 3 - 1)),
            Some(&(LOADED_PLUGINS * 3 - 1))
        );
        let before: BTreeSet<String> = plugins.keys().cloned().collect();
        let again = before.iter().next().unwrap().clone();
        keep(&mut plugins, &again, 0);
        assert_eq!(plugins.keys().cloned().collect::<BTreeSet<_>>(), before);
    }

    #[test]
    fn worker_options_round_trip_with_the_compile_limits() {
        let options = WorkerOptions {
            cache_dir: Some("/tmp/cache".into()),
            memory_limit: Some(512 << 20),
            total_memory: Some(1 << 30),
            compile_timeout: Some(Duration::from_millis(2500)),
            compile_memory: Some(64 << 20),
            no_fuel: true,
            compile_tier: CompileTier::Baseline,
            ..WorkerOptions::default()
        };
        let parsed = WorkerOptions::from_args(&options.to_args()).unwrap();
        assert!(parsed.no_fuel);
        assert_eq!(parsed.compile_tier, CompileTier::Baseline);
        assert_eq!(
            WorkerOptions::from_args(&[]).unwrap().compile_tier,
            CompileTier::Tiered
        );
        assert!(!WorkerOptions::from_args(&[]).unwrap().no_fuel);
        assert_eq!(parsed.compile_timeout, options.compile_timeout);
        assert_eq!(parsed.compile_memory, options.compile_memory);
        assert_eq!(parsed.memory_limit, options.memory_limit);
        // A timeout too long for milliseconds still starts the worker.
        let forever = WorkerOptions {
            compile_timeout: Some(Duration::MAX),
            ..WorkerOptions::default()
        };
        assert!(WorkerOptions::from_args(&forever.to_args()).is_ok());
    }
}
