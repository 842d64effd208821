//! Fan-outs: `map`, `group` and `submit_all` admit many tasks as one batch, in order, and
//! with a [`Checkpoint`] restore the inputs that succeeded before instead of running them
//! again (docs/queues.md §8.3, §11).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::Queue;
use super::backend::Backend;
use super::checkpoint::{Checkpoint, Hit, canonical_json};
use super::core::{Admission, Record};
use super::error::{CheckpointError, Error};
use super::group::Group;
use super::handle::Handle;
use super::options::TaskOptions;
use super::result::TaskStatus;
use crate::attempt::TaskCall;
use crate::engine::Task;
use crate::json::Json;

/// Derives the checkpoint key of one element of a fan-out.
pub type KeyFn = Arc<dyn Fn(&TaskCall) -> String + Send + Sync>;

/// How a fan-out uses a checkpoint: which one, under what namespace, with what keys.
///
/// Defaults: for `map`, the task's identity (`<plugin>/<task>`) as the namespace and the
/// canonical JSON of each input as its key; for a group of different tasks, the group id as
/// the namespace (an explicit one: a generated id never matches on a rerun) and the canonical
/// JSON of `[task identity, input]` as the key.
///
/// ```
/// use osiiso_host::queue::{Checkpoint, Checkpointing, TaskOptions};
/// use osiiso_host::{Host, ThreadQueue};
/// use serde_json::json;
/// # let double_wasm = osiiso_test_artifacts::DOUBLE;
///
/// let double = Host::new()?.load(double_wasm)?.task("double")?;
/// let checkpoint = Checkpoint::open(":memory:")?;
/// for round in 0..2 {
///     let queue = ThreadQueue::builder().build()?;
///     let group = queue.map_checkpointed(
///         &double,
///         (1..=3).map(|n| json!(n)),
///         TaskOptions::new(),
///         &Checkpointing::new(&checkpoint),
///     )?;
///     let summary = queue.run()?;
///     assert_eq!(group.values()?, [json!(2), json!(4), json!(6)]);
///     // The second round restores all three: nothing runs, the summary is empty.
///     assert_eq!(summary.total_submitted, if round == 0 { 3 } else { 0 });
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Checkpointing {
    checkpoint: Checkpoint,
    namespace: Option<String>,
    key: Option<KeyFn>,
}

impl std::fmt::Debug for Checkpointing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointing")
            .field("checkpoint", &self.checkpoint)
            .field("namespace", &self.namespace)
            .field("key", &self.key.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl Checkpointing {
    /// Uses `checkpoint` with the default namespace and keys.
    pub fn new(checkpoint: &Checkpoint) -> Self {
        Self {
            checkpoint: checkpoint.clone(),
            namespace: None,
            key: None,
        }
    }

    /// Records and restores under `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Derives each element's key with `key` instead of its canonical JSON.
    pub fn key(mut self, key: impl Fn(&TaskCall) -> String + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// The default key of a fan-out of one task ([`map_checkpointed`](Queue::map_checkpointed)):
    /// the canonical JSON of the input, so that `{"b":1,"a":2}` and `{"a":2,"b":1}` are one
    /// key. For [`Queue::submit_checkpointed`] of calls to one task.
    ///
    /// ```
    /// use osiiso_host::queue::Checkpointing;
    /// # let double = osiiso_host::Host::new()?.load(osiiso_test_artifacts::DOUBLE)?.task("double")?;
    /// let key = Checkpointing::input_key();
    /// assert_eq!(key(&double.with_input(serde_json::json!({"b": 1, "a": 2}))), r#"{"a":2,"b":1}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn input_key() -> KeyFn {
        Arc::new(|call: &TaskCall| canonical_json(call.input()))
    }

    /// The default key of a fan-out of several tasks
    /// ([`group_checkpointed`](Queue::group_checkpointed)): the canonical JSON of
    /// `[task identity, input]`, so that two tasks given the same input keep two keys.
    ///
    /// ```
    /// use osiiso_host::queue::Checkpointing;
    /// # let double = osiiso_host::Host::new()?.load(osiiso_test_artifacts::DOUBLE)?.task("double")?;
    /// let key = Checkpointing::task_input_key();
    /// let shown = key(&double.with_input(serde_json::json!(7)));
    /// assert_eq!(shown, format!(r#"["{}",7]"#, double.identity()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task_input_key() -> KeyFn {
        Arc::new(|call: &TaskCall| {
            canonical_json(&Value::Array(vec![
                Value::String(call.task().identity()),
                call.input().clone(),
            ]))
        })
    }
}

impl<B: Backend> Queue<B> {
    /// Submits one task per input, as one group (`map`). Inputs are never unpacked.
    pub fn map(
        &self,
        task: &Task,
        inputs: impl IntoIterator<Item = Value>,
        options: TaskOptions,
    ) -> Result<Group, Error> {
        self.group(calls(task, inputs), options)
    }

    /// [`map`](Self::map) with a checkpoint: inputs that succeeded before are restored, the
    /// others run, and each one that succeeds is recorded.
    pub fn map_checkpointed(
        &self,
        task: &Task,
        inputs: impl IntoIterator<Item = Value>,
        options: TaskOptions,
        checkpointing: &Checkpointing,
    ) -> Result<Group, Error> {
        let namespace = checkpointing
            .namespace
            .clone()
            .unwrap_or_else(|| task.identity());
        let key = checkpointing
            .key
            .clone()
            .unwrap_or_else(Checkpointing::input_key);
        let (group_id, items) = self.grouped(calls(task, inputs), options)?;
        let handles =
            self.submit_checkpointed(items, &checkpointing.checkpoint, &namespace, &key)?;
        Ok(Group::new(group_id, handles))
    }

    /// Submits several tasks as one group; the id is `options.group_id` or `group-<n>`.
    pub fn group(&self, items: Vec<TaskCall>, options: TaskOptions) -> Result<Group, Error> {
        let (group_id, items) = self.grouped(items, options)?;
        Ok(Group::new(group_id, self.submit_all(items)?))
    }

    /// [`group`](Self::group) with a checkpoint. Its namespace is the checkpointing's, else
    /// the explicit `options.group_id` (a generated id never matches on a rerun).
    pub fn group_checkpointed(
        &self,
        items: Vec<TaskCall>,
        options: TaskOptions,
        checkpointing: &Checkpointing,
    ) -> Result<Group, Error> {
        let namespace = checkpointing
            .namespace
            .clone()
            .or_else(|| options.group_id.clone())
            .ok_or(Error::Checkpoint(CheckpointError::Namespace))?;
        let key = checkpointing
            .key
            .clone()
            .unwrap_or_else(Checkpointing::task_input_key);
        let (group_id, items) = self.grouped(items, options)?;
        let handles =
            self.submit_checkpointed(items, &checkpointing.checkpoint, &namespace, &key)?;
        Ok(Group::new(group_id, handles))
    }

    /// Submits tasks with their own options as one batch, in order (consecutive sequence
    /// numbers); the handles come back in the same order. On a bounded queue it blocks for
    /// room element by element, or fails with `QueueFull` as [`submit`](Self::submit) does.
    pub fn submit_all(&self, items: Vec<(TaskCall, TaskOptions)>) -> Result<Vec<Handle>, Error> {
        let batch = items
            .into_iter()
            .map(|(call, options)| Admission::new(call.into(), options))
            .collect();
        self.core.admit(batch, B::BLOCKING_SUBMIT)
    }

    /// [`submit_all`](Self::submit_all) with a checkpoint: one batched lookup of every key,
    /// then, in order, a restored handle for each hit and a submission for each miss, recorded
    /// under `namespace` when (and only when) it succeeds. A plugin whose sandbox grants the
    /// checkpoint's directory is refused ([`Checkpoint::check_sandbox`]) before anything is
    /// admitted.
    pub fn submit_checkpointed(
        &self,
        items: Vec<(TaskCall, TaskOptions)>,
        checkpoint: &Checkpoint,
        namespace: &str,
        key: &KeyFn,
    ) -> Result<Vec<Handle>, Error> {
        let mut cleared: Option<&crate::engine::Sandbox> = None;
        for (call, options) in &items {
            options.validate()?;
            // A guest that could write the checkpoint could forge its completions.
            let sandbox = call.task().plugin().sandbox();
            if cleared != Some(sandbox) {
                checkpoint.check_sandbox(sandbox)?;
                cleared = Some(sandbox);
            }
        }
        let keys: Vec<String> = items.iter().map(|(call, _)| key(call)).collect();
        let hits: HashMap<String, Hit> = checkpoint.lookup(namespace, &keys)?;
        let mut slots: Vec<Option<Handle>> = Vec::with_capacity(items.len());
        let mut misses = Vec::new();
        let mut miss_slots = Vec::new();
        let mut recorded = HashSet::new();
        for ((call, options), key) in items.into_iter().zip(keys) {
            match hits.get(&key) {
                Some(hit) => {
                    let value = hit
                        .has_value
                        .then(|| hit.value.clone().unwrap_or_else(Json::null));
                    slots.push(Some(self.core.restored(
                        call.into(),
                        options,
                        Record::restored(value),
                    )));
                }
                None => {
                    miss_slots.push(slots.len());
                    slots.push(None);
                    // Duplicate keys in one fan-out all run; the key is recorded once.
                    let on_done = recorded
                        .insert(key.clone())
                        .then(|| recorder(checkpoint, namespace, key));
                    misses.push(Admission {
                        work: call.into(),
                        options,
                        on_done,
                    });
                }
            }
        }
        let admitted = self.core.admit(misses, B::BLOCKING_SUBMIT)?;
        for (slot, handle) in miss_slots.into_iter().zip(admitted) {
            slots[slot] = Some(handle);
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// The group id (the options', or a generated `group-<n>`) and each call with the
    /// options carrying it.
    fn grouped(
        &self,
        calls: Vec<TaskCall>,
        options: TaskOptions,
    ) -> Result<(String, Vec<(TaskCall, TaskOptions)>), Error> {
        options.validate()?;
        let group_id = match &options.group_id {
            Some(id) => id.clone(),
            None => self.core.next_group_id(),
        };
        let options = options.group_id(group_id.clone());
        let items = calls
            .into_iter()
            .map(|call| (call, options.clone()))
            .collect();
        Ok((group_id, items))
    }
}

fn calls(task: &Task, inputs: impl IntoIterator<Item = Value>) -> Vec<TaskCall> {
    inputs
        .into_iter()
        .map(|input| task.with_input(input))
        .collect()
}

/// The done callback that records a success under `(namespace, key)`. A checkpoint closed
/// too early loses the record: the error is logged, never raised into the queue.
fn recorder(checkpoint: &Checkpoint, namespace: &str, key: String) -> super::handle::DoneCallback {
    let (checkpoint, namespace) = (checkpoint.clone(), namespace.to_string());
    Box::new(move |handle: &Handle| {
        let Some(result) = handle.result() else {
            return;
        };
        if result.status != TaskStatus::Succeeded {
            return;
        }
        let null = Json::null();
        let value = result.value.as_ref().unwrap_or(&null);
        if let Err(error) = checkpoint.record(&namespace, &key, value, Some(&result.name)) {
            tracing::error!(%error, namespace, "cannot record a completion in the checkpoint");
        }
    })
}
