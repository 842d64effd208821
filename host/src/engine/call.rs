//! Calling a task in an instance: the one place that knows the three ways in — an SDK
//! plugin's `invoke(name, input)`, a typed function with its converted parameters, and a WASI
//! program's `run`. Every way ends in the same shape ([`InvokeResult`]): JSON text for a value,
//! or a task error, so that the store reports them all alike.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Instance, Val};

use super::code::Code;
use super::command::{self, ProgramInput};
use super::contract::{InvokeFn, WitTaskError};
use super::store::{AttemptState, AttemptStore, InvokeResult};
use super::task::{Entry, Task};
use super::typed::TypedFunc;
use super::typed::to_json::{self, MAX_VALUE_BYTES};
use crate::failure::{FailureKind, TaskFailure};

/// The most JSON text of an `err` value kept for a failure's message.
const MAX_ERR_BYTES: usize = crate::text::MAX_MESSAGE_BYTES;

/// A task's input, made ready for its entry before any instance exists.
pub(crate) enum Input {
    /// JSON text for an SDK plugin's `invoke`.
    Json(String),
    /// The parameters of a typed function.
    Values(Vec<Val>),
    /// What a WASI program gets (set up in its store).
    Program(ProgramInput),
}

impl Input {
    /// What a program's store must give it, for a program's input.
    pub(crate) fn program(&self) -> Option<&ProgramInput> {
        match self {
            Self::Program(program) => Some(program),
            _ => None,
        }
    }
}

/// An instance ready to run tasks (for an SDK plugin, with its `invoke` looked up once).
pub(crate) struct Bound {
    instance: Instance,
    invoke: Option<InvokeFn>,
    /// Where the code it was made from exports each task.
    exports: Arc<[Option<ComponentExportIndex>]>,
}

impl Bound {
    pub(crate) fn new(
        code: &Code,
        store: &mut Store<AttemptState>,
        instance: Instance,
    ) -> wasmtime::Result<Self> {
        let invoke = code.invoke_fn(store, &instance)?;
        Ok(Self {
            instance,
            invoke,
            exports: code.exports().clone(),
        })
    }

    /// Where the instance exports `task`.
    fn export(&self, task: &Task) -> wasmtime::Result<ComponentExportIndex> {
        self.exports
            .get(task.position())
            .copied()
            .flatten()
            .ok_or_else(missing)
    }

    /// Runs `task` once with `input`.
    pub(crate) fn call(&self, store: &mut AttemptStore, task: &Task, input: Input) -> InvokeResult {
        match (task.entry(), input) {
            (Entry::Sdk, Input::Json(json)) => {
                let (result,) = self
                    .invoke()?
                    .call(&mut store.store, (task.name().to_string(), json))?;
                Ok(result)
            }
            (Entry::Func(func), Input::Values(params)) => {
                let mut results = func.result_slots();
                self.instance
                    .get_func(&mut store.store, self.export(task)?)
                    .ok_or_else(missing)?
                    .call(&mut store.store, &params, &mut results)?;
                typed_outcome(func, results, task.name())
            }
            (Entry::Program, Input::Program(_)) => {
                let mut result = [Val::Bool(false)];
                let ended = self
                    .instance
                    .get_func(&mut store.store, self.export(task)?)
                    .ok_or_else(missing)?
                    .call(&mut store.store, &[], &mut result);
                command::finish(ended, &result, store)
            }
            _ => Err(mismatch()),
        }
    }

    /// [`call`](Self::call) in an async store.
    pub(crate) async fn call_async(
        &self,
        store: &mut AttemptStore,
        task: &Task,
        input: Input,
    ) -> InvokeResult {
        match (task.entry(), input) {
            (Entry::Sdk, Input::Json(json)) => {
                let (result,) = self
                    .invoke()?
                    .call_async(&mut store.store, (task.name().to_string(), json))
                    .await?;
                Ok(result)
            }
            (Entry::Func(func), Input::Values(params)) => {
                let mut results = func.result_slots();
                self.instance
                    .get_func(&mut store.store, self.export(task)?)
                    .ok_or_else(missing)?
                    .call_async(&mut store.store, &params, &mut results)
                    .await?;
                typed_outcome(func, results, task.name())
            }
            (Entry::Program, Input::Program(_)) => {
                let mut result = [Val::Bool(false)];
                let ended = self
                    .instance
                    .get_func(&mut store.store, self.export(task)?)
                    .ok_or_else(missing)?
                    .call_async(&mut store.store, &[], &mut result)
                    .await;
                command::finish(ended, &result, store)
            }
            _ => Err(mismatch()),
        }
    }

    fn invoke(&self) -> wasmtime::Result<&InvokeFn> {
        self.invoke.as_ref().ok_or_else(mismatch)
    }
}

/// A typed function's results as a task's outcome: `result<T, E>` gives T's JSON, or fails
/// `failed` with E's JSON as the message; any other result type is the value itself.
fn typed_outcome(func: &TypedFunc, results: Vec<Val>, task: &str) -> InvokeResult {
    let too_large = |e: to_json::WriteError| {
        wasmtime::Error::new(TaskFailure::new(
            FailureKind::Serialization,
            format!("task '{task}' returned a value that cannot be sent: {e}"),
        ))
    };
    let value = results.into_iter().next();
    match value {
        Some(Val::Result(Err(err))) if func.returns_result() => {
            let message = match to_json::to_json(err.as_deref(), MAX_ERR_BYTES) {
                Ok(json) => json,
                Err(e) => format!("task '{task}' returned an error whose value is too large: {e}"),
            };
            Ok(Err(WitTaskError::Failed(message)))
        }
        Some(Val::Result(Ok(ok))) if func.returns_result() => {
            Ok(Ok(
                to_json::to_json(ok.as_deref(), MAX_VALUE_BYTES).map_err(too_large)?
            ))
        }
        other => Ok(Ok(
            to_json::to_json(other.as_ref(), MAX_VALUE_BYTES).map_err(too_large)?
        )),
    }
}

fn missing() -> wasmtime::Error {
    wasmtime::Error::msg("the instance lacks a function its component exports")
}

fn mismatch() -> wasmtime::Error {
    wasmtime::Error::msg("internal error: the task's input does not match how it is called")
}
