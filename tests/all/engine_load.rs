//! Loading plugins: task lists, and precise errors for everything that is not a plugin.

use osiiso_host::{AttemptOutcome, FailureKind, Json, LoadError};
use osiiso_test_artifacts as artifacts;
use serde_json::json;

use crate::support::{host, load, run};

#[test]
fn echo_lists_its_tasks_with_descriptions() {
    let plugin = load(artifacts::ECHO);
    let names: Vec<&str> = plugin.tasks().iter().map(|t| t.name.as_str()).collect();
    for expected in ["echo", "add", "greet", "fail"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let echo = plugin.task("echo").unwrap();
    assert_eq!(echo.info().description, "Returns its input unchanged.");
    let add = plugin.task("add").unwrap();
    assert_eq!(
        add.info().input_schema.as_ref().unwrap()["type"],
        json!("array"),
        "two arguments decode from a JSON array"
    );
}

#[test]
fn struct_inputs_get_a_derived_schema_and_declared_schemas_win() {
    let plugin = load(artifacts::ECHO);
    // `greet(person: Person)` with `#[derive(Deserialize, JsonSchema)]`.
    let greet = plugin.task("greet").unwrap();
    let schema = greet.info().input_schema.clone().expect("a derived schema");
    assert_eq!(schema["type"], json!("object"), "{schema}");
    assert_eq!(
        schema["properties"]["name"]["type"],
        json!("string"),
        "{schema}"
    );
    assert_eq!(
        schema["properties"]["excited"]["type"],
        json!("boolean"),
        "{schema}"
    );
    assert_eq!(schema["required"], json!(["name"]), "{schema}");
    // `#[task(input_schema = ...)]` is taken as written.
    let fail = plugin.task("fail").unwrap();
    assert_eq!(
        fail.info().input_schema,
        Some(json!({"enum": ["failed", "permanent", "invalid"]}))
    );
    // A type with neither has none: `echo(input: serde_json::Value)` is anything.
    let echo = plugin.task("echo").unwrap();
    assert_eq!(echo.info().input_schema, Some(json!({})));
}

#[test]
fn tasks_return_values_and_typed_errors() {
    let plugin = load(artifacts::ECHO);
    let report = run(&plugin, "add", json!([2, 40]));
    assert_eq!(
        report.outcome,
        AttemptOutcome::Succeeded(Json::from(json!(42)))
    );
    let report = run(&plugin, "greet", json!({"name": "Ada", "excited": true}));
    assert_eq!(
        report.outcome,
        AttemptOutcome::Succeeded(Json::from(json!({"message": "Hello, Ada!", "attempt": 1})))
    );
    for (kind, expected) in [
        ("failed", FailureKind::Failed),
        ("permanent", FailureKind::Permanent),
        ("invalid", FailureKind::InvalidInput),
    ] {
        match run(&plugin, "fail", json!(kind)).outcome {
            AttemptOutcome::Failed(f) => assert_eq!(f.kind, expected, "{f}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

#[test]
fn undecodable_input_is_invalid_input() {
    let plugin = load(artifacts::ECHO);
    match run(&plugin, "add", json!("not a pair")).outcome {
        AttemptOutcome::Failed(f) => {
            assert_eq!(f.kind, FailureKind::InvalidInput);
            assert!(f.message.contains("cannot decode input"), "{}", f.message);
        }
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[test]
fn unknown_task_lists_the_known_ones() {
    let plugin = load(artifacts::ECHO);
    let error = plugin.task("nope").unwrap_err();
    assert!(matches!(error, LoadError::UnknownTask { .. }));
    let message = error.to_string();
    assert!(
        message.contains("'nope'") && message.contains("greet"),
        "{message}"
    );
}

#[test]
fn text_file_is_not_wasm() {
    let error = host()
        .load_bytes("notes.txt", b"hello, world\n")
        .unwrap_err();
    assert!(matches!(error, LoadError::NotWasm { .. }), "{error}");
    assert!(error.to_string().contains("notes.txt"));
}

#[test]
fn core_module_is_rejected_as_not_a_component() {
    let module = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let error = host().load_bytes("core.wasm", &module).unwrap_err();
    assert!(matches!(error, LoadError::CoreModule { .. }), "{error}");
    assert!(error.to_string().contains("not a component"), "{error}");
}

#[test]
fn component_without_a_task_lists_what_it_exports() {
    let component = wat::parse_str(
        r#"(component
            (type $t (record (field "a" u32)))
            (export "thing" (type $t))
        )"#,
    )
    .unwrap();
    let error = host().load_bytes("other.wasm", &component).unwrap_err();
    assert!(matches!(error, LoadError::MissingExport { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("osiiso:task/tasks")
            && message.contains("wasi:cli/run")
            && message.contains("thing"),
        "{message}"
    );
}

#[test]
fn an_exported_function_is_a_typed_task() {
    let component = wat::parse_str(
        r#"(component
            (core module $m (func (export "f") (param i32 i32) (result i32)
                local.get 0 local.get 1 i32.add))
            (core instance $i (instantiate $m))
            (func (export "add") (param "a" u32) (param "b" u32) (result u32)
                (canon lift (core func $i "f")))
        )"#,
    )
    .unwrap();
    let plugin = host().load_bytes("adder.wasm", &component).unwrap();
    let add = plugin.only_task().unwrap();
    assert_eq!(
        add.info().signature.as_deref(),
        Some("func(a: u32, b: u32) -> u32")
    );
    let report = run(&plugin, "add", json!({"a": 40, "b": 2}));
    assert_eq!(report.outcome, AttemptOutcome::Succeeded(json!(42).into()));
}

#[test]
fn unsatisfiable_import_is_named() {
    let component = wat::parse_str(
        r#"(component
            (import "acme:db/query@1.0.0" (instance (export "run" (func))))
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $list (canon lift (core func $i "f")))
            (instance $tasks (export "list" (func $list)))
            (export "osiiso:task/tasks@0.1.0" (instance $tasks))
        )"#,
    )
    .unwrap();
    let error = host().load_bytes("needs-db.wasm", &component).unwrap_err();
    assert!(
        matches!(error, LoadError::UnsatisfiedImport { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("acme:db/query@1.0.0"), "{message}");
}

#[test]
fn a_component_whose_functions_cannot_run_says_so() {
    let component = wat::parse_str(
        r#"(component
            (type $r (resource (rep i32)))
            (core module $m (func (export "f") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func $make (param "n" u32) (result (own $r)) (canon lift (core func $i "f")))
            (instance $counters (export "counter" (type $r)) (export "make" (func $make)))
            (export "acme:x/counters@1.0.0" (instance $counters))
        )"#,
    )
    .unwrap();
    let plugin = host().load_bytes("counters.wasm", &component).unwrap();
    assert_eq!(plugin.tasks().len(), 1, "listed");
    let error = plugin.only_task().unwrap_err();
    assert!(
        error.to_string().contains("has no task that can run"),
        "{error}"
    );
    let error = plugin.task("make").unwrap_err();
    assert!(matches!(error, LoadError::NotRunnable { .. }), "{error}");
}
