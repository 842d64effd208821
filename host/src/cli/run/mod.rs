//! `osiiso-host run PLUGIN [TASK] ...`: load, build the work list, run it through a queue,
//! report.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, ValueEnum};
use osiiso_host::backend::{Async, Process, Thread};
use osiiso_host::metrics::Metrics;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{
    FailPolicy, Handle, Mode, OnExit, QueueBuilder, Retention, RunOptions, RunStatus, RunSummary,
    TaskOptions, Workers,
};
use osiiso_host::units::parse_size;
use osiiso_host::{AsyncQueue, Plugin, ProcessQueue, Task, ThreadQueue};

mod plan;

use self::plan::{Plan, Work, open_checkpoint, plan};

/// Attempts each process worker holds at once in a run that cannot stop early.
const PROCESS_ATTEMPTS_PER_WORKER: usize = 4;
use super::Failure;
use super::feed::{Fed, Feeder, Window};
use super::http::Watch;
use super::options::{CacheArgs, LimitArgs, SandboxArgs, duration};
use super::output::{OutputError, OutputFormat, ProgressMode, Reporter};
use super::progress::GuestProgress;
use super::signals::Interrupts;
use super::work;
#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The plugin component (.wasm) or a precompiled artifact.
    plugin: PathBuf,
    /// The task to run; may be omitted when the plugin has exactly one.
    task: Option<String>,

    /// A JSON input; each one is a task (repeatable).
    #[arg(long = "input", value_name = "JSON")]
    inputs: Vec<String>,
    /// A file of JSON inputs, one per line (`-` for stdin).
    #[arg(long = "inputs", value_name = "FILE.jsonl", conflicts_with = "jobs")]
    inputs_file: Option<PathBuf>,
    /// A file of jobs, one object per line: `task`, `input` and per-task options (`-` for
    /// stdin).
    #[arg(long, value_name = "FILE.jsonl")]
    jobs: Option<PathBuf>,
    /// `finite` checks every input first (a bad line stops the run before anything runs),
    /// then submits them as the workers take them; `infinite` submits each line as it arrives
    /// (a bad one is reported and skipped) and writes each result as its task finishes, until
    /// the input ends (a stream: `tail -f events.jsonl | osiiso-host run ...`).
    #[arg(long, value_enum, default_value = "finite")]
    mode: ModeArg,
    /// Remember in this SQLite file which inputs succeeded: a rerun restores them (attempts
    /// 0, "restored from checkpoint") and runs only the rest. It must lie outside every
    /// `--dir`/`--dir-ro` grant.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,

    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    task_options: TaskArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    cache: CacheArgs,

    /// How results are printed [default: table on a terminal, jsonl otherwise].
    #[arg(long, value_enum)]
    output: Option<OutputFormat>,
    /// Progress on stderr: a bar on a terminal; with `always`, plain lines every few seconds
    /// where stderr is not a terminal (a file, a CI log).
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// No run summary, and no progress unless `--progress always` asks for it.
    #[arg(short, long)]
    quiet: bool,
    /// While the run lasts, serve `/metrics` (Prometheus), `/healthz` and a status page at
    /// `/` on ADDR: `PORT` or `:PORT` listens on 127.0.0.1 only; give an address
    /// (`0.0.0.0:9100`) to listen elsewhere. Port 0 picks a free port (printed on stderr).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum QueueKind {
    Async,
    Thread,
    Process,
    /// Attempts on `osiiso-host serve` nodes, through the NATS server of `--nats`.
    #[cfg(feature = "nats")]
    Nats,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ModeArg {
    Finite,
    Infinite,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OnExitArg {
    /// Cancel what is not must-complete; let the rest finish.
    #[value(name = "complete-priority", alias = "complete_priority")]
    CompletePriority,
    /// Cancel everything.
    Cancel,
}

/// Queue options.
#[derive(Args, Debug)]
struct QueueArgs {
    /// The backend that runs attempts.
    #[arg(long = "queue", value_enum, default_value = "thread")]
    kind: QueueKind,
    /// Worker count, or `auto`.
    #[arg(long, value_name = "N|auto", default_value = "auto")]
    workers: String,
    /// Maximum outstanding tasks (0 = unbounded); in infinite mode, how far input is read
    /// ahead of the workers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    size: usize,
    /// How quickly cancellations and deadlines reach running work.
    #[arg(long, value_name = "DUR", value_parser = duration)]
    poll: Option<Duration>,
    /// The NATS server of `--queue nats`: a URL, or the comma-separated URLs of one cluster's
    /// servers; repeatable [default: $OSIISO_NATS_URL, else nats://127.0.0.1:4222].
    #[cfg(feature = "nats")]
    #[arg(long, value_name = "URL[,URL...]")]
    nats: Vec<String>,
    /// Replicas of the NATS streams this run makes if they are missing [default: the
    /// cluster's servers, at most 3].
    #[cfg(feature = "nats")]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: Option<u8>,
    /// OS memory cap per worker process (process queue).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    worker_memory: Option<usize>,
    /// Limit for the whole run; the rest is cancelled and the run marked timed out.
    #[arg(long, value_name = "DUR", value_parser = duration)]
    run_timeout: Option<Duration>,
    /// The first final failure cancels everything not yet run (must-complete tasks go on).
    #[arg(long)]
    fail_first: bool,
    /// What a run timeout cancels.
    #[arg(long, value_enum, default_value = "complete-priority")]
    on_exit: OnExitArg,
    /// Attempts per second across all workers.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Attempts that may pass at once after an idle period.
    #[arg(long, value_name = "N", default_value_t = 1)]
    burst: u32,
    /// Allow outgoing HTTP (wasi:http) to HOST[:PORT]; without a port, any port (repeatable).
    #[arg(long, value_name = "HOST[:PORT]")]
    allow_http: Vec<String>,
}

/// Task options: defaults that each `--jobs` line can override.
#[derive(Args, Debug)]
struct TaskArgs {
    /// Extra attempts after the first, for retryable failures.
    #[arg(long, value_name = "N", alias = "retry")]
    retries: Option<u32>,
    /// Pause before the first retry.
    #[arg(long, value_name = "DUR", value_parser = duration)]
    retry_delay: Option<Duration>,
    /// Multiplies the pause after each retry.
    #[arg(long, value_name = "X")]
    backoff: Option<f64>,
    /// Limit for each attempt.
    #[arg(long, value_name = "DUR", value_parser = duration)]
    timeout: Option<Duration>,
    /// Lower runs first.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Survive fail-first and run-timeout cancellation.
    #[arg(long)]
    must_complete: bool,
}

impl TaskArgs {
    fn task_defaults(&self) -> TaskDefaults {
        TaskDefaults {
            retries: self.retries,
            retry_delay: self.retry_delay,
            backoff: self.backoff,
            timeout: self.timeout,
            priority: self.priority,
            must_complete: self.must_complete,
        }
    }

    fn apply(&self, options: TaskOptions) -> TaskOptions {
        self.task_defaults().apply(options)
    }
}

fn parse_workers(text: &str) -> anyhow::Result<Workers> {
    if text == "auto" {
        return Ok(Workers::Auto);
    }
    let n: usize = text
        .parse()
        .map_err(|_| anyhow!("--workers: expected a number or `auto`, got '{text}'"))?;
    if n == 0 {
        bail!("--workers: workers must be > 0");
    }
    Ok(Workers::Fixed(n))
}

/// Refuses more workers than the backend `B` allows.
fn check_workers<B: Backend>(workers: Workers) -> anyhow::Result<()> {
    match workers {
        Workers::Fixed(n) if n > B::MAX_WORKERS => bail!(
            "--workers: at most {} workers on the {} queue, got {n}",
            B::MAX_WORKERS,
            B::NAME
        ),
        _ => Ok(()),
    }
}

pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    if args.queue.worker_memory.is_some() && args.queue.kind != QueueKind::Process {
        return Err(anyhow!("--worker-memory needs --queue process").into());
    }
    let workers = parse_workers(&args.queue.workers)?;
    match args.queue.kind {
        QueueKind::Async => check_workers::<Async>(workers)?,
        QueueKind::Thread => check_workers::<Thread>(workers)?,
        QueueKind::Process => check_workers::<Process>(workers)?,
        #[cfg(feature = "nats")]
        QueueKind::Nats => check_workers::<osiiso_host::backend::Nats>(workers)?,
    }
    #[cfg(feature = "nats")]
    if !args.queue.nats.is_empty() && args.queue.kind != QueueKind::Nats {
        return Err(anyhow!("--nats needs --queue nats").into());
    }
    #[cfg(feature = "nats")]
    if args.queue.replicas.is_some() && args.queue.kind != QueueKind::Nats {
        return Err(anyhow!("--replicas needs --queue nats").into());
    }
    // The pool holds this many live instances; more workers wait for a free slot.
    let instances = match workers {
        Workers::Fixed(n) => u32::try_from(n.min(1000)).unwrap_or(1000) + 2,
        Workers::Auto => 64,
    };

    // Fuel is counted only when a budget asks for it, or for the async queue's yields.
    let fuel_metering = args.limits.fuel.is_some() || args.queue.kind == QueueKind::Async;
    let host = args.cache.host(instances, fuel_metering)?;
    let plugin = args.limits.load(&host, &args.plugin)?;
    let plugin = plugin.with_sandbox(args.sandbox.sandbox(&host)?);
    let plugin = allow_http(plugin, &args.queue.allow_http)?;
    let checkpoint = match &args.checkpoint {
        Some(path) => Some(open_checkpoint(path, plugin.sandbox())?),
        None => None,
    };
    let plan = plan(&args, &plugin, checkpoint)?;
    let watch = match &args.http {
        Some(addr) => Some(Watch::start(addr, &host, args.quiet)?),
        None => None,
    };
    let metrics = watch.as_ref().map(|watch| &watch.metrics);

    match args.queue.kind {
        QueueKind::Process => {
            // A few attempts wait in each worker, so that it never idles waiting for this
            // process; only where no task can be stopped early, since a task sent to a
            // worker has left the queue (README.md, "Queues").
            let stops_early = args.queue.fail_first || args.queue.run_timeout.is_some();
            let mut builder = ProcessQueue::builder().attempts_per_worker(if stops_early {
                1
            } else {
                PROCESS_ATTEMPTS_PER_WORKER
            });
            if let Some(bytes) = args.queue.worker_memory {
                builder = builder.worker_memory(bytes as u64);
            }
            run_queue(builder, &args, workers, plan, metrics)
        }
        QueueKind::Async => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
            let builder = AsyncQueue::builder().runtime(runtime.handle().clone());
            run_queue(builder, &args, workers, plan, metrics)
        }
        QueueKind::Thread => run_queue(ThreadQueue::builder(), &args, workers, plan, metrics),
        #[cfg(feature = "nats")]
        QueueKind::Nats => {
            // The environment is read here, not by clap: a variable set for `--queue nats`
            // must not turn into a `--nats` flag on the local queues.
            let servers = if args.queue.nats.is_empty() {
                std::env::var("OSIISO_NATS_URL")
                    .unwrap_or_else(|_| osiiso_host::backend::DEFAULT_NATS_URL.to_string())
            } else {
                args.queue.nats.join(",")
            };
            let mut builder = osiiso_host::NatsQueue::builder().nats(servers);
            if let Some(replicas) = args.queue.replicas {
                builder = builder.replicas(usize::from(replicas));
            }
            run_queue(builder, &args, workers, plan, metrics)
        }
    }
}

/// Builds the queue, feeds it, runs it and reports.
fn run_queue<B: Backend>(
    builder: QueueBuilder<B>,
    args: &RunArgs,
    workers: Workers,
    plan: Plan,
    metrics: Option<&Metrics>,
) -> Result<(), Failure> {
    let Plan {
        work,
        total,
        checkpoint,
        reporter,
    } = plan;
    let infinite = matches!(work, Work::Stream(..));
    // The reporter writes (or spills) each row and counts it: the queue keeps counts only,
    // and a finished task leaves nothing behind, however long the run.
    let mut builder = builder
        .retention(Retention::Counts)
        .workers(workers)
        .size(args.queue.size)
        .burst(args.queue.burst)
        .mode(if infinite {
            Mode::Infinite
        } else {
            Mode::Finite
        })
        .on_exit(match args.queue.on_exit {
            OnExitArg::CompletePriority => OnExit::CompletePriority,
            OnExitArg::Cancel => OnExit::Cancel,
        });
    if args.queue.fail_first {
        builder = builder.fail_policy(FailPolicy::FailFirst);
    }
    if let Some(rate) = args.queue.rate {
        builder = builder.rate(rate);
    }
    if let Some(poll) = args.queue.poll {
        builder = builder.poll(poll);
    }
    if let Some(timeout) = args.queue.run_timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(metrics) = metrics {
        builder = builder.metrics(metrics);
    }
    // Guest progress on the bar, when there is one.
    if let Some(bar) = reporter.bar() {
        let guest = Arc::new(GuestProgress::new(bar.clone(), total));
        let done = guest.clone();
        builder = builder
            .on_progress(move |handle, report| guest.report(handle, report))
            .on_complete(move |result| done.finished(&result.task_id));
    }
    let queue = Arc::new(builder.build().map_err(|e| anyhow!("{e}"))?);
    // Stopping a run early (a signal, results that cannot be written): no more input is read,
    // what is not done is cancelled, and the run ends with its summary.
    let stop = Arc::new(AtomicBool::new(false));
    // Room for unfinished tasks while jobs are fed: what bounds the inputs the host holds.
    let window = Window::new(match workers {
        Workers::Fixed(n) => n.saturating_mul(2),
        Workers::Auto => 0,
    });
    let stopper = {
        let (queue, stop, window) = (Arc::downgrade(&queue), stop.clone(), window.clone());
        let metrics = metrics.cloned();
        move || {
            // `/healthz` says so from now on.
            if let Some(metrics) = &metrics {
                metrics.set_draining(true);
            }
            stop.store(true, Ordering::SeqCst);
            window.close();
            if let Some(queue) = queue.upgrade() {
                queue.cancel();
            }
        }
    };
    reporter.on_output_failure(stopper.clone());
    let interrupts = Interrupts::watch(Box::new(stopper))
        .map_err(|e| anyhow!("cannot watch for signals: {e}"))?;
    // Every admitted task, in input order, goes to the reporter; nothing here keeps it.
    let tracker = reporter.clone();
    let track = move |handle: &Handle| tracker.track(handle);

    let skipped = reporter.skipped();
    let feeder = |resolver, plan| Feeder {
        queue: queue.clone(),
        resolver,
        plan,
        stop: stop.clone(),
        window: window.clone(),
        skipped: skipped.clone(),
    };
    // The run's duration counts from here: feeding jobs is part of it.
    let started = std::time::Instant::now();
    let summary = match work {
        Work::List {
            submissions,
            admission_order,
        } => {
            // A queue whose running order is its admission order may run while it is fed.
            // Otherwise everything is admitted first, so that priorities hold across the
            // whole work list.
            if admission_order {
                queue.start().map_err(|e| anyhow!("{e}"))?;
            }
            match work::submit_batch(&queue, submissions, checkpoint.as_ref(), &track) {
                Ok(()) => {}
                // The run was stopped before the batch went in.
                Err(osiiso_host::queue::Error::Closed | osiiso_host::queue::Error::ShutDown) => {}
                Err(e) => return Err(anyhow!("{e}").into()),
            }
            run_to_end(&queue, &reporter, started)
        }
        Work::Checked(jobs, resolver) => {
            queue.start().map_err(|e| anyhow!("{e}"))?;
            if let Fed::Closed(origin) = feeder(resolver, checkpoint).feed(jobs, &track) {
                let _ = writeln!(
                    std::io::stderr(),
                    "osiiso-host: the queue stopped taking work at {origin}"
                );
            }
            run_to_end(&queue, &reporter, started)
        }
        Work::Stream(jobs, resolver) => {
            queue.start().map_err(|e| anyhow!("{e}"))?;
            let feeder = feeder(resolver, checkpoint);
            // Not joined: a reader blocked on stdin cannot be woken; the process ends anyway.
            let _ = std::thread::Builder::new()
                .name("osiiso-feed".into())
                .spawn(move || feeder.run(jobs, &track));
            run_to_end(&queue, &reporter, started)
        }
    };
    let written = reporter.finish();
    let summary = summary.map_err(|e| anyhow!("{e}"))?;
    let interrupted = interrupts.received();
    let inputs = Inputs {
        restored: reporter.restored(),
        skipped: skipped.load(Ordering::SeqCst),
        unsubmitted: total.map_or(0, |total| total.saturating_sub(reporter.tracked())),
    };
    report_end(args, &summary, &inputs, interrupted, &written);
    match (written, interrupted) {
        (Err(OutputError::BrokenPipe), _) => Err(Failure::BrokenPipe),
        (Err(error), _) => Err(Failure::Output(error.to_string())),
        (Ok(()), Some(signal)) => Err(Failure::Interrupted(signal.exit_code())),
        (Ok(()), None) if summary.ok() && inputs.all_run() => Ok(()),
        (Ok(()), None) => Err(Failure::Tasks),
    }
}

/// What became of a run's inputs besides its tasks.
struct Inputs {
    /// Restored from the checkpoint, not run again.
    restored: usize,
    /// Bad lines reported and skipped (infinite mode, or a file that changed while read).
    skipped: usize,
    /// Checked jobs never submitted: the queue stopped taking work, or the run was stopped.
    unsubmitted: usize,
}

impl Inputs {
    fn all_run(&self) -> bool {
        self.skipped == 0 && self.unsubmitted == 0
    }
}

/// Runs the queue until it is done; the summary's duration counts from `started`. Only this
/// command closes its queue: a queue closed before the run began (a signal, an output
/// failure, or a stream that ended and drained first) has nothing left to run, and its
/// summary is what the reporter counted.
fn run_to_end<B: Backend>(
    queue: &osiiso_host::queue::Queue<B>,
    reporter: &Reporter,
    started: std::time::Instant,
) -> Result<RunSummary, osiiso_host::queue::Error> {
    match queue.run_with(RunOptions::default()) {
        Err(osiiso_host::queue::Error::ShutDown) => {
            queue.wait_closed();
            Ok(reporter.summary(started))
        }
        Ok(mut summary) => {
            summary.duration = started.elapsed();
            Ok(summary)
        }
        other => other,
    }
}

/// The summary and notes on stderr; nothing for a reader that went away. A run that lost
/// inputs (skipped lines, jobs never submitted) is not reported as passed.
fn report_end(
    args: &RunArgs,
    summary: &RunSummary,
    inputs: &Inputs,
    interrupted: Option<super::signals::Interrupted>,
    written: &Result<(), OutputError>,
) {
    if matches!(written, Err(OutputError::BrokenPipe)) {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    if !args.quiet {
        let status = match summary.status() {
            RunStatus::Passed if !inputs.all_run() => RunStatus::CompletedWithErrors,
            status => status,
        };
        let _ = writeln!(stderr, "{}", summary.display_with(status));
        if inputs.restored > 0 {
            let _ = writeln!(
                stderr,
                "  {} more restored from the checkpoint (not run again)",
                inputs.restored
            );
        }
    }
    if inputs.skipped > 0 {
        let _ = writeln!(
            stderr,
            "osiiso-host: {} input line(s) skipped, not run (see the errors above)",
            inputs.skipped
        );
    }
    if inputs.unsubmitted > 0 {
        let _ = writeln!(
            stderr,
            "osiiso-host: {} job(s) not submitted: the run stopped before it reached them; \
             they have no row",
            inputs.unsubmitted
        );
    }
    if let Some(signal) = interrupted {
        let _ = writeln!(
            stderr,
            "osiiso-host: interrupted by {}: {} task(s) cancelled",
            signal.name(),
            summary.cancelled
        );
    }
}

/// Adds the `--allow-http` destinations to the plugin's sandbox (every queue honours them).
fn allow_http(plugin: Plugin, specs: &[String]) -> anyhow::Result<Plugin> {
    if specs.is_empty() {
        return Ok(plugin);
    }
    let sandbox = specs
        .iter()
        .fold(plugin.sandbox().clone(), |sandbox, spec| {
            sandbox.allow_http(spec.as_str())
        });
    sandbox
        .validate_http()
        .map_err(|e| anyhow!("--allow-http: {e}"))?;
    Ok(plugin.with_sandbox(sandbox))
}

/// The command line's task options, applied to each task after its plugin's suggestions.
#[derive(Clone)]
pub(crate) struct TaskDefaults {
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    backoff: Option<f64>,
    timeout: Option<Duration>,
    priority: Option<i32>,
    must_complete: bool,
}

impl TaskDefaults {
    /// The options of a task: the command line's flags (the queue fills what the task suggests
    /// and no flag chose).
    fn options_for(&self, _task: &Task) -> TaskOptions {
        self.apply(TaskOptions::new())
    }

    fn apply(&self, mut options: TaskOptions) -> TaskOptions {
        if let Some(retries) = self.retries {
            options = options.retries(retries);
        }
        if let Some(delay) = self.retry_delay {
            options = options.retry_delay(delay);
        }
        if let Some(backoff) = self.backoff {
            options = options.backoff(backoff);
        }
        if let Some(timeout) = self.timeout {
            options = options.timeout(timeout);
        }
        if let Some(priority) = self.priority {
            options = options.priority(priority);
        }
        if self.must_complete {
            options = options.must_complete(true);
        }
        options
    }
}
