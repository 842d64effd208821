//! `run`'s output: the result object, the JSON array, the summary on stderr, guest logs.

use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::cli::{RESULT_FIELDS, error_kind, osiiso, status};

/// `YYYY-MM-DDTHH:MM:SS.ffff…Z` with at least sub-millisecond digits.
fn assert_rfc3339(field: &str, value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {value}"));
    let bytes = text.as_bytes();
    assert!(text.len() >= 25, "{field} too short: {text}");
    assert_eq!(bytes[4], b'-', "{field}: {text}");
    assert_eq!(bytes[10], b'T', "{field}: {text}");
    assert_eq!(bytes[19], b'.', "{field}: {text}");
    let (fraction, zone) =
        text[20..].split_at(text[20..].find(|c: char| !c.is_ascii_digit()).unwrap());
    assert!(
        fraction.len() >= 4,
        "{field} lacks sub-millisecond precision: {text}"
    );
    assert!(
        zone == "Z" || zone.starts_with('+') || zone.starts_with('-'),
        "{field}: {text}"
    );
}

#[test]
fn run_add_prints_one_complete_result_object() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "add",
        "--input",
        "[2,40]",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(0);
    let result = out.single();
    let object = result.as_object().expect("a result is an object");
    for field in RESULT_FIELDS {
        assert!(
            object.contains_key(*field),
            "result lacks {field}: {result}"
        );
    }
    assert_eq!(status(&result), "succeeded", "{result}");
    assert_eq!(result["value"], 42);
    assert_eq!(result["error"], Value::Null);
    // `task` is the stable identity `<plugin>/<task>`; `name` defaults to the task's own.
    assert_eq!(result["task"], "echo/add", "{result}");
    assert_eq!(result["name"], "add", "{result}");
    assert_eq!(result["attempts"], 1);
    assert_eq!(result["priority"], 3, "the default priority is 3");
    assert_eq!(result["group_id"], Value::Null);
    assert_eq!(result["metadata"], Value::Null);

    let id = result["id"].as_str().expect("id is a string");
    assert_eq!(id.len(), 32, "id: {id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "id is not lowercase hex: {id}"
    );

    assert_rfc3339("started_at", &result["started_at"]);
    assert_rfc3339("finished_at", &result["finished_at"]);
    assert!(
        result["started_at"].as_str() <= result["finished_at"].as_str(),
        "{result}"
    );
    let duration = result["duration_ms"]
        .as_f64()
        .expect("duration_ms is a number");
    assert!((0.0..10_000.0).contains(&duration), "{result}");
    assert!(
        result["fuel_consumed"].is_null() || result["fuel_consumed"].is_u64(),
        "{result}"
    );
    for stream in ["stdout", "stderr"] {
        assert!(
            result[stream].is_null() || result[stream].is_object(),
            "{stream}: {result}"
        );
    }
    // -q: no summary.
    assert!(!out.stderr.contains("Run Summary"), "{out:#?}");
}

#[test]
fn run_json_output_is_one_array_in_submission_order() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        r#"{"n":1}"#,
        "--input",
        "\"two\"",
        "--input",
        "3",
        "--workers",
        "2",
        "--output",
        "json",
        "-q",
    ]);
    out.assert_code(0);
    let array: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--output json is not JSON ({e}): {out:#?}"));
    let values: Vec<&Value> = array
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| &r["value"])
        .collect();
    assert_eq!(values, [&json!({"n": 1}), &json!("two"), &json!(3)]);
}

#[test]
fn run_prints_the_summary_on_stderr_without_quiet() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "1",
        "--output",
        "jsonl",
        "--progress",
        "never",
    ]);
    out.assert_code(0);
    assert_eq!(out.jsonl().len(), 1);
    assert!(out.stderr.contains("Run Summary: PASSED"), "{out:#?}");
    assert!(out.stderr.contains("Total tasks : 1"), "{out:#?}");
    assert!(
        !out.stdout.contains("Run Summary"),
        "the summary goes to stderr"
    );
}

#[test]
fn a_failed_task_exits_1_and_is_listed_in_the_summary() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "fail",
        "--input",
        "\"permanent\"",
        "--output",
        "jsonl",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed");
    assert_eq!(error_kind(&result), "permanent");
    assert_eq!(result["error"]["message"], "asked to fail permanently");
    assert_eq!(result["value"], Value::Null);
    assert!(out.stderr.contains("COMPLETED WITH ERRORS"), "{out:#?}");
    assert!(out.stderr.contains("asked to fail permanently"), "{out:#?}");
}

#[test]
fn guest_logs_show_by_default_and_host_internals_only_with_v() {
    let greet = [
        "run",
        artifacts::ECHO,
        "greet",
        "--input",
        r#"{"name": "Ada", "excited": false}"#,
        "--output",
        "jsonl",
        "-q",
    ];
    let quiet = osiiso(&greet);
    quiet.assert_code(0);
    assert!(quiet.stderr.contains("greeting Ada"), "{quiet:#?}");
    assert!(!quiet.stderr.contains("plugin compiled"), "{quiet:#?}");

    let verbose = osiiso(&[&greet[..], &["-v"]].concat());
    verbose.assert_code(0);
    assert!(verbose.stderr.contains("greeting Ada"), "{verbose:#?}");
    assert!(verbose.stderr.contains("plugin compiled"), "{verbose:#?}");
}
