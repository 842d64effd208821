//! The thread backend: a WASM attempt runs as a sync instance on the worker thread (the
//! epoch stops it within one tick); a native closure runs inline and is abandoned on
//! timeout or cancel.

use std::sync::Arc;

use crate::engine::{AttemptControl, AttemptReport, AttemptRequest};
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::{
    AttemptOutcomeOrAbandoned, Backend, Executor, Initializer, TaskCell, Work, WorkerContext,
    run_native,
};

pub(crate) struct ThreadExecutor {
    initializer: Option<Initializer>,
}

impl ThreadExecutor {
    pub(crate) fn new(initializer: Option<Initializer>) -> Self {
        Self { initializer }
    }
}

impl Executor for ThreadExecutor {
    fn backend(&self) -> Backend {
        Backend::Thread
    }

    fn run_attempt(
        &self,
        worker: &WorkerContext<'_>,
        cell: &Arc<TaskCell>,
        attempt: u32,
        control: &Arc<AttemptControl>,
    ) -> AttemptOutcomeOrAbandoned {
        match &cell.work {
            Work::Wasm { task, input } => {
                AttemptOutcomeOrAbandoned::Done(task.run_attempt(AttemptRequest {
                    input,
                    attempt,
                    control: control.clone(),
                    display_name: &cell.name,
                    progress: None,
                }))
            }
            Work::Native { run, .. } => run_native(worker, cell, control, run),
            Work::Future { .. } => {
                AttemptOutcomeOrAbandoned::Done(AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    "a ThreadQueue cannot run async closures",
                )))
            }
        }
    }

    fn init_worker(&self) -> Result<(), String> {
        match &self.initializer {
            Some(init) => init(),
            None => Ok(()),
        }
    }
}
