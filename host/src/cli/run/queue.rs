//! The queue a run uses: its builder set from the flags and checked by the library's own
//! validation before anything loads, its hooks, and the error a bad option gives.

use std::sync::Arc;

use anyhow::anyhow;
use osiiso_host::metrics::Metrics;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{
    Error as QueueError, FailPolicy, Mode, OnExit, Queue, QueueBuilder, Retention, Workers,
};

use super::super::output::Reporter;
use super::super::progress::GuestProgress;
use super::args::{OnExitArg, RunArgs};

/// The builder of the run's queue with every queue flag applied, validated by
/// [`QueueBuilder::validate`]: a bad `--workers`, `--rate`, `--burst`, `--poll` or
/// `--run-timeout` is the library's typed error, named by its flag.
pub(super) fn configure<B: Backend>(
    builder: QueueBuilder<B>,
    args: &RunArgs,
    workers: Workers,
) -> anyhow::Result<QueueBuilder<B>> {
    let queue = &args.queue;
    // The reporter writes (or spills) each row and counts it: the queue keeps counts only,
    // and a finished task leaves nothing behind, however long the run.
    let mut builder = builder
        .retention(Retention::Counts)
        .workers(workers)
        .size(queue.size)
        .burst(queue.burst)
        .on_exit(match queue.on_exit {
            OnExitArg::CompletePriority => OnExit::CompletePriority,
            OnExitArg::Cancel => OnExit::Cancel,
        });
    if queue.fail_first {
        builder = builder.fail_policy(FailPolicy::FailFirst);
    }
    if let Some(rate) = queue.rate {
        builder = builder.rate(rate);
    }
    if let Some(poll) = queue.poll {
        builder = builder.poll(poll);
    }
    if let Some(timeout) = queue.run_timeout {
        builder = builder.timeout(timeout);
    }
    builder.validate().map_err(queue_flag_error)?;
    Ok(builder)
}

/// Builds the queue: infinite when the work is a stream, with the metrics of `--http` and
/// guest progress on the bar.
pub(super) fn build<B: Backend>(
    builder: QueueBuilder<B>,
    infinite: bool,
    reporter: &Reporter,
    total: Option<usize>,
    metrics: Option<&Metrics>,
) -> anyhow::Result<Arc<Queue<B>>> {
    let mut builder = builder.mode(if infinite {
        Mode::Infinite
    } else {
        Mode::Finite
    });
    if let Some(metrics) = metrics {
        builder = builder.metrics(metrics);
    }
    if let Some(bar) = reporter.bar() {
        let guest = Arc::new(GuestProgress::new(bar.clone(), total));
        let done = guest.clone();
        builder = builder
            .on_progress(move |handle, report| guest.report(handle, report))
            .on_complete(move |result| done.finished(&result.task_id));
    }
    Ok(Arc::new(builder.build().map_err(|e| anyhow!("{e}"))?))
}

/// A queue option's error, named by the flag that set it (`--workers: workers must be > 0`).
fn queue_flag_error(error: QueueError) -> anyhow::Error {
    match &error {
        QueueError::InvalidOption(invalid) => {
            let flag = match invalid.option() {
                "timeout" => "run-timeout".to_string(),
                option => option.replace('_', "-"),
            };
            anyhow!("--{flag}: {invalid}")
        }
        _ => anyhow!("{error}"),
    }
}

/// A task option's error, named by the flag that set it (`--backoff: backoff must be > 0`).
pub(super) fn task_flag_error(error: QueueError) -> anyhow::Error {
    match &error {
        QueueError::InvalidOption(invalid) => {
            anyhow!("--{}: {invalid}", invalid.option().replace('_', "-"))
        }
        _ => anyhow!("{error}"),
    }
}
