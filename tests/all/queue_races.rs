//! Races between cancelling and the workers, found by review: each must end with one result
//! per task and a queue that closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use osiiso_host::TaskFailure;
use osiiso_host::queue::{
    AsyncNativeTask, Closed, Error, Mode, NativeTask, TaskOptions, TaskStatus, Workers,
};
use osiiso_host::{AsyncQueue, ThreadQueue};

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

/// An infinite `run()` that begins while another thread's graceful shutdown is stopping the
/// workers (a stream that ended at once): the run starts no worker the shutdown does not
/// know of, so both return — the run with its summary, or `ShutDown` if the queue closed
/// first — and nothing hangs.
#[test]
fn an_infinite_run_racing_a_graceful_shutdown_never_hangs() {
    for round in 0..200 {
        let queue = Arc::new(
            ThreadQueue::builder()
                .workers(Workers::Fixed(2))
                .mode(Mode::Infinite)
                .build()
                .unwrap(),
        );
        let handle = queue
            .submit_native(
                NativeTask::new("one", || Ok::<_, TaskFailure>(())),
                TaskOptions::new(),
            )
            .unwrap();
        queue.start().unwrap();
        let shutting = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.shutdown())
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let runner = queue.clone();
        std::thread::spawn(move || {
            let _ = tx.send(runner.run());
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(summary)) => assert!(summary.total_submitted <= 1, "round {round}"),
            Ok(Err(error)) => assert!(
                matches!(error, Error::Closed(Closed::ShutDown)),
                "round {round}: {error}"
            ),
            Err(_) => panic!("round {round}: run() racing shutdown() never returned"),
        }
        shutting.join().unwrap();
        assert!(queue.is_closed(), "round {round}");
        assert_eq!(handle.wait().status, TaskStatus::Succeeded, "round {round}");
    }
}

/// The same race on an AsyncQueue: `run_async()` against `shutdown_async()`.
#[test]
fn an_async_infinite_run_racing_a_graceful_shutdown_never_hangs() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for round in 0..200 {
            let queue = Arc::new(
                AsyncQueue::builder()
                    .workers(Workers::Fixed(2))
                    .mode(Mode::Infinite)
                    .build()
                    .unwrap(),
            );
            let handle = queue
                .submit_future(
                    AsyncNativeTask::new("one", || async { Ok::<_, TaskFailure>(()) }),
                    TaskOptions::new(),
                )
                .unwrap();
            queue.start().unwrap();
            let shutting = tokio::spawn({
                let queue = queue.clone();
                async move { queue.shutdown_async().await }
            });
            let running = tokio::spawn({
                let queue = queue.clone();
                async move { queue.run_async().await }
            });
            match tokio::time::timeout(Duration::from_secs(20), running).await {
                Ok(Ok(Ok(summary))) => assert!(summary.total_submitted <= 1, "round {round}"),
                Ok(Ok(Err(error))) => {
                    assert!(
                        matches!(error, Error::Closed(Closed::ShutDown)),
                        "round {round}: {error}"
                    )
                }
                Ok(Err(panic)) => panic!("round {round}: {panic}"),
                Err(_) => panic!("round {round}: run_async() racing shutdown_async() hung"),
            }
            shutting.await.unwrap();
            assert!(queue.is_closed(), "round {round}");
            assert_eq!(handle.await.status, TaskStatus::Succeeded, "round {round}");
        }
    });
}
