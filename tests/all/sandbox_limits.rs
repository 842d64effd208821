//! What the host spends on a guest's filesystem and network calls, through the real binary on
//! every queue: a FIFO in a grant never blocks a worker (timeouts and the first SIGTERM still
//! end the run), a descriptor hog cannot starve the tasks beside it, and directory listings
//! are not copied into host memory.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::hostile::mkfifo;
use crate::support::cli::{BIN, error_kind, path_str, status, write_jsonl};

/// Every queue the CLI offers.
const QUEUES: &[&str] = &["thread", "async", "process"];

/// Long enough for any of these runs on a loaded machine; a run still going then is stuck.
const STUCK: Duration = Duration::from_secs(120);

/// A running `osiiso-host`, its output read as it comes.
struct Run {
    child: Child,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

/// What a finished run did.
struct Finished {
    code: i32,
    rows: Vec<Value>,
    stderr: String,
}

impl Run {
    fn start(args: &[&str]) -> Self {
        Self::start_with(args, Command::new(BIN))
    }

    /// With the soft and hard `RLIMIT_NOFILE` both at `limit`.
    fn start_with_open_files(args: &[&str], limit: u64) -> Self {
        let mut command = Command::new(BIN);
        // SAFETY: setrlimit is async-signal-safe; it only touches the child.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::start_with(args, command)
    }

    fn start_with(args: &[&str], mut command: Command) -> Self {
        let mut child = command
            .args(args)
            .env("OSIISO_CACHE_DIR", crate::support::cache_dir())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let read_all = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = read_all(Box::new(child.stdout.take().unwrap()));
        let stderr = read_all(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// The peak resident memory of the process so far, in KiB (`VmHWM`: of this program
    /// alone, unlike `ru_maxrss`, which also counts the test process it was spawned from).
    fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"))
    }

    /// Waits for the run to end; one still running after [`STUCK`] is killed (its whole
    /// process group) and fails the test.
    fn finish(mut self) -> Finished {
        let started = Instant::now();
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if started.elapsed() > STUCK {
                // SAFETY: killing our own child's process group.
                unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
                panic!("the run is stuck after {STUCK:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.join().unwrap();
        let rows = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a row ({e}): {l}")))
            .collect();
        Finished {
            code,
            rows,
            stderr: self.stderr.join().unwrap(),
        }
    }
}

fn run(args: &[&str]) -> Finished {
    Run::start(args).finish()
}

/// A granted directory with a FIFO nobody writes to and a regular file.
fn fifo_grant() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("fifo"));
    std::fs::write(dir.path().join("ok.txt"), "fine").unwrap();
    dir
}

fn grant(dir: &Path) -> String {
    format!("{}::/g", dir.display())
}

#[test]
fn a_fifo_in_a_grant_never_blocks_a_worker() {
    let dir = fifo_grant();
    let grant = grant(dir.path());
    for queue in QUEUES {
        let done = run(&[
            "run",
            artifacts::HOSTILE_SPECIAL_FILES,
            "read",
            "--input",
            "\"/g/fifo\"",
            "--input",
            "\"/g/fifo\"",
            "--input",
            "\"/g/ok.txt\"",
            "--input",
            "\"/g/ok.txt\"",
            "--dir",
            &grant,
            "--timeout",
            "2s",
            "--queue",
            queue,
            "--workers",
            "2",
            "--output",
            "jsonl",
        ]);
        assert_eq!(done.code, 1, "{queue}: {}", done.stderr);
        assert_eq!(
            done.rows.len(),
            4,
            "{queue}: a row per task: {}",
            done.stderr
        );
        for row in &done.rows {
            if row["value"] == json!(4) {
                assert_eq!(status(row), "succeeded", "{queue}: {row}");
            } else {
                assert_eq!(error_kind(row), "permanent", "{queue}: {row}");
                let message = row["error"]["message"].as_str().unwrap();
                assert!(message.contains("not permitted"), "{queue}: {row}");
            }
        }
        assert_eq!(
            done.rows
                .iter()
                .filter(|r| status(r) == "succeeded")
                .count(),
            2,
            "{queue}"
        );
    }
}

#[test]
fn the_first_sigterm_ends_a_run_that_met_a_fifo() {
    let dir = fifo_grant();
    let grant = grant(dir.path());
    let mut jobs = vec![json!({"task": "read", "input": "/g/fifo"}); 2];
    jobs.extend(vec![json!({"task": "sleep", "input": 20_000}); 4]);
    let jobs = write_jsonl(dir.path(), "jobs.jsonl", &jobs);
    for queue in QUEUES {
        let run = Run::start(&[
            "run",
            artifacts::HOSTILE_SPECIAL_FILES,
            "--jobs",
            path_str(&jobs),
            "--dir",
            &grant,
            "--queue",
            queue,
            "--workers",
            "2",
            "--output",
            "jsonl",
        ]);
        // Let the FIFO tasks meet their FIFO and the sleepers start.
        std::thread::sleep(Duration::from_millis(1500));
        run.signal(libc::SIGTERM);
        let done = run.finish();
        assert_eq!(done.code, 143, "{queue}: {}", done.stderr);
        assert_eq!(
            done.rows.len(),
            6,
            "{queue}: a row per task: {}",
            done.stderr
        );
        assert!(
            done.rows
                .iter()
                .all(|r| matches!(status(r), "failed" | "cancelled")),
            "{queue}: {:?}",
            done.rows
        );
    }
}

#[test]
fn four_ordinary_tasks_beside_a_descriptor_hog_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let grant = grant(dir.path());
    // The hog opens all it can and holds it; the others start while it holds.
    let mut jobs = vec![json!({
        "task": "files",
        "name": "hog",
        "input": {"path": "/g/f", "count": 1_000_000, "hold_ms": 1500},
    })];
    jobs.extend(vec![
        json!({
            "task": "files",
            "input": {"path": "/g/f", "count": 20},
            "delay": 0.5,
        });
        4
    ]);
    let jobs = write_jsonl(dir.path(), "jobs.jsonl", &jobs);
    for queue in QUEUES {
        let done = run(&[
            "run",
            artifacts::HOSTILE_FD_HOG,
            "--jobs",
            path_str(&jobs),
            "--dir-ro",
            &grant,
            "--queue",
            queue,
            "--workers",
            "5",
            "--output",
            "jsonl",
        ]);
        assert_eq!(done.code, 1, "{queue}: {}", done.stderr);
        assert_eq!(done.rows.len(), 5, "{queue}: {}", done.stderr);
        for row in &done.rows {
            if row["name"] == "hog" {
                assert_eq!(error_kind(row), "resource_limit", "{queue}: {row}");
                let message = row["error"]["message"].as_str().unwrap();
                assert!(message.contains("256 open files"), "{queue}: {row}");
                assert_eq!(row["attempts"], 1, "{queue}: not retried: {row}");
            } else {
                assert_eq!(status(row), "succeeded", "{queue}: {row}");
                assert_eq!(row["value"], 20, "{queue}: {row}");
            }
        }
    }
}

#[test]
fn guests_together_leave_the_host_descriptors_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let grant = grant(dir.path());
    // A hog whose own budget is no limit takes the whole pool the process gives guests; the
    // others still load and start (their instances and grants are the host's descriptors).
    let mut jobs = vec![json!({
        "task": "files",
        "name": "hog",
        "input": {"path": "/g/f", "count": 1_000_000, "hold_ms": 1500},
    })];
    jobs.extend(vec![
        json!({"task": "files", "input": {"path": "/g/f", "count": 0}, "delay": 0.5});
        4
    ]);
    let jobs = write_jsonl(dir.path(), "jobs.jsonl", &jobs);
    for queue in QUEUES {
        let args = [
            "run",
            artifacts::HOSTILE_FD_HOG,
            "--jobs",
            path_str(&jobs),
            "--dir-ro",
            &grant,
            "--max-open-files",
            "100000",
            "--queue",
            queue,
            "--workers",
            "5",
            "--output",
            "jsonl",
        ];
        let done = Run::start_with_open_files(&args, 600).finish();
        assert_eq!(done.code, 1, "{queue}: {}", done.stderr);
        assert_eq!(done.rows.len(), 5, "{queue}: {}", done.stderr);
        for row in &done.rows {
            if row["name"] == "hog" {
                assert_eq!(error_kind(row), "resource_limit", "{queue}: {row}");
                let message = row["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains("descriptors the host gives all attempts together"),
                    "{queue}: {row}"
                );
            } else {
                assert_eq!(status(row), "succeeded", "{queue}: {row}");
            }
        }
    }
}

#[test]
fn directory_listings_are_streamed_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let entries = 20_000;
    for n in 0..entries {
        let name = format!("{n:06}-{}", "x".repeat(200));
        std::fs::File::create(dir.path().join(name)).unwrap();
    }
    let grant = grant(dir.path());
    let listed = run(&[
        "run",
        artifacts::HOSTILE_FD_HOG,
        "list",
        "--input",
        "\"/g\"",
        "--dir-ro",
        &grant,
        "--output",
        "jsonl",
    ]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.rows[0]["value"], entries);
    // Eighty listings held at once (within the descriptor budget): copies of the listing took
    // 430 MB of host memory; streams hold a read buffer each (the whole run: about 30 MB).
    let handshake = tempfile::tempdir().unwrap();
    let handshake_grant = format!("{}::/handshake", handshake.path().display());
    let input = json!({"path": "/g", "count": 80, "handshake": "/handshake"}).to_string();
    let held = Run::start(&[
        "run",
        artifacts::HOSTILE_FD_HOG,
        "listings",
        "--input",
        &input,
        "--dir-ro",
        &grant,
        "--dir",
        &handshake_grant,
        "--max-memory",
        "32MiB",
        "--output",
        "jsonl",
    ]);
    let started = Instant::now();
    while !handshake.path().join("holding").exists() {
        assert!(started.elapsed() < STUCK, "the listings never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let peak = held.peak_memory_kib();
    std::fs::write(handshake.path().join("release"), "").unwrap();
    let held = held.finish();
    assert_eq!(held.code, 0, "{}", held.stderr);
    assert_eq!(held.rows[0]["value"], 80);
    assert!(peak < 128 << 10, "host memory: {peak} KiB");
}

/// A node runs attempts like the thread queue: a FIFO in a grant is refused there too, at
/// once (unguarded, the submitter saw a timeout and the node lost the slot for good).
#[cfg(feature = "nats")]
#[test]
fn a_fifo_in_a_grant_never_blocks_a_node() {
    let Some(fleet) = crate::nats_fixture::shared_fleet() else {
        return;
    };
    // Inside the nodes' --allow-dir.
    let dir = tempfile::tempdir_in(fleet.root.path()).unwrap();
    mkfifo(&dir.path().join("fifo"));
    let grant = grant(dir.path());
    let url = fleet.url();
    let done = run(&[
        "run",
        artifacts::HOSTILE_SPECIAL_FILES,
        "read",
        "--input",
        "\"/g/fifo\"",
        "--dir",
        &grant,
        "--timeout",
        "2s",
        "--queue",
        "nats",
        "--nats",
        &url,
        "--output",
        "jsonl",
    ]);
    assert_eq!(done.code, 1, "{}", done.stderr);
    let [row] = done.rows.as_slice() else {
        panic!("one row: {:?} {}", done.rows, done.stderr);
    };
    assert_eq!(error_kind(row), "permanent", "{row}");
    assert!(
        row["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not permitted"),
        "{row}"
    );
}
