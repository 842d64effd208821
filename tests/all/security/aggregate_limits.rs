//! Limits that must hold in aggregate: workers, file sizes, the memory budget, listing.

use osiiso_test_artifacts as artifacts;

use super::QUEUES;
use crate::support::cli::{error_kind, osiiso, path_str, write_lines};

#[test]
fn an_absurd_worker_count_is_refused_on_every_queue() {
    for queue in QUEUES {
        let out = osiiso(&[
            "run",
            artifacts::ECHO,
            "echo",
            "--queue",
            queue,
            "--workers",
            "1000000000",
        ]);
        out.assert_usage_error(&["--workers", "workers must be <="]);
        assert!(out.elapsed.as_secs() < 10, "{out:#?}");
    }
}

#[test]
fn plugin_and_inputs_files_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // A line that never ends is refused at the line limit, not read into memory whole.
    let out = osiiso(&["run", artifacts::ECHO, "echo", "--inputs", "/dev/zero"]);
    out.assert_usage_error(&["/dev/zero", "line 1", "limit"]);
    let out = osiiso(&["list", "/dev/zero"]);
    out.assert_usage_error(&["/dev/zero", "limit"]);
    // A sparse file over the plugin limit is refused by its size.
    let big = dir.path().join("big.wasm");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(300 << 20).unwrap();
    osiiso(&["list", path_str(&big)]).assert_usage_error(&["big.wasm", "256 MiB"]);
    // Bytes an embedder hands over are held to the same limit.
    let host = osiiso_host::Host::builder()
        .max_plugin_bytes(1 << 10)
        .build()
        .unwrap();
    let bytes = std::fs::read(artifacts::ECHO).unwrap();
    let error = host.load_bytes("echo", &bytes).unwrap_err();
    assert!(
        matches!(error, osiiso_host::LoadError::TooLarge { limit: 1024, .. }),
        "{error}"
    );
}

#[test]
fn the_total_memory_budget_bounds_concurrent_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_lines(dir.path(), "bombs.jsonl", &vec!["null".to_string(); 8]);
    for queue in ["thread", "async"] {
        let out = osiiso(&[
            "run",
            artifacts::HOSTILE_MEMORY_BOMB,
            "bomb",
            "--inputs",
            path_str(&inputs),
            "--queue",
            queue,
            "--workers",
            "8",
            "--max-memory",
            "256MiB",
            "--total-memory",
            "128MiB",
            "--output",
            "jsonl",
            "-q",
        ]);
        out.assert_code(1);
        let rows = out.jsonl();
        assert_eq!(rows.len(), 8, "{queue}: every task has its row");
        for row in &rows {
            assert_eq!(error_kind(row), "memory_limit", "{queue}: {row}");
        }
    }
}

#[test]
fn the_memory_cap_holds_already_when_listing() {
    // `list` runs under the caller's memory cap: a cap too small for any instance fails the
    // load instead of letting it run uncapped.
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "echo",
        "--max-memory",
        "64KiB",
        "-q",
    ]);
    out.assert_usage_error(&["echo"]);
}
