//! AsyncQueue: an HTTP fan-out. Hundreds of `fetch` guests wait on the network at once on a
//! few threads; each may reach only the host it was granted.
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p fetch
//! cargo run --release -p osiiso-host --example async -- target/wasm32-wasip2/release/fetch.wasm
//! ```
//!
//! The example serves its own API on 127.0.0.1 (every answer takes 50 ms, like a slow
//! service) so it runs offline. It fetches 400 URLs with 100 workers, prints results in
//! completion order as they arrive, then shows that an ungranted host is refused.

use std::time::Duration;

use futures::StreamExt;
use osiiso_host::AsyncQueue;
use osiiso_host::queue::{TaskOptions, Workers, as_completed_stream};
use osiiso_host::{Host, Sandbox};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FETCHES: usize = 400;
const LATENCY: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/wasm32-wasip2/release/fetch.wasm".into());
    let api = serve_api().await?;

    // Outgoing HTTP is denied by default: grant exactly the API's host and port.
    let host = Host::new()?;
    let fetch = host
        .load(&path)?
        .with_sandbox(Sandbox::new().allow_http(api.clone()))
        .task("fetch")?;

    let queue = AsyncQueue::builder().workers(Workers::Fixed(100)).build()?;
    let urls = (0..FETCHES).map(|i| json!(format!("http://{api}/items/{i}")));
    let options = TaskOptions::new()
        .retries(2)
        .timeout(Duration::from_secs(10));
    let group = queue.map(&fetch, urls, options)?;

    // Run the queue and, meanwhile, show the first results in completion order.
    let show_first = async {
        let mut completions = as_completed_stream(group.handles()).take(3);
        while let Some(handle) = completions.next().await {
            let result = handle.result().expect("completed");
            println!(
                "{} -> {}",
                result.name,
                result.value.clone().unwrap_or_default()
            );
        }
    };
    let (summary, ()) = tokio::join!(queue.run_async(), show_first);
    let summary = summary?;
    eprintln!("{summary}");
    let elapsed = summary.duration.as_secs_f64();
    println!(
        "{FETCHES} fetches of {} ms each in {elapsed:.2} s with 100 workers ({:.0} fetches/s; \
         one at a time would take {:.0} s)",
        LATENCY.as_millis(),
        FETCHES as f64 / elapsed,
        (LATENCY * FETCHES as u32).as_secs_f64(),
    );

    // A host outside the grant: the guest's request fails, naming the host. (A finite queue
    // stops after each run, so this task waits for the next one.)
    let denied = queue.submit(
        fetch.with_input(json!("http://example.com/")),
        TaskOptions::new(),
    )?;
    queue.run_async().await?;
    println!("denied: {}", denied.error().expect("refused"));
    queue.shutdown_async().await;
    Ok(())
}

/// Serves `GET /items/<n>` on an ephemeral port with `{"item": n}` after [`LATENCY`];
/// returns `127.0.0.1:<port>`.
async fn serve_api() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let item = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|path| path.strip_prefix("/items/"))
                    .and_then(|n| n.parse::<u64>().ok());
                tokio::time::sleep(LATENCY).await;
                let (status, body) = match item {
                    Some(n) => ("200 OK", json!({ "item": n }).to_string()),
                    None => (
                        "404 Not Found",
                        json!({ "error": "no such item" }).to_string(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(address)
}
