//! Reporting results: JSON lines as tasks finish, a JSON array or a table at the end (in input
//! order), a progress bar on a terminal, the counts for the run summary on stderr. Memory does
//! not grow with the tasks reported: JSON lines go out bounded (`rows`), rows for the end wait
//! on disk (`spill`).
//!
//! Every write of results is checked. A reader that went away (`EPIPE`) or a full disk ends
//! the run: the reporter calls its stop hook (which cancels the queue) and the command exits
//! non-zero, quietly for a closed pipe and with a clear error otherwise.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use super::progress_lines::ProgressLines;
use osiiso_host::queue::{Handle, TaskResult};
use osiiso_host::text::{escape_control, truncate};

use super::rows::RowStream;
use super::spill::Spill;

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
    /// On a terminal (for one task, its guest's own progress); not with `--quiet`.
    Auto,
    /// Also with `--quiet`; off a terminal (a file, a pipe, a CI log) as a plain line every
    /// few seconds.
    Always,
    /// Never.
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
    pub(crate) fn from_io(error: io::Error) -> Self {
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

/// What the reporter shares with whoever writes rows.
pub(crate) struct Shared {
    failure: Mutex<Option<OutputError>>,
    stop: OnceLock<StopHook>,
}

impl Shared {
    /// Remembers the first failure and stops the run once.
    pub(crate) fn fail(&self, error: OutputError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(error);
            drop(failure);
            if let Some(stop) = self.stop.get() {
                stop();
            }
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// Where finished tasks' rows go.
enum Rows {
    /// JSON lines, written as tasks finish.
    Stream(RowStream),
    /// Rows kept on disk for the end, in input order (a JSON array, a table).
    AtEnd(Spill),
}

/// Receives every submitted task and reports it once it is done: its row, the progress bar,
/// and the counts of the summary. It keeps no task: what a finished task leaves behind is its
/// row (written, or on disk) and its place in the counts.
pub(crate) struct Reporter {
    format: OutputFormat,
    bar: Option<ProgressBar>,
    /// The bar as plain lines, when stderr is not a terminal.
    lines: Option<ProgressLines>,
    shared: Arc<Shared>,
    rows: Rows,
    /// The input position of the next task tracked.
    next: AtomicUsize,
    /// Inputs skipped before they became tasks (bad lines of an infinite run): they keep
    /// their place in the rows' `index`.
    skipped: Arc<AtomicUsize>,
    /// Tasks restored from a checkpoint (never run, so in no summary of the queue).
    restored: AtomicUsize,
}

impl Reporter {
    pub(crate) fn new(
        format: Option<OutputFormat>,
        progress: ProgressMode,
        quiet: bool,
        total: Option<usize>,
    ) -> anyhow::Result<Self> {
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
        // The bar draws nothing off a terminal: plain lines say the same there.
        let lines = bar
            .as_ref()
            .filter(|_| !io::stderr().is_terminal())
            .map(|bar| ProgressLines::start(bar.clone()));
        let rows = match format {
            OutputFormat::Jsonl => Rows::Stream(RowStream::new(bar.clone())),
            OutputFormat::Json | OutputFormat::Table => Rows::AtEnd(Spill::new().map_err(|e| {
                anyhow::anyhow!(
                    "--output {}: cannot create a temporary file in {} for the rows: {e}",
                    if format == OutputFormat::Json {
                        "json"
                    } else {
                        "table"
                    },
                    std::env::temp_dir().display()
                )
            })?),
        };
        Ok(Self {
            format,
            bar,
            lines,
            shared: Arc::new(Shared {
                failure: Mutex::new(None),
                stop: OnceLock::new(),
            }),
            rows,
            next: AtomicUsize::new(0),
            skipped: Arc::new(AtomicUsize::new(0)),
            restored: AtomicUsize::new(0),
        })
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

    /// Takes a submitted task, in input order: its row is reported when it is done (at once
    /// if it is done already, as a task restored from a checkpoint is). The reporter keeps
    /// its input position, not its handle.
    /// Tasks are tracked by one thread at a time, in input order, interleaved with
    /// [`skipped`](Self::skipped) inputs, so each row's `index` is its input's position.
    pub(crate) fn track(self: &Arc<Self>, handle: &Handle) {
        let position = self.next.fetch_add(1, Ordering::SeqCst);
        let index = position + self.skipped.load(Ordering::SeqCst);
        let reporter = self.clone();
        handle.add_done_callback(move |handle| {
            if let Some(result) = handle.result() {
                reporter.finished(position, index, &result);
            }
        });
    }

    /// The count of inputs skipped before they became tasks, which the feeder raises: a
    /// skipped input keeps its place in the rows' `index`.
    pub(crate) fn skipped(&self) -> Arc<AtomicUsize> {
        self.skipped.clone()
    }

    /// Reports one finished task: `position` among the tasks, `index` among the inputs.
    fn finished(&self, position: usize, index: usize, result: &TaskResult) {
        self.count(result);
        match &self.rows {
            Rows::Stream(stream) => stream.push(json_row(index, result, b"\n"), &self.shared),
            Rows::AtEnd(spill) => {
                let row = match self.format {
                    OutputFormat::Table => table_row(result),
                    _ => json_row(index, result, b""),
                };
                if let Err(error) = spill.put(position, &row) {
                    self.shared.fail(OutputError::Io(error));
                }
            }
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

    fn count(&self, result: &TaskResult) {
        if result.restored() {
            self.restored.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Tasks handed to [`track`](Self::track) so far: every task admitted.
    pub(crate) fn tracked(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }

    /// Tasks restored from a checkpoint so far.
    pub(crate) fn restored(&self) -> usize {
        self.restored.load(Ordering::SeqCst)
    }

    /// Writes the end-of-run output (the rows kept, in input order) and reports whether
    /// every result reached stdout.
    pub(crate) fn finish(&self) -> Result<(), OutputError> {
        if let Rows::Stream(stream) = &self.rows {
            stream.wait_drained();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some(lines) = &self.lines {
            lines.finish();
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
        let Rows::AtEnd(spill) = &self.rows else {
            return Ok(());
        };
        let mut out = BufWriter::new(io::stdout().lock());
        let written = match self.format {
            OutputFormat::Table => write_table(&mut out, spill),
            _ => write_array(&mut out, spill),
        };
        written
            .and_then(|()| out.flush())
            .map_err(OutputError::from_io)
    }
}

/// A result as one JSON object — `index`, the input's position from 0, then the result's
/// documented keys in order — then `end`.
fn json_row(index: usize, result: &TaskResult, end: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(512);
    let _ = write!(row, "{{\"index\":{index}");
    let opened = row.len();
    // A result serializes to JSON without fail: its values are JSON already.
    if serde_json::to_writer(&mut row, result).is_ok() && row.get(opened) == Some(&b'{') {
        // Its opening brace becomes the comma after `index` (a result has fields).
        row[opened] = b',';
        row.extend_from_slice(end);
        return row;
    }
    Vec::new()
}

fn write_array(out: &mut impl Write, spill: &Spill) -> io::Result<()> {
    out.write_all(b"[")?;
    let mut first = true;
    spill.for_each(|row| {
        out.write_all(if first { b"\n  " } else { b",\n  " })?;
        first = false;
        out.write_all(row)
    })?;
    out.write_all(if first { b"]\n" } else { b"\n]\n" })
}

fn write_table(out: &mut impl Write, spill: &Spill) -> io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<10} {:>8} {:>10}  VALUE / ERROR",
        "NAME", "STATUS", "ATTEMPTS", "MS"
    )?;
    spill.for_each(|row| out.write_all(row))
}

/// One line of the table.
fn table_row(r: &TaskResult) -> Vec<u8> {
    let detail = match (&r.value, &r.error) {
        (Some(v), _) => column(&truncate(v.as_str(), 800), 200),
        (None, Some(e)) => column(&format!("{}: {}", e.kind, e.message), 200),
        (None, None) => column(&r.message, 200),
    };
    // Guest text: escaped, so that it cannot act on the terminal, and cut to the column.
    format!(
        "{:<24} {:<10} {:>8} {:>10.1}  {}\n",
        column(&r.name, 24),
        // `as_str`: `Display` of a status ignores the padding.
        r.status.as_str(),
        r.attempts,
        r.duration.as_secs_f64() * 1e3,
        detail
    )
    .into_bytes()
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
