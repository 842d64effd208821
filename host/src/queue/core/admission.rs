//! Admission (docs/queues.md §3.4): validation, the closed and full checks, and the new task's
//! place in the ready queue or the scheduled set.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::super::error::{Closed, Error};
use super::super::handle::{DoneCallback, Handle, TaskCell};
use super::super::options::TaskOptions;
use super::super::work::Work;
use super::{Core, Phase, Record, State};

/// One task to admit.
pub(crate) struct Admission {
    pub(crate) work: Work,
    pub(crate) options: TaskOptions,
    /// Run when the task is done, before `on_complete` (a checkpoint's record).
    pub(crate) on_done: Option<DoneCallback>,
}

impl Admission {
    /// A task to admit; a WASM task's suggested retries and timeout fill the options the
    /// caller left alone.
    pub(crate) fn new(work: Work, options: TaskOptions) -> Self {
        let options = match &work {
            Work::Wasm(call) => {
                let info = call.task().info();
                options.with_suggestions(info.retries, info.timeout)
            }
            Work::Native { .. } | Work::Future { .. } => options,
        };
        Self {
            work,
            options,
            on_done: None,
        }
    }
}

impl Core {
    /// Admits a batch of tasks, in order; blocks for room when `block` and the queue is
    /// bounded.
    pub(crate) fn admit(
        self: &Arc<Self>,
        batch: Vec<Admission>,
        block: bool,
    ) -> Result<Vec<Handle>, Error> {
        for admission in &batch {
            admission.options.validate()?;
        }
        let mut handles = Vec::with_capacity(batch.len());
        let mut state = self.state.lock();
        state.results.reserve(batch.len());
        for admission in batch {
            self.wait_for_room(&mut state, block)?;
            let now = Instant::now();
            let options = &admission.options;
            let target = match (options.delay, options.run_at) {
                (Some(delay), _) => now.checked_add(delay),
                (None, Some(at)) => {
                    let ahead = at
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    now.checked_add(ahead)
                }
                (None, None) => None,
            };
            let seq = state.next_seq();
            let scheduled_for = target.filter(|t| *t > now);
            let cell = Arc::new(TaskCell::new(admission, seq, scheduled_for, &self.live));
            state.outstanding += 1;
            match scheduled_for {
                Some(at) => self.schedule(&mut state, at, cell.clone()),
                None => self.enqueue_ready(&mut state, cell.clone()),
            }
            handles.push(self.handle(&cell));
        }
        if let Some(metrics) = &self.config.metrics {
            metrics.tasks_submitted(handles.len() as u64);
        }
        Ok(handles)
    }

    /// Checks 3–4 of §3.4, repeated after every wake-up of a blocked submitter.
    fn wait_for_room(
        &self,
        state: &mut parking_lot::MutexGuard<'_, State>,
        block: bool,
    ) -> Result<(), Error> {
        let size = self.config.size;
        loop {
            if matches!(state.phase, Phase::RuntimeLost | Phase::RuntimeGone) {
                return Err(Error::Closed(Closed::RuntimeGone));
            }
            if !state.phase.accepting() || state.halted {
                return Err(Error::Closed(Closed::NotAccepting));
            }
            if size == 0 || state.outstanding < size {
                return Ok(());
            }
            if !block {
                return Err(Error::QueueFull(size));
            }
            self.changed.wait(state);
        }
    }

    /// A task that is not submitted: it was restored from a checkpoint (§11). It is final at
    /// once, is not outstanding, takes no place in `results()` or summaries and fires no
    /// `on_complete`.
    pub(crate) fn restored(&self, work: Work, options: TaskOptions, record: Record) -> Handle {
        let admission = Admission::new(work, options);
        let cell = Arc::new(TaskCell::new(admission, 0, None, &self.live));
        let result = Arc::new(self.result_of(&cell, record));
        cell.complete(result, &self.self_ref);
        self.handle(&cell)
    }

    /// Reserves a group id from the sequence counter.
    pub(crate) fn next_group_id(&self) -> String {
        format!("group-{}", self.state.lock().next_seq())
    }
}
