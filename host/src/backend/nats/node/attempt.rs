//! One attempt on a node: decide whether to run it, run it with in-progress acks from the
//! node's runtime, publish the report, and only then acknowledge the attempt.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use super::super::layout;
use super::super::wire::{AttemptMsg, ReportMsg, StartedMsg, unix_millis};
use super::NodeShared;
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport};
use crate::failure::{FailureKind, TaskFailure};

/// A node takes an attempt this long after its submitter's deadline as an orphan (clocks of
/// two machines differ a little).
const CLOCK_SLACK: Duration = Duration::from_secs(5);
/// How long a node keeps trying to hand over a report before it leaves the attempt to be
/// redelivered (and reported crashed by whoever gets it).
const REPORT_PATIENCE: Duration = Duration::from_secs(120);
/// Attempts still running after this long are announced to their submitter.
const ANNOUNCE_AFTER: Duration = Duration::from_millis(200);
/// A running attempt is announced again this often (an announcement lost while the broker
/// restarted must not make the submitter take the node for dead).
const ANNOUNCE_AGAIN: Duration = Duration::from_secs(2);
/// How long one hand-over waits for the submitter's answer.
const REPORT_ANSWER: Duration = Duration::from_secs(5);

/// Handles one delivered attempt. The slot is free again once the guest is done (another
/// attempt may start while this one's report is handed over); `_handling` until the end.
pub(super) async fn handle(
    shared: Arc<NodeShared>,
    message: jetstream::Message,
    slot: OwnedSemaphorePermit,
    _handling: OwnedSemaphorePermit,
) {
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    let attempt: AttemptMsg = match serde_json::from_slice(&message.payload) {
        Ok(attempt) => attempt,
        Err(error) => {
            tracing::warn!(%error, "dropping an attempt message that does not parse");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    if !layout::is_token(&attempt.submitter)
        || !attempt
            .uid
            .strip_prefix(attempt.submitter.as_str())
            .is_some_and(|rest| rest.starts_with('-') && layout::is_token(rest))
    {
        tracing::warn!("dropping an attempt with a malformed submitter or uid");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    let uid = attempt.uid.as_str();
    if shared.was_cancelled(uid) {
        tracing::debug!(uid, "dropping a cancelled attempt");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    if attempt
        .expires_unix_ms
        .is_some_and(|at| unix_millis() > at.saturating_add(CLOCK_SLACK.as_millis() as u64))
        || !shared.submitter_alive(&attempt.submitter).await
    {
        tracing::info!(uid, "dropping an orphaned attempt");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    if delivered > 1 {
        // Whoever had it stopped renewing its lease: a crash report, not a rerun. The
        // submitter's retry rules decide, as for a crashed worker process.
        let failure = TaskFailure::new(
            FailureKind::WorkerCrashed,
            format!(
                "the node running the attempt stopped heartbeating (delivery {delivered}, \
                 noticed by node {})",
                shared.id
            ),
        );
        tracing::info!(uid, delivered, "redelivered attempt reported as crashed");
        drop(slot);
        let message = Arc::new(message);
        let lease = tokio::spawn(renew_lease(message.clone(), shared.renew_every()));
        let report = ReportMsg::failed(uid, &shared.id, failure);
        let handover = publish_report(&shared, &attempt, report).await;
        lease.abort();
        if handover != Handover::Pending {
            let _ = message.ack_with(AckKind::Term).await;
        }
        return;
    }

    // Attempts that run for a while say which node holds them, so that the submitter notices
    // in seconds if this node dies (short ones report before it would matter; one that goes
    // silent before its announcement is found on the broker), and attempts with a timeout
    // say when they start. The announcement repeats while the attempt runs.
    let announce = {
        let (client, subject) = (
            shared.broker.client.clone(),
            layout::event_subject(&attempt.submitter),
        );
        let started = serde_json::to_vec(&StartedMsg {
            uid: uid.to_string(),
            node: shared.id.clone(),
        });
        // An attempt with a timeout is announced at once: its clock starts on the node.
        let after = if attempt.spec.timeout_ms.is_some() {
            Duration::ZERO
        } else {
            ANNOUNCE_AFTER
        };
        tokio::spawn(async move {
            let Ok(payload) = started.map(Bytes::from) else {
                return;
            };
            tokio::time::sleep(after).await;
            loop {
                let _ = client.publish(subject.clone(), payload.clone()).await;
                tokio::time::sleep(ANNOUNCE_AGAIN).await;
            }
        })
    };
    let message = Arc::new(message);
    let lease = tokio::spawn(renew_lease(message.clone(), shared.renew_every()));
    shared.busy.fetch_add(1, Ordering::Relaxed);
    let report = run(&shared, &attempt).await;
    shared.busy.fetch_sub(1, Ordering::Relaxed);
    drop(slot);
    let report = fitting_report(&shared, &attempt, report);
    announce.abort();
    let handover = publish_report(&shared, &attempt, report).await;
    lease.abort();
    if handover != Handover::Pending {
        // After the submitter has the report (or is gone): a node that dies between the two
        // leaves a redelivery whose crash report arrives for an attempt no longer pending.
        let _ = message.ack().await;
    }
}

/// Runs the attempt under the node's policy and clock.
async fn run(shared: &Arc<NodeShared>, attempt: &AttemptMsg) -> ReportMsg {
    let (uid, spec) = (attempt.uid.as_str(), &attempt.spec);
    // Grants within the node's policy; guest output captured (it comes back in the report
    // and never reaches the node's terminal).
    let sandbox = match shared.policy.apply(&spec.sandbox) {
        Ok(sandbox) => sandbox,
        Err(message) => {
            tracing::info!(uid, %message, "attempt refused");
            let failure = TaskFailure::new(FailureKind::Permanent, message);
            return ReportMsg::failed(uid, &shared.id, failure);
        }
    };
    let plugin = match shared
        .plugins
        .get(&spec.plugin_hash, &attempt.plugin_name)
        .await
    {
        Ok(plugin) => plugin,
        Err(failure) => return ReportMsg::failed(uid, &shared.id, failure),
    };
    let (timeout, left) = spec.clock();
    let control = AttemptControl::with_time_left(timeout, left);
    if !shared.start(uid, &control) {
        control.cancel();
    }
    tracing::info!(
        uid,
        task = %crate::text::escape_control(&spec.display_name),
        attempt = spec.attempt,
        "running"
    );
    let ran = tokio::task::spawn_blocking({
        let (shared, spec) = (shared.clone(), spec.clone());
        move || spec.run(plugin, sandbox, control, &shared.warm, "node")
    })
    .await;
    shared.finish(uid);
    let report = ran.unwrap_or_else(|error| {
        AttemptReport::failed(TaskFailure::new(
            FailureKind::Panic,
            format!("the attempt did not finish on the node: {error}"),
        ))
    });
    let outcome = match &report.outcome {
        AttemptOutcome::Succeeded(_) => "succeeded",
        AttemptOutcome::Failed(failure) => failure.kind.as_str(),
        AttemptOutcome::Cancelled => "cancelled",
    };
    tracing::info!(uid, outcome, "done");
    ReportMsg::new(uid, &shared.id, report)
}

/// Renews the attempt's lease until aborted.
async fn renew_lease(message: Arc<jetstream::Message>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(error) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(%error, "lease renewal failed");
        }
    }
}

/// The report, or a `Serialization` failure when it would not fit in a broker message.
fn fitting_report(shared: &NodeShared, attempt: &AttemptMsg, report: ReportMsg) -> ReportMsg {
    let size = serde_json::to_vec(&report).map_or(usize::MAX, |v| v.len());
    if size <= shared.broker.max_payload {
        return report;
    }
    let failure = TaskFailure::new(
        FailureKind::Serialization,
        format!(
            "the result of task '{}' is {size} bytes, over the NATS server's max_payload of {} \
             bytes",
            crate::text::escape_control(&attempt.spec.display_name),
            shared.broker.max_payload
        ),
    );
    let mut fitting = ReportMsg::failed(&attempt.uid, &shared.id, failure);
    fitting.report.fuel_consumed = report.report.fuel_consumed;
    fitting
}

/// How handing over a report ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// The submitter answered: it has the report.
    Delivered,
    /// The submitter is no longer alive: nobody wants the report.
    SubmitterGone,
    /// No answer in time: the attempt stays unacknowledged, to be redelivered.
    Pending,
}

/// Hands the report to its submitter and waits for its answer.
async fn publish_report(shared: &NodeShared, attempt: &AttemptMsg, report: ReportMsg) -> Handover {
    let Ok(payload) = serde_json::to_vec(&report) else {
        return Handover::Pending;
    };
    let payload = Bytes::from(payload);
    let subject = layout::report_subject(&attempt.submitter);
    let started = std::time::Instant::now();
    loop {
        let request = shared
            .broker
            .client
            .request(subject.clone(), payload.clone());
        let error = match tokio::time::timeout(REPORT_ANSWER, request).await {
            Ok(Ok(_)) => return Handover::Delivered,
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer".to_string(),
        };
        if !shared.submitter_alive(&attempt.submitter).await {
            tracing::info!(uid = %attempt.uid, "the submitter is gone; dropping its report");
            return Handover::SubmitterGone;
        }
        if started.elapsed() >= REPORT_PATIENCE {
            tracing::warn!(%error, uid = %attempt.uid, "giving up on a report");
            return Handover::Pending;
        }
        tracing::debug!(%error, uid = %attempt.uid, "handing over a report failed; retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
