//! From jobs to submissions: each job's task and options resolved against the plugin, and,
//! with `--checkpoint`, the namespace and key that remember it. Finite runs submit a whole
//! list; infinite runs feed lines as they arrive.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use osiiso_host::queue::backend::Backend;
use osiiso_host::queue::{
    Checkpoint, Error as QueueError, Handle, KeyFn, Queue, TaskOptions, canonical_json,
};
use osiiso_host::{Plugin, Task, TaskCall};
use serde_json::Value;

use super::jobs::{JobReader, JobSpec};

/// One task ready to submit.
pub(crate) type Submission = (TaskCall, TaskOptions);

/// Resolves jobs into submissions: the task each one names (or the command line's, or the
/// plugin's only one), and its options (the plugin's suggestions, the command line's, the
/// job line's).
pub(crate) struct Resolver {
    plugin: Plugin,
    default_task: Option<Task>,
    /// Options per task, computed once.
    options: HashMap<String, (Task, TaskOptions)>,
    base: Box<dyn Fn(&Task) -> TaskOptions + Send>,
}

impl Resolver {
    pub(crate) fn new(
        plugin: Plugin,
        default_task: Option<Task>,
        base: impl Fn(&Task) -> TaskOptions + Send + 'static,
    ) -> Self {
        Self {
            plugin,
            default_task,
            options: HashMap::new(),
            base: Box::new(base),
        }
    }

    pub(crate) fn resolve(&mut self, spec: JobSpec) -> anyhow::Result<Submission> {
        let (task, options) = match &spec.task {
            Some(name) => self.task_options(name, &spec)?,
            None => match &self.default_task {
                Some(task) => {
                    let name = task.name().to_string();
                    self.task_options(&name, &spec)?
                }
                None => {
                    let only = self.plugin.only_task()?;
                    let name = only.name().to_string();
                    self.task_options(&name, &spec)?
                }
            },
        };
        let options = if spec.overrides.is_empty() {
            options
        } else {
            options
                .with_json_overrides(&spec.overrides)
                .map_err(|e| anyhow!("{}: {e}", spec.origin))?
        };
        Ok((task.with_input(spec.input), options))
    }

    fn task_options(&mut self, name: &str, spec: &JobSpec) -> anyhow::Result<(Task, TaskOptions)> {
        if let Some(found) = self.options.get(name) {
            return Ok(found.clone());
        }
        let task = self
            .plugin
            .task(name)
            .map_err(|e| anyhow!("{}: {e}", spec.origin))?;
        let options = (self.base)(&task);
        self.options
            .insert(name.to_string(), (task.clone(), options.clone()));
        Ok((task, options))
    }
}

/// Whether admission order alone decides the running order: every task has the same
/// priority and none waits for a delay. The queue may then start while it is fed.
pub(crate) fn order_is_admission_order(submissions: &[Submission]) -> bool {
    let mut priorities = submissions.iter().map(|(_, o)| o.priority);
    let first = priorities.next();
    priorities.all(|p| Some(p) == first)
        && submissions
            .iter()
            .all(|(_, o)| o.delay.is_none() && o.run_at.is_none())
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
                key: Arc::new(|call: &TaskCall| canonical_json(call.input())),
            },
            None => Self {
                checkpoint,
                namespace: format!("{}/*", plugin.name()),
                key: Arc::new(|call: &TaskCall| {
                    canonical_json(&Value::Array(vec![
                        Value::String(call.task().identity()),
                        call.input().clone(),
                    ]))
                }),
            },
        }
    }
}

/// How a list of tasks is admitted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// All at once: nothing can stop the admission part-way, so fail-first cancels what it
    /// reaches instead of refusing it.
    Batch,
    /// One by one, waiting for room in a bounded queue; each task is handed on as soon as it
    /// is admitted, so that a queue that stops taking work part-way (fail-first, a signal)
    /// still has every task it took reported.
    EachWaitingForRoom,
}

/// Submits `items` in order, restoring what the checkpoint remembers, and passes every
/// handle (restored ones included, done already) to `submitted`, in input order, without
/// keeping any.
pub(crate) fn submit<B: Backend>(
    queue: &Queue<B>,
    items: Vec<Submission>,
    plan: Option<&CheckpointPlan>,
    admit: Admit,
    submitted: &dyn Fn(&Handle),
) -> Result<(), QueueError> {
    let handles = match (plan, admit) {
        (Some(plan), _) => {
            queue.submit_checkpointed(items, &plan.checkpoint, &plan.namespace, &plan.key)?
        }
        (None, Admit::Batch) => queue.submit_all(items)?,
        (None, Admit::EachWaitingForRoom) => {
            for (call, options) in items {
                let handle = futures::executor::block_on(queue.submit_wait(call, options))?;
                submitted(&handle);
            }
            return Ok(());
        }
    };
    handles.iter().for_each(submitted);
    Ok(())
}

/// Feeds an infinite run from a stream: each line is submitted as it arrives (blocking for
/// room on a bounded queue, which holds the producer back), and the end of the stream shuts
/// the queue down gracefully once everything has finished. A bad line is reported and
/// skipped; `stop` ends the feeding early (a signal, an output failure).
pub(crate) struct Feeder<B: Backend> {
    pub(crate) queue: Arc<Queue<B>>,
    pub(crate) resolver: Resolver,
    pub(crate) plan: Option<CheckpointPlan>,
    pub(crate) stop: Arc<AtomicBool>,
    /// Lines that could not be submitted.
    pub(crate) rejected: Arc<AtomicBool>,
}

impl<B: Backend> Feeder<B> {
    /// Feeds every line, passing each handle to `submitted` (see [`submit`]).
    pub(crate) fn run(mut self, reader: JobReader, submitted: &dyn Fn(&Handle)) {
        for spec in reader {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let submission = spec.and_then(|spec| self.resolver.resolve(spec));
            let submission = match submission {
                Ok(submission) => submission,
                Err(error) => {
                    self.rejected.store(true, Ordering::SeqCst);
                    report_line_error(&error);
                    continue;
                }
            };
            match futures::executor::block_on(self.submit_one(submission, submitted)) {
                Ok(()) => {}
                // The queue stopped taking work (a signal, fail-first): stop reading.
                Err(QueueError::Closed | QueueError::ShutDown | QueueError::RuntimeGone) => return,
                Err(error) => {
                    self.rejected.store(true, Ordering::SeqCst);
                    report_line_error(&anyhow!("{error}"));
                }
            }
        }
        if !self.stop.load(Ordering::SeqCst) {
            // The end of the stream: let everything finish, then close.
            self.queue.shutdown();
        }
    }

    async fn submit_one(
        &self,
        (call, options): Submission,
        submitted: &dyn Fn(&Handle),
    ) -> Result<(), QueueError> {
        if let Some(plan) = &self.plan {
            let handles = loop {
                let item = vec![(call.clone(), options.clone())];
                match self.queue.submit_checkpointed(
                    item,
                    &plan.checkpoint,
                    &plan.namespace,
                    &plan.key,
                ) {
                    // A bounded async queue is full: wait a moment for room.
                    Err(QueueError::QueueFull(_)) => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    other => break other?,
                }
            };
            handles.iter().for_each(submitted);
            return Ok(());
        }
        let handle = self.queue.submit_wait(call, options).await?;
        submitted(&handle);
        Ok(())
    }
}

fn report_line_error(error: &anyhow::Error) {
    use std::io::Write as _;
    let message = osiiso_host::text::escape_control_keep_newlines(&format!("{error:#}"));
    let _ = writeln!(std::io::stderr(), "error: {message} (skipped)");
}
