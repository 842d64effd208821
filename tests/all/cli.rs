//! CLI tests: the real `osiiso-host` binary on real plugins (README.md, "CLI reference").
//!
//! Every test runs the binary as a subprocess and asserts on its exit status, its JSON output
//! (the documented result object) and its messages on stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::cli::{
    Outcome, RESULT_FIELDS, error_kind, osiiso, osiiso_in, path_str, status, write_jsonl,
    write_lines,
};

/// Every `*.cwasm` file under `dir`, recursively.
fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "cwasm") {
                found.push(path);
            }
        }
    }
    found
}

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

// ---------------------------------------------------------------------------------------------
// list

#[test]
fn list_prints_each_task_with_its_description() {
    let out = osiiso(&["list", artifacts::ECHO]);
    out.assert_code(0);
    for (name, description) in [
        ("echo", "Returns its input unchanged."),
        ("add", "Adds two integers given as a JSON array `[a, b]`."),
        ("greet", "Greets someone"),
        ("fail", "Fails with the given kind"),
    ] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for task {name}: {out:#?}"));
        assert!(
            line.contains(description),
            "task {name}'s line lacks its description: {line}"
        );
    }
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

#[test]
fn list_json_is_an_array_of_task_descriptions() {
    let out = osiiso(&["list", artifacts::ECHO, "--json"]);
    out.assert_code(0);
    let tasks: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("list --json is not JSON ({e}): {out:#?}"));
    let tasks = tasks.as_array().expect("list --json prints an array");
    let mut names: Vec<&str> = Vec::new();
    for task in tasks {
        let object = task.as_object().expect("each task is an object");
        for key in [
            "name",
            "description",
            "input_schema",
            "retries",
            "timeout_ms",
        ] {
            assert!(object.contains_key(key), "task lacks {key}: {task}");
        }
        names.push(task["name"].as_str().expect("name is a string"));
        assert!(task["description"].is_string(), "{task}");
    }
    names.sort_unstable();
    assert_eq!(names, ["add", "echo", "fail", "greet"]);
    let echo = tasks.iter().find(|t| t["name"] == "echo").unwrap();
    assert_eq!(echo["description"], "Returns its input unchanged.");

    // The plugin's suggested defaults come through: `score` suggests a 60 s timeout.
    let out = osiiso(&["list", artifacts::SCORE, "--json"]);
    out.assert_code(0);
    let tasks: Value = serde_json::from_str(&out.stdout).unwrap();
    let score = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "score")
        .expect("score lists its task");
    assert_eq!(score["timeout_ms"], 60_000, "{score}");
}

#[test]
fn list_of_a_non_wasm_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some text\n").unwrap();
    let out = osiiso(&["list", path_str(&text)]);
    out.assert_usage_error(&["notes.wasm", "not a WebAssembly", "`\\0asm`"]);
    assert!(!out.stderr.contains("\\\\"), "escaped once: {out:#?}");
}

// ---------------------------------------------------------------------------------------------
// run: the result object

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

// ---------------------------------------------------------------------------------------------
// run: limits and the sandbox

#[test]
fn fuel_budget_stops_score_with_out_of_fuel() {
    let out = osiiso(&[
        "run",
        artifacts::SCORE,
        "--input",
        "1000",
        "--fuel",
        "1000",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed");
    assert_eq!(error_kind(&result), "out_of_fuel", "{result}");
    assert_eq!(result["attempts"], 1, "out_of_fuel is not retried");
}

#[test]
fn fuel_consumed_appears_with_fuel_on_thread_and_process_and_always_on_async() {
    for (queue, fuel, metered) in [
        ("thread", None, false),
        ("thread", Some("1000000000"), true),
        ("process", None, false),
        ("process", Some("1000000000"), true),
        // The async queue counts fuel to yield, budget or not.
        ("async", None, true),
        ("async", Some("1000000000"), true),
    ] {
        let mut args = vec![
            "run",
            artifacts::SCORE,
            "--input",
            "1000",
            "--queue",
            queue,
            "--output",
            "jsonl",
            "-q",
        ];
        if let Some(fuel) = fuel {
            args.extend(["--fuel", fuel]);
        }
        let out = osiiso(&args);
        out.assert_code(0);
        let result = out.single();
        assert_eq!(status(&result), "succeeded", "{queue} {fuel:?}: {result}");
        let consumed = &result["fuel_consumed"];
        if metered {
            assert!(
                consumed.as_u64().is_some_and(|f| f > 1000),
                "{queue} {fuel:?}: {result}"
            );
        } else {
            assert!(consumed.is_null(), "{queue} {fuel:?}: {result}");
        }
    }
}

#[test]
fn timeout_stops_an_infinite_loop() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_INFINITE_LOOP,
        "spin",
        "--timeout",
        "100ms",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed");
    assert_eq!(error_kind(&result), "timeout", "{result}");
    assert_eq!(
        result["error"]["message"], "task 'spin' exceeded 0.1s timeout",
        "{result}"
    );
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn memory_cap_stops_a_memory_bomb() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_MEMORY_BOMB,
        "bomb",
        "--max-memory",
        "32MiB",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed");
    assert_eq!(error_kind(&result), "memory_limit", "{result}");
}

#[test]
fn no_dir_grant_means_no_host_files() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_FS_ESCAPE,
        "read",
        "--input",
        "\"/etc/passwd\"",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed", "{result}");
    assert!(!result["value"].to_string().contains("root:"), "{result}");
    assert!(!out.stdout.contains("root:"), "host file leaked: {out:#?}");
}

// ---------------------------------------------------------------------------------------------
// run: usage and load errors (exit 2)

#[test]
fn a_text_file_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("readme.txt");
    std::fs::write(&text, "hello, I am not wasm\n").unwrap();
    osiiso(&["run", path_str(&text), "--output", "jsonl"])
        .assert_usage_error(&["readme.txt", "not a WebAssembly file"]);
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wasm");
    osiiso(&["run", path_str(&missing), "--output", "jsonl"]).assert_usage_error(&["nope.wasm"]);
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("core.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    osiiso(&["run", path_str(&module), "--output", "jsonl"]).assert_usage_error(&[
        "core.wasm",
        "core WebAssembly module",
        "component",
    ]);
}

#[test]
fn a_component_without_the_task_export_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    osiiso(&["run", path_str(&empty), "--output", "jsonl"])
        .assert_usage_error(&["empty.wasm", "osiiso:task/tasks"]);
    osiiso(&["list", path_str(&empty)]).assert_usage_error(&["empty.wasm", "osiiso:task/tasks"]);
}

#[test]
fn an_unknown_task_lists_the_known_ones() {
    let out = osiiso(&["run", artifacts::ECHO, "nosuch", "--output", "jsonl"]);
    out.assert_usage_error(&["nosuch", "echo", "add", "greet", "fail"]);
}

#[test]
fn a_plugin_with_several_tasks_needs_a_task_name() {
    let out = osiiso(&["run", artifacts::ECHO, "--input", "1", "--output", "jsonl"]);
    out.assert_usage_error(&["echo", "add", "greet", "fail"]);
}

#[test]
fn input_that_is_not_json_is_a_usage_error() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "not json",
        "--output",
        "jsonl",
    ]);
    out.assert_usage_error(&["--input", "not valid JSON"]);
}

/// `--workers` is checked once, by the library: for 0 workers, or more than a backend allows,
/// the CLI prints the queue builder's own typed error, named by its flag.
#[test]
fn workers_are_checked_by_the_library() {
    use osiiso_host::queue::{Error, Workers};
    use osiiso_host::{ProcessQueue, ThreadQueue};

    let thread = |n| ThreadQueue::builder().workers(Workers::Fixed(n)).validate();
    let process = |n| {
        ProcessQueue::builder()
            .workers(Workers::Fixed(n))
            .validate()
    };
    for (queue, workers, error) in [
        ("thread", "0", thread(0)),
        ("thread", "1025", thread(1025)),
        ("process", "257", process(257)),
    ] {
        let error = error.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidOption(invalid) if invalid.option() == "workers"),
            "{error:?}"
        );
        let out = osiiso(&[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "--queue",
            queue,
            "--workers",
            workers,
            "--output",
            "jsonl",
        ]);
        out.assert_usage_error(&[&format!("--workers: {error}")]);
    }
}

#[test]
fn a_bad_duration_is_a_usage_error() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "1",
        "--timeout",
        "soon",
        "--output",
        "jsonl",
    ]);
    out.assert_usage_error(&["--timeout"]);
}

// ---------------------------------------------------------------------------------------------
// the compile cache

#[test]
fn second_run_hits_the_compile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "7",
        "--output",
        "jsonl",
        "-q",
        "-v",
        "--cache-dir",
        path_str(cache.path()),
    ];

    let first = osiiso_in(&args, cache.path());
    first.assert_code(0);
    assert_eq!(first.single()["value"], 7);
    assert!(first.stderr.contains("plugin compiled"), "{first:#?}");
    assert!(first.stderr.contains("cache=Miss"), "{first:#?}");
    assert!(!first.stderr.contains("cache=Hit"), "{first:#?}");
    let entries = cwasm_files(cache.path());
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    assert_ne!(
        entries[0].parent().unwrap(),
        cache.path(),
        "the entry lives in a subdirectory"
    );

    let second = osiiso_in(&args, cache.path());
    second.assert_code(0);
    assert_eq!(second.single()["value"], 7);
    assert!(second.stderr.contains("plugin compiled"), "{second:#?}");
    assert!(second.stderr.contains("cache=Hit"), "{second:#?}");
    assert!(!second.stderr.contains("cache=Miss"), "{second:#?}");
    assert_eq!(cwasm_files(cache.path()), entries, "no new entry");
}

#[test]
fn retry_is_accepted_for_retries() {
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "fail",
        "--input",
        r#""failed""#,
        "--retry",
        "2",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    assert_eq!(out.single()["attempts"], 3, "{out:#?}");
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

#[test]
fn no_cache_writes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let out = osiiso_in(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "--no-cache",
            "--output",
            "jsonl",
            "-q",
            "--cache-dir",
            path_str(cache.path()),
        ],
        cache.path(),
    );
    out.assert_code(0);
    assert!(cwasm_files(cache.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// the queue through the CLI

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

/// Off a terminal (a CI log), `--progress always` writes plain progress lines — the first at
/// the start, the last at the end — also with `-q`; the default writes none there.
#[test]
fn progress_always_writes_plain_lines_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_lines(dir.path(), "three.txt", &["1", "2", "3"].map(String::from));
    let args = |extra: &[&'static str]| {
        let mut args = vec!["run", artifacts::ECHO, "echo", "--inputs", path_str(&file)];
        args.extend_from_slice(&["--output", "jsonl"]);
        args.extend_from_slice(extra);
        osiiso(&args)
    };
    for extra in [
        &["--progress", "always"][..],
        &["--progress", "always", "-q"],
    ] {
        let out = args(extra);
        out.assert_code(0);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("progress: "))
            .collect();
        assert!(
            lines
                .first()
                .is_some_and(|l| l.starts_with("progress: 0/3 tasks (0%)")),
            "{extra:?}: {}",
            out.stderr
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.starts_with("progress: 3/3 tasks (100%)")),
            "{extra:?}: {}",
            out.stderr
        );
    }
    let out = args(&[]);
    out.assert_code(0);
    assert!(!out.stderr.contains("progress: "), "{}", out.stderr);
}
