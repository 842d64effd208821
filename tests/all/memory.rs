//! Host memory spent on a plugin's behalf: values kept as the text they are, counted against
//! the memory budget while in flight; `list` bounded in total; and runs of any length that
//! leave nothing behind for a finished task (docs/queues.md §9.3, SECURITY.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use osiiso_host::queue::backend::AcceptsNative;
use osiiso_host::queue::{
    KEPT_FAILURES, Mode, NativeTask, Queue, Retention, TaskOptions, TaskStatus, Workers,
};
use osiiso_host::{
    AsyncQueue, AttemptOutcome, FailureKind, Host, Json, LoadError, TaskFailure, ThreadQueue,
};
use osiiso_test_artifacts as artifacts;
use serde_json::json;

use crate::support::cli::{osiiso, path_str};
use crate::support::{cache_dir, run};

// ---------------------------------------------------------------------------------------------
// values

/// What the `greet` task of the echo plugin returns, as the guest writes it: `message` before
/// `attempt`, an order no sorting gives.
const GREETING: &str = r#"{"message":"Hello, Ada.","attempt":1}"#;

#[test]
fn values_keep_the_guests_key_order_in_every_output() {
    for queue in ["thread", "async", "process"] {
        let args = |output| {
            vec![
                "run",
                artifacts::ECHO,
                "greet",
                "--input",
                r#"{"name": "Ada"}"#,
                "--queue",
                queue,
                "--output",
                output,
                "-q",
            ]
        };
        let jsonl = osiiso(&args("jsonl"));
        jsonl.assert_code(0);
        assert!(
            jsonl.stdout.contains(&format!(r#""value":{GREETING},"#)),
            "{queue}: {}",
            jsonl.stdout
        );
        let array = osiiso(&args("json"));
        array.assert_code(0);
        assert!(array.stdout.contains(GREETING), "{queue}: {}", array.stdout);
        let table = osiiso(&args("table"));
        table.assert_code(0);
        assert!(table.stdout.contains(GREETING), "{queue}: {}", table.stdout);
    }
    // The library keeps the same text.
    let plugin = crate::support::load(artifacts::ECHO);
    match run(&plugin, "greet", json!({"name": "Ada"})).outcome {
        AttemptOutcome::Succeeded(value) => {
            assert_eq!(value.as_str(), GREETING);
            assert_eq!(value, json!({"attempt": 1, "message": "Hello, Ada."}));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_output_keeps_input_order_and_rows_carry_their_values() {
    let inputs: Vec<String> = (0..40).map(|i| format!("--input={}", 40 - i)).collect();
    let mut args = vec![
        "run",
        artifacts::SCENARIO_FLAKY,
        "sleep",
        "--workers",
        "4",
        "--output",
        "json",
        "-q",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let outcome = osiiso(&args);
    outcome.assert_code(0);
    let rows: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    let values: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..40).map(|i| 40 - i).collect();
    assert_eq!(
        values, expected,
        "input order, whatever the completion order"
    );
}

#[test]
fn every_task_taken_gets_a_row_when_fail_first_stops_the_feeding() {
    // A bounded queue is fed while it runs; the first failure halts it part-way through the
    // inputs. Every task it took must still get its row, and the summary counts the same.
    let mut args = vec![
        "run",
        artifacts::ECHO,
        "fail",
        "--size",
        "2",
        "--workers",
        "1",
        "--fail-first",
        "--output",
        "jsonl",
    ];
    for _ in 0..30 {
        args.extend(["--input", r#""x""#]);
    }
    let outcome = osiiso(&args);
    outcome.assert_code(1);
    let rows = outcome.jsonl();
    assert!(!rows.is_empty(), "{outcome:#?}");
    assert!(
        outcome
            .stderr
            .contains(&format!("Total tasks : {}", rows.len())),
        "{outcome:#?}"
    );
}

#[test]
fn deep_values_are_refused_cleanly_on_every_backend() {
    for queue in ["thread", "async", "process"] {
        let outcome = osiiso(&[
            "run",
            artifacts::HOSTILE_OVERSIZED,
            "deep",
            "--input",
            "1000",
            "--queue",
            queue,
            "--output",
            "jsonl",
            "-q",
        ]);
        outcome.assert_code(1);
        let row = outcome.single();
        assert_eq!(row["error"]["kind"], "serialization", "{queue}: {row}");
        assert!(
            row["error"]["message"]
                .as_str()
                .unwrap()
                .contains("recursion limit"),
            "{queue}: {row}"
        );
        // As deep as serde_json parses is fine.
        let ok = osiiso(&[
            "run",
            artifacts::HOSTILE_OVERSIZED,
            "deep",
            "--input",
            "127",
            "--queue",
            queue,
            "--output",
            "jsonl",
            "-q",
        ]);
        ok.assert_code(0);
    }
}

/// A host of its own, so that no other test's attempts share its memory budget.
fn own_host() -> Host {
    Host::builder()
        .cache_dir(cache_dir())
        .total_memory(1 << 30)
        .build()
        .unwrap()
}

/// Runs `task(input)` of the oversized guest on a ThreadQueue: the budget in use that
/// `on_complete` saw, the value, and the budget in use once the run is over.
fn budget_seen_by_on_complete(
    host: &Host,
    task: &str,
    input: serde_json::Value,
) -> (usize, Json, usize) {
    let plugin = host.load(artifacts::HOSTILE_OVERSIZED).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let (seen_in, counting_host) = (seen.clone(), host.clone());
    let queue = ThreadQueue::builder()
        .on_complete(move |_| seen_in.store(counting_host.memory_in_use(), Ordering::SeqCst))
        .build()
        .unwrap();
    let handle = queue
        .submit(
            plugin.task(task).unwrap().with_input(input),
            TaskOptions::new(),
        )
        .unwrap();
    queue.run().unwrap();
    (
        seen.load(Ordering::SeqCst),
        handle.value().unwrap(),
        host.memory_in_use(),
    )
}

#[test]
fn values_in_flight_count_against_the_memory_budget() {
    let host = own_host();
    let big = 8 << 20;
    // Counted while it is being recorded (on_complete sees it), given back once recorded,
    // although the queue and the handle still keep the result.
    let (while_recorded, value, after) = budget_seen_by_on_complete(&host, "big_value", json!(big));
    assert_eq!(value.len(), big + 2);
    assert_eq!(while_recorded, big + 2);
    assert_eq!(after, 0);

    // A report from a single attempt outside any queue is the caller's: it counts nothing.
    let plugin = host.load(artifacts::HOSTILE_OVERSIZED).unwrap();
    let report = run(&plugin, "big_value", json!(big));
    assert!(matches!(report.outcome, AttemptOutcome::Succeeded(_)));
    assert_eq!(host.memory_in_use(), 0);
}

#[test]
fn a_large_value_is_kept_once_not_inflated() {
    // 3M elements: a parsed tree would take ~100 MB of host memory; the text is 6 MB, kept
    // once, counted once, in the guest's own form.
    let elements = 3_000_000;
    let (while_recorded, value, _) =
        budget_seen_by_on_complete(&own_host(), "big_array", json!(elements));
    assert_eq!(value.len(), 2 * elements + 1);
    assert_eq!(while_recorded, value.len());
    assert!(value.as_str().starts_with("[7,7,"));
}

#[test]
fn a_value_over_the_copy_limit_fails_typed_and_is_not_retried() {
    let plugin = crate::support::load(artifacts::HOSTILE_OVERSIZED);
    let report = run(&plugin, "big_value", json!((128 << 20) + 1));
    let AttemptOutcome::Failed(failure) = report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!(failure.kind, FailureKind::Serialization, "{failure}");
    assert!(!failure.kind.is_retryable());
    assert!(failure.message.contains("more than 128 MiB"), "{failure}");
}

// ---------------------------------------------------------------------------------------------
// list

/// A component whose `list` returns `tasks` records that all point at one `schema_bytes`
/// long input schema (a JSON string) in its memory: the host-side copy is what costs.
fn aliasing_list(tasks: usize, schema_bytes: usize) -> Vec<u8> {
    let pages = (0x10_0000 + schema_bytes + tasks * 56).div_ceil(0x1_0000) + 1;
    let records = 0x10_0000 + schema_bytes;
    let wat = format!(
        r#"(component
  (core module $m
    (memory (export "memory") {pages})
    (func (export "list") (result i32)
      (local $i i32) (local $rec i32)
      (memory.fill (i32.const 0x100000) (i32.const 0x61) (i32.const {schema_bytes}))
      (i32.store8 (i32.const 0x100000) (i32.const 0x22))
      (i32.store8 (i32.const {last}) (i32.const 0x22))
      (i32.store8 (i32.const 16) (i32.const 0x74))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (i32.const {tasks})))
          (local.set $rec (i32.add (i32.const {records}) (i32.mul (local.get $i) (i32.const 56))))
          (i32.store (local.get $rec) (i32.const 16))
          (i32.store offset=4 (local.get $rec) (i32.const 1))
          (i32.store offset=8 (local.get $rec) (i32.const 16))
          (i32.store offset=12 (local.get $rec) (i32.const 1))
          (i32.store8 offset=16 (local.get $rec) (i32.const 1))
          (i32.store offset=20 (local.get $rec) (i32.const 0x100000))
          (i32.store offset=24 (local.get $rec) (i32.const {schema_bytes}))
          (i32.store8 offset=28 (local.get $rec) (i32.const 0))
          (i32.store8 offset=40 (local.get $rec) (i32.const 0))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (i32.store (i32.const 0) (i32.const {records}))
      (i32.store (i32.const 4) (i32.const {tasks}))
      (i32.const 0))
    (func (export "invoke") (param i32 i32 i32 i32) (result i32) unreachable)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 32)))
  (core instance $i (instantiate $m))
  (type $info (record
    (field "name" string)
    (field "description" string)
    (field "input-schema" (option string))
    (field "retries" (option u32))
    (field "timeout-ms" (option u64))))
  (type $error (variant (case "failed" string) (case "permanent" string) (case "invalid-input" string)))
  (export $info-e "task-info" (type $info))
  (export $error-e "task-error" (type $error))
  (func $list (result (list $info-e)) (canon lift (core func $i "list") (memory (core memory $i "memory"))))
  (func $invoke (param "name" string) (param "input" string) (result (result string (error $error-e)))
    (canon lift (core func $i "invoke") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (instance $tasks
    (export "task-info" (type $info-e))
    (export "task-error" (type $error-e))
    (export "list" (func $list))
    (export "invoke" (func $invoke)))
  (export "osiiso:task/tasks@0.1.0" (instance $tasks)))"#,
        last = 0x10_0000 + schema_bytes - 1,
    );
    wat::parse_str(wat).unwrap()
}

#[test]
fn what_list_returns_is_bounded_in_total() {
    let host = crate::support::host();
    // A small list with the same aliasing loads: the bound is on the total, and this is far
    // below it.
    let fine = host
        .load_bytes("alias-fine.wasm", &aliasing_list(3, 1 << 10))
        .unwrap();
    assert_eq!(fine.tasks().len(), 3);

    // Eight tasks aliasing one 1 MiB schema: 8 MiB of text for the host to copy.
    let error = host
        .load_bytes("alias-bomb.wasm", &aliasing_list(8, 1 << 20))
        .expect_err("an aliasing list over the bound is refused");
    assert!(matches!(error, LoadError::Contract { .. }), "{error}");
    assert!(error.to_string().contains("more than 4 MiB"), "{error}");

    // So are many tasks with little text: each one counts too.
    let error = host
        .load_bytes("many-tasks.wasm", &aliasing_list(100_000, 2))
        .expect_err("a list of 100,000 tasks is refused");
    assert!(error.to_string().contains("more than 4 MiB"), "{error}");

    // The CLI: a load error (exit 2) naming the bound, with the memory cap of the issue.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alias.wasm");
    std::fs::write(&file, aliasing_list(120, 1 << 20)).unwrap();
    osiiso(&["list", path_str(&file), "--max-memory", "64MiB"])
        .assert_usage_error(&["`list` returned more than 4 MiB"]);
}

// ---------------------------------------------------------------------------------------------
// runs of any length

/// An endless run fed far more tasks than it may hold at once: with counts only and the
/// handles dropped, what the queue holds stays within what is in flight, and nothing is left
/// once it is done — except the one task whose handle the caller kept.
fn endless_run_stays_flat<B: AcceptsNative>(queue: Queue<B>, kind: &str) {
    const TASKS: usize = 20_000;
    const SIZE: usize = 64;
    const WORKERS: usize = 4;
    let queue = Arc::new(queue);
    let peak_live = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (queue, peak_live) = (queue.clone(), peak_live.clone());
        std::thread::spawn(move || {
            let mut kept = None;
            for i in 0..TASKS {
                let task = NativeTask::new("n", move || {
                    if i % 1000 == 999 {
                        Err(TaskFailure::new(FailureKind::Permanent, "every thousandth"))
                    } else {
                        Ok(i)
                    }
                });
                let handle = loop {
                    match queue.try_submit_native(task.clone(), TaskOptions::new()) {
                        Err(osiiso_host::queue::Error::QueueFull(_)) => {
                            std::thread::sleep(Duration::from_micros(200))
                        }
                        other => break other.unwrap(),
                    }
                };
                if i == 7 {
                    kept = Some(handle);
                }
                peak_live.fetch_max(queue.stats().live_tasks, Ordering::SeqCst);
            }
            queue.shutdown();
            kept.unwrap()
        })
    };
    let summary = queue.run().unwrap();
    let kept = feeder.join().unwrap();
    assert_eq!(summary.total_submitted, TASKS, "{kind}");
    assert_eq!(summary.failed, TASKS / 1000, "{kind}");
    assert_eq!(summary.succeeded, TASKS - TASKS / 1000, "{kind}");
    assert!(summary.results.len() <= KEPT_FAILURES);
    let stats = queue.stats();
    assert_eq!(stats.completed, TASKS, "{kind}");
    assert!(queue.results().is_empty(), "{kind}");
    assert!(stats.held_results <= KEPT_FAILURES, "{kind}");
    // Bounded by the queue's size, the workers (each lets go of its last task as it takes
    // the next) and the two handles the feeder holds — not by the 20,000 tasks.
    let peak = peak_live.load(Ordering::SeqCst);
    assert!(
        peak <= SIZE + WORKERS + 2,
        "{kind}: {peak} tasks in memory at once"
    );
    // Only the task whose handle is held is left, and it keeps its result.
    assert_eq!(stats.live_tasks, 1, "{kind}");
    assert_eq!(kept.status(), TaskStatus::Succeeded);
    assert_eq!(kept.value().unwrap(), json!(7));
    drop(kept);
    assert_eq!(queue.stats().live_tasks, 0, "{kind}");
}

#[test]
fn an_endless_thread_queue_stays_flat() {
    let queue = ThreadQueue::builder()
        .mode(Mode::Infinite)
        .size(64)
        .workers(Workers::Fixed(4))
        .retention(Retention::Counts)
        .build()
        .unwrap();
    endless_run_stays_flat(queue, "thread");
}

#[test]
fn an_endless_async_queue_stays_flat() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queue = AsyncQueue::builder()
        .runtime(runtime.handle().clone())
        .mode(Mode::Infinite)
        .size(64)
        .workers(Workers::Fixed(4))
        .retention(Retention::Counts)
        .build()
        .unwrap();
    endless_run_stays_flat(queue, "async");
}

#[test]
fn by_default_a_queue_keeps_every_result_and_says_so() {
    let queue = ThreadQueue::builder().build().unwrap();
    for i in 0..50 {
        drop(
            queue
                .submit_native(
                    NativeTask::new("n", move || Ok::<_, TaskFailure>(i)),
                    TaskOptions::new(),
                )
                .unwrap(),
        );
    }
    let summary = queue.run().unwrap();
    assert_eq!(summary.results.len(), 50);
    let stats = queue.stats();
    assert_eq!((stats.completed, stats.held_results), (50, 50));
    // The queue keeps results, not tasks: a finished task nobody holds is gone.
    assert_eq!(stats.live_tasks, 0);
    queue.clear_results();
    assert_eq!(queue.stats().held_results, 0);
}
