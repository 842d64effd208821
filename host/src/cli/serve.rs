//! `osiiso-host serve --nats URL ...`: a node that runs attempts of NATS queues (README.md,
//! "Running on many machines"; docs/distributed.md). It waits for its broker at start; the
//! first SIGTERM or SIGINT drains it (running attempts finish and report, no new ones are
//! taken); a second one exits at once. With `--http ADDR` it serves `/metrics`, `/healthz`
//! and a status page (docs/metrics.md) from the moment it has reached its broker.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use osiiso_host::backend::{DEFAULT_NATS_URL, NatsError, NatsNode, NodeConfig};
use osiiso_host::metrics::Metrics;
use osiiso_host::units::{parse_duration, parse_size};

use super::Failure;
use super::http::{Watch, parse_addr};
use super::options::CompileLimitArgs;
use super::signals::Interrupts;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The NATS server (with JetStream): a URL, or the comma-separated URLs of one cluster's
    /// servers; repeatable.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        env = "OSIISO_NATS_URL",
        default_value = DEFAULT_NATS_URL
    )]
    nats: Vec<String>,
    /// Replicas of the NATS streams this node makes if they are missing [default: the
    /// cluster's servers, at most 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: Option<u8>,
    /// Attempts run at once [default: the CPU count].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    slots: Option<u32>,
    /// Submitters may grant directories under DIR (repeatable); any other `--dir` fails its
    /// task as `permanent`.
    #[arg(long = "allow-dir", value_name = "DIR")]
    allow_dirs: Vec<PathBuf>,
    /// Submitters may allow HTTP to HOST[:PORT] (repeatable); without a port, any port.
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    allow_http: Vec<String>,
    /// Submitters may pass this node's environment to guests (`--inherit-env`).
    #[arg(long)]
    allow_env: bool,
    /// Compile-cache directory [default: $XDG_CACHE_HOME/osiiso-host].
    #[arg(long, env = "OSIISO_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// How long the broker waits for word about a running attempt before handing it to
    /// another node (the node renews every quarter of it).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
    ack_wait: Duration,
    /// The most linear memory all running attempts may hold together [default: half of
    /// the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    total_memory: Option<usize>,
    // What compiling a plugin sent by a submitter may spend; a plugin over a limit fails its
    // tasks with `plugin_load`.
    #[command(flatten)]
    compile: CompileLimitArgs,
    /// Serve `/metrics` (Prometheus), `/healthz` and a status page at `/` on ADDR once the
    /// broker is reached: `PORT` or `:PORT` listens on 127.0.0.1 only; give an address
    /// (`0.0.0.0:9100`) to listen elsewhere. Port 0 picks a free port (printed on stderr).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

pub(crate) fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut config = NodeConfig::new(args.nats.join(","))
        // A service waits for its broker (and its JetStream) rather than exiting.
        .wait_for_broker(true)
        .allow_env(args.allow_env)
        .cache(!args.no_cache)
        .ack_wait(args.ack_wait);
    if let Some(replicas) = args.replicas {
        config = config.replicas(usize::from(replicas));
    }
    if let Some(slots) = args.slots {
        config = config.slots(slots as usize);
    }
    for dir in args.allow_dirs {
        config = config.allow_dir(dir);
    }
    for destination in args.allow_http {
        config = config.allow_http(destination);
    }
    if let Some(dir) = args.cache_dir {
        config = config.cache_dir(dir);
    }
    if let Some(bytes) = args.total_memory {
        config = config.total_memory(bytes);
    }
    if let Some(timeout) = args.compile.compile_timeout {
        config = config.compile_timeout(timeout);
    }
    if let Some(bytes) = args.compile.compile_memory {
        config = config.compile_memory(bytes as u64);
    }
    config = config.compile_tier(args.compile.compile_tier.into());
    let http = args.http.as_deref().map(parse_addr).transpose()?;
    let metrics = http.map(|_| Metrics::new());
    if let Some(metrics) = &metrics {
        config = config.metrics(metrics);
    }
    // One check, the library's, before anything connects: its error named by the flag.
    config.validate().map_err(|error| match &error {
        NatsError::InvalidOption(invalid) => {
            anyhow!("--{}: {invalid}", invalid.option().replace('_', "-"))
        }
        _ => anyhow!("{error}"),
    })?;

    // One thread for the node's own work (fetching, leases, reports): guests run on the
    // blocking pool, so it is never busy for long, and one thread saves a hand-off per message.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("osiiso-node")
        .build()
        .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
    let drain = std::sync::Arc::new(tokio::sync::Notify::new());
    let interrupts = {
        let (drain, metrics) = (drain.clone(), metrics.clone());
        Interrupts::watch(Box::new(move || {
            // `/healthz` says so from now on.
            if let Some(metrics) = &metrics {
                metrics.set_draining(true);
            }
            drain.notify_one();
        }))
        .map_err(|e| anyhow!("cannot watch for signals: {e}"))?
    };
    // Waiting for the broker ends at the first signal too.
    let node = runtime.block_on(async {
        tokio::select! {
            node = NatsNode::connect(config) => node.map(Some),
            () = drain.notified() => Ok(None),
        }
    })?;
    let Some(node) = node else {
        eprintln!("osiiso-host: stopped before the NATS server was reached");
        return Ok(());
    };
    eprintln!("osiiso-host: node {} serving", node.id());
    let _watch = match (http, metrics) {
        (Some(addr), Some(metrics)) => Some(Watch::serve(addr, metrics, false)?),
        _ => None,
    };
    runtime.block_on(node.serve(drain.notified()))?;
    match interrupts.received() {
        Some(signal) => {
            eprintln!("osiiso-host: node drained after {}", signal.name());
            Ok(())
        }
        None => Ok(()),
    }
}
