//! Outgoing HTTP (`wasi:http`): denied by default, allowed per `HOST[:PORT]`, in every queue.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use osiiso_host::AsyncQueue;
use osiiso_host::queue::{TaskOptions, TaskStatus, Workers};
use osiiso_host::{FailureKind, Sandbox};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::load;

const BIN: &str = env!("CARGO_BIN_EXE_osiiso-host");

/// A tiny HTTP/1.1 server on 127.0.0.1: answers every request with `200` and a JSON body
/// naming the path, then closes the connection. Stops when dropped.
struct Server {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let requests = requests.clone();
                    std::thread::spawn(move || serve(stream, &requests));
                }
            })
        };
        Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request, counts it, answers it.
fn serve(stream: TcpStream, requests: &AtomicUsize) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    requests.fetch_add(1, Ordering::AcqRel);
    let json = json!({"ok": true, "path": path}).to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{json}",
        json.len()
    )?;
    stream.flush()
}

/// Runs `osiiso-host run FETCH fetch --input '"URL"' --output jsonl -q` with `extra` flags.
fn run_cli(url: &str, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let input = Value::String(url.to_string()).to_string();
    let cache = crate::support::cache_dir();
    let output = Command::new(BIN)
        .args(["run", artifacts::FETCH, "fetch", "--input", &input])
        .args(["--output", "jsonl", "-q", "--cache-dir"])
        .arg(&cache)
        .args(extra)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {stderr}"))
        })
        .collect();
    (output.status.code().unwrap_or(-1), lines, stderr)
}

fn expect_denied(code: i32, lines: &[Value], stderr: &str, authority: &str) {
    assert_eq!(code, 1, "a denied fetch fails the run: {lines:?}\n{stderr}");
    assert_eq!(lines.len(), 1, "{lines:?}\n{stderr}");
    let result = &lines[0];
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["error"]["kind"], "permanent", "{result}");
    assert_eq!(result["attempts"], 1, "a denial is not retried: {result}");
    let message = result["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(authority) && message.contains("denied"),
        "the message names the host: {message}"
    );
}

#[test]
fn async_queue_fetches_from_an_allowed_host() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fetch = load(artifacts::FETCH)
        .with_sandbox(Sandbox::new().allow_http(server.authority()))
        .task("fetch")
        .unwrap();
    runtime.block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(4))
            .build()
            .unwrap();
        let plain = queue
            .submit(
                fetch.with_input(json!(server.url("/a"))),
                TaskOptions::new(),
            )
            .unwrap();
        let object = queue
            .submit(
                fetch.with_input(json!({"url": server.url("/b?c=d")})),
                TaskOptions::new().timeout(Duration::from_secs(20)),
            )
            .unwrap();
        queue.start().unwrap();
        let summary = queue.run_async().await.unwrap();
        assert_eq!(summary.succeeded, 2, "{summary}");
        let plain = plain.await;
        assert_eq!(
            plain.value,
            Some(json!({"status": 200, "json": {"ok": true, "path": "/a"}}).into()),
            "{:?}",
            plain.error
        );
        let object = object.await;
        assert_eq!(
            object.value.as_ref().unwrap().to_value()["json"]["path"],
            "/b?c=d"
        );
    });
    assert_eq!(server.requests(), 2);
}

#[test]
fn async_queue_denies_by_default_and_names_the_host() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetch = load(artifacts::FETCH).task("fetch").unwrap();
    runtime.block_on(async {
        let queue = AsyncQueue::builder().build().unwrap();
        let handle = queue
            .submit(
                fetch.with_input(json!(server.url("/x"))),
                TaskOptions::new().retries(3),
            )
            .unwrap();
        queue.start().unwrap();
        queue.run_async().await.unwrap();
        let result = handle.await;
        assert_eq!(result.status, TaskStatus::Failed);
        assert_eq!(result.attempts, 1, "a denial is permanent");
        let error = result.error.as_ref().unwrap();
        assert_eq!(error.kind, FailureKind::Permanent);
        assert!(
            error.message.contains(&server.authority()),
            "{}",
            error.message
        );
    });
    assert_eq!(server.requests(), 0, "nothing reaches a denied host");
}

#[test]
fn cli_async_allowed_succeeds_with_the_json() {
    let server = Server::start();
    let allow = server.authority();
    let (code, lines, stderr) = run_cli(
        &server.url("/x"),
        &["--queue", "async", "--allow-http", &allow],
    );
    assert_eq!(code, 0, "{lines:?}\n{stderr}");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "succeeded", "{}", lines[0]);
    assert_eq!(
        lines[0]["value"],
        json!({"status": 200, "json": {"ok": true, "path": "/x"}})
    );
}

#[test]
fn cli_without_allow_http_is_denied() {
    let server = Server::start();
    let (code, lines, stderr) = run_cli(&server.url("/x"), &["--queue", "async"]);
    expect_denied(code, &lines, &stderr, &server.authority());
    assert_eq!(server.requests(), 0);
}

#[test]
fn cli_another_port_allowed_is_still_denied() {
    let server = Server::start();
    let other = format!(
        "127.0.0.1:{}",
        if server.port == 1 { 2 } else { server.port - 1 }
    );
    let (code, lines, stderr) = run_cli(
        &server.url("/x"),
        &["--queue", "async", "--allow-http", &other],
    );
    expect_denied(code, &lines, &stderr, &server.authority());
    assert_eq!(server.requests(), 0);
}

#[test]
fn cli_thread_queue_allowed_succeeds() {
    let server = Server::start();
    let allow = server.authority();
    let (code, lines, stderr) = run_cli(
        &server.url("/thread"),
        &["--queue", "thread", "--allow-http", &allow],
    );
    assert_eq!(code, 0, "{lines:?}\n{stderr}");
    assert_eq!(lines[0]["value"]["json"]["path"], "/thread", "{}", lines[0]);
}

#[test]
fn cli_process_queue_allowed_succeeds() {
    let server = Server::start();
    let allow = server.authority();
    let (code, lines, stderr) = run_cli(
        &server.url("/process"),
        &[
            "--queue",
            "process",
            "--workers",
            "1",
            "--allow-http",
            &allow,
        ],
    );
    assert_eq!(code, 0, "{lines:?}\n{stderr}");
    assert_eq!(
        lines[0]["value"]["json"]["path"], "/process",
        "{}",
        lines[0]
    );
}

#[test]
fn cli_rejects_a_malformed_grant() {
    let (code, lines, stderr) = run_cli(
        "http://127.0.0.1:1/",
        &["--allow-http", "http://127.0.0.1:1/"],
    );
    assert_eq!(code, 2, "{lines:?}\n{stderr}");
    assert!(stderr.contains("--allow-http"), "{stderr}");
}

#[test]
fn cli_fifty_fetches_with_ten_workers_all_succeed() {
    let server = Server::start();
    let allow = server.authority();
    let input = Value::String(server.url("/many")).to_string();
    let mut args = vec![
        "--queue",
        "async",
        "--workers",
        "10",
        "--allow-http",
        &allow,
    ];
    for _ in 1..50 {
        args.extend(["--input", input.as_str()]);
    }
    let (code, lines, stderr) = run_cli(&server.url("/many"), &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.len(), 50);
    for line in &lines {
        assert_eq!(line["status"], "succeeded", "{line}");
        assert_eq!(line["value"]["json"]["path"], "/many");
    }
    assert_eq!(server.requests(), 50);
}

/// A server that accepts connections and never answers.
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    (listener, authority)
}

#[test]
fn a_request_is_bounded_by_the_attempt_deadline_in_the_sync_path() {
    let (_listener, authority) = silent_server();
    let plugin = load(artifacts::FETCH).with_sandbox(Sandbox::new().allow_http(&authority));
    let start = std::time::Instant::now();
    let report = crate::support::run_with(
        &plugin,
        "fetch",
        json!(format!("http://{authority}/slow")),
        osiiso_host::AttemptControl::new(Some(Duration::from_millis(500))),
    );
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    match report.outcome {
        osiiso_host::AttemptOutcome::Failed(failure) => {
            assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn cancelling_stops_a_request_in_the_sync_path() {
    let (_listener, authority) = silent_server();
    let plugin = load(artifacts::FETCH).with_sandbox(Sandbox::new().allow_http(&authority));
    let start = std::time::Instant::now();
    let report = fetch_cancelled_after_300ms(&plugin, &format!("http://{authority}/slow"));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(report.outcome, osiiso_host::AttemptOutcome::Cancelled);
}

/// One sync attempt of `fetch(url)`, cancelled from another thread after 300 ms.
fn fetch_cancelled_after_300ms(
    plugin: &osiiso_host::Plugin,
    url: &str,
) -> osiiso_host::AttemptReport {
    let control = osiiso_host::AttemptControl::new(None);
    let canceller = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            control.cancel();
        })
    };
    let report = crate::support::run_with(plugin, "fetch", json!(url), control);
    canceller.join().unwrap();
    report
}

/// A server that sends the headers and the first bytes of the body, then stalls.
fn stalling_server() -> (std::thread::JoinHandle<()>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let thread = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"partial\":"
        );
        let _ = stream.flush();
        // Hold the connection until the client goes away.
        let _ = reader.read_line(&mut line);
    });
    (thread, authority)
}

#[test]
fn cancelling_stops_a_stalled_body_read_in_the_sync_path() {
    let (server, authority) = stalling_server();
    let plugin = load(artifacts::FETCH).with_sandbox(Sandbox::new().allow_http(&authority));
    let report = fetch_cancelled_after_300ms(&plugin, &format!("http://{authority}/stall"));
    assert_eq!(report.outcome, osiiso_host::AttemptOutcome::Cancelled);
    drop(report);
    server.join().unwrap();
}

/// A server on 127.0.0.1 that answers each request with headers promising a body it never
/// sends, so every connection stays open until the client closes it; it counts the most
/// connections open at once.
struct StallingServer {
    authority: String,
    peak: Arc<AtomicUsize>,
}

impl StallingServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        {
            let peak = peak.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let now = open.fetch_add(1, Ordering::AcqRel) + 1;
                    peak.fetch_max(now, Ordering::AcqRel);
                    let open = open.clone();
                    std::thread::spawn(move || {
                        let _ = stall(stream);
                        open.fetch_sub(1, Ordering::AcqRel);
                    });
                }
            });
        }
        Self { authority, peak }
    }
}

/// Reads the request head, answers with headers only, then waits for the client to leave.
fn stall(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")?;
    stream.flush()?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).map(drop)
}

#[test]
fn connections_in_flight_count_against_the_descriptor_budget() {
    let server = StallingServer::start();
    let plugin = load(artifacts::HOSTILE_FD_HOG)
        .with_sandbox(Sandbox::new().allow_http(&server.authority))
        .with_limits(osiiso_host::Limits::new().max_open_files(8));
    let hog = |count: u32| json!({"path": server.authority, "count": count});
    // Eight responses held open at once fit; a ninth connection is refused, and the attempt
    // is reported as the limit.
    let report = crate::support::run(&plugin, "connections", hog(12));
    let osiiso_host::AttemptOutcome::Failed(failure) = report.outcome else {
        panic!("expected a failure: {report:?}");
    };
    assert_eq!(failure.kind, FailureKind::ResourceLimit, "{failure}");
    assert!(
        failure.message.contains("limit of 8 open files"),
        "{failure}"
    );
    let detail = failure.detail.unwrap_or_default();
    assert!(detail.contains("ConnectionLimitReached"), "{detail}");
    assert!(
        server.peak.load(Ordering::Acquire) <= 8,
        "the server saw at most 8 connections at once"
    );
    assert_eq!(
        crate::support::run(&plugin, "connections", hog(8)).outcome,
        osiiso_host::AttemptOutcome::Succeeded(json!(8).into())
    );
}
