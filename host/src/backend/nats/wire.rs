//! What travels through the broker: an attempt, its report, a node's self-description. JSON,
//! versioned by the `OSIISO1` names of the layout.

use serde::{Deserialize, Serialize};

use super::super::wire::{AttemptSpec, WireReport};
use crate::attempt::AttemptReport;
use crate::failure::TaskFailure;

/// One attempt, published by a submitter for any node to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptMsg {
    /// Unique per attempt: `<submitter>-<n>`.
    pub uid: String,
    pub submitter: String,
    /// The plugin's name, for messages and task identities (its component is in the
    /// object store as `blake3-<spec.plugin_hash>`).
    pub plugin_name: String,
    /// When the submitter gives up on the attempt whatever happens (its wall clock, Unix
    /// milliseconds): a node that takes it later drops it without running it.
    pub expires_unix_ms: Option<u64>,
    #[serde(flatten)]
    pub spec: AttemptSpec,
}

/// How an attempt ended, from the node that ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReportMsg {
    pub uid: String,
    /// The node that ran (or gave up) the attempt.
    pub node: String,
    /// Not flattened: the value inside travels as raw JSON, which serde cannot buffer.
    pub report: WireReport,
    /// Made up by the submitter itself (the attempt's node or broker went away).
    #[serde(skip)]
    pub local: bool,
}

impl ReportMsg {
    /// The message that carries `report` of attempt `uid`, run by `node`.
    pub(crate) fn new(uid: &str, node: &str, report: AttemptReport) -> Self {
        Self {
            uid: uid.to_string(),
            node: node.to_string(),
            report: WireReport::new(report),
            local: false,
        }
    }

    /// A failure report of attempt `uid` (nothing ran, or what ran was lost).
    pub(crate) fn failed(uid: &str, node: &str, failure: TaskFailure) -> Self {
        Self::new(uid, node, AttemptReport::failed(failure))
    }

    /// Marks a report the submitter made up itself.
    pub(crate) fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// The report this message carries.
    pub(crate) fn into_report(self) -> AttemptReport {
        let sender = format!("node {}", crate::text::for_display(&self.node, 64));
        self.report.into_report(&sender)
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
