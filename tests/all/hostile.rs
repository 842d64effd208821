//! Hostile guests: each ends in its own error kind within its limit, and the host goes on.

use std::time::{Duration, Instant};

use osiiso_host::{
    AttemptControl, AttemptOutcome, FailureKind, Json, Limits, Sandbox, TaskFailure,
};
use osiiso_test_artifacts as artifacts;
use serde_json::json;

use crate::support::{load, run, run_with};

/// Every test guest needs a test of the same name in this module.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
artifacts::foreach_guest!(assert_test_exists);

fn failure(outcome: AttemptOutcome) -> TaskFailure {
    match outcome {
        AttemptOutcome::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn hostile_infinite_loop() {
    let plugin = load(artifacts::HOSTILE_INFINITE_LOOP);
    let started = Instant::now();
    let control = AttemptControl::new(Some(Duration::from_millis(100)));
    let f = failure(run_with(&plugin, "spin", json!(null), control).outcome);
    assert_eq!(f.kind, FailureKind::Timeout, "{f}");
    assert_eq!(f.message, "task 'spin' exceeded 0.1s timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "generous bound"
    );

    let plugin = plugin.with_limits(Limits::new().fuel(1_000_000));
    let report = run(&plugin, "spin", json!(null));
    let f = failure(report.outcome);
    assert_eq!(f.kind, FailureKind::OutOfFuel, "{f}");
    assert_eq!(report.fuel_consumed, Some(1_000_000));
}

#[test]
fn without_fuel_metering_an_infinite_loop_still_times_out_and_a_fuel_budget_is_refused() {
    let plugin = crate::support::unmetered_host()
        .load(artifacts::HOSTILE_INFINITE_LOOP)
        .unwrap();
    let control = AttemptControl::new(Some(Duration::from_millis(100)));
    let report = run_with(&plugin, "spin", json!(null), control);
    assert_eq!(report.fuel_consumed, None, "{report:?}");
    let f = failure(report.outcome);
    assert_eq!(f.kind, FailureKind::Timeout, "{f}");

    // A budget this host cannot count is a load failure, not a run without a budget.
    let plugin = plugin.with_limits(Limits::new().fuel(1_000_000));
    let report = run(&plugin, "spin", json!(null));
    assert_eq!(report.fuel_consumed, None, "{report:?}");
    let f = failure(report.outcome);
    assert_eq!(f.kind, FailureKind::PluginLoad, "{f}");
    assert!(f.message.contains("fuel metering"), "{f}");
}

#[test]
fn hostile_memory_bomb() {
    let plugin =
        load(artifacts::HOSTILE_MEMORY_BOMB).with_limits(Limits::new().max_memory(32 << 20));
    let f = failure(run(&plugin, "bomb", json!(null)).outcome);
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f}");
    assert!(f.message.contains("32 MiB"), "{}", f.message);
}

#[test]
fn hostile_deep_recursion() {
    let plugin = load(artifacts::HOSTILE_DEEP_RECURSION);
    let f = failure(run(&plugin, "recurse", json!(null)).outcome);
    assert_eq!(f.kind, FailureKind::Trap, "{f}");
    assert!(f.message.contains("stack overflow"), "{}", f.message);
}

#[test]
fn hostile_panic() {
    let plugin = load(artifacts::HOSTILE_PANIC);
    let f = failure(run(&plugin, "explode", json!(null)).outcome);
    assert_eq!(f.kind, FailureKind::Trap, "{f}");
    assert!(f.message.contains("the guest gave up"), "{}", f.message);
    assert!(f.detail.is_some(), "the backtrace goes in detail");
}

#[test]
fn hostile_big_output() {
    let plugin = load(artifacts::HOSTILE_BIG_OUTPUT);
    let report = run(&plugin, "flood", json!(100));
    assert_eq!(
        report.outcome,
        AttemptOutcome::Succeeded(Json::from(json!(100 << 20)))
    );
    let stdout = report.stdout.expect("stdout captured");
    assert!(stdout.truncated);
    assert_eq!(stdout.total_bytes, 100 << 20);
    assert_eq!(stdout.text.len(), 64 << 10, "only the last 64 KiB are kept");
    assert_eq!(report.stderr.expect("stderr captured").text, "flood done\n");
}

#[test]
fn hostile_fs_escape() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "top secret").unwrap();
    let inside = tempfile::tempdir().unwrap();
    std::fs::write(inside.path().join("ok.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        inside.path().join("link"),
    )
    .unwrap();

    let plugin = load(artifacts::HOSTILE_FS_ESCAPE);
    // Without any grant, nothing is visible.
    let f = failure(run(&plugin, "read", json!("/etc/passwd")).outcome);
    assert_eq!(f.kind, FailureKind::Permanent, "{f}");

    let plugin = plugin.with_sandbox(Sandbox::new().dir_read_only(inside.path(), "/data"));
    assert_eq!(
        run(&plugin, "read", json!("/data/ok.txt")).outcome,
        AttemptOutcome::Succeeded(Json::from(json!("fine")))
    );
    for path in [
        "/data/../secret.txt",
        "/data/link",
        "/etc/passwd",
        "../secret.txt",
    ] {
        let f = failure(run(&plugin, "read", json!(path)).outcome);
        assert_eq!(f.kind, FailureKind::Permanent, "{path}: {f}");
        assert!(!f.message.contains("top secret"));
    }
    let f = failure(run(&plugin, "write", json!("/data/new.txt")).outcome);
    assert_eq!(
        f.kind,
        FailureKind::Permanent,
        "read-only grant refuses writes: {f}"
    );
    assert!(!inside.path().join("new.txt").exists());
}

#[test]
fn hostile_env_probe() {
    let plugin = load(artifacts::HOSTILE_ENV_PROBE);
    assert_eq!(
        run(&plugin, "env", json!(null)).outcome,
        AttemptOutcome::Succeeded(Json::from(json!([])))
    );
    let plugin = plugin.with_sandbox(Sandbox::new().env("ONLY", "this"));
    assert_eq!(
        run(&plugin, "env", json!(null)).outcome,
        AttemptOutcome::Succeeded(Json::from(json!([["ONLY", "this"]])))
    );
}

#[test]
fn hostile_ignores_cancel() {
    let plugin = load(artifacts::HOSTILE_IGNORES_CANCEL);
    let control = AttemptControl::new(None);
    let canceller = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            control.cancel();
        })
    };
    let report = run_with(&plugin, "grind", json!(null), control);
    canceller.join().unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Cancelled);
}

#[test]
fn hostile_no_tasks() {
    // The library loads it, and says why no task can be picked.
    let plugin = load(artifacts::HOSTILE_NO_TASKS);
    assert!(plugin.tasks().is_empty());
    let error = plugin.only_task().unwrap_err().to_string();
    assert!(error.contains("has no task that can run"), "{error}");
    let error = plugin.task("anything").unwrap_err().to_string();
    assert!(error.contains("has no task that can run"), "{error}");
    // `list` and `run` refuse it (exit 2) rather than print nothing or an empty choice.
    crate::support::cli::osiiso(&["list", artifacts::HOSTILE_NO_TASKS])
        .assert_usage_error(&["hostile_no_tasks", "has no tasks at all"]);
    let run = crate::support::cli::osiiso(&["run", artifacts::HOSTILE_NO_TASKS]);
    run.assert_usage_error(&["has no task that can run"]);
    assert!(!run.stderr.contains("name one of"), "{run:#?}");
}

#[test]
fn scenario_flaky() {
    let plugin = load(artifacts::SCENARIO_FLAKY);
    let f = failure(run(&plugin, "flaky", json!({"succeed_on": 2})).outcome);
    assert_eq!(f.kind, FailureKind::Failed);
    assert_eq!(f.message, "attempt 1 failed");
    let f = failure(run(&plugin, "permanent", json!(null)).outcome);
    assert_eq!(f.kind, FailureKind::Permanent);
    assert_eq!(
        run(&plugin, "noop", json!({"a": 1})).outcome,
        AttemptOutcome::Succeeded(Json::from(json!({"a": 1})))
    );
}

#[test]
fn hostile_symlink_escape() {
    let granted = tempfile::tempdir().unwrap();
    let plugin = load(artifacts::HOSTILE_SYMLINK_ESCAPE)
        .with_sandbox(Sandbox::new().dir(granted.path(), "/data"));
    for target in ["/etc/passwd", "../outside", "sub/../../outside", ".."] {
        let f = failure(
            run(
                &plugin,
                "link",
                json!({"target": target, "link": "/data/escape"}),
            )
            .outcome,
        );
        assert_eq!(f.kind, FailureKind::Permanent, "{target}: {f}");
        assert!(
            std::fs::symlink_metadata(granted.path().join("escape")).is_err(),
            "{target}: no link may be left behind"
        );
    }
    // A link that stays inside is allowed.
    assert_eq!(
        run(
            &plugin,
            "link",
            json!({"target": "inside.txt", "link": "/data/ok"})
        )
        .outcome,
        AttemptOutcome::Succeeded(Json::from(json!("/data/ok -> inside.txt")))
    );
    let made = std::fs::read_link(granted.path().join("ok")).unwrap();
    assert_eq!(made, std::path::Path::new("inside.txt"));
}

#[test]
fn hostile_terminal() {
    let plugin = load(artifacts::HOSTILE_TERMINAL);
    // The task list carries the raw name; the host escapes it wherever it shows it.
    assert!(plugin.tasks().iter().any(|t| t.name == "evil\u{1b}[2Jname"));
    let f = failure(run(&plugin, "escape", json!(null)).outcome);
    assert_eq!(f.kind, FailureKind::Failed);
    let shown = osiiso_host::text::escape_control(&f.message);
    assert!(!shown.contains('\u{1b}') && !shown.contains('\r') && !shown.contains('\n'));
    assert!(shown.contains("\\e[2J"), "{shown}");
    // Guest stdout is captured, never mixed into anything of the host's.
    let report = run(&plugin, "forge_row", json!(null));
    assert_eq!(
        report.outcome,
        AttemptOutcome::Succeeded(Json::from(json!(1)))
    );
    assert!(report.stdout.unwrap().text.contains("forged"));
}

#[test]
fn hostile_oversized() {
    let plugin = load(artifacts::HOSTILE_OVERSIZED);
    // An error message is bounded, with a marker giving its real length.
    let f = failure(run(&plugin, "big_error", json!(20 << 20)).outcome);
    assert!(
        f.message.len() <= osiiso_host::text::MAX_MESSAGE_BYTES + 64,
        "{}",
        f.message.len()
    );
    assert!(
        f.message.ends_with("[truncated: 20971520 bytes in all]"),
        "{}",
        &f.message[f.message.len() - 60..]
    );
    // An input over the limit is refused before the guest runs, and not retried.
    let limited = plugin
        .clone()
        .with_limits(Limits::new().max_input_bytes(1024));
    let f = failure(run(&limited, "measure", json!("x".repeat(4096))).outcome);
    assert_eq!(f.kind, FailureKind::InvalidInput, "{f}");
    // The SDK's decode error quotes a bounded prefix of the input, never all of it.
    let f = failure(run(&plugin, "big_value", json!("y".repeat(1 << 20))).outcome);
    assert_eq!(f.kind, FailureKind::InvalidInput, "{f}");
    assert!(f.message.len() < 2048, "{} bytes", f.message.len());
    // An honest large allocation works.
    assert!(matches!(
        run(&plugin, "allocate", json!(64)).outcome,
        AttemptOutcome::Succeeded(_)
    ));
}

#[test]
fn hostile_secret_keeper() {
    use osiiso_host::{AttemptRequest, WarmPool};
    let plugin = load(artifacts::HOSTILE_SECRET_KEEPER);
    // The default: a fresh instance for every attempt, so nothing survives a task.
    assert_eq!(
        run(&plugin, "remember", json!("s3cret")).outcome,
        AttemptOutcome::Succeeded(Json::from(json!(true)))
    );
    assert_eq!(
        run(&plugin, "recall", json!(null)).outcome,
        AttemptOutcome::Succeeded(Json::from(json!(null)))
    );
    let pool = WarmPool::new(4);
    let attempt = |plugin: &osiiso_host::Plugin, task: &str, input: serde_json::Value| {
        let task = plugin.task(task).unwrap();
        pool.run(
            &task,
            AttemptRequest {
                input: &input,
                attempt: 1,
                control: AttemptControl::new(None),
                display_name: task.name(),
                progress: None,
            },
        )
        .outcome
    };
    // Without reuse in its limits, a pool still gives fresh instances.
    attempt(&plugin, "remember", json!("s3cret"));
    assert_eq!(
        attempt(&plugin, "recall", json!(null)),
        AttemptOutcome::Succeeded(Json::from(json!(null)))
    );
    assert_eq!(pool.idle(), 0);

    // With reuse, the secret survives within the same plugin, limits and sandbox...
    let warm = plugin.clone().with_limits(Limits::new().reuse(10));
    attempt(&warm, "remember", json!("s3cret"));
    assert_eq!(
        attempt(&warm, "recall", json!(null)),
        AttemptOutcome::Succeeded(Json::from(json!("s3cret")))
    );
    // ...and never crosses other limits or another sandbox.
    let other_limits = plugin
        .clone()
        .with_limits(Limits::new().reuse(10).fuel(1 << 40));
    assert_eq!(
        attempt(&other_limits, "recall", json!(null)),
        AttemptOutcome::Succeeded(Json::from(json!(null)))
    );
    let other_sandbox = warm.clone().with_sandbox(Sandbox::new().env("K", "V"));
    assert_eq!(
        attempt(&other_sandbox, "recall", json!(null)),
        AttemptOutcome::Succeeded(Json::from(json!(null)))
    );

    // A counter grows on one warm instance; a trap discards it, and the next attempt starts
    // from a clean instance.
    let counter = plugin.with_limits(Limits::new().reuse(100).max_memory(64 << 20));
    assert_eq!(
        attempt(&counter, "count", json!(null)),
        AttemptOutcome::Succeeded(Json::from(json!(1)))
    );
    assert_eq!(
        attempt(&counter, "count", json!(null)),
        AttemptOutcome::Succeeded(Json::from(json!(2)))
    );
    let crash = failure(attempt(&counter, "count_and_crash", json!(null)));
    assert_eq!(crash.kind, FailureKind::Trap, "{crash}");
    assert_eq!(
        attempt(&counter, "count", json!(null)),
        AttemptOutcome::Succeeded(Json::from(json!(1)))
    );
    // An instance serves `reuse` attempts at most.
    let short = counter.with_limits(Limits::new().reuse(2));
    let counts: Vec<_> = (0..5)
        .map(|_| attempt(&short, "count", json!(null)))
        .collect();
    assert_eq!(
        counts,
        [1, 2, 1, 2, 1].map(|n| AttemptOutcome::Succeeded(Json::from(json!(n))))
    );
}

/// Runs `f` on a thread and waits at most `limit` for it: a call that blocks for ever fails
/// the test instead of hanging the suite.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still blocked after {limit:?}"))
}

/// Makes a FIFO at `path`.
pub(crate) fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn hostile_special_files() {
    let granted = tempfile::tempdir().unwrap();
    mkfifo(&granted.path().join("fifo"));
    std::os::unix::fs::symlink("fifo", granted.path().join("to-fifo")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(granted.path().join("socket")).unwrap();
    std::fs::write(granted.path().join("ok.txt"), "fine").unwrap();
    let plugin = load(artifacts::HOSTILE_SPECIAL_FILES).with_sandbox(
        Sandbox::new()
            .dir(granted.path(), "/g")
            .dir_read_only("/dev", "/dev"),
    );
    // Each would block its worker for ever (a FIFO with no other end), or read without end
    // (`/dev/zero`): refused at once, whatever the path that leads there.
    for (task, path) in [
        ("read", "/g/fifo"),
        ("write", "/g/fifo"),
        ("read", "/g/to-fifo"),
        ("read", "/g/socket"),
        ("write", "/g/socket"),
        ("read", "/dev/null"),
        ("read", "/dev/zero"),
    ] {
        let plugin = plugin.clone();
        let control = AttemptControl::new(Some(Duration::from_secs(2)));
        let report = within(Duration::from_secs(60), move || {
            run_with(&plugin, task, json!(path), control)
        });
        let f = failure(report.outcome);
        assert_eq!(f.kind, FailureKind::Permanent, "{task} {path}: {f}");
        assert!(f.message.contains("not permitted"), "{task} {path}: {f}");
    }
    // Regular files and directories are untouched.
    assert_eq!(
        run(&plugin, "read", json!("/g/ok.txt")).outcome,
        AttemptOutcome::Succeeded(json!(4).into())
    );
    assert_eq!(
        run(&plugin, "write", json!("/g/new.txt")).outcome,
        AttemptOutcome::Succeeded(json!(null).into())
    );
    assert_eq!(
        std::fs::read_to_string(granted.path().join("new.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn hostile_fd_hog() {
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("f"), "x").unwrap();
    std::fs::create_dir(granted.path().join("d")).unwrap();
    for n in 0..10 {
        std::fs::write(granted.path().join(format!("d/{n}")), "").unwrap();
    }
    let plugin = load(artifacts::HOSTILE_FD_HOG)
        .with_sandbox(Sandbox::new().dir_read_only(granted.path(), "/g"));
    let hog = |count: u32| json!({"path": "/g/f", "count": count});

    // Within the default budget of 256: many files at once, and any number one after another.
    assert_eq!(
        run(&plugin, "files", hog(200)).outcome,
        AttemptOutcome::Succeeded(json!(200).into())
    );
    assert_eq!(
        run(&plugin, "sequential", hog(5000)).outcome,
        AttemptOutcome::Succeeded(json!(5000).into())
    );
    assert_eq!(
        run(&plugin, "list", json!("/g/d")).outcome,
        AttemptOutcome::Succeeded(json!(10).into())
    );

    // Beyond it: the guest's open fails, and the attempt is reported as the limit.
    let f = failure(run(&plugin, "files", hog(100_000)).outcome);
    assert_eq!(f.kind, FailureKind::ResourceLimit, "{f}");
    assert!(
        f.message.contains("limit of 256 open files") && f.message.contains("--max-open-files"),
        "{f}"
    );
    let detail = f.detail.unwrap_or_default();
    assert!(detail.contains("held 256, then:"), "{detail}");

    // A lower limit; directories and listings count too.
    let small = plugin.with_limits(Limits::new().max_open_files(16));
    let f = failure(run(&small, "files", hog(17)).outcome);
    assert_eq!(f.kind, FailureKind::ResourceLimit, "{f}");
    assert!(f.message.contains("limit of 16 open files"), "{f}");
    let dirs = json!({"path": "/g/d", "count": 17});
    let f = failure(run(&small, "files", dirs.clone()).outcome);
    assert_eq!(f.kind, FailureKind::ResourceLimit, "{f}");
    let f = failure(run(&small, "listings", dirs).outcome);
    assert_eq!(f.kind, FailureKind::ResourceLimit, "{f}");
    // Closing gives the budget back: one after another, nothing runs out.
    assert_eq!(
        run(&small, "sequential", hog(1000)).outcome,
        AttemptOutcome::Succeeded(json!(1000).into())
    );
    let listing = json!({"path": "/g/d", "count": 5});
    assert_eq!(
        run(&small, "listings", listing).outcome,
        AttemptOutcome::Succeeded(json!(5).into())
    );
}
