//! Plugins: a compiled component, its pre-linked instance, and its task list.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use wasmtime::component::{Component, ComponentExportIndex, Instance, InstancePre};
use wasmtime::{Engine, Store};

use super::cache::CacheOutcome;
use super::contract::{InvokeFn, ListFn, TASKS_EXPORT};
use super::error::LoadError;
use super::store::{AttemptState, AttemptStore};
use super::{Host, Limits, Sandbox};
use crate::attempt::{AttemptControl, TaskCall};
use crate::failure::{FailureKind, TaskFailure};

/// How long a plugin may take to instantiate and answer `list` at load time.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most the host copies out of a plugin's `list`, all tasks together: their names,
/// descriptions and input schemas, and about a hundred bytes a task. Strings in the guest's
/// memory can alias each other, so the guest's memory cap does not bound the copy.
const MAX_LIST_BYTES: usize = 4 << 20;

/// What a plugin says about one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    /// The name to invoke it by.
    pub name: String,
    /// Human description.
    pub description: String,
    /// JSON Schema of the input, when known.
    pub input_schema: Option<serde_json::Value>,
    /// Suggested retries.
    pub retries: Option<u32>,
    /// Suggested per-attempt timeout.
    #[serde(rename = "timeout_ms", serialize_with = "serialize_ms")]
    pub timeout: Option<Duration>,
}

fn serialize_ms<S: serde::Serializer>(t: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&(t.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

struct PluginInner {
    host: Host,
    name: Arc<str>,
    path: Option<PathBuf>,
    hash: String,
    component: Component,
    pre: InstancePre<AttemptState>,
    pre_async: std::sync::OnceLock<InstancePre<AttemptState>>,
    invoke_index: ComponentExportIndex,
    tasks: Vec<TaskInfo>,
    cache: CacheOutcome,
}

/// A loaded plugin: compiled once, instantiated fresh for every attempt.
///
/// Cloning is cheap. [`with_limits`](Self::with_limits) and [`with_sandbox`](Self::with_sandbox)
/// return configured copies that share the compiled code.
///
/// ```
/// use osiiso_host::{AttemptControl, AttemptOutcome, AttemptRequest, Host, Limits, Sandbox};
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let plugin = Host::new()?
///     .load(echo_wasm)?
///     .with_limits(Limits::new().max_memory(64 << 20))
///     .with_sandbox(Sandbox::new().env("MODE", "test"));
/// let echo = plugin.task("echo")?;
/// assert_eq!(echo.identity(), "echo/echo");
/// // One attempt, outside any queue.
/// let report = echo.run_attempt(AttemptRequest {
///     input: &json!({"hello": "world"}),
///     attempt: 1,
///     control: AttemptControl::new(None),
///     display_name: "echo",
///     progress: None,
/// });
/// assert_eq!(report.outcome, AttemptOutcome::Succeeded(json!({"hello": "world"}).into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
    limits: Arc<Limits>,
    sandbox: Arc<Sandbox>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("hash", &self.inner.hash)
            .field("tasks", &self.task_names())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub(crate) fn load(
        host: &Host,
        name: &str,
        path: Option<&Path>,
        hash: String,
        component: Component,
        cache: CacheOutcome,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let plugin_err = || name.to_string();
        let engine = host.engine();
        let component_type = component.component_type();
        let exports: Vec<String> = component_type
            .exports(engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let Some(tasks_index) = component.get_export_index(None, TASKS_EXPORT) else {
            return Err(LoadError::MissingExport {
                plugin: plugin_err(),
                exports,
            });
        };
        let pre = host.linker().instantiate_pre(&component).map_err(|error| {
            let imports: Vec<String> = component_type
                .imports(engine)
                .filter(|(import, _)| !host.provides(import))
                .map(|(import, _)| format!("`{import}`"))
                .collect();
            if imports.is_empty() {
                LoadError::Compile {
                    plugin: plugin_err(),
                    message: format!("{error:#}"),
                }
            } else {
                LoadError::UnsatisfiedImport {
                    plugin: plugin_err(),
                    imports,
                }
            }
        })?;

        let contract = |message: String| LoadError::Contract {
            plugin: plugin_err(),
            message,
        };
        let invoke_index = component
            .get_export_index(Some(&tasks_index), "invoke")
            .ok_or_else(|| contract("`osiiso:task/tasks` has no `invoke` function".into()))?;
        let list_index = component
            .get_export_index(Some(&tasks_index), "list")
            .ok_or_else(|| contract("`osiiso:task/tasks` has no `list` function".into()))?;

        let mut plugin = Self {
            inner: Arc::new(PluginInner {
                host: host.clone(),
                name: Arc::from(name),
                path: path.map(Path::to_path_buf),
                hash,
                component,
                pre,
                pre_async: std::sync::OnceLock::new(),
                invoke_index,
                tasks: Vec::new(),
                cache,
            }),
            limits: Arc::new(limits),
            sandbox: Arc::new(Sandbox::default()),
        };
        let tasks = plugin
            .read_task_list(&list_index)
            .map_err(|f| contract(f.message))?;
        Arc::get_mut(&mut plugin.inner)
            .expect("plugin not shared yet")
            .tasks = tasks;
        Ok(plugin)
    }

    /// Calls `list` on a throwaway instance, under a deadline and the plugin's limits (the
    /// caller's fuel and memory caps apply already at load time), copying at most
    /// [`MAX_LIST_BYTES`] out of it.
    fn read_task_list(
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
        let mut store = AttemptStore::new(self, &limits, &control, false)?;
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
        let instance = self.inner.pre.instantiate(&mut *store).map_err(fail)?;
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
                })
            })
            .collect()
    }

    /// The plugin's name (its file stem).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.inner.name.clone()
    }

    /// The file it was loaded from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// BLAKE3 hash of the component bytes (hex).
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// Whether the compiled code came from the compile cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }

    /// The tasks this plugin exports, in the order it lists them.
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.inner.tasks
    }

    fn task_names(&self) -> Vec<String> {
        self.inner.tasks.iter().map(|t| t.name.clone()).collect()
    }

    /// A handle to one task, checked against the plugin's task list.
    pub fn task(&self, name: &str) -> Result<Task, LoadError> {
        match self.inner.tasks.iter().find(|t| t.name == name) {
            Some(info) => Ok(Task {
                plugin: self.clone(),
                name: Arc::from(name),
                info: Arc::new(info.clone()),
            }),
            None => Err(LoadError::UnknownTask {
                plugin: self.name().to_string(),
                task: name.to_string(),
                known: self.task_names(),
            }),
        }
    }

    /// The only task, when the plugin has exactly one.
    pub fn only_task(&self) -> Result<Task, LoadError> {
        match self.inner.tasks.as_slice() {
            [only] => self.task(&only.name.clone()),
            _ => Err(LoadError::TaskNotNamed {
                plugin: self.name().to_string(),
                known: self.task_names(),
            }),
        }
    }

    /// A copy with other limits (sharing the compiled code).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// A copy with another capability policy (sharing the compiled code).
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Arc::new(sandbox);
        self
    }

    /// The limits applied to each attempt.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The capability policy.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The host that loaded it.
    pub fn host(&self) -> &Host {
        &self.inner.host
    }

    pub(crate) fn engine(&self) -> &Engine {
        self.inner.host.engine()
    }

    pub(crate) fn component(&self) -> &Component {
        &self.inner.component
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<AttemptState> {
        &self.inner.pre
    }

    /// The pre-linked instance for async attempts (WASI linked with its async host calls).
    pub(crate) fn instance_pre_async(&self) -> wasmtime::Result<&InstancePre<AttemptState>> {
        if let Some(pre) = self.inner.pre_async.get() {
            return Ok(pre);
        }
        let pre = self
            .inner
            .host
            .linker_async()
            .instantiate_pre(&self.inner.component)?;
        Ok(self.inner.pre_async.get_or_init(|| pre))
    }

    pub(crate) fn invoke_fn(
        &self,
        store: &mut Store<AttemptState>,
        instance: &Instance,
    ) -> wasmtime::Result<InvokeFn> {
        instance.get_typed_func(store, &self.inner.invoke_index)
    }
}

/// One task of a plugin: what a queue submits with a JSON input.
#[derive(Clone, Debug)]
pub struct Task {
    plugin: Plugin,
    name: Arc<str>,
    info: Arc<TaskInfo>,
}

impl Task {
    /// The task's name within its plugin.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The plugin it belongs to.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// What the plugin says about it.
    pub fn info(&self) -> &TaskInfo {
        &self.info
    }

    /// Stable identity: `<plugin>/<task>`.
    pub fn identity(&self) -> String {
        format!("{}/{}", self.plugin.name(), self.name)
    }

    /// This task with an input: what a queue submits.
    pub fn with_input(&self, input: serde_json::Value) -> TaskCall {
        TaskCall::new(self.clone(), input)
    }
}
