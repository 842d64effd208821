//! An attempt and its report as they cross a boundary (to a worker process, to a node on
//! another machine), shared by the backends that send attempts away. Each backend wraps
//! these in its own envelope (ids, paths, routing); what an attempt *is* and how its report
//! comes back is written once, here.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::engine::{AttemptRequest, Limits, Plugin, Sandbox, WarmPool};
use crate::failure::{CapturedOutput, FailureKind, TaskFailure};
use crate::json::Json;
use crate::queue::backend::Attempt;

/// What runs: the plugin (by content hash), the task, its input and everything that bounds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptSpec {
    /// BLAKE3 of the component bytes (hex): the receiver refuses other bytes.
    pub plugin_hash: String,
    pub task: String,
    pub display_name: String,
    /// The JSON input, already encoded.
    pub input: String,
    pub attempt: u32,
    /// The task's per-attempt timeout (for messages).
    pub timeout_ms: Option<u64>,
    /// What is left of it when sent: the receiver's deadline, on its own clock.
    pub left_ms: Option<u64>,
    pub limits: Limits,
    pub sandbox: Sandbox,
}

/// What an attempt needs before it can leave this process: the plugin's file (the
/// receiver loads it from there or from the broker) and the encoded input, within the
/// plugin's input limit. A failure here is final (typed, never retried); `receiver` says
/// where it was going, for the message.
pub(crate) fn outbound<'a>(
    attempt: &Attempt<'a>,
    receiver: &str,
) -> Result<(&'a Path, String), TaskFailure> {
    let plugin = attempt.call.task().plugin();
    let Some(path) = plugin.path() else {
        return Err(TaskFailure::new(
            FailureKind::Serialization,
            format!(
                "plugin '{}' was not loaded from a file, so it cannot go to a {receiver}",
                plugin.name()
            ),
        ));
    };
    let input = attempt.call.input().to_string();
    plugin
        .limits()
        .check_input(attempt.display_name, input.len())?;
    Ok((path, input))
}

fn millis(t: Duration) -> u64 {
    t.as_millis().min(u128::from(u64::MAX)) as u64
}

impl AttemptSpec {
    /// The spec of `attempt`, with its input encoded as `input`. The time left is measured
    /// now: call this just before sending.
    pub(crate) fn new(attempt: &Attempt<'_>, input: String) -> Self {
        let (call, control) = (attempt.call, attempt.control);
        let plugin = call.task().plugin();
        Self {
            plugin_hash: plugin.hash().to_string(),
            task: call.task().name().to_string(),
            display_name: attempt.display_name.to_string(),
            input,
            attempt: attempt.attempt,
            timeout_ms: control.timeout().map(millis),
            left_ms: control
                .deadline()
                .map(|d| millis(d.saturating_duration_since(Instant::now()))),
            limits: plugin.limits().clone(),
            sandbox: plugin.sandbox().clone(),
        }
    }

    /// The timeout and the time left, as sent.
    pub(crate) fn clock(&self) -> (Option<Duration>, Option<Duration>) {
        (
            self.timeout_ms.map(Duration::from_millis),
            self.left_ms.map(Duration::from_millis),
        )
    }

    /// Runs the spec's task of `plugin` (loaded by the receiver, whose hash it checked) with
    /// `sandbox` under `control`, through `warm`, the guest's progress reports going to
    /// `progress`. `receiver` names who received it, for messages.
    pub(crate) fn run(
        &self,
        plugin: Plugin,
        sandbox: Sandbox,
        control: Arc<AttemptControl>,
        warm: &WarmPool,
        receiver: &str,
        progress: Option<ProgressFn>,
    ) -> AttemptReport {
        let plugin = plugin
            .with_limits(self.limits.clone())
            .with_sandbox(sandbox);
        let task = match plugin.task(&self.task) {
            Ok(task) => task,
            Err(error) => {
                return AttemptReport::failed(TaskFailure::new(
                    FailureKind::PluginLoad,
                    error.to_string(),
                ));
            }
        };
        let input: serde_json::Value = match serde_json::from_str(&self.input) {
            Ok(input) => input,
            Err(error) => {
                return AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("cannot decode the input sent to the {receiver}: {error}"),
                ));
            }
        };
        warm.run(
            &task,
            AttemptRequest {
                input: &input,
                attempt: self.attempt,
                control,
                display_name: &self.display_name,
                progress,
            },
        )
    }
}

/// An [`AttemptReport`] on the wire. The value travels as the JSON it is, inside the
/// report's own JSON (never escaped into a string), and is validated where it arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RemoteReport {
    pub outcome: RemoteOutcome,
    pub fuel_consumed: Option<u64>,
    pub stdout: Option<CapturedOutput>,
    pub stderr: Option<CapturedOutput>,
}

/// [`AttemptOutcome`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum RemoteOutcome {
    Succeeded(RemoteValue),
    Failed(TaskFailure),
    Cancelled,
}

/// A value on the wire: sent as the [`Json`] it is; received as raw text, unchecked until
/// [`RemoteReport::into_report`] validates it (so that a bad value fails its task, typed,
/// and the rest of the report still arrives).
#[derive(Debug, Clone)]
pub(crate) enum RemoteValue {
    Sent(Json),
    Received(Box<RawValue>),
}

impl Serialize for RemoteValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Sent(json) => json.serialize(serializer),
            Self::Received(raw) => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RemoteValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Self::Received)
    }
}

impl RemoteReport {
    pub(crate) fn new(report: AttemptReport) -> Self {
        Self {
            outcome: match report.outcome {
                AttemptOutcome::Succeeded(value) => {
                    RemoteOutcome::Succeeded(RemoteValue::Sent(value))
                }
                AttemptOutcome::Failed(failure) => RemoteOutcome::Failed(failure),
                AttemptOutcome::Cancelled => RemoteOutcome::Cancelled,
            },
            fuel_consumed: report.fuel_consumed,
            stdout: report.stdout,
            stderr: report.stderr,
        }
    }

    /// The report. A value that is not JSON a queue keeps (see [`Json`]) is a
    /// `Serialization` failure naming `sender`.
    pub(crate) fn into_report(self, sender: &str) -> AttemptReport {
        let outcome = match self.outcome {
            RemoteOutcome::Succeeded(RemoteValue::Sent(value)) => AttemptOutcome::Succeeded(value),
            RemoteOutcome::Succeeded(RemoteValue::Received(raw)) => {
                let text: Box<str> = raw.into();
                match Json::from_string(text.into()) {
                    Ok(value) => AttemptOutcome::Succeeded(value),
                    Err(e) => AttemptOutcome::Failed(TaskFailure::new(
                        FailureKind::Serialization,
                        format!("{sender} sent a value that is not JSON: {e}"),
                    )),
                }
            }
            RemoteOutcome::Failed(failure) => AttemptOutcome::Failed(failure),
            RemoteOutcome::Cancelled => AttemptOutcome::Cancelled,
        };
        AttemptReport::new(outcome)
            .with_fuel(self.fuel_consumed)
            .with_output(self.stdout, self.stderr)
    }
}
