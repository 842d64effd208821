//! WASI programs as tasks: a component exporting `wasi:cli/run` (a `fn main` built for
//! `wasm32-wasip2`), or a WASI preview-1 core module with `_start` (built for `wasm32-wasip1`,
//! or by clang with wasi-libc), which [`core_module`] turns into such a component, offers one
//! task, `run`.
//!
//! - Input: `{"args": [...], "stdin": "text", "env": {...}}`, each optional, or a plain array
//!   of arguments, or `null`. The program's `argv[0]` is the plugin's name. The environment is
//!   what the sandbox grants plus the input's `env`; the input cannot replace a variable the
//!   sandbox sets.
//! - Value: `{"exit_code": 0, "stdout": "...", "stderr": "...", "stdout_truncated": false,
//!   "stderr_truncated": false}`: the last bytes of each stream, bounded like captured output.
//! - A non-zero exit fails the task as `failed` (retried) with the code and the tail of stderr;
//!   the streams then stay in the row's `stdout` and `stderr`.
//!
//! Every attempt runs in a fresh instance: a program's `run` is not meant to be called twice.

pub(crate) mod core_module;

use serde::Serialize;
use serde_json::{Value, json};
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Type, Val};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::contract::WitTaskError;
use super::sandbox::Sandbox;
use super::store::{AttemptStore, InvokeResult};
use super::task::{TaskInfo, TaskKind};

/// The name of a program's task.
pub(crate) const TASK: &str = "run";
/// The interface (any 0.2 version) whose `run` makes a component a program.
const RUN_INTERFACE: &str = "wasi:cli/run@0.2.";
/// The most of stderr quoted in the message of a failed run.
const STDERR_TAIL_BYTES: usize = 2048;

/// Whether `func` of `interface` is `wasi:cli/run`'s `run: func() -> result`.
pub(crate) fn is_run_export(interface: &str, func: &str, ty: &ComponentFunc) -> bool {
    interface.starts_with(RUN_INTERFACE)
        && func == "run"
        && ty.params().len() == 0
        && matches!(
            ty.results().collect::<Vec<_>>().as_slice(),
            [Type::Result(result)] if result.ok().is_none() && result.err().is_none()
        )
}

/// What `list` says about a program's task.
pub(crate) fn task_info(name: String, aliases: Vec<String>) -> TaskInfo {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    TaskInfo {
        name,
        description: "A WASI program (wasi:cli/run): runs main with the input's args, stdin and \
                      env; its value is the exit code, stdout and stderr. A non-zero exit fails."
            .into(),
        input_schema: Some(json!({"oneOf": [
            {"type": "null"},
            strings,
            {
                "type": "object",
                "properties": {
                    "args": strings,
                    "stdin": {"type": "string"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "additionalProperties": false,
            },
        ]})),
        retries: None,
        timeout: None,
        kind: TaskKind::Program,
        signature: Some("wasi:cli/run".into()),
        not_runnable: None,
        aliases,
    }
}

/// What one run of a program gets besides its sandbox: arguments, stdin and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProgramInput {
    args: Vec<String>,
    stdin: Vec<u8>,
    env: Vec<(String, String)>,
}

impl ProgramInput {
    /// Reads a task input: `null`, an array of arguments, or `{"args", "stdin", "env"}`. An
    /// `env` entry may not replace a variable the sandbox sets (`--env`, `--inherit-env`).
    pub(crate) fn parse(input: &Value, sandbox: &Sandbox) -> Result<Self, String> {
        let mut program = Self::default();
        match input {
            Value::Null => {}
            Value::Array(_) => program.args = strings(input, "the input")?,
            Value::Object(object) => {
                for (key, value) in object {
                    match key.as_str() {
                        "args" => program.args = strings(value, "args")?,
                        "stdin" => match value {
                            Value::String(text) => program.stdin = text.clone().into_bytes(),
                            Value::Null => {}
                            other => {
                                return Err(format!(
                                    "stdin: expected a string, got {}",
                                    kind(other)
                                ));
                            }
                        },
                        "env" => program.env = env(value, sandbox)?,
                        other => {
                            return Err(format!(
                                "unknown key `{}`; a program takes `args`, `stdin` and `env`",
                                crate::text::truncate(other, 60)
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(format!(
                    "expected an array of arguments or an object with `args`, `stdin` and \
                     `env`, got {}",
                    kind(other)
                ));
            }
        }
        Ok(program)
    }

    /// Gives the program its arguments (after `argv[0]`, `program`), stdin and environment.
    pub(crate) fn configure(&self, builder: &mut WasiCtxBuilder, program: &str) {
        builder.arg(program).args(&self.args).envs(&self.env);
        builder.stdin(MemoryInputPipe::new(self.stdin.clone()));
    }
}

fn strings(value: &Value, what: &str) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "{what}: expected an array of strings, got {}",
            kind(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.contains('\0') => Ok(s.clone()),
            Value::String(_) => Err(format!("{what}[{i}]: contains a NUL character")),
            other => Err(format!(
                "{what}[{i}]: expected a string, got {}",
                kind(other)
            )),
        })
        .collect()
}

fn env(value: &Value, sandbox: &Sandbox) -> Result<Vec<(String, String)>, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "env: expected an object of strings, got {}",
            kind(value)
        ));
    };
    object
        .iter()
        .map(|(key, value)| {
            let shown = crate::text::truncate(key, 60);
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(format!("env: `{shown}` is not a variable name"));
            }
            if sandbox.env_vars().iter().any(|(k, _)| k == key)
                || (sandbox.inherits_env() && std::env::var_os(key).is_some())
            {
                return Err(format!(
                    "env: `{shown}` is set by the sandbox (--env, --inherit-env); the input \
                     cannot replace it"
                ));
            }
            match value {
                Value::String(v) if !v.contains('\0') => Ok((key.clone(), v.clone())),
                Value::String(_) => Err(format!("env.{shown}: contains a NUL character")),
                other => Err(format!(
                    "env.{shown}: expected a string, got {}",
                    kind(other)
                )),
            }
        })
        .collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A program's value.
#[derive(Serialize)]
struct Ran<'a> {
    exit_code: i32,
    stdout: &'a str,
    stderr: &'a str,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

/// The outcome of a call of `run` that ended with `ended` (its result in `result`): the
/// program's value on exit code 0 (its output then leaves the row's `stdout`/`stderr` for the
/// value), else a retryable failure with the code and the tail of stderr. A trap, an
/// interruption or a limit is passed on as it is.
pub(crate) fn finish(
    ended: wasmtime::Result<()>,
    result: &[Val],
    store: &mut AttemptStore,
) -> InvokeResult {
    let code = match ended {
        Ok(()) => match result {
            [Val::Result(Ok(_))] => 0,
            _ => 1,
        },
        Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0,
            None => return Err(error),
        },
    };
    let (stdout, stderr) = store.captured_output();
    if code != 0 {
        let tail = stderr
            .as_ref()
            .map(|s| tail(&s.text, STDERR_TAIL_BYTES))
            .filter(|t| !t.trim().is_empty());
        let message = match tail {
            Some(tail) => format!("program exited with code {code}; stderr ends with:\n{tail}"),
            None => format!("program exited with code {code} (nothing on stderr)"),
        };
        return Ok(Err(WitTaskError::Failed(message)));
    }
    let (stdout, stderr) = (stdout.unwrap_or_default(), stderr.unwrap_or_default());
    let value = serde_json::to_string(&Ran {
        exit_code: code,
        stdout: &stdout.text,
        stderr: &stderr.text,
        stdout_truncated: stdout.truncated,
        stderr_truncated: stderr.truncated,
    })
    .expect("a program's value serializes");
    store.clear_output();
    Ok(Ok(value))
}

/// The last `max` bytes of `text` (on a character boundary), marked when cut.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_of_every_form() {
        let sandbox = Sandbox::new();
        assert_eq!(
            ProgramInput::parse(&Value::Null, &sandbox),
            Ok(Default::default())
        );
        let args = ProgramInput::parse(&json!(["-n", "3"]), &sandbox).unwrap();
        assert_eq!(args.args, ["-n", "3"]);
        let full = ProgramInput::parse(
            &json!({"args": ["x"], "stdin": "hi\n", "env": {"LANG": "C"}}),
            &sandbox,
        )
        .unwrap();
        assert_eq!(full.stdin, b"hi\n");
        assert_eq!(full.env, [("LANG".to_string(), "C".to_string())]);
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let sandbox = Sandbox::new().env("MODE", "prod");
        let error = |input: Value| ProgramInput::parse(&input, &sandbox).unwrap_err();
        assert!(error(json!(3)).contains("got a number"));
        assert!(error(json!(["a", 1])).contains("the input[1]: expected a string"));
        assert!(error(json!({"argv": []})).contains("unknown key `argv`"));
        assert!(error(json!({"stdin": 5})).contains("stdin: expected a string"));
        assert!(error(json!({"env": {"A=B": "x"}})).contains("not a variable name"));
        assert!(error(json!({"env": {"MODE": "dev"}})).contains("set by the sandbox"));
    }

    #[test]
    fn a_long_stderr_keeps_its_end() {
        assert_eq!(tail("short", 10), "short");
        assert_eq!(tail("0123456789", 4), "…6789");
        assert_eq!(tail("aéé", 3), "…é");
    }
}
