//! Reports and announcements coming in: each is checked against the key of the attempt it
//! names, and from the node that took the attempt, before it counts. Anything else is
//! dropped and logged as forged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::object_store::ObjectStore;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::super::alarm::Forgeries;
use super::super::connection::Broker;
use super::super::frame::{Body, Frame, Purpose, split};
use super::super::layout::{self, MAX_PAYLOAD_BYTES};
use super::super::message::{
    REPORT_SECTIONS, ReportHeader, ReportKind, RunningMsg, restore_report,
};
use super::super::payload::{ObjectError, delete_object, read_object};
use super::super::timing::NODE_SILENCE;
use super::{PendingMap, Verdict};
use crate::failure::{FailureKind, TaskFailure};

static FORGED_REPORTS: Forgeries = Forgeries::new("report");
static FORGED_ANNOUNCEMENTS: Forgeries = Forgeries::new("announcement");

/// Stored report bodies fetched at once.
const FETCHES: usize = 4;

/// What to do with one report.
enum Route {
    /// Taken (or of an attempt no longer waiting): answer, so the node lets go.
    Answer,
    /// Not taken, and no answer: the node sends it again.
    Ignore,
    /// Its body is in the payload store: fetch it, then answer.
    Fetch(Box<ReportHeader>),
}

/// Takes reports and answers each once it is taken, so that the node may acknowledge the
/// attempt. A report of an attempt that is no longer pending (a late node, a repeat after a
/// lost answer) is answered and dropped; a forged one is dropped unanswered.
pub(super) async fn dispatch(
    broker: Broker,
    mut reports: async_nats::Subscriber,
    pending: PendingMap,
    payloads: ObjectStore,
    me: String,
) {
    let client = broker.client.clone();
    let fetches = Arc::new(Semaphore::new(FETCHES));
    while let Some(message) = reports.next().await {
        let route = if message.payload.is_empty() {
            // A node asking whether this submitter is alive.
            Route::Answer
        } else {
            route(
                &pending,
                &payloads,
                &message.payload,
                &me,
                broker.connected_for(),
            )
        };
        match route {
            Route::Answer => answer(&client, message.reply).await,
            Route::Ignore => {}
            Route::Fetch(header) => {
                let Ok(permit) = fetches.clone().try_acquire_owned() else {
                    // Busy: the node sends it again.
                    if let Some(waiting) = pending.lock().get_mut(&header.token) {
                        waiting.fetching = false;
                    }
                    continue;
                };
                let (client, pending, payloads) =
                    (client.clone(), pending.clone(), payloads.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if fetch(&pending, &payloads, &header).await {
                        answer(&client, message.reply).await;
                    }
                });
            }
        }
    }
}

async fn answer(client: &async_nats::Client, reply: Option<async_nats::Subject>) {
    if let Some(reply) = reply {
        let _ = client.publish(reply, Bytes::new()).await;
    }
}

/// Checks one report and hands it to its attempt; `connected_for` is how long this submitter
/// has had its broker (since it last came back).
fn route(
    pending: &PendingMap,
    payloads: &ObjectStore,
    payload: &[u8],
    me: &str,
    connected_for: Duration,
) -> Route {
    let frame = match Frame::read(payload) {
        Ok(frame) => frame,
        Err(why) => {
            FORGED_REPORTS.dropped(why);
            return Route::Ignore;
        }
    };
    let mut header: ReportHeader = match frame.header() {
        Ok(header) => header,
        Err(error) => {
            FORGED_REPORTS.dropped(&format!("a header that does not parse: {error}"));
            return Route::Ignore;
        }
    };
    if header.submitter != me {
        FORGED_REPORTS.dropped("a report sent to another submitter's subject");
        return Route::Ignore;
    }
    let mut map = pending.lock();
    let Some(waiting) = map.get_mut(&header.token) else {
        // Settled already (or never ours to settle): the node may let go. A stored body of
        // ours is not needed any more.
        if let Body::Stored { object, .. } = &header.body
            && *object == layout::report_object(me, &header.token, &header.node)
        {
            let (payloads, object) = (payloads.clone(), object.clone());
            tokio::spawn(async move { delete_object(&payloads, &object).await });
        }
        tracing::debug!(
            attempt = %crate::text::for_display(&header.token, 64),
            "dropping a report of an attempt that is no longer pending"
        );
        return Route::Answer;
    };
    if !waiting
        .key
        .verify(Purpose::Report, &[frame.signed], &frame.mac)
    {
        FORGED_REPORTS.dropped(&format!(
            "a report of attempt {} that its key did not sign",
            header.token
        ));
        return Route::Ignore;
    }
    if let Some(node) = &waiting.node
        && *node != header.node
        && !matches!(header.kind, ReportKind::Redelivered { .. })
    {
        FORGED_REPORTS.dropped(&format!(
            "a report of attempt {} from node {}, which did not take it (node {node} did)",
            header.token, header.node
        ));
        return Route::Ignore;
    }
    let sender = format!("node {}", crate::text::for_display(&header.node, 64));
    let verdict = match std::mem::replace(&mut header.kind, ReportKind::Returned) {
        ReportKind::Returned => Verdict::Returned,
        ReportKind::Redelivered { delivered } => match &waiting.node {
            // Its node still runs it (its lease lapsed while the broker was away): its own
            // report will come. Right after an outage nobody could be heard, and the broker
            // hands out again what it held: the node gets the same NODE_SILENCE as in the
            // watch's silence check, which ends the attempt if the node stays silent.
            Some(_) if waiting.heard.elapsed() < NODE_SILENCE || connected_for < NODE_SILENCE => {
                return Route::Answer;
            }
            Some(node) => Verdict::Lost(TaskFailure::new(
                FailureKind::WorkerCrashed,
                format!(
                    "node {node} stopped renewing its lease on the attempt and went silent \
                     (delivery {delivered}, noticed by {sender})"
                ),
            )),
            // Nobody said it held the attempt: its holder may be about to report (the broker
            // restarted under it), or be gone. Once this copy is gone too, the vanished
            // check decides.
            None => return Route::Answer,
        },
        ReportKind::Ran(mut report) => match &header.body {
            Body::Inline { sections } => {
                let restored = sections.len() == REPORT_SECTIONS
                    && split(frame.body, sections)
                        .and_then(|parts| restore_report(&mut report, &parts, &sender))
                        .is_some();
                if !restored {
                    FORGED_REPORTS.dropped("a report whose body does not match its header");
                    return Route::Ignore;
                }
                Verdict::Reported {
                    report: report.into_report(&sender),
                    bad_plugin: header.bad_plugin,
                }
            }
            Body::Stored { .. } => {
                if waiting.fetching {
                    return Route::Ignore;
                }
                waiting.fetching = true;
                header.kind = ReportKind::Ran(report);
                return Route::Fetch(Box::new(header));
            }
        },
    };
    if let Some(waiting) = map.remove(&header.token) {
        waiting.settle(verdict);
    }
    Route::Answer
}

/// Fetches a stored report body and hands the report to its attempt; whether the node may
/// let go.
async fn fetch(pending: &PendingMap, payloads: &ObjectStore, header: &ReportHeader) -> bool {
    let Body::Stored {
        object,
        blake3,
        sections,
    } = &header.body
    else {
        return false;
    };
    let size = header.body.size();
    let read = read_object(payloads, object, size, MAX_PAYLOAD_BYTES, blake3).await;
    let sender = format!("node {}", crate::text::for_display(&header.node, 64));
    let verdict = match read {
        Ok(bytes) => {
            let ReportKind::Ran(mut report) = header.kind.clone() else {
                return false;
            };
            let restored = sections.len() == REPORT_SECTIONS
                && split(&bytes, sections)
                    .and_then(|parts| restore_report(&mut report, &parts, &sender))
                    .is_some();
            if restored {
                Verdict::Reported {
                    report: report.into_report(&sender),
                    bad_plugin: header.bad_plugin,
                }
            } else {
                Verdict::Lost(TaskFailure::new(
                    FailureKind::WorkerCrashed,
                    format!("{sender} stored a report whose body does not match its header"),
                ))
            }
        }
        Err(ObjectError::Bad(why)) => Verdict::Lost(TaskFailure::new(
            FailureKind::WorkerCrashed,
            format!("the report {sender} stored is not what it signed: {why}"),
        )),
        Err(ObjectError::Unreachable(why)) => {
            tracing::debug!(%why, "cannot fetch a stored report yet");
            if let Some(waiting) = pending.lock().get_mut(&header.token) {
                waiting.fetching = false;
            }
            return false;
        }
    };
    // Before the verdict: the queue may be done (and the process gone) as soon as it has it.
    delete_object(payloads, object).await;
    if let Some(waiting) = pending.lock().remove(&header.token) {
        waiting.settle(verdict);
    }
    true
}

/// Notes which node took which attempt (starting the attempt's clock then) and when it last
/// said it still runs it.
pub(super) async fn track_running(mut events: async_nats::Subscriber, pending: PendingMap) {
    while let Some(message) = events.next().await {
        let Ok(running) = serde_json::from_slice::<RunningMsg>(&message.payload) else {
            FORGED_ANNOUNCEMENTS.dropped("an announcement that does not parse");
            continue;
        };
        let now = Instant::now();
        let mut pending = pending.lock();
        for entry in &running.attempts {
            let token = &entry.token;
            let Some(waiting) = pending.get_mut(token) else {
                continue;
            };
            if !entry.is_signed_by(&waiting.key, &running.node, running.beat) {
                FORGED_ANNOUNCEMENTS.dropped(&format!(
                    "an announcement of attempt {token} that its key did not sign"
                ));
                continue;
            }
            match &waiting.node {
                None => waiting.node = Some(running.node.clone()),
                Some(node) if *node != running.node => {
                    FORGED_ANNOUNCEMENTS.dropped(&format!(
                        "node {} announced attempt {token}, which node {node} took",
                        running.node
                    ));
                    continue;
                }
                Some(_) if running.beat <= waiting.beat => {
                    FORGED_ANNOUNCEMENTS.dropped(&format!("a replayed announcement of {token}"));
                    continue;
                }
                Some(_) => {}
            }
            if entry.running && !waiting.clock_started {
                // The attempt may have waited on the broker for a free slot, and on the node
                // for its plugin: its timeout counts from now (docs/queues.md §7.1).
                waiting.control.restart_clock();
                waiting.clock_started = true;
            }
            if let (Some([done, total]), Some(progress)) = (entry.progress, &waiting.progress) {
                progress(done, total);
            }
            waiting.beat = running.beat;
            waiting.heard = now;
        }
    }
}
