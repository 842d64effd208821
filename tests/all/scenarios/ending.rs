//! How a run ends early: fail-first and must-complete (docs/queues.md §7.4, §7.5), the run
//! timeout (§7.3), cancelling a task wherever it is (§8.2).

use std::time::Duration;

use osiiso_host::queue::{FailPolicy, OnExit, TaskOptions, TaskStatus};
use serde_json::{Value, json};

use super::{TestKind, eventually, flaky, grind, noop, one_worker};

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
