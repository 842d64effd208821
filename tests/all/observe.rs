//! Operators see what runs (issue 21): metrics filled by every local backend and checked with
//! `promtool`, guest progress through the hook on every local backend, `/healthz` flipping on
//! drain, and `run --http` serving the live run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osiiso_host::metrics::{Metrics, StatusServer};
use osiiso_host::queue::{Queue, QueueBuilder, TaskOptions, Workers, backend::Backend};
use osiiso_host::{AsyncQueue, ProcessQueue, Progress, ThreadQueue};
use osiiso_test_artifacts as artifacts;
use parking_lot::Mutex;
use serde_json::json;

use crate::support::load;

/// Whether `tool` runs here; prints the SKIPPED line (or panics under
/// `OSIISO_REQUIRE_FOREIGN=1`) when it does not.
pub(crate) fn have(tool: &str, test: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("OSIISO_REQUIRE_FOREIGN").as_deref() != Ok("1"),
            "{test}: {tool} is required (OSIISO_REQUIRE_FOREIGN=1)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {tool} not installed here (.ci/run installs it; set \
             OSIISO_REQUIRE_FOREIGN=1 to make this a failure)"
        );
    }
    found
}

/// The value of the sample line `name` (with its labels) in Prometheus text.
pub(crate) fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `promtool check metrics` on `text`: it must pass (lint problems included).
pub(crate) fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool refused the metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A run of mixed outcomes on `builder`'s backend: its metrics agree with its rows.
fn counters_equal_rows<B: Backend>(builder: QueueBuilder<B>)
where
    Queue<B>: RunWasm,
{
    let metrics = Metrics::new();
    let queue = builder
        .workers(Workers::Fixed(2))
        .metrics(&metrics)
        .build()
        .unwrap();
    let plugin = load(artifacts::SCENARIO_FLAKY);
    let flaky = plugin.task("flaky").unwrap();
    let permanent = plugin.task("permanent").unwrap();
    let noop = plugin.task("noop").unwrap();
    for i in 0..6 {
        queue.submit_wasm(noop.with_input(json!(i)), TaskOptions::new());
    }
    // Succeeds on its second attempt: one retry.
    queue.submit_wasm(
        flaky.with_input(json!({"succeed_on": 2})),
        TaskOptions::new().retries(3),
    );
    // Never succeeds within its retries: failed, kind `failed`.
    queue.submit_wasm(
        flaky.with_input(json!({"succeed_on": 9})),
        TaskOptions::new().retries(1),
    );
    queue.submit_wasm(permanent.with_input(json!(null)), TaskOptions::new());
    let summary = queue.run_wasm();

    let text = metrics.encode();
    let rows = summary.results;
    let count = |pred: &dyn Fn(&osiiso_host::queue::TaskResult) -> bool| {
        rows.iter().filter(|r| pred(r)).count() as f64
    };
    assert_eq!(sample(&text, "osiiso_tasks_submitted_total"), 9.0);
    assert_eq!(
        sample(&text, "osiiso_tasks_finished_total{status=\"succeeded\"}"),
        count(&|r| r.ok())
    );
    assert_eq!(count(&|r| r.ok()), 7.0);
    for kind in ["failed", "permanent"] {
        assert_eq!(
            sample(
                &text,
                &format!("osiiso_tasks_finished_total{{status=\"failed\",kind=\"{kind}\"}}")
            ),
            count(&|r| r.error.as_ref().is_some_and(|e| e.kind.as_str() == kind)),
            "{kind}"
        );
    }
    let attempts: u32 = rows.iter().map(|r| r.attempts).sum();
    assert_eq!(
        sample(&text, "osiiso_attempt_duration_seconds_count"),
        f64::from(attempts)
    );
    assert_eq!(sample(&text, "osiiso_task_retries_total"), 2.0);
    assert_eq!(sample(&text, "osiiso_tasks_queued"), 0.0);
    if have("promtool", "metrics_pass_promtool") {
        promtool_accepts(&text);
    }
}

/// Submitting and running WASM tasks the same way on every backend.
trait RunWasm {
    fn submit_wasm(&self, call: osiiso_host::TaskCall, options: TaskOptions);
    fn run_wasm(&self) -> osiiso_host::queue::RunSummary;
}

impl RunWasm for ThreadQueue {
    fn submit_wasm(&self, call: osiiso_host::TaskCall, options: TaskOptions) {
        self.submit(call, options).unwrap();
    }
    fn run_wasm(&self) -> osiiso_host::queue::RunSummary {
        self.run().unwrap()
    }
}

impl RunWasm for ProcessQueue {
    fn submit_wasm(&self, call: osiiso_host::TaskCall, options: TaskOptions) {
        self.submit(call, options).unwrap();
    }
    fn run_wasm(&self) -> osiiso_host::queue::RunSummary {
        self.run().unwrap()
    }
}

impl RunWasm for AsyncQueue {
    fn submit_wasm(&self, call: osiiso_host::TaskCall, options: TaskOptions) {
        self.submit(call, options).unwrap();
    }
    fn run_wasm(&self) -> osiiso_host::queue::RunSummary {
        runtime().block_on(self.run_async()).unwrap()
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

#[test]
fn thread_metrics_equal_the_rows_and_pass_promtool() {
    counters_equal_rows(ThreadQueue::builder());
}

#[test]
fn async_metrics_equal_the_rows() {
    counters_equal_rows(AsyncQueue::builder().runtime(runtime().handle().clone()));
}

#[test]
fn process_metrics_equal_the_rows() {
    counters_equal_rows(ProcessQueue::builder());
}

/// Progress seen through `on_progress` and `Handle::progress` on `builder`'s backend: a
/// flood of 2M reports is coalesced, and the last value always arrives.
fn progress_reaches_the_hook<B: Backend>(builder: QueueBuilder<B>)
where
    Queue<B>: RunWasm,
{
    let seen: Arc<Mutex<HashMap<String, Vec<Progress>>>> = Arc::default();
    let hook = seen.clone();
    let queue = builder
        .workers(Workers::Fixed(2))
        .on_progress(move |handle, progress| {
            hook.lock()
                .entry(handle.name().to_string())
                .or_default()
                .push(progress);
        })
        .build()
        .unwrap();
    let steps = load(artifacts::SCENARIO_FLAKY).task("steps").unwrap();
    queue.submit_wasm(
        steps.with_input(json!({"steps": 4, "ms": 20})),
        TaskOptions::new().name("stepper"),
    );
    queue.submit_wasm(
        steps.with_input(json!({"steps": 1, "flood": 2_000_000})),
        TaskOptions::new().name("flood"),
    );
    let started = Instant::now();
    let summary = queue.run_wasm();
    let elapsed = started.elapsed();
    assert_eq!(summary.succeeded, 2, "{summary:?}");
    let seen = seen.lock();
    let stepper = &seen["stepper"];
    assert_eq!(stepper.last(), Some(&Progress::new(4, 4)), "{stepper:?}");
    assert!(
        stepper.windows(2).all(|w| w[0].done <= w[1].done),
        "{stepper:?}"
    );
    let flood = &seen["flood"];
    assert_eq!(flood.last(), Some(&Progress::new(1, 1)), "{flood:?}");
    // At most one delivery per interval per attempt, plus the first and the last.
    let bound = 2 + (elapsed.as_secs_f64() / osiiso_host::PROGRESS_INTERVAL.as_secs_f64()) as usize;
    assert!(
        flood.len() <= bound,
        "{} deliveries of a 2M-report flood in {elapsed:?}",
        flood.len()
    );
    for result in &summary.results {
        assert!(result.ok(), "{result:?}");
    }
}

#[test]
fn progress_reaches_the_hook_on_threads() {
    progress_reaches_the_hook(ThreadQueue::builder());
}

#[test]
fn progress_reaches_the_hook_on_async() {
    progress_reaches_the_hook(AsyncQueue::builder().runtime(runtime().handle().clone()));
}

#[test]
fn progress_crosses_the_process_protocol() {
    progress_reaches_the_hook(ProcessQueue::builder());
}

#[test]
fn handle_progress_and_the_status_page_show_a_running_task() {
    let metrics = Metrics::new();
    let queue = ThreadQueue::builder()
        .workers(Workers::Fixed(1))
        .metrics(&metrics)
        .build()
        .unwrap();
    let steps = load(artifacts::SCENARIO_FLAKY).task("steps").unwrap();
    let handle = queue
        .submit(
            steps.with_input(json!({"steps": 400, "ms": 10})),
            TaskOptions::new().name("<b>long</b>"),
        )
        .unwrap();
    queue.start().unwrap();
    let server = StatusServer::bind("127.0.0.1:0".parse().unwrap(), &metrics).unwrap();
    // Wait (without a timing assertion) until the guest has said something.
    while handle.progress().is_none_or(|p| p.done < 2) {
        assert!(!handle.is_done(), "{:?}", handle.result());
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, page) = http_get(server.local_addr(), "/");
    assert_eq!(status, 200);
    assert!(page.contains("&lt;b&gt;long&lt;/b&gt;"), "{page}");
    assert!(!page.contains("<b>long"), "{page}");
    assert!(page.contains("/400 ("), "{page}");
    let (_, text) = http_get(server.local_addr(), "/metrics");
    assert_eq!(sample(&text, "osiiso_attempts_running"), 1.0);
    handle.cancel();
    queue.run().unwrap();
}

#[test]
fn healthz_turns_503_while_the_queue_drains() {
    let metrics = Metrics::new();
    let queue = Arc::new(
        ThreadQueue::builder()
            .workers(Workers::Fixed(1))
            .metrics(&metrics)
            .build()
            .unwrap(),
    );
    let server = StatusServer::bind("127.0.0.1:0".parse().unwrap(), &metrics).unwrap();
    assert_eq!(http_get(server.local_addr(), "/healthz").0, 200);
    let steps = load(artifacts::SCENARIO_FLAKY).task("steps").unwrap();
    let handle = queue
        .submit(
            steps.with_input(json!({"steps": 2000, "ms": 5})),
            TaskOptions::new(),
        )
        .unwrap();
    queue.start().unwrap();
    while handle.progress().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A graceful shutdown drains: the running task goes on, and the health check says so.
    let draining = std::thread::spawn({
        let queue = queue.clone();
        move || queue.shutdown()
    });
    let mut saw = None;
    while !handle.is_done() {
        let (status, body) = http_get(server.local_addr(), "/healthz");
        if status == 503 {
            saw = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    draining.join().unwrap();
    assert_eq!(saw.as_deref(), Some("draining\n"));
}

#[test]
fn run_http_serves_the_live_run() {
    let mut child = Command::new(crate::support::cli::BIN)
        .args([
            "run",
            artifacts::SCENARIO_FLAKY,
            "steps",
            "--input",
            r#"{"steps": 100000, "ms": 1}"#,
            "--input",
            r#"{"steps": 1}"#,
            "--workers",
            "2",
            "--http",
            "127.0.0.1:0",
            "--output",
            "jsonl",
        ])
        .env("OSIISO_CACHE_DIR", crate::support::cache_dir())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no address printed"
        );
        if let Some(rest) = line.split("status page on http://").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    // Until the long task has reported: the page shows it running with its progress.
    let page = loop {
        let (status, page) = http_get(addr, "/");
        assert_eq!(status, 200);
        if page.contains("/100000 (") {
            break page;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(page.contains("steps"), "{page}");
    assert!(page.contains("<svg"), "{page}");
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "osiiso_tasks_submitted_total"), 2.0);
    assert_eq!(sample(&text, "osiiso_attempts_running"), 1.0);
    if have("promtool", "run_http_serves_the_live_run") {
        promtool_accepts(&text);
    }
    assert_eq!(http_get(addr, "/healthz").0, 200);
    // SIGTERM stops the run: cancelled, and the listener closes with it.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(TcpStream::connect(addr).is_err());
}

/// Runs headless chromium with the flags of a clean, offline profile and `extra`.
fn chromium(profile: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The status page in a real browser during a run: running tasks with progress, failures and
/// the plot in the DOM, and a screenshot that is not an empty page. With
/// `OSIISO_SCREENSHOT_OUT=path.png` the screenshot is kept there (docs/status-page.png is made
/// this way).
#[test]
fn the_status_page_in_headless_chromium() {
    if !have("chromium", "the_status_page_in_headless_chromium") {
        return;
    }
    let metrics = Metrics::new();
    metrics.watch_host(&crate::support::host());
    let queue = ThreadQueue::builder()
        .workers(Workers::Fixed(3))
        .metrics(&metrics)
        .build()
        .unwrap();
    let plugin = load(artifacts::SCENARIO_FLAKY);
    let (steps, noop, permanent) = (
        plugin.task("steps").unwrap(),
        plugin.task("noop").unwrap(),
        plugin.task("permanent").unwrap(),
    );
    for i in 0..200 {
        queue
            .submit(noop.with_input(json!(i)), TaskOptions::new())
            .unwrap();
    }
    for i in 0..3 {
        queue
            .submit(
                permanent.with_input(json!(null)),
                TaskOptions::new().name(format!("import-{i} <script>alert(1)</script>")),
            )
            .unwrap();
    }
    let long: Vec<_> = [("resize-images", 9000), ("train-model", 12000)]
        .into_iter()
        .map(|(name, steps_n)| {
            queue
                .submit(
                    steps.with_input(json!({"steps": steps_n, "ms": 2})),
                    TaskOptions::new().name(name),
                )
                .unwrap()
        })
        .collect();
    queue.start().unwrap();
    let server = StatusServer::bind("127.0.0.1:0".parse().unwrap(), &metrics).unwrap();
    while long
        .iter()
        .any(|h| h.progress().is_none_or(|p| p.done < 50))
        || metrics.status(0).counts.failed < 3
    {
        assert!(long.iter().all(|h| !h.is_done()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://{}/", server.local_addr());
    let scratch = tempfile::tempdir().unwrap();
    let dom = chromium(&scratch.path().join("dom"), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        dom.contains("train-model") && dom.contains("resize-images"),
        "{dom}"
    );
    assert!(dom.contains("<meter"), "{dom}");
    assert!(
        dom.contains("permanent") && dom.contains("no retry can fix this"),
        "{dom}"
    );
    assert!(dom.contains("<polygon"), "{dom}");
    // The hostile name is text, not an element.
    assert!(!dom.contains("<script>alert"), "{dom}");

    let png = scratch.path().join("page.png");
    let shot = chromium(
        &scratch.path().join("shot"),
        &[
            "--hide-scrollbars",
            "--window-size=1000,760",
            &format!("--screenshot={}", png.display()),
            &url,
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    // A blank page of this size compresses to a few KiB; the page with its tables and plot
    // does not.
    assert!(
        bytes.len() > 20_000,
        "{} bytes: an empty page?",
        bytes.len()
    );
    if let Ok(out) = std::env::var("OSIISO_SCREENSHOT_OUT") {
        std::fs::write(out, &bytes).unwrap();
    }
    for handle in &long {
        handle.cancel();
    }
    queue.run().unwrap();
}

/// A guest's progress on a NATS node reaches the submitter's handle and hook: the node passes
/// the latest report on with its announcements (signed with the attempt's key), however often
/// the guest reports.
#[cfg(feature = "nats")]
#[test]
fn progress_crosses_the_broker() {
    let Some(fleet) = crate::nats_fixture::shared_fleet() else {
        return;
    };
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let hook = seen.clone();
    let queue = Queue::builder()
        .nats(fleet.url())
        .workers(Workers::Fixed(1))
        .on_progress(move |_, progress| hook.lock().push(progress))
        .build()
        .unwrap();
    let steps = load(artifacts::SCENARIO_FLAKY).task("steps").unwrap();
    let handle = queue
        .submit(
            steps.with_input(json!({"steps": 400, "ms": 10, "flood": 100_000})),
            TaskOptions::new(),
        )
        .unwrap();
    queue.start().unwrap();
    // Wait (without a timing assertion) until a report has crossed while the task runs.
    while handle.progress().is_none() {
        assert!(!handle.is_done(), "{:?}", handle.result());
        std::thread::sleep(Duration::from_millis(5));
    }
    let summary = queue.run().unwrap();
    assert_eq!(summary.succeeded, 1, "{summary:?}");
    let seen = seen.lock();
    assert!(!seen.is_empty());
    // Every report is one the guest made (the flood's, then the steps'), and a flood of
    // 100,000 reports crossed as a handful of announcements.
    assert!(
        seen.iter()
            .all(|p| [100_000, 400].contains(&p.total) && p.done <= p.total),
        "{seen:?}"
    );
    assert!(seen.len() < 1_000, "{} deliveries", seen.len());
}
