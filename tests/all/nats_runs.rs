//! Runs of the CLI on a NATS fleet, for the NATS tests: in the foreground or the background,
//! and `mark` tasks that count their executions through a side effect (`mark` appends its tag
//! to a granted file), so "executed at most twice" is checked on what happened.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::nats_fixture::{Fleet, Node};
use crate::support::cli::{BIN, Outcome, osiiso, path_str, status, write_jsonl};

/// `run` on the NATS queue of `fleet` with `args`, as JSON lines.
pub fn run_on(fleet: &Fleet, args: &[&str]) -> Outcome {
    let url = fleet.url();
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--queue", "nats", "--nats", &url, "--output", "jsonl"]);
    osiiso(&all)
}

/// `mark` jobs: tag `t0..tn`, each sleeping `ms`.
pub fn marks(fleet: &Fleet, n: usize, ms: u64) -> std::path::PathBuf {
    let jobs: Vec<Value> = (0..n)
        .map(|i| json!({"tag": format!("t{i}"), "ms": ms}))
        .collect();
    write_jsonl(fleet.root.path(), "marks.jsonl", &jobs)
}

/// The marks directory of a fleet, granted as `/marks`.
pub fn marks_dir(fleet: &Fleet) -> String {
    let dir = fleet.root.path().join("marks");
    std::fs::create_dir_all(&dir).unwrap();
    format!("{}::/marks", dir.display())
}

/// `n` `mark` tasks of `ms` each, run on `fleet` in the background with `options` added.
pub fn run_marks(fleet: &Fleet, n: usize, ms: u64, options: &[&str]) -> Background {
    let jobs = marks(fleet, n, ms);
    let dir = marks_dir(fleet);
    let mut args = vec![
        artifacts::SCENARIO_FLAKY,
        "mark",
        "--inputs",
        path_str(&jobs),
        "--dir",
        &dir,
    ];
    args.extend_from_slice(options);
    Background::start(fleet, &args)
}

/// How many times each tag ran.
pub fn executions(fleet: &Fleet) -> HashMap<String, usize> {
    let log = std::fs::read_to_string(fleet.root.path().join("marks/log")).unwrap_or_default();
    let mut counts = HashMap::new();
    for tag in log.lines() {
        *counts.entry(tag.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Waits (bounded) until `f` holds; never a timing assertion.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run in the background, its rows to a file.
pub struct Background {
    pub child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

impl Background {
    pub fn start(fleet: &Fleet, args: &[&str]) -> Self {
        Self::start_on(&fleet.url(), fleet, args)
    }

    /// As [`Background::start`], through the servers of `url` (credentials, say).
    pub fn start_on(url: &str, fleet: &Fleet, args: &[&str]) -> Self {
        let out = tempfile::NamedTempFile::new_in(fleet.root.path()).unwrap();
        let err = tempfile::NamedTempFile::new_in(fleet.root.path()).unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .args(args)
            .args(["--queue", "nats", "--nats", url, "--output", "jsonl"])
            .env("OSIISO_CACHE_DIR", crate::support::cache_dir())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap())
            .spawn()
            .unwrap();
        Self { child, out, err }
    }

    /// Waits (bounded) for the end; the rows, stderr and exit code.
    pub fn finish(mut self, fleet: &Fleet) -> (Vec<Value>, String, i32) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let logs: Vec<String> = fleet.nodes.iter().map(Node::log).collect();
                panic!(
                    "the run did not end; stderr: {}\nnodes:\n{}",
                    std::fs::read_to_string(self.err.path()).unwrap_or_default(),
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rows = std::fs::read_to_string(self.out.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (
            rows,
            std::fs::read_to_string(self.err.path()).unwrap(),
            code,
        )
    }
}

/// One row per tag, every one `succeeded`; returns the attempts by tag.
pub fn one_success_per_tag(rows: &[Value], n: usize, stderr: &str) -> HashMap<String, u64> {
    assert_eq!(rows.len(), n, "one row per task: {rows:#?}\n{stderr}");
    let mut attempts = HashMap::new();
    for row in rows {
        assert_eq!(status(row), "succeeded", "{row:#}\n{stderr}");
        let tag = row["value"].as_str().unwrap().to_string();
        assert!(
            attempts
                .insert(tag, row["attempts"].as_u64().unwrap())
                .is_none()
        );
    }
    attempts
}
