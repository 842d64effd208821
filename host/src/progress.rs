//! Guest progress: what an attempt says about how far it is (`progress(done, total)` of the WIT
//! contract), kept where every reader can see it (the status page, the CLI's progress bar,
//! [`Handle::progress`](crate::queue::Handle::progress)) and passed on at a bounded rate (to
//! an `on_progress` hook, across the process protocol, across the broker).
//!
//! A guest may call `progress` millions of times: each call only stores the pair. What is
//! passed on is coalesced: at most one delivery per [`PROGRESS_INTERVAL`] per attempt, plus the
//! last value once the attempt ends, so a flood costs no messages and no allocations.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How far an attempt says it is: `done` of `total` units (a total of 0: unknown).
///
/// These are the guest's own numbers, unchecked: `done` may exceed `total`.
/// [`fraction`](Self::fraction) clamps them for display.
///
/// ```
/// use osiiso_host::Progress;
/// assert_eq!(Progress::new(3, 4).fraction(), Some(0.75));
/// assert_eq!(Progress::new(9, 4).fraction(), Some(1.0));
/// assert_eq!(Progress::new(5, 0).fraction(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all; 0 when the guest does not know.
    pub total: u64,
}

impl Progress {
    /// `done` of `total`.
    pub fn new(done: u64, total: u64) -> Self {
        Self { done, total }
    }

    /// The share done, in `[0, 1]`, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| (self.done.min(self.total) as f64) / (self.total as f64))
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.fraction() {
            Some(fraction) => write!(f, "{}/{} ({:.0}%)", self.done, self.total, fraction * 100.0),
            None => write!(f, "{}", self.done),
        }
    }
}

/// The least time between two deliveries of one attempt's progress (to a hook, a parent
/// process or a submitter across the broker): at most four a second, whatever the guest does.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The progress of one task's current attempt: the latest value, and what was passed on.
#[derive(Debug, Default)]
pub(crate) struct ProgressCell {
    state: Mutex<CellState>,
}

#[derive(Debug, Default)]
struct CellState {
    latest: Option<Progress>,
    /// Reports so far.
    reports: u64,
    /// `reports` when a value was last passed on.
    delivered: u64,
    /// When a value was last passed on.
    delivered_at: Option<Instant>,
}

impl ProgressCell {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The latest value reported.
    pub(crate) fn latest(&self) -> Option<Progress> {
        self.state.lock().latest
    }

    /// A new attempt begins: it has said nothing yet.
    pub(crate) fn reset(&self) {
        *self.state.lock() = CellState::default();
    }

    /// Stores a report. True when it is due to be passed on: someone `listening`, and the
    /// last delivery at least [`PROGRESS_INTERVAL`] old (coalescing).
    pub(crate) fn report(&self, progress: Progress, listening: bool) -> bool {
        let mut state = self.state.lock();
        state.latest = Some(progress);
        state.reports += 1;
        if !listening {
            return false;
        }
        let now = Instant::now();
        let due = state
            .delivered_at
            .is_none_or(|at| now.saturating_duration_since(at) >= PROGRESS_INTERVAL);
        if due {
            state.delivered_at = Some(now);
            state.delivered = state.reports;
        }
        due
    }

    /// The latest value if it was not passed on yet (the attempt ended: flush it), marked
    /// as passed on.
    pub(crate) fn take_pending(&self) -> Option<Progress> {
        let mut state = self.state.lock();
        if state.delivered == state.reports {
            return None;
        }
        state.delivered = state.reports;
        state.delivered_at = Some(Instant::now());
        state.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_coalesced_and_the_last_value_is_pending() {
        let cell = ProgressCell::new();
        let started = Instant::now();
        let mut delivered = 0u64;
        for i in 1..=2_000_000u64 {
            delivered += u64::from(cell.report(Progress::new(i, 2_000_000), true));
        }
        let elapsed = started.elapsed();
        // One delivery at the start, at most one per interval after it.
        let bound = 1 + (elapsed.as_secs_f64() / PROGRESS_INTERVAL.as_secs_f64()).ceil() as u64;
        assert!(
            delivered >= 1 && delivered <= bound,
            "{delivered} deliveries in {elapsed:?}"
        );
        assert_eq!(cell.latest(), Some(Progress::new(2_000_000, 2_000_000)));
        assert_eq!(
            cell.take_pending(),
            Some(Progress::new(2_000_000, 2_000_000))
        );
        // Nothing new: nothing pending.
        assert_eq!(cell.take_pending(), None);
        cell.reset();
        assert_eq!(cell.latest(), None);
    }

    #[test]
    fn without_a_listener_only_the_latest_value_is_kept() {
        let cell = ProgressCell::new();
        assert_eq!(cell.latest(), None);
        assert!(!cell.report(Progress::new(1, 0), false));
        assert_eq!(cell.latest(), Some(Progress::new(1, 0)));
        assert_eq!(Progress::new(1, 0).to_string(), "1");
        assert_eq!(Progress::new(1, 3).to_string(), "1/3 (33%)");
    }
}
