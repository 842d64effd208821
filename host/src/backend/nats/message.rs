//! What travels through the broker: an attempt and its report (the headers of their
//! [frames](super::frame)), a node's announcements, a cancellation, a node's
//! self-description.

use serde::{Deserialize, Serialize};

use super::frame::{AttemptKey, Body, Mac, Purpose};
use crate::backend::remote::{AttemptSpec, RemoteOutcome, RemoteReport, RemoteValue};
use crate::failure::{FailureKind, TaskFailure};
use crate::json::Json;

/// One attempt, published by a submitter for any node to run. Its body is the input (the
/// JSON text, as is); `spec.input` is empty on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptHeader {
    pub submitter: String,
    /// The attempt's id within its submitter (random: cancels and reports name it).
    pub token: String,
    /// The attempt's secret (see the module docs).
    pub key: AttemptKey,
    /// The plugin's name, for messages and task identities (its component is in the plugin
    /// store as `blake3-<spec.plugin_hash>`).
    pub plugin_name: String,
    /// The component's size in bytes: a node reads no more of the stored object.
    pub plugin_size: u64,
    pub body: Body,
    pub spec: AttemptSpec,
}

/// What a report says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ReportKind {
    /// The attempt ran (or could not start): its report. The value and the captured output's
    /// text are the body's three sections, not in here.
    Ran(RemoteReport),
    /// The node took the attempt but will not run it (it is draining): publish it again; it
    /// does not count as an attempt.
    Returned,
    /// The broker handed the attempt out again (its holder stopped renewing its lease): the
    /// submitter decides whether its node is gone.
    Redelivered { delivered: u64 },
}

/// How an attempt ended, from the node that has it. Signed with the attempt's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReportHeader {
    pub submitter: String,
    pub token: String,
    /// The node that sends it.
    pub node: String,
    pub kind: ReportKind,
    /// The stored plugin did not match its name: the submitter checks the store again.
    #[serde(default)]
    pub bad_plugin: bool,
    pub body: Body,
}

/// The body sections of a report: the value's JSON text, stdout's text, stderr's text.
pub(crate) const REPORT_SECTIONS: usize = 3;

/// Moves the value and the captured texts of `report` out into body sections (the value's
/// place in the header keeps `null`).
pub(crate) fn report_sections(report: &mut RemoteReport) -> [Vec<u8>; REPORT_SECTIONS] {
    let value = match &mut report.outcome {
        RemoteOutcome::Succeeded(value) => {
            match std::mem::replace(value, RemoteValue::Sent(Json::null())) {
                RemoteValue::Sent(json) => json.as_str().as_bytes().to_vec(),
                RemoteValue::Received(raw) => raw.get().as_bytes().to_vec(),
            }
        }
        _ => Vec::new(),
    };
    let text = |output: &mut Option<crate::failure::CapturedOutput>| {
        output
            .as_mut()
            .map(|o| std::mem::take(&mut o.text).into_bytes())
            .unwrap_or_default()
    };
    let stdout = text(&mut report.stdout);
    let stderr = text(&mut report.stderr);
    [value, stdout, stderr]
}

/// Puts the sections back into `report` (the inverse of [`report_sections`]); `None` when a
/// section is not UTF-8 or is there for a field that is not. A value that is not JSON a queue
/// keeps (see [`Json`]) makes the report a `Serialization` failure naming `sender`: the task
/// fails, typed, and the rest of the report still counts.
pub(crate) fn restore_report(
    report: &mut RemoteReport,
    sections: &[&[u8]],
    sender: &str,
) -> Option<()> {
    let [value, stdout, stderr] = sections else {
        return None;
    };
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_string);
    match &mut report.outcome {
        RemoteOutcome::Succeeded(slot) => match Json::from_string(text(value)?) {
            Ok(json) => *slot = RemoteValue::Sent(json),
            Err(e) => {
                report.outcome = RemoteOutcome::Failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("{sender} sent a value that is not JSON: {e}"),
                ));
            }
        },
        _ if !value.is_empty() => return None,
        _ => {}
    }
    for (output, bytes) in [(&mut report.stdout, stdout), (&mut report.stderr, stderr)] {
        match output {
            Some(output) => output.text = text(bytes)?,
            None if !bytes.is_empty() => return None,
            None => {}
        }
    }
    Some(())
}

/// "These attempts of yours are held here": a node to one submitter, every
/// [`ANNOUNCE_AGAIN`](super::timing::ANNOUNCE_AGAIN), the submitter's proof that the node is
/// alive. Each entry is signed with its attempt's key over (node, beat, token, running);
/// `beat` grows with every announcement, so an old one cannot be replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunningMsg {
    pub node: String,
    pub beat: u64,
    pub attempts: Vec<Announced>,
}

/// One attempt of a [`RunningMsg`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Announced {
    pub token: String,
    /// Its guest runs (its clock runs on the node); else the node prepares it (fetches its
    /// plugin or input, compiles).
    pub running: bool,
    /// The guest's latest `progress(done, total)`, when it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<[u64; 2]>,
    pub mac: Mac,
}

impl Announced {
    pub(crate) fn new(
        key: &AttemptKey,
        node: &str,
        beat: u64,
        token: &str,
        running: bool,
        progress: Option<[u64; 2]>,
    ) -> Self {
        Self {
            token: token.to_string(),
            running,
            progress,
            mac: key.mac(
                Purpose::Running,
                &Self::parts(node, beat, token, running, progress)
                    .each_ref()
                    .map(Vec::as_slice),
            ),
        }
    }

    /// Whether `key` signed it, in an announcement of `node` numbered `beat`.
    pub(crate) fn is_signed_by(&self, key: &AttemptKey, node: &str, beat: u64) -> bool {
        let parts = Self::parts(node, beat, &self.token, self.running, self.progress);
        key.verify(
            Purpose::Running,
            &parts.each_ref().map(Vec::as_slice),
            &self.mac,
        )
    }

    fn parts(
        node: &str,
        beat: u64,
        token: &str,
        running: bool,
        progress: Option<[u64; 2]>,
    ) -> [Vec<u8>; 5] {
        let progress = match progress {
            Some([done, total]) => [&done.to_be_bytes()[..], &total.to_be_bytes()[..]].concat(),
            None => Vec::new(),
        };
        [
            node.as_bytes().to_vec(),
            beat.to_be_bytes().to_vec(),
            token.as_bytes().to_vec(),
            vec![u8::from(running)],
            progress,
        ]
    }
}

/// "Stop attempt `token`": a submitter to every node, signed with the attempt's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CancelMsg {
    pub token: String,
    pub mac: Mac,
}

impl CancelMsg {
    pub(crate) fn new(key: &AttemptKey, token: &str) -> Self {
        Self {
            token: token.to_string(),
            mac: key.mac(Purpose::Cancel, &[token.as_bytes()]),
        }
    }

    /// Whether it was signed with `key`.
    pub(crate) fn is_signed_by(&self, key: &AttemptKey) -> bool {
        key.verify(Purpose::Cancel, &[self.token.as_bytes()], &self.mac)
    }
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
    /// Plugins in its memory.
    pub cached: Vec<CachedPlugin>,
    /// The `osiiso-host` version.
    pub version: String,
}

/// A plugin a node holds in memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct CachedPlugin {
    /// Its name, as the submitter that sent it first called it.
    pub name: String,
    /// The BLAKE3 hash of its component (hex).
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_sections_round_trip_and_refuse_strays() {
        use crate::failure::CapturedOutput;
        let output = |text: &str| {
            Some(CapturedOutput {
                text: text.to_string(),
                truncated: false,
                total_bytes: text.len() as u64,
            })
        };
        let value = Json::parse(r#"{"z":"\"quoted\"","a":[1e15]}"#).unwrap();
        let original = RemoteReport {
            outcome: RemoteOutcome::Succeeded(RemoteValue::Sent(value.clone())),
            fuel_consumed: Some(3),
            stdout: output("out\u{1b}[0m"),
            stderr: None,
        };
        let mut report = original.clone();
        let sections = report_sections(&mut report);
        // The value travels as its own text, once, and the header keeps `null` in its place.
        assert_eq!(sections[0], value.as_str().as_bytes());
        let header = serde_json::to_string(&report).unwrap();
        assert!(header.contains(r#"{"Succeeded":null}"#), "{header}");
        let mut received: RemoteReport = serde_json::from_str(&header).unwrap();
        let borrowed: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        restore_report(&mut received, &borrowed, "node n1").unwrap();
        let restored = received.into_report("node n1");
        let crate::attempt::AttemptOutcome::Succeeded(back) = &restored.outcome else {
            panic!("{restored:?}");
        };
        assert_eq!(
            back.as_str(),
            value.as_str(),
            "the same text, key order kept"
        );
        assert_eq!(restored.stdout.unwrap().text, "out\u{1b}[0m");
        // Text for an output that was not captured is refused.
        let mut report = original.clone();
        assert!(restore_report(&mut report, &[b"1", b"", b"stray"], "node n1").is_none());
        assert!(restore_report(&mut report, &[&[0xff], b"", b""], "node n1").is_none());
        // A value that is not JSON fails the task, typed, naming the node.
        let mut report = original;
        restore_report(&mut report, &[b"[1,", b"out", b""], "node n1").unwrap();
        let failed = report.into_report("node n1");
        let crate::attempt::AttemptOutcome::Failed(failure) = &failed.outcome else {
            panic!("{failed:?}");
        };
        assert_eq!(failure.kind, FailureKind::Serialization);
        assert!(
            failure
                .message
                .contains("node n1 sent a value that is not JSON")
        );
    }
}
