//! An object keeps its keys in the order the user wrote them: from `--input`, an inputs file
//! and a jobs file, through every local backend, to the guest and back into the row.

use osiiso_test_artifacts as artifacts;

use serde_json::Value;

use crate::support::cli::osiiso;

/// Keys out of alphabetical order, nested, so a sorted map anywhere on the path shows.
const INPUT: &str = r#"{"zeta":1,"alpha":{"y":2,"b":3,"m":[{"k2":0,"k1":1}]},"mid":null}"#;

#[test]
fn an_input_object_reaches_the_guest_and_the_row_in_the_order_it_was_written() {
    for backend in ["thread", "async", "process"] {
        let out = osiiso(&[
            "run",
            artifacts::ECHO,
            "echo",
            "--input",
            INPUT,
            "--queue",
            backend,
            "--output",
            "jsonl",
            "-q",
        ]);
        out.assert_code(0);
        assert_eq!(
            written(&out.single()["value"]),
            INPUT,
            "{backend}: the echoed value lost its key order: {out:#?}"
        );
    }
}

#[test]
fn inputs_and_jobs_files_keep_key_order_too() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs.jsonl");
    std::fs::write(&inputs, format!("{INPUT}\n")).unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(
        &jobs,
        format!(r#"{{"task":"echo","input":{INPUT},"retries":0}}"#) + "\n",
    )
    .unwrap();
    for args in [
        vec!["--inputs", inputs.to_str().unwrap(), "echo"],
        vec!["--jobs", jobs.to_str().unwrap()],
    ] {
        let mut argv = vec!["run", artifacts::ECHO];
        argv.extend(args);
        argv.extend(["--output", "json", "-q"]);
        let out = osiiso(&argv);
        out.assert_code(0);
        let rows: Value = serde_json::from_str(&out.stdout).expect("--output json is JSON");
        assert_eq!(
            written(&rows[0]["value"]),
            INPUT,
            "the value lost its key order: {out:#?}"
        );
    }
}

/// `value` written back as text: the tests' `serde_json` keeps key order, so this is the order
/// the row had.
fn written(value: &Value) -> String {
    serde_json::to_string(value).unwrap()
}
