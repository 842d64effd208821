//! Warm instances (`--reuse`): state kept within a plugin, and never across tasks by default.

use osiiso_test_artifacts as artifacts;
use serde_json::Value;

use super::QUEUES;
use crate::support::cli::{osiiso, path_str, write_lines};

/// The rows of the secret keeper's `jobs` (JSON lines) run on one worker of `queue` with
/// `extra` flags.
fn secret_keeper_rows(queue: &str, jobs: &[String], extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = write_lines(dir.path(), "jobs.jsonl", jobs);
    let mut args = vec![
        "run",
        artifacts::HOSTILE_SECRET_KEEPER,
        "--jobs",
        path_str(&file),
        "--queue",
        queue,
        "--workers",
        "1",
        "--output",
        "jsonl",
        "-q",
    ];
    args.extend(extra);
    osiiso(&args).jsonl()
}

/// The values of the tasks `jobs` (by name) run on one worker with `extra` flags, in the
/// order of `jobs` (rows come in the order results are recorded: a process worker holding
/// several attempts answers them together, and they may be recorded in another order).
fn counts(queue: &str, jobs: &[&str], extra: &[&str]) -> Vec<Value> {
    let lines: Vec<String> = jobs
        .iter()
        .map(|task| format!(r#"{{"task": "{task}"}}"#))
        .collect();
    let mut rows = secret_keeper_rows(queue, &lines, extra);
    rows.sort_by_key(|r| r["index"].as_u64());
    rows.iter().map(|r| r["value"].clone()).collect()
}

#[test]
fn reuse_keeps_state_within_a_plugin_and_a_trap_starts_clean() {
    for queue in QUEUES {
        // The default never shares state between tasks.
        assert_eq!(
            counts(queue, &["count", "count", "count"], &[]),
            [1, 1, 1].map(Value::from),
            "{queue}"
        );
        // Warm: a counter in a global grows across the tasks of one worker...
        assert_eq!(
            counts(queue, &["count", "count", "count"], &["--reuse", "10"]),
            [1, 2, 3].map(Value::from),
            "{queue}"
        );
        // ...a trapping task's successor starts from a clean instance...
        assert_eq!(
            counts(
                queue,
                &["count", "count", "count_and_crash", "count"],
                &["--reuse", "10"]
            ),
            [Value::from(1), Value::from(2), Value::Null, Value::from(1)],
            "{queue}"
        );
        // ...and an instance serves at most N attempts.
        assert_eq!(
            counts(
                queue,
                &["count", "count", "count", "count"],
                &["--reuse", "2"]
            ),
            [1, 2, 1, 2].map(Value::from),
            "{queue}"
        );
    }
}

#[test]
fn a_secret_left_by_one_task_is_not_seen_by_the_next_by_default() {
    let jobs = [
        r#"{"task": "remember", "input": "s3cret"}"#.to_string(),
        r#"{"task": "recall"}"#.to_string(),
    ];
    for queue in QUEUES {
        for (extra, seen) in [
            (&[][..], Value::Null),
            (&["--reuse", "5"][..], Value::from("s3cret")),
        ] {
            let rows = secret_keeper_rows(queue, &jobs, extra);
            let recall = rows.iter().find(|r| r["name"] == "recall").unwrap();
            assert_eq!(recall["value"], seen, "{queue} {extra:?}");
        }
    }
}
