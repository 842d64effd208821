//! Races between cancelling and the workers, found by review: each must end with one result
//! per task and a queue that closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use osiiso_host::TaskFailure;
use osiiso_host::ThreadQueue;
use osiiso_host::queue::{NativeTask, TaskOptions, TaskStatus, Workers};

/// `cancel()` while a native closure is stuck: the closure is abandoned, its replacement
/// worker records the task and stops, and the queue closes.
#[test]
fn cancel_with_an_abandoned_closure_still_closes_the_queue() {
    let queue = ThreadQueue::builder()
        .workers(Workers::Fixed(1))
        .poll(Duration::from_millis(10))
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let seen = started.clone();
    let stuck = queue
        .submit_native(
            NativeTask::new("stuck", move || {
                seen.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(3));
                Ok::<_, TaskFailure>(())
            }),
            TaskOptions::new(),
        )
        .unwrap();
    queue.start().unwrap();
    while started.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    queue.cancel();
    let (tx, rx) = std::sync::mpsc::channel();
    let queue = Arc::new(queue);
    let waiter = queue.clone();
    std::thread::spawn(move || {
        waiter.wait_closed();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the queue closes after cancel(), abandoned closure or not");
    assert_eq!(stuck.wait().status, TaskStatus::Cancelled);
    assert!(queue.is_closed());
}

/// Cancelling queued tasks while workers take them: every task ends with exactly one result,
/// the counts stay consistent (a debug build would panic on an underflow), and the run ends.
#[test]
fn cancelling_queued_tasks_while_workers_take_them() {
    for _ in 0..5 {
        let queue = Arc::new(
            ThreadQueue::builder()
                .workers(Workers::Fixed(2))
                .build()
                .unwrap(),
        );
        let handles: Vec<_> = (0..400)
            .map(|i| {
                queue
                    .submit_native(
                        NativeTask::new(format!("t{i}"), || Ok::<_, TaskFailure>(())),
                        TaskOptions::new(),
                    )
                    .unwrap()
            })
            .collect();
        let cancelling = {
            let handles = handles.clone();
            std::thread::spawn(move || handles.iter().step_by(2).filter(|h| h.cancel()).count())
        };
        let summary = queue.run().unwrap();
        let cancelled = cancelling.join().unwrap();
        assert_eq!(summary.total_submitted, 400);
        assert!(handles.iter().all(|h| h.is_done()));
        assert!(summary.cancelled <= cancelled);
        assert_eq!(queue.stats().pending, 0);
    }
}
