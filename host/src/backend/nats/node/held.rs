//! The attempts a node holds (from delivery to acknowledgement), and the cancellations of
//! attempts it has not seen yet: one lock, so a cancel that races an attempt's start is never
//! lost. A cancellation counts only when the attempt's key signed it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::super::frame::{AttemptKey, Mac};
use super::super::message::CancelMsg;
use super::NodeShared;
use super::announce::FORGED_CANCELS;
use crate::attempt::AttemptControl;
use crate::progress::Progress;

/// Cancellations remembered for attempts this node has not seen yet.
const REMEMBERED_CANCELS: usize = 100_000;

/// An attempt held by this node, by (submitter, token).
pub(crate) struct Held {
    pub key: AttemptKey,
    /// Its control, once its guest is about to run.
    pub control: Option<Arc<AttemptControl>>,
    pub cancelled: bool,
    /// When this node took it: it is announced from
    /// [`ANNOUNCE_AFTER`](super::super::timing::ANNOUNCE_AFTER) on.
    pub taken: Instant,
    /// Its guest runs (its clock runs here).
    pub running: bool,
    /// Its clock matters (it has a timeout): it is announced as soon as its guest starts.
    pub timed: bool,
    /// What the last announcement said of it (`None`: never announced).
    pub announced: Option<bool>,
    /// What a status page shows of it, once its guest is about to run (only when the node
    /// has metrics).
    pub shown: Option<Shown>,
    /// The guest's latest progress report, passed on with the next announcement.
    pub progress: Arc<LatestProgress>,
}

/// The latest `progress(done, total)` of an attempt's guest: stored by the guest's call (a few
/// atomic stores, however often it calls), taken by the announcer when it changed and read by
/// the node's status page.
#[derive(Default)]
pub(crate) struct LatestProgress {
    done: AtomicU64,
    total: AtomicU64,
    changed: AtomicBool,
    /// The guest has reported at least once.
    reported: AtomicBool,
}

impl LatestProgress {
    /// Stores a report.
    pub(crate) fn store(&self, done: u64, total: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.changed.store(true, Ordering::Release);
        self.reported.store(true, Ordering::Release);
    }

    /// The latest report, if the guest made one (what the node's status page shows). A report
    /// stored meanwhile may pair one report's `done` with another's `total`: both are the
    /// guest's own numbers, shown for a glance.
    pub(crate) fn latest(&self) -> Option<Progress> {
        self.reported.load(Ordering::Acquire).then(|| {
            Progress::new(
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
            )
        })
    }

    /// The report stored since the last call, if any.
    pub(crate) fn take_changed(&self) -> Option<[u64; 2]> {
        self.changed.swap(false, Ordering::Acquire).then(|| {
            [
                self.done.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
            ]
        })
    }
}

/// A running attempt as a status page shows it.
pub(crate) struct Shown {
    pub name: String,
    /// `<plugin>/<task>`.
    pub task: String,
    pub attempt: u32,
    pub started: Instant,
}

type AttemptId = (String, String);

/// What is held here and what was cancelled.
#[derive(Default)]
pub(crate) struct Attempts {
    pub(super) held: HashMap<AttemptId, Held>,
    /// Cancellations of attempts not seen here, with their MACs (checked once the attempt
    /// and its key arrive). Bounded: the oldest are forgotten first.
    cancelled: HashMap<AttemptId, Mac>,
    cancel_order: VecDeque<AttemptId>,
}

impl NodeShared {
    /// Holds attempt (`submitter`, `token`); false if a cancellation signed with its key
    /// came first (a cancellation with another signature is logged as forged and ignored).
    pub(crate) fn hold(&self, submitter: &str, token: &str, key: &AttemptKey, timed: bool) -> bool {
        let id = (submitter.to_string(), token.to_string());
        let mut attempts = self.attempts.lock();
        if let Some(mac) = attempts.cancelled.remove(&id) {
            let cancel = CancelMsg {
                token: token.to_string(),
                mac,
            };
            if cancel.is_signed_by(key) {
                return false;
            }
            FORGED_CANCELS.dropped(&format!(
                "a cancellation of attempt {token} that its key did not sign"
            ));
        }
        attempts.held.insert(
            id,
            Held {
                key: key.clone(),
                control: None,
                cancelled: false,
                taken: Instant::now(),
                running: false,
                timed,
                announced: None,
                shown: None,
                progress: Arc::default(),
            },
        );
        true
    }

    /// Whether this node holds attempt (`submitter`, `token`) already (the broker handed it
    /// out again while this node was away from it).
    pub(crate) fn holds(&self, submitter: &str, token: &str) -> bool {
        let id = (submitter.to_string(), token.to_string());
        self.attempts.lock().held.contains_key(&id)
    }

    /// The attempt's guest is about to run under `control`: false if it was cancelled
    /// meanwhile. `shown` is what a status page shows of it. Returns where the guest's
    /// progress reports go too.
    pub(crate) fn start(
        &self,
        submitter: &str,
        token: &str,
        control: &Arc<AttemptControl>,
        shown: Option<Shown>,
    ) -> (bool, Option<Arc<LatestProgress>>) {
        let id = (submitter.to_string(), token.to_string());
        let mut attempts = self.attempts.lock();
        let progress = attempts.held.get(&id).map(|held| held.progress.clone());
        let started = match attempts.held.get_mut(&id) {
            Some(held) if !held.cancelled => {
                held.control = Some(control.clone());
                held.shown = shown;
                held.running = true;
                if held.timed {
                    // Its clock starts now: its submitter hears so at once, not at the next
                    // round of announcements.
                    self.announce_now.notify_one();
                }
                true
            }
            _ => false,
        };
        (started, progress)
    }

    /// The attempt is no longer held here.
    pub(crate) fn release(&self, submitter: &str, token: &str) {
        let id = (submitter.to_string(), token.to_string());
        self.attempts.lock().held.remove(&id);
    }

    /// A cancellation from `submitter`: stops the attempt if it runs here (and the
    /// cancellation is signed with its key), else remembers it.
    pub(super) fn cancel(&self, submitter: &str, token: &str, mac: Mac) {
        let id = (submitter.to_string(), token.to_string());
        let mut attempts = self.attempts.lock();
        if let Some(held) = attempts.held.get_mut(&id) {
            let cancel = CancelMsg {
                token: token.to_string(),
                mac,
            };
            if !cancel.is_signed_by(&held.key) {
                FORGED_CANCELS.dropped(&format!(
                    "a cancellation of attempt {token} that its key did not sign"
                ));
                return;
            }
            held.cancelled = true;
            if let Some(control) = &held.control {
                control.cancel();
            }
            return;
        }
        if attempts.cancelled.insert(id.clone(), mac).is_none() {
            attempts.cancel_order.push_back(id);
            if attempts.cancel_order.len() > REMEMBERED_CANCELS
                && let Some(old) = attempts.cancel_order.pop_front()
            {
                attempts.cancelled.remove(&old);
            }
        }
    }
}
