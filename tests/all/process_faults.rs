//! ProcessQueue faults: killed, stopped and babbling workers; no task lost, nothing leaked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use osiiso_host::FailureKind;
use osiiso_host::ProcessQueue;
use osiiso_host::backend::ProcessContext;
use osiiso_host::queue::{TaskOptions, TaskStatus, Workers};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::load;

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still show as `Z`.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: signalling a worker process this test's queue started.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_worker_fails_its_attempt_and_the_pool_recovers() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .build()
        .unwrap();
    queue.start().unwrap();
    let grind = load(artifacts::HOSTILE_IGNORES_CANCEL)
        .task("grind")
        .unwrap();
    let victim = queue
        .submit(grind.with_input(Value::Null), TaskOptions::new())
        .unwrap();
    eventually("the worker to start", || {
        victim.status() == TaskStatus::Running && !queue.worker_pids().is_empty()
    });
    let pid = queue.worker_pids()[0];
    signal(pid, libc::SIGKILL);
    let r = victim.wait_timeout(Duration::from_secs(30)).unwrap();
    let failure = r.error.clone().unwrap();
    assert_eq!(failure.kind, FailureKind::WorkerCrashed, "{failure}");
    assert_eq!(failure.message, "worker process died (signal 9)");
    assert!(!alive(pid));

    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    let after = queue
        .submit(noop.with_input(json!("still here")), TaskOptions::new())
        .unwrap();
    assert_eq!(
        after.wait().value,
        Some(json!("still here").into()),
        "a new worker took over"
    );
    queue.shutdown();
    assert!(queue.worker_pids().is_empty());
}

#[test]
fn sigkill_during_a_run_loses_no_task() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(2))
        .build()
        .unwrap();
    let score = load(artifacts::SCORE).task("score").unwrap();
    let group = queue
        .map(
            &score,
            (0..16).map(|i| json!(2_000_000 + i)),
            TaskOptions::new().retries(2),
        )
        .unwrap();
    queue.start().unwrap();
    eventually("two workers", || queue.worker_pids().len() == 2);
    signal(queue.worker_pids()[0], libc::SIGKILL);
    let summary = queue.run().unwrap();
    assert_eq!(summary.total_submitted, 16);
    assert_eq!(summary.succeeded, 16, "the killed attempt was retried");
    assert!(group.iter().all(|h| h.result().is_some()));
    let pids = queue.worker_pids();
    drop(queue);
    assert!(
        pids.iter().all(|pid| !alive(*pid)),
        "dropping the queue reaps its workers"
    );
}

#[test]
fn stopped_worker_is_killed_at_the_deadline() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .poll(Duration::from_millis(20))
        .build()
        .unwrap();
    queue.start().unwrap();
    let grind = load(artifacts::HOSTILE_IGNORES_CANCEL)
        .task("grind")
        .unwrap();
    let handle = queue
        .submit(
            grind.with_input(Value::Null),
            TaskOptions::new().timeout(Duration::from_millis(300)),
        )
        .unwrap();
    eventually("the worker to start", || {
        handle.status() == TaskStatus::Running && !queue.worker_pids().is_empty()
    });
    let pid = queue.worker_pids()[0];
    signal(pid, libc::SIGSTOP);
    let r = handle.wait_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(r.error.as_ref().unwrap().kind, FailureKind::Timeout);
    assert!(!alive(pid), "a worker that cannot report is killed");
    queue.shutdown();
}

/// A fake worker: handshakes, then behaves as `after_request` says once a request arrives.
fn fake_worker(dir: &Path, after_request: &str) -> PathBuf {
    // The protocol version this host speaks (protocol.rs).
    let hello = r#"{"Hello":{"version":4,"pid":1}}"#;
    let script = format!(
        "#!/bin/sh\nprintf '\\{:03o}\\000\\000\\000{hello}'\nhead -c 4 >/dev/null\n{after_request}\n",
        hello.len()
    );
    let path = dir.join("fake-worker.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

fn fake_queue(program: PathBuf) -> ProcessQueue {
    ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .context(ProcessContext::Command {
            program,
            args: Vec::new(),
            env: Vec::new(),
        })
        .build()
        .unwrap()
}

#[test]
fn garbage_on_the_pipe_replaces_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let queue = fake_queue(fake_worker(
        dir.path(),
        "printf '\\377\\377\\377\\377junk'; sleep 30",
    ));
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    let handle = queue
        .submit(noop.with_input(json!(1)), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    let failure = handle.error().unwrap();
    assert_eq!(failure.kind, FailureKind::WorkerCrashed, "{failure}");
    assert!(failure.detail.unwrap().contains("malformed frame"));
    assert!(
        queue.worker_pids().is_empty(),
        "the babbling worker is gone"
    );
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_hundred_crashes_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let program = fake_worker(dir.path(), "exit 3");
    let before = open_descriptors();
    let queue = fake_queue(program.clone());
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    let group = queue
        .map(&noop, (0..100).map(|i| json!(i)), TaskOptions::new())
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(summary.failed, 100);
    for handle in group.iter() {
        let failure = handle.error().unwrap();
        assert_eq!(failure.kind, FailureKind::WorkerCrashed);
        assert_eq!(failure.message, "worker process died (exit code 3)");
    }
    drop(queue);
    // Other tests run concurrently in this process, so allow some slack; a leak per crash
    // would show as hundreds of descriptors.
    assert!(
        open_descriptors() < before + 20,
        "{before} -> {}",
        open_descriptors()
    );
    let marker = program.display().to_string();
    let stray = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&marker))
        .count();
    assert_eq!(stray, 0, "no fake worker survives");
}

#[test]
fn missing_worker_binary_is_a_worker_start_failure() {
    let queue = fake_queue(PathBuf::from("/nonexistent/osiiso-host"));
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    let handle = queue
        .submit(noop.with_input(json!(1)), TaskOptions::new().retries(1))
        .unwrap();
    queue.run().unwrap();
    let r = handle.result().unwrap();
    assert_eq!(r.attempts, 2, "worker start failures are retried");
    let failure = r.error.clone().unwrap();
    assert_eq!(failure.kind, FailureKind::WorkerStart);
    assert!(failure.message.contains("context"), "{}", failure.message);
}

#[test]
fn worker_memory_cap_fails_the_task_as_a_memory_limit() {
    let queue = ProcessQueue::builder()
        .workers(Workers::Fixed(1))
        .worker_memory(256 << 20)
        .build()
        .unwrap();
    let bomb = load(artifacts::HOSTILE_MEMORY_BOMB).task("bomb").unwrap();
    let handle = queue
        .submit(bomb.with_input(Value::Null), TaskOptions::new())
        .unwrap();
    let score = load(artifacts::SCORE).task("score").unwrap();
    let after = queue
        .submit(score.with_input(json!(1000)), TaskOptions::new())
        .unwrap();
    queue.run().unwrap();
    let failure = handle.error().unwrap();
    assert_eq!(failure.kind, FailureKind::MemoryLimit, "{failure}");
    assert!(
        after.result().unwrap().ok(),
        "the capped worker still serves"
    );
}
