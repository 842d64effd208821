//! One attempt of a task: in a fresh instance (the default), or in a warm one kept by a
//! [`WarmPool`](super::WarmPool).

use std::sync::Arc;

use super::plugin::Task;
use super::store::{AttemptStore, InvokeResult};
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
        let input = match self.encode_input(&request) {
            Ok(input) => input,
            Err(report) => return *report,
        };
        let mut store = match self.new_store(&request, false) {
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
        let input = match self.encode_input(&request) {
            Ok(input) => input,
            Err(report) => return *report,
        };
        let mut store = match self.new_store(&request, true) {
            Ok(store) => store,
            Err(report) => return *report,
        };
        let result = self.call_fresh_async(&mut store, input).await;
        store.report(result, &request)
    }

    /// Encodes the input, refusing one over the plugin's input limit, and checks that the
    /// attempt has not been cancelled already.
    pub(crate) fn encode_input(
        &self,
        request: &AttemptRequest<'_>,
    ) -> Result<String, Box<AttemptReport>> {
        let input = serde_json::to_string(request.input).map_err(|e| {
            Box::new(AttemptReport::failed(TaskFailure::new(
                FailureKind::Serialization,
                format!("cannot encode input: {e}"),
            )))
        })?;
        self.plugin()
            .limits()
            .check_input(request.display_name, input.len())
            .map_err(|failure| Box::new(AttemptReport::failed(failure)))?;
        if request.control.is_cancelled() {
            return Err(Box::new(AttemptOutcome::Cancelled.into()));
        }
        Ok(input)
    }

    /// A store for this task's plugin, armed for `request`.
    pub(crate) fn new_store(
        &self,
        request: &AttemptRequest<'_>,
        asynchronous: bool,
    ) -> Result<AttemptStore, Box<AttemptReport>> {
        let plugin = self.plugin();
        let mut store = AttemptStore::new(plugin, plugin.limits(), &request.control, asynchronous)
            .map_err(|failure| Box::new(AttemptReport::failed(failure)))?;
        store.arm(request, self.name_arc());
        Ok(store)
    }

    /// Instantiates the plugin in `store` and calls the task once.
    fn call_fresh(&self, store: &mut AttemptStore, input: String) -> InvokeResult {
        let plugin = self.plugin();
        let store = &mut store.store;
        let instance = plugin.instance_pre().instantiate(&mut *store)?;
        let invoke = plugin.invoke_fn(&mut *store, &instance)?;
        let (result,) = invoke.call(&mut *store, (self.name().to_string(), input))?;
        Ok(result)
    }

    /// [`call_fresh`](Self::call_fresh) for an async store.
    async fn call_fresh_async(&self, store: &mut AttemptStore, input: String) -> InvokeResult {
        let plugin = self.plugin();
        let store = &mut store.store;
        let instance = plugin
            .instance_pre_async()?
            .instantiate_async(&mut *store)
            .await?;
        let invoke = plugin.invoke_fn(&mut *store, &instance)?;
        let (result,) = invoke
            .call_async(&mut *store, (self.name().to_string(), input))
            .await?;
        Ok(result)
    }
}
