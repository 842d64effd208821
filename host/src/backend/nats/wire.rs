//! What travels through the broker: an attempt, its report, a node's self-description. JSON,
//! versioned by the `OSIISO1` names of the layout.

use serde::{Deserialize, Serialize};

use crate::attempt::{AttemptOutcome, AttemptReport};
use crate::engine::{Limits, Sandbox};
use crate::failure::{CapturedOutput, FailureKind, TaskFailure};

/// One attempt, published by a submitter for any node to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptMsg {
    /// Unique per attempt: `<submitter>-<n>`.
    pub uid: String,
    pub submitter: String,
    /// BLAKE3 of the component (hex); the object store holds it as `blake3-<hash>`.
    pub plugin_hash: String,
    pub plugin_name: String,
    pub task: String,
    pub display_name: String,
    /// The JSON input, already encoded.
    pub input: String,
    pub attempt: u32,
    /// The task's per-attempt timeout (for messages).
    pub timeout_ms: Option<u64>,
    /// What was left of it when published: the node's deadline, on its own clock.
    pub left_ms: Option<u64>,
    /// When the submitter gives up on the attempt (its wall clock, Unix milliseconds): a
    /// node that takes it later drops it without running it.
    pub expires_unix_ms: Option<u64>,
    pub limits: Limits,
    pub sandbox: Sandbox,
}

/// How an attempt ended, from the node that ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReportMsg {
    pub uid: String,
    /// The node that ran (or gave up) the attempt.
    pub node: String,
    pub outcome: WireOutcome,
    pub fuel_consumed: Option<u64>,
    pub stdout: Option<CapturedOutput>,
    pub stderr: Option<CapturedOutput>,
    /// Made up by the submitter itself (the attempt's node or broker went away).
    #[serde(skip)]
    pub local: bool,
}

/// [`AttemptOutcome`] on the wire (the value travels as JSON text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    Succeeded(String),
    Failed(TaskFailure),
    Cancelled,
}

impl ReportMsg {
    /// The message that carries `report` of attempt `uid`, run by `node`.
    pub(crate) fn new(uid: &str, node: &str, report: AttemptReport) -> Self {
        Self {
            uid: uid.to_string(),
            node: node.to_string(),
            outcome: match report.outcome {
                AttemptOutcome::Succeeded(value) => WireOutcome::Succeeded(value.to_string()),
                AttemptOutcome::Failed(failure) => WireOutcome::Failed(failure),
                AttemptOutcome::Cancelled => WireOutcome::Cancelled,
            },
            fuel_consumed: report.fuel_consumed,
            stdout: report.stdout,
            stderr: report.stderr,
            local: false,
        }
    }

    /// Marks a report the submitter made up itself.
    pub(crate) fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// A failure report of attempt `uid` (nothing ran, or what ran was lost).
    pub(crate) fn failed(uid: &str, node: &str, failure: TaskFailure) -> Self {
        Self::new(uid, node, AttemptReport::failed(failure))
    }

    /// The report this message carries. A value that is not JSON is a `Serialization` failure.
    pub(crate) fn into_report(self) -> AttemptReport {
        let outcome = match self.outcome {
            WireOutcome::Succeeded(json) => match serde_json::from_str(&json) {
                Ok(value) => AttemptOutcome::Succeeded(value),
                Err(e) => AttemptOutcome::Failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("node {} sent a value that is not JSON: {e}", self.node),
                )),
            },
            WireOutcome::Failed(failure) => AttemptOutcome::Failed(failure),
            WireOutcome::Cancelled => AttemptOutcome::Cancelled,
        };
        AttemptReport::new(outcome)
            .with_fuel(self.fuel_consumed)
            .with_output(self.stdout, self.stderr)
    }
}

/// A node took an attempt (core message to the submitter, so it knows whose heartbeat
/// the attempt depends on).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartedMsg {
    pub uid: String,
    pub node: String,
}

/// A live node, as it describes itself in the nodes bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    /// Its id (unique per `serve` process).
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Attempts it runs at once.
    pub slots: usize,
    /// Attempts running now.
    pub running: usize,
    /// Plugins in its memory, by BLAKE3 hash.
    pub cached: Vec<String>,
    /// The `osiiso-host` version.
    pub version: String,
}

/// The wall clock in Unix milliseconds (deadlines that cross machines).
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}
