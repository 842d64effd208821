//! What the metrics and a status page see of a queue (its gauges and running attempts, read
//! only when someone looks), and guest progress passed from an attempt to the hook.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::super::handle::TaskCell;
use super::{Core, Phase};
use crate::attempt::ProgressFn;
use crate::metrics::{Gauges, RunningAttempt, Source};
use crate::progress::Progress;

impl Core {
    /// This queue as something the metrics watch.
    pub(crate) fn as_source(self: &Arc<Self>) -> Weak<dyn Source> {
        let weak: Weak<Core> = Arc::downgrade(self);
        weak
    }

    /// The progress callback of one attempt of `cell` (for the engine, or a backend that
    /// carries progress across a process or machine boundary).
    pub(crate) fn progress_fn(&self, cell: &Arc<TaskCell>) -> ProgressFn {
        let core = self.self_ref.clone();
        let cell = cell.clone();
        Arc::new(move |done, total| {
            if let Some(core) = core.upgrade() {
                core.progress_reported(&cell, Progress::new(done, total));
            }
        })
    }

    /// A running attempt of `cell` reported `progress`: keep it, and pass it to the hook at
    /// a coalesced rate.
    fn progress_reported(&self, cell: &Arc<TaskCell>, progress: Progress) {
        let listening = self.config.on_progress.is_some();
        if cell.progress.report(progress, listening) {
            self.deliver_progress(cell, progress);
        }
    }

    /// The attempt of `cell` ended: the hook hears its last progress if it has not yet.
    pub(crate) fn flush_progress(&self, cell: &Arc<TaskCell>) {
        if self.config.on_progress.is_some()
            && let Some(progress) = cell.progress.take_pending()
        {
            self.deliver_progress(cell, progress);
        }
    }

    fn deliver_progress(&self, cell: &Arc<TaskCell>, progress: Progress) {
        if let Some(on_progress) = &self.config.on_progress {
            let handle = self.handle(cell);
            if std::panic::catch_unwind(AssertUnwindSafe(|| on_progress(&handle, progress)))
                .is_err()
            {
                tracing::error!("callback on_progress panicked");
            }
        }
    }
}

impl Source for Core {
    fn title(&self) -> String {
        format!("{} queue", self.backend)
    }

    fn gauges(&self) -> Gauges {
        let state = self.state.lock();
        let running = state.active.len();
        Gauges {
            queued: state.outstanding.saturating_sub(running) as u64,
            running: running as u64,
            slots: state.workers.live.div_ceil(self.config.threads_per_worker) as u64,
            draining: matches!(
                state.phase,
                Phase::Draining | Phase::Stopping | Phase::Closing
            ),
            broker_connected: None,
            broker_reconnects: 0,
            plugin_fetches: None,
        }
    }

    fn running(&self, limit: usize, out: &mut Vec<RunningAttempt>) {
        let cells: Vec<Arc<TaskCell>> = self.state.lock().active.values().cloned().collect();
        let now = Instant::now();
        let mut started: Vec<(Option<Instant>, Arc<TaskCell>)> = cells
            .into_iter()
            .map(|cell| {
                let started = cell.state.lock().attempt_started;
                (started, cell)
            })
            .collect();
        // The longest running first; a task between attempts (a retry delay) last.
        started.sort_by_key(|(at, _)| (at.is_none(), *at));
        for (at, cell) in started.into_iter().take(limit) {
            let attempt = cell.state.lock().attempts;
            out.push(RunningAttempt::new(
                &cell.id,
                &cell.name,
                &cell.work.identity(),
                attempt,
                at.map(|at| now.saturating_duration_since(at))
                    .unwrap_or_default(),
                cell.progress.latest(),
            ));
        }
    }
}
