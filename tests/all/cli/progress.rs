//! `--progress` off a terminal.

use osiiso_test_artifacts as artifacts;

use crate::support::cli::{osiiso, path_str, write_lines};

/// Off a terminal (a CI log), `--progress always` writes plain progress lines — the first at
/// the start, the last at the end — also with `-q`; the default writes none there.
#[test]
fn progress_always_writes_plain_lines_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_lines(dir.path(), "three.txt", &["1", "2", "3"].map(String::from));
    let args = |extra: &[&'static str]| {
        let mut args = vec!["run", artifacts::ECHO, "echo", "--inputs", path_str(&file)];
        args.extend_from_slice(&["--output", "jsonl"]);
        args.extend_from_slice(extra);
        osiiso(&args)
    };
    for extra in [
        &["--progress", "always"][..],
        &["--progress", "always", "-q"],
    ] {
        let out = args(extra);
        out.assert_code(0);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("progress: "))
            .collect();
        assert!(
            lines
                .first()
                .is_some_and(|l| l.starts_with("progress: 0/3 tasks (0%)")),
            "{extra:?}: {}",
            out.stderr
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.starts_with("progress: 3/3 tasks (100%)")),
            "{extra:?}: {}",
            out.stderr
        );
    }
    let out = args(&[]);
    out.assert_code(0);
    assert!(!out.stderr.contains("progress: "), "{}", out.stderr);
}
