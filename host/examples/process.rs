//! ProcessQueue: CPU-bound work on persistent worker subprocesses, with crash isolation.
//!
//! ```sh
//! cargo build --release -p osiiso-host
//! cargo build --release --target wasm32-wasip2 -p score
//! cargo run --release -p osiiso-host --example process -- target/wasm32-wasip2/release/score.wasm
//! ```
//!
//! By default workers are `osiiso-host worker` subprocesses (found next to the current
//! binary, or set `OSIISO_HOST_BIN`). This example ships as one binary instead: it uses
//! `ProcessContext::CurrentExe` and serves as a worker when `main` sees the marker. Each
//! worker runs an initializer (preload the plugin, call a hook this binary registers) before
//! its first task, and its logs reach this process's `tracing` subscriber.

use std::time::Duration;

use osiiso_host::Host;
use osiiso_host::ProcessQueue;
use osiiso_host::backend::ProcessContext;
use osiiso_host::backend::WorkerHooks;
use osiiso_host::backend::WorkerInit;
use osiiso_host::queue::{TaskOptions, Workers};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // When this binary is started as a worker, serve and exit here. The hook is what the
    // initializer below asks each worker to run once, in the worker process.
    osiiso_host::maybe_run_worker_with(WorkerHooks::new().register("announce", |_| {
        tracing::info!("worker {} ready", std::process::id());
        Ok(())
    }));
    tracing_subscriber::fmt().with_env_filter("info").init();

    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/wasm32-wasip2/release/score.wasm".into());
    let host = Host::new()?;
    let score = host.load(&path)?.task("score")?;

    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(2))
        .context(ProcessContext::CurrentExe { args: Vec::new() })
        .worker_memory(2 << 30)
        // Each worker loads the plugin (from the compile cache) before its first task.
        .initializer(
            WorkerInit::new()
                .preload(&path)
                .hook("announce", serde_json::Value::Null),
        )
        .build()?;
    let options = TaskOptions::new()
        .retries(2)
        .timeout(Duration::from_secs(60));
    let group = queue.map(&score, (1..=8).map(|i| json!(i * 5_000_000)), options)?;
    let summary = queue.run()?;
    eprintln!("{summary}");
    println!("scores: {:?}", group.values()?);
    println!("worker pids: {:?}", queue.worker_pids());
    Ok(())
}
