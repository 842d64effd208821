//! Run summaries (docs/queues.md §9.2): the results of one `run()` or group wait, counted,
//! or only counted (§9.3).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::ExecutionError;
use super::result::{TaskResult, TaskStatus};
use crate::json::Json;
use crate::text;

/// The results of one `run()` (or one group wait), counted. Its `Display` is the osiiso
/// summary block.
///
/// ```
/// use osiiso_host::{Host, ThreadQueue};
/// use osiiso_host::queue::TaskOptions;
/// use serde_json::json;
/// # let echo_wasm = osiiso_test_artifacts::ECHO;
/// let echo = Host::new()?.load(echo_wasm)?.task("echo")?;
/// let queue = ThreadQueue::builder().build()?;
/// queue.map(&echo, [json!("a"), json!("b")], TaskOptions::new())?;
/// let summary = queue.run()?;
/// assert!(summary.ok());
/// assert_eq!((summary.total_submitted, summary.succeeded), (2, 2));
/// assert_eq!(summary.values().len(), 2);
/// println!("{summary}");
/// summary.raise_for_errors(true)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Number of results in this summary.
    pub total_submitted: usize,
    /// How many succeeded.
    pub succeeded: usize,
    /// How many failed.
    pub failed: usize,
    /// How many were cancelled.
    pub cancelled: usize,
    /// Whether the run hit its timeout.
    pub timed_out: bool,
    /// From the start of the run (or wait) to the build of the summary.
    pub duration: Duration,
    /// The results, in record order. A queue that keeps counts only
    /// ([`Retention::Counts`](super::Retention)) puts only the first [`KEPT_FAILURES`] failed
    /// results here; the counts above still count every result.
    pub results: Vec<Arc<TaskResult>>,
}

/// How many failed results a counts-only summary ([`Retention::Counts`](super::Retention))
/// keeps, for its display.
pub const KEPT_FAILURES: usize = 20;

/// Results counted by status as they are recorded, with the first [`KEPT_FAILURES`] failed
/// ones: the summary of a queue that keeps counts only.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    total: usize,
    succeeded: usize,
    failed: usize,
    cancelled: usize,
    failures: Vec<Arc<TaskResult>>,
}

impl Tally {
    pub(crate) fn add(&mut self, result: &Arc<TaskResult>) {
        self.total += 1;
        match result.status {
            TaskStatus::Succeeded => self.succeeded += 1,
            TaskStatus::Cancelled => self.cancelled += 1,
            _ => {
                self.failed += 1;
                if self.failures.len() < KEPT_FAILURES {
                    self.failures.push(result.clone());
                }
            }
        }
    }

    /// Failed results kept.
    pub(crate) fn kept(&self) -> usize {
        self.failures.len()
    }

    pub(crate) fn into_summary(self, run_start: Instant, timed_out: bool) -> RunSummary {
        RunSummary {
            total_submitted: self.total,
            succeeded: self.succeeded,
            failed: self.failed,
            cancelled: self.cancelled,
            timed_out,
            duration: run_start.elapsed(),
            results: self.failures,
        }
    }
}

impl RunSummary {
    /// Counts `results`, with `duration = now − run_start`.
    pub fn from_results(
        results: Vec<Arc<TaskResult>>,
        run_start: Instant,
        timed_out: bool,
    ) -> Self {
        let count = |s| results.iter().filter(|r| r.status == s).count();
        Self {
            total_submitted: results.len(),
            succeeded: count(TaskStatus::Succeeded),
            failed: count(TaskStatus::Failed),
            cancelled: count(TaskStatus::Cancelled),
            timed_out,
            duration: run_start.elapsed(),
            results,
        }
    }

    /// No failures, no cancellations, no timeout.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.cancelled == 0 && !self.timed_out
    }

    /// The failed results.
    pub fn errors(&self) -> Vec<Arc<TaskResult>> {
        self.with_status(TaskStatus::Failed)
    }

    /// The successful results.
    pub fn successes(&self) -> Vec<Arc<TaskResult>> {
        self.with_status(TaskStatus::Succeeded)
    }

    /// The cancelled results.
    pub fn cancellations(&self) -> Vec<Arc<TaskResult>> {
        self.with_status(TaskStatus::Cancelled)
    }

    /// The values of the successful results, in result order.
    pub fn values(&self) -> Vec<Json> {
        self.results
            .iter()
            .filter(|r| r.ok())
            .map(|r| r.value.clone().unwrap_or_else(Json::null))
            .collect()
    }

    fn with_status(&self, status: TaskStatus) -> Vec<Arc<TaskResult>> {
        self.results
            .iter()
            .filter(|r| r.status == status)
            .cloned()
            .collect()
    }

    /// Results by task id.
    pub fn by_task_id(&self) -> HashMap<String, Arc<TaskResult>> {
        self.results
            .iter()
            .map(|r| (r.task_id.clone(), r.clone()))
            .collect()
    }

    /// Results grouped by name, names in first-seen order.
    pub fn by_name(&self) -> Vec<(String, Vec<Arc<TaskResult>>)> {
        let mut groups: Vec<(String, Vec<Arc<TaskResult>>)> = Vec::new();
        for r in &self.results {
            match groups.iter_mut().find(|(n, _)| *n == r.name) {
                Some((_, v)) => v.push(r.clone()),
                None => groups.push((r.name.clone(), vec![r.clone()])),
            }
        }
        groups
    }

    /// Results by group id (`None` for ungrouped results).
    pub fn by_group(&self) -> HashMap<Option<String>, Vec<Arc<TaskResult>>> {
        let mut groups: HashMap<Option<String>, Vec<Arc<TaskResult>>> = HashMap::new();
        for r in &self.results {
            groups
                .entry(r.group_id.clone())
                .or_default()
                .push(r.clone());
        }
        groups
    }

    /// `Err` with the failed (and, if asked, cancelled) results.
    pub fn raise_for_errors(&self, include_cancelled: bool) -> Result<(), ExecutionError> {
        let offending: Vec<_> = self
            .results
            .iter()
            .filter(|r| {
                r.status == TaskStatus::Failed
                    || (include_cancelled && r.status == TaskStatus::Cancelled)
            })
            .cloned()
            .collect();
        if offending.is_empty() {
            Ok(())
        } else {
            Err(ExecutionError { results: offending })
        }
    }

    /// Prints the summary to stdout.
    pub fn display(&self) {
        println!("{self}");
    }
}

/// What a run came to, as the first line of its summary says it.
///
/// ```
/// use osiiso_host::queue::{RunStatus, RunSummary};
/// let summary = RunSummary::from_results(Vec::new(), std::time::Instant::now(), false);
/// assert_eq!(summary.status(), RunStatus::Passed);
/// // A caller that refused some of its inputs before they became tasks says so.
/// let shown = summary.display_with(RunStatus::CompletedWithErrors).to_string();
/// assert!(shown.contains("Run Summary: COMPLETED WITH ERRORS"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Nothing failed, nothing was cancelled, no timeout: `PASSED`.
    Passed,
    /// Something failed or was cancelled: `COMPLETED WITH ERRORS`.
    CompletedWithErrors,
    /// The run hit its timeout: `TIMED OUT`.
    TimedOut,
}

impl RunStatus {
    /// The status as the summary shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "PASSED",
            Self::CompletedWithErrors => "COMPLETED WITH ERRORS",
            Self::TimedOut => "TIMED OUT",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunSummary {
    /// `TimedOut` if the run hit its timeout, else `Passed` if [`ok`](Self::ok), else
    /// `CompletedWithErrors` (a run with only cancellations too).
    pub fn status(&self) -> RunStatus {
        if self.timed_out {
            RunStatus::TimedOut
        } else if self.ok() {
            RunStatus::Passed
        } else {
            RunStatus::CompletedWithErrors
        }
    }

    /// The summary block with `status` on its first line instead of [`status`](Self::status):
    /// for a caller that knows of errors the queue never saw, such as inputs it refused before
    /// they became tasks. `Display` is `display_with(self.status())`.
    pub fn display_with(&self, status: RunStatus) -> impl fmt::Display + '_ {
        SummaryBlock {
            summary: self,
            status,
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display_with(self.status()).fmt(f)
    }
}

/// A summary shown with a given status.
struct SummaryBlock<'a> {
    summary: &'a RunSummary,
    status: RunStatus,
}

impl fmt::Display for SummaryBlock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { summary, status } = self;
        let bar = "-".repeat(40);
        writeln!(f, "{bar}")?;
        writeln!(f, "  Run Summary: {status}")?;
        writeln!(f, "{bar}")?;
        writeln!(f, "  Total tasks : {}", summary.total_submitted)?;
        writeln!(f, "  Succeeded   : {}", summary.succeeded)?;
        writeln!(f, "  Failed      : {}", summary.failed)?;
        writeln!(f, "  Cancelled   : {}", summary.cancelled)?;
        writeln!(f, "  Duration    : {:.3}s", summary.duration.as_secs_f64())?;
        if summary.failed > 0 {
            writeln!(f, "{bar}")?;
            writeln!(f, "  Failures:")?;
            let listed = summary
                .results
                .iter()
                .filter(|r| r.status == TaskStatus::Failed);
            for r in listed.clone() {
                // Names and messages come from guests: shown with control characters escaped.
                let name = text::escape_control(&r.name);
                if r.attempts > 1 {
                    writeln!(f, "    - {name} ({} attempts)", r.attempts)?;
                } else {
                    writeln!(f, "    - {name}")?;
                }
                if !r.message.is_empty() {
                    for line in text::escape_control_keep_newlines(&r.message).lines() {
                        writeln!(f, "      {line}")?;
                    }
                }
            }
            let unlisted = summary.failed.saturating_sub(listed.count());
            if unlisted > 0 {
                writeln!(f, "    … and {unlisted} more")?;
            }
        }
        write!(f, "{bar}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_summary_is_shown_with_its_own_status_or_the_one_it_is_given() {
        use super::{RunStatus, RunSummary};
        use std::time::Instant;
        let mut summary = RunSummary::from_results(Vec::new(), Instant::now(), false);
        assert_eq!(summary.status(), RunStatus::Passed);
        let shown = summary.to_string();
        assert!(shown.contains("Run Summary: PASSED"), "{shown}");
        let given = summary
            .display_with(RunStatus::CompletedWithErrors)
            .to_string();
        assert_eq!(
            given,
            shown.replace("PASSED", "COMPLETED WITH ERRORS"),
            "only the status line differs"
        );
        summary.cancelled = 1;
        assert_eq!(summary.status(), RunStatus::CompletedWithErrors);
        summary.timed_out = true;
        assert_eq!(summary.status(), RunStatus::TimedOut);
        assert!(summary.to_string().contains("Run Summary: TIMED OUT"));
    }

    #[test]
    fn a_counted_summary_lists_its_first_failures_and_says_how_many_more() {
        use super::super::result::{TaskResult, TaskStatus};
        use super::{KEPT_FAILURES, Tally};
        use crate::failure::{FailureKind, TaskFailure};
        use std::sync::Arc;
        use std::time::{Duration, Instant, SystemTime};
        let result = |i: usize, status: TaskStatus| {
            let failure = TaskFailure::new(FailureKind::Failed, format!("boom {i}"));
            Arc::new(TaskResult {
                task_id: format!("{i:032x}"),
                name: format!("t{i}"),
                task: "p/t".into(),
                priority: 3,
                must_complete: false,
                group_id: None,
                detached: false,
                scheduled_for: None,
                created_at: Instant::now(),
                metadata: serde_json::Value::Null,
                status,
                value: None,
                error: (status == TaskStatus::Failed).then(|| failure.clone()),
                attempts: 1,
                started_at: None,
                finished_at: Instant::now(),
                started_wall: None,
                finished_wall: SystemTime::now(),
                duration: Duration::ZERO,
                message: failure.message.clone(),
                fuel_consumed: None,
                stdout: None,
                stderr: None,
                backend: "thread",
            })
        };
        let mut tally = Tally::default();
        for i in 0..30 {
            tally.add(&result(i, TaskStatus::Failed));
            tally.add(&result(i, TaskStatus::Succeeded));
        }
        tally.add(&result(99, TaskStatus::Cancelled));
        let summary = tally.into_summary(Instant::now(), false);
        assert_eq!(
            (summary.total_submitted, summary.succeeded, summary.failed),
            (61, 30, 30)
        );
        assert_eq!(summary.cancelled, 1);
        assert_eq!(summary.results.len(), KEPT_FAILURES);
        let shown = summary.to_string();
        assert!(
            shown.contains("boom 19") && !shown.contains("boom 20"),
            "{shown}"
        );
        assert!(shown.contains("… and 10 more"), "{shown}");
    }
}
