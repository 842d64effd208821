//! From jobs to submissions: each job's task and options resolved against the plugin, and,
//! with `--checkpoint`, the namespace and key that remember it. A finite run checks every job
//! before anything runs; then it is fed job by job (`feed`), or, when priorities or delays
//! must be seen whole or the run may stop early, admitted as one batch (`submit_batch`).
//! Either way every handle goes to one callback as it is admitted, and none is kept.

use std::collections::HashMap;

use anyhow::anyhow;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{
    Checkpoint, Checkpointing, Error as QueueError, Handle, KeyFn, Queue, TaskOptions,
};
use osiiso_host::{Plugin, Task, TaskCall};

use super::jobs::JobSpec;

/// One task ready to submit.
pub(crate) type Submission = (TaskCall, TaskOptions);

/// Resolves jobs into submissions: the task each one names (or the command line's, or the
/// plugin's only one), and its options (the plugin's suggestions, the command line's, the
/// job line's).
pub(crate) struct Resolver {
    plugin: Plugin,
    default_task: Option<Task>,
    /// Each task named so far, found once.
    tasks: HashMap<String, Task>,
    /// The command line's options, before a job line's own.
    base: TaskOptions,
}

impl Resolver {
    pub(crate) fn new(plugin: Plugin, default_task: Option<Task>, base: TaskOptions) -> Self {
        Self {
            plugin,
            default_task,
            tasks: HashMap::new(),
            base,
        }
    }

    pub(crate) fn resolve(&mut self, spec: JobSpec) -> anyhow::Result<Submission> {
        let task = match &spec.task {
            Some(name) => self.task(name, &spec)?,
            None => match &self.default_task {
                Some(task) => task.clone(),
                None => {
                    let only = self.plugin.only_task()?;
                    self.default_task = Some(only.clone());
                    only
                }
            },
        };
        let options = if spec.overrides.is_empty() {
            self.base.clone()
        } else {
            self.base
                .with_json_overrides(&spec.overrides)
                .map_err(|e| anyhow!("{}: {e}", spec.origin))?
        };
        Ok((task.with_input(spec.input), options))
    }

    fn task(&mut self, name: &str, spec: &JobSpec) -> anyhow::Result<Task> {
        if let Some(found) = self.tasks.get(name) {
            return Ok(found.clone());
        }
        let task = self
            .plugin
            .task(name)
            .map_err(|e| anyhow!("{}: {e}", spec.origin))?;
        self.tasks.insert(name.to_string(), task.clone());
        Ok(task)
    }
}

/// What checking a finite run's jobs found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Jobs to submit.
    pub(crate) count: usize,
    /// Whether admission order alone decides the running order: every task has the same
    /// priority and none waits for a delay. The queue may then start while it is fed.
    pub(crate) admission_order: bool,
}

/// Checks every job before anything runs: each one is parsed, resolved against the plugin
/// and dropped, so that nothing is kept. The first bad job is the error.
pub(crate) fn check(
    jobs: impl Iterator<Item = anyhow::Result<JobSpec>>,
    resolver: &mut Resolver,
) -> anyhow::Result<Checked> {
    let mut count = 0;
    let mut priority = None;
    let mut admission_order = true;
    for spec in jobs {
        let (_, options) = resolver.resolve(spec?)?;
        count += 1;
        admission_order &= *priority.get_or_insert(options.priority) == options.priority
            && options.delay.is_none()
            && options.run_at.is_none();
    }
    Ok(Checked {
        count,
        admission_order,
    })
}

/// Where a checkpointed run remembers its tasks: the task's identity when the run has a
/// single task, the plugin's name for a jobs file of several; keys are the canonical JSON of
/// the input, or of `[task, input]`.
pub(crate) struct CheckpointPlan {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) namespace: String,
    pub(crate) key: KeyFn,
}

impl CheckpointPlan {
    pub(crate) fn new(checkpoint: Checkpoint, plugin: &Plugin, single_task: Option<&Task>) -> Self {
        match single_task {
            Some(task) => Self {
                checkpoint,
                namespace: task.identity(),
                key: Checkpointing::input_key(),
            },
            None => Self {
                checkpoint,
                namespace: format!("{}/*", plugin.name()),
                key: Checkpointing::task_input_key(),
            },
        }
    }
}

/// Admits `items` as one batch, in order, restoring what the checkpoint remembers, and passes
/// every handle (restored ones included, done already) to `submitted`, in input order,
/// without keeping any. Nothing can stop a batch part-way: fail-first or a run timeout
/// cancels what it reaches, so every job gets its row.
pub(crate) fn submit_batch<B: Backend>(
    queue: &Queue<B>,
    items: Vec<Submission>,
    plan: Option<&CheckpointPlan>,
    submitted: &dyn Fn(&Handle),
) -> Result<(), QueueError> {
    let handles = match plan {
        Some(plan) => {
            queue.submit_checkpointed(items, &plan.checkpoint, &plan.namespace, &plan.key)?
        }
        None => queue.submit_all(items)?,
    };
    handles.iter().for_each(submitted);
    Ok(())
}
