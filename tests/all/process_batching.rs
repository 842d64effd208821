//! ProcessQueue with several attempts in flight per worker subprocess
//! (`attempts_per_worker`): a crash ends each held attempt exactly once, a waiting attempt's
//! timeout starts with the attempt, a waiting attempt's cancel does not touch the worker, and
//! an oversized reply in a batch fails alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osiiso_host::backend::ProcessContext;
use osiiso_host::queue::{TaskOptions, TaskStatus, Workers};
use osiiso_host::{FailureKind, Limits, ProcessQueue};
use osiiso_test_artifacts as artifacts;
use serde_json::json;

use crate::support::load;

fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fake worker in Python: handshakes, reads `runs` `Run` requests without answering, then
/// answers the first with the value "first" and exits with code 7 holding the others.
fn fake_worker(dir: &Path, runs: usize) -> Option<PathBuf> {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED fake Python worker: python3 is not installed");
        return None;
    }
    let script = format!(
        r#"#!/usr/bin/env python3
import json, os, struct, sys
out = sys.stdout.buffer
def send(message):
    body = json.dumps(message).encode()
    out.write(struct.pack("<I", len(body)) + body)
    out.flush()
send({{"Hello": {{"version": 4, "pid": os.getpid()}}}})
ids = []
while len(ids) < {runs}:
    head = sys.stdin.buffer.read(4)
    if len(head) < 4:
        sys.exit(2)
    body = json.loads(sys.stdin.buffer.read(struct.unpack("<I", head)[0]))
    if "Run" in body:
        ids.append(body["Run"]["attempt_id"])
report = {{"outcome": {{"Succeeded": "first"}}, "fuel_consumed": None, "stdout": None, "stderr": None}}
send({{"Done": {{"attempt_id": ids[0], "report": report}}}})
sys.exit(7)
"#
    );
    let path = dir.join("fake-batch-worker.py");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Some(path)
}

#[test]
fn a_worker_crash_ends_every_attempt_it_held_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = fake_worker(dir.path(), 4) else {
        return;
    };
    let completions: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = completions.clone();
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .attempts_per_worker(4)
        .context(ProcessContext::Command {
            program,
            args: Vec::new(),
            env: Vec::new(),
        })
        .on_complete(move |result| {
            *seen
                .lock()
                .unwrap()
                .entry(result.task_id.clone())
                .or_default() += 1;
        })
        .build()
        .unwrap();
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    // All four go to the one worker at once; it answers the first and dies holding three.
    let group = queue
        .map(&noop, (0..4).map(|i| json!(i)), TaskOptions::new())
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(summary.total_submitted, 4);
    assert_eq!((summary.succeeded, summary.failed), (1, 3), "{summary}");
    for handle in group.iter() {
        let result = handle.result().unwrap();
        assert_eq!(result.attempts, 1);
        match &result.error {
            None => assert_eq!(result.value, Some(json!("first").into())),
            Some(failure) => {
                assert_eq!(failure.kind, FailureKind::WorkerCrashed, "{failure}");
                assert_eq!(failure.message, "worker process died (exit code 7)");
            }
        }
    }
    let completions = completions.lock().unwrap();
    assert_eq!(completions.len(), 4);
    assert!(
        completions.values().all(|n| *n == 1),
        "each task completed exactly once: {completions:?}"
    );
}

#[test]
fn a_waiting_attempts_timeout_starts_when_the_attempt_does() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .attempts_per_worker(2)
        .poll(Duration::from_millis(20))
        .build()
        .unwrap();
    queue.start().unwrap();
    let flaky = load(artifacts::SCENARIO_FLAKY);
    // About a second of work, reporting progress: once it has, it runs in the worker.
    let long = queue
        .submit(
            flaky
                .task("steps")
                .unwrap()
                .with_input(json!({"steps": 40, "ms": 25})),
            TaskOptions::new(),
        )
        .unwrap();
    eventually("the long task to run in the worker", || {
        long.progress().is_some()
    });
    // Sent to the same worker behind it, with a timeout far shorter than the wait.
    let quick = queue
        .submit(
            flaky.task("noop").unwrap().with_input(json!("quick")),
            TaskOptions::new().timeout(Duration::from_millis(300)),
        )
        .unwrap();
    let quick = quick.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        quick.ok(),
        "the wait behind another attempt is not its run: {:?}",
        quick.error
    );
    assert_eq!(quick.value, Some(json!("quick").into()));
    assert!(long.wait_timeout(Duration::from_secs(60)).unwrap().ok());
    queue.shutdown();
}

#[test]
fn cancelling_a_waiting_attempt_ends_it_at_once_and_keeps_the_worker() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .attempts_per_worker(2)
        .poll(Duration::from_millis(20))
        .build()
        .unwrap();
    queue.start().unwrap();
    let flaky = load(artifacts::SCENARIO_FLAKY);
    // Far longer than the test: it ends only when cancelled.
    let long = queue
        .submit(
            flaky
                .task("steps")
                .unwrap()
                .with_input(json!({"steps": 1_000_000, "ms": 10})),
            TaskOptions::new(),
        )
        .unwrap();
    eventually("the long task to run in the worker", || {
        long.progress().is_some()
    });
    let pid = queue.worker_pids();
    let waiting = queue
        .submit(
            flaky.task("noop").unwrap().with_input(json!(1)),
            TaskOptions::new(),
        )
        .unwrap();
    eventually("the second task to be sent", || {
        waiting.status() == TaskStatus::Running
    });
    assert!(waiting.cancel());
    let result = waiting.wait_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(result.status, TaskStatus::Cancelled, "{:?}", result.error);
    assert!(!long.is_done(), "the running attempt goes on");
    assert_eq!(queue.worker_pids(), pid, "the worker was not killed");
    assert!(long.cancel());
    let result = long.wait_timeout(Duration::from_secs(60)).unwrap();
    // Stopped by the host (cancelled), or by itself on seeing `cancelled()` (its own error).
    assert!(
        result.status == TaskStatus::Cancelled
            || result.error.as_ref().unwrap().message == "noticed cancellation",
        "{result:?}"
    );
    // The worker still serves.
    let after = queue
        .submit(
            flaky.task("noop").unwrap().with_input(json!("after")),
            TaskOptions::new(),
        )
        .unwrap();
    assert_eq!(after.wait().value, Some(json!("after").into()));
    assert_eq!(queue.worker_pids(), pid, "the same worker served it");
    queue.shutdown();
}

#[test]
fn an_oversized_reply_in_a_batch_fails_alone() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .attempts_per_worker(4)
        .build()
        .unwrap();
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    let big = load(artifacts::HOSTILE_OVERSIZED)
        .task("big_value")
        .unwrap();
    let before = queue
        .submit(noop.with_input(json!("before")), TaskOptions::new())
        .unwrap();
    // Over the 64 MiB frame bound once encoded.
    let huge = queue
        .submit(big.with_input(json!(65 << 20)), TaskOptions::new())
        .unwrap();
    let after = queue
        .map(&noop, (0..6).map(|i| json!(i)), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    let failure = huge.error().unwrap();
    assert_eq!(failure.kind, FailureKind::Serialization, "{failure}");
    assert!(failure.message.contains("frame limit"), "{failure}");
    assert_eq!(before.result().unwrap().value, Some(json!("before").into()));
    for (i, handle) in after.iter().enumerate() {
        assert_eq!(handle.result().unwrap().value, Some(json!(i).into()));
    }
    assert_eq!(queue.worker_pids().len(), 1, "one worker served them all");
    queue.shutdown();
}

#[test]
fn a_timeout_in_a_batch_ends_that_task_alone() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .attempts_per_worker(3)
        .poll(Duration::from_millis(20))
        .build()
        .unwrap();
    let grind = load(artifacts::HOSTILE_IGNORES_CANCEL)
        .task("grind")
        .unwrap();
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    // Never ends on its own: the worker's epoch check stops it at its deadline.
    let stuck = queue
        .submit(
            grind.with_input(serde_json::Value::Null),
            TaskOptions::new().timeout(Duration::from_millis(300)),
        )
        .unwrap();
    let behind = queue
        .map(&noop, (0..2).map(|i| json!(i)), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    let failure = stuck.error().unwrap();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
    for (i, handle) in behind.iter().enumerate() {
        assert_eq!(handle.result().unwrap().value, Some(json!(i).into()));
    }
    assert_eq!(
        queue.worker_pids().len(),
        1,
        "the worker stopped the guest itself and lives"
    );
    let pid = queue.worker_pids();
    let again = queue
        .submit(noop.with_input(json!("again")), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    assert_eq!(again.result().unwrap().value, Some(json!("again").into()));
    assert_eq!(queue.worker_pids(), pid, "the same worker");
    queue.shutdown();
}

#[test]
fn a_warm_instance_sees_its_tasks_in_queue_order() {
    // One worker holding four attempts: four queue threads take tasks and send them to it.
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .attempts_per_worker(4)
        .build()
        .unwrap();
    // A warm instance that counts its calls: the n-th task it runs answers n.
    let count = load(artifacts::HOSTILE_SECRET_KEEPER)
        .with_limits(Limits::new().reuse(1_000_000))
        .task("count")
        .unwrap();
    let tasks = 400;
    let group = queue
        .map(
            &count,
            (0..tasks).map(|_| serde_json::Value::Null),
            TaskOptions::new(),
        )
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(summary.succeeded, tasks, "{summary}");
    let values: Vec<_> = group
        .iter()
        .map(|handle| handle.result().unwrap().value.clone())
        .collect();
    let expected: Vec<_> = (1..=tasks).map(|n| Some(json!(n).into())).collect();
    let first_out_of_order = values.iter().zip(&expected).position(|(v, e)| v != e);
    assert_eq!(
        first_out_of_order, None,
        "the worker ran them in the order the queue handed them out: {values:?}"
    );
    assert_eq!(
        queue.worker_pids().len(),
        1,
        "one worker, one warm instance"
    );
    queue.shutdown();
}
