//! What comes back: the summary window (docs/queues.md §3.2), groups, `map` and completion
//! order (§8.3, §8.4).

use std::time::Duration;

use osiiso_host::queue::{Error, TaskOptions, Workers, as_completed};
use serde_json::{Value, json};

use super::{TestKind, flaky, flaky_task, noop, one_worker};

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
