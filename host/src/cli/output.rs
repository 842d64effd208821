//! Reporting results: JSON lines as tasks finish, a JSON array or a table at the end, a
//! progress bar on a terminal, the run summary on stderr.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use osiiso_host::TaskResult;

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
    /// On a terminal, when there is more than one task.
    Auto,
    Always,
    Never,
}

/// Receives results as they are recorded.
pub(crate) struct Reporter {
    format: OutputFormat,
    bar: Option<ProgressBar>,
}

impl Reporter {
    pub(crate) fn new(
        format: Option<OutputFormat>,
        progress: ProgressMode,
        quiet: bool,
        total: usize,
    ) -> Self {
        let format = format.unwrap_or(if std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Jsonl
        });
        let show = match progress {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => !quiet && total > 1 && std::io::stderr().is_terminal(),
        };
        let bar = show.then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} tasks  {elapsed_precise}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self { format, bar }
    }

    /// Called once per finished task (from the queue's `on_complete`).
    pub(crate) fn finished(&self, result: &TaskResult) {
        if self.format == OutputFormat::Jsonl {
            let line = result.to_json().to_string();
            let write = |out: &mut dyn Write| writeln!(out, "{line}").and_then(|()| out.flush());
            match &self.bar {
                Some(bar) => bar.suspend(|| write(&mut std::io::stdout().lock())),
                None => write(&mut std::io::stdout().lock()),
            }
            .ok();
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if !result.ok() {
                bar.set_message(format!("last problem: {} {}", result.name, result.status));
            }
        }
    }

    /// Prints the end-of-run output for `results` (submission order).
    pub(crate) fn finish(&self, results: &[Arc<TaskResult>]) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let mut out = std::io::stdout().lock();
        match self.format {
            OutputFormat::Jsonl => {}
            OutputFormat::Json => {
                let array: Vec<_> = results.iter().map(|r| r.to_json()).collect();
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&array).unwrap_or_default()
                );
            }
            OutputFormat::Table => {
                let _ = writeln!(
                    out,
                    "{:<24} {:<10} {:>8} {:>10}  VALUE / ERROR",
                    "NAME", "STATUS", "ATTEMPTS", "MS"
                );
                for r in results {
                    let detail = match (&r.value, &r.error) {
                        (Some(v), _) => v.to_string(),
                        (None, Some(e)) => format!("{}: {}", e.kind, e.message),
                        (None, None) => r.message.clone(),
                    };
                    let _ = writeln!(
                        out,
                        "{:<24} {:<10} {:>8} {:>10.1}  {}",
                        truncate(&r.name, 24),
                        r.status,
                        r.attempts,
                        r.duration.as_secs_f64() * 1e3,
                        truncate(&detail, 200)
                    );
                }
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
