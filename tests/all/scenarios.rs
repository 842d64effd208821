//! The scenario matrix: every rule of docs/queues.md as a generic scenario, instantiated for
//! each backend by `scenarios!`. A new backend adds one line at the bottom.
//!
//! WASM tasks are used wherever possible; native closures only where a scenario needs a
//! precise hook (`native_scenarios!`, for backends that accept closures).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use osiiso_host::TaskCall;
use osiiso_host::queue::backend::{AcceptsNative, Backend};
use osiiso_host::queue::{
    Closed, Error, FailPolicy, Mode, NativeTask, OnExit, Queue, QueueBuilder, RunOptions,
    TaskOptions, TaskStatus, Workers, as_completed,
};
use osiiso_host::{FailureKind, Task, TaskFailure};
use osiiso_test_artifacts as artifacts;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::support::load;

fn flaky_task(name: &str) -> Task {
    load(artifacts::SCENARIO_FLAKY).task(name).unwrap()
}

/// A guest that runs until the host stops it.
fn grind() -> Task {
    load(artifacts::HOSTILE_IGNORES_CANCEL)
        .task("grind")
        .unwrap()
}

fn noop(value: Value) -> TaskCall {
    flaky_task("noop").with_input(value)
}

fn flaky(succeed_on: u32) -> TaskCall {
    flaky_task("flaky").with_input(json!({"succeed_on": succeed_on, "value": "ok"}))
}

/// How the scenarios build a queue of each backend.
pub trait TestKind: Backend + Sized {
    fn builder() -> QueueBuilder<Self>;
}

impl TestKind for osiiso_host::backend::Thread {
    fn builder() -> QueueBuilder<Self> {
        Queue::builder()
    }
}

impl TestKind for osiiso_host::backend::Process {
    fn builder() -> QueueBuilder<Self> {
        Queue::builder()
    }
}

/// NATS queues reach the shared fleet (a server and two nodes), if there is one.
#[cfg(feature = "nats")]
impl TestKind for osiiso_host::backend::Nats {
    fn builder() -> QueueBuilder<Self> {
        let fleet = crate::nats_fixture::shared_fleet().expect("the scenario checks the fleet");
        Queue::builder().nats(fleet.url())
    }
}

/// Async queues bind this runtime; the scenario code itself stays plain and blocking.
impl TestKind for osiiso_host::backend::Async {
    fn builder() -> QueueBuilder<Self> {
        static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        });
        Queue::builder().runtime(runtime.handle().clone())
    }
}

fn one_worker<K: TestKind>() -> QueueBuilder<K> {
    K::builder().workers(Workers::Fixed(1))
}

/// Waits (bounded) until `f` holds; a scenario helper, never a timing assertion.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ----- ordering (§4.1) -----

pub fn priority_order_fifo_ties<K: TestKind>() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let queue = one_worker::<K>()
        .on_start(move |h| seen.lock().push(h.name().to_string()))
        .build()
        .unwrap();
    for (name, priority) in [("a", 5), ("b", 1), ("c", 3), ("d", 1), ("e", 3), ("f", 0)] {
        queue
            .submit(
                noop(json!(name)),
                TaskOptions::new().priority(priority).name(name),
            )
            .unwrap();
    }
    let summary = queue.run().unwrap();
    assert!(summary.ok());
    assert_eq!(*order.lock(), ["f", "b", "d", "c", "e", "a"]);
}

// ----- retries (§5.2, §5.4) -----

pub fn retry_sequence_and_hook_order<K: TestKind>() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let (a, b, c) = (events.clone(), events.clone(), events.clone());
    let queue = one_worker::<K>()
        .on_start(move |h| a.lock().push(format!("start {}", h.attempts())))
        .on_retry(move |h, f| {
            b.lock().push(format!(
                "retry {} {:?} {}",
                h.attempts(),
                h.status(),
                f.message
            ))
        })
        .on_complete(move |r| {
            c.lock()
                .push(format!("complete {} {}", r.status, r.attempts))
        })
        .build()
        .unwrap();
    let handle = queue
        .submit(flaky(3), TaskOptions::new().retries(5))
        .unwrap();
    queue.run().unwrap();
    assert_eq!(
        *events.lock(),
        [
            "start 1",
            "retry 1 Retrying attempt 1 failed",
            "start 2",
            "retry 2 Retrying attempt 2 failed",
            "start 3",
            "complete succeeded 3"
        ]
    );
    assert_eq!(handle.value().unwrap(), json!("ok"));
}

pub fn retries_exhausted_and_permanent_never_retried<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    let exhausted = queue
        .submit(flaky(3), TaskOptions::new().retries(1))
        .unwrap();
    let permanent = queue
        .submit(
            flaky_task("permanent").with_input(Value::Null),
            TaskOptions::new().retries(5),
        )
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(summary.failed, 2);
    let r = exhausted.result().unwrap();
    assert_eq!((r.status, r.attempts), (TaskStatus::Failed, 2));
    assert_eq!(r.message, "attempt 2 failed");
    let r = permanent.result().unwrap();
    assert_eq!(r.attempts, 1);
    assert_eq!(r.error.as_ref().unwrap().kind, FailureKind::Permanent);
}

/// A task's suggested retries and timeout apply to the options nobody chose, on every queue;
/// chosen ones (`retries(0)` included) win.
pub fn suggested_options_apply_unless_chosen<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    let suggests = flaky_task("suggests");
    let input = json!({"succeed_on": 3, "value": "third"});
    let default = queue
        .submit(suggests.with_input(input.clone()), TaskOptions::new())
        .unwrap();
    let chosen = queue
        .submit(
            suggests.with_input(input.clone()),
            TaskOptions::new()
                .retries(0)
                .timeout(Duration::from_secs(20)),
        )
        .unwrap();
    let jobs_line = TaskOptions::new()
        .with_json_overrides(json!({"retries": 1, "timeout": null}).as_object().unwrap())
        .unwrap();
    let overridden = queue.submit(suggests.with_input(input), jobs_line).unwrap();
    queue.run().unwrap();
    assert_eq!(default.options().retries, 2);
    assert_eq!(default.options().timeout, Some(Duration::from_secs(30)));
    let r = default.result().unwrap();
    assert_eq!((r.status, r.attempts), (TaskStatus::Succeeded, 3));
    assert_eq!(chosen.options().timeout, Some(Duration::from_secs(20)));
    let r = chosen.result().unwrap();
    assert_eq!((r.status, r.attempts), (TaskStatus::Failed, 1));
    assert_eq!(overridden.options().timeout, None);
    let r = overridden.result().unwrap();
    assert_eq!((r.status, r.attempts), (TaskStatus::Failed, 2));
}

pub fn timeouts_are_retried_and_really_stop<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    let options = TaskOptions::new()
        .timeout(Duration::from_millis(50))
        .retries(2);
    let handle = queue
        .submit(grind().with_input(Value::Null), options)
        .unwrap();
    queue.run().unwrap();
    let r = handle.result().unwrap();
    assert_eq!((r.status, r.attempts), (TaskStatus::Failed, 3));
    assert_eq!(r.error.as_ref().unwrap().kind, FailureKind::Timeout);
    assert_eq!(r.message, "task 'grind' exceeded 0.05s timeout");
}

/// A guest blocked in a host call (a WASI sleep) still stops at its deadline and on cancel
/// (§10.1): the hour-long sleeps below end long before the bounded waits give up.
pub fn sleeping_guests_stop_at_the_deadline_and_on_cancel<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    queue.start().unwrap();
    let sleep = flaky_task("sleep");
    let hour = json!(3_600_000);
    let timed = queue
        .submit(
            sleep.with_input(hour.clone()),
            TaskOptions::new().timeout(Duration::from_millis(100)),
        )
        .unwrap();
    let r = timed.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        r.error.as_ref().unwrap().kind,
        FailureKind::Timeout,
        "{r:?}"
    );
    assert_eq!(r.message, "task 'sleep' exceeded 0.1s timeout");

    let cancelled = queue
        .submit(sleep.with_input(hour), TaskOptions::new())
        .unwrap();
    eventually("the sleeper to start", || {
        cancelled.status() == TaskStatus::Running
    });
    assert!(cancelled.cancel());
    let r = cancelled.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(r.status, TaskStatus::Cancelled, "{r:?}");

    // The worker is free again.
    let after = queue.submit(noop(json!(7)), TaskOptions::new()).unwrap();
    assert!(after.wait_timeout(Duration::from_secs(20)).unwrap().ok());
    queue.shutdown();
}

// ----- fail-first and must-complete (§7.4, §7.5) -----

pub fn fail_first_spares_must_complete<K: TestKind>() {
    let queue = one_worker::<K>()
        .fail_policy(FailPolicy::FailFirst)
        .build()
        .unwrap();
    let fails = queue
        .submit(flaky(99), TaskOptions::new().name("fails"))
        .unwrap();
    let protected = queue
        .submit(
            noop(json!(1)),
            TaskOptions::new().must_complete(true).name("protected"),
        )
        .unwrap();
    let expendable = queue
        .submit(noop(json!(2)), TaskOptions::new().name("expendable"))
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(fails.result().unwrap().status, TaskStatus::Failed);
    assert_eq!(protected.result().unwrap().status, TaskStatus::Succeeded);
    let r = expendable.result().unwrap();
    assert_eq!(r.status, TaskStatus::Cancelled);
    assert_eq!(r.message, "cancelled before execution");
    assert_eq!(
        (summary.failed, summary.succeeded, summary.cancelled),
        (1, 1, 1)
    );
    // The halt ends with the run: the queue accepts and runs again.
    let again = queue.submit(noop(json!(3)), TaskOptions::new()).unwrap();
    queue.run().unwrap();
    assert!(again.result().unwrap().ok());
}

// ----- run timeout (§7.3) -----

pub fn run_timeout_complete_priority<K: TestKind>() {
    let queue = one_worker::<K>()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let running = queue
        .submit(grind().with_input(Value::Null), TaskOptions::new())
        .unwrap();
    let queued = queue.submit(noop(json!(1)), TaskOptions::new()).unwrap();
    let protected = queue
        .submit(noop(json!(2)), TaskOptions::new().must_complete(true))
        .unwrap();
    let summary = queue.run().unwrap();
    assert!(summary.timed_out);
    assert!(!summary.ok());
    assert!(summary.to_string().contains("Run Summary: TIMED OUT"));
    assert_eq!(running.result().unwrap().message, "cancelled");
    assert_eq!(
        queued.result().unwrap().message,
        "cancelled before execution"
    );
    assert!(protected.result().unwrap().ok(), "must_complete survives");
    assert!(!queue.is_closed(), "a run timeout does not close the queue");
}

pub fn run_timeout_cancel_spares_nothing<K: TestKind>() {
    let queue = one_worker::<K>()
        .timeout(Duration::from_millis(200))
        .on_exit(OnExit::Cancel)
        .build()
        .unwrap();
    let _running = queue
        .submit(grind().with_input(Value::Null), TaskOptions::new())
        .unwrap();
    let protected = queue
        .submit(noop(json!(2)), TaskOptions::new().must_complete(true))
        .unwrap();
    let summary = queue.run().unwrap();
    assert!(summary.timed_out);
    assert_eq!(summary.cancelled, 2);
    assert_eq!(protected.result().unwrap().status, TaskStatus::Cancelled);
}

// ----- bounded size (§3.4) -----

pub fn bounded_size_blocks_and_closes<K: TestKind>() {
    let queue = Arc::new(one_worker::<K>().size(1).build().unwrap());
    let first = queue
        .submit(grind().with_input(Value::Null), TaskOptions::new())
        .unwrap();
    match queue.try_submit(noop(json!(1)), TaskOptions::new()) {
        Err(Error::QueueFull(1)) => {}
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(
        Error::QueueFull(1).to_string(),
        "queue is full (1 tasks outstanding)"
    );
    let blocked = {
        let queue = queue.clone();
        std::thread::spawn(move || queue.submit(noop(json!(2)), TaskOptions::new()).map(|_| ()))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!blocked.is_finished(), "a bounded submit waits for room");
    queue.cancel();
    match blocked.join().unwrap() {
        Err(Error::Closed(Closed::NotAccepting)) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(
        Error::Closed(Closed::NotAccepting).to_string(),
        "queue is not accepting tasks"
    );
    queue.wait_closed();
    assert!(first.is_done());
}

// ----- rate limit (§4.3) -----

pub fn rate_limit_spaces_attempts<K: TestKind>() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let seen = starts.clone();
    let queue = K::builder()
        .workers(Workers::Fixed(2))
        .rate(20.0)
        .burst(2)
        .on_start(move |_| seen.lock().push(Instant::now()))
        .build()
        .unwrap();
    for i in 0..5 {
        queue.submit(noop(json!(i)), TaskOptions::new()).unwrap();
    }
    queue.run().unwrap();
    let starts = starts.lock();
    let first = starts[0];
    // Two pass at once (burst), then one per 50 ms: the fifth waits at least 150 ms.
    let last = *starts.iter().max().unwrap();
    assert!(
        last - first >= Duration::from_millis(140),
        "{:?}",
        last - first
    );
}

// ----- scheduling (§4.2) -----

pub fn delayed_tasks_hold_no_worker<K: TestKind>() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    let queue = one_worker::<K>()
        .on_complete(move |r| seen.lock().push(r.name.clone()))
        .build()
        .unwrap();
    let later = queue
        .submit(
            noop(json!(1)),
            TaskOptions::new()
                .delay(Duration::from_millis(150))
                .name("later"),
        )
        .unwrap();
    assert_eq!(queue.stats().scheduled, 1);
    assert!(later.scheduled_for().is_some());
    queue
        .submit(noop(json!(2)), TaskOptions::new().name("now"))
        .unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(
        summary.succeeded, 2,
        "a finite run waits for scheduled tasks"
    );
    assert_eq!(*order.lock(), ["now", "later"]);
    assert!(later.result().unwrap().started_at.unwrap() >= later.scheduled_for().unwrap());
}

// ----- cancel by location (§8.2) -----

pub fn cancel_in_every_location<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    queue.start().unwrap();
    let running = queue
        .submit(grind().with_input(Value::Null), TaskOptions::new())
        .unwrap();
    let queued = queue.submit(noop(json!(1)), TaskOptions::new()).unwrap();
    let scheduled = queue
        .submit(
            noop(json!(2)),
            TaskOptions::new().delay(Duration::from_secs(60)),
        )
        .unwrap();
    eventually("the grind to start", || {
        running.status() == TaskStatus::Running
    });

    assert!(queued.cancel());
    assert!(queued.is_done(), "a queued task is recorded synchronously");
    assert_eq!(
        queued.result().unwrap().message,
        "cancelled before execution"
    );
    assert_eq!(queued.attempts(), 0);

    assert!(scheduled.cancel());
    assert!(scheduled.is_done());
    assert_eq!(queue.stats().scheduled, 0);

    assert!(running.cancel());
    let r = running.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        (r.status, r.message.as_str()),
        (TaskStatus::Cancelled, "cancelled")
    );
    assert!(!running.cancel(), "already finished");

    // A cancel during a retry delay keeps the attempt count.
    let retrying = queue
        .submit(
            flaky(99),
            TaskOptions::new()
                .retries(3)
                .retry_delay(Duration::from_secs(60)),
        )
        .unwrap();
    eventually("the first attempt to fail", || {
        retrying.status() == TaskStatus::Retrying
    });
    assert!(retrying.cancel());
    let r = retrying.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!((r.status, r.attempts), (TaskStatus::Cancelled, 1));
    let summary = queue.run().unwrap();
    assert_eq!(summary.cancelled, 4);
}

// ----- summary window (§3.2) -----

pub fn summary_window_is_a_cursor<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    queue.submit(noop(json!(1)), TaskOptions::new()).unwrap();
    queue.join().unwrap();
    // Finished during join(): still in the next run's summary.
    queue.submit(noop(json!(2)), TaskOptions::new()).unwrap();
    let first = queue.run().unwrap();
    assert_eq!(first.total_submitted, 2);
    queue.submit(noop(json!(3)), TaskOptions::new()).unwrap();
    let second = queue.run().unwrap();
    assert_eq!(second.total_submitted, 1);
    assert!(second.ok(), "{:?}", second.results[0].error);
    assert_eq!(second.values(), [json!(3)]);
    assert_eq!(queue.results().len(), 3);
    queue.clear_results();
    assert!(queue.results().is_empty());
}

pub fn detached_tasks_are_left_out_of_summaries<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    let detached = queue
        .submit(noop(json!(1)), TaskOptions::new().detached(true))
        .unwrap();
    queue.submit(noop(json!(2)), TaskOptions::new()).unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(summary.total_submitted, 1);
    assert!(
        detached.result().unwrap().ok(),
        "run() waits for detached tasks"
    );
    assert_eq!(queue.results().len(), 2);
}

// ----- groups, map, completion order (§8.3, §8.4) -----

pub fn map_groups_and_completion_order<K: TestKind>() {
    let queue = K::builder().workers(Workers::Fixed(2)).build().unwrap();
    let task = flaky_task("noop");
    let group = queue
        .map(
            &task,
            (0..20).map(|i| json!([i, "stays one input"])),
            TaskOptions::new(),
        )
        .unwrap();
    assert_eq!(group.len(), 20);
    assert!(group.group_id().starts_with("group-"));
    assert!(group.iter().all(|h| h.group_id() == Some(group.group_id())));
    let empty = queue
        .map(&task, Vec::<Value>::new(), TaskOptions::new())
        .unwrap();
    assert!(empty.is_empty());
    queue.start().unwrap();
    let completed: Vec<_> = as_completed(group.handles(), Some(Duration::from_secs(30)))
        .map(|h| h.unwrap())
        .collect();
    assert_eq!(completed.len(), 20);
    let values = group.values().unwrap();
    assert_eq!(values[7], json!([7, "stays one input"]));
    let summary = group.wait();
    assert_eq!(summary.succeeded, 20);
    queue.run().unwrap();

    let failing = queue
        .group(
            vec![noop(json!(1)), flaky(99)],
            TaskOptions::new().group_id("mine"),
        )
        .unwrap();
    assert_eq!(failing.group_id(), "mine");
    queue.run().unwrap();
    match failing.values() {
        Err(Error::Execution(e)) => assert_eq!(e.to_string(), "1 task(s) failed"),
        other => panic!("expected an execution error, got {other:?}"),
    }
}

// ----- lifecycle (§3) -----

pub fn lifecycle_shutdown_reset_strict<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    let failing = queue.submit(flaky(99), TaskOptions::new()).unwrap();
    match queue.run_with(RunOptions::default().strict(true)) {
        Err(Error::Execution(e)) => assert_eq!(e.results[0].task_id, failing.task_id()),
        other => panic!("expected a strict failure, got {other:?}"),
    }
    assert!(queue.reset().is_ok(), "reset works after a finite run");
    assert!(queue.results().is_empty());
    let queued = queue.submit(noop(json!(1)), TaskOptions::new()).unwrap();
    queue.shutdown(); // an unstarted queue with work starts, drains, closes
    assert!(queued.result().unwrap().ok());
    assert!(queue.is_closed());
    assert!(matches!(
        queue.submit(noop(json!(2)), TaskOptions::new()),
        Err(Error::Closed(Closed::NotAccepting))
    ));
    assert!(matches!(
        queue.start(),
        Err(Error::Closed(Closed::ShutDown))
    ));
    assert_eq!(
        Error::Closed(Closed::ShutDown).to_string(),
        "queue has been shut down"
    );
    queue.shutdown(); // idempotent
}

pub fn drop_with_outstanding_cancels_everything<K: TestKind>() {
    let (running, queued) = {
        let queue = one_worker::<K>().build().unwrap();
        queue.start().unwrap();
        let running = queue
            .submit(grind().with_input(Value::Null), TaskOptions::new())
            .unwrap();
        let queued = queue.submit(noop(json!(1)), TaskOptions::new()).unwrap();
        eventually("the grind to start", || {
            running.status() == TaskStatus::Running
        });
        (running, queued)
    };
    assert_eq!(running.wait().status, TaskStatus::Cancelled);
    assert_eq!(queued.wait().message, "cancelled before execution");
}

pub fn every_task_gets_exactly_one_result<K: TestKind>() {
    let completions = Arc::new(AtomicUsize::new(0));
    let counter = completions.clone();
    let queue = K::builder()
        .workers(Workers::Fixed(2))
        .on_complete(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..200u32 {
        let work = match i % 4 {
            0 => noop(json!(i)),
            1 => flaky(2),
            2 => flaky_task("permanent").with_input(Value::Null),
            _ => flaky(99),
        };
        handles.push(queue.submit(work, TaskOptions::new().retries(1)).unwrap());
    }
    let summary = queue.run().unwrap();
    assert_eq!(summary.total_submitted, 200);
    assert_eq!(completions.load(Ordering::Relaxed), 200);
    assert_eq!((summary.succeeded, summary.failed), (100, 100));
    let mut ids: Vec<_> = summary.results.iter().map(|r| r.task_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert!(handles.iter().all(|h| h.is_done()));
}

pub fn auto_workers_scale_with_work<K: TestKind>() {
    let queue = K::builder().build().unwrap();
    assert_eq!(
        queue.run().unwrap().total_submitted,
        0,
        "an empty auto queue returns at once"
    );
    queue.start().unwrap();
    // Two, so that the process backend's limit (the CPU count) allows it on small machines.
    let handles: Vec<_> = (0..2)
        .map(|_| {
            queue
                .submit(grind().with_input(Value::Null), TaskOptions::new())
                .unwrap()
        })
        .collect();
    eventually("two workers", || {
        queue.stats().workers >= 2 && queue.active_count() == 2
    });
    for h in &handles {
        h.cancel();
    }
    queue.run().unwrap();
    assert_eq!(
        queue.stats().workers,
        0,
        "workers stop at the end of a finite run"
    );
}

// ----- validation (§2) -----

pub fn validation_messages<K: TestKind>() {
    let queue = one_worker::<K>().build().unwrap();
    let err = |opts: TaskOptions| {
        queue
            .submit(noop(Value::Null), opts)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(TaskOptions::new().timeout(Duration::ZERO)),
        "timeout must be > 0"
    );
    assert_eq!(err(TaskOptions::new().backoff(0.0)), "backoff must be > 0");
    assert_eq!(
        err(TaskOptions::new().backoff(f64::NAN)),
        "backoff must be > 0"
    );
    assert_eq!(
        err(TaskOptions::new().backoff(f64::INFINITY)),
        "backoff must be finite"
    );
    assert_eq!(
        err(TaskOptions::new()
            .delay(Duration::ZERO)
            .run_at(std::time::SystemTime::now())),
        "delay and run_at are mutually exclusive"
    );
    let build_err = |b: QueueBuilder<K>| b.build().unwrap_err().to_string();
    assert_eq!(
        build_err(K::builder().workers(Workers::Fixed(0))),
        "workers must be > 0"
    );
    assert_eq!(
        build_err(K::builder().timeout(Duration::ZERO)),
        "timeout must be > 0"
    );
    assert_eq!(build_err(K::builder().rate(0.0)), "rate must be > 0");
    assert_eq!(
        build_err(K::builder().rate(f64::INFINITY)),
        "rate must be finite"
    );
    assert_eq!(build_err(K::builder().burst(0)), "burst must be >= 1");
    assert_eq!(
        build_err(K::builder().poll(Duration::ZERO)),
        "poll must be > 0"
    );
    assert_eq!(
        build_err(K::builder().retire_idle_after(Duration::ZERO)),
        "retire_idle_after must be > 0"
    );
    assert_eq!(
        "complete".parse::<OnExit>().unwrap_err().to_string(),
        "unknown on_exit value 'complete' (expected complete_priority or cancel)"
    );
    assert_eq!(
        "forever".parse::<Mode>().unwrap_err().to_string(),
        "unknown mode value 'forever' (expected finite or infinite)"
    );
    let json = json!({"zeta": 1, "alpha": 2, "priority": 1});
    assert_eq!(
        TaskOptions::new()
            .with_json_overrides(json.as_object().unwrap())
            .unwrap_err()
            .to_string(),
        "Unknown task option(s): alpha, zeta"
    );
    let json = json!({"retries": -1});
    assert_eq!(
        TaskOptions::new()
            .with_json_overrides(json.as_object().unwrap())
            .unwrap_err()
            .to_string(),
        "retries must be >= 0"
    );
    let json = json!({"retry_delay": "250ms", "timeout": 1.5});
    let parsed = TaskOptions::new()
        .with_json_overrides(json.as_object().unwrap())
        .unwrap();
    assert_eq!(parsed.retry_delay, Duration::from_millis(250));
    assert_eq!(parsed.timeout, Some(Duration::from_millis(1500)));
}

// ----- native closures (Thread and Async only) -----

pub fn closure_panics_fail_the_task_not_the_worker<K: TestKind + AcceptsNative>() {
    let queue = one_worker::<K>().build().unwrap();
    let panics = queue
        .submit_native(
            NativeTask::new("boom", || -> Result<u32, TaskFailure> {
                panic!("closure gave up")
            }),
            TaskOptions::new().retries(1),
        )
        .unwrap();
    let fine = queue
        .submit_native(
            NativeTask::new("fine", || Ok::<_, TaskFailure>(7)),
            TaskOptions::new(),
        )
        .unwrap();
    queue.run().unwrap();
    let r = panics.result().unwrap();
    assert_eq!(r.error.as_ref().unwrap().kind, FailureKind::Panic);
    assert_eq!(r.message, "closure gave up");
    assert_eq!(r.attempts, 2, "panics are retryable");
    assert_eq!(fine.value().unwrap(), json!(7));
}

pub fn hook_panics_are_contained<K: TestKind>() {
    let queue = one_worker::<K>()
        .on_start(|_| panic!("on_start hook broke"))
        .on_complete(|_| panic!("on_complete hook broke"))
        .build()
        .unwrap();
    let handle = queue.submit(noop(json!(1)), TaskOptions::new()).unwrap();
    let summary = queue.run().unwrap();
    assert!(summary.ok());
    assert_eq!(handle.value().unwrap(), json!(1));
}

pub fn native_timeout_abandons_the_closure<K: TestKind + AcceptsNative>() {
    let queue = one_worker::<K>()
        .poll(Duration::from_millis(10))
        .build()
        .unwrap();
    let slow = queue
        .submit_native(
            NativeTask::new("slow", || {
                std::thread::sleep(Duration::from_millis(600));
                Ok::<_, TaskFailure>(1)
            }),
            TaskOptions::new().timeout(Duration::from_millis(50)),
        )
        .unwrap();
    let next = queue
        .submit_native(
            NativeTask::new("next", || Ok::<_, TaskFailure>(2)),
            TaskOptions::new(),
        )
        .unwrap();
    queue.run().unwrap();
    let r = slow.result().unwrap();
    assert_eq!(r.error.as_ref().unwrap().kind, FailureKind::Timeout);
    assert_eq!(r.message, "task 'slow' exceeded 0.05s timeout");
    assert_eq!(
        next.value().unwrap(),
        json!(2),
        "a replacement worker carries on"
    );
}

pub fn backoff_pauses_grow<K: TestKind + AcceptsNative>() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let seen = starts.clone();
    let queue = one_worker::<K>()
        .on_start(move |_| seen.lock().push(Instant::now()))
        .build()
        .unwrap();
    let options = TaskOptions::new()
        .retries(3)
        .retry_delay(Duration::from_millis(20))
        .backoff(2.0);
    queue
        .submit_native(
            NativeTask::new("always", || {
                Err::<(), _>(TaskFailure::new(FailureKind::Failed, "no"))
            }),
            options,
        )
        .unwrap();
    queue.run().unwrap();
    let starts = starts.lock();
    assert_eq!(starts.len(), 4);
    for (k, expected_ms) in [(1, 20), (2, 40), (3, 80)] {
        let gap = starts[k] - starts[k - 1];
        assert!(
            gap >= Duration::from_millis(expected_ms),
            "retry {k}: {gap:?}"
        );
    }
}

/// ThreadQueue only: the initializer is a closure there (a ProcessQueue's is data; see
/// process_faults.rs).
#[test]
fn thread_initializer_failure_cancels_everything() {
    let queue = osiiso_host::ThreadQueue::builder()
        .workers(Workers::Fixed(1))
        .initializer(|| Err("no database".into()))
        .build()
        .unwrap();
    let protected = queue
        .submit(noop(json!(1)), TaskOptions::new().must_complete(true))
        .unwrap();
    let other = queue.submit(noop(json!(2)), TaskOptions::new()).unwrap();
    let summary = queue.run().unwrap();
    assert_eq!(summary.cancelled, 2);
    assert_eq!(
        protected.result().unwrap().message,
        "cancelled before execution"
    );
    assert_eq!(other.result().unwrap().status, TaskStatus::Cancelled);
}

macro_rules! scenarios {
    ($backend:ident: $kind:ty; $($scenario:ident),* $(,)?) => {
        scenarios!($backend: $kind, if true; $($scenario),*);
    };
    ($backend:ident: $kind:ty, if $guard:expr; $($scenario:ident),* $(,)?) => {
        mod $backend {
            /// A backend that needs a service runs only where it is available.
            fn available() -> bool {
                $guard
            }
            $(
                #[test]
                fn $scenario() {
                    if available() {
                        super::$scenario::<$kind>();
                    }
                }
            )*
        }
    };
}

/// Scenarios every backend runs.
macro_rules! wasm_scenarios {
    ($backend:ident: $kind:ty $(, if $guard:expr)?) => {
        scenarios!($backend: $kind $(, if $guard)?;
            priority_order_fifo_ties,
            retry_sequence_and_hook_order,
            retries_exhausted_and_permanent_never_retried,
            suggested_options_apply_unless_chosen,
            timeouts_are_retried_and_really_stop,
            sleeping_guests_stop_at_the_deadline_and_on_cancel,
            fail_first_spares_must_complete,
            run_timeout_complete_priority,
            run_timeout_cancel_spares_nothing,
            rate_limit_spaces_attempts,
            delayed_tasks_hold_no_worker,
            cancel_in_every_location,
            summary_window_is_a_cursor,
            detached_tasks_are_left_out_of_summaries,
            map_groups_and_completion_order,
            lifecycle_shutdown_reset_strict,
            drop_with_outstanding_cancels_everything,
            every_task_gets_exactly_one_result,
            auto_workers_scale_with_work,
            validation_messages,
        );
    };
}

/// Scenarios for backends that accept native closures.
macro_rules! native_scenarios {
    ($backend:ident: $kind:ty) => {
        scenarios!($backend: $kind;
            closure_panics_fail_the_task_not_the_worker,
            hook_panics_are_contained,
            native_timeout_abandons_the_closure,
            backoff_pauses_grow,
        );
    };
}

/// Scenarios for the blocking queues (Thread, Process): bounded submit blocks.
macro_rules! sync_scenarios {
    ($backend:ident: $kind:ty $(, if $guard:expr)?) => {
        scenarios!($backend: $kind $(, if $guard)?;
            bounded_size_blocks_and_closes,
        );
    };
}

wasm_scenarios!(thread: osiiso_host::backend::Thread);
native_scenarios!(thread_native: osiiso_host::backend::Thread);
sync_scenarios!(thread_sync: osiiso_host::backend::Thread);
wasm_scenarios!(process: osiiso_host::backend::Process);
sync_scenarios!(process_sync: osiiso_host::backend::Process);
wasm_scenarios!(asynchronous: osiiso_host::backend::Async);
native_scenarios!(asynchronous_native: osiiso_host::backend::Async);
#[cfg(feature = "nats")]
wasm_scenarios!(nats: osiiso_host::backend::Nats, if crate::nats_fixture::shared_fleet().is_some());
#[cfg(feature = "nats")]
sync_scenarios!(nats_sync: osiiso_host::backend::Nats, if crate::nats_fixture::shared_fleet().is_some());
