//! `--jobs` files (bad lines rejected before anything runs, large files ordered and cut as a
//! whole) and inputs from stdin.

use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::cli::{Outcome, osiiso, path_str, status, write_jsonl, write_lines};

// ---------------------------------------------------------------------------------------------
// bad --jobs lines are rejected before anything runs

fn run_jobs_lines(lines: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let file = write_lines(dir.path(), "jobs.jsonl", &lines);
    osiiso(&[
        "run",
        artifacts::SCENARIO_FLAKY,
        "--jobs",
        path_str(&file),
        "--output",
        "jsonl",
        "-q",
    ])
}

#[test]
fn jobs_with_an_unknown_option_are_rejected_with_the_line_number() {
    let out = run_jobs_lines(&[
        r#"{"task": "noop", "input": 1}"#,
        r#"{"task": "noop", "input": 2, "zeta": 1, "prio": 1}"#,
    ]);
    out.assert_usage_error(&["Unknown task option(s): prio, zeta", "line 2"]);
}

#[test]
fn jobs_with_invalid_json_are_rejected_with_the_line_number() {
    let out = run_jobs_lines(&[
        r#"{"task": "noop", "input": 1}"#,
        r#"{"task": "noop", "input": 2}"#,
        r#"{"task": "noop", "input": "#,
    ]);
    out.assert_usage_error(&["line 3", "JSON"]);
}

#[test]
fn jobs_with_negative_retries_are_rejected() {
    let out = run_jobs_lines(&[r#"{"task": "noop", "input": 1, "retries": -1}"#]);
    out.assert_usage_error(&["retries must be >= 0", "line 1"]);
}

#[test]
fn jobs_naming_an_unknown_task_are_rejected() {
    let out = run_jobs_lines(&[
        r#"{"task": "noop", "input": 1}"#,
        r#"{"task": "nosuch", "input": 2}"#,
    ]);
    out.assert_usage_error(&["nosuch", "noop", "flaky"]);
}

#[test]
fn a_jobs_line_overrides_the_command_line_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_jsonl(
        dir.path(),
        "jobs.jsonl",
        &[
            json!({"task": "flaky", "input": {"succeed_on": 3}, "retries": 2, "name": "enough"}),
            json!({"task": "flaky", "input": {"succeed_on": 3}, "name": "default"}),
            json!({"task": "noop", "input": 1, "name": "tagged", "group_id": "g1",
                   "metadata": {"k": [1, 2]}, "priority": 7, "timeout": "5s"}),
        ],
    );
    let out = osiiso(&[
        "run",
        artifacts::SCENARIO_FLAKY,
        "--jobs",
        path_str(&file),
        "--retries",
        "0",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let results = out.jsonl();
    assert_eq!(results.len(), 3, "{out:#?}");
    let by_name = |name: &str| results.iter().find(|r| r["name"] == name).unwrap();
    let enough = by_name("enough");
    assert_eq!(status(enough), "succeeded", "{enough}");
    assert_eq!(enough["attempts"], 3);
    let default = by_name("default");
    assert_eq!(status(default), "failed", "{default}");
    assert_eq!(default["attempts"], 1);
    let tagged = by_name("tagged");
    assert_eq!(status(tagged), "succeeded", "{tagged}");
    assert_eq!(tagged["group_id"], "g1");
    assert_eq!(tagged["metadata"], json!({"k": [1, 2]}));
    assert_eq!(tagged["priority"], 7);
}

#[test]
fn inputs_can_come_from_stdin() {
    use std::io::Write;
    let mut child = crate::support::cli::command()
        .args([
            "run",
            artifacts::ECHO,
            "echo",
            "--inputs",
            "-",
            "--output",
            "jsonl",
            "-q",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"1\n\n\"two\"\n{\"three\":3}\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let mut values: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].to_string())
        .collect();
    values.sort();
    assert_eq!(values, ["\"two\"", "1", "{\"three\":3}"]);
}

// ---------------------------------------------------------------------------------------------
// large jobs files: the whole work list is built before anything runs, so the queue must
// order and cut it as a whole

#[test]
fn priority_holds_across_a_large_jobs_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<Value> = (0..5000)
        .map(|i| json!({"task": "noop", "input": i, "priority": 5}))
        .collect();
    lines.push(json!({"task": "noop", "input": "urgent", "priority": 0}));
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
    let results = out.jsonl();
    assert_eq!(results.len(), 5001);
    let position = results
        .iter()
        .position(|r| r["value"] == "urgent")
        .expect("the urgent job has a result");
    assert_eq!(
        position, 0,
        "the priority-0 job should run first with one worker, but {position} priority-5 jobs ran before it"
    );
}

#[test]
fn fail_first_with_a_large_jobs_file_cancels_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec![json!({"task": "flaky", "input": {"succeed_on": 99}, "name": "fails"})];
    lines.extend((0..5000).map(|i| json!({"task": "noop", "input": i})));
    let file = write_jsonl(dir.path(), "jobs.jsonl", &lines);
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
    assert!(!out.stderr.contains("not accepting"), "{}", out.stderr);
    out.assert_code(1);
    let results = out.jsonl();
    assert_eq!(results.len(), 5001, "every job has a result");
    let failed = results.iter().filter(|r| status(r) == "failed").count();
    let cancelled = results.iter().filter(|r| status(r) == "cancelled").count();
    assert_eq!(failed, 1);
    assert_eq!(
        cancelled + results.iter().filter(|r| status(r) == "succeeded").count(),
        5000
    );
    assert!(cancelled > 0, "fail-first cancelled nothing");
}

#[test]
fn an_unknown_task_in_jobs_names_the_file_line() {
    let out = run_jobs_lines(&[
        "",
        r#"{"task": "noop", "input": 1}"#,
        r#"{"task": "nosuch", "input": 2}"#,
    ]);
    out.assert_usage_error(&["nosuch", "jobs.jsonl", "line 3"]);
}
