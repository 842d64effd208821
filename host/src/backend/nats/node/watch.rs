//! What the metrics and a status page see of a node (`serve --http`): its gauges and running
//! attempts, read only when someone looks, and the one place where a node records a finished
//! attempt.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::NodeShared;
use super::held::{LatestProgress, Shown};
use crate::attempt::{AttemptOutcome, AttemptReport};
use crate::backend::remote::AttemptSpec;
use crate::metrics::{Gauges, Outcome, RecentFailure, RunningAttempt, Source};

impl NodeShared {
    /// This node as something the metrics watch.
    pub(crate) fn as_source(self: &Arc<Self>) -> Weak<dyn Source> {
        let weak: Weak<NodeShared> = Arc::downgrade(self);
        weak
    }

    /// What a status page shows of an attempt about to run, when anyone watches.
    pub(crate) fn shown(&self, spec: &AttemptSpec, plugin_name: &str) -> Option<Shown> {
        self.metrics.as_ref()?;
        Some(Shown {
            name: spec.display_name.clone(),
            task: format!("{plugin_name}/{}", spec.task),
            attempt: spec.attempt,
            started: Instant::now(),
        })
    }

    /// An attempt ran here (or was refused before its guest ran) and ended with `report`
    /// after `duration`: a few relaxed atomic additions, and a bounded copy of a failure's
    /// message.
    pub(crate) fn record(
        &self,
        spec: &AttemptSpec,
        plugin_name: &str,
        report: &AttemptReport,
        duration: Duration,
    ) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let outcome = Outcome::of(&report.outcome);
        metrics.attempt_finished(outcome, duration, report.fuel_consumed);
        if let AttemptOutcome::Failed(failure) = &report.outcome {
            metrics.failed(RecentFailure::new(
                &spec.display_name,
                &format!("{plugin_name}/{}", spec.task),
                failure.kind,
                &failure.message,
            ));
        }
    }
}

impl Source for NodeShared {
    fn title(&self) -> String {
        format!("node {}", self.id)
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            queued: 0,
            running: self.busy.load(Ordering::Relaxed) as u64,
            slots: self.slots as u64,
            draining: self.draining.load(Ordering::Relaxed),
            broker_connected: Some(self.broker.is_connected()),
            broker_reconnects: self.broker.reconnection_count(),
            plugin_fetches: Some({
                let stats = self.plugins.fetch_stats();
                (stats.found, stats.fetch_seconds)
            }),
        }
    }

    fn running(&self, limit: usize, out: &mut Vec<RunningAttempt>) {
        let now = Instant::now();
        let attempts = self.attempts.lock();
        let mut running: Vec<((&String, &String), &Shown, &LatestProgress)> = attempts
            .held
            .iter()
            .filter_map(|((submitter, token), held)| {
                let shown = held.shown.as_ref()?;
                Some(((submitter, token), shown, &*held.progress))
            })
            .collect();
        running.sort_by_key(|(_, shown, _)| shown.started);
        for ((submitter, token), shown, progress) in running.into_iter().take(limit) {
            out.push(RunningAttempt::new(
                &format!("{submitter}-{token}"),
                &shown.name,
                &shown.task,
                shown.attempt,
                now.saturating_duration_since(shown.started),
                progress.latest(),
            ));
        }
    }
}
