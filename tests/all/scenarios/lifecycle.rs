//! A queue's life (docs/queues.md §3): bounded size (§3.4), shutdown, reset, drop, one result
//! per task, automatic workers; validation messages (§2).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use osiiso_host::queue::{
    Closed, Error, Mode, OnExit, QueueBuilder, RunOptions, TaskOptions, TaskStatus, Workers,
};
use serde_json::{Value, json};

use super::{TestKind, eventually, flaky, flaky_task, grind, noop, one_worker};

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
