//! Tasks: what a plugin says about each one ([`TaskInfo`]), how it is called ([`Entry`]), and
//! the handle a queue submits ([`Task`]).

use std::sync::Arc;
use std::time::Duration;

use super::plugin::Plugin;
use super::typed::TypedFunc;
use crate::attempt::TaskCall;
use serde::Serialize;

/// How a task is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskKind {
    /// Through the `osiiso:task/tasks` export of a plugin written with an SDK: JSON in, JSON out.
    Sdk,
    /// A function the component exports, with JSON converted to and from its WIT types.
    Function,
    /// A WASI program's `run` (`wasi:cli/run`, or a preview-1 module's `_start`).
    Program,
}

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
    /// How it is called.
    pub kind: TaskKind,
    /// The WIT signature of a typed task (`func(a: s64, b: s64) -> s64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why the task cannot run (a function that takes or returns a resource), if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_runnable: Option<String>,
    /// Other names it answers to: an interface function's full name, and its bare name when
    /// no other function has it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

fn serialize_ms<S: serde::Serializer>(t: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&(t.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

/// How the engine calls a task.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// `invoke(name, input)` of the plugin's `osiiso:task/tasks` export.
    Sdk,
    /// An exported function, called with values converted from JSON.
    Func(Arc<TypedFunc>),
    /// `wasi:cli/run`'s `run`.
    Program,
    /// Listed but not callable ([`TaskInfo::not_runnable`] says why).
    NotRunnable,
}

/// One task of a plugin: what a queue submits with a JSON input
/// ([`with_input`](Self::with_input)). Cloning is cheap; clones share the compiled plugin.
///
/// ```
/// use osiiso_host::{FailureKind, Host, ThreadQueue};
/// use osiiso_host::queue::TaskOptions;
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let plugin = Host::new()?.load(echo_wasm)?;
/// let add = plugin.task("add")?;
/// assert_eq!(add.identity(), "echo/add");
/// assert_eq!(add.info().description, "Adds two integers given as a JSON array `[a, b]`.");
/// assert!(plugin.task("subtract").is_err(), "the plugin has no such task");
///
/// let queue = ThreadQueue::builder().build()?;
/// let sum = queue.submit(add.with_input(json!([2, 3])), TaskOptions::new())?;
/// let overflow = queue.submit(add.with_input(json!([i64::MAX, 1])), TaskOptions::new())?;
/// queue.run()?;
/// assert_eq!(sum.value()?.get::<i64>()?, 5);
/// assert_eq!(overflow.error().map(|e| e.kind), Some(FailureKind::InvalidInput));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Task {
    plugin: Plugin,
    name: Arc<str>,
    info: Arc<TaskInfo>,
    entry: Entry,
    /// Its position in the plugin's task list.
    position: usize,
}

impl Task {
    pub(crate) fn new(plugin: Plugin, info: TaskInfo, entry: Entry, position: usize) -> Self {
        Self {
            plugin,
            name: Arc::from(info.name.as_str()),
            info: Arc::new(info),
            entry,
            position,
        }
    }

    /// Its position in the plugin's task list (where [`Code`](super::code::Code) keeps its
    /// export).
    pub(crate) fn position(&self) -> usize {
        self.position
    }

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

    pub(crate) fn entry(&self) -> &Entry {
        &self.entry
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
