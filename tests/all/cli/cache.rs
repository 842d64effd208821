//! The compile cache through the CLI: hits on the second run, nothing written with `--no-cache`.

use std::path::{Path, PathBuf};

use osiiso_test_artifacts as artifacts;

use crate::support::cli::{osiiso_in, path_str};

/// Every `*.cwasm` file under `dir`, recursively.
fn cwasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "cwasm") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn second_run_hits_the_compile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "run",
        artifacts::ECHO,
        "echo",
        "--input",
        "7",
        "--output",
        "jsonl",
        "-q",
        "-v",
        "--cache-dir",
        path_str(cache.path()),
    ];

    let first = osiiso_in(&args, cache.path());
    first.assert_code(0);
    assert_eq!(first.single()["value"], 7);
    assert!(first.stderr.contains("plugin compiled"), "{first:#?}");
    assert!(first.stderr.contains("cache=Miss"), "{first:#?}");
    assert!(!first.stderr.contains("cache=Hit"), "{first:#?}");
    let entries = cwasm_files(cache.path());
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    assert_ne!(
        entries[0].parent().unwrap(),
        cache.path(),
        "the entry lives in a subdirectory"
    );

    let second = osiiso_in(&args, cache.path());
    second.assert_code(0);
    assert_eq!(second.single()["value"], 7);
    assert!(second.stderr.contains("plugin compiled"), "{second:#?}");
    assert!(second.stderr.contains("cache=Hit"), "{second:#?}");
    assert!(!second.stderr.contains("cache=Miss"), "{second:#?}");
    assert_eq!(cwasm_files(cache.path()), entries, "no new entry");
}

#[test]
fn no_cache_writes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let out = osiiso_in(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "--no-cache",
            "--output",
            "jsonl",
            "-q",
            "--cache-dir",
            path_str(cache.path()),
        ],
        cache.path(),
    );
    out.assert_code(0);
    assert!(cwasm_files(cache.path()).is_empty());
}
