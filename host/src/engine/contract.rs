//! The `osiiso:task` WIT contract as host-side types: the `host` import the engine provides and
//! the shapes of the `tasks` export it calls.

use wasmtime::component::{ComponentType, Lift, Linker};

use super::store::AttemptState;

/// Name of the interface every plugin must export.
pub(crate) const TASKS_EXPORT: &str = "osiiso:task/tasks@0.1.0";
/// Name of the interface the host provides to every plugin.
pub(crate) const HOST_IMPORT: &str = "osiiso:task/host@0.1.0";

/// `task-info` of the WIT contract.
#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(crate) struct WitTaskInfo {
    pub name: String,
    pub description: String,
    #[component(name = "input-schema")]
    pub input_schema: Option<String>,
    pub retries: Option<u32>,
    #[component(name = "timeout-ms")]
    pub timeout_ms: Option<u64>,
}

/// `task-error` of the WIT contract.
#[derive(ComponentType, Lift, Debug)]
#[component(variant)]
pub(crate) enum WitTaskError {
    #[component(name = "failed")]
    Failed(String),
    #[component(name = "permanent")]
    Permanent(String),
    #[component(name = "invalid-input")]
    InvalidInput(String),
}

/// `level` of the WIT contract.
#[derive(ComponentType, Lift, Debug, Clone, Copy)]
#[allow(dead_code, reason = "constructed by `Lift` from guest values")]
#[component(enum)]
#[repr(u8)]
pub(crate) enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

/// The typed signature of `tasks.list`.
pub(crate) type ListFn = wasmtime::component::TypedFunc<(), (Vec<WitTaskInfo>,)>;
/// The typed signature of `tasks.invoke`.
pub(crate) type InvokeFn =
    wasmtime::component::TypedFunc<(String, String), (Result<String, WitTaskError>,)>;

/// Adds the `osiiso:task/host` interface to a linker.
pub(crate) fn add_host_to_linker(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    let mut host = linker.instance(HOST_IMPORT)?;
    host.func_wrap("log", |mut store, (level, message): (Level, String)| {
        store.data_mut().log(level, message);
        Ok(())
    })?;
    host.func_wrap("progress", |mut store, (done, total): (u64, u64)| {
        store.data_mut().progress(done, total);
        Ok(())
    })?;
    host.func_wrap("cancelled", |store, (): ()| {
        Ok((store.data().control.should_stop(),))
    })?;
    host.func_wrap("attempt", |store, (): ()| Ok((store.data().attempt,)))?;
    Ok(())
}
