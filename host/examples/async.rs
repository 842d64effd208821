//! AsyncQueue: many tasks waiting at once on a few threads, plus a native async closure.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p echo
//! cargo run --release -p osiiso-host --example async -- target/wasm32-wasip2/release/echo.wasm
//! ```

use std::time::Duration;

use futures::StreamExt;
use osiiso_host::queue::{AsyncNativeTask, AsyncQueue, TaskOptions, Workers, as_completed_stream};
use osiiso_host::{Host, TaskFailure};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/wasm32-wasip2/release/echo.wasm".into());
    let host = Host::new()?;
    let greet = host.load(&path)?.task("greet")?;

    let queue = AsyncQueue::builder().workers(Workers::Fixed(256)).build()?;
    let names = (0..1_000).map(|i| json!({ "name": format!("guest {i}") }));
    let group = queue.map(
        &greet,
        names,
        TaskOptions::new().timeout(Duration::from_secs(5)),
    )?;
    let native = queue.submit_async(
        AsyncNativeTask::new("tick", || async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, TaskFailure>("tock")
        }),
        TaskOptions::new(),
    )?;
    queue.start()?;

    let first: Vec<_> = as_completed_stream(group.handles()).take(3).collect().await;
    for handle in first {
        println!(
            "early: {}",
            handle
                .result()
                .and_then(|r| r.value.clone())
                .unwrap_or_default()
        );
    }
    println!("native: {:?}", native.await.value);
    let summary = queue.run_async().await?;
    eprintln!("{summary}");
    Ok(())
}
