//! Order and pace: priorities with FIFO ties (docs/queues.md §4.1), scheduling (§4.2),
//! the rate limit (§4.3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use osiiso_host::queue::{TaskOptions, Workers};
use parking_lot::Mutex;
use serde_json::json;

use super::{TestKind, noop, one_worker};

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
