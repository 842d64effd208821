//! What a queue keeps of the results it records (docs/queues.md §9.3): every one, for
//! `results()` and the summaries, or only what a summary counts.

use std::sync::Arc;
use std::time::Instant;

use super::super::options::Retention;
use super::super::result::TaskResult;
use super::super::summary::{RunSummary, Tally};

/// The recorded results, behind the queue lock.
pub(crate) struct ResultLog {
    retention: Retention,
    /// `Retention::All`: every result since construction, `reset()` or `clear_results()`.
    kept: Vec<Arc<TaskResult>>,
    /// Where the next summary starts in `kept`.
    cursor: usize,
    /// `Retention::Counts`: the summary being counted since the last one was cut.
    window: Tally,
    /// Results recorded since construction, `reset()` or `clear_results()`.
    recorded: usize,
}

impl ResultLog {
    pub(crate) fn new(retention: Retention) -> Self {
        Self {
            retention,
            kept: Vec::new(),
            cursor: 0,
            window: Tally::default(),
            recorded: 0,
        }
    }

    /// Records one result (§6 step 4).
    pub(crate) fn push(&mut self, result: &Arc<TaskResult>) {
        self.recorded += 1;
        match self.retention {
            Retention::All => self.kept.push(result.clone()),
            // Detached tasks are left out of summaries (§8.5).
            Retention::Counts if !result.detached => self.window.add(result),
            Retention::Counts => {}
        }
    }

    /// Makes room for `additional` results about to be admitted.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.retention == Retention::All {
            self.kept.reserve(additional);
        }
    }

    /// Results recorded since construction, `reset()` or `clear_results()`.
    pub(crate) fn recorded(&self) -> usize {
        self.recorded
    }

    /// Results the queue holds: every one, or the failures a counted summary keeps.
    pub(crate) fn held(&self) -> usize {
        self.kept.len() + self.window.kept()
    }

    /// `results()`: every result kept (none when only counts are).
    pub(crate) fn all(&self) -> Vec<Arc<TaskResult>> {
        self.kept.clone()
    }

    /// Forgets every result and starts the next summary afresh.
    pub(crate) fn clear(&mut self) {
        self.kept = Vec::new();
        self.cursor = 0;
        self.window = Tally::default();
        self.recorded = 0;
    }

    /// The summary of every non-detached result since the last one (§3.2 step 6); the next
    /// one starts exactly here.
    pub(crate) fn cut_summary(&mut self, run_start: Instant, timed_out: bool) -> RunSummary {
        match self.retention {
            Retention::All => {
                let cut = self.kept.len();
                let results: Vec<_> = self.kept[self.cursor.min(cut)..cut]
                    .iter()
                    .filter(|r| !r.detached)
                    .cloned()
                    .collect();
                self.cursor = cut;
                RunSummary::from_results(results, run_start, timed_out)
            }
            Retention::Counts => {
                std::mem::take(&mut self.window).into_summary(run_start, timed_out)
            }
        }
    }
}
