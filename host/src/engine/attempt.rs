//! One attempt: a fresh store and instance, the limits, the interruption check, and the
//! classification of how it ended.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreContextMut, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::contract::{Level, WitTaskError};
use super::http::HttpPolicy;
use super::limits::Limits;
use super::limits::MemoryLimiter;
use super::output::TailPipe;
use super::plugin::{Plugin, Task};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn, StopReason};
use crate::failure::{FailureKind, TaskFailure};
use crate::text;

/// Prefix of the log line the Rust SDK's panic hook sends before the guest traps.
const PANIC_PREFIX: &str = "panicked at ";

/// Per-store state of one attempt.
pub(crate) struct AttemptState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_policy: HttpPolicy,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(crate) control: Arc<AttemptControl>,
    pub(crate) attempt: u32,
    task: Arc<str>,
    plugin: Arc<str>,
    panic_message: Option<String>,
    progress: Option<ProgressFn>,
    /// The host's memory budget, for messages.
    budget_total: usize,
}

impl AttemptState {
    pub(crate) fn log(&mut self, level: Level, message: String) {
        if matches!(level, Level::Error) && message.starts_with(PANIC_PREFIX) {
            self.panic_message = Some(text::truncate_owned(
                message.clone(),
                text::MAX_MESSAGE_BYTES,
            ));
        }
        // Guest text: bounded, and escaped so that it cannot forge a log line or act on a
        // terminal.
        let message = text::for_display(&message, text::MAX_LOG_BYTES);
        let (plugin, task) = (&*self.plugin, &*self.task);
        match level {
            Level::Trace => tracing::trace!(target: "osiiso::guest", plugin, task, "{message}"),
            Level::Debug => tracing::debug!(target: "osiiso::guest", plugin, task, "{message}"),
            Level::Info => tracing::info!(target: "osiiso::guest", plugin, task, "{message}"),
            Level::Warn => tracing::warn!(target: "osiiso::guest", plugin, task, "{message}"),
            Level::Error => tracing::error!(target: "osiiso::guest", plugin, task, "{message}"),
        }
    }

    pub(crate) fn progress(&mut self, done: u64, total: u64) {
        tracing::trace!(target: "osiiso::guest", task = &*self.task, done, total, "progress");
        if let Some(progress) = &self.progress {
            progress(done, total);
        }
    }
}

impl AttemptState {
    /// A fresh store for one attempt of `task` of `plugin`, with its limits, fuel budget,
    /// epoch check and sandbox, plus the pipes capturing its stdout and stderr.
    pub(crate) fn new_store(
        plugin: &Plugin,
        limits: &Limits,
        control: &Arc<AttemptControl>,
        attempt: u32,
        task: Arc<str>,
        progress: Option<ProgressFn>,
        asynchronous: bool,
    ) -> Result<(Store<AttemptState>, (TailPipe, TailPipe)), TaskFailure> {
        let stdout = TailPipe::new(limits.capture_bytes);
        let stderr = TailPipe::new(limits.capture_bytes);
        let wasi = plugin.sandbox().wasi_ctx(&stdout, &stderr).map_err(|e| {
            TaskFailure::new(
                FailureKind::PluginLoad,
                format!("plugin '{}': {e}", plugin.name()),
            )
        })?;
        let grants = plugin.sandbox().http_grants().map_err(|e| {
            TaskFailure::new(
                FailureKind::PluginLoad,
                format!("plugin '{}': {e}", plugin.name()),
            )
        })?;
        let state = AttemptState {
            wasi,
            http: WasiHttpCtx::new(),
            http_policy: HttpPolicy::new(grants, control.clone()),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits, plugin.host().memory_budget(), control.clone()),
            control: control.clone(),
            attempt,
            task,
            plugin: plugin.name_arc(),
            panic_message: None,
            progress,
            budget_total: plugin.host().memory_budget().total(),
        };
        let mut store = Store::new(plugin.engine(), state);
        if asynchronous {
            store.limiter_async(|state| &mut state.limiter);
        } else {
            store.limiter(|state| &mut state.limiter);
        }
        // Fuel is always on in this engine, so setting it cannot fail.
        let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(epoch_check);
        Ok((store, (stdout, stderr)))
    }
}

impl WasiView for AttemptState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for AttemptState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_policy,
        }
    }
}

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

/// Fuel between yields of an async guest: far below a millisecond of execution.
const ASYNC_YIELD_FUEL: u64 = 100_000;

/// A store ready for one attempt, with what is needed to report on it.
struct Prepared {
    store: Store<AttemptState>,
    pipes: (TailPipe, TailPipe),
    input: String,
    fuel_budget: u64,
}

type InvokeResult = wasmtime::Result<Result<String, WitTaskError>>;

impl Task {
    /// Runs one attempt synchronously on the calling thread, in a fresh instance.
    ///
    /// The guest is interrupted within one epoch tick once `control` is cancelled or its
    /// deadline passes. Every way the attempt can end is reported in the returned
    /// [`AttemptReport`]; this never panics on guest behaviour.
    pub fn run_attempt(&self, request: AttemptRequest<'_>) -> AttemptReport {
        let _permit = self.plugin().host().instance_permit_blocking();
        let mut prepared = match self.prepare(&request, false) {
            Ok(prepared) => prepared,
            Err(report) => return *report,
        };
        let plugin = self.plugin();
        let store = &mut prepared.store;
        let input = std::mem::take(&mut prepared.input);
        let result = (|| {
            let instance = plugin.instance_pre().instantiate(&mut *store)?;
            let invoke = plugin.invoke_fn(&mut *store, &instance)?;
            let (result,) = invoke.call(&mut *store, (self.name().to_string(), input))?;
            Ok(result)
        })();
        finish(prepared, result, &request)
    }

    /// Runs one attempt as a future, in a fresh async instance: the guest yields to the
    /// executor every few hundred microseconds of execution, so a busy guest cannot starve
    /// others. Dropping the future stops the guest.
    pub async fn run_attempt_async(&self, request: AttemptRequest<'_>) -> AttemptReport {
        let _permit = self.plugin().host().instance_permit().await;
        let mut prepared = match self.prepare(&request, true) {
            Ok(prepared) => prepared,
            Err(report) => return *report,
        };
        let plugin = self.plugin();
        let input = std::mem::take(&mut prepared.input);
        // Fuel is always on in this engine, so this cannot fail.
        let _ = prepared
            .store
            .fuel_async_yield_interval(Some(ASYNC_YIELD_FUEL));
        let result: InvokeResult = async {
            let store = &mut prepared.store;
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
        .await;
        finish(prepared, result, &request)
    }

    /// Encodes the input and builds the store, or reports why the attempt cannot start.
    fn prepare(
        &self,
        request: &AttemptRequest<'_>,
        asynchronous: bool,
    ) -> Result<Prepared, Box<AttemptReport>> {
        let plugin = self.plugin();
        let limits = plugin.limits();
        let input = match serde_json::to_string(request.input) {
            Ok(s) => {
                limits
                    .check_input(request.display_name, s.len())
                    .map_err(|failure| Box::new(AttemptReport::failed(failure)))?;
                s
            }
            Err(e) => {
                return Err(Box::new(AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("cannot encode input: {e}"),
                ))));
            }
        };
        if request.control.is_cancelled() {
            return Err(Box::new(AttemptOutcome::Cancelled.into()));
        }
        let (store, pipes) = AttemptState::new_store(
            plugin,
            limits,
            &request.control,
            request.attempt,
            self.name_arc(),
            request.progress.clone(),
            asynchronous,
        )
        .map_err(|failure| Box::new(AttemptReport::failed(failure)))?;
        Ok(Prepared {
            store,
            pipes,
            input,
            fuel_budget: limits.fuel.unwrap_or(u64::MAX),
        })
    }
}

/// Turns how the call ended into a report (shared by the sync and async paths).
fn finish(
    mut prepared: Prepared,
    result: InvokeResult,
    request: &AttemptRequest<'_>,
) -> AttemptReport {
    let fuel_budget = prepared.fuel_budget;
    let fuel_consumed = prepared
        .store
        .get_fuel()
        .ok()
        .map(|left| fuel_budget - left);
    let outcome = match result {
        Ok(Ok(json)) => match serde_json::from_str(&json) {
            Ok(value) => AttemptOutcome::Succeeded(value),
            Err(e) => AttemptOutcome::Failed(TaskFailure::new(
                FailureKind::Serialization,
                format!(
                    "task '{}' returned output that is not JSON: {e}",
                    request.display_name
                ),
            )),
        },
        Ok(Err(error)) => AttemptOutcome::Failed(guest_failure(error)),
        Err(error) => classify_abnormal(&mut prepared.store, error, request, fuel_budget),
    };
    AttemptReport::new(outcome)
        .with_fuel(fuel_consumed)
        .with_output(prepared.pipes.0.captured(), prepared.pipes.1.captured())
}

fn epoch_check(store: StoreContextMut<'_, AttemptState>) -> wasmtime::Result<UpdateDeadline> {
    match store.data().control.stop_reason() {
        Some(reason) => Err(wasmtime::Error::new(reason)),
        None => Ok(UpdateDeadline::Continue(1)),
    }
}

fn guest_failure(error: WitTaskError) -> TaskFailure {
    match error {
        WitTaskError::Failed(m) => TaskFailure::new(FailureKind::Failed, m),
        WitTaskError::Permanent(m) => TaskFailure::new(FailureKind::Permanent, m),
        WitTaskError::InvalidInput(m) => TaskFailure::new(FailureKind::InvalidInput, m),
    }
}

/// Classifies an attempt that ended abnormally (docs/queues.md §5.2): cancellation, then the
/// deadline, then fuel, then the memory limiter, then the actual cause.
fn classify_abnormal(
    store: &mut Store<AttemptState>,
    error: wasmtime::Error,
    request: &AttemptRequest<'_>,
    fuel_budget: u64,
) -> AttemptOutcome {
    let name = request.display_name;
    let control = &request.control;
    // An interruption by the host (the epoch callback, a blocking call that watched the
    // control) or a stop that raced the guest's own error: one rule decides.
    if error.downcast_ref::<StopReason>().is_some() || control.should_stop() {
        return control.stopped_outcome(name);
    }
    let trap = error.downcast_ref::<Trap>().copied();
    // The alternate form carries the trap and the wasm backtrace, not the host's.
    let detail = format!("{error:#}");
    let state = store.data();
    let failure = if trap == Some(Trap::OutOfFuel) {
        TaskFailure::new(
            FailureKind::OutOfFuel,
            format!("task '{name}' ran out of fuel (budget {fuel_budget})"),
        )
    } else if state.limiter.refused {
        TaskFailure::new(
            FailureKind::MemoryLimit,
            format!(
                "task '{name}' exceeded its memory limit of {}",
                crate::units::format_size(store.data().limiter_max())
            ),
        )
    } else if state.limiter.budget_refused {
        TaskFailure::new(
            FailureKind::MemoryLimit,
            format!(
                "task '{name}' could not grow its memory: the host's total memory budget of {} \
                 is in use by other attempts (raise it with --total-memory)",
                crate::units::format_size(plugin_budget(store))
            ),
        )
    } else if let Some(panic) = &state.panic_message {
        TaskFailure::new(FailureKind::Trap, format!("task '{name}' {panic}"))
    } else if state.limiter.os_refused {
        TaskFailure::new(
            FailureKind::MemoryLimit,
            format!(
                "task '{name}' could not grow its memory: the process's memory cap was reached"
            ),
        )
    } else if trap == Some(Trap::StackOverflow) {
        TaskFailure::new(
            FailureKind::Trap,
            format!("task '{name}' trapped: wasm stack overflow (call stack exhausted)"),
        )
    } else if let Some(trap) = trap {
        TaskFailure::new(FailureKind::Trap, format!("task '{name}' trapped: {trap}"))
    } else {
        TaskFailure::new(FailureKind::Trap, format!("task '{name}' failed: {error}"))
    };
    AttemptOutcome::Failed(failure.with_detail(detail))
}

impl AttemptState {
    fn limiter_max(&self) -> usize {
        self.limiter.max_memory()
    }
}

fn plugin_budget(store: &Store<AttemptState>) -> usize {
    store.data().budget_total
}
