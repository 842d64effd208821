//! Guest progress on the CLI's progress bar: one task shows its own `done/total`; many show
//! the count of finished tasks and, as the message, the running task furthest behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::ProgressBar;
use osiiso_host::Progress;
use osiiso_host::queue::Handle;
use osiiso_host::text::for_display;
use parking_lot::Mutex;

/// The longest task name shown in the message.
const NAME_CHARS: usize = 40;

/// What the bar shows of guest progress.
pub(crate) struct GuestProgress {
    bar: ProgressBar,
    /// One task: the bar is its own progress once it reports.
    single: bool,
    /// The bar's length is the guest's total now.
    took_over: AtomicBool,
    /// Running tasks that reported, by task id: their name and latest progress. Bounded by
    /// the tasks running at once (an entry leaves when its task finishes).
    running: Mutex<HashMap<String, (String, Progress)>>,
}

impl GuestProgress {
    pub(crate) fn new(bar: ProgressBar, total: Option<usize>) -> Self {
        Self {
            bar,
            single: total == Some(1),
            took_over: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A running task reported (the queue's `on_progress`, already coalesced).
    pub(crate) fn report(&self, handle: &Handle, progress: Progress) {
        if self.single {
            if progress.total > 0 {
                self.took_over.store(true, Ordering::Relaxed);
                self.bar.set_length(progress.total);
                self.bar.set_position(progress.done.min(progress.total));
                self.bar.set_message("");
            } else {
                self.bar.set_message(format!("{} done", progress.done));
            }
            return;
        }
        let mut running = self.running.lock();
        running
            .entry(handle.task_id().to_string())
            .or_insert_with(|| (for_display(handle.name(), NAME_CHARS), progress))
            .1 = progress;
        // Furthest behind: the least share done (a task without a total counts as none).
        let slowest = running.values().min_by(|(_, a), (_, b)| {
            let (a, b) = (a.fraction().unwrap_or(0.0), b.fraction().unwrap_or(0.0));
            a.total_cmp(&b)
        });
        if let Some((name, progress)) = slowest {
            self.bar
                .set_message(format!("slowest running: {name} {progress}"));
        }
    }

    /// A task finished: it leaves the running set.
    pub(crate) fn finished(&self, task_id: &str) {
        if self.single {
            if self.took_over.load(Ordering::Relaxed) {
                self.bar.set_position(self.bar.length().unwrap_or(0));
            }
            return;
        }
        let mut running = self.running.lock();
        if running.remove(task_id).is_some() && running.is_empty() {
            self.bar.set_message("");
        }
    }
}
