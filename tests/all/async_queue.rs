//! AsyncQueue specifics: async submission and waiting, many waiting guests at once, and fuel
//! yielding so a spinning guest cannot starve the others.

use std::time::{Duration, Instant};

use futures::StreamExt;
use osiiso_host::queue::{
    AsyncNativeTask, AsyncQueue, Error, TaskOptions, TaskStatus, Workers, as_completed_stream,
};
use osiiso_host::{FailureKind, TaskFailure};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::load;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn queue_and_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AsyncQueue>();
    assert_send_sync::<osiiso_host::queue::Handle>();
}

#[test]
fn starting_outside_a_runtime_needs_one() {
    let queue = AsyncQueue::builder().build().unwrap();
    assert!(matches!(queue.start(), Err(Error::NoRuntime)));
}

#[test]
fn handles_are_futures_and_completion_order_is_a_stream() {
    runtime().block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(8))
            .build()
            .unwrap();
        let sleep = load(artifacts::SCENARIO_FLAKY).task("sleep").unwrap();
        let slow = queue
            .submit(sleep.with_input(json!(300)), TaskOptions::new())
            .unwrap();
        let fast = queue
            .submit(sleep.with_input(json!(10)), TaskOptions::new())
            .unwrap();
        let native = queue
            .submit_async(
                AsyncNativeTask::new("native", || async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, TaskFailure>("from a future")
                }),
                TaskOptions::new(),
            )
            .unwrap();
        queue.start().unwrap();
        let order: Vec<String> = as_completed_stream(&[slow.clone(), fast.clone()])
            .map(|h| h.result().unwrap().value.clone().unwrap().to_string())
            .collect()
            .await;
        assert_eq!(order, ["10", "300"]);
        assert_eq!(native.clone().await.value, Some(json!("from a future")));
        let summary = queue.run_async().await.unwrap();
        assert_eq!(summary.succeeded, 3);
    });
}

#[test]
fn bounded_submit_is_queue_full_and_submit_wait_waits() {
    runtime().block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(1))
            .size(1)
            .build()
            .unwrap();
        let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
        queue
            .submit(noop.with_input(json!(1)), TaskOptions::new())
            .unwrap();
        assert!(matches!(
            queue.submit(noop.with_input(json!(2)), TaskOptions::new()),
            Err(Error::QueueFull(1))
        ));
        queue.start().unwrap();
        let second = queue
            .submit_wait(noop.with_input(json!(2)), TaskOptions::new())
            .await
            .unwrap();
        assert_eq!(second.await.value, Some(json!(2)));
        queue.run_async().await.unwrap();
    });
}

#[test]
fn a_thousand_sleeping_guests_wait_together() {
    runtime().block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(1000))
            .build()
            .unwrap();
        let sleep = load(artifacts::SCENARIO_FLAKY).task("sleep").unwrap();
        let group = queue
            .map(&sleep, (0..1000).map(|_| json!(100)), TaskOptions::new())
            .unwrap();
        let started = Instant::now();
        let summary = queue.run_async().await.unwrap();
        assert_eq!(summary.succeeded, 1000);
        assert_eq!(group.len(), 1000);
        // One after another this would take 100 s; the bound only proves they overlapped.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn a_spinning_guest_does_not_starve_the_others() {
    // One thread for everything: only fuel yields let the sleepers make progress.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(101))
            .build()
            .unwrap();
        let grind = load(artifacts::HOSTILE_IGNORES_CANCEL)
            .task("grind")
            .unwrap();
        let sleep = load(artifacts::SCENARIO_FLAKY).task("sleep").unwrap();
        let spinner = queue
            .submit(
                grind.with_input(Value::Null),
                TaskOptions::new().timeout(Duration::from_secs(20)),
            )
            .unwrap();
        let sleepers = queue
            .map(&sleep, (0..100).map(|_| json!(20)), TaskOptions::new())
            .unwrap();
        queue.start().unwrap();
        for handle in sleepers.iter() {
            assert_eq!(handle.clone().await.status, TaskStatus::Succeeded);
        }
        assert!(
            !spinner.is_done(),
            "the sleepers finished while the spinner still ran"
        );
        assert!(spinner.cancel());
        let r = spinner.clone().await;
        assert_eq!(r.status, TaskStatus::Cancelled);
        queue.run_async().await.unwrap();
    });
}

#[test]
fn blocking_closures_run_on_the_blocking_pool_and_time_out() {
    runtime().block_on(async {
        let queue = AsyncQueue::builder().build().unwrap();
        let handle = queue
            .submit_native(
                osiiso_host::queue::NativeTask::new("stuck", || {
                    std::thread::sleep(Duration::from_millis(400));
                    Ok::<_, TaskFailure>(0)
                }),
                TaskOptions::new().timeout(Duration::from_millis(30)),
            )
            .unwrap();
        queue.run_async().await.unwrap();
        assert_eq!(handle.error().unwrap().kind, FailureKind::Timeout);
    });
}

#[test]
fn pool_exhaustion_is_back_pressure_not_failure() {
    runtime().block_on(async {
        let host = osiiso_host::Host::builder()
            .cache_dir(crate::support::cache_dir())
            .max_instances(4)
            .build()
            .unwrap();
        let sleep = host
            .load(artifacts::SCENARIO_FLAKY)
            .unwrap()
            .task("sleep")
            .unwrap();
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(50))
            .build()
            .unwrap();
        queue
            .map(&sleep, (0..50).map(|_| json!(20)), TaskOptions::new())
            .unwrap();
        let summary = queue.run_async().await.unwrap();
        assert_eq!(
            summary.succeeded,
            50,
            "{:?}",
            summary.errors().first().map(|r| &r.message)
        );
    });
}
