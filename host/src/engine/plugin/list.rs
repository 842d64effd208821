//! An SDK plugin's task list: `list` called once at load, on a throwaway instance, under a
//! deadline, the caller's memory caps and a bound on what is copied out.

use std::time::Duration;

use wasmtime::component::ComponentExportIndex;

use super::Plugin;
use crate::attempt::AttemptControl;
use crate::engine::Limits;
use crate::engine::contract::ListFn;
use crate::engine::store::AttemptStore;
use crate::engine::task::{TaskInfo, TaskKind};
use crate::failure::{FailureKind, TaskFailure};

/// How long a plugin may take to instantiate and answer `list` at load time.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most the host copies out of a plugin's `list`, all tasks together: their names,
/// descriptions and input schemas, and about a hundred bytes a task. Strings in the guest's
/// memory can alias each other, so the guest's memory cap does not bound the copy.
const MAX_LIST_BYTES: usize = 4 << 20;

impl Plugin {
    /// Calls `list` on a throwaway instance, under a deadline and the plugin's limits (the
    /// caller's fuel and memory caps apply already at load time), copying at most
    /// [`MAX_LIST_BYTES`] out of it.
    pub(super) fn read_task_list(
        &self,
        list_index: &ComponentExportIndex,
    ) -> Result<Vec<TaskInfo>, TaskFailure> {
        let control = AttemptControl::new(Some(LIST_TIMEOUT));
        // The caller's memory caps hold from the start; the fuel budget is the tasks', and
        // `list` is bounded by its deadline instead.
        let limits = Limits {
            fuel: None,
            ..self.limits().clone()
        };
        let mut store = AttemptStore::new(self, &limits, &control, false, None)?;
        let store_code = store.code.clone();
        let store = &mut store.store;
        // Every string and list lifted out of the guest spends this allowance (wasmtime's
        // "hostcall fuel"), once for the whole result.
        store.set_hostcall_fuel(MAX_LIST_BYTES);
        let fail = |e: wasmtime::Error| {
            let message = format!("{e:#}");
            let message = if message.contains("fuel allocated for hostcalls") {
                format!(
                    "`list` returned more than {} of task names, descriptions and input \
                     schemas (all tasks together)",
                    crate::units::format_size(MAX_LIST_BYTES)
                )
            } else {
                format!("calling `list` failed: {message}")
            };
            TaskFailure::new(FailureKind::PluginLoad, message)
        };
        let instance = store_code
            .instance_pre()
            .instantiate(&mut *store)
            .map_err(fail)?;
        let list: ListFn = instance
            .get_typed_func(&mut *store, list_index)
            .map_err(|e| {
                TaskFailure::new(
                    FailureKind::PluginLoad,
                    format!("`list` has the wrong type: {e:#}"),
                )
            })?;
        let (infos,) = list.call(&mut *store, ()).map_err(fail)?;
        infos
            .into_iter()
            .map(|info| {
                let input_schema = match info.input_schema {
                    Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                        TaskFailure::new(
                            FailureKind::PluginLoad,
                            format!(
                                "task '{}' has an input schema that is not JSON: {e}",
                                info.name
                            ),
                        )
                    })?),
                    None => None,
                };
                Ok(TaskInfo {
                    name: info.name,
                    description: info.description,
                    input_schema,
                    retries: info.retries,
                    timeout: info.timeout_ms.map(Duration::from_millis),
                    kind: TaskKind::Sdk,
                    signature: None,
                    not_runnable: None,
                    aliases: Vec::new(),
                })
            })
            .collect()
    }
}
