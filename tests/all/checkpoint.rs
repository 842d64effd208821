//! Checkpoints and the one-shot helpers through the library (docs/queues.md §11–§12).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use osiiso_host::queue::{
    Checkpoint, CheckpointError, Checkpointing, Error, TaskOptions, TaskStatus, canonical_json,
};
use osiiso_host::{HelperOptions, Json, ThreadQueue, amap, pmap, tmap};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::load;

fn double() -> osiiso_host::Task {
    load(artifacts::DOUBLE).task("double").unwrap()
}

/// Runs `map_checkpointed` of `double` over `inputs`; returns the group's values, the run's
/// summary count and how many attempts started.
fn run_once(checkpoint: &Checkpoint, inputs: &[Value]) -> (Vec<Value>, usize, usize) {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let queue = ThreadQueue::builder()
        .on_start(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let group = queue
        .map_checkpointed(
            &double(),
            inputs.iter().cloned(),
            TaskOptions::new(),
            &Checkpointing::new(checkpoint),
        )
        .unwrap();
    let summary = queue.run().unwrap();
    (
        group.values().unwrap().iter().map(Json::to_value).collect(),
        summary.total_submitted,
        started.load(Ordering::SeqCst),
    )
}

#[test]
fn a_rerun_restores_successes_and_runs_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.sqlite");
    let checkpoint = Checkpoint::open(&path).unwrap();
    let (values, summarized, attempts) = run_once(&checkpoint, &[json!(1), json!(2)]);
    assert_eq!(values, [json!(2), json!(4)]);
    assert_eq!((summarized, attempts), (2, 2));
    assert_eq!(checkpoint.count(Some("double/double")).unwrap(), 2);
    checkpoint.close();

    // Reopened: the two are restored, one new input runs.
    let checkpoint = Checkpoint::open(&path).unwrap();
    let (values, summarized, attempts) = run_once(&checkpoint, &[json!(1), json!(3), json!(2)]);
    assert_eq!(
        values,
        [json!(2), json!(6), json!(4)],
        "values 1:1 with the input"
    );
    assert_eq!(
        (summarized, attempts),
        (1, 1),
        "restored tasks are not in the summary"
    );
}

#[test]
fn restored_handles_are_final_and_cannot_be_cancelled() {
    let checkpoint = Checkpoint::open(":memory:").unwrap();
    checkpoint
        .record(
            "double/double",
            &canonical_json(&json!(5)),
            &json!(10),
            Some("double"),
        )
        .unwrap();
    let queue = ThreadQueue::builder().build().unwrap();
    let group = queue
        .map_checkpointed(
            &double(),
            [json!(5)],
            TaskOptions::new(),
            &Checkpointing::new(&checkpoint),
        )
        .unwrap();
    let handle = &group.handles()[0];
    let result = handle.result().expect("final at once");
    assert_eq!(result.status, TaskStatus::Succeeded);
    assert_eq!(result.attempts, 0);
    assert_eq!(result.message, "restored from checkpoint");
    assert!(result.started_wall.is_none());
    assert!(!handle.cancel());
    assert!(queue.results().is_empty(), "not in results()");
    assert_eq!(queue.stats().pending, 0, "not outstanding");
}

#[test]
fn failures_are_not_recorded_and_duplicates_all_run() {
    let flaky = load(artifacts::SCENARIO_FLAKY).task("permanent").unwrap();
    let checkpoint = Checkpoint::open(":memory:").unwrap();
    let queue = ThreadQueue::builder().build().unwrap();
    queue
        .map_checkpointed(
            &flaky,
            [json!(null)],
            TaskOptions::new(),
            &Checkpointing::new(&checkpoint),
        )
        .unwrap();
    queue.run().unwrap();
    assert_eq!(
        checkpoint.count(None).unwrap(),
        0,
        "a failure runs again next time"
    );

    let (values, summarized, attempts) = run_once(&checkpoint, &[json!(7), json!(7), json!(7)]);
    assert_eq!(values, [json!(14), json!(14), json!(14)]);
    assert_eq!((summarized, attempts), (3, 3), "every duplicate runs");
    assert_eq!(
        checkpoint.count(None).unwrap(),
        1,
        "the key is recorded once"
    );
}

#[test]
fn a_heterogeneous_group_needs_a_stable_namespace() {
    let checkpoint = Checkpoint::open(":memory:").unwrap();
    let queue = ThreadQueue::builder().build().unwrap();
    let items = vec![double().with_input(json!(1))];
    let error = queue
        .group_checkpointed(
            items.clone(),
            TaskOptions::new(),
            &Checkpointing::new(&checkpoint),
        )
        .unwrap_err();
    assert!(
        matches!(error, Error::Checkpoint(CheckpointError::Namespace)),
        "{error}"
    );
    assert!(error.to_string().contains("needs a stable name"));
    let group = queue
        .group_checkpointed(
            items,
            TaskOptions::new().group_id("nightly"),
            &Checkpointing::new(&checkpoint),
        )
        .unwrap();
    queue.run().unwrap();
    assert_eq!(group.values().unwrap(), [json!(2)]);
    assert_eq!(checkpoint.namespaces().unwrap(), ["nightly"]);
}

#[test]
fn a_checkpoint_closed_too_early_loses_records_without_failing_tasks() {
    let checkpoint = Checkpoint::open(":memory:").unwrap();
    let queue = ThreadQueue::builder().build().unwrap();
    let group = queue
        .map_checkpointed(
            &double(),
            [json!(1)],
            TaskOptions::new(),
            &Checkpointing::new(&checkpoint),
        )
        .unwrap();
    checkpoint.close();
    queue.run().unwrap();
    assert_eq!(group.values().unwrap(), [json!(2)]);
    let error = checkpoint.count(None).unwrap_err().to_string();
    assert_eq!(
        error,
        "checkpoint is closed — close it after the queue has finished, not before"
    );
}

#[test]
fn one_shot_helpers_map_in_input_order() {
    let inputs: Vec<Value> = (1..=6).map(|n| json!(n)).collect();
    let expected: Vec<Value> = (1..=6).map(|n| json!(n * 2)).collect();
    assert_eq!(
        tmap(&double(), inputs.clone(), HelperOptions::new().workers(3)).unwrap(),
        expected
    );
    assert_eq!(
        pmap(&double(), inputs.clone(), HelperOptions::new().workers(2)).unwrap(),
        expected
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        runtime
            .block_on(amap(&double(), inputs.clone(), HelperOptions::new()))
            .unwrap(),
        expected
    );
    assert!(
        tmap(&double(), [], HelperOptions::new())
            .unwrap()
            .is_empty()
    );

    // A failure is an error naming the count; with a checkpoint, successes are kept.
    let checkpoint = Checkpoint::open(":memory:").unwrap();
    let flaky = load(artifacts::SCENARIO_FLAKY).task("flaky").unwrap();
    let error = tmap(
        &flaky,
        [
            json!({"succeed_on": 1, "value": 1}),
            json!({"succeed_on": 9}),
        ],
        HelperOptions::new().checkpoint(&checkpoint),
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "1 task(s) failed");
    assert_eq!(checkpoint.count(None).unwrap(), 1);
}

#[test]
fn a_plugin_whose_sandbox_reaches_the_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::open(dir.path().join("run.sqlite")).unwrap();
    let granted = load(artifacts::DOUBLE)
        .with_sandbox(osiiso_host::Sandbox::new().dir_read_only(dir.path().join("."), "/data"));
    let queue = ThreadQueue::builder().build().unwrap();
    let error = queue
        .map_checkpointed(
            &granted.task("double").unwrap(),
            [json!(1)],
            TaskOptions::new(),
            &Checkpointing::new(&checkpoint),
        )
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Checkpoint(CheckpointError::ReachableByGuest { path, guest, .. })
                if path.ends_with("run.sqlite") && guest == "/data"
        ),
        "{error}"
    );
    assert_eq!(queue.stats().pending, 0, "nothing admitted");
    // The same plugin without the grant runs.
    let (values, _, _) = run_once(&checkpoint, &[json!(1)]);
    assert_eq!(values, [json!(2)]);
}

#[test]
fn a_checkpoint_with_a_trigger_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.sqlite");
    let checkpoint = Checkpoint::open(&path).unwrap();
    checkpoint.close();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER spin AFTER INSERT ON completions BEGIN
                 SELECT count(*) FROM (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL
                                       SELECT n + 1 FROM r) SELECT n FROM r);
             END;",
        )
        .unwrap();
    let error = Checkpoint::open(&path).unwrap_err().to_string();
    assert!(
        error.contains("crafted.sqlite") && error.contains("trigger 'spin'"),
        "{error}"
    );
}
