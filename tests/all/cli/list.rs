//! `osiiso-host list`: the tasks of a plugin, as text and as JSON.

use osiiso_test_artifacts as artifacts;
use serde_json::Value;

use crate::support::cli::{osiiso, path_str};

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
