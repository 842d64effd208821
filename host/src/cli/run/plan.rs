//! What a `run` works on: its jobs, checked before anything runs (finite) or opened as a
//! stream (infinite), and its checkpoint, refused when a guest could reach it.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use osiiso_host::queue::Checkpoint;
use osiiso_host::{Plugin, Sandbox};

use super::super::feed::Jobs;
use super::super::jobs::{self, JobReader, LineKind, LineRules, Reads};
use super::super::output::Reporter;
use super::super::work::{self, CheckpointPlan, Resolver, Submission};
use super::args::{ModeArg, RunArgs};
use super::queue::task_flag_error;

/// What a run works on.
pub(super) enum Work {
    /// Every job, resolved and admitted at once into an unbounded queue: so that priorities
    /// and delays hold across the whole list, and so that a run that stops early (fail-first,
    /// a run timeout) gives every job a row. The queue may start first when admission order
    /// is running order.
    List {
        submissions: Vec<Submission>,
        admission_order: bool,
    },
    /// Jobs checked before anything runs, then read again and submitted as the workers take
    /// them (finite mode: when admission order is the running order, or when the queue is
    /// bounded and must run while it is fed anyway).
    Checked(Jobs, Resolver),
    /// Lines submitted as they arrive (infinite mode).
    Stream(Jobs, Resolver),
}

/// Everything a run needs besides its queue.
pub(super) struct Plan {
    pub(super) work: Work,
    /// Jobs to submit (finite mode).
    pub(super) total: Option<usize>,
    pub(super) checkpoint: Option<CheckpointPlan>,
    pub(super) reporter: Arc<Reporter>,
}

/// Opens `--checkpoint`, refusing (before the file is created) one that a guest could reach
/// through a grant.
pub(super) fn open_checkpoint(path: &Path, sandbox: &Sandbox) -> anyhow::Result<Checkpoint> {
    if let Some(grant) = Checkpoint::grant_reaching(path, sandbox) {
        let flag = if grant.read_only { "--dir-ro" } else { "--dir" };
        bail!(
            "--checkpoint '{}' is inside '{}', granted to the guest by {flag}: a guest that can \
             reach the checkpoint could read every recorded result or forge completions; keep \
             it outside every granted directory",
            path.display(),
            grant.host.display()
        );
    }
    Ok(Checkpoint::open(path)?)
}

/// Checks (finite) or opens (infinite) the work, and the checkpoint plan.
pub(super) fn plan(
    args: &RunArgs,
    plugin: &Plugin,
    checkpoint: Option<Checkpoint>,
) -> anyhow::Result<Plan> {
    let base = args.task_options.options();
    base.validate().map_err(task_flag_error)?;
    let default_task = match &args.task {
        Some(name) => Some(plugin.task(name)?),
        None => None,
    };
    let single_task = match (&default_task, &args.jobs) {
        (Some(task), _) => Some(task.clone()),
        (None, None) => Some(plugin.only_task()?),
        (None, Some(_)) => None,
    };
    let checkpoint = checkpoint.map(|c| CheckpointPlan::new(c, plugin, single_task.as_ref()));
    let mut resolver = Resolver::new(plugin.clone(), default_task, base.clone());
    let rules = |kind| LineRules::new(kind, base.clone(), plugin.limits().max_input_bytes);
    let reads = match args.mode {
        ModeArg::Finite => Reads::Twice,
        ModeArg::Infinite => Reads::Once,
    };
    let source = match (&args.jobs, &args.inputs_file) {
        (Some(jobs), _) => Some(JobReader::open(jobs, rules(LineKind::Job), reads)?),
        (None, Some(file)) => Some(JobReader::open(file, rules(LineKind::Input), reads)?),
        (None, None) => None,
    };
    let mut inline = jobs::from_inputs(&args.inputs)?;
    if source.is_none() && inline.is_empty() {
        inline = jobs::from_inputs(&["null".to_string()])?;
    }
    let (work, total) = match (args.mode, source) {
        (ModeArg::Infinite, Some(reader)) => {
            if !inline.is_empty() {
                bail!("--mode infinite reads its work from --inputs or --jobs only, not --input");
            }
            (Work::Stream(Box::new(reader), resolver), None)
        }
        (_, mut source) => {
            // Everything is checked before anything runs; nothing checked is kept.
            let inline_jobs = inline.iter().cloned().map(Ok);
            let checked = work::check(
                source.iter_mut().flatten().chain(inline_jobs),
                &mut resolver,
            )?;
            let again = source.map(JobReader::again).transpose()?;
            let jobs: Jobs = Box::new(
                again
                    .into_iter()
                    .flatten()
                    .chain(inline.into_iter().map(Ok)),
            );
            let stops_early = args.queue.fail_first || args.queue.run_timeout.is_some();
            let bounded = args.queue.size > 0;
            let work = if bounded || (checked.admission_order && !stops_early) {
                Work::Checked(jobs, resolver)
            } else {
                Work::List {
                    submissions: jobs
                        .map(|spec| resolver.resolve(spec?))
                        .collect::<anyhow::Result<_>>()?,
                    admission_order: checked.admission_order,
                }
            };
            (work, Some(checked.count))
        }
    };
    let reporter = Arc::new(Reporter::new(
        args.output,
        args.progress,
        args.quiet,
        total,
    )?);
    Ok(Plan {
        work,
        total,
        checkpoint,
        reporter,
    })
}
