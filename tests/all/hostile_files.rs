//! Files the user points the CLI at, crafted by someone else (HOSTILE.md, "Files and inputs the
//! user points at"): checkpoints with triggers, views and extra objects, checkpoints a guest can
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

use crate::cli::{BIN, Outcome, osiiso, path_str, strip_ansi};

/// Runs the binary, killing it after `limit`: a hang fails the test instead of hanging it.
fn bounded(args: &[&str], limit: Duration) -> Outcome {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env("OSIISO_CACHE_DIR", crate::support::cache_dir())
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
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
