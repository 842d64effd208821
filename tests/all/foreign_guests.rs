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
//! which makes a missing tool a failure instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use osiiso_host::{AttemptOutcome, FailureKind, Plugin};
use serde_json::{Value, json};

use crate::support;

const BIN: &str = env!("CARGO_BIN_EXE_osiiso-host");

/// Every queue the CLI offers.
const QUEUES: &[&str] = &["thread", "process", "async"];

/// Paths of the built components.
struct Guests {
    wordcount_c: PathBuf,
    py_text: PathBuf,
}

/// Set by CI: the C and Python toolchains must be there.
const REQUIRE: &str = "OSIISO_REQUIRE_FOREIGN";

/// True (once reported on stderr) when the toolchains for the C and Python plugins are
/// missing and not required: the test returns without running.
fn skipped() -> bool {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        if std::env::var_os(REQUIRE).is_some() {
            return None;
        }
        let missing: Vec<&str> = [
            ("clang", &["--version"][..]),
            ("componentize-py", &["--version"][..]),
        ]
        .into_iter()
        .filter(|(tool, args)| {
            !Command::new(tool)
                .args(*args)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(tool, _)| tool)
        .chain(
            (![
                "/usr/include/wasm32-wasi",
                "/usr/share/wasi-sysroot",
                "/opt/wasi-sdk",
            ]
            .iter()
            .any(|dir| Path::new(dir).is_dir())
                && std::env::var_os("WASI_SYSROOT").is_none())
            .then_some("wasi-libc"),
        )
        .collect();
        (!missing.is_empty()).then(|| {
            let reason = format!(
                "SKIPPED the C and Python plugin tests: {} not installed here (.ci/run installs \
                 them; set {REQUIRE}=1 to make this a failure)",
                missing.join(", ")
            );
            // Straight to the terminal: libtest captures the print macros of passing tests.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "{reason}");
            reason
        })
    });
    missing.is_some()
}

/// Builds (or finds up to date) the C and Python components, once per test binary.
fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
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
            .expect("running cargo to build the C and Python plugins");
        assert!(
            output.status.success(),
            "building the C and Python plugins (`cargo build -p osiiso-foreign-guests`) failed; \
             they need clang, lld, wasi-libc, libclang-rt-dev-wasm32 (Debian) and \
             componentize-py (PyPI), which .ci/run installs:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = target.join("foreign-guests");
        let guests = Guests {
            wordcount_c: dir.join("wordcount-c.wasm"),
            py_text: dir.join("py-text.wasm"),
        };
        for path in [&guests.wordcount_c, &guests.py_text] {
            assert!(path.is_file(), "{} was not built", path.display());
        }
        guests
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The C plugin, loaded once.
fn wordcount_c() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| support::load(path_str(&guests().wordcount_c)))
}

/// The Python plugin, loaded once. The first load compiles ~19 MB of wasm (CPython) into the
/// shared compile cache; every later load, including the CLI's and the process workers', hits
/// the cache.
fn py_text() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| support::load(path_str(&guests().py_text)))
}

/// Runs one attempt and returns its value, or panics with the outcome.
fn succeeds(plugin: &Plugin, task: &str, input: Value) -> Value {
    match support::run(plugin, task, input.clone()).outcome {
        AttemptOutcome::Succeeded(value) => value.to_value(),
        other => panic!(
            "{}/{task}({input}) should succeed: {other:?}",
            plugin.name()
        ),
    }
}

/// Runs one attempt and returns the failure's kind and message, or panics with the outcome.
fn fails(plugin: &Plugin, task: &str, input: Value) -> (FailureKind, String) {
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
fn list_json(plugin: &Path) -> Vec<Value> {
    let (code, stdout, stderr) = osiiso(&["list", path_str(plugin), "--json"]);
    assert_eq!(code, 0, "list failed:\n{stdout}\n{stderr}");
    let tasks: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("list --json is not JSON ({e}): {stdout}"));
    tasks.as_array().expect("an array of tasks").clone()
}

fn find<'a>(tasks: &'a [Value], name: &str) -> &'a Value {
    tasks
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {tasks:?}"))
}

fn names(tasks: &[Value]) -> Vec<&str> {
    tasks.iter().map(|t| t["name"].as_str().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// list

#[test]
fn c_plugin_lists_its_tasks() {
    if skipped() {
        return;
    }
    let tasks = list_json(&guests().wordcount_c);
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
    let (code, stdout, _) = osiiso(&["list", path_str(&guests().wordcount_c)]);
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
    if skipped() {
        return;
    }
    py_text(); // compile once into the shared cache before the CLI loads it
    let tasks = list_json(&guests().py_text);
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
    if skipped() {
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
    if skipped() {
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
    if skipped() {
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

/// One job line and what its result must be.
struct Expect {
    job: Value,
    status: &'static str,
    kind: Option<&'static str>,
    value: Option<Value>,
    attempts: u64,
}

fn ok(name: &str, task: &str, input: Value, value: Value, attempts: u64) -> Expect {
    Expect {
        job: json!({"name": name, "task": task, "input": input, "retry_delay": 0}),
        status: "succeeded",
        kind: None,
        value: Some(value),
        attempts,
    }
}

fn err(name: &str, task: &str, input: Value, kind: &'static str, attempts: u64) -> Expect {
    Expect {
        job: json!({"name": name, "task": task, "input": input, "retry_delay": 0}),
        status: "failed",
        kind: Some(kind),
        value: None,
        attempts,
    }
}

fn with(mut expect: Expect, key: &str, value: Value) -> Expect {
    expect.job[key] = value;
    expect
}

/// Runs `expects` as one jobs file through `queue` and checks every result.
fn run_jobs(plugin: &Path, queue: &str, expects: &[Expect]) {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = expects.iter().map(|e| e.job.to_string()).collect();
    std::fs::write(&jobs, lines.join("\n") + "\n").unwrap();
    let (code, stdout, stderr) = osiiso(&[
        "run",
        path_str(plugin),
        "--jobs",
        path_str(&jobs),
        "--queue",
        queue,
        "--workers",
        "2",
        "--output",
        "jsonl",
        "--progress",
        "never",
    ]);
    let context = format!(
        "queue {queue}, plugin {}:\n{stdout}\n{stderr}",
        plugin.display()
    );
    let any_failure = expects.iter().any(|e| e.status != "succeeded");
    assert_eq!(code, if any_failure { 1 } else { 0 }, "{context}");
    let results: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{context}")))
        .collect();
    assert_eq!(results.len(), expects.len(), "{context}");
    for expect in expects {
        let name = expect.job["name"].as_str().unwrap();
        let result = results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result named {name}: {context}"));
        assert_eq!(
            result["status"], expect.status,
            "{name}: {result}\n{context}"
        );
        assert_eq!(result["attempts"], expect.attempts, "{name}: {result}");
        match expect.kind {
            Some(kind) => assert_eq!(result["error"]["kind"], kind, "{name}: {result}"),
            None => assert_eq!(result["error"], Value::Null, "{name}: {result}"),
        }
        if let Some(value) = &expect.value {
            assert_eq!(&result["value"], value, "{name}: {result}");
        }
    }
}

#[test]
fn c_plugin_runs_on_every_queue() {
    if skipped() {
        return;
    }
    wordcount_c();
    for queue in QUEUES {
        run_jobs(
            &guests().wordcount_c,
            queue,
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
    if skipped() {
        return;
    }
    py_text(); // warm the shared compile cache once, for the CLI and its workers
    for queue in QUEUES {
        run_jobs(
            &guests().py_text,
            queue,
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
