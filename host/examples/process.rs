//! ProcessQueue: CPU-bound work on persistent worker subprocesses, with crash isolation.
//!
//! ```sh
//! cargo build --release -p osiiso-host
//! cargo build --release --target wasm32-wasip2 -p score
//! cargo run --release -p osiiso-host --example process -- target/wasm32-wasip2/release/score.wasm
//! ```
//!
//! Workers are `osiiso-host worker` subprocesses (found next to this example's binary, or set
//! `OSIISO_HOST_BIN`). An embedder that ships one binary can use
//! `ProcessContext::CurrentExe` and call `osiiso_host::maybe_run_worker()` first in `main`,
//! as this example does.

use std::time::Duration;

use osiiso_host::Host;
use osiiso_host::queue::{ProcessContext, ProcessQueue, TaskOptions, Workers};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // When this binary is started as a worker, serve and exit here.
    osiiso_host::maybe_run_worker();

    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/wasm32-wasip2/release/score.wasm".into());
    let host = Host::new()?;
    let score = host.load(&path)?.task("score")?;

    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(2))
        .context(ProcessContext::CurrentExe { args: Vec::new() })
        .worker_memory(2 << 30)
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
