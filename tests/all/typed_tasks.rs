//! Components that know nothing about osiiso-host: `plugins/typed-calc`, built with plain
//! wit-bindgen against its own WIT, offers each exported function as a task with JSON
//! converted to and from its WIT types; listed, run through the embedding API, and through the
//! CLI on every local queue.

use std::path::Path;

use osiiso_host::{AttemptOutcome, FailureKind, LoadError, Plugin, TaskKind};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::jobs::{Expect, err, ok, run_jobs, with};
use crate::support::cli::osiiso;
use crate::support::{load, run};

fn calc() -> Plugin {
    load(artifacts::TYPED_CALC)
}

fn value(plugin: &Plugin, task: &str, input: Value) -> Value {
    match run(plugin, task, input.clone()).outcome {
        AttemptOutcome::Succeeded(value) => value.into(),
        other => panic!("{task}({input}) should succeed: {other:?}"),
    }
}

fn failure(plugin: &Plugin, task: &str, input: Value) -> osiiso_host::TaskFailure {
    let report = run(plugin, task, input.clone());
    match report.outcome {
        AttemptOutcome::Failed(failure) => failure,
        other => panic!("{task}({input}) should fail: {other:?}"),
    }
}

#[test]
fn every_export_is_listed_with_its_signature() {
    let plugin = calc();
    let names: Vec<&str> = plugin.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "add",
            "checksum",
            "divide",
            "reciprocal",
            "initial",
            "maybe",
            "spin",
            "stats#summarize",
            "shapes#area",
            "shapes#describe",
            "shapes#translate",
            "shapes#parse-style",
            "shapes#mirror",
            "counters#[constructor]counter",
            "counters#[method]counter.next",
            "counters#make",
        ]
    );
    let summarize = plugin.task("stats#summarize").unwrap();
    let info = summarize.info();
    assert_eq!(info.kind, TaskKind::Function);
    assert_eq!(
        info.signature.as_deref(),
        Some("func(values: list<f64>) -> result<summary, stats-error>")
    );
    assert_eq!(info.input_schema.as_ref().unwrap()["type"], "array");
    // Also by its full name, and bare since no other function is called `summarize`.
    for alias in ["acme:calc/stats@0.1.0#summarize", "summarize"] {
        assert_eq!(plugin.task(alias).unwrap().name(), "stats#summarize");
    }
    let translate = plugin.task("translate").unwrap();
    assert_eq!(
        translate.info().signature.as_deref(),
        Some("func(p: point, dx: f64, dy: f64) -> point")
    );
    // Resources cannot travel as JSON: listed, with the reason, and refused by name.
    let make = plugin
        .tasks()
        .iter()
        .find(|t| t.name == "counters#make")
        .unwrap();
    assert!(
        make.not_runnable
            .as_deref()
            .unwrap()
            .contains("own<counter>"),
        "{make:?}"
    );
    let error = plugin.task("make").unwrap_err();
    assert!(matches!(error, LoadError::NotRunnable { .. }), "{error}");
    assert!(error.to_string().contains("resource"), "{error}");
    // Several runnable tasks: one must be named.
    assert!(matches!(
        plugin.only_task(),
        Err(LoadError::TaskNotNamed { .. })
    ));
}

#[test]
fn json_maps_to_every_kind_of_wit_value_and_back() {
    let plugin = calc();
    // Scalars: 64-bit integers exact, floats JSON cannot hold as strings, chars.
    assert_eq!(value(&plugin, "add", json!([2, 40])), json!(42));
    assert_eq!(
        value(
            &plugin,
            "add",
            json!({"a": 9_007_199_254_740_993_i64, "b": 1})
        ),
        json!(9_007_199_254_740_994_i64)
    );
    let fnv = json!(15_035_938_162_879_559_083_u64);
    assert_eq!(value(&plugin, "checksum", json!([1, 2, 3])), fnv);
    assert_eq!(value(&plugin, "checksum", json!("AQID")), fnv, "base64");
    assert_eq!(value(&plugin, "reciprocal", json!(0)), json!("Infinity"));
    assert_eq!(
        value(&plugin, "reciprocal", json!("-Infinity")),
        json!(-0.0)
    );
    assert_eq!(value(&plugin, "reciprocal", json!("NaN")), json!("NaN"));
    assert_eq!(value(&plugin, "initial", json!("élan")), json!("é"));
    assert_eq!(value(&plugin, "initial", json!("")), Value::Null);
    // option<option<u32>>: none is null, some(none) {"some": null}.
    for x in [json!(null), json!({"some": null}), json!({"some": 7})] {
        assert_eq!(value(&plugin, "maybe", x.clone()), x);
    }
    // Records (optional fields left out), variants with and without payloads, enums, flags.
    assert_eq!(
        value(&plugin, "summarize", json!([1, 2, 4.5])),
        json!({"count": 3, "mean": 2.5, "min": 1.0, "max": 4.5})
    );
    assert_eq!(
        value(
            &plugin,
            "translate",
            json!({"p": {"x": 1, "y": 2}, "dx": 1, "dy": -1})
        ),
        json!({"x": 2.0, "y": 1.0, "label": null})
    );
    assert_eq!(
        value(
            &plugin,
            "translate",
            json!([{"x": 0, "y": 0, "label": "o"}, 1, 1])
        ),
        json!({"x": 1.0, "y": 1.0, "label": "o"})
    );
    assert_eq!(
        value(&plugin, "area", json!({"rectangle": [2, 3]})),
        json!(6.0)
    );
    assert_eq!(value(&plugin, "area", json!("dot")), json!(0.0));
    for shape in [
        json!("dot"),
        json!({"circle": 1.5}),
        json!({"rectangle": [1.0, 2.0]}),
        json!({"polygon": [{"x": 0.0, "y": 0.0, "label": null}]}),
    ] {
        assert_eq!(value(&plugin, "mirror", shape.clone()), shape);
    }
    let drawing = json!({
        "name": "logo",
        "shape": {"circle": 2},
        "at": {"x": 1, "y": 2, "label": "c"},
        "unit": "cm",
        "style": ["underline", "bold"],
        "tags": ["a", "b"],
    });
    assert_eq!(
        value(&plugin, "describe", drawing),
        json!("logo: circle r=2 at (1, 2) 'c' unit=cm style=[bold,underline] tags=[a,b]")
    );
    assert_eq!(
        value(&plugin, "parse-style", json!(["italic", "bold"])),
        json!(["bold", "italic"])
    );
}

#[test]
fn a_result_err_is_a_retryable_failure_carrying_the_err() {
    let plugin = calc();
    let failed = failure(&plugin, "divide", json!([1, 0]));
    assert_eq!(failed.kind, FailureKind::Failed);
    assert!(failed.kind.is_retryable());
    assert_eq!(failed.message, "\"cannot divide 1 by zero\"", "E as JSON");
    let failed = failure(&plugin, "summarize", json!([]));
    assert_eq!(
        (failed.kind, failed.message.as_str()),
        (FailureKind::Failed, "\"empty\"")
    );
    assert_eq!(
        value(&plugin, "divide", json!({"a": 1, "b": 4})),
        json!(0.25)
    );
}

#[test]
fn an_input_that_does_not_fit_fails_before_the_guest_runs() {
    let plugin = calc();
    for (task, input, path) in [
        (
            "summarize",
            json!([1, 2, "x"]),
            "values[2]: expected f64, got \"x\"",
        ),
        (
            "area",
            json!({"triangle": 3}),
            "shape: unknown case `triangle`",
        ),
        ("add", json!([1]), "expected 2 parameters (a, b)"),
        ("add", json!({"a": 1, "c": 2}), "unknown parameter `c`"),
        (
            "translate",
            json!({"p": {"x": 1}, "dx": 0, "dy": 0}),
            "p: missing field `y`",
        ),
        (
            "describe",
            json!({"name": "n", "shape": "dot", "at": {"x": 0, "y": 0}, "style": ["bold"], "tags": [], "colour": 1}),
            "drawing: unknown field `colour`",
        ),
        (
            "checksum",
            json!([1, 256]),
            "data[1]: 256 is out of range for u8",
        ),
        ("maybe", json!(3), "x: expected null or {\"some\": value}"),
        ("parse-style", json!("bold"), "names: expected list"),
    ] {
        let report = run(&plugin, task, input.clone());
        let AttemptOutcome::Failed(failure) = &report.outcome else {
            panic!("{task}({input}) should fail: {report:?}");
        };
        assert_eq!(failure.kind, FailureKind::InvalidInput, "{failure}");
        assert!(
            failure.message.contains(path),
            "{task}: {path:?} not in {failure}"
        );
        assert_eq!(
            report.fuel_consumed, None,
            "the guest never ran: {report:?}"
        );
    }
}

pub(crate) fn typed_jobs() -> Vec<Expect> {
    vec![
        ok("scalars", "add", json!([2, 40]), json!(42), 1),
        ok(
            "by-name",
            "add",
            json!({"b": 1, "a": 18_446_744_073_709_551_i64}),
            json!(18_446_744_073_709_552_i64),
            1,
        ),
        ok(
            "u64",
            "checksum",
            json!("AQID"),
            json!(15_035_938_162_879_559_083_u64),
            1,
        ),
        ok(
            "bytes",
            "checksum",
            json!([]),
            json!(14_695_981_039_346_656_037_u64),
            1,
        ),
        ok(
            "record",
            "translate",
            json!([{"x": 1, "y": 1}, 0.5, 0]),
            json!({"x": 1.5, "y": 1.0, "label": null}),
            1,
        ),
        ok(
            "variant-payload",
            "mirror",
            json!({"rectangle": [1, 2]}),
            json!({"rectangle": [1.0, 2.0]}),
            1,
        ),
        ok(
            "variant-bare",
            "shapes#mirror",
            json!("dot"),
            json!("dot"),
            1,
        ),
        ok(
            "enum-flags",
            "acme:calc/shapes@0.1.0#describe",
            json!({"name": "d", "shape": "dot", "at": {"x": 0, "y": 0}, "unit": "mm", "style": ["italic"], "tags": []}),
            json!("d: dot at (0, 0) unit=mm style=[italic] tags=[]"),
            1,
        ),
        ok(
            "flags-out",
            "parse-style",
            json!(["underline"]),
            json!(["underline"]),
            1,
        ),
        ok(
            "nested-option",
            "maybe",
            json!({"some": null}),
            json!({"some": null}),
            1,
        ),
        // A `result` err: `failed`, retried, the err in the row.
        with(
            err("err", "divide", json!([1, 0]), "failed", 3).message("cannot divide 1 by zero"),
            "retries",
            json!(2),
        ),
        // Inputs that do not fit: `invalid_input` on attempt 1 whatever the retries.
        with(
            err("mismatch", "summarize", json!([1, "x"]), "invalid_input", 1)
                .message("values[1]: expected f64, got \"x\""),
            "retries",
            json!(3),
        ),
        with(
            err(
                "unknown-case",
                "area",
                json!({"hexagon": 1}),
                "invalid_input",
                1,
            )
            .message("unknown case `hexagon`"),
            "retries",
            json!(3),
        ),
        // A busy loop is stopped by its timeout.
        with(
            err("busy", "spin", json!(u64::MAX), "timeout", 1),
            "timeout",
            json!("300ms"),
        ),
    ]
}

#[test]
fn typed_tasks_run_on_every_local_queue() {
    calc(); // compile once into the shared cache
    let plugin = Path::new(artifacts::TYPED_CALC);
    for queue in ["thread", "async", "process"] {
        run_jobs(plugin, &["--queue", queue, "--workers", "2"], &typed_jobs());
    }
}

#[test]
fn warm_instances_serve_typed_tasks() {
    calc();
    let plugin = Path::new(artifacts::TYPED_CALC);
    for queue in ["thread", "async"] {
        run_jobs(
            plugin,
            &["--queue", queue, "--workers", "1", "--reuse", "8"],
            &typed_jobs(),
        );
    }
}

#[test]
fn list_shows_signatures_schemas_and_what_cannot_run() {
    let out = osiiso(&["list", artifacts::TYPED_CALC]);
    out.assert_code(0);
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
            .to_string()
    };
    assert!(line("add").contains("func(a: s64, b: s64) -> s64"));
    assert!(line("shapes#area").contains("func(shape: shape) -> f64"));
    assert!(
        out.stdout
            .contains("not runnable: its result uses a resource handle (own<counter>)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("also: acme:calc/stats@0.1.0#summarize, summarize")
    );

    let out = osiiso(&["list", artifacts::TYPED_CALC, "--json"]);
    out.assert_code(0);
    let tasks: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let area = tasks.iter().find(|t| t["name"] == "shapes#area").unwrap();
    assert_eq!(area["kind"], "function");
    assert_eq!(area["signature"], "func(shape: shape) -> f64");
    let cases = area["input_schema"]["oneOf"].as_array().unwrap();
    assert!(cases.contains(&json!({"const": "dot"})), "{area}");
    assert_eq!(area["input_schema"]["title"], "shape");
    let make = tasks.iter().find(|t| t["name"] == "counters#make").unwrap();
    assert_eq!(make["input_schema"], Value::Null);
    assert!(make["not_runnable"].as_str().unwrap().contains("resource"));
}

#[test]
fn the_cli_refuses_a_task_that_cannot_run() {
    osiiso(&[
        "run",
        artifacts::TYPED_CALC,
        "counters#make",
        "--input",
        "1",
    ])
    .assert_usage_error(&["counters#make", "cannot run", "own<counter>"]);
    osiiso(&["run", artifacts::TYPED_CALC, "--input", "1"])
        .assert_usage_error(&["name one of", "add"]);
}

// ---------------------------------------------------------------------------------------------
// a hostile typed component (tests/typed-guests)

#[test]
fn a_value_too_large_to_send_fails_as_serialization() {
    let plugin = load(artifacts::HOSTILE_TYPED);
    // 12 MiB of NUL characters are 72 MiB of JSON: over the 64 MiB bound on a value.
    let failed = failure(&plugin, "big-string", json!(12));
    assert_eq!(failed.kind, FailureKind::Serialization, "{failed}");
    assert!(
        failed.message.contains("64 MiB limit for values"),
        "{failed}"
    );
    assert!(!failed.kind.is_retryable());
    // Under the bound it goes through.
    assert_eq!(
        value(&plugin, "big-string", json!(0)),
        json!(""),
        "an empty string is a value"
    );
    let bytes = value(&plugin, "big-bytes", json!(100_000));
    assert_eq!(bytes.as_array().map(Vec::len), Some(100_000));
}

#[test]
fn the_host_builds_bounded_values_from_a_guest_list() {
    let plugin = load(artifacts::HOSTILE_TYPED);
    // 50 M bytes would be 50 M host values: the host's bound on what one call copies out of
    // a guest (128 MiB of host data) stops it; the task fails `serialization`, not retried,
    // and the host goes on.
    let report = run(&plugin, "big-bytes", json!(50_000_000));
    let AttemptOutcome::Failed(failed) = &report.outcome else {
        panic!("{report:?}");
    };
    assert_eq!(failed.kind, FailureKind::Serialization, "{failed}");
    assert!(
        failed.message.contains("more than 128 MiB in one call"),
        "{failed}"
    );
    assert!(!failed.kind.is_retryable());
    assert_eq!(
        value(&plugin, "big-bytes", json!(3)),
        json!([255, 255, 255])
    );
}

#[test]
fn a_long_err_is_cut_in_the_message() {
    let plugin = load(artifacts::HOSTILE_TYPED);
    let failed = failure(&plugin, "big-err", json!(64));
    assert_eq!(failed.kind, FailureKind::Failed);
    assert!(
        failed.message.len() < 9 * 1024,
        "{} bytes",
        failed.message.len()
    );
    assert!(
        failed.message.contains("too large"),
        "{}",
        &failed.message[..200]
    );
}

#[test]
fn guest_text_in_typed_values_and_errors_never_reaches_the_terminal_raw() {
    for input in ["false", "true"] {
        let out = osiiso(&[
            "run",
            artifacts::HOSTILE_TYPED,
            "terminal",
            "--input",
            input,
            "--output",
            "table",
        ]);
        for stream in [&out.stdout, &out.stderr] {
            assert!(!stream.contains('\x1b'), "raw escape: {out:#?}");
            assert!(!stream.contains('\u{202e}'), "raw bidi override: {out:#?}");
        }
        // Shown, visibly escaped (JSON's `\u001b` in a value, `\e` in an error message).
        assert!(
            out.stdout.contains("[31mred") || out.stderr.contains("[31mred"),
            "{out:#?}"
        );
    }
}
