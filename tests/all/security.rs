//! The trust boundary around the sandbox (SECURITY.md), tried through the real binary as a
//! hostile plugin author would: precompiled native code, planted and swapped cache entries,
//! output files that are not files, lost results, limits that must hold in aggregate,
//! oversized frames, guest text aimed at the terminal, guest output in the result stream,
//! and compile bombs (`security/compile_bombs.rs`).

mod compile_bombs;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use osiiso_host::{CacheOutcome, Host, LoadError};
use osiiso_test_artifacts as artifacts;
use serde_json::Value;

use crate::support::cli::{BIN, error_kind, osiiso, osiiso_in, path_str, status, write_lines};

/// Every queue the CLI offers.
const QUEUES: &[&str] = &["thread", "async", "process"];

/// Runs the binary and returns (exit code, stdout, raw stderr): nothing stripped, so that
/// escape sequences would show.
fn raw(args: &[&str], cache: &Path) -> (i32, Vec<u8>, Vec<u8>) {
    let output = Command::new(BIN)
        .args(args)
        .env("OSIISO_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        output.stderr,
    )
}

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

// ---------------------------------------------------------------------------------------------
// compiled code: precompiled artifacts and the compile cache

#[test]
fn a_precompiled_artifact_named_wasm_is_refused_without_the_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("innocent.wasm");
    let out = osiiso(&["compile", artifacts::ECHO, "-o", path_str(&artifact)]);
    out.assert_code(0);
    for args in [
        vec!["list", path_str(&artifact)],
        vec!["run", path_str(&artifact), "echo", "--input", "1", "-q"],
    ] {
        osiiso(&args).assert_usage_error(&["innocent.wasm", "precompiled", "--allow-precompiled"]);
    }
    // The opt-in, for a trusted file.
    let out = osiiso(&[
        "run",
        path_str(&artifact),
        "echo",
        "--input",
        "5",
        "--allow-precompiled",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(0);
    assert_eq!(out.single()["value"], 5);
}

#[test]
fn crafted_native_code_is_never_deserialized() {
    let dir = tempfile::tempdir().unwrap();
    // Headers of every kind of compiled code, followed by junk: refused as precompiled
    // before anything reads the payload.
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(4096, 0);
    for (name, bytes) in [
        (
            "v1.wasm",
            [b"osiiso-cwasm-v1\0".as_slice(), &[0; 64]].concat(),
        ),
        (
            "v2.wasm",
            [b"osiiso-cwasm-v2\0".as_slice(), &[0; 64]].concat(),
        ),
        (
            "entry.wasm",
            [b"osiiso-cache-v2\0".as_slice(), &[0; 64]].concat(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        osiiso(&["list", path_str(&path)]).assert_usage_error(&[name, "precompiled"]);
    }
    let path = dir.path().join("elf.wasm");
    std::fs::write(&path, &elf).unwrap();
    let out = osiiso(&["list", path_str(&path)]);
    out.assert_code(2);
    assert!(!out.stderr.contains("panicked"), "{out:#?}");
}

#[test]
fn a_swapped_cache_entry_is_rebuilt_and_never_runs_another_plugin() {
    let cache = tempfile::tempdir().unwrap();
    let host = Host::builder().cache_dir(cache.path()).build().unwrap();
    let echo = host.load(artifacts::ECHO).unwrap();
    let score = host.load(artifacts::SCORE).unwrap();
    let [a, b] = crate::support::cache_entries(cache.path())
        .try_into()
        .unwrap();
    let (echo_entry, score_entry) = if a.to_string_lossy().contains(echo.hash()) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(score_entry.to_string_lossy().contains(score.hash()));
    // Copy score's entry over echo's: loading echo must rebuild echo, not run score.
    std::fs::copy(&score_entry, &echo_entry).unwrap();
    let reloaded = host.load(artifacts::ECHO).unwrap();
    assert_eq!(reloaded.cache_outcome(), CacheOutcome::Rebuilt);
    assert_eq!(
        reloaded.tasks().iter().map(|t| &t.name).collect::<Vec<_>>(),
        echo.tasks().iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    // The same through the CLI, with a fresh process.
    std::fs::copy(&score_entry, &echo_entry).unwrap();
    let out = osiiso_in(
        &[
            "list",
            artifacts::ECHO,
            "--cache-dir",
            path_str(cache.path()),
        ],
        cache.path(),
    );
    out.assert_code(0);
    assert!(out.stdout.contains("greet"), "{out:#?}");
    assert!(!out.stdout.contains("score"), "{out:#?}");

    // An entry planted by someone without the key is rebuilt too.
    let mut planted = b"osiiso-cache-v2\0".to_vec();
    planted.extend([0xab; 32]);
    planted.extend(std::fs::read(&score_entry).unwrap().split_off(48));
    std::fs::write(&echo_entry, planted).unwrap();
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Rebuilt
    );
    // The key is the user's alone.
    let key = std::fs::metadata(cache.path().join("key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o077, 0);
}

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    let parent = tempfile::tempdir().unwrap();
    let cache = parent.path().join("shared");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = osiiso_in(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "--output",
            "jsonl",
            "-q",
        ],
        &cache,
    );
    out.assert_code(0);
    assert!(
        out.stderr.contains("not using the compile cache") && out.stderr.contains("shared"),
        "the warning names the directory: {out:#?}"
    );
    assert!(
        crate::support::cache_entries(&cache).is_empty(),
        "nothing was written there"
    );
    let host = Host::builder().cache_dir(&cache).build().unwrap();
    assert!(!host.cache_enabled());
    assert_eq!(
        host.load(artifacts::ECHO).unwrap().cache_outcome(),
        CacheOutcome::Disabled
    );
}

#[test]
fn precompiled_loads_need_the_builder_flag() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::builder().cache(false).build().unwrap();
    let out = dir.path().join("echo.cwasm");
    host.precompile(artifacts::ECHO, Some(&out)).unwrap();
    assert!(matches!(
        host.load(&out),
        Err(LoadError::Precompiled { .. })
    ));
    let trusting = Host::builder()
        .cache(false)
        .allow_precompiled(true)
        .build()
        .unwrap();
    assert_eq!(
        trusting.load(&out).unwrap().cache_outcome(),
        CacheOutcome::Precompiled
    );
}

// ---------------------------------------------------------------------------------------------
// output files and lost results

#[test]
fn compile_output_must_be_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    let subdir = dir.path().join("subdir");
    std::fs::create_dir(&subdir).unwrap();
    let target = dir.path().join("target.txt");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    for (out, what) in [
        (&fifo, "FIFO"),
        (&subdir, "directory"),
        (&link, "symbolic link"),
    ] {
        osiiso(&["compile", artifacts::ECHO, "-o", path_str(out)])
            .assert_usage_error(&["refusing", what]);
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(subdir.is_dir());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

    // A regular file is replaced atomically.
    osiiso(&["compile", artifacts::ECHO, "-o", path_str(&target)]).assert_code(0);
    assert!(
        std::fs::read(&target)
            .unwrap()
            .starts_with(b"osiiso-cwasm-v2\0")
    );
}

/// Runs the binary with stdout on /dev/full.
fn to_dev_full(args: &[&str]) -> (i32, String) {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = Command::new(BIN)
        .args(args)
        .env("OSIISO_CACHE_DIR", crate::support::cache_dir())
        .stdout(Stdio::from(full))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn results_that_cannot_be_written_fail_the_run() {
    for format in ["jsonl", "json", "table"] {
        let (code, stderr) = to_dev_full(&[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "--output",
            format,
            "-q",
        ]);
        assert_ne!(code, 0, "{format}: {stderr}");
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "{format}: {stderr}"
        );
    }
    for args in [
        vec!["list", artifacts::ECHO, "--json"],
        vec!["list", artifacts::ECHO],
        vec!["compile", artifacts::ECHO],
    ] {
        let (code, stderr) = to_dev_full(&args);
        assert_ne!(code, 0, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// limits in aggregate

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

// ---------------------------------------------------------------------------------------------
// the process protocol's frames

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

// ---------------------------------------------------------------------------------------------
// guest text and guest output

#[test]
fn guest_escape_sequences_never_reach_the_terminal() {
    let cache = crate::support::cache_dir();
    for queue in QUEUES {
        let (code, stdout, stderr) = raw(
            &[
                "run",
                artifacts::HOSTILE_TERMINAL,
                "escape",
                "--queue",
                queue,
                "--output",
                "table",
            ],
            &cache,
        );
        assert_eq!(code, 1, "{queue}");
        assert!(!has_escape(&stdout) && !has_escape(&stderr), "{queue}");
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(
            !stderr.lines().any(|l| l.starts_with("forged")),
            "{queue}: a guest message split a line: {stderr}"
        );
        assert!(
            stderr.contains("\\e[2J"),
            "{queue}: shown escaped: {stderr}"
        );

        // Logs, with -v: escaped, and no forged line.
        let (code, _, stderr) = raw(
            &[
                "run",
                artifacts::HOSTILE_TERMINAL,
                "shout",
                "--queue",
                queue,
                "-v",
                "-q",
            ],
            &cache,
        );
        assert_eq!(code, 0, "{queue}");
        assert!(!has_escape(&stderr), "{queue}");
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(
            !stderr.lines().any(|l| l.starts_with("ERROR forged")),
            "{queue}: {stderr}"
        );
    }
    // Names and descriptions in `list`, and a task name in the table.
    let (code, stdout, _) = raw(&["list", artifacts::HOSTILE_TERMINAL], &cache);
    assert_eq!(code, 0);
    assert!(!has_escape(&stdout));
    assert!(String::from_utf8_lossy(&stdout).contains("evil\\e[2Jname"));
    let (_, stdout, stderr) = raw(
        &[
            "run",
            artifacts::HOSTILE_TERMINAL,
            "evil\u{1b}[2Jname",
            "--output",
            "table",
        ],
        &cache,
    );
    assert!(!has_escape(&stdout) && !has_escape(&stderr));
}

#[test]
fn guest_stdout_never_lands_among_result_rows() {
    let cache = crate::support::cache_dir();
    for queue in QUEUES {
        let (code, stdout, stderr) = raw(
            &[
                "run",
                artifacts::HOSTILE_TERMINAL,
                "forge_row",
                "--queue",
                queue,
                "--inherit-stdio",
                "--output",
                "jsonl",
                "-q",
            ],
            &cache,
        );
        assert_eq!(code, 0, "{queue}");
        let stdout = String::from_utf8(stdout).unwrap();
        let rows: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("every stdout line is a result row"))
            .collect();
        assert_eq!(rows.len(), 1, "{queue}: {stdout}");
        assert_ne!(rows[0]["id"], "forged", "{queue}");
        assert!(
            String::from_utf8_lossy(&stderr).contains("\"forged\""),
            "{queue}: the guest's output goes to stderr"
        );
    }
}

#[test]
fn guest_symlinks_cannot_point_outside_their_grant() {
    let cache = crate::support::cache_dir();
    for queue in QUEUES {
        let granted = tempfile::tempdir().unwrap();
        let grant = format!("{}::/data", granted.path().display());
        let (code, stdout, _) = raw(
            &[
                "run",
                artifacts::HOSTILE_SYMLINK_ESCAPE,
                "link",
                "--input",
                r#"{"target": "/etc/passwd", "link": "/data/escape"}"#,
                "--input",
                r#"{"target": "../../etc/passwd", "link": "/data/up"}"#,
                "--dir",
                &grant,
                "--queue",
                queue,
                "--output",
                "jsonl",
                "-q",
            ],
            &cache,
        );
        assert_eq!(code, 1, "{queue}: {}", String::from_utf8_lossy(&stdout));
        assert_eq!(
            std::fs::read_dir(granted.path()).unwrap().count(),
            0,
            "{queue}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// warm instances (`--reuse`)

/// The rows of the secret keeper's `jobs` (JSON lines) run on one worker of `queue` with
/// `extra` flags.
fn secret_keeper_rows(queue: &str, jobs: &[String], extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = write_lines(dir.path(), "jobs.jsonl", jobs);
    let mut args = vec![
        "run",
        artifacts::HOSTILE_SECRET_KEEPER,
        "--jobs",
        path_str(&file),
        "--queue",
        queue,
        "--workers",
        "1",
        "--output",
        "jsonl",
        "-q",
    ];
    args.extend(extra);
    osiiso(&args).jsonl()
}

/// The values of the tasks `jobs` (by name) run on one worker with `extra` flags.
fn counts(queue: &str, jobs: &[&str], extra: &[&str]) -> Vec<Value> {
    let lines: Vec<String> = jobs
        .iter()
        .map(|task| format!(r#"{{"task": "{task}"}}"#))
        .collect();
    secret_keeper_rows(queue, &lines, extra)
        .iter()
        .map(|r| r["value"].clone())
        .collect()
}

#[test]
fn reuse_keeps_state_within_a_plugin_and_a_trap_starts_clean() {
    for queue in QUEUES {
        // The default never shares state between tasks.
        assert_eq!(
            counts(queue, &["count", "count", "count"], &[]),
            [1, 1, 1].map(Value::from),
            "{queue}"
        );
        // Warm: a counter in a global grows across the tasks of one worker...
        assert_eq!(
            counts(queue, &["count", "count", "count"], &["--reuse", "10"]),
            [1, 2, 3].map(Value::from),
            "{queue}"
        );
        // ...a trapping task's successor starts from a clean instance...
        assert_eq!(
            counts(
                queue,
                &["count", "count", "count_and_crash", "count"],
                &["--reuse", "10"]
            ),
            [Value::from(1), Value::from(2), Value::Null, Value::from(1)],
            "{queue}"
        );
        // ...and an instance serves at most N attempts.
        assert_eq!(
            counts(
                queue,
                &["count", "count", "count", "count"],
                &["--reuse", "2"]
            ),
            [1, 2, 1, 2].map(Value::from),
            "{queue}"
        );
    }
}

#[test]
fn a_secret_left_by_one_task_is_not_seen_by_the_next_by_default() {
    let jobs = [
        r#"{"task": "remember", "input": "s3cret"}"#.to_string(),
        r#"{"task": "recall"}"#.to_string(),
    ];
    for queue in QUEUES {
        for (extra, seen) in [
            (&[][..], Value::Null),
            (&["--reuse", "5"][..], Value::from("s3cret")),
        ] {
            let rows = secret_keeper_rows(queue, &jobs, extra);
            let recall = rows.iter().find(|r| r["name"] == "recall").unwrap();
            assert_eq!(recall["value"], seen, "{queue} {extra:?}");
        }
    }
}
