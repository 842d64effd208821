//! AsyncQueue specifics: async submission and waiting, many waiting guests at once, and fuel
//! yielding so a spinning guest cannot starve the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use osiiso_host::AsyncQueue;
use osiiso_host::queue::{
    AsyncNativeTask, Closed, Error, StateError, TaskOptions, TaskStatus, Workers,
    as_completed_stream,
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

/// One thread for everything: workers, timers and the test's own awaits.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
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
    assert!(matches!(
        queue.start(),
        Err(Error::State(StateError::NoRuntime))
    ));
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
            .submit_future(
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
        assert_eq!(
            native.clone().await.value,
            Some(json!("from a future").into())
        );
        let summary = queue.run_async().await.unwrap();
        assert_eq!(summary.succeeded, 3);
    });
}

#[test]
fn bounded_submit_is_queue_full_and_submit_async_waits() {
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
            .submit_async(noop.with_input(json!(2)), TaskOptions::new())
            .await
            .unwrap();
        assert_eq!(second.await.value, Some(json!(2).into()));
        queue.run_async().await.unwrap();
    });
}

#[test]
fn a_group_is_awaited_without_blocking_the_runtime() {
    // One runtime thread: a blocking wait here would never let the workers run.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let queue = AsyncQueue::builder()
                .workers(Workers::Fixed(2))
                .build()
                .unwrap();
            let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
            let items = (0..5).map(|i| noop.with_input(json!(i))).collect();
            let group = queue.group(items, TaskOptions::new()).unwrap();
            queue.start().unwrap();
            let summary = group.wait_async().await;
            assert_eq!(summary.succeeded, 5);
            let values: Vec<_> = summary.results.iter().map(|r| r.value.clone()).collect();
            assert_eq!(
                values,
                (0..5).map(|i| Some(json!(i).into())).collect::<Vec<_>>()
            );
            queue.shutdown_async().await;
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
    spinner_beside_sleepers(&crate::support::host());
}

#[test]
fn without_fuel_metering_a_spinning_guest_yields_at_epoch_ticks() {
    // No fuel to yield by: the epoch callback yields at every tick instead.
    let host = crate::support::unmetered_host();
    assert!(!host.meters_fuel());
    spinner_beside_sleepers(&host);
}

/// 100 sleepers finish on a one-thread runtime while a guest that never returns spins beside
/// them (it is cancelled at the end).
fn spinner_beside_sleepers(host: &osiiso_host::Host) {
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(101))
            .build()
            .unwrap();
        let grind = host
            .load(artifacts::HOSTILE_IGNORES_CANCEL)
            .unwrap()
            .task("grind")
            .unwrap();
        let sleep = host
            .load(artifacts::SCENARIO_FLAKY)
            .unwrap()
            .task("sleep")
            .unwrap();
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
            let result = handle.clone().await;
            assert_eq!(result.status, TaskStatus::Succeeded);
            assert_eq!(
                result.fuel_consumed.is_some(),
                host.meters_fuel(),
                "{result:?}"
            );
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

/// A native task that waits until `gate` opens, after saying it started.
fn gated(
    started: &Arc<tokio::sync::Notify>,
    gate: &Arc<tokio::sync::Semaphore>,
) -> AsyncNativeTask {
    let (started, gate) = (started.clone(), gate.clone());
    AsyncNativeTask::new("gated", move || {
        let (started, gate) = (started.clone(), gate.clone());
        async move {
            started.notify_one();
            let _permit = gate
                .acquire()
                .await
                .map_err(|e| TaskFailure::new(FailureKind::Failed, e.to_string()))?;
            Ok::<_, TaskFailure>(Value::Null)
        }
    })
}

#[test]
fn run_async_is_awaited_without_blocking_a_current_thread_runtime() {
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(4))
            .build()
            .unwrap();
        let sleep = load(artifacts::SCENARIO_FLAKY).task("sleep").unwrap();
        let group = queue
            .map(&sleep, (0..20).map(|_| json!(5)), TaskOptions::new())
            .unwrap();
        // The workers and the run share the one runtime thread.
        let summary = queue.run_async().await.unwrap();
        assert_eq!(summary.succeeded, 20);
        assert_eq!(group.values().unwrap().len(), 20);
        queue.join_async().await.unwrap();
        queue.shutdown_async().await;
        assert!(queue.is_closed());
        assert!(matches!(
            queue.run_async().await,
            Err(Error::Closed(Closed::ShutDown))
        ));
    });
}

#[test]
fn dropping_run_async_leaves_the_workers_and_the_cursor() {
    runtime().block_on(async {
        let queue = AsyncQueue::builder()
            .workers(Workers::Fixed(2))
            .build()
            .unwrap();
        let started = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let blocked = queue
            .submit_future(gated(&started, &gate), TaskOptions::new())
            .unwrap();
        let sleep = load(artifacts::SCENARIO_FLAKY).task("sleep").unwrap();
        queue
            .map(&sleep, (0..5).map(|_| json!(1)), TaskOptions::new())
            .unwrap();
        tokio::select! {
            _ = queue.run_async() => panic!("the run cannot finish while a task is blocked"),
            () = started.notified() => {}
        }
        // The run future is gone: its workers are not, and a new run may begin.
        assert_eq!(queue.stats().workers, 2);
        assert_eq!(blocked.status(), TaskStatus::Running);
        gate.add_permits(1);
        let summary = queue.run_async().await.unwrap();
        assert_eq!(
            summary.total_submitted, 6,
            "the next run reports what finished meanwhile: {summary}"
        );
        assert!(blocked.await.ok());
    });
}

#[test]
fn a_runtime_that_shuts_down_cancels_its_work_and_closes_the_queue() {
    let runtime = runtime();
    let queue = AsyncQueue::builder()
        .workers(Workers::Fixed(1))
        .runtime(runtime.handle().clone())
        .build()
        .unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let running = queue
        .submit_future(gated(&started, &gate), TaskOptions::new())
        .unwrap();
    let queued = queue
        .submit_future(gated(&started, &gate), TaskOptions::new())
        .unwrap();
    runtime.block_on(async {
        queue.start().unwrap();
        started.notified().await;
    });
    drop(runtime);
    for handle in [&running, &queued] {
        let result = handle.wait_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(result.status, TaskStatus::Cancelled, "{result:?}");
    }
    queue.wait_closed();
    match queue.submit_future(gated(&started, &gate), TaskOptions::new()) {
        Err(Error::Closed(Closed::RuntimeGone)) => {}
        other => panic!("expected RuntimeGone, got {other:?}"),
    }
    assert_eq!(
        Error::Closed(Closed::RuntimeGone).to_string(),
        "queue runtime has shut down"
    );
}

#[test]
fn another_runtime_may_take_over_only_when_nothing_runs() {
    let (first, second) = (runtime(), runtime());
    let queue = AsyncQueue::builder()
        .workers(Workers::Fixed(1))
        .mode(osiiso_host::queue::Mode::Infinite)
        .build()
        .unwrap();
    first.block_on(async { queue.start() }).unwrap();
    // The infinite queue's worker lives on the first runtime.
    match second.block_on(async { queue.start() }) {
        Err(Error::State(StateError::RuntimeSwitch)) => {}
        other => panic!("expected RuntimeSwitch, got {other:?}"),
    }
    assert_eq!(
        Error::State(StateError::RuntimeSwitch).to_string(),
        "cannot switch runtimes while running"
    );
    first.block_on(queue.shutdown_async());

    // A finite queue stops its workers after each run, so the next run may use another runtime.
    let finite = AsyncQueue::builder()
        .workers(Workers::Fixed(2))
        .build()
        .unwrap();
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    for rt in [&first, &second] {
        let handle = finite
            .submit(noop.with_input(json!(1)), TaskOptions::new())
            .unwrap();
        let summary = rt.block_on(finite.run_async()).unwrap();
        assert_eq!(summary.succeeded, 1);
        assert!(handle.result().unwrap().ok());
    }
}

#[test]
fn workers_the_runtime_never_polled_still_account_for_their_tasks() {
    let runtime = current_thread_runtime();
    let queue = AsyncQueue::builder()
        .workers(Workers::Fixed(2))
        .build()
        .unwrap();
    let noop = load(artifacts::SCENARIO_FLAKY).task("noop").unwrap();
    let handle = queue
        .submit(noop.with_input(json!(1)), TaskOptions::new())
        .unwrap();
    // The workers are spawned here, but this runtime never gets to poll them.
    runtime.block_on(async { queue.start() }).unwrap();
    drop(runtime);
    let result = handle.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(result.status, TaskStatus::Cancelled, "{result:?}");
    queue.wait_closed();
    assert!(matches!(
        queue.submit(noop.with_input(json!(2)), TaskOptions::new()),
        Err(Error::Closed(Closed::RuntimeGone))
    ));
}
