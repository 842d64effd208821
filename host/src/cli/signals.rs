//! Ctrl-C and SIGTERM during a run: the first one stops the run gracefully (no more work is
//! admitted, running attempts are interrupted, every unfinished task gets a `cancelled` row,
//! the summary is printed, and the command exits 130 or 143); a second one exits at once.
//!
//! Worker subprocesses live in their own process group, so a Ctrl-C at the terminal reaches
//! only this process, which stops them; they also die with it if it is killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// What a run does on its first signal.
pub(crate) type OnSignal = Box<dyn Fn() + Send + Sync>;

/// The signal watch of one run; dropping it restores the default handling.
pub(crate) struct Interrupts {
    received: Arc<AtomicI32>,
    handle: Handle,
}

impl Interrupts {
    /// Starts watching for SIGINT and SIGTERM; `stop` runs on the first one.
    pub(crate) fn watch(stop: OnSignal) -> std::io::Result<Self> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let received = Arc::new(AtomicI32::new(0));
        let seen = received.clone();
        std::thread::Builder::new()
            .name("osiiso-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if seen
                        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        // A second signal: stop at once, as the user asked twice.
                        std::process::exit(128 + signal);
                    }
                    stop();
                }
            })?;
        Ok(Self { received, handle })
    }

    /// The signal that interrupted the run, if one did.
    pub(crate) fn received(&self) -> Option<Interrupted> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(Interrupted(signal)),
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// A run stopped by a signal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interrupted(i32);

impl Interrupted {
    /// The exit status a shell reports for a process killed by the signal: 130, 143.
    pub(crate) fn exit_code(self) -> u8 {
        (128 + self.0).clamp(0, 255) as u8
    }

    /// `SIGINT` or `SIGTERM`.
    pub(crate) fn name(self) -> &'static str {
        match self.0 {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }
}
