//! The queue through the CLI: every input once, positions, priorities, retries, fail-first,
//! run timeouts.

use std::time::Duration;

use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::cli::{
    Outcome, error_kind, osiiso, path_str, status, write_jsonl, write_lines,
};

#[test]
fn a_thousand_inputs_each_come_back_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<Value> = (0..1000).map(|i| json!({ "i": i })).collect();
    let file = write_jsonl(dir.path(), "inputs.jsonl", &inputs);
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--inputs",
        path_str(&file),
        "--workers",
        "4",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(0);
    let results = out.jsonl();
    assert_eq!(results.len(), 1000);
    let mut seen: Vec<i64> = results
        .iter()
        .map(|r| {
            assert_eq!(status(r), "succeeded", "{r}");
            let i = r["value"]["i"].as_i64().expect("value echoes the input");
            // Each row says which input it answers, whatever order it finished in.
            assert_eq!(r["index"], i, "{r}");
            i
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..1000).collect::<Vec<i64>>());
}

/// `index` is the input's position from 0: `--input`s in order, lines of `--inputs` (blank
/// lines are not inputs), and in an infinite run a skipped bad line keeps its place; `--output
/// json` keeps input order.
#[test]
fn every_row_carries_its_input_position() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "\"a\"",
        "--input",
        "\"b\"",
        "--output",
        "json",
        "-q",
    ]);
    out.assert_code(0);
    let rows: Vec<Value> = serde_json::from_str(&out.stdout).expect("a JSON array");
    let pairs: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (r["index"].clone(), r["value"].clone()))
        .collect();
    assert_eq!(pairs, [(json!(0), json!("a")), (json!(1), json!("b"))]);

    let dir = tempfile::tempdir().unwrap();
    let lines = ["\"zero\"", "", "{not json", "\"three\""].map(String::from);
    let file = write_lines(dir.path(), "mixed.jsonl", &lines);
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--mode",
        "infinite",
        "--inputs",
        path_str(&file),
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let mut pairs: Vec<(i64, Value)> = out
        .jsonl()
        .iter()
        .map(|r| (r["index"].as_i64().expect("an index"), r["value"].clone()))
        .collect();
    pairs.sort_by_key(|(index, _)| *index);
    // The blank line is no input; the bad one is input 1, skipped.
    assert_eq!(pairs, [(0, json!("zero")), (2, json!("three"))]);
}

#[test]
fn jobs_run_in_priority_order_then_file_order() {
    let dir = tempfile::tempdir().unwrap();
    // (input, priority); `None` = the default priority 3.
    let jobs: &[(&str, Option<i32>)] = &[
        ("a", Some(5)),
        ("b", Some(1)),
        ("c", Some(3)),
        ("d", Some(1)),
        ("e", None),
        ("f", Some(-2)),
        ("g", Some(5)),
        ("h", Some(1)),
    ];
    let lines: Vec<Value> = jobs
        .iter()
        .map(|(input, priority)| match priority {
            Some(p) => json!({"task": "noop", "input": input, "priority": p}),
            None => json!({"task": "noop", "input": input}),
        })
        .collect();
    let file = write_jsonl(dir.path(), "jobs.jsonl", &lines);
    let out = osiiso(&[
        "run",
        artifacts::SCENARIO_FLAKY,
        "--jobs",
        path_str(&file),
        "--workers",
        "1",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(0);
    let mut results = out.jsonl();
    assert_eq!(results.len(), jobs.len());
    for r in &results {
        assert_eq!(status(r), "succeeded", "{r}");
    }
    let priority_of = |input: &str| {
        jobs.iter()
            .find(|(i, _)| *i == input)
            .unwrap()
            .1
            .unwrap_or(3)
    };
    for r in &results {
        let input = r["value"].as_str().unwrap();
        assert_eq!(r["priority"], priority_of(input), "{r}");
    }
    results.sort_by(|a, b| {
        a["started_at"]
            .as_str()
            .unwrap()
            .cmp(b["started_at"].as_str().unwrap())
    });
    let order: String = results
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(order, "fbdhceag", "start order by (priority, file order)");
}

fn run_flaky(task: &str, input: &str, retries: &str) -> Outcome {
    osiiso(&[
        "run",
        artifacts::SCENARIO_FLAKY,
        task,
        "--input",
        input,
        "--retries",
        retries,
        "--output",
        "jsonl",
        "-q",
    ])
}

#[test]
fn retries_let_a_flaky_task_succeed() {
    let out = run_flaky("flaky", r#"{"succeed_on":3,"value":"ok"}"#, "3");
    out.assert_code(0);
    let result = out.single();
    assert_eq!(status(&result), "succeeded", "{result}");
    assert_eq!(result["attempts"], 3);
    assert_eq!(result["value"], "ok");
    assert_eq!(result["error"], Value::Null);
}

#[test]
fn too_few_retries_fail_after_one_plus_retries_attempts() {
    let out = run_flaky("flaky", r#"{"succeed_on":3}"#, "1");
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed", "{result}");
    assert_eq!(result["attempts"], 2);
    assert_eq!(error_kind(&result), "failed");
    assert_eq!(result["error"]["message"], "attempt 2 failed");
}

#[test]
fn permanent_failures_are_not_retried() {
    let out = run_flaky("permanent", "null", "5");
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed", "{result}");
    assert_eq!(result["attempts"], 1);
    assert_eq!(error_kind(&result), "permanent");
}

#[test]
fn fail_first_cancels_the_rest_but_spares_must_complete() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_jsonl(
        dir.path(),
        "jobs.jsonl",
        &[
            json!({"task": "flaky", "input": {"succeed_on": 99}, "name": "fails"}),
            json!({"task": "noop", "input": "protected", "must_complete": true, "name": "protected"}),
            json!({"task": "noop", "input": "x1", "name": "x1"}),
            json!({"task": "noop", "input": "x2", "name": "x2"}),
            json!({"task": "noop", "input": "x3", "name": "x3"}),
        ],
    );
    let out = osiiso(&[
        "run",
        artifacts::SCENARIO_FLAKY,
        "--jobs",
        path_str(&file),
        "--workers",
        "1",
        "--fail-first",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let results = out.jsonl();
    assert_eq!(results.len(), 5, "every job has a result: {out:#?}");
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result named {name}: {out:#?}"))
    };
    assert_eq!(status(by_name("fails")), "failed");
    assert_eq!(error_kind(by_name("fails")), "failed");
    let protected = by_name("protected");
    assert_eq!(status(protected), "succeeded", "{protected}");
    assert_eq!(protected["value"], "protected");
    for name in ["x1", "x2", "x3"] {
        assert_eq!(status(by_name(name)), "cancelled", "{}", by_name(name));
    }
}

#[test]
fn run_timeout_cancels_what_is_left_and_says_timed_out() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_INFINITE_LOOP,
        "spin",
        "--input",
        "null",
        "--input",
        "null",
        "--input",
        "null",
        "--workers",
        "1",
        "--run-timeout",
        "300ms",
        "--output",
        "jsonl",
        "--progress",
        "never",
    ]);
    out.assert_code(1);
    assert!(out.stderr.contains("TIMED OUT"), "{out:#?}");
    let results = out.jsonl();
    assert_eq!(results.len(), 3, "{out:#?}");
    for r in &results {
        assert_eq!(status(r), "cancelled", "{r}");
        assert_eq!(r["value"], Value::Null);
    }
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
}

/// A process worker holding several attempts (the CLI's default) still runs its tasks in
/// queue order: a warm counter numbers them by (priority, file order).
#[test]
fn a_batched_process_worker_runs_jobs_in_priority_order_then_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let priorities = [5, 1, 3, 1, 3, -2, 5, 1];
    let lines: Vec<Value> = priorities
        .iter()
        .map(|p| json!({"task": "count", "priority": p}))
        .collect();
    let file = write_jsonl(dir.path(), "jobs.jsonl", &lines);
    for attempts in ["4", "16"] {
        let out = osiiso(&[
            "run",
            artifacts::HOSTILE_SECRET_KEEPER,
            "--jobs",
            path_str(&file),
            "--queue",
            "process",
            "--workers",
            "1",
            "--attempts-per-worker",
            attempts,
            "--reuse",
            "100",
            "--output",
            "jsonl",
            "-q",
        ]);
        out.assert_code(0);
        let mut rows = out.jsonl();
        assert_eq!(rows.len(), priorities.len());
        // The warm instance's count is the order it ran them in.
        rows.sort_by_key(|r| r["value"].as_u64().expect("a count"));
        let order: Vec<u64> = rows.iter().map(|r| r["index"].as_u64().unwrap()).collect();
        assert_eq!(
            order,
            [5, 1, 3, 7, 2, 4, 0, 6],
            "--attempts-per-worker {attempts}"
        );
    }
}

#[test]
fn attempts_per_worker_is_for_the_process_queue_and_bounded() {
    let run = |extra: &[&str]| {
        let mut args = vec!["run", artifacts::ECHO, "echo", "--input", "1", "-q"];
        args.extend(extra);
        osiiso(&args)
    };
    run(&["--queue", "thread", "--attempts-per-worker", "2"])
        .assert_usage_error(&["--attempts-per-worker needs --queue process"]);
    for bad in ["0", "17"] {
        let out = run(&["--queue", "process", "--attempts-per-worker", bad]);
        out.assert_code(2);
        assert!(out.stderr.contains("--attempts-per-worker"), "{out:#?}");
    }
    run(&[
        "--queue",
        "process",
        "--attempts-per-worker",
        "1",
        "--output",
        "jsonl",
    ])
    .assert_code(0);
}

/// The CLI's process workers are the CLI binary itself, whatever the file is called (the
/// library's default looks for a file named `osiiso-host`).
#[test]
fn a_renamed_binary_runs_its_own_process_workers() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let renamed = dir.path().join("renamed-host");
    if std::fs::hard_link(crate::support::cli::BIN, &renamed).is_err() {
        std::fs::copy(crate::support::cli::BIN, &renamed).unwrap();
    }
    let mut command = crate::support::cli::command_of(&renamed, &crate::support::cache_dir());
    command
        .args([
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "7",
            "--queue",
            "process",
        ])
        .args(["--output", "jsonl", "-q"])
        .env_remove("OSIISO_HOST_BIN")
        .env("PATH", "/usr/bin:/bin");
    let out = crate::support::cli::outcome_of(command);
    out.assert_code(0);
    let row = out.single();
    assert_eq!(status(&row), "succeeded", "{row:#}");
    assert_eq!(row["value"], json!(7));
}
