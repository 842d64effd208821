//! `osiiso-host run PLUGIN [TASK] ...`: load, build the work list, run it through a queue,
//! report. `args` holds the flags, `queue` the queue they set up (checked by the library
//! before anything loads), `plan` the work, `drive` the run and `report` its end.

use anyhow::anyhow;
use osiiso_host::backend::ProcessContext;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{QueueBuilder, Workers};
use osiiso_host::{AsyncQueue, Plugin, ProcessQueue, ThreadQueue};

mod args;
mod drive;
mod plan;
mod queue;
mod report;

use self::args::QueueKind;
pub(crate) use self::args::RunArgs;
use self::plan::{open_checkpoint, plan};
use super::Failure;
use super::http::Watch;

/// `--attempts-per-worker` when not given: exact queue rules, and on 2 cores the fastest on
/// short tasks (README.md, "Performance").
const DEFAULT_ATTEMPTS_PER_WORKER: usize = 1;

pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    if args.queue.worker_memory.is_some() && args.queue.kind != QueueKind::Process {
        return Err(anyhow!("--worker-memory needs --queue process").into());
    }
    if args.queue.attempts_per_worker.is_some() && args.queue.kind != QueueKind::Process {
        return Err(anyhow!("--attempts-per-worker needs --queue process").into());
    }
    #[cfg(feature = "nats")]
    if !args.queue.nats.is_empty() && args.queue.kind != QueueKind::Nats {
        return Err(anyhow!("--nats needs --queue nats").into());
    }
    #[cfg(feature = "nats")]
    if args.queue.replicas.is_some() && args.queue.kind != QueueKind::Nats {
        return Err(anyhow!("--replicas needs --queue nats").into());
    }
    let workers = args.queue.workers()?;
    match args.queue.kind {
        QueueKind::Process => {
            // With several attempts per worker, each worker still receives (and a warm
            // instance sees) its tasks in the queue's order; priorities, cancels and
            // fail-first approximate for the tasks already sent (docs/queues.md §10.4).
            let attempts = args
                .queue
                .attempts_per_worker
                .map_or(DEFAULT_ATTEMPTS_PER_WORKER, usize::from);
            let mut builder = ProcessQueue::builder().attempts_per_worker(attempts);
            // The workers are this binary's `worker` subcommand, whatever the binary is
            // called (the default looks for a file named `osiiso-host`), and the very file
            // this process runs, even if the one on disk is replaced or deleted during the
            // run (as the compile process is).
            let program = std::path::Path::new("/proc/self/exe");
            let program = if program.exists() {
                Some(program.to_path_buf())
            } else {
                std::env::current_exe().ok()
            };
            if let Some(program) = program {
                builder = builder.context(ProcessContext::Command {
                    program,
                    args: vec!["worker".to_string()],
                    env: Vec::new(),
                });
            }
            if let Some(bytes) = args.queue.worker_memory {
                builder = builder.worker_memory(bytes as u64);
            }
            run_on(builder, &args, workers)
        }
        QueueKind::Async => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
            let builder = AsyncQueue::builder().runtime(runtime.handle().clone());
            run_on(builder, &args, workers)
        }
        QueueKind::Thread => run_on(ThreadQueue::builder(), &args, workers),
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
            run_on(builder, &args, workers)
        }
    }
}

/// A run on the backend `B`: the queue's options are checked first (by the library), then
/// the plugin loads, the work is planned and the queue runs it.
fn run_on<B: Backend>(
    builder: QueueBuilder<B>,
    args: &RunArgs,
    workers: Workers,
) -> Result<(), Failure> {
    let builder = queue::configure(builder, args, workers)?;
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
    let plan = plan(args, &plugin, checkpoint)?;
    let watch = match &args.http {
        Some(addr) => Some(Watch::start(addr, &host, args.quiet)?),
        None => None,
    };
    let metrics = watch.as_ref().map(|watch| &watch.metrics);
    let ran = drive::run_queue(builder, args, workers, plan, metrics);
    if host.optimizations_pending() > 0 {
        // The background compilation dies with this process, and the cache keeps only the
        // baseline code: say how to have the optimised code for the next run.
        tracing::info!(
            "the run ended before the plugin's optimised code was compiled; `osiiso-host \
             compile {}` puts it in the compile cache",
            osiiso_host::text::for_display(&args.plugin.display().to_string(), 256)
        );
    }
    ran
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
