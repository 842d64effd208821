//! The store of one instance: its sandbox (WASI, HTTP), its limits, the pipes that capture its
//! output, and the attempt it is running. A fresh instance gets a store for one attempt; a
//! warm one keeps its store and is armed again for each attempt.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreContextMut, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::code::Code;
use super::command::ProgramInput;
use super::contract::{Level, WitTaskError};
use super::descriptors::Descriptors;
use super::http::{HttpGrant, HttpPolicy};
use super::limits::{Limits, MemoryLimiter};
use super::output::TailPipe;
use super::plugin::Plugin;
use super::run::AttemptRequest;
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn, StopReason};
use crate::failure::{CapturedOutput, FailureKind, TaskFailure};
use crate::json::Json;
use crate::text;

/// Prefix of the log line the Rust SDK's panic hook sends before the guest traps.
const PANIC_PREFIX: &str = "panicked at ";

/// Fuel between yields of an async guest: far below a millisecond of execution.
const ASYNC_YIELD_FUEL: u64 = 100_000;

/// The most bytes the host copies out of a guest in one call: a task's value, a log line.
/// More fails the attempt with `serialization` (wasmtime's "hostcall fuel", whose default
/// this is, made explicit).
pub(crate) const MAX_CALL_OUTPUT_BYTES: usize = 128 << 20;

/// How wasmtime says a call wanted to copy more than [`MAX_CALL_OUTPUT_BYTES`].
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls";

/// How a call into the guest ended.
pub(crate) type InvokeResult = wasmtime::Result<Result<String, WitTaskError>>;

/// Per-store state: the sandbox of one instance and the attempt it is running.
pub(crate) struct AttemptState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_policy: HttpPolicy,
    http_grants: Arc<[HttpGrant]>,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// What the host holds open for the guest: files, listings, HTTP connections.
    descriptors: Descriptors,
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

    /// The descriptor budget of this store.
    pub(crate) fn descriptors(&self) -> &Descriptors {
        &self.descriptors
    }

    pub(crate) fn progress(&mut self, done: u64, total: u64) {
        tracing::trace!(target: "osiiso::guest", task = &*self.task, done, total, "progress");
        if let Some(progress) = &self.progress {
            progress(done, total);
        }
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

/// A store for instances of one plugin under one set of limits and one sandbox, with the
/// pipes that capture its output.
pub(crate) struct AttemptStore {
    pub(crate) store: Store<AttemptState>,
    /// The plugin's code when the store was made: its instances are of this code.
    pub(crate) code: Arc<Code>,
    pipes: (TailPipe, TailPipe),
    fuel_budget: u64,
    /// The engine meters fuel: each attempt gets `fuel_budget` and reports what it used.
    metered: bool,
}

impl AttemptStore {
    /// A new store, armed for an attempt under `control` (see [`arm`](Self::arm)); a WASI
    /// program's store also gets the program's arguments, stdin and environment.
    pub(crate) fn new(
        plugin: &Plugin,
        limits: &Limits,
        control: &Arc<AttemptControl>,
        asynchronous: bool,
        program: Option<&ProgramInput>,
    ) -> Result<Self, TaskFailure> {
        let load_failure = |e: String| {
            TaskFailure::new(
                FailureKind::PluginLoad,
                format!("plugin '{}': {e}", plugin.name()),
            )
        };
        let stdout = TailPipe::new(limits.capture_bytes);
        let stderr = TailPipe::new(limits.capture_bytes);
        let mut wasi = plugin
            .sandbox()
            .wasi_builder(&stdout, &stderr)
            .map_err(|e| load_failure(e.to_string()))?;
        if let Some(program) = program {
            program.configure(&mut wasi, plugin.name());
        }
        let wasi = wasi.build();
        let metered = plugin.host().meters_fuel();
        if limits.fuel.is_some() && !metered {
            return Err(load_failure(
                "a fuel budget is set, but this host runs guest code without fuel metering \
                 (HostBuilder::fuel_metering; the CLI meters fuel with --fuel)"
                    .into(),
            ));
        }
        let http_grants = plugin.http_grants().map_err(load_failure)?;
        let budget = plugin.host().memory_budget();
        let descriptors = Descriptors::new(limits.max_open_files as usize);
        let state = AttemptState {
            wasi,
            http: WasiHttpCtx::new(),
            http_policy: HttpPolicy::new(http_grants.clone(), control.clone(), descriptors.clone()),
            http_grants,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits, budget.clone(), control.clone()),
            descriptors,
            control: control.clone(),
            attempt: 0,
            task: no_task(),
            plugin: plugin.name_arc(),
            panic_message: None,
            progress: None,
            budget_total: budget.total(),
        };
        let code = Arc::clone(&plugin.code());
        let mut store = Store::new(code.engine(), state);
        store.set_hostcall_fuel(MAX_CALL_OUTPUT_BYTES);
        // An async guest yields to the executor every ~100k fuel; without fuel metering, at
        // every epoch tick instead.
        let yield_at_ticks = asynchronous && !metered;
        if asynchronous {
            store.limiter_async(|state| &mut state.limiter);
            if metered {
                // The engine meters fuel, so this cannot fail.
                let _ = store.fuel_async_yield_interval(Some(ASYNC_YIELD_FUEL));
            }
        } else {
            store.limiter(|state| &mut state.limiter);
        }
        store.epoch_deadline_callback(move |store| epoch_check(store, yield_at_ticks));
        let fuel_budget = limits.fuel.unwrap_or(u64::MAX);
        let mut attempt_store = Self {
            store,
            code,
            pipes: (stdout, stderr),
            fuel_budget,
            metered,
        };
        // Everything else in the new state is already clean and under `control`.
        attempt_store.refuel();
        Ok(attempt_store)
    }

    /// Arms the store for one attempt of `task`: its control (deadline, cancellation), its
    /// number, a full fuel budget, fresh output capture and memory-limit flags.
    pub(crate) fn arm(&mut self, request: &AttemptRequest<'_>, task: Arc<str>) {
        self.rearm(&request.control);
        self.set_attempt(request, task);
    }

    /// Sets which attempt a store made for it with [`new`](Self::new) runs: its number, its
    /// task and where its progress goes (a new store is armed already).
    pub(crate) fn set_attempt(&mut self, request: &AttemptRequest<'_>, task: Arc<str>) {
        let state = self.store.data_mut();
        state.attempt = request.attempt;
        state.task = task;
        state.progress = request.progress.clone();
    }

    /// A full fuel budget and an epoch deadline at the next tick.
    fn refuel(&mut self) {
        if self.metered {
            // The engine meters fuel, so this cannot fail. (Without metering it would fail,
            // building an error, and a backtrace under RUST_BACKTRACE, in every attempt.)
            let _ = self.store.set_fuel(self.fuel_budget);
        }
        self.store.set_epoch_deadline(1);
    }

    fn rearm(&mut self, control: &Arc<AttemptControl>) {
        let state = self.store.data_mut();
        state.control = control.clone();
        state.http_policy = HttpPolicy::new(
            state.http_grants.clone(),
            control.clone(),
            state.descriptors.clone(),
        );
        state.limiter.begin_attempt(control.clone());
        state.descriptors.begin_attempt();
        state.panic_message = None;
        self.refuel();
        self.pipes.0.reset();
        self.pipes.1.reset();
    }

    /// What the guest wrote to stdout and stderr in this attempt (the captured tails).
    pub(crate) fn captured_output(&self) -> (Option<CapturedOutput>, Option<CapturedOutput>) {
        (self.pipes.0.captured(), self.pipes.1.captured())
    }

    /// Forgets the captured output (a program's value has taken it).
    pub(crate) fn clear_output(&mut self) {
        self.pipes.0.reset();
        self.pipes.1.reset();
    }

    /// Whether the instance in this store may serve another attempt after one that ended
    /// with `result`: only if the guest returned on its own (a value or a task error) and no
    /// limit was touched. A trap, an interruption, fuel or memory exhaustion all leave the
    /// instance in a state no later attempt should see.
    pub(crate) fn reusable_after(&self, result: &InvokeResult) -> bool {
        let state = self.store.data();
        result.is_ok()
            && !state.limiter.touched()
            && state.descriptors.refused().is_none()
            && !state.control.is_cancelled()
    }

    /// The report of an attempt that ended with `result`.
    pub(crate) fn report(
        &mut self,
        result: InvokeResult,
        request: &AttemptRequest<'_>,
    ) -> AttemptReport {
        let fuel_consumed = if self.metered {
            self.store
                .get_fuel()
                .ok()
                .map(|left| self.fuel_budget - left)
        } else {
            None
        };
        let outcome = match result {
            // Kept as its text, validated: never parsed into a tree, which would cost many
            // times its size.
            Ok(Ok(json)) => match Json::from_string(json) {
                Ok(value) => AttemptOutcome::Succeeded(value),
                Err(e) => AttemptOutcome::Failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!(
                        "task '{}' returned output that is not JSON: {e}",
                        request.display_name
                    ),
                )),
            },
            Ok(Err(error)) => AttemptOutcome::Failed(
                self.over_budget_or(guest_failure(error), request.display_name),
            ),
            Err(error) => self.classify_abnormal(error, request),
        };
        AttemptReport::new(outcome)
            .with_fuel(fuel_consumed)
            .with_output(self.pipes.0.captured(), self.pipes.1.captured())
    }

    /// Classifies an attempt that ended abnormally (docs/queues.md §5.2): cancellation, then
    /// the deadline, then fuel, then the memory limiter, then the actual cause.
    fn classify_abnormal(
        &self,
        error: wasmtime::Error,
        request: &AttemptRequest<'_>,
    ) -> AttemptOutcome {
        let name = request.display_name;
        let control = &request.control;
        // A failure the host decided on the guest's output (a typed value too large to send).
        if let Some(failure) = error.downcast_ref::<TaskFailure>() {
            return AttemptOutcome::Failed(failure.clone());
        }
        // An interruption by the host (the epoch callback, a blocking call that watched the
        // control) or a stop that raced the guest's own error: one rule decides.
        if error.downcast_ref::<StopReason>().is_some() || control.should_stop() {
            return control.stopped_outcome(name);
        }
        let trap = error.downcast_ref::<Trap>().copied();
        // The alternate form carries the trap and the wasm backtrace, not the host's.
        let detail = format!("{error:#}");
        let state = self.store.data();
        let limiter = &state.limiter;
        let failure = if trap == Some(Trap::OutOfFuel) {
            TaskFailure::new(
                FailureKind::OutOfFuel,
                format!(
                    "task '{name}' ran out of fuel (budget {})",
                    self.fuel_budget
                ),
            )
        } else if limiter.refused {
            TaskFailure::new(
                FailureKind::MemoryLimit,
                format!(
                    "task '{name}' exceeded its memory limit of {}",
                    crate::units::format_size(limiter.max_memory())
                ),
            )
        } else if limiter.budget_refused {
            TaskFailure::new(
                FailureKind::MemoryLimit,
                format!(
                    "task '{name}' could not grow its memory: the host's total memory budget \
                     of {} is in use by other attempts (raise it with --total-memory)",
                    crate::units::format_size(state.budget_total)
                ),
            )
        } else if let Some(refusal) = state.descriptors.refused() {
            refusal.failure(name)
        } else if let Some(panic) = &state.panic_message {
            TaskFailure::new(FailureKind::Trap, format!("task '{name}' {panic}"))
        } else if limiter.os_refused {
            TaskFailure::new(
                FailureKind::MemoryLimit,
                format!(
                    "task '{name}' could not grow its memory: the process's memory cap was \
                     reached"
                ),
            )
        } else if trap.is_none() && detail.contains(HOSTCALL_FUEL_EXHAUSTED) {
            TaskFailure::new(
                FailureKind::Serialization,
                format!(
                    "task '{name}' handed the host more than {} in one call (its value or a \
                     log line): the most the host copies out of a guest at once",
                    crate::units::format_size(MAX_CALL_OUTPUT_BYTES)
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
}

impl AttemptStore {
    /// A failure the guest returned after the host refused it a descriptor is reported as
    /// the limit it ran into, with the guest's own message as detail.
    fn over_budget_or(&self, failure: TaskFailure, name: &str) -> TaskFailure {
        match self.store.data().descriptors.refused() {
            Some(refusal) => refusal
                .failure(name)
                .with_detail(format!("the task's own error: {failure}")),
            None => failure,
        }
    }
}

/// At every epoch tick: stop the guest if its attempt must stop; else let it go on, after a
/// yield to the executor when `yield_now` (an async guest without fuel metering).
fn epoch_check(
    store: StoreContextMut<'_, AttemptState>,
    yield_now: bool,
) -> wasmtime::Result<UpdateDeadline> {
    match store.data().control.stop_reason() {
        Some(reason) => Err(wasmtime::Error::new(reason)),
        None if yield_now => Ok(UpdateDeadline::Yield(1)),
        None => Ok(UpdateDeadline::Continue(1)),
    }
}

/// The task name of a store before it runs a task (one shared, empty name: no allocation
/// per store).
fn no_task() -> Arc<str> {
    static NONE: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::from("")).clone()
}

fn guest_failure(error: WitTaskError) -> TaskFailure {
    match error {
        WitTaskError::Failed(m) => TaskFailure::new(FailureKind::Failed, m),
        WitTaskError::Permanent(m) => TaskFailure::new(FailureKind::Permanent, m),
        WitTaskError::InvalidInput(m) => TaskFailure::new(FailureKind::InvalidInput, m),
    }
}
