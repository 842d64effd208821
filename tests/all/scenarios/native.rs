//! Native closures (Thread and Async only): panics, hooks, abandoned timeouts, backoff; a
//! ThreadQueue initializer that fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use osiiso_host::queue::backend::AcceptsNative;
use osiiso_host::queue::{NativeTask, TaskOptions, TaskStatus, Workers};
use osiiso_host::{FailureKind, TaskFailure};
use parking_lot::Mutex;
use serde_json::json;

use super::{TestKind, noop, one_worker};

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
