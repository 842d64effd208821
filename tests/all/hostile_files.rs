//! Files the user points the CLI at, crafted by someone else (SECURITY.md, "Inputs and jobs
//! files"): checkpoints with triggers, views and extra objects, checkpoints a guest can
//! reach through a grant, checkpoints that are not files; inputs files with over-long lines,
//! NUL bytes, invalid UTF-8, deep nesting, huge numbers, devices, FIFOs and directories.
//! Every case ends within a bound, with exit 2 and a message naming the file, or with one
//! result per line.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use osiiso_test_artifacts as artifacts;
use rusqlite::Connection;

use crate::support::cli::{BIN, Outcome, osiiso, path_str, strip_ansi};

/// Runs the binary, killing it after `limit`: a hang fails the test instead of hanging it.
fn bounded(args: &[&str], limit: Duration) -> Outcome {
    let start = Instant::now();
    let mut child = crate::support::cli::command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained on threads, so that a full pipe never blocks the child.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`osiiso-host {}` still ran after {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code,
        stdout: stdout.join().unwrap(),
        stderr: strip_ansi(&stderr.join().unwrap()),
        elapsed: start.elapsed(),
    }
}

/// The table a checkpoint holds, exactly as osiiso creates it.
const COMPLETIONS: &str = "CREATE TABLE completions (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB,
    encoding TEXT NOT NULL,
    name TEXT,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID";

/// A checkpoint file with the right table plus `extra` SQL, and one forged completion of
/// `double` on input 1.
fn crafted_checkpoint(path: &Path, extra: &str) {
    let db = Connection::open(path).unwrap();
    db.execute_batch(COMPLETIONS).unwrap();
    db.execute(
        "INSERT INTO completions VALUES ('double/double', '1', CAST('\"forged\"' AS BLOB), 'json', 'double', 0)",
        [],
    )
    .unwrap();
    db.execute_batch(extra).unwrap();
}

/// Objects a checkpoint never holds; the first is a trigger that never ends.
const CRAFTED: &[(&str, &str)] = &[
    (
        "trigger",
        "CREATE TRIGGER spin AFTER INSERT ON completions BEGIN
             SELECT count(*) FROM (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)
                                   SELECT n FROM r);
         END;",
    ),
    (
        "view",
        "CREATE VIEW spin AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)
         SELECT n FROM r;",
    ),
    ("index", "CREATE INDEX spin ON completions (value);"),
    ("table", "CREATE TABLE spin (x);"),
];

#[test]
fn a_crafted_checkpoint_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, sql) in CRAFTED {
        let path = dir.path().join(format!("{kind}.sqlite"));
        crafted_checkpoint(&path, sql);
        let before = std::fs::read(&path).unwrap();
        let out = bounded(
            &[
                "run",
                artifacts::DOUBLE,
                "--input",
                "1",
                "--input",
                "2",
                "--output",
                "jsonl",
                "--checkpoint",
                path_str(&path),
            ],
            Duration::from_secs(60),
        );
        out.assert_usage_error(&[&format!("{kind}.sqlite"), "not an osiiso checkpoint", kind]);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{kind}: left as it is"
        );
    }
}

#[test]
fn a_checkpoint_a_guest_could_reach_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let granted = root.path().join("granted");
    std::fs::create_dir_all(granted.join("sub")).unwrap();
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // A symbolic link outside every grant to a checkpoint inside one.
    let inner = granted.join("linked.sqlite");
    Connection::open(&inner)
        .unwrap()
        .execute_batch(COMPLETIONS)
        .unwrap();
    let link = outside.join("link.sqlite");
    std::os::unix::fs::symlink(&inner, &link).unwrap();
    let dotdot = granted.join("sub/../new.sqlite");
    // SQLite drops `missing/..` without looking for `missing`.
    let missing = granted.join("missing/../new.sqlite");
    let direct = granted.join("sub/new.sqlite");
    for (flag, checkpoint) in [
        ("--dir", &direct),
        ("--dir-ro", &direct),
        ("--dir", &dotdot),
        ("--dir", &missing),
        ("--dir-ro", &link),
    ] {
        let grant = format!("{}::/data", granted.display());
        let out = osiiso(&[
            "run",
            artifacts::DOUBLE,
            "--input",
            "1",
            flag,
            &grant,
            "--checkpoint",
            path_str(checkpoint),
        ]);
        out.assert_usage_error(&["--checkpoint", "granted", flag]);
        assert!(!direct.exists() && !granted.join("new.sqlite").exists());
    }
    // A checkpoint beside the grant, not in it, is fine.
    let beside = root.path().join("beside.sqlite");
    let grant = format!("{}::/data", granted.display());
    let out = osiiso(&[
        "run",
        artifacts::DOUBLE,
        "--input",
        "1",
        "--dir",
        &grant,
        "--checkpoint",
        path_str(&beside),
        "--output",
        "jsonl",
    ]);
    out.assert_code(0);
    assert_eq!(out.single()["value"], 2);
}

#[test]
fn a_checkpoint_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.sqlite");
    let c_path = std::ffi::CString::new(path_str(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let dangling = dir.path().join("dangling.sqlite");
    std::os::unix::fs::symlink(dir.path().join("nowhere/x.sqlite"), &dangling).unwrap();
    for (path, needle) in [
        (fifo.as_path(), "fifo.sqlite"),
        (dir.path(), "not a regular file"),
        (dangling.as_path(), "dangling.sqlite"),
    ] {
        let out = bounded(
            &[
                "run",
                artifacts::DOUBLE,
                "--input",
                "1",
                "--checkpoint",
                path_str(path),
            ],
            Duration::from_secs(60),
        );
        out.assert_usage_error(&[needle]);
    }
}

// ---------------------------------------------------------------------------------------------
// inputs files

/// Runs the binary and returns its outcome and its own peak RSS in bytes.
///
/// The binary is started by a small Python process, not by this test process: Linux counts the
/// memory of the process that exec'd into a program in that program's `ru_maxrss`, and this
/// test process can hold a gigabyte while other tests run. Without `python3` the peak is
/// `None` and the caller skips its memory assertion.
fn measured(args: &[&str], stdin: Stdio) -> (Outcome, Option<u64>) {
    const SHIM: &str = "import resource, subprocess, sys\n\
        code = subprocess.run(sys.argv[2:]).returncode\n\
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n\
        open(sys.argv[1], 'w').write(str(peak * 1024))\n\
        sys.exit(code if code >= 0 else 128 - code)\n";
    let report = tempfile::NamedTempFile::new().unwrap();
    let python = Command::new("python3").arg("--version").output().is_ok();
    let mut command = if python {
        let mut command = Command::new("python3");
        command.args(["-c", SHIM]).arg(report.path()).arg(BIN);
        command
    } else {
        eprintln!("SKIPPED peak memory check: python3 is not installed");
        Command::new(BIN)
    };
    let start = Instant::now();
    let output = command
        .args(args)
        .env("OSIISO_CACHE_DIR", crate::support::cache_dir())
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(stdin)
        .output()
        .unwrap();
    let outcome = Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: strip_ansi(&String::from_utf8_lossy(&output.stderr)),
        elapsed: start.elapsed(),
    };
    let peak = python.then(|| {
        std::fs::read_to_string(report.path())
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    });
    (outcome, peak)
}

/// Asserts a measured peak is under `limit` bytes, when it could be measured.
fn assert_peak_under(peak: Option<u64>, limit: u64) {
    if let Some(peak) = peak {
        assert!(peak < limit, "peak RSS {peak} bytes, over {limit}");
    }
}

const GIB: u64 = 1 << 30;

/// `lines` written as a file in `dir`, each followed by a newline.
fn file_of(dir: &Path, name: &str, lines: &[&[u8]]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A JSON array of `n` zeros: its parsed form takes about 16 times its text.
fn zeros(n: usize) -> Vec<u8> {
    let mut text = b"[0".to_vec();
    text.extend(std::iter::repeat_n(*b",0", n - 1).flatten());
    text.push(b']');
    text
}

#[test]
fn over_long_lines_are_refused_before_they_are_parsed() {
    let dir = tempfile::tempdir().unwrap();
    // 200 MB of two over-limit lines; parsed, they would take more than 3 GB.
    let long = zeros(50 << 20);
    let file = file_of(dir.path(), "long.jsonl", &[b"1", &long, &long, b"2"]);
    let (out, peak) = measured(
        &[
            "run",
            artifacts::DOUBLE,
            "--inputs",
            path_str(&file),
            "--output",
            "jsonl",
        ],
        Stdio::null(),
    );
    out.assert_usage_error(&["long.jsonl line 2", "16 MiB", "--max-input-bytes"]);
    assert_peak_under(peak, GIB);

    // In a stream, each one is skipped with an error and the lines after it run.
    let (out, peak) = measured(
        &[
            "run",
            artifacts::DOUBLE,
            "--inputs",
            "-",
            "--mode",
            "infinite",
            "--output",
            "jsonl",
        ],
        Stdio::from(std::fs::File::open(&file).unwrap()),
    );
    assert_peak_under(peak, GIB);
    assert_eq!(out.code, 1, "{out:#?}");
    let values: Vec<i64> = out
        .jsonl()
        .iter()
        .map(|r| r["value"].as_i64().unwrap())
        .collect();
    assert_eq!(values, [2, 4], "{out:#?}");
    for line in ["line 2", "line 3"] {
        assert!(
            out.stderr
                .contains(&format!("- {line}: longer than the 16 MiB")),
            "{line}: {}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("COMPLETED WITH ERRORS"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("PASSED"), "{}", out.stderr);
    assert!(
        out.stderr.contains("2 input line(s) skipped"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_finite_run_holds_its_inputs_only_while_they_run() {
    let dir = tempfile::tempdir().unwrap();
    // 40 lines of 1 MB arrays: parsed all at once, they took 700 MB. `--size 2` keeps two
    // tasks outstanding (as the default window keeps 16 MiB of input), so that what the run
    // holds does not depend on how fast the workers go.
    let line = zeros(1 << 19);
    let lines: Vec<&[u8]> = std::iter::repeat_n(line.as_slice(), 40).collect();
    let file = file_of(dir.path(), "wide.jsonl", &lines);
    let (out, peak) = measured(
        &[
            "run",
            artifacts::DOUBLE,
            "--inputs",
            path_str(&file),
            "--size",
            "2",
            "--output",
            "jsonl",
            "-q",
        ],
        Stdio::null(),
    );
    // `double` takes a number: each array is refused by the guest, with its row.
    let rows = out.jsonl();
    assert_eq!(rows.len(), 40, "{}", out.stderr);
    assert!(rows.iter().all(|r| r["error"]["kind"] == "invalid_input"));
    assert_peak_under(peak, 384 << 20);
}

#[test]
fn hostile_inputs_files_are_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let digits = "9".repeat(1 << 20);
    let cases: &[(&str, &[u8], &str)] = &[
        ("nul", b"\0", "line 2"),
        ("utf8", b"\"\xff\xfe\"", "line 2: not valid UTF-8"),
        (
            "deep",
            deep.as_bytes(),
            "line 2: not valid JSON: recursion limit",
        ),
        (
            "number",
            b"1e999999",
            "line 2: not valid JSON: number out of range",
        ),
        ("digits", digits.as_bytes(), "line 2: not valid JSON"),
    ];
    for (name, bad, needle) in cases {
        let file = file_of(dir.path(), &format!("{name}.jsonl"), &[b"1", bad, b"2"]);
        let args = [
            "run",
            artifacts::DOUBLE,
            "--inputs",
            path_str(&file),
            "--output",
            "jsonl",
        ];
        // Finite: nothing runs.
        bounded(&args, Duration::from_secs(60)).assert_usage_error(&[needle]);
        // A stream: skipped, the rest runs.
        let mut streamed = args.to_vec();
        streamed.extend(["--mode", "infinite"]);
        let out = bounded(&streamed, Duration::from_secs(60));
        assert_eq!(out.code, 1, "{name}: {out:#?}");
        assert_eq!(out.jsonl().len(), 2, "{name}: {out:#?}");
        assert!(out.stderr.contains(needle), "{name}: {}", out.stderr);
    }
    // Duplicate keys are JSON: the last one wins, as serde_json reads them.
    let file = file_of(
        dir.path(),
        "dup.jsonl",
        &[br#"{"task": "add", "task": "echo", "input": 5}"#],
    );
    let out = osiiso(&[
        "run",
        artifacts::ECHO,
        "--jobs",
        path_str(&file),
        "--output",
        "jsonl",
    ]);
    out.assert_code(0);
    assert_eq!(out.single()["name"], "echo");
    // A directory is no file of lines.
    osiiso(&["run", artifacts::DOUBLE, "--inputs", path_str(dir.path())])
        .assert_usage_error(&["is a directory"]);
}

#[test]
fn a_fifo_of_inputs_is_read_once_and_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("inputs.fifo");
    let c_path = std::ffi::CString::new(path_str(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    for (text, code, rows) in [("1\n2\n\n3\n", 0, 3), ("1\n2\nnot json\n", 2, 0)] {
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
        };
        let out = bounded(
            &[
                "run",
                artifacts::DOUBLE,
                "--inputs",
                path_str(&fifo),
                "--output",
                "jsonl",
            ],
            Duration::from_secs(60),
        );
        writer.join().unwrap();
        assert_eq!(out.code, code, "{out:#?}");
        assert_eq!(out.jsonl().len(), rows, "{out:#?}");
    }
}
