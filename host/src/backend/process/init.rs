//! The ProcessQueue initializer: work a worker subprocess does once, before its first task
//! (docs/queues.md §10.4). It crosses the process boundary, so it is data: plugins to preload
//! and hooks that the worker binary registered by name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What each worker subprocess does before its first task.
///
/// If any step fails, the task that caused the spawn fails with
/// [`WorkerStart`](crate::FailureKind::WorkerStart) and the step's message, the subprocess
/// exits, and the next task respawns it and tries again. The queue is not aborted.
///
/// ```
/// use osiiso_host::ProcessQueue;
/// use osiiso_host::backend::{ProcessContext, WorkerInit};
/// use serde_json::json;
///
/// let queue = ProcessQueue::builder()
///     .context(ProcessContext::CurrentExe { args: vec![] })
///     .initializer(
///         WorkerInit::new()
///             .preload("plugins/score.wasm")
///             .hook("open-db", json!({ "path": "scores.sqlite" })),
///     )
///     .build()?;
/// # Ok::<(), osiiso_host::queue::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerInit {
    preload: Vec<PathBuf>,
    hooks: Vec<(String, Value)>,
}

impl WorkerInit {
    /// Does nothing until steps are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads (and, on a cold cache, compiles) this component before the first task. A
    /// relative path is taken from the parent's working directory. A worker keeps at most 32
    /// plugins loaded, the least recently used dropped first, so of more than 32 preloads
    /// the last 32 stay loaded.
    pub fn preload(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.preload
            .push(std::path::absolute(&path).unwrap_or(path));
        self
    }

    /// Calls the hook the worker binary registered under `name` (see [`WorkerHooks`]) with
    /// `argument`. Hooks run after the preloads, in the order they were added.
    pub fn hook(mut self, name: impl Into<String>, argument: Value) -> Self {
        self.hooks.push((name.into(), argument));
        self
    }

    /// The components to preload.
    pub(crate) fn preloads(&self) -> &[PathBuf] {
        &self.preload
    }

    /// The hooks to call, with their arguments.
    pub(crate) fn hooks(&self) -> &[(String, Value)] {
        &self.hooks
    }
}

/// A worker hook: gets its argument, answers `Err(message)` to fail the worker's start.
pub type WorkerHook = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// The hooks a worker binary offers to [`WorkerInit::hook`], by name. An embedder registers
/// them in `main` and passes them to [`maybe_run_worker_with`](crate::maybe_run_worker_with);
/// the stock `osiiso-host worker` has none.
///
/// ```no_run
/// use osiiso_host::backend::WorkerHooks;
///
/// fn main() {
///     osiiso_host::maybe_run_worker_with(WorkerHooks::new().register("open-db", |arg| {
///         let path = arg["path"].as_str().ok_or("open-db needs a path")?;
///         // open the database for this worker ...
///         # let _ = path;
///         Ok(())
///     }));
///     // the embedder's own main ...
/// }
/// ```
#[derive(Clone, Default)]
pub struct WorkerHooks {
    hooks: HashMap<String, WorkerHook>,
}

impl WorkerHooks {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers `hook` under `name` (replacing an earlier one of that name).
    pub fn register(
        mut self,
        name: impl Into<String>,
        hook: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.insert(name.into(), Arc::new(hook));
        self
    }

    /// Runs the hook registered as `name`.
    pub(crate) fn call(&self, name: &str, argument: &Value) -> Result<(), String> {
        match self.hooks.get(name) {
            Some(hook) => hook(argument).map_err(|e| format!("worker hook '{name}' failed: {e}")),
            None => {
                let mut known: Vec<_> = self.hooks.keys().map(String::as_str).collect();
                known.sort_unstable();
                Err(format!(
                    "this worker binary has no hook named '{name}' (it has: {}); hooks are \
                     registered with maybe_run_worker_with in a binary started through a \
                     CurrentExe or Command context",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }
        }
    }
}

impl std::fmt::Debug for WorkerHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.hooks.keys().collect();
        names.sort_unstable();
        f.debug_struct("WorkerHooks")
            .field("names", &names)
            .finish()
    }
}
