//! Long runs as operators live them, through the real binary: Ctrl-C and SIGTERM, a reader
//! that goes away, streaming stdin, and resuming from a checkpoint after `kill -9`.

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use osiiso_test_artifacts as artifacts;
use serde_json::Value;

use crate::support::cli::{path_str, status, write_lines};

/// Every queue the CLI offers.
const QUEUES: &[&str] = &["thread", "async", "process"];

fn spawn(args: &[&str], stdin: Stdio) -> Child {
    crate::support::cli::command()
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, as a shell gives a foreground job.
        .process_group(0)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: i32, group: bool) {
    let pid = child.id() as i32;
    // SAFETY: signalling our own child (or its process group).
    unsafe { libc::kill(if group { -pid } else { pid }, signal) };
}

/// The rows, the stderr and the exit code of a finished child.
fn finish(child: Child) -> (Vec<Value>, String, i32) {
    let output = child.wait_with_output().unwrap();
    let rows = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a row ({e}): {l}")))
        .collect();
    (
        rows,
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

/// Waits until `child` has written at least one row... without reading it: a short sleep
/// loop on the clock of the run. Signals are sent once work is running.
fn wait_until_started() {
    std::thread::sleep(Duration::from_millis(1200));
}

/// The worker subprocesses of `child` now.
fn workers_of(child: &Child) -> Vec<i32> {
    let out = Command::new("pgrep")
        .args(["-P", &child.id().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|pid| pid.trim().parse().ok())
        .collect()
}

/// Whether any of `pids` still runs (after its parent exited and a moment passed). A zombie
/// has exited: it only waits for whoever adopted it (init, once its parent is gone) to reap
/// it, which may take any time.
fn left_behind(pids: &[i32]) -> Vec<i32> {
    std::thread::sleep(Duration::from_millis(300));
    pids.iter()
        .copied()
        .filter(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) STATE ...`; no file: gone.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state.is_some_and(|state| state != "Z" && state != "X")
        })
        .collect()
}

/// Compiles the sleeping guest into the shared cache for `queue`'s engine settings, so that a
/// run spawned next starts in milliseconds and a signal sent [`wait_until_started`] later finds
/// its tasks running, however slow a first compile is on this machine.
fn warm_up(queue: &str) {
    crate::support::cli::osiiso(&[
        "run",
        artifacts::SCENARIO_FLAKY,
        "sleep",
        "--input",
        "0",
        "--queue",
        queue,
        "-q",
    ])
    .assert_code(0);
}

fn sleepers(dir: &Path, n: usize, ms: u64) -> std::path::PathBuf {
    write_lines(dir, "sleepers.jsonl", &vec![ms.to_string(); n])
}

#[test]
fn ctrl_c_and_sigterm_end_every_task_with_a_row_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = sleepers(dir.path(), 20, 500);
    for queue in QUEUES {
        warm_up(queue);
        for (sig, code, group) in [(libc::SIGINT, 130, true), (libc::SIGTERM, 143, false)] {
            let child = spawn(
                &[
                    "run",
                    artifacts::SCENARIO_FLAKY,
                    "sleep",
                    "--inputs",
                    path_str(&inputs),
                    "--queue",
                    queue,
                    "--workers",
                    "2",
                    "--output",
                    "jsonl",
                ],
                Stdio::null(),
            );
            wait_until_started();
            let workers = workers_of(&child);
            if *queue == "process" {
                assert!(!workers.is_empty(), "the process queue has its workers");
            }
            let sent = Instant::now();
            signal(&child, sig, group);
            let (rows, stderr, exit) = finish(child);
            assert!(sent.elapsed() < Duration::from_secs(10), "generous bound");
            assert_eq!(exit, code, "{queue} {sig}: {stderr}");
            assert_eq!(rows.len(), 20, "{queue}: one row per task: {stderr}");
            assert!(
                rows.iter()
                    .all(|r| matches!(status(r), "succeeded" | "cancelled")),
                "{queue}"
            );
            assert!(rows.iter().any(|r| status(r) == "cancelled"), "{queue}");
            assert!(stderr.contains("Run Summary"), "{queue}: {stderr}");
            assert!(stderr.contains("interrupted"), "{queue}: {stderr}");
            assert_eq!(
                left_behind(&workers),
                [0; 0],
                "{queue}: no worker left behind"
            );
        }
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = sleepers(dir.path(), 20, 5000);
    warm_up("process");
    let child = spawn(
        &[
            "run",
            artifacts::SCENARIO_FLAKY,
            "sleep",
            "--inputs",
            path_str(&inputs),
            "--queue",
            "process",
            "--workers",
            "2",
        ],
        Stdio::null(),
    );
    wait_until_started();
    let workers = workers_of(&child);
    assert!(!workers.is_empty());
    signal(&child, libc::SIGINT, false);
    signal(&child, libc::SIGINT, false);
    let (_, stderr, exit) = finish(child);
    assert_eq!(exit, 130, "{stderr}");
    assert_eq!(left_behind(&workers), [0; 0], "no worker left behind");
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_lines(
        dir.path(),
        "inputs.jsonl",
        &(0..50_000).map(|i| i.to_string()).collect::<Vec<_>>(),
    );
    for queue in QUEUES {
        let mut child = spawn(
            &[
                "run",
                artifacts::DOUBLE,
                "--inputs",
                path_str(&inputs),
                "--queue",
                queue,
                "--workers",
                "2",
                "--output",
                "jsonl",
            ],
            Stdio::null(),
        );
        let started = Instant::now();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        drop(stdout);
        let (_, stderr, exit) = finish(child);
        assert_ne!(exit, 0, "{queue}");
        assert_eq!(exit, 141, "{queue}: {stderr}");
        assert!(
            stderr.trim().is_empty(),
            "{queue}: no error flood: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "generous bound"
        );
    }
}

#[test]
fn infinite_mode_answers_each_line_as_it_arrives() {
    for queue in QUEUES {
        let mut child = spawn(
            &[
                "run",
                artifacts::DOUBLE,
                "--inputs",
                "-",
                "--mode",
                "infinite",
                "--queue",
                queue,
                "--size",
                "2",
                "--output",
                "jsonl",
                "-q",
            ],
            Stdio::piped(),
        );
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        for i in 0..5 {
            writeln!(stdin, "{i}").unwrap();
            stdin.flush().unwrap();
            // The row comes while stdin is still open: the read would hang otherwise.
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let row: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(row["value"], i * 2, "{queue}");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(stdin);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        assert!(rest.trim().is_empty(), "{queue}: {rest}");
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "{queue}: closing stdin ends the run"
        );
    }
}

#[test]
fn infinite_mode_reads_jobs_and_reports_bad_lines() {
    let mut child = spawn(
        &[
            "run",
            artifacts::ECHO,
            "--jobs",
            "-",
            "--mode",
            "infinite",
            "--output",
            "jsonl",
            "-q",
        ],
        Stdio::piped(),
    );
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, r#"{{"task": "echo", "input": 1}}"#).unwrap();
    writeln!(stdin, "not json").unwrap();
    writeln!(stdin, r#"{{"task": "add", "input": [2, 3]}}"#).unwrap();
    drop(stdin);
    let (rows, stderr, exit) = finish(child);
    assert_eq!(rows.len(), 2, "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("skipped"),
        "{stderr}"
    );
    assert_eq!(exit, 1, "a skipped line makes the run fail");
}

#[test]
fn a_checkpointed_run_killed_halfway_resumes_without_running_successes_twice() {
    let marks = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.sqlite");
    let inputs = write_lines(
        dir.path(),
        "inputs.jsonl",
        &(0..20)
            .map(|i| format!(r#"{{"tag": "t{i}", "ms": 200}}"#))
            .collect::<Vec<_>>(),
    );
    let grant = format!("{}::/marks", marks.path().display());
    let args = [
        "run",
        artifacts::SCENARIO_FLAKY,
        "mark",
        "--inputs",
        path_str(&inputs),
        "--dir",
        &grant,
        "--workers",
        "2",
        "--output",
        "jsonl",
        "--checkpoint",
        path_str(&checkpoint),
    ];
    // Killed as soon as its first row is out: some tasks done, most not, whatever the load.
    let mut child = spawn(&args, Stdio::null());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    signal(&child, libc::SIGKILL, false);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    child.wait().unwrap();
    let first: Vec<Value> = line
        .lines()
        .chain(rest.lines())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a row ({e}): {l}")))
        .collect();
    let done_first: Vec<&Value> = first
        .iter()
        .filter(|r| status(r) == "succeeded")
        .map(|r| &r["value"])
        .collect();
    assert!(
        !done_first.is_empty() && done_first.len() < 20,
        "killed halfway"
    );

    let (second, stderr, exit) = finish(spawn(&args, Stdio::null()));
    assert_eq!(exit, 0, "{stderr}");
    assert_eq!(second.len(), 20, "every input has its row");
    let restored: Vec<&Value> = second
        .iter()
        .filter(|r| r["attempts"] == 0)
        .map(|r| {
            assert_eq!(r["message"], "restored from checkpoint");
            assert_eq!(status(r), "succeeded");
            &r["value"]
        })
        .collect();
    assert_eq!(restored.len(), done_first.len(), "{stderr}");
    let log = std::fs::read_to_string(marks.path().join("log")).unwrap();
    for tag in &restored {
        let runs = log.lines().filter(|l| tag.as_str() == Some(*l)).count();
        assert_eq!(runs, 1, "{tag} succeeded once and was not run again");
    }
}

#[test]
fn a_checkpoint_reruns_failed_tasks_and_refuses_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.sqlite");
    let jobs = write_lines(
        dir.path(),
        "jobs.jsonl",
        &[
            r#"{"task": "echo", "input": "kept"}"#.into(),
            r#"{"task": "fail", "input": "permanent"}"#.into(),
        ],
    );
    let args = [
        "run",
        artifacts::ECHO,
        "--jobs",
        path_str(&jobs),
        "--output",
        "jsonl",
        "-q",
        "--checkpoint",
        path_str(&checkpoint),
    ];
    for round in 0..2 {
        let (rows, _, exit) = finish(spawn(&args, Stdio::null()));
        assert_eq!(exit, 1);
        let kept = rows.iter().find(|r| r["name"] == "echo").unwrap();
        assert_eq!(kept["attempts"], if round == 0 { 1 } else { 0 });
        let failed = rows.iter().find(|r| r["name"] == "fail").unwrap();
        assert_eq!(failed["attempts"], 1, "a failed task runs again");
    }

    let foreign = dir.path().join("foreign.sqlite");
    std::fs::write(&foreign, "not a database").unwrap();
    let (rows, stderr, exit) = finish(spawn(
        &[
            "run",
            artifacts::ECHO,
            "echo",
            "--checkpoint",
            path_str(&foreign),
        ],
        Stdio::null(),
    ));
    assert_eq!(exit, 2);
    assert!(rows.is_empty());
    assert!(stderr.contains("foreign.sqlite"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "not a database");
}

#[test]
fn result_rows_keep_the_documented_key_order_and_logs_have_no_colour() {
    let out = crate::support::cli::command()
        .args([
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            "1",
            "-v",
            "--output",
            "jsonl",
        ])
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let keys = crate::support::cli::RESULT_FIELDS;
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            line.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k}: {line}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
    assert!(
        !out.stderr.contains(&0x1b),
        "no ANSI colour when stderr is not a terminal"
    );
}
