//! Progress as plain lines, for a stderr that is not a terminal (a CI log, a file, a pipe):
//! the progress bar draws nothing there, so with `--progress always` a line goes out when the
//! run starts, every few seconds while it runs, and when it ends:
//!
//! ```text
//! progress: 1200/5000 tasks (24%), 398.7/s, ETA 9s, elapsed 3s
//! ```

use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::ProgressBar;
use parking_lot::{Condvar, Mutex};

/// How often a line goes out while the run goes on.
const INTERVAL: Duration = Duration::from_secs(5);

/// Writes the bar's state as a line on stderr every [`INTERVAL`], from a thread of its own.
pub(crate) struct ProgressLines {
    bar: ProgressBar,
    stopped: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ProgressLines {
    /// Writes the first line now and the next ones every few seconds.
    pub(crate) fn start(bar: ProgressBar) -> Self {
        // The first line before anything can finish, so that it says where the run starts.
        write_line(&bar);
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let (bar, stopped) = (bar.clone(), stopped.clone());
            std::thread::Builder::new()
                .name("osiiso-progress".into())
                .spawn(move || {
                    let (lock, wake) = &*stopped;
                    let mut done = lock.lock();
                    loop {
                        wake.wait_for(&mut done, INTERVAL);
                        if *done {
                            break;
                        }
                        write_line(&bar);
                    }
                })
                // Without the thread there are no lines in between; the last one still comes.
                .ok()
        };
        Self {
            bar,
            stopped,
            thread: Mutex::new(thread),
        }
    }

    /// Stops the lines and writes the last one (once).
    pub(crate) fn finish(&self) {
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        let (lock, wake) = &*self.stopped;
        *lock.lock() = true;
        wake.notify_all();
        let _ = thread.join();
        write_line(&self.bar);
    }
}

impl Drop for ProgressLines {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stopped;
        *lock.lock() = true;
        wake.notify_all();
    }
}

fn write_line(bar: &ProgressBar) {
    let _ = writeln!(std::io::stderr().lock(), "{}", line(bar));
}

/// `progress: DONE/TOTAL tasks (P%), RATE/s, ETA D, elapsed D[ — message]`; the parts not
/// known yet are left out.
fn line(bar: &ProgressBar) -> String {
    let done = bar.position();
    let total = bar.length().filter(|&total| total > 0);
    let mut line = match total {
        Some(total) => format!(
            "progress: {done}/{total} tasks ({}%)",
            done.saturating_mul(100) / total
        ),
        None => format!("progress: {done} tasks"),
    };
    let elapsed = bar.elapsed();
    if done > 0 && elapsed >= Duration::from_secs(1) {
        let rate = done as f64 / elapsed.as_secs_f64();
        line.push_str(&format!(", {rate:.1}/s"));
        if let Some(total) = total.filter(|&total| total > done) {
            let eta = Duration::from_secs_f64((total - done) as f64 / rate);
            line.push_str(&format!(", ETA {}", whole_seconds(eta)));
        }
    }
    line.push_str(&format!(", elapsed {}", whole_seconds(elapsed)));
    // The bar's message is escaped already (it names guest tasks).
    let message = bar.message();
    if !message.is_empty() {
        line.push_str(" — ");
        line.push_str(&message);
    }
    line
}

/// A duration to the second, as humantime writes it (`1h 2m 3s`).
fn whole_seconds(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_what_is_known() {
        let bar = ProgressBar::hidden();
        bar.set_length(4);
        assert_eq!(line(&bar), "progress: 0/4 tasks (0%), elapsed 0s");
        bar.inc(1);
        bar.set_message("last problem: x failed");
        assert!(
            line(&bar).starts_with("progress: 1/4 tasks (25%)"),
            "{}",
            line(&bar)
        );
        assert!(line(&bar).ends_with(" — last problem: x failed"));
        let open = ProgressBar::hidden();
        open.unset_length();
        assert_eq!(line(&open), "progress: 0 tasks, elapsed 0s");
    }
}
