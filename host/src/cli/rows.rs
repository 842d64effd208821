//! JSON lines on their way to stdout as tasks finish, in bounded memory.
//!
//! There is no writer thread: whoever adds a row while nobody is writing becomes the writer
//! and drains what piles up meanwhile, so rows go out as soon as their task finishes, in
//! batches under load, with no wake-up per row. What waits for the writer is bounded
//! ([`MAX_PENDING`]): beyond it, the task that finished waits (and with it its worker) until
//! the reader of stdout has caught up, so a slow reader holds the run back instead of letting
//! rows pile up in memory.

use std::io::{self, Write};

use indicatif::ProgressBar;
use parking_lot::{Condvar, Mutex};

use super::output::{OutputError, Shared};

/// The most row bytes waiting for the writer; one larger row still goes through on its own.
const MAX_PENDING: usize = 4 << 20;

/// Rows on their way to stdout.
pub(crate) struct RowStream {
    pending: Mutex<Pending>,
    /// Wakes `wait_drained` and adders waiting for room.
    changed: Condvar,
    bar: Option<ProgressBar>,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Someone is writing: new rows are left for them.
    writing: bool,
}

impl RowStream {
    pub(crate) fn new(bar: Option<ProgressBar>) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
            bar,
        }
    }

    /// Sends one row (a complete line), writing it and whatever piles up meanwhile if nobody
    /// else is writing, else leaving it for the writer (waiting for room first).
    pub(crate) fn push(&self, row: Vec<u8>, shared: &Shared) {
        if shared.failed() {
            // Nothing reaches stdout any more. This is also how the writer itself gets here
            // again: its failed write stops the run, which records what was left — on its
            // own thread, which must not wait for itself.
            return;
        }
        let mut pending = self.pending.lock();
        while pending.writing && pending.bytes.len() + row.len() > MAX_PENDING {
            if pending.bytes.is_empty() {
                // A single large row: it waits for nothing but its turn.
                break;
            }
            self.changed.wait(&mut pending);
        }
        if pending.writing {
            pending.bytes.extend_from_slice(&row);
            return;
        }
        pending.writing = true;
        drop(pending);
        let mut batch = row;
        loop {
            self.write(&batch, shared);
            batch.clear();
            let mut pending = self.pending.lock();
            if pending.bytes.is_empty() {
                pending.writing = false;
                // Keep a small allocation for the next batch; a large one goes.
                if batch.capacity() <= MAX_PENDING {
                    pending.bytes = batch;
                }
                self.changed.notify_all();
                return;
            }
            std::mem::swap(&mut pending.bytes, &mut batch);
            // Room again for the adders that wait.
            self.changed.notify_all();
        }
    }

    fn write(&self, batch: &[u8], shared: &Shared) {
        if shared.failed() {
            return;
        }
        let mut out = io::stdout().lock();
        let written = match &self.bar {
            Some(bar) => bar.suspend(|| out.write_all(batch).and_then(|()| out.flush())),
            None => out.write_all(batch).and_then(|()| out.flush()),
        };
        if let Err(error) = written {
            shared.fail(OutputError::from_io(error));
        }
    }

    /// Waits until no row is being written.
    pub(crate) fn wait_drained(&self) {
        let mut pending = self.pending.lock();
        while pending.writing {
            self.changed.wait(&mut pending);
        }
    }
}
