//! `run` under limits and the sandbox: fuel, timeouts, memory, directory grants.

use std::time::Duration;

use osiiso_test_artifacts as artifacts;

use crate::support::cli::{error_kind, osiiso, status};

#[test]
fn fuel_budget_stops_score_with_out_of_fuel() {
    let out = osiiso(&[
        "run",
        artifacts::SCORE,
        "--input",
        "1000",
        "--fuel",
        "1000",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed");
    assert_eq!(error_kind(&result), "out_of_fuel", "{result}");
    assert_eq!(result["attempts"], 1, "out_of_fuel is not retried");
}

#[test]
fn fuel_consumed_appears_with_fuel_on_thread_and_process_and_always_on_async() {
    for (queue, fuel, metered) in [
        ("thread", None, false),
        ("thread", Some("1000000000"), true),
        ("process", None, false),
        ("process", Some("1000000000"), true),
        // The async queue counts fuel to yield, budget or not.
        ("async", None, true),
        ("async", Some("1000000000"), true),
    ] {
        let mut args = vec![
            "run",
            artifacts::SCORE,
            "--input",
            "1000",
            "--queue",
            queue,
            "--output",
            "jsonl",
            "-q",
        ];
        if let Some(fuel) = fuel {
            args.extend(["--fuel", fuel]);
        }
        let out = osiiso(&args);
        out.assert_code(0);
        let result = out.single();
        assert_eq!(status(&result), "succeeded", "{queue} {fuel:?}: {result}");
        let consumed = &result["fuel_consumed"];
        if metered {
            assert!(
                consumed.as_u64().is_some_and(|f| f > 1000),
                "{queue} {fuel:?}: {result}"
            );
        } else {
            assert!(consumed.is_null(), "{queue} {fuel:?}: {result}");
        }
    }
}

#[test]
fn timeout_stops_an_infinite_loop() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_INFINITE_LOOP,
        "spin",
        "--timeout",
        "100ms",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed");
    assert_eq!(error_kind(&result), "timeout", "{result}");
    assert_eq!(
        result["error"]["message"], "task 'spin' exceeded 0.1s timeout",
        "{result}"
    );
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn memory_cap_stops_a_memory_bomb() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_MEMORY_BOMB,
        "bomb",
        "--max-memory",
        "32MiB",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed");
    assert_eq!(error_kind(&result), "memory_limit", "{result}");
}

#[test]
fn no_dir_grant_means_no_host_files() {
    let out = osiiso(&[
        "run",
        artifacts::HOSTILE_FS_ESCAPE,
        "read",
        "--input",
        "\"/etc/passwd\"",
        "--output",
        "jsonl",
        "-q",
    ]);
    out.assert_code(1);
    let result = out.single();
    assert_eq!(status(&result), "failed", "{result}");
    assert!(!result["value"].to_string().contains("root:"), "{result}");
    assert!(!out.stdout.contains("root:"), "host file leaked: {out:#?}");
}
