//! The flags of `osiiso-host run`, and what they mean to the library: task options and the
//! worker setting. Nothing here checks a value the library checks too.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use osiiso_host::queue::{TaskOptions, Workers};
use osiiso_host::units::{parse_duration, parse_size};

use super::super::options::{CacheArgs, LimitArgs, SandboxArgs};
use super::super::output::{OutputFormat, ProgressMode};

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// The plugin component (.wasm) or a precompiled artifact.
    pub(super) plugin: PathBuf,
    /// The task to run; may be omitted when the plugin has exactly one.
    pub(super) task: Option<String>,

    /// A JSON input; each one is a task (repeatable).
    #[arg(long = "input", value_name = "JSON")]
    pub(super) inputs: Vec<String>,
    /// A file of JSON inputs, one per line (`-` for stdin).
    #[arg(long = "inputs", value_name = "FILE.jsonl", conflicts_with = "jobs")]
    pub(super) inputs_file: Option<PathBuf>,
    /// A file of jobs, one object per line: `task`, `input` and per-task options (`-` for
    /// stdin).
    #[arg(long, value_name = "FILE.jsonl")]
    pub(super) jobs: Option<PathBuf>,
    /// `finite` checks every input first (a bad line stops the run before anything runs),
    /// then submits them as the workers take them; `infinite` submits each line as it arrives
    /// (a bad one is reported and skipped) and writes each result as its task finishes, until
    /// the input ends (a stream: `tail -f events.jsonl | osiiso-host run ...`).
    #[arg(long, value_enum, default_value = "finite")]
    pub(super) mode: ModeArg,
    /// Remember in this SQLite file which inputs succeeded: a rerun restores them (attempts
    /// 0, "restored from checkpoint") and runs only the rest. It must lie outside every
    /// `--dir`/`--dir-ro` grant.
    #[arg(long, value_name = "FILE")]
    pub(super) checkpoint: Option<PathBuf>,

    #[command(flatten)]
    pub(super) queue: QueueArgs,
    #[command(flatten)]
    pub(super) task_options: TaskArgs,
    #[command(flatten)]
    pub(super) limits: LimitArgs,
    #[command(flatten)]
    pub(super) sandbox: SandboxArgs,
    #[command(flatten)]
    pub(super) cache: CacheArgs,

    /// How results are printed [default: table on a terminal, jsonl otherwise].
    #[arg(long, value_enum)]
    pub(super) output: Option<OutputFormat>,
    /// Progress on stderr: a bar on a terminal; with `always`, plain lines every few seconds
    /// where stderr is not a terminal (a file, a CI log).
    #[arg(long, value_enum, default_value = "auto")]
    pub(super) progress: ProgressMode,
    /// No run summary, and no progress unless `--progress always` asks for it.
    #[arg(short, long)]
    pub(super) quiet: bool,
    /// While the run lasts, serve `/metrics` (Prometheus), `/healthz` and a status page at
    /// `/` on ADDR: `PORT` or `:PORT` listens on 127.0.0.1 only; give an address
    /// (`0.0.0.0:9100`) to listen elsewhere. Port 0 picks a free port (printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub(super) http: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueueKind {
    Async,
    Thread,
    Process,
    /// Attempts on `osiiso-host serve` nodes, through the NATS server of `--nats`.
    #[cfg(feature = "nats")]
    Nats,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ModeArg {
    Finite,
    Infinite,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OnExitArg {
    /// Cancel what is not must-complete; let the rest finish.
    #[value(name = "complete-priority", alias = "complete_priority")]
    CompletePriority,
    /// Cancel everything.
    Cancel,
}

/// Queue options.
#[derive(Args, Debug)]
pub(super) struct QueueArgs {
    /// The backend that runs attempts.
    #[arg(long = "queue", value_enum, default_value = "thread")]
    pub(super) kind: QueueKind,
    /// Worker count, or `auto`.
    #[arg(long, value_name = "N|auto", default_value = "auto")]
    pub(super) workers: String,
    /// Maximum outstanding tasks (0 = unbounded); in infinite mode, how far input is read
    /// ahead of the workers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) size: usize,
    /// How quickly cancellations and deadlines reach running work.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(super) poll: Option<Duration>,
    /// The NATS server of `--queue nats`: a URL, or the comma-separated URLs of one cluster's
    /// servers; repeatable [default: $OSIISO_NATS_URL, else nats://127.0.0.1:4222].
    #[cfg(feature = "nats")]
    #[arg(long, value_name = "URL[,URL...]")]
    pub(super) nats: Vec<String>,
    /// Replicas of the NATS streams this run makes if they are missing [default: the
    /// cluster's servers, at most 3].
    #[cfg(feature = "nats")]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub(super) replicas: Option<u8>,
    /// OS memory cap per worker process (process queue).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(super) worker_memory: Option<usize>,
    /// Attempts each worker process holds at once (process queue) [default: 1]. Above 1 a
    /// worker need not wait for the parent between two tasks (it helps when the parent is
    /// slow to answer: a busy machine), at the cost of exact priorities, cancels and
    /// fail-first for the tasks already sent (docs/queues.md §10.4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    pub(super) attempts_per_worker: Option<u8>,
    /// Limit for the whole run; the rest is cancelled and the run marked timed out.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(super) run_timeout: Option<Duration>,
    /// The first final failure cancels everything not yet run (must-complete tasks go on).
    #[arg(long)]
    pub(super) fail_first: bool,
    /// What a run timeout cancels.
    #[arg(long, value_enum, default_value = "complete-priority")]
    pub(super) on_exit: OnExitArg,
    /// Attempts per second across all workers.
    #[arg(long, value_name = "R")]
    pub(super) rate: Option<f64>,
    /// Attempts that may pass at once after an idle period.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(super) burst: u32,
    /// Allow outgoing HTTP (wasi:http) to HOST[:PORT]; without a port, any port (repeatable).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(super) allow_http: Vec<String>,
}

/// Task options: defaults that each `--jobs` line can override.
#[derive(Args, Debug)]
pub(super) struct TaskArgs {
    /// Extra attempts after the first, for retryable failures.
    #[arg(long, value_name = "N", alias = "retry")]
    pub(super) retries: Option<u32>,
    /// Pause before the first retry.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(super) retry_delay: Option<Duration>,
    /// Multiplies the pause after each retry.
    #[arg(long, value_name = "X")]
    pub(super) backoff: Option<f64>,
    /// Limit for each attempt.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub(super) timeout: Option<Duration>,
    /// Lower runs first.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(super) priority: Option<i32>,
    /// Survive fail-first and run-timeout cancellation.
    #[arg(long)]
    pub(super) must_complete: bool,
}

impl TaskArgs {
    /// The command line's task options (the queue fills what a task suggests and no flag
    /// chose); a jobs line may override them.
    pub(super) fn options(&self) -> TaskOptions {
        let mut options = TaskOptions::new();
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

impl QueueArgs {
    /// `--workers`: a count or `auto`. Whether the count suits the backend is the queue
    /// builder's to say ([`QueueBuilder::validate`](osiiso_host::queue::QueueBuilder::validate)).
    pub(super) fn workers(&self) -> anyhow::Result<Workers> {
        if self.workers == "auto" {
            return Ok(Workers::Auto);
        }
        let n = self.workers.parse().map_err(|_| {
            anyhow!(
                "--workers: expected a number or `auto`, got '{}'",
                self.workers
            )
        })?;
        Ok(Workers::Fixed(n))
    }
}
