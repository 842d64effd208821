//! One attempt on a node: decide whether to run it, run it with its lease renewed from the
//! node's runtime, hand the report to its submitter, and only then acknowledge the attempt.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use super::super::frame::{Body, Frame, Purpose, write_frame};
use super::super::layout::{self, MAX_PAYLOAD_BYTES};
use super::super::message::{AttemptHeader, ReportHeader, ReportKind, report_sections};
use super::super::payload::{ObjectError, read_object, write_object};
use super::super::timing::{REPORT_ANSWER, REPORT_RETRY};
use super::NodeShared;
use super::fetch::Slot;
use super::plugins::PluginError;
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::backend::remote::{RemoteOutcome, RemoteReport};
use crate::failure::{FailureKind, TaskFailure};

/// An attempt as a node reads it from its message.
struct Taken {
    header: AttemptHeader,
    /// The input, when it came in the message.
    inline: Bytes,
}

/// Reads a delivered attempt; a message that is not one is terminated (never redelivered).
async fn read(message: &jetstream::Message) -> Option<Taken> {
    let parsed = Frame::read(&message.payload).and_then(|frame| {
        let header: AttemptHeader = frame.header().map_err(|_| "a header that does not parse")?;
        let valid = layout::is_token(&header.submitter)
            && layout::is_token(&header.token)
            && header.body.sections().len() == 1
            && match &header.body {
                Body::Inline { .. } => frame.body.len() as u64 == header.body.size(),
                Body::Stored { .. } => frame.body.is_empty(),
            };
        if !valid {
            return Err("a malformed submitter, token or body");
        }
        let start = message.payload.len() - frame.body.len();
        Ok(Taken {
            inline: message.payload.slice(start..),
            header,
        })
    });
    match parsed {
        Ok(taken) => Some(taken),
        Err(why) => {
            tracing::warn!("dropping an attempt message: {why}");
            let _ = message.ack_with(AckKind::Term).await;
            None
        }
    }
}

/// Handles one delivered attempt. The slot is free again once the guest is done (another
/// attempt may start while this one's report is handed over); `_handling` until the end.
pub(super) async fn handle(
    shared: Arc<NodeShared>,
    message: jetstream::Message,
    slot: Slot,
    _handling: OwnedSemaphorePermit,
) {
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    let Some(taken) = read(&message).await else {
        return;
    };
    let header = &taken.header;
    let uid = format!("{}-{}", header.submitter, header.token);
    let timed = header.spec.timeout_ms.is_some();
    if shared.holds(&header.submitter, &header.token) {
        // This node runs (or reports) it already: the broker lost track of the lease.
        tracing::debug!(uid, "dropping a second delivery of an attempt held here");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    if !shared.hold(&header.submitter, &header.token, &header.key, timed) {
        tracing::debug!(uid, "dropping a cancelled attempt");
        let _ = message.ack_with(AckKind::Term).await;
        return;
    }
    let message = Arc::new(message);
    let lease = tokio::spawn(renew_lease(message.clone(), shared.renew_every()));
    let finish = |handover: Handover| {
        let (shared, message) = (shared.clone(), message.clone());
        let (submitter, token) = (header.submitter.clone(), header.token.clone());
        async move {
            lease.abort();
            shared.release(&submitter, &token);
            if handover != Handover::Pending {
                // After the submitter has the report (or is gone): a node that dies between
                // the two leaves a redelivery that arrives for an attempt no longer pending.
                let _ = message.ack_with(AckKind::Term).await;
            }
        }
    };
    if shared.submitter_gone(&header.submitter).await {
        tracing::info!(uid, "dropping an orphaned attempt");
        finish(Handover::SubmitterGone).await;
        return;
    }
    if delivered > 1 {
        // Whoever had it stopped renewing its lease: the submitter decides whether that node
        // is gone (a crash, counted as one) or only lost its lease while it still runs it.
        drop(slot);
        tracing::info!(uid, delivered, "redelivered attempt: telling its submitter");
        let kind = ReportKind::Redelivered {
            delivered: delivered as u64,
        };
        let handover = send_report(&shared, header, kind, Default::default(), false).await;
        finish(handover).await;
        return;
    }
    shared.busy.fetch_add(1, Ordering::Relaxed);
    let began = Instant::now();
    let (report, bad_plugin) = run(&shared, &taken, &uid).await;
    shared.busy.fetch_sub(1, Ordering::Relaxed);
    shared.record(&header.spec, &header.plugin_name, &report, began.elapsed());
    drop(slot);
    let mut report = RemoteReport::new(report);
    let sections = report_sections(&mut report);
    let handover = send_report(
        &shared,
        header,
        ReportKind::Ran(report),
        sections,
        bad_plugin,
    )
    .await;
    finish(handover).await;
}

/// An attempt this node took but will not run (it has no free slot, or it is draining): the
/// submitter publishes it again, and it does not count as an attempt.
pub(super) async fn hand_back(
    shared: Arc<NodeShared>,
    message: jetstream::Message,
    _handling: OwnedSemaphorePermit,
) {
    let Some(taken) = read(&message).await else {
        return;
    };
    let message = Arc::new(message);
    let lease = tokio::spawn(renew_lease(message.clone(), shared.renew_every()));
    tracing::debug!(
        uid = %format!("{}-{}", taken.header.submitter, taken.header.token),
        "handing an attempt back"
    );
    let handover = send_report(
        &shared,
        &taken.header,
        ReportKind::Returned,
        Default::default(),
        false,
    )
    .await;
    lease.abort();
    if handover != Handover::Pending {
        let _ = message.ack_with(AckKind::Term).await;
    }
}

/// Runs the attempt under the node's policy and clock; the report, and whether the stored
/// plugin was found corrupted.
async fn run(shared: &Arc<NodeShared>, taken: &Taken, uid: &str) -> (AttemptReport, bool) {
    let (header, spec) = (&taken.header, &taken.header.spec);
    // Grants within the node's policy; guest output captured (it comes back in the report
    // and never reaches the node's terminal).
    let sandbox = match shared.policy.apply(&spec.sandbox) {
        Ok(sandbox) => sandbox,
        Err(message) => {
            tracing::info!(uid, %message, "attempt refused");
            let failure = TaskFailure::new(FailureKind::Permanent, message);
            return (AttemptReport::failed(failure), false);
        }
    };
    let plugin = shared
        .plugins
        .get(&spec.plugin_hash, &header.plugin_name, header.plugin_size)
        .await;
    let plugin = match plugin {
        Ok(plugin) => plugin,
        Err(PluginError::Bad(why)) => {
            tracing::warn!(uid, "{why}");
            let failure = TaskFailure::new(
                FailureKind::WorkerStart,
                format!("{why}; its submitter checks the store and uploads it again"),
            );
            return (AttemptReport::failed(failure), true);
        }
        Err(PluginError::Failed(failure)) => return (AttemptReport::failed(failure), false),
    };
    let input = match input(shared, taken).await {
        Ok(input) => input,
        Err(failure) => return (AttemptReport::failed(failure), false),
    };
    let mut spec = spec.clone();
    spec.input = input;
    let (timeout, left) = spec.clock();
    let control = AttemptControl::with_time_left(timeout, left);
    let shown = shared.shown(&spec, &header.plugin_name);
    let (started, latest) = shared.start(&header.submitter, &header.token, &control, shown);
    if !started {
        control.cancel();
    }
    // The guest's progress goes out with the node's next announcement (at most every
    // ANNOUNCE_AFTER), however often the guest reports.
    let progress = latest
        .map(|latest| -> ProgressFn { Arc::new(move |done, total| latest.store(done, total)) });
    tracing::info!(
        uid,
        task = %crate::text::escape_control(&spec.display_name),
        attempt = spec.attempt,
        "running"
    );
    let ran = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || spec.run(plugin, sandbox, control, &shared.warm, "node", progress)
    })
    .await;
    let report = ran.unwrap_or_else(|error| {
        AttemptReport::failed(TaskFailure::new(
            FailureKind::Panic,
            format!("the attempt did not finish on the node: {error}"),
        ))
    });
    (report, false)
}

/// The attempt's input: from its message, or fetched from the payload store (bounded by what
/// its header says, and checked against its hash).
async fn input(shared: &NodeShared, taken: &Taken) -> Result<String, TaskFailure> {
    let bytes = match &taken.header.body {
        Body::Inline { .. } => taken.inline.to_vec(),
        Body::Stored { object, blake3, .. } => {
            let size = taken.header.body.size();
            read_object(&shared.payloads, object, size, MAX_PAYLOAD_BYTES, blake3)
                .await
                .map_err(|error| {
                    let kind = match error {
                        ObjectError::Unreachable(_) => FailureKind::WorkerStart,
                        ObjectError::Bad(_) => FailureKind::Serialization,
                    };
                    TaskFailure::new(kind, format!("the input of the attempt: {error}"))
                })?
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        TaskFailure::new(
            FailureKind::Serialization,
            "the input sent to the node is not UTF-8",
        )
    })
}

/// Renews the attempt's lease until aborted.
async fn renew_lease(message: Arc<jetstream::Message>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(error) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(%error, "lease renewal failed");
        }
    }
}

/// How handing over a report ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// The submitter answered: it has the report.
    Delivered,
    /// The submitter is gone: nobody wants the report.
    SubmitterGone,
    /// Neither (the report could not be stored): the attempt stays unacknowledged, to be
    /// redelivered.
    Pending,
}

/// Signs the report, puts its body in the payload store if it does not fit in a message,
/// and hands it to the submitter until it answers (or is gone), however long the broker is
/// away.
async fn send_report(
    shared: &NodeShared,
    attempt: &AttemptHeader,
    kind: ReportKind,
    sections: [Vec<u8>; 3],
    bad_plugin: bool,
) -> Handover {
    let uid = format!("{}-{}", attempt.submitter, attempt.token);
    let (kind, sections) = fitting(attempt, kind, sections);
    if let ReportKind::Ran(report) = &kind {
        let outcome = match &report.outcome {
            RemoteOutcome::Succeeded(_) => "succeeded",
            RemoteOutcome::Failed(failure) => failure.kind.as_str(),
            RemoteOutcome::Cancelled => "cancelled",
        };
        tracing::info!(uid, outcome, "done");
    }
    let lengths: Vec<u64> = sections.iter().map(|s| s.len() as u64).collect();
    let mut header = ReportHeader {
        submitter: attempt.submitter.clone(),
        token: attempt.token.clone(),
        node: shared.id.clone(),
        kind,
        bad_plugin,
        body: Body::Inline {
            sections: lengths.clone(),
        },
    };
    let parts: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
    let key = Some((&attempt.key, Purpose::Report));
    let Ok(mut frame) = write_frame(&header, &parts, key) else {
        return Handover::Pending;
    };
    if frame.len() > shared.broker.max_payload {
        let object = layout::report_object(&attempt.submitter, &attempt.token, &shared.id);
        let blake3 = loop {
            match write_object(&shared.payloads, &object, &parts).await {
                Ok(blake3) => break blake3,
                Err(error) => {
                    if shared.submitter_gone(&attempt.submitter).await {
                        return Handover::SubmitterGone;
                    }
                    tracing::debug!(%error, uid, "storing a report failed; trying again");
                    tokio::time::sleep(REPORT_RETRY).await;
                }
            }
        };
        header.body = Body::Stored {
            object,
            blake3,
            sections: lengths,
        };
        frame = match write_frame(&header, &[], key) {
            Ok(frame) => frame,
            Err(_) => return Handover::Pending,
        };
    }
    let payload = Bytes::from(frame);
    let subject = layout::report_subject(&attempt.submitter);
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
        if shared.submitter_gone(&attempt.submitter).await {
            tracing::info!(uid, "the submitter is gone; dropping its report");
            return Handover::SubmitterGone;
        }
        tracing::debug!(%error, uid, "handing over a report failed; trying again");
        tokio::time::sleep(REPORT_RETRY).await;
    }
}

/// The report, or a `Serialization` failure when its body is over
/// [`MAX_PAYLOAD_BYTES`] (the bound of every queue that sends attempts away).
fn fitting(
    attempt: &AttemptHeader,
    kind: ReportKind,
    sections: [Vec<u8>; 3],
) -> (ReportKind, [Vec<u8>; 3]) {
    let size: u64 = sections.iter().map(|s| s.len() as u64).sum();
    let ReportKind::Ran(report) = kind else {
        return (kind, sections);
    };
    if size <= MAX_PAYLOAD_BYTES {
        return (ReportKind::Ran(report), sections);
    }
    let failure = TaskFailure::new(
        FailureKind::Serialization,
        format!(
            "the result of task '{}' is {size} bytes with its output, over the \
             {MAX_PAYLOAD_BYTES} bytes a node sends back",
            crate::text::escape_control(&attempt.spec.display_name),
        ),
    );
    let mut fitting = RemoteReport::new(AttemptReport::new(AttemptOutcome::Failed(failure)));
    fitting.fuel_consumed = report.fuel_consumed;
    (ReportKind::Ran(fitting), Default::default())
}
