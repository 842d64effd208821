//! Reporting results: JSON lines as tasks finish, a JSON array or a table at the end, a
//! progress bar on a terminal, the run summary on stderr.
//!
//! Every write of results is checked. A reader that went away (`EPIPE`) or a full disk ends
//! the run: the reporter calls its stop hook (which cancels the queue) and the command exits
//! non-zero, quietly for a closed pipe and with a clear error otherwise.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use osiiso_host::queue::TaskResult;
use osiiso_host::text::{escape_control, truncate};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// A human table at the end.
    Table,
    /// One JSON array at the end.
    Json,
    /// One JSON object per task on stdout as each finishes.
    Jsonl,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressMode {
    /// On a terminal (for one task, its guest's own progress).
    Auto,
    Always,
    Never,
}

/// Why results could not be written.
#[derive(Debug)]
pub(crate) enum OutputError {
    /// The reader of stdout went away: a normal way for a pipeline to end.
    BrokenPipe,
    /// Any other failure (a full disk, a closed descriptor).
    Io(io::Error),
}

impl OutputError {
    fn from_io(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Io(error)
        }
    }
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BrokenPipe => f.write_str("stdout was closed by its reader"),
            Self::Io(error) => write!(f, "cannot write results to stdout: {error}"),
        }
    }
}

type StopHook = Box<dyn Fn() + Send + Sync>;

/// What the reporter shares with its writer thread.
struct Shared {
    failure: Mutex<Option<OutputError>>,
    stop: OnceLock<StopHook>,
}

impl Shared {
    /// Remembers the first failure and stops the run once.
    fn fail(&self, error: OutputError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(error);
            drop(failure);
            if let Some(stop) = self.stop.get() {
                stop();
            }
        }
    }

    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// Receives results as they are recorded.
pub(crate) struct Reporter {
    format: OutputFormat,
    bar: Option<ProgressBar>,
    shared: Arc<Shared>,
    /// JSON lines, written as tasks finish.
    rows: Option<RowBuffer>,
}

/// Rows on their way to stdout. There is no writer thread: whoever adds a row while nobody
/// is writing becomes the writer and drains what piles up meanwhile, so rows go out as soon as
/// their task finishes, in batches under load, with no wake-up per row.
struct RowBuffer {
    pending: parking_lot::Mutex<Pending>,
    /// Wakes `finish` when the last writer is done.
    drained: parking_lot::Condvar,
    bar: Option<ProgressBar>,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Someone is writing: new rows are left for them.
    writing: bool,
}

impl RowBuffer {
    fn push(&self, result: &TaskResult, shared: &Shared) {
        thread_local! {
            static ROW: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
        }
        let Some(mut batch) = ROW.with_borrow_mut(|row| {
            row.clear();
            // A result serializes to JSON without fail: its values are JSON already.
            if serde_json::to_writer(&mut *row, result).is_ok() {
                row.push(b'\n');
            }
            let mut pending = self.pending.lock();
            pending.bytes.extend_from_slice(row);
            if pending.writing {
                return None;
            }
            pending.writing = true;
            Some(std::mem::take(&mut pending.bytes))
        }) else {
            return;
        };
        loop {
            if !shared.failed() {
                let mut out = io::stdout().lock();
                let written = match &self.bar {
                    Some(bar) => bar.suspend(|| out.write_all(&batch).and_then(|()| out.flush())),
                    None => out.write_all(&batch).and_then(|()| out.flush()),
                };
                if let Err(error) = written {
                    shared.fail(OutputError::from_io(error));
                }
            }
            batch.clear();
            let mut pending = self.pending.lock();
            if pending.bytes.is_empty() {
                pending.writing = false;
                // Keep the allocation for the next batch.
                pending.bytes = batch;
                self.drained.notify_all();
                return;
            }
            std::mem::swap(&mut pending.bytes, &mut batch);
        }
    }

    /// Waits until no row is being written.
    fn wait_drained(&self) {
        let mut pending = self.pending.lock();
        while pending.writing {
            self.drained.wait(&mut pending);
        }
    }
}

impl Reporter {
    pub(crate) fn new(
        format: Option<OutputFormat>,
        progress: ProgressMode,
        quiet: bool,
        total: Option<usize>,
    ) -> Self {
        let format = format.unwrap_or(if io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Jsonl
        });
        let show = match progress {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => !quiet && io::stderr().is_terminal(),
        };
        let bar = show.then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total as u64),
                None => ProgressBar::no_length(),
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} tasks  {elapsed_precise}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let shared = Arc::new(Shared {
            failure: Mutex::new(None),
            stop: OnceLock::new(),
        });
        let rows = (format == OutputFormat::Jsonl).then(|| RowBuffer {
            pending: parking_lot::Mutex::new(Pending::default()),
            drained: parking_lot::Condvar::new(),
            bar: bar.clone(),
        });
        Self {
            format,
            bar,
            shared,
            rows,
        }
    }

    /// What to call once when results can no longer be written (cancel the run).
    pub(crate) fn on_output_failure(&self, stop: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.stop.set(Box::new(stop));
        if self.shared.failed()
            && let Some(stop) = self.shared.stop.get()
        {
            stop();
        }
    }

    /// The progress bar, when one is shown.
    pub(crate) fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }

    /// Whether results are written at the end (a JSON array, a table) rather than as they come.
    pub(crate) fn writes_at_end(&self) -> bool {
        self.format != OutputFormat::Jsonl
    }

    /// Called once per finished task (from the queue's `on_complete`).
    pub(crate) fn finished(&self, result: &TaskResult) {
        if let Some(rows) = &self.rows {
            rows.push(result, &self.shared);
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if !result.ok() {
                bar.set_message(format!(
                    "last problem: {} {}",
                    escape_control(&truncate(&result.name, 40)),
                    result.status
                ));
            }
        }
    }

    /// Writes the end-of-run output for `results` (submission order) and reports whether
    /// every result reached stdout.
    pub(crate) fn finish(&self, results: &[Arc<TaskResult>]) -> Result<(), OutputError> {
        if let Some(rows) = &self.rows {
            rows.wait_drained();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some(failure) = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(failure);
        }
        let mut out = BufWriter::new(io::stdout().lock());
        let written = match self.format {
            OutputFormat::Jsonl => Ok(()),
            OutputFormat::Json => write_array(&mut out, results),
            OutputFormat::Table => write_table(&mut out, results),
        };
        written
            .and_then(|()| out.flush())
            .map_err(OutputError::from_io)
    }
}

fn write_array(out: &mut impl Write, results: &[Arc<TaskResult>]) -> io::Result<()> {
    out.write_all(b"[")?;
    for (i, result) in results.iter().enumerate() {
        out.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
        serde_json::to_writer(&mut *out, &**result)?;
    }
    out.write_all(if results.is_empty() { b"]\n" } else { b"\n]\n" })
}

fn write_table(out: &mut impl Write, results: &[Arc<TaskResult>]) -> io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<10} {:>8} {:>10}  VALUE / ERROR",
        "NAME", "STATUS", "ATTEMPTS", "MS"
    )?;
    for r in results {
        let detail = match (&r.value, &r.error) {
            (Some(v), _) => v.to_string(),
            (None, Some(e)) => format!("{}: {}", e.kind, e.message),
            (None, None) => r.message.clone(),
        };
        // Guest text: escaped, so that it cannot act on the terminal, and cut to the column.
        writeln!(
            out,
            "{:<24} {:<10} {:>8} {:>10.1}  {}",
            column(&r.name, 24),
            r.status,
            r.attempts,
            r.duration.as_secs_f64() * 1e3,
            column(&detail, 200)
        )?;
    }
    Ok(())
}

/// `text` with control characters escaped, cut to `max` characters.
fn column(text: &str, max: usize) -> String {
    let text = escape_control(text);
    if text.chars().count() <= max {
        text.into_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
