//! Guest text and guest output: escape sequences, stdout among the rows, symlinks out of a
//! grant.

use osiiso_test_artifacts as artifacts;
use serde_json::Value;

use super::{QUEUES, has_escape, raw};

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
