//! Plugins written in C (`plugins/wordcount-c`, with the SDK in `guest-sdk/c`) and Python
//! (`plugins/py-text`, built with componentize-py): listed, run through the embedding API and
//! through the CLI on every available queue, with each error kind checked.
//!
//! The components are built from source by the build script of `tests/foreign`
//! (`osiiso-foreign-guests`); the first test that needs them runs
//! `cargo build -p osiiso-foreign-guests`, which is a no-op when `.ci/run` built them already
//! and rebuilds them after a change to a plugin, the C SDK or the WIT. That build needs clang
//! with wasi-libc and componentize-py: see `.ci/run` for the install steps.
//!
//! On a machine without those tools (a newcomer's first `cargo test`), these tests say on
//! stderr that they were skipped and why, and pass. CI sets `OSIISO_REQUIRE_FOREIGN=1`,
//! which makes a missing tool a failure instead. The JavaScript plugins, the typed
//! components in JavaScript and Python and the C program use the same harness
//! (`foreign_components.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use osiiso_host::{AttemptOutcome, FailureKind, Plugin};
use serde_json::{Value, json};

use crate::jobs::{err, ok, run_jobs, with};
use crate::support;

const BIN: &str = env!("CARGO_BIN_EXE_osiiso-host");

/// Every queue the CLI offers.
const QUEUES: &[&str] = &["thread", "process", "async"];

/// Set by CI: the toolchains of the foreign plugins must be there.
const REQUIRE: &str = "OSIISO_REQUIRE_FOREIGN";

/// A toolchain a foreign plugin needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// clang with wasi-libc (C).
    C,
    /// componentize-py (Python).
    Python,
    /// node and npm (JavaScript, with componentize-js from npm).
    Js,
}

/// Whether this machine has `tool` (checked once).
fn has(tool: Tool) -> bool {
    static FOUND: OnceLock<[bool; 3]> = OnceLock::new();
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let found = FOUND.get_or_init(|| {
        let wasi_libc = std::env::var_os("WASI_SYSROOT").is_some()
            || [
                "/usr/include/wasm32-wasi",
                "/usr/share/wasi-sysroot",
                "/opt/wasi-sdk",
            ]
            .iter()
            .any(|dir| Path::new(dir).is_dir());
        [
            runs("clang") && wasi_libc,
            runs("componentize-py"),
            runs("node") && runs("npm"),
        ]
    });
    found[tool as usize]
}

/// True (reported on stderr) when a toolchain `test` needs is missing and not required: the
/// test returns without running.
pub(crate) fn skipped(test: &str, tools: &[Tool]) -> bool {
    if std::env::var_os(REQUIRE).is_some() {
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !has(**tool))
        .map(|tool| match tool {
            Tool::C => "clang with wasi-libc",
            Tool::Python => "componentize-py",
            Tool::Js => "node and npm",
        })
        .collect();
    if missing.is_empty() {
        return false;
    }
    // Straight to the terminal: libtest captures the print macros of passing tests.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {} not installed here (.ci/run installs them; set {REQUIRE}=1 to make \
         this a failure)",
        missing.join(", ")
    );
    true
}

/// A component built by `tests/foreign` (`cargo build -p osiiso-foreign-guests`, once per
/// test binary; a no-op when .ci/run built them already).
pub(crate) fn guest(file: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
        let output = Command::new(env!("CARGO"))
            .current_dir(workspace)
            .args([
                "build",
                "--quiet",
                "-p",
                "osiiso-foreign-guests",
                "--target-dir",
            ])
            .arg(target)
            .output()
            .expect("running cargo to build the foreign plugins");
        assert!(
            output.status.success(),
            "building the foreign plugins (`cargo build -p osiiso-foreign-guests`) failed; \
             they need clang, lld, wasi-libc, libclang-rt-dev-wasm32 (Debian), componentize-py \
             (PyPI) and node with npm, which .ci/run installs:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target.join("foreign-guests")
    });
    let path = dir.join(file);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The C plugin, loaded once.
pub(crate) fn wordcount_c() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| support::load(path_str(&guest("wordcount-c.wasm"))))
}

/// The Python plugin, loaded once. The first load compiles ~19 MB of wasm (CPython) into the
/// shared compile cache; every later load, including the CLI's and the process workers', hits
/// the cache.
pub(crate) fn py_text() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| support::load(path_str(&guest("py-text.wasm"))))
}

/// Runs one attempt and returns its value, or panics with the outcome.
pub(crate) fn succeeds(plugin: &Plugin, task: &str, input: Value) -> Value {
    match support::run(plugin, task, input.clone()).outcome {
        AttemptOutcome::Succeeded(value) => value.to_value(),
        other => panic!(
            "{}/{task}({input}) should succeed: {other:?}",
            plugin.name()
        ),
    }
}

/// Runs one attempt and returns the failure's kind and message, or panics with the outcome.
pub(crate) fn fails(plugin: &Plugin, task: &str, input: Value) -> (FailureKind, String) {
    match support::run(plugin, task, input.clone()).outcome {
        AttemptOutcome::Failed(failure) => (failure.kind, failure.message),
        other => panic!("{}/{task}({input}) should fail: {other:?}", plugin.name()),
    }
}

/// Runs the CLI with the test binary's shared compile cache.
fn osiiso(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env("OSIISO_CACHE_DIR", support::cache_dir())
        .env("OSIISO_COMPILE_TIMEOUT", "15m")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `osiiso-host list PLUGIN --json`, as the task array.
pub(crate) fn list_json(plugin: &Path) -> Vec<Value> {
    let (code, stdout, stderr) = osiiso(&["list", path_str(plugin), "--json"]);
    assert_eq!(code, 0, "list failed:\n{stdout}\n{stderr}");
    let tasks: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("list --json is not JSON ({e}): {stdout}"));
    tasks.as_array().expect("an array of tasks").clone()
}

pub(crate) fn find<'a>(tasks: &'a [Value], name: &str) -> &'a Value {
    tasks
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {tasks:?}"))
}

pub(crate) fn names(tasks: &[Value]) -> Vec<&str> {
    tasks.iter().map(|t| t["name"].as_str().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// list

#[test]
fn c_plugin_lists_its_tasks() {
    if skipped("c_plugin_lists_its_tasks", &[Tool::C]) {
        return;
    }
    let tasks = list_json(&guest("wordcount-c.wasm"));
    assert_eq!(names(&tasks), ["count", "longest", "flaky"]);
    let count = find(&tasks, "count");
    assert_eq!(
        count["description"],
        "Counts the words, lines and characters of a string."
    );
    assert_eq!(count["input_schema"], json!({"type": "string"}));
    assert_eq!(count["retries"], Value::Null);
    // Suggested defaults declared with OSIISO_SOME in the C task table.
    let flaky = find(&tasks, "flaky");
    assert_eq!(flaky["retries"], 2, "{flaky}");
    assert_eq!(flaky["timeout_ms"], 5000, "{flaky}");

    // The human listing shows the same tasks.
    let (code, stdout, _) = osiiso(&["list", path_str(&guest("wordcount-c.wasm"))]);
    assert_eq!(code, 0);
    for name in ["count", "longest", "flaky"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{stdout}"
        );
    }
}

#[test]
fn python_plugin_lists_its_tasks() {
    if skipped("python_plugin_lists_its_tasks", &[Tool::Python]) {
        return;
    }
    py_text(); // compile once into the shared cache before the CLI loads it
    let tasks = list_json(&guest("py-text.wasm"));
    assert_eq!(names(&tasks), ["stats", "top-words", "flaky", "divide"]);
    let top = find(&tasks, "top-words");
    assert!(
        top["description"]
            .as_str()
            .unwrap()
            .starts_with("The N most frequent words"),
        "{top}"
    );
    assert_eq!(top["input_schema"]["required"], json!(["text"]), "{top}");
    let flaky = find(&tasks, "flaky");
    assert_eq!(flaky["retries"], 2, "{flaky}");
    assert_eq!(flaky["timeout_ms"], 5000, "{flaky}");
    assert_eq!(find(&tasks, "divide")["input_schema"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// one attempt through the embedding API

#[test]
fn c_plugin_results_and_error_kinds() {
    if skipped("c_plugin_results_and_error_kinds", &[Tool::C]) {
        return;
    }
    let plugin = wordcount_c();
    assert_eq!(
        succeeds(plugin, "count", json!("héllo wörld\nsecond line")),
        json!({"words": 4, "lines": 2, "chars": 23})
    );
    assert_eq!(
        succeeds(plugin, "count", json!("")),
        json!({"words": 0, "lines": 0, "chars": 0})
    );
    assert_eq!(
        succeeds(
            plugin,
            "longest",
            json!("a \"quoted\" supercalifragilistic\u{e9} word")
        ),
        json!({"word": "supercalifragilistic\u{e9}", "chars": 21})
    );
    // JSON escapes in and out: the word contains a quote, a backslash and a tab-free emoji.
    assert_eq!(
        succeeds(plugin, "longest", json!("x say\"\\\u{1F600}!")),
        json!({"word": "say\"\\\u{1F600}!", "chars": 7})
    );
    assert_eq!(succeeds(plugin, "flaky", json!(1)), json!({"attempt": 1}));

    let (kind, message) = fails(plugin, "count", json!(42));
    assert_eq!(kind, FailureKind::InvalidInput, "{message}");
    assert!(message.contains("expected a JSON string"), "{message}");
    let (kind, message) = fails(plugin, "count", json!({"text": "hi"}));
    assert_eq!(kind, FailureKind::InvalidInput, "{message}");
    let (kind, message) = fails(plugin, "longest", json!(" \t\n "));
    assert_eq!(kind, FailureKind::Permanent, "{message}");
    assert!(message.contains("no words"), "{message}");
    let (kind, message) = fails(plugin, "flaky", json!(2));
    assert_eq!(kind, FailureKind::Failed, "{message}");
    assert!(message.contains("attempt 1 of 2"), "{message}");
    let (kind, message) = fails(plugin, "flaky", json!("two"));
    assert_eq!(kind, FailureKind::InvalidInput, "{message}");
}

#[test]
fn python_plugin_results_and_error_kinds() {
    if skipped("python_plugin_results_and_error_kinds", &[Tool::Python]) {
        return;
    }
    let plugin = py_text();
    assert_eq!(
        succeeds(plugin, "stats", json!("héllo wörld\nsecond line")),
        json!({"words": 4, "lines": 2, "chars": 23})
    );
    assert_eq!(
        succeeds(plugin, "top-words", json!({"text": "b a B c b a", "n": 2})),
        json!([{"word": "b", "count": 3}, {"word": "a", "count": 2}])
    );
    assert_eq!(succeeds(plugin, "divide", json!([1, 4])), json!(0.25));
    assert_eq!(succeeds(plugin, "flaky", json!(1)), json!({"attempt": 1}));

    let (kind, message) = fails(plugin, "stats", json!(5));
    assert_eq!(kind, FailureKind::InvalidInput, "{message}");
    let (kind, message) = fails(plugin, "top-words", json!({"txt": "no text key"}));
    assert_eq!(kind, FailureKind::InvalidInput, "{message}");
    let (kind, message) = fails(plugin, "top-words", json!({"text": "hi", "n": 0}));
    assert_eq!(kind, FailureKind::InvalidInput, "{message}");
    let (kind, message) = fails(plugin, "top-words", json!({"text": " ... !"}));
    assert_eq!(kind, FailureKind::Permanent, "{message}");
    assert!(message.contains("no words"), "{message}");
    let (kind, message) = fails(plugin, "flaky", json!(2));
    assert_eq!(kind, FailureKind::Failed, "{message}");
    // An uncaught exception is a retryable failure naming the exception.
    let (kind, message) = fails(plugin, "divide", json!([1, 0]));
    assert_eq!(kind, FailureKind::Failed, "{message}");
    assert!(message.contains("ZeroDivisionError"), "{message}");
}

#[test]
fn c_and_python_count_alike() {
    if skipped("c_and_python_count_alike", &[Tool::C, Tool::Python]) {
        return;
    }
    for text in [
        "",
        "one",
        "two words\n",
        "\n\nblank lines\n\n",
        "tabs\tand\x0bvertical\x0cfeeds\r\nand CRLF",
        "ünïcödé 字 🦀 text without final newline",
    ] {
        assert_eq!(
            succeeds(wordcount_c(), "count", json!(text)),
            succeeds(py_text(), "stats", json!(text)),
            "C and Python disagree on {text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// the CLI, on every queue

#[test]
fn c_plugin_runs_on_every_queue() {
    if skipped("c_plugin_runs_on_every_queue", &[Tool::C]) {
        return;
    }
    wordcount_c();
    for queue in QUEUES {
        run_jobs(
            &guest("wordcount-c.wasm"),
            &["--queue", queue, "--workers", "2"],
            &[
                ok(
                    "count",
                    "count",
                    json!("a b\nc"),
                    json!({"words": 3, "lines": 2, "chars": 5}),
                    1,
                ),
                ok(
                    "longest",
                    "longest",
                    json!("tiny enormous"),
                    json!({"word": "enormous", "chars": 8}),
                    1,
                ),
                err("not-a-string", "count", json!([1, 2]), "invalid_input", 1),
                // Permanent and invalid-input errors are never retried, whatever `retries`.
                with(
                    err("no-words", "longest", json!("   "), "permanent", 1),
                    "retries",
                    json!(3),
                ),
                with(
                    err("bad-number", "flaky", json!(-1), "invalid_input", 1),
                    "retries",
                    json!(3),
                ),
                // Failed is retried: the plugin's suggested 2 retries let attempt 3 succeed.
                ok("flaky-default", "flaky", json!(3), json!({"attempt": 3}), 3),
                with(
                    err("flaky-exhausted", "flaky", json!(3), "failed", 2),
                    "retries",
                    json!(1),
                ),
            ],
        );
    }
}

#[test]
fn python_plugin_runs_on_every_queue() {
    if skipped("python_plugin_runs_on_every_queue", &[Tool::Python]) {
        return;
    }
    py_text(); // warm the shared compile cache once, for the CLI and its workers
    for queue in QUEUES {
        run_jobs(
            &guest("py-text.wasm"),
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
                    err("flaky-exhausted", "flaky", json!(3), "failed", 1),
                    "retries",
                    json!(0),
                ),
                with(
                    err("exception", "divide", json!([1, 0]), "failed", 2),
                    "retries",
                    json!(1),
                ),
            ],
        );
    }
}
