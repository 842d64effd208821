//! The process protocol's frames: oversized frames and log lines, worker memory.

use osiiso_test_artifacts as artifacts;

use super::{QUEUES, raw};
use crate::support::cli::{error_kind, osiiso, path_str, status, write_lines};

#[test]
fn oversized_process_frames_fail_once_and_keep_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    // An input just over the 16 MiB limit, on a jobs line (which has room beyond the limit
    // for its task and options): refused before any worker sees it.
    let big = format!(
        r#"{{"task": "measure", "input": "{}"}}"#,
        "x".repeat((16 << 20) + 1024)
    );
    let small = r#"{"task": "measure", "input": "small"}"#.to_string();
    let inputs = write_lines(dir.path(), "big.jsonl", &[big, small]);
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_OVERSIZED,
        "--jobs",
        path_str(&inputs),
        "--queue",
        "process",
        "--workers",
        "1",
        "--retries",
        "3",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let rows = out.jsonl();
    assert_eq!(rows.len(), 2, "{out:#?}");
    let failed = rows.iter().find(|r| status(r) == "failed").unwrap();
    assert_eq!(error_kind(failed), "invalid_input", "{failed}");
    assert_eq!(failed["attempts"], 1);
    assert!(rows.iter().any(|r| r["value"] == 5));

    // An 80 MiB result: over the frame limit, a serialization failure, not a crash.
    let jobs = write_lines(
        dir.path(),
        "jobs.jsonl",
        &[
            r#"{"task": "big_value", "input": 83886080}"#.into(),
            r#"{"task": "measure", "input": "after"}"#.into(),
        ],
    );
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_OVERSIZED,
        "--jobs",
        path_str(&jobs),
        "--queue",
        "process",
        "--workers",
        "1",
        "--retries",
        "3",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let rows = out.jsonl();
    let failed = rows
        .iter()
        .find(|r| status(r) == "failed")
        .expect("one failure");
    assert_eq!(error_kind(failed), "serialization", "{failed}");
    assert_eq!(failed["attempts"], 1, "not retried");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("frame limit")
    );
    assert!(
        rows.iter().any(|r| r["value"] == 5),
        "the worker went on: {out:#?}"
    );
}

#[test]
fn an_oversized_log_line_is_cut_and_says_so() {
    let cache = crate::support::cache_dir();
    for queue in QUEUES {
        let (code, _, stderr) = raw(
            &[
                "run",
                artifacts::HOSTILE_OVERSIZED,
                "big_log",
                "--input",
                "200000",
                "--queue",
                queue,
                "-v",
                "-q",
                "--output",
                "jsonl",
            ],
            &cache,
        );
        assert_eq!(code, 0, "{queue}");
        let stderr = String::from_utf8_lossy(&stderr);
        let line = stderr
            .lines()
            .find(|l| l.contains("llll"))
            .expect("the log line");
        assert!(line.len() < 16 << 10, "{queue}: {} bytes", line.len());
        assert!(
            line.contains("truncated: 200000 bytes"),
            "{queue}: {}",
            &line[line.len() - 80..]
        );
    }
}

#[test]
fn worker_memory_leaves_room_for_a_big_honest_task() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_OVERSIZED,
        "allocate",
        "--input",
        "200",
        "--queue",
        "process",
        "--worker-memory",
        "512MiB",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(0);
    assert_eq!(status(&out.single()), "succeeded", "{out:#?}");
    // Over the cap, it fails as a memory limit, not as a crash.
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_OVERSIZED,
        "allocate",
        "--input",
        "600",
        "--queue",
        "process",
        "--worker-memory",
        "512MiB",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    assert_eq!(error_kind(&out.single()), "memory_limit", "{out:#?}");
}

/// A small `--worker-memory` caps the worker, not its compile process (held to the compile
/// memory limit instead): with an empty cache, a worker capped at 128 MiB compiles and runs
/// its plugin. Under a hard cap, which the compile process inherited, nothing below about
/// 256 MiB compiled, and the error blamed the compile memory limit.
#[test]
fn a_small_worker_memory_caps_the_worker_not_its_compiler() {
    let cache = tempfile::tempdir().unwrap();
    let out = crate::support::cli::osiiso_in(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "9",
            "--queue",
            "process",
            "--worker-memory",
            "128MiB",
            "--output",
            "jsonl",
            "-q",
        ],
        cache.path(),
    );
    out.assert_code(0);
    let row = out.single();
    assert_eq!(status(&row), "succeeded", "{row:#}");
    assert_eq!(row["value"], serde_json::json!(9));
}
