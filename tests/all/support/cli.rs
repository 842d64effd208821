//! The CLI harness: the real `osiiso-host` binary run as a subprocess on the test binary's
//! compile cache, its outcome (exit status, JSON rows, stderr), and the files tests feed it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_osiiso-host");

/// The documented fields of a result row, in their order (README.md, "The result object"):
/// the one list every test checks rows against.
pub(crate) const RESULT_FIELDS: &[&str] = &[
    "index",
    "id",
    "name",
    "task",
    "status",
    "value",
    "error",
    "message",
    "attempts",
    "priority",
    "group_id",
    "metadata",
    "started_at",
    "finished_at",
    "duration_ms",
    "fuel_consumed",
    "stdout",
    "stderr",
];

/// What one invocation of the binary did.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    /// stderr with ANSI escape sequences removed.
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

impl Outcome {
    /// The JSON lines on stdout (`--output jsonl`).
    pub(crate) fn jsonl(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\n{self:#?}"))
            })
            .collect()
    }

    /// The only JSON line on stdout.
    pub(crate) fn single(&self) -> Value {
        let mut lines = self.jsonl();
        assert_eq!(lines.len(), 1, "expected one result line: {self:#?}");
        lines.pop().unwrap()
    }

    pub(crate) fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit status: {self:#?}");
        self
    }

    /// A usage or load error: exit 2, nothing on stdout, an error message without a panic.
    pub(crate) fn assert_usage_error(&self, needles: &[&str]) -> &Self {
        self.assert_code(2);
        assert!(
            !self.stderr.contains("panicked"),
            "the binary panicked: {self:#?}"
        );
        assert!(
            self.stdout.trim().is_empty(),
            "nothing may run or be printed on a usage error: {self:#?}"
        );
        assert!(
            self.stderr.contains("error"),
            "expected an error message: {self:#?}"
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr should mention {needle:?}: {self:#?}"
            );
        }
        self
    }
}

/// Runs the binary with `args`, the shared compile cache and no inherited log settings.
pub(crate) fn osiiso(args: &[&str]) -> Outcome {
    osiiso_in(args, &crate::support::cache_dir())
}

/// Runs the binary with `args` and extra environment variables.
#[cfg(feature = "nats")]
pub(crate) fn osiiso_env(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    osiiso_with(args, &crate::support::cache_dir(), env)
}

/// Runs the binary with `args` and the compile cache in `cache`.
pub(crate) fn osiiso_in(args: &[&str], cache: &Path) -> Outcome {
    osiiso_with(args, cache, &[])
}

/// The binary as a command on the test binary's shared compile cache, with the tests'
/// compile timeout, no inherited `RUST_LOG` and no colours: the start of a CLI invocation
/// that needs more than [`osiiso`] (its own stdio, a process to signal).
pub(crate) fn command() -> Command {
    command_of(Path::new(BIN), &crate::support::cache_dir())
}

/// [`command`] for `program` (the binary, or a copy of it) and the compile cache `cache`.
pub(crate) fn command_of(program: &Path, cache: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env("OSIISO_COMPILE_TIMEOUT", "15m")
        .env("OSIISO_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    command
}

fn osiiso_with(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Outcome {
    let mut command = command_of(Path::new(BIN), cache);
    command.args(args).envs(env.iter().copied());
    outcome_of(command)
}

/// Runs `command` to its end: its exit code, output and time.
pub(crate) fn outcome_of(mut command: Command) -> Outcome {
    let start = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: strip_ansi(&String::from_utf8_lossy(&output.stderr)),
        elapsed: start.elapsed(),
    }
}

/// Removes `ESC [ ... letter` sequences (log colouring).
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `lines` (one per line) into a file in `dir`.
pub(crate) fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Writes JSON values as a JSONL file.
pub(crate) fn write_jsonl(dir: &Path, name: &str, values: &[Value]) -> PathBuf {
    let lines: Vec<String> = values.iter().map(Value::to_string).collect();
    write_lines(dir, name, &lines)
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

pub(crate) fn status(result: &Value) -> &str {
    result["status"].as_str().expect("status is a string")
}

pub(crate) fn error_kind(result: &Value) -> &str {
    result["error"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("result has no error kind: {result}"))
}
