//! Plain WASI programs as tasks: `plugins/wc-program` (`fn main`, no osiiso dependency) built
//! for `wasm32-wasip2` (a `wasi:cli/run` component) and for `wasm32-wasip1` (a core module
//! with `_start`, adapted at load). Each offers the task `run`: args, stdin and env in; exit
//! code, stdout and stderr out; a non-zero exit fails with the code.

use std::path::Path;

use osiiso_host::{AttemptOutcome, FailureKind, LoadError, Sandbox, TaskKind};
use osiiso_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::jobs::{Expect, err, ok, run_jobs, with};
use crate::support::{host, load, run};

/// Both builds of the program, and whether its exit status is exact (preview 1) or only
/// success/failure (WASI 0.2's `exit`, which Rust's std uses on wasm32-wasip2).
const PROGRAMS: &[(&str, bool)] = &[
    (artifacts::WC_PROGRAM, false),
    (artifacts::WC_PROGRAM_P1, true),
];

fn out(stdout: &str) -> Value {
    json!({
        "exit_code": 0,
        "stdout": stdout,
        "stderr": "",
        "stdout_truncated": false,
        "stderr_truncated": false,
    })
}

#[test]
fn a_program_offers_one_task_run() {
    for (path, _) in PROGRAMS {
        let plugin = load(path);
        let names: Vec<&str> = plugin.tasks().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["run"], "{path}");
        let run = plugin.only_task().unwrap();
        assert_eq!(run.name(), "run");
        assert_eq!(run.info().kind, TaskKind::Program);
        assert!(run.info().input_schema.is_some());
    }
}

#[test]
fn args_stdin_and_env_reach_the_program_and_its_output_is_the_value() {
    for (path, _) in PROGRAMS {
        let plugin = load(path);
        let report = run(
            &plugin,
            "run",
            json!({"args": ["--env", "GREETING"], "stdin": "two words\nand more\n", "env": {"GREETING": "hé"}}),
        );
        assert_eq!(
            report.outcome,
            AttemptOutcome::Succeeded(out("args: --env GREETING\n2 4 19\nGREETING=hé\n").into()),
            "{path}"
        );
        // The output is in the value, not twice in the row.
        assert_eq!((report.stdout, report.stderr), (None, None));
        // A plain array is the arguments; null runs it bare.
        let report = run(&plugin, "run", json!(["a", "b"]));
        assert_eq!(
            report.outcome,
            AttemptOutcome::Succeeded(out("args: a b\n0 0 0\n").into())
        );
        let report = run(&plugin, "run", Value::Null);
        assert_eq!(
            report.outcome,
            AttemptOutcome::Succeeded(out("args: \n0 0 0\n").into())
        );
    }
}

#[test]
fn a_non_zero_exit_fails_with_the_code_and_the_end_of_stderr() {
    for (path, exact) in PROGRAMS {
        let plugin = load(path);
        let report = run(
            &plugin,
            "run",
            json!({"args": ["--stderr", "disk on fire", "--exit", "3"]}),
        );
        let AttemptOutcome::Failed(failure) = &report.outcome else {
            panic!("{path}: {report:?}");
        };
        assert_eq!(failure.kind, FailureKind::Failed, "retryable");
        let code = if *exact { 3 } else { 1 };
        assert!(
            failure
                .message
                .contains(&format!("program exited with code {code}"))
                && failure.message.contains("disk on fire"),
            "{path}: {failure}"
        );
        // On failure the streams stay in the row.
        assert!(report.stdout.unwrap().text.contains("args: --stderr"));
        assert_eq!(report.stderr.unwrap().text, "disk on fire\n");
    }
}

#[test]
fn bad_program_inputs_are_invalid_input() {
    for (path, _) in PROGRAMS {
        let plugin = load(path).with_sandbox(Sandbox::new().env("MODE", "prod"));
        for (input, message) in [
            (json!({"argv": []}), "unknown key `argv`"),
            (json!({"args": "x"}), "args: expected an array of strings"),
            (
                json!({"env": {"MODE": "dev"}}),
                "`MODE` is set by the sandbox",
            ),
            (json!(42), "got a number"),
        ] {
            let report = run(&plugin, "run", input.clone());
            match &report.outcome {
                AttemptOutcome::Failed(f) if f.kind == FailureKind::InvalidInput => {
                    assert!(f.message.contains(message), "{input}: {f}");
                }
                other => panic!("{path} {input}: {other:?}"),
            }
        }
        // The granted variable is what the program sees.
        let report = run(&plugin, "run", json!(["--env", "MODE"]));
        assert_eq!(
            report.outcome,
            AttemptOutcome::Succeeded(out("args: --env MODE\n0 0 0\nMODE=prod\n").into())
        );
    }
}

#[test]
fn a_core_module_must_be_a_preview1_program() {
    let library = wat::parse_str(
        r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0))"#,
    )
    .unwrap();
    let error = host().load_bytes("library.wasm", &library).unwrap_err();
    assert!(matches!(error, LoadError::CoreModule { .. }), "{error}");
    assert!(error.to_string().contains("`_start`"), "{error}");
    let foreign = wat::parse_str(
        r#"(module (import "env" "now" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let error = host().load_bytes("foreign.wasm", &foreign).unwrap_err();
    assert!(
        matches!(error, LoadError::UnsatisfiedImport { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("`env.now`"), "{error}");
}

pub(crate) fn program_jobs(exact: bool) -> Vec<Expect> {
    let code = if exact { "code 7" } else { "code 1" };
    vec![
        ok(
            "stdin",
            "run",
            json!({"args": ["x"], "stdin": "a b c\n"}),
            out("args: x\n1 3 6\n"),
            1,
        ),
        ok(
            "args",
            "run",
            json!(["--env", "HOME"]),
            out("args: --env HOME\n0 0 0\nHOME is not set\n"),
            1,
        ),
        with(
            err(
                "exit",
                "run",
                json!(["--stderr", "no", "--exit", "7"]),
                "failed",
                2,
            )
            .message(code),
            "retries",
            json!(1),
        ),
        with(
            err("bad-input", "run", json!({"stdin": 1}), "invalid_input", 1),
            "retries",
            json!(3),
        ),
        with(
            err("busy", "run", json!(["--spin"]), "timeout", 1),
            "timeout",
            json!("300ms"),
        ),
    ]
}

#[test]
fn programs_run_on_every_local_queue() {
    for (path, exact) in PROGRAMS {
        load(path); // compile once into the shared cache
        for queue in ["thread", "async", "process"] {
            // `--reuse` does not apply to programs: each run gets a fresh instance.
            run_jobs(
                Path::new(path),
                &["--queue", queue, "--workers", "2", "--reuse", "4"],
                &program_jobs(*exact),
            );
        }
    }
}

#[test]
fn compile_caches_an_adapted_program() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let compile = crate::support::cli::osiiso_in(&["compile", artifacts::WC_PROGRAM_P1], &cache);
    compile.assert_code(0);
    let entries = crate::support::cache_entries(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let listed = crate::support::cli::osiiso_in(&["list", artifacts::WC_PROGRAM_P1], &cache);
    listed.assert_code(0);
    assert!(listed.stdout.starts_with("run"), "{listed:?}");
    // Still one entry: the second load hit it.
    assert_eq!(crate::support::cache_entries(&cache), entries);
}

#[test]
fn a_precompiled_core_module_is_refused_like_any_artifact() {
    let module = std::fs::read(artifacts::WC_PROGRAM_P1).unwrap();
    let native = wasmtime::Engine::default()
        .precompile_module(&module)
        .unwrap();
    let error = host().load_bytes("program.wasm", &native).unwrap_err();
    assert!(matches!(error, LoadError::Precompiled { .. }), "{error}");
    // Even allowed, a module artifact is not a component and is rejected, never run.
    let trusting = osiiso_host::Host::builder()
        .cache(false)
        .allow_precompiled(true)
        .build()
        .unwrap();
    let error = trusting.load_bytes("program.wasm", &native).unwrap_err();
    assert!(
        error.to_string().contains("precompiled artifact rejected"),
        "{error}"
    );
}

#[test]
fn a_tampered_cache_entry_of_an_adapted_program_is_rebuilt() {
    use osiiso_host::CacheOutcome;
    let dir = tempfile::tempdir().unwrap();
    // One tier: a tiered host would write a second entry in the background.
    let host = osiiso_host::Host::builder()
        .cache_dir(dir.path())
        .compile_tier(osiiso_host::CompileTier::Optimized)
        .build()
        .unwrap();
    let load = || host.load(artifacts::WC_PROGRAM_P1).unwrap();
    assert_eq!(load().cache_outcome(), CacheOutcome::Miss);
    assert_eq!(load().cache_outcome(), CacheOutcome::Hit);
    let [entry] = crate::support::cache_entries(dir.path())
        .try_into()
        .unwrap();
    // An entry planted without the cache's key (here: another plugin's, copied over).
    let other = osiiso_host::Host::builder()
        .cache_dir(dir.path())
        .compile_tier(osiiso_host::CompileTier::Optimized)
        .build()
        .unwrap();
    other.load(artifacts::ECHO).unwrap();
    let echo = crate::support::cache_entries(dir.path())
        .into_iter()
        .find(|e| *e != entry)
        .unwrap();
    std::fs::copy(&echo, &entry).unwrap();
    let plugin = load();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Rebuilt);
    assert_eq!(
        plugin.tasks()[0].name,
        "run",
        "the program's own code, not echo's"
    );
    let report = run(&plugin, "run", json!(["x"]));
    assert_eq!(
        report.outcome,
        AttemptOutcome::Succeeded(out("args: x\n0 0 0\n").into())
    );
}
