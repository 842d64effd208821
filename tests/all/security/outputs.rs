//! Output files that are not files, and results that cannot be written.

use std::process::{Command, Stdio};

use osiiso_test_artifacts as artifacts;

use crate::support::cli::{BIN, osiiso, path_str};

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
