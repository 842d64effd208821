//! Retries (docs/queues.md §5.2, §5.4): the sequence, exhaustion, permanent failures, a
//! plugin's suggested options, timeouts.

use std::sync::Arc;
use std::time::Duration;

use osiiso_host::FailureKind;
use osiiso_host::queue::{TaskOptions, TaskStatus};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{TestKind, eventually, flaky, flaky_task, grind, noop, one_worker};

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
