//! Messages dropped because they are forged: logged, without letting a flood of them flood
//! the log.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often a count of dropped forgeries is logged at most, after the first one.
const EVERY: Duration = Duration::from_secs(10);

/// The forgeries of one kind ("report", "cancel", ...).
pub(crate) struct Forgeries {
    what: &'static str,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When a line was last logged.
    logged: Option<Instant>,
    /// Dropped since.
    dropped: u64,
}

impl Forgeries {
    pub(crate) const fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::new(State {
                logged: None,
                dropped: 0,
            }),
        }
    }

    /// One more dropped, because of `why` (escaped: it may quote the broker's bytes).
    pub(crate) fn dropped(&self, why: &str) {
        let mut state = self.state.lock();
        state.dropped += 1;
        let now = Instant::now();
        if state
            .logged
            .is_some_and(|at| now.duration_since(at) < EVERY)
        {
            return;
        }
        let why = crate::text::for_display(why, 200);
        if state.dropped == 1 {
            tracing::warn!(what = self.what, "dropped a forged {}: {why}", self.what);
        } else {
            tracing::warn!(
                what = self.what,
                count = state.dropped,
                "dropped {} forged {}s (the last: {why})",
                state.dropped,
                self.what
            );
        }
        state.logged = Some(now);
        state.dropped = 0;
    }
}
