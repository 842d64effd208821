//! ThreadQueue: fan a plugin task out over many inputs, mixed with a native closure.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p echo
//! cargo run -p osiiso-host --example thread -- target/wasm32-wasip2/release/echo.wasm
//! ```

use std::time::Duration;

use osiiso_host::ThreadQueue;
use osiiso_host::queue::{NativeTask, TaskOptions, Workers};
use osiiso_host::{Host, Limits, TaskFailure};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/wasm32-wasip2/release/echo.wasm".into());
    let host = Host::new()?;
    let plugin = host
        .load(&path)?
        .with_limits(Limits::new().fuel(10_000_000));
    let add = plugin.task("add")?;

    let queue = ThreadQueue::builder()
        .workers(Workers::Fixed(4))
        .on_retry(|handle, failure| eprintln!("retrying {}: {failure}", handle.name()))
        .build()?;
    let options = TaskOptions::new()
        .retries(2)
        .timeout(Duration::from_secs(5));
    let sums = queue.map(&add, (0..100).map(|i| json!([i, i])), options.clone())?;
    let native = queue.submit_native(
        NativeTask::new("native-answer", || Ok::<_, TaskFailure>(42)),
        options,
    )?;

    let summary = queue.run()?;
    eprintln!("{summary}");
    println!("first sums: {:?}", &sums.values()?[..5]);
    println!("native: {}", native.value()?);
    Ok(())
}
