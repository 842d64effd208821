//! Driving a run's queue: feeding it its work, stopping it early on a signal or an output
//! failure, running it to the end and taking its summary.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::anyhow;
use osiiso_host::metrics::Metrics;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{Error as QueueError, Handle, Queue, QueueBuilder, RunSummary, Workers};

use super::super::Failure;
use super::super::feed::{Fed, Feeder, Window};
use super::super::output::OutputError;
use super::super::signals::Interrupts;
use super::super::work;
use super::args::RunArgs;
use super::plan::{Plan, Work};
use super::queue;
use super::report::{Inputs, report_end};

/// Builds the queue, feeds it, runs it and reports.
pub(super) fn run_queue<B: Backend>(
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
    let queue = queue::build(builder, infinite, &reporter, total, metrics)?;
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
    let started = Instant::now();
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
                Err(QueueError::Closed(_)) => {}
                Err(e) => return Err(anyhow!("{e}").into()),
            }
            run_to_end(&queue, started)
        }
        Work::Checked(jobs, resolver) => {
            queue.start().map_err(|e| anyhow!("{e}"))?;
            if let Fed::Closed(origin) = feeder(resolver, checkpoint).feed(jobs, &track) {
                let _ = writeln!(
                    std::io::stderr(),
                    "osiiso-host: the queue stopped taking work at {origin}"
                );
            }
            run_to_end(&queue, started)
        }
        Work::Stream(jobs, resolver) => {
            queue.start().map_err(|e| anyhow!("{e}"))?;
            let feeder = feeder(resolver, checkpoint);
            // Not joined: a reader blocked on stdin cannot be woken; the process ends anyway.
            let _ = std::thread::Builder::new()
                .name("osiiso-feed".into())
                .spawn(move || feeder.run(jobs, &track));
            run_to_end(&queue, started)
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

/// Runs the queue until it is done; the summary's duration counts from `started` (feeding
/// was part of the run). Only this command closes its queue: a queue closed before the run
/// began (a signal, an output failure, or a stream that ended and drained first) has nothing
/// left to run, and its summary is the one the queue takes of what it recorded.
fn run_to_end<B: Backend>(queue: &Queue<B>, started: Instant) -> Result<RunSummary, QueueError> {
    match queue.run() {
        Err(QueueError::Closed(_)) => {
            queue.wait_closed();
            Ok(queue.take_summary(started))
        }
        Ok(mut summary) => {
            summary.duration = started.elapsed();
            Ok(summary)
        }
        Err(error) => Err(error),
    }
}
