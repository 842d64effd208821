//! `osiiso-host run PLUGIN [TASK] ...`: load, build the work list, run it through a queue,
//! report.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, ValueEnum};
use osiiso_host::backend::{Async, Process, Thread};
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{FailPolicy, OnExit, QueueBuilder, RunOptions, TaskOptions, Workers};
use osiiso_host::units::parse_size;
use osiiso_host::{AsyncQueue, ProcessQueue, TaskCall, ThreadQueue};
use osiiso_host::{Plugin, Task};

use super::Failure;
use super::jobs::{self, JobReader, JobSpec, LineKind};
use super::options::{CacheArgs, LimitArgs, SandboxArgs, duration};
use super::output::{OutputError, OutputFormat, ProgressMode, Reporter};

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
    /// A file of jobs, one object per line: `task`, `input` and per-task options.
    #[arg(long, value_name = "FILE.jsonl")]
    jobs: Option<PathBuf>,

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
    /// Progress bar on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// No run summary and no progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum QueueKind {
    Async,
    Thread,
    Process,
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
    /// Maximum outstanding tasks (0 = unbounded).
    #[arg(long, value_name = "N", default_value_t = 0)]
    size: usize,
    /// How quickly cancellations and deadlines reach running work.
    #[arg(long, value_name = "DUR", value_parser = duration)]
    poll: Option<Duration>,
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
    #[arg(long, value_name = "N")]
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
    /// The options of a task: the plugin's suggestions, then these flags.
    fn options_for(&self, task: &Task) -> TaskOptions {
        let mut options = TaskOptions::new();
        if let Some(retries) = task.info().retries {
            options = options.retries(retries);
        }
        if let Some(timeout) = task.info().timeout {
            options = options.timeout(timeout);
        }
        self.apply(options)
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
    }
    // The pool holds this many live instances; more workers wait for a free slot.
    let instances = match workers {
        Workers::Fixed(n) => u32::try_from(n.min(1000)).unwrap_or(1000) + 2,
        Workers::Auto => 64,
    };

    let host = args.cache.host(instances)?;
    let plugin = args.limits.load(&host, &args.plugin)?;
    let plugin = plugin.with_sandbox(args.sandbox.sandbox(&host)?);
    let plugin = allow_http(plugin, &args.queue.allow_http)?;

    // Build the whole work list (and reject bad lines) before anything runs.
    let base = args.task_options.apply(TaskOptions::new());
    base.validate().map_err(|e| anyhow!("{e}"))?;
    let mut specs = match (&args.jobs, &args.inputs_file) {
        (Some(jobs), _) => jobs::read_all(JobReader::open(jobs, LineKind::Job, &base)?)?,
        (None, Some(file)) => jobs::read_all(JobReader::open(file, LineKind::Input, &base)?)?,
        (None, None) if args.inputs.is_empty() => jobs::from_inputs(&["null".to_string()])?,
        (None, None) => Vec::new(),
    };
    specs.extend(jobs::from_inputs(&args.inputs)?);
    let default_task = match &args.task {
        Some(name) => Some(plugin.task(name)?),
        None => None,
    };
    let mut submissions = Vec::with_capacity(specs.len());
    for spec in specs {
        let task = resolve_task(&plugin, default_task.as_ref(), &spec)?;
        let options = args.task_options.options_for(&task);
        let options = options
            .with_json_overrides(&spec.overrides)
            .map_err(|e| anyhow!("{}: {e}", spec.origin))?;
        submissions.push((task.with_input(spec.input), options));
    }

    let reporter = Arc::new(Reporter::new(
        args.output,
        args.progress,
        args.quiet,
        Some(submissions.len()),
    ));
    match args.queue.kind {
        QueueKind::Process => {
            let mut builder = ProcessQueue::builder();
            if let Some(bytes) = args.queue.worker_memory {
                builder = builder.worker_memory(bytes as u64);
            }
            run_queue(builder, &args, workers, submissions, reporter)
        }
        QueueKind::Async => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
            let builder = AsyncQueue::builder().runtime(runtime.handle().clone());
            run_queue(builder, &args, workers, submissions, reporter)
        }
        QueueKind::Thread => run_queue(
            ThreadQueue::builder(),
            &args,
            workers,
            submissions,
            reporter,
        ),
    }
}

/// Builds the queue from the options, feeds it and reports.
fn run_queue<B: Backend>(
    builder: QueueBuilder<B>,
    args: &RunArgs,
    workers: Workers,
    submissions: Vec<(TaskCall, TaskOptions)>,
    reporter: Arc<Reporter>,
) -> Result<(), Failure> {
    let mut builder = builder
        .workers(workers)
        .size(args.queue.size)
        .burst(args.queue.burst)
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
    let on_complete = reporter.clone();
    let queue = Arc::new(
        builder
            .on_complete(move |result| on_complete.finished(result))
            .build()
            .map_err(|e| anyhow!("{e}"))?,
    );
    // Results that cannot be written end the run: what is not done yet is cancelled.
    let weak = Arc::downgrade(&queue);
    reporter.on_output_failure(move || {
        if let Some(queue) = weak.upgrade() {
            queue.cancel();
        }
    });

    // An unbounded queue takes everything before it starts, so priorities hold across the
    // whole work list. A bounded one must run while it is fed, or submission would block.
    let bounded = args.queue.size > 0;
    if bounded {
        queue.start().map_err(|e| anyhow!("{e}"))?;
    }
    let total = submissions.len();
    let mut handles = Vec::with_capacity(total);
    for (work, options) in submissions {
        match queue.submit(work, options) {
            Ok(handle) => handles.push(handle),
            // Fail-first halted the queue while it was still being fed, or the output
            // failed and the run was cancelled.
            Err(osiiso_host::queue::Error::Closed | osiiso_host::queue::Error::ShutDown)
                if bounded =>
            {
                let _ = writeln!(
                    std::io::stderr(),
                    "osiiso-host: the queue halted; {} of {total} jobs were not submitted",
                    total - handles.len()
                );
                break;
            }
            Err(e) => return Err(anyhow!("{e}").into()),
        }
    }
    let summary = queue.run_with(RunOptions::default());
    let results: Vec<_> = handles.iter().filter_map(|h| h.result()).collect();
    let written = reporter.finish(&results);
    let summary = summary.map_err(|e| anyhow!("{e}"))?;
    // A reader that went away ends the run quietly, as it does for other Unix tools.
    if !args.quiet && !matches!(written, Err(OutputError::BrokenPipe)) {
        let _ = writeln!(std::io::stderr(), "{summary}");
    }
    match written {
        Err(OutputError::BrokenPipe) => Err(Failure::BrokenPipe),
        Err(error) => Err(Failure::Output(error.to_string())),
        Ok(()) if summary.ok() => Ok(()),
        Ok(()) => Err(Failure::Tasks),
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

fn resolve_task(plugin: &Plugin, default: Option<&Task>, spec: &JobSpec) -> anyhow::Result<Task> {
    match (&spec.task, default) {
        (Some(name), _) => plugin
            .task(name)
            .map_err(|e| anyhow!("{}: {e}", spec.origin)),
        (None, Some(task)) => Ok(task.clone()),
        (None, None) => Ok(plugin.only_task()?),
    }
}
