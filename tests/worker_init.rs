//! The ProcessQueue initializer and worker logs, driven the way an embedder uses them: this
//! binary is its own worker (`ProcessContext::CurrentExe`), so `main` serves as one when it
//! sees the marker, and otherwise runs the scenarios. It has no libtest harness because the
//! worker entry point must come first in `main`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use osiiso_host::ProcessQueue;
use osiiso_host::backend::ProcessContext;
use osiiso_host::backend::WorkerHooks;
use osiiso_host::backend::WorkerInit;
use osiiso_host::queue::{TaskOptions, TaskStatus, Workers};
use osiiso_host::{FailureKind, Host, Task};
use osiiso_test_artifacts as artifacts;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

/// The hooks this worker binary offers.
fn hooks() -> WorkerHooks {
    WorkerHooks::new()
        .register("record", |argument| {
            // One line per call, in a file named after the worker's PID.
            let dir = argument["dir"].as_str().ok_or("record needs a dir")?;
            let path = Path::new(dir).join(std::process::id().to_string());
            let mut lines = std::fs::read_to_string(&path).unwrap_or_default();
            lines.push_str("initialised\n");
            std::fs::write(&path, lines).map_err(|e| e.to_string())
        })
        .register("fail", |argument| {
            Err(argument["message"].as_str().unwrap_or("failed").to_string())
        })
        .register("log", |argument| {
            tracing::warn!(greeting = %argument["text"], "hello from a worker hook");
            Ok(())
        })
}

fn main() {
    osiiso_host::maybe_run_worker_with(hooks());

    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Captured))
        .expect("no subscriber yet");
    // SAFETY: set before any thread of this process starts.
    unsafe { std::env::set_var("OSIISO_HOST_BIN", env!("CARGO_BIN_EXE_osiiso-host")) };

    let scenarios: &[(&str, fn())] = &[
        (
            "initializer_runs_once_per_subprocess",
            initializer_runs_once_per_subprocess,
        ),
        (
            "failing_initializer_fails_the_task_not_the_queue",
            failing_initializer_fails_the_task_not_the_queue,
        ),
        ("unknown_hook_is_named", unknown_hook_is_named),
        (
            "bad_preload_is_a_worker_start_failure",
            bad_preload_is_a_worker_start_failure,
        ),
        (
            "worker_logs_reach_the_parent_tracing",
            worker_logs_reach_the_parent_tracing,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, scenario) in scenarios {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        println!("test {name} ...");
        scenario();
        println!("test {name} ... ok");
    }
}

fn noop() -> Task {
    let host = Host::builder()
        .cache_dir(Path::new(env!("CARGO_TARGET_TMPDIR")).join("osiiso-cache"))
        .build()
        .unwrap();
    host.load(artifacts::SCENARIO_FLAKY)
        .unwrap()
        .task("noop")
        .unwrap()
}

fn queue(workers: usize, init: WorkerInit) -> ProcessQueue {
    ProcessQueue::builder()
        .workers(Workers::Fixed(workers))
        .context(ProcessContext::CurrentExe { args: Vec::new() })
        .initializer(init)
        .build()
        .unwrap()
}

fn initializer_runs_once_per_subprocess() {
    let dir = tempfile::tempdir().unwrap();
    let init = WorkerInit::new()
        .preload(artifacts::SCENARIO_FLAKY)
        .hook("record", json!({ "dir": dir.path() }));
    let queue = queue(2, init);
    let noop = noop();
    for round in 0..2 {
        let group = queue
            .map(&noop, (0..6).map(|i| json!(i)), TaskOptions::new())
            .unwrap();
        let summary = queue.run().unwrap();
        assert_eq!(summary.succeeded, 6, "round {round}: {summary}");
        assert_eq!(group.values().unwrap().len(), 6);
    }
    let pids: BTreeSet<String> = queue.worker_pids().iter().map(u32::to_string).collect();
    let recorded: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!pids.is_empty());
    assert_eq!(
        recorded, pids,
        "each live worker ran the hook, in its own process"
    );
    for pid in &recorded {
        let lines = std::fs::read_to_string(dir.path().join(pid)).unwrap();
        assert_eq!(
            lines, "initialised\n",
            "worker {pid} ran its initializer once"
        );
    }
    queue.shutdown();
}

fn failing_initializer_fails_the_task_not_the_queue() {
    let queue = queue(
        1,
        WorkerInit::new().hook("fail", json!({ "message": "no database" })),
    );
    let noop = noop();
    let retried = queue
        .submit(noop.with_input(json!(1)), TaskOptions::new().retries(1))
        .unwrap();
    let other = queue
        .submit(noop.with_input(json!(2)), TaskOptions::new())
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!((summary.failed, summary.cancelled), (2, 0), "{summary}");
    let r = retried.result().unwrap();
    assert_eq!(
        r.attempts, 2,
        "each attempt respawns and re-runs the initializer"
    );
    let failure = r.error.clone().unwrap();
    assert_eq!(failure.kind, FailureKind::WorkerStart, "{failure}");
    assert!(failure.message.contains("no database"), "{failure}");
    assert_eq!(other.status(), TaskStatus::Failed);
    assert!(queue.worker_pids().is_empty(), "the failed worker exited");
    queue.shutdown();
}

fn unknown_hook_is_named() {
    // The stock `osiiso-host worker` offers no hooks.
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .initializer(WorkerInit::new().hook("open-db", json!(null)))
        .build()
        .unwrap();
    let failure = worker_start_failure(queue);
    assert!(
        failure.message.contains("no hook named 'open-db'"),
        "{failure}"
    );
}

/// Runs one task on `queue`, which must fail to start its worker; the failure.
fn worker_start_failure(queue: ProcessQueue) -> osiiso_host::TaskFailure {
    let handle = queue
        .submit(noop().with_input(json!(1)), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    let failure = handle.error().unwrap();
    assert_eq!(failure.kind, FailureKind::WorkerStart, "{failure}");
    queue.shutdown();
    failure
}

fn bad_preload_is_a_worker_start_failure() {
    let missing = PathBuf::from("/nonexistent/plugin.wasm");
    let failure = worker_start_failure(queue(1, WorkerInit::new().preload(&missing)));
    assert!(
        failure
            .message
            .contains("cannot preload '/nonexistent/plugin.wasm'"),
        "{failure}"
    );
}

fn worker_logs_reach_the_parent_tracing() {
    let queue = queue(1, WorkerInit::new().hook("log", json!({ "text": "hi" })));
    let handle = queue
        .submit(noop().with_input(json!(1)), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    assert_eq!(handle.status(), TaskStatus::Succeeded);
    let pid = queue.worker_pids()[0];
    let logs = CAPTURED.lock().unwrap().clone();
    let line = logs
        .iter()
        .find(|l| l.contains("hello from a worker hook"))
        .unwrap_or_else(|| panic!("no forwarded event in {logs:#?}"));
    assert!(line.starts_with("WARN osiiso_host::worker"), "{line}");
    assert!(line.contains(&format!("worker_pid={pid}")), "{line}");
    assert!(line.contains(r#"greeting="hi""#), "{line}");
    queue.shutdown();
}

/// Every event this process emits, as `LEVEL target fields`.
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Captured;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        let metadata = event.metadata();
        let mut fields = Fields(format!("{} {}", metadata.level(), metadata.target()));
        event.record(&mut fields);
        CAPTURED.lock().unwrap().push(fields.0);
    }
}
