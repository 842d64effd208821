//! The end of a run on stderr: the summary, what became of inputs that have no row, and an
//! interruption.

use std::io::Write as _;

use osiiso_host::queue::{RunStatus, RunSummary};

use super::super::output::OutputError;
use super::super::signals::Interrupted;
use super::args::RunArgs;

/// What became of a run's inputs besides its tasks.
pub(super) struct Inputs {
    /// Restored from the checkpoint, not run again.
    pub(super) restored: usize,
    /// Bad lines reported and skipped (infinite mode, or a file that changed while read).
    pub(super) skipped: usize,
    /// Checked jobs never submitted: the queue stopped taking work, or the run was stopped.
    pub(super) unsubmitted: usize,
}

impl Inputs {
    pub(super) fn all_run(&self) -> bool {
        self.skipped == 0 && self.unsubmitted == 0
    }
}

/// The summary and notes on stderr; nothing for a reader that went away. A run that lost
/// inputs (skipped lines, jobs never submitted) is not reported as passed.
pub(super) fn report_end(
    args: &RunArgs,
    summary: &RunSummary,
    inputs: &Inputs,
    interrupted: Option<Interrupted>,
    written: &Result<(), OutputError>,
) {
    if matches!(written, Err(OutputError::BrokenPipe)) {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    if !args.quiet {
        let status = match summary.status() {
            RunStatus::Passed if !inputs.all_run() => RunStatus::CompletedWithErrors,
            status => status,
        };
        let _ = writeln!(stderr, "{}", summary.display_with(status));
        if inputs.restored > 0 {
            let _ = writeln!(
                stderr,
                "  {} more restored from the checkpoint (not run again)",
                inputs.restored
            );
        }
    }
    if inputs.skipped > 0 {
        let _ = writeln!(
            stderr,
            "osiiso-host: {} input line(s) skipped, not run (see the errors above)",
            inputs.skipped
        );
    }
    if inputs.unsubmitted > 0 {
        let _ = writeln!(
            stderr,
            "osiiso-host: {} job(s) not submitted: the run stopped before it reached them; \
             they have no row",
            inputs.unsubmitted
        );
    }
    if let Some(signal) = interrupted {
        let _ = writeln!(
            stderr,
            "osiiso-host: interrupted by {}: {} task(s) cancelled",
            signal.name(),
            summary.cancelled
        );
    }
}
