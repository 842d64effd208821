//! One attempt of a task: in a fresh instance (the default), or in a warm one kept by a
//! [`WarmPool`](super::WarmPool).

use std::sync::Arc;

use super::call::{Bound, Input};
use super::command::ProgramInput;
use super::store::{AttemptStore, InvokeResult};
use super::task::{Entry, Task};
use super::typed;
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::failure::{FailureKind, TaskFailure};

/// Input of one attempt.
pub struct AttemptRequest<'a> {
    /// The JSON input.
    pub input: &'a serde_json::Value,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The interruption handle.
    pub control: Arc<AttemptControl>,
    /// The name used in messages (the task options' name, or the task's own).
    pub display_name: &'a str,
    /// Receives progress reports.
    pub progress: Option<ProgressFn>,
}

impl Task {
    /// Runs one attempt synchronously on the calling thread, in a fresh instance.
    ///
    /// The guest is interrupted within one epoch tick once `control` is cancelled or its
    /// deadline passes. Every way the attempt can end is reported in the returned
    /// [`AttemptReport`]; this never panics on guest behaviour.
    pub fn run_attempt(&self, request: AttemptRequest<'_>) -> AttemptReport {
        let _permit = self.plugin().host().instance_permit_blocking();
        let input = match self.prepare(&request) {
            Ok(input) => input,
            Err(report) => return *report,
        };
        let mut store = match self.new_store(&request, false, input.program()) {
            Ok(store) => store,
            Err(report) => return *report,
        };
        let result = self.call_fresh(&mut store, input);
        store.report(result, &request)
    }

    /// Runs one attempt as a future, in a fresh async instance: the guest yields to the
    /// executor every few hundred microseconds of execution, so a busy guest cannot starve
    /// others. Dropping the future stops the guest.
    pub async fn run_attempt_async(&self, request: AttemptRequest<'_>) -> AttemptReport {
        let _permit = self.plugin().host().instance_permit().await;
        let input = match self.prepare(&request) {
            Ok(input) => input,
            Err(report) => return *report,
        };
        let mut store = match self.new_store(&request, true, input.program()) {
            Ok(store) => store,
            Err(report) => return *report,
        };
        let result = self.call_fresh_async(&mut store, input).await;
        store.report(result, &request)
    }

    /// Makes the input ready for the task's entry before any instance exists: refuses one over
    /// the plugin's input limit, converts it for a typed function or a program (an input that
    /// does not fit is `invalid_input`, never retried, and the guest never runs), and checks
    /// that the attempt has not been cancelled already.
    pub(crate) fn prepare(
        &self,
        request: &AttemptRequest<'_>,
    ) -> Result<Input, Box<AttemptReport>> {
        let failed = |failure: TaskFailure| Box::new(AttemptReport::failed(failure));
        let name = request.display_name;
        let limits = self.plugin().limits();
        let input = match self.entry() {
            Entry::Sdk => {
                let input = serde_json::to_string(request.input).map_err(|e| {
                    failed(TaskFailure::new(
                        FailureKind::Serialization,
                        format!("cannot encode input: {e}"),
                    ))
                })?;
                limits.check_input(name, input.len()).map_err(failed)?;
                Input::Json(input)
            }
            Entry::Func(func) => {
                limits
                    .check_input(name, encoded_len(request.input))
                    .map_err(failed)?;
                let params = typed::from_json::params(&func.ty, request.input).map_err(|e| {
                    failed(TaskFailure::new(
                        FailureKind::InvalidInput,
                        format!("input of task '{name}' does not fit its WIT types: {e}"),
                    ))
                })?;
                Input::Values(params)
            }
            Entry::Program => {
                limits
                    .check_input(name, encoded_len(request.input))
                    .map_err(failed)?;
                let program =
                    ProgramInput::parse(request.input, self.plugin().sandbox()).map_err(|e| {
                        failed(TaskFailure::new(
                            FailureKind::InvalidInput,
                            format!("input of program '{name}': {e}"),
                        ))
                    })?;
                Input::Program(program)
            }
            Entry::NotRunnable => {
                return Err(failed(TaskFailure::new(
                    FailureKind::Permanent,
                    format!(
                        "task '{name}' cannot run: {}",
                        self.info()
                            .not_runnable
                            .as_deref()
                            .unwrap_or("not runnable")
                    ),
                )));
            }
        };
        if request.control.is_cancelled() {
            return Err(Box::new(AttemptOutcome::Cancelled.into()));
        }
        Ok(input)
    }

    /// A store for this task's plugin, armed for `request` (with a program's arguments, stdin
    /// and environment).
    pub(crate) fn new_store(
        &self,
        request: &AttemptRequest<'_>,
        asynchronous: bool,
        program: Option<&ProgramInput>,
    ) -> Result<AttemptStore, Box<AttemptReport>> {
        let plugin = self.plugin();
        plugin.start_optimizing();
        let mut store = AttemptStore::new(
            plugin,
            plugin.limits(),
            &request.control,
            asynchronous,
            program,
        )
        .map_err(|failure| Box::new(AttemptReport::failed(failure)))?;
        store.set_attempt(request, self.name_arc());
        Ok(store)
    }

    /// Whether this task's attempts always get a fresh instance, whatever the plugin's
    /// [`reuse`](super::Limits::reuse): a WASI program runs `main` once per instance.
    pub(crate) fn always_fresh(&self) -> bool {
        matches!(self.entry(), Entry::Program)
    }

    /// Instantiates the plugin in `store` and calls the task once.
    fn call_fresh(&self, store: &mut AttemptStore, input: Input) -> InvokeResult {
        let code = store.code.clone();
        let instance = code.instance_pre().instantiate(&mut store.store)?;
        let bound = Bound::new(&code, &mut store.store, instance)?;
        bound.call(store, self, input)
    }

    /// [`call_fresh`](Self::call_fresh) for an async store.
    async fn call_fresh_async(&self, store: &mut AttemptStore, input: Input) -> InvokeResult {
        let code = store.code.clone();
        let instance = code
            .instance_pre_async()?
            .instantiate_async(&mut store.store)
            .await?;
        let bound = Bound::new(&code, &mut store.store, instance)?;
        bound.call_async(store, self, input).await
    }
}

/// The length of `value`'s JSON text, without keeping the text.
fn encoded_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0 += data.len();
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
