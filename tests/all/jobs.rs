//! A jobs file run through the CLI and every row checked against what it must be: the shared
//! harness of the foreign-plugin, typed-task and program tests.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::cli::{osiiso, path_str};

/// One job line and what its result must be.
pub(crate) struct Expect {
    pub(crate) job: Value,
    status: &'static str,
    kind: Option<&'static str>,
    value: Option<Value>,
    attempts: u64,
    /// Texts the error message must contain.
    message: Vec<String>,
}

/// A job that succeeds with `value` after `attempts` attempts.
pub(crate) fn ok(name: &str, task: &str, input: Value, value: Value, attempts: u64) -> Expect {
    Expect {
        job: json!({"name": name, "task": task, "input": input, "retry_delay": 0}),
        status: "succeeded",
        kind: None,
        value: Some(value),
        attempts,
        message: Vec::new(),
    }
}

/// A job that fails with `kind` after `attempts` attempts.
pub(crate) fn err(
    name: &str,
    task: &str,
    input: Value,
    kind: &'static str,
    attempts: u64,
) -> Expect {
    Expect {
        job: json!({"name": name, "task": task, "input": input, "retry_delay": 0}),
        status: "failed",
        kind: Some(kind),
        value: None,
        attempts,
        message: Vec::new(),
    }
}

/// `expect` with a job option set (`retries`, `timeout`, ...).
pub(crate) fn with(mut expect: Expect, key: &str, value: Value) -> Expect {
    expect.job[key] = value;
    expect
}

impl Expect {
    /// The error message must contain `text`.
    pub(crate) fn message(mut self, text: &str) -> Self {
        self.message.push(text.to_string());
        self
    }
}

/// Runs `expects` as one jobs file of `plugin` with `args` (the queue and its options) and
/// checks every result. Returns the rows.
pub(crate) fn run_jobs(plugin: &Path, args: &[&str], expects: &[Expect]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = expects.iter().map(|e| e.job.to_string()).collect();
    std::fs::write(&jobs, lines.join("\n") + "\n").unwrap();
    let mut all = vec![
        "run",
        path_str(plugin),
        "--jobs",
        path_str(&jobs),
        "--output",
        "jsonl",
        "--progress",
        "never",
    ];
    all.extend_from_slice(args);
    let out = osiiso(&all);
    let context = format!("{args:?}, plugin {}:\n{out:#?}", plugin.display());
    let any_failure = expects.iter().any(|e| e.status != "succeeded");
    assert_eq!(out.code, if any_failure { 1 } else { 0 }, "{context}");
    let results = out.jsonl();
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
        for text in &expect.message {
            let message = result["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains(text.as_str()),
                "{name}: {text:?} not in {result}"
            );
        }
    }
    results
}
