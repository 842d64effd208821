//! Components made by tools no one here wrote, built from source by `tests/foreign`:
//!
//! - `plugins/js-text`, a plugin written with the JavaScript SDK (`guest-sdk/js`) and built
//!   with componentize-js from npm;
//! - `plugins/typed-calc` in JavaScript (componentize-js) and Python (componentize-py): the
//!   same WIT as the Rust one built with plain wit-bindgen, without any SDK, run as typed
//!   tasks and checked to give the Rust one's results;
//! - `plugins/wc-program-c`, a plain C program built by clang with wasi-libc (a WASI
//!   preview-1 core module), run as the task `run`.
//!
//! Each is listed and run through the CLI on the thread, async and process queues. The
//! components are large (10-20 MB) and compile once into the shared compile cache.

use std::path::Path;

use osiiso_host::{FailureKind, Plugin};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::foreign_guests::{
    Tool, fails, find, guest, list_json, names, py_text, skipped, succeeds, wordcount_c,
};
use crate::jobs::{err, ok, run_jobs, with};
use crate::support;

const QUEUES: &[&str] = &["thread", "async", "process"];

/// A foreign component, loaded once (compiling it into the shared cache).
fn load(file: &str) -> Plugin {
    support::load(guest(file).to_str().unwrap())
}

// ---------------------------------------------------------------------------------------------
// the JavaScript SDK

#[test]
fn js_plugin_lists_its_tasks() {
    if skipped("js_plugin_lists_its_tasks", &[Tool::Js]) {
        return;
    }
    load("js-text.wasm");
    let tasks = list_json(&guest("js-text.wasm"));
    assert_eq!(names(&tasks), ["stats", "top-words", "flaky", "divide"]);
    let stats = find(&tasks, "stats");
    assert_eq!(stats["kind"], "sdk");
    assert_eq!(
        stats["description"],
        "Counts the words, lines and characters of a string."
    );
    assert_eq!(stats["input_schema"], json!({"type": "string"}));
    let top = find(&tasks, "top-words");
    assert_eq!(top["input_schema"]["required"], json!(["text"]), "{top}");
    let flaky = find(&tasks, "flaky");
    assert_eq!(
        (&flaky["retries"], &flaky["timeout_ms"]),
        (&json!(2), &json!(5000))
    );
    assert_eq!(find(&tasks, "divide")["input_schema"], Value::Null);
}

#[test]
fn js_plugin_results_and_error_kinds() {
    if skipped("js_plugin_results_and_error_kinds", &[Tool::Js]) {
        return;
    }
    let plugin = load("js-text.wasm");
    assert_eq!(
        succeeds(&plugin, "stats", json!("héllo wörld\nsecond line")),
        json!({"words": 4, "lines": 2, "chars": 23})
    );
    assert_eq!(
        succeeds(&plugin, "top-words", json!({"text": "b a B c b a", "n": 2})),
        json!([{"word": "b", "count": 3}, {"word": "a", "count": 2}])
    );
    assert_eq!(succeeds(&plugin, "divide", json!([1, 4])), json!(0.25));
    assert_eq!(succeeds(&plugin, "flaky", json!(1)), json!({"attempt": 1}));
    for (task, input, kind, text) in [
        (
            "stats",
            json!(5),
            FailureKind::InvalidInput,
            "expected a JSON string",
        ),
        (
            "top-words",
            json!({"text": "hi", "n": 0}),
            FailureKind::InvalidInput,
            "positive",
        ),
        (
            "top-words",
            json!({"text": " ... !"}),
            FailureKind::Permanent,
            "no words",
        ),
        ("flaky", json!(2), FailureKind::Failed, "attempt 1 of 2"),
        // An uncaught exception is a retryable failure naming it.
        (
            "divide",
            json!([1, 0]),
            FailureKind::Failed,
            "RangeError: division by zero",
        ),
    ] {
        let (found, message) = fails(&plugin, task, input);
        assert_eq!(found, kind, "{task}: {message}");
        assert!(message.contains(text), "{task}: {message}");
    }
}

#[test]
fn js_counts_like_c_and_python() {
    if skipped(
        "js_counts_like_c_and_python",
        &[Tool::Js, Tool::C, Tool::Python],
    ) {
        return;
    }
    let js = load("js-text.wasm");
    for text in [
        "",
        "one",
        "two words\n",
        "\n\nblank lines\n\n",
        "tabs\tand\x0bvertical\x0cfeeds\r\nand CRLF",
        "ünïcödé 字 🦀 text without final newline",
    ] {
        let counted = succeeds(&js, "stats", json!(text));
        assert_eq!(
            counted,
            succeeds(wordcount_c(), "count", json!(text)),
            "{text:?}"
        );
        assert_eq!(
            counted,
            succeeds(py_text(), "stats", json!(text)),
            "{text:?}"
        );
    }
}

#[test]
fn js_plugin_runs_on_every_queue() {
    if skipped("js_plugin_runs_on_every_queue", &[Tool::Js]) {
        return;
    }
    load("js-text.wasm");
    for queue in QUEUES {
        run_jobs(
            &guest("js-text.wasm"),
            &["--queue", queue, "--workers", "2"],
            &[
                ok(
                    "stats",
                    "stats",
                    json!("a b\nc"),
                    json!({"words": 3, "lines": 2, "chars": 5}),
                    1,
                ),
                ok(
                    "top",
                    "top-words",
                    json!({"text": "x y x", "n": 1}),
                    json!([{"word": "x", "count": 2}]),
                    1,
                ),
                err("not-a-string", "stats", json!(null), "invalid_input", 1),
                with(
                    err("no-words", "top-words", json!({"text": ""}), "permanent", 1),
                    "retries",
                    json!(3),
                ),
                ok("flaky-default", "flaky", json!(2), json!({"attempt": 2}), 2),
                with(
                    err("exception", "divide", json!([1, 0]), "failed", 2).message("RangeError"),
                    "retries",
                    json!(1),
                ),
            ],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// the same WIT in Rust (wit-bindgen), JavaScript (componentize-js) and Python (componentize-py)

/// The typed builds of `plugins/typed-calc` in other languages, and the toolchain of each.
const TYPED: &[(&str, Tool)] = &[
    ("typed-calc-js.wasm", Tool::Js),
    ("typed-calc-py.wasm", Tool::Python),
];

#[test]
fn typed_components_list_the_same_tasks_in_every_language() {
    let rust = support::load(artifacts::TYPED_CALC);
    let rust: Vec<_> = rust
        .tasks()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.signature.clone(),
                t.not_runnable.is_some(),
            )
        })
        .collect();
    for (file, tool) in TYPED {
        if skipped(file, &[*tool]) {
            continue;
        }
        let plugin = load(file);
        let tasks: Vec<_> = plugin
            .tasks()
            .iter()
            // componentize-py adds an export of its own, `exports#init` (the interpreter's
            // initialization, called while it builds the component): listed like any other
            // export, and not part of the WIT.
            .filter(|t| t.name != "exports#init")
            .map(|t| {
                (
                    t.name.clone(),
                    t.signature.clone(),
                    t.not_runnable.is_some(),
                )
            })
            .collect();
        assert_eq!(tasks, rust, "{file}");
    }
}

#[test]
fn typed_components_give_the_rust_results_in_every_language() {
    let rust = support::load(artifacts::TYPED_CALC);
    // componentize-js 0.23.0 aborts on a negative s64 argument (its stderr says
    // "Redirecting call to abort() to mozalloc_abort"): the inputs here stay non-negative,
    // and the Rust build checks negative ones.
    let inputs = [
        ("add", json!([5, 3])),
        ("checksum", json!("aGVsbG8=")),
        ("initial", json!("ünï")),
        ("reciprocal", json!(-4)),
        ("maybe", json!({"some": null})),
        ("summarize", json!([3, 1, 2])),
        (
            "area",
            json!({"polygon": [{"x": 0, "y": 0}, {"x": 4, "y": 0}, {"x": 0, "y": 3}]}),
        ),
        (
            "translate",
            json!({"p": {"x": 1, "y": 1, "label": "p"}, "dx": 2, "dy": 3}),
        ),
        ("parse-style", json!(["underline", "italic"])),
        ("mirror", json!({"polygon": [{"x": 1, "y": 2}]})),
    ];
    for (file, tool) in TYPED {
        if skipped(file, &[*tool]) {
            continue;
        }
        let plugin = load(file);
        for (task, input) in &inputs {
            assert_eq!(
                succeeds(&plugin, task, input.clone()),
                succeeds(&rust, task, input.clone()),
                "{file}: {task}({input})"
            );
        }
    }
}

#[test]
fn typed_components_run_on_every_queue_in_every_language() {
    for (file, tool) in TYPED {
        if skipped(file, &[*tool]) {
            continue;
        }
        load(file);
        for queue in QUEUES {
            run_jobs(
                &guest(file),
                &["--queue", queue, "--workers", "2"],
                &crate::typed_tasks::typed_jobs(),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// a C program (clang + wasi-libc, a preview-1 core module)

#[test]
fn a_c_program_runs_on_every_queue() {
    if skipped("a_c_program_runs_on_every_queue", &[Tool::C]) {
        return;
    }
    let path = guest("wc-program-c.wasm");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        &bytes[4..8],
        b"\x01\0\0\0",
        "a core module, not a component"
    );
    load("wc-program-c.wasm");
    for queue in QUEUES {
        run_jobs(
            Path::new(&path),
            &["--queue", queue, "--workers", "2"],
            &crate::programs::program_jobs(true),
        );
    }
}
