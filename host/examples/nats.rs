//! NatsQueue: the same queue, its attempts run by nodes on other machines through NATS
//! JetStream.
//!
//! ```sh
//! nats-server -js &                                   # any nats-server >= 2.9 with JetStream
//! cargo build --release --target wasm32-wasip2 -p score
//! cargo run --release -p osiiso-host --example nats -- target/wasm32-wasip2/release/score.wasm
//! ```
//!
//! A real deployment runs `osiiso-host serve --nats URL` on each machine. To run offline on
//! one, this example also embeds a node ([`NatsNode`]) in the same process; start more with
//! `osiiso-host serve --nats nats://127.0.0.1:4222` in other terminals and they share the
//! work. Pass a URL as the second argument for another server.

use std::time::Duration;

use osiiso_host::backend::{NatsNode, NodeConfig};
use osiiso_host::queue::{TaskOptions, Workers};
use osiiso_host::{Host, NatsQueue};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "target/wasm32-wasip2/release/score.wasm".into());
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());

    // A node: takes attempts for its two slots until the program ends.
    let runtime = tokio::runtime::Runtime::new()?;
    let config = NodeConfig::new(&url).slots(2);
    let node = runtime.block_on(NatsNode::connect(config))?;
    runtime.spawn(node.serve(std::future::pending()));

    // The submitter: every queue option works as on one machine. Plugins travel once,
    // content-addressed, through the broker's object store.
    let score = Host::new()?.load(&path)?.task("score")?;
    let queue = NatsQueue::builder()
        .nats(&url)
        .workers(Workers::Fixed(8))
        .build()?;
    let options = TaskOptions::new()
        .retries(2)
        .timeout(Duration::from_secs(60));
    let group = queue.map(&score, (1..=16).map(|i| json!(i * 1_000_000)), options)?;
    let summary = queue.run()?;
    eprintln!("{summary}");
    println!("scores: {:?}", group.values()?);
    Ok(())
}
