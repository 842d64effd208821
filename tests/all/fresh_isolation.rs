//! A fresh instance (the default) starts clean, whatever the instance before it did, even when
//! the pooling allocator hands it the same memory slot.

use osiiso_host::{
    AttemptControl, AttemptOutcome, AttemptRequest, Host, Json, Limits, Task, WarmPool,
};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::cache_dir;

fn request<'a>(task: &'a Task, input: &'a Value) -> AttemptRequest<'a> {
    AttemptRequest {
        input,
        attempt: 1,
        control: AttemptControl::new(None),
        display_name: task.name(),
        progress: None,
    }
}

/// One pooled slot, so that every instance gets the same one; a secret written straight into
/// linear memory (under the stack, and in grown memory past the bytes kept resident between
/// instances); then a fresh instance reads the same addresses, on the sync and the async path.
/// A warm instance does see the secret, which shows that the test looks in the right place.
#[test]
fn a_fresh_instance_sees_nothing_of_the_last_ones_memory() {
    let host = Host::builder()
        .cache_dir(cache_dir())
        .pooling(true)
        .max_instances(1)
        .build()
        .unwrap();
    assert!(host.uses_pooling());
    let plugin = host.load(artifacts::HOSTILE_SECRET_KEEPER).unwrap();
    let (scribble, peek) = (
        plugin.task("scribble").unwrap(),
        plugin.task("peek").unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run_async = |task: &Task, input: &Value| {
        runtime
            .block_on(task.run_attempt_async(request(task, input)))
            .outcome
    };
    let clean = AttemptOutcome::Succeeded(Json::from(json!(["", ""])));
    let wrote = AttemptOutcome::Succeeded(Json::from(json!(true)));
    for round in 0..3 {
        let secret = json!(format!("s3cret-{round}"));
        let sync = scribble.run_attempt(request(&scribble, &secret)).outcome;
        assert_eq!(sync, wrote);
        let seen = peek.run_attempt(request(&peek, &Value::Null)).outcome;
        assert_eq!(seen, clean, "sync, round {round}");
        assert_eq!(run_async(&scribble, &secret), wrote);
        assert_eq!(
            run_async(&peek, &Value::Null),
            clean,
            "async, round {round}"
        );
    }

    let warm = plugin.with_limits(Limits::new().reuse(10));
    let (scribble, peek) = (warm.task("scribble").unwrap(), warm.task("peek").unwrap());
    let pool = WarmPool::new(1);
    let secret = json!("s3cret");
    assert_eq!(
        pool.run(&scribble, request(&scribble, &secret)).outcome,
        wrote
    );
    let seen = format!("s3cret{}", ".".repeat(26));
    assert_eq!(
        pool.run(&peek, request(&peek, &Value::Null)).outcome,
        AttemptOutcome::Succeeded(Json::from(json!([seen, seen])))
    );
}
