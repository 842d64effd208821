//! Turns: numbered places in an order that threads must keep while they race. A [`Turns`]
//! issues [`Turn`]s in order; a holder [`wait`](Turn::wait)s until every turn issued before
//! its own has [`pass`](Turn::pass)ed (a dropped turn passes), does what must happen in that
//! order, and passes. The queue core issues one to each task it hands to a worker thread, so
//! that a backend holding several attempts per worker sends them in the order it handed them
//! out (docs/queues.md §10.4); the process backend keeps the same order per subprocess with
//! turns of its own.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Issues [`Turn`]s and keeps track of the ones that passed.
#[derive(Default)]
pub(crate) struct Turns {
    state: Mutex<State>,
    passed: Condvar,
}

#[derive(Default)]
struct State {
    /// The number of the next turn to issue.
    issued: u64,
    /// Every turn before this one has passed: it is this one's go.
    next: u64,
    /// Turns after `next` that passed before it (a turn given up, say).
    passed_early: BTreeSet<u64>,
    /// Threads blocked in [`Turn::wait`].
    waiting: usize,
}

/// One place in the order of a [`Turns`]. It passes when dropped, if it has not yet.
pub(crate) struct Turn {
    turns: Arc<Turns>,
    number: u64,
    passed: AtomicBool,
}

impl Turns {
    /// The next turn, after every turn issued before.
    pub(crate) fn issue(self: &Arc<Self>) -> Turn {
        let mut state = self.state.lock();
        let number = state.issued;
        state.issued += 1;
        Turn {
            turns: self.clone(),
            number,
            passed: AtomicBool::new(false),
        }
    }
}

impl Turn {
    /// Blocks until every turn issued before this one has passed; true then. Gives up,
    /// false, as soon as `stop` says so (checked every `poll`).
    pub(crate) fn wait(&self, poll: Duration, stop: impl Fn() -> bool) -> bool {
        let turns = &*self.turns;
        let mut state = turns.state.lock();
        while state.next != self.number {
            if stop() {
                return false;
            }
            state.waiting += 1;
            turns.passed.wait_for(&mut state, poll);
            state.waiting -= 1;
        }
        true
    }

    /// Lets the next turns go (once; later calls do nothing).
    pub(crate) fn pass(&self) {
        if self.passed.swap(true, Ordering::AcqRel) {
            return;
        }
        let turns = &*self.turns;
        let mut state = turns.state.lock();
        if state.next != self.number {
            state.passed_early.insert(self.number);
            return;
        }
        state.next += 1;
        loop {
            let next = state.next;
            if !state.passed_early.remove(&next) {
                break;
            }
            state.next += 1;
        }
        if state.waiting > 0 {
            turns.passed.notify_all();
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.pass();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_go_in_the_order_they_were_issued() {
        let turns = Arc::new(Turns::default());
        let issued: Vec<Turn> = (0..8).map(|_| turns.issue()).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        std::thread::scope(|scope| {
            // Started last first: each waits for the ones before it.
            for (i, turn) in issued.into_iter().enumerate().rev() {
                let order = order.clone();
                scope.spawn(move || {
                    assert!(turn.wait(Duration::from_secs(60), || false));
                    order.lock().push(i);
                    turn.pass();
                });
            }
        });
        assert_eq!(*order.lock(), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_dropped_turn_passes_and_a_stopped_wait_gives_up() {
        let turns = Arc::new(Turns::default());
        let (first, second, third) = (turns.issue(), turns.issue(), turns.issue());
        // The second passes before the first: the third still waits for the first.
        drop(second);
        assert!(!third.wait(Duration::from_millis(1), || true));
        drop(first);
        assert!(third.wait(Duration::from_secs(60), || false));
    }
}
