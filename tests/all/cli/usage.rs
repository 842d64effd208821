//! `run`'s usage and load errors (exit 2), and the options' spellings.

use osiiso_test_artifacts as artifacts;

use crate::support::cli::{osiiso, path_str};

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
