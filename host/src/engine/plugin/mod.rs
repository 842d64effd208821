//! Plugins: a compiled component, its pre-linked instance, and its task list: the tasks an
//! SDK plugin lists through `osiiso:task/tasks` (`list.rs`), or else the component's own
//! exports (typed functions and a WASI program's `run`). On a tiered host a plugin moves to
//! its optimised code once it is compiled in the background (`optimize.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

use wasmtime::component::{Component, ComponentExportIndex};

use super::cache::CacheOutcome;
use super::code::Code;
use super::config::CompileTier;
use super::contract::TASKS_EXPORT;
use super::error::LoadError;
use super::http::HttpGrant;
use super::task::{Entry, Task, TaskInfo};
use super::tiers::{Compiled, TierEngine};
use super::typed;
use super::{Host, Limits, Sandbox};

mod list;
mod optimize;

struct PluginInner {
    host: Host,
    name: Arc<str>,
    path: Option<PathBuf>,
    hash: String,
    /// What the compile cache keeps the compiled code under: the hash of the bytes compiled
    /// (a preview-1 program's adapted component, else the file's hash).
    cache_key: String,
    /// The code attempts start with: the code it loaded with, until a tiered host replaces
    /// it (once) with optimised code compiled in the background. The code it replaces is
    /// freed once the attempts that run it end.
    code: ArcSwap<Code>,
    /// What a tiered host compiles in the background, once the plugin runs its first
    /// attempt (a plugin that is only listed, or whose tasks run in process workers, is not
    /// compiled again): the optimising engine and the component. A plugin dropped before
    /// then takes the bytes along.
    to_optimize: parking_lot::Mutex<Option<(Arc<TierEngine>, Vec<u8>)>>,
    /// Whether `to_optimize` holds something: the cheap check of every attempt.
    optimize_pending: AtomicBool,
    tasks: Vec<TaskInfo>,
    /// How each task of `tasks` is called.
    entries: Vec<Entry>,
    /// Other names of tasks (`acme:calc/stats@0.1.0#summarize`, `summarize`): index in `tasks`.
    aliases: HashMap<String, usize>,
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
    /// The sandbox's HTTP allow-list, parsed once (every store gets it), or why no attempt
    /// may run under this sandbox ([`checked_grants`]).
    http_grants: Result<Arc<[HttpGrant]>, String>,
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
        compiled: Compiled,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let Compiled {
            tier,
            component,
            outcome: cache,
        } = compiled;
        let plugin_err = || name.to_string();
        let engine = &tier.engine.clone();
        let sdk = sdk_exports(&component);
        let component_type = component.component_type();
        let tasks_index = component.get_export_index(None, TASKS_EXPORT);
        let found = match tasks_index {
            Some(_) => Vec::new(),
            None => typed::discover(&component, engine),
        };
        if tasks_index.is_none() && found.is_empty() {
            return Err(LoadError::MissingExport {
                plugin: plugin_err(),
                exports: component_type
                    .exports(engine)
                    .map(|(n, _)| n.to_string())
                    .collect(),
            });
        }
        let invoke_index = match &sdk {
            Some(Ok((invoke, _))) => Some(*invoke),
            _ => None,
        };
        let exports = found.iter().map(|f| f.export).collect();
        let code = Code::new(tier, component, invoke_index, exports).map_err(|error| {
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
        let list_index = match sdk {
            Some(Ok((_, list))) => Some(list),
            Some(Err(message)) => return Err(contract(message.into())),
            None => None,
        };

        let (tasks, entries): (Vec<TaskInfo>, Vec<Entry>) =
            found.into_iter().map(|f| (f.info, f.entry)).unzip();

        let mut plugin = Self {
            inner: Arc::new(PluginInner {
                host: host.clone(),
                name: Arc::from(name),
                path: path.map(Path::to_path_buf),
                cache_key: hash.clone(),
                hash,
                code: ArcSwap::from_pointee(code),
                to_optimize: parking_lot::Mutex::new(None),
                optimize_pending: AtomicBool::new(false),
                tasks,
                entries,
                aliases: HashMap::new(),
                cache,
            }),
            limits: Arc::new(limits),
            sandbox: Arc::new(Sandbox::default()),
            http_grants: Ok(Arc::from([])),
        };
        if let Some(list_index) = list_index {
            let tasks = plugin
                .read_task_list(&list_index)
                .map_err(|f| contract(f.message))?;
            let inner = Arc::get_mut(&mut plugin.inner).expect("plugin not shared yet");
            inner.entries = vec![Entry::Sdk; tasks.len()];
            inner.tasks = tasks;
        }
        let inner = Arc::get_mut(&mut plugin.inner).expect("plugin not shared yet");
        inner.aliases = aliases(&inner.tasks);
        Ok(plugin)
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

    /// The key of its compile-cache entry.
    pub(crate) fn cache_key(&self) -> &str {
        &self.inner.cache_key
    }

    /// The plugin with compiled code kept under `key` (not shared yet: called at load).
    pub(crate) fn with_cache_key(mut self, key: String) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.cache_key = key;
        }
        self
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

    /// The names of the tasks that can run.
    fn runnable_names(&self) -> Vec<String> {
        self.inner
            .tasks
            .iter()
            .filter(|t| t.not_runnable.is_none())
            .map(|t| t.name.clone())
            .collect()
    }

    /// A handle to one task, checked against the plugin's task list. A typed task may be
    /// named in full (`acme:calc/stats@0.1.0#summarize`) or bare (`summarize`) when that is
    /// unambiguous; a listed task that cannot run is an error that says why.
    pub fn task(&self, name: &str) -> Result<Task, LoadError> {
        let found = self
            .inner
            .tasks
            .iter()
            .position(|t| t.name == name)
            .or_else(|| self.inner.aliases.get(name).copied());
        let Some(index) = found else {
            return Err(LoadError::UnknownTask {
                plugin: self.name().to_string(),
                task: name.to_string(),
                known: self.task_names(),
            });
        };
        let info = &self.inner.tasks[index];
        if let Some(reason) = &info.not_runnable {
            return Err(LoadError::NotRunnable {
                plugin: self.name().to_string(),
                task: info.name.clone(),
                reason: reason.clone(),
            });
        }
        Ok(Task::new(
            self.clone(),
            info.clone(),
            self.inner.entries[index].clone(),
            index,
        ))
    }

    /// The only task that can run, when the plugin has exactly one.
    pub fn only_task(&self) -> Result<Task, LoadError> {
        match self.runnable_names().as_slice() {
            [only] => self.task(only),
            _ => Err(LoadError::TaskNotNamed {
                plugin: self.name().to_string(),
                known: self.runnable_names(),
            }),
        }
    }

    /// A copy with other limits (sharing the compiled code).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// A copy with another capability policy (sharing the compiled code).
    ///
    /// A sandbox that grants the host's compile cache (or a directory holding it) is refused:
    /// every attempt under it fails as `plugin_load`, since a guest that could write the cache
    /// or read its key could have the host run native code of its choice.
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.http_grants = checked_grants(self.host(), &sandbox);
        self.sandbox = Arc::new(sandbox);
        self
    }

    /// The sandbox's parsed HTTP allow-list, or why it does not parse.
    pub(crate) fn http_grants(&self) -> Result<Arc<[HttpGrant]>, String> {
        self.http_grants.clone()
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

    /// The code that attempts starting now run (a guard: looking at it costs no reference
    /// count; `.clone()` gives an `Arc` to keep).
    pub(crate) fn code(&self) -> arc_swap::Guard<Arc<Code>> {
        self.inner.code.load()
    }

    /// Which compiler made the code that attempts starting now run:
    /// [`CompileTier::Optimized`] or [`CompileTier::Baseline`]. On a
    /// [tiered](CompileTier::Tiered) host a never-seen plugin starts on baseline code, and
    /// this turns to optimised once its optimised code, compiled in the background from its
    /// first attempt on, is in use.
    pub fn compile_tier(&self) -> CompileTier {
        self.code().tier()
    }
}

/// `invoke` and `list` of `osiiso:task/tasks`, for a component that exports it; an error
/// when it lacks one of them.
fn sdk_exports(
    component: &Component,
) -> Option<Result<(ComponentExportIndex, ComponentExportIndex), &'static str>> {
    let tasks = component.get_export_index(None, TASKS_EXPORT)?;
    let invoke = component.get_export_index(Some(&tasks), "invoke");
    let list = component.get_export_index(Some(&tasks), "list");
    Some(match (invoke, list) {
        (Some(invoke), Some(list)) => Ok((invoke, list)),
        (None, _) => Err("`osiiso:task/tasks` has no `invoke` function"),
        (_, None) => Err("`osiiso:task/tasks` has no `list` function"),
    })
}

/// Every alias of every task: an alias that two tasks share, or that is some task's own name,
/// names none of them.
fn aliases(tasks: &[TaskInfo]) -> HashMap<String, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for task in tasks {
        for alias in &task.aliases {
            *counts.entry(alias).or_default() += 1;
        }
    }
    let mut aliases = HashMap::new();
    for (index, task) in tasks.iter().enumerate() {
        for alias in &task.aliases {
            if counts[alias.as_str()] == 1 && !tasks.iter().any(|t| t.name == *alias) {
                aliases.insert(alias.clone(), index);
            }
        }
    }
    aliases
}

/// The sandbox's parsed HTTP allow-list, or why no attempt may run under it: the list does not
/// parse, or a directory grant reaches the host's compile cache.
fn checked_grants(host: &Host, sandbox: &Sandbox) -> Result<Arc<[HttpGrant]>, String> {
    if !sandbox.dirs().is_empty()
        && let Some(cache) = host.cache_root()
        && let Some(grant) = sandbox.dirs().iter().find(|grant| grant.reaches(&cache))
    {
        return Err(format!(
            "directory '{}' holds the compile cache ({}); a guest must never reach it, since \
             compiled code there runs natively",
            grant.host.display(),
            cache.display(),
        ));
    }
    sandbox.http_grants()
}
