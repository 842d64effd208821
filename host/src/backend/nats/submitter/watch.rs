//! What a submitter notices on its own, once a heartbeat: nodes gone silent while running its
//! attempts, attempts a node took and died with before announcing them, attempts gone from
//! the broker without a report; and the broker itself going away, which holds every
//! attempt's clock until it is back.

use std::collections::HashSet;
use std::time::Instant;

use async_nats::jetstream::stream;
use futures::StreamExt;

use super::super::connection::Broker;
use super::super::layout;
use super::super::timing::{
    HEARTBEAT, NODE_SILENCE, STRANDED_CHECK_AFTER, UNANNOUNCED_AFTER, VANISHED_AFTER,
    VANISHED_CHECK_TICKS,
};
use super::{Pending, PendingMap, Verdict};
use crate::failure::{FailureKind, TaskFailure};

/// Attempts looked for per round (by each check), oldest first.
const CHECKS_PER_ROUND: usize = 64;

/// The watch: one round per heartbeat.
pub(super) async fn watch(
    broker: Broker,
    attempts: stream::Stream,
    pending: PendingMap,
    me: String,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut away = false;
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        ticks += 1;
        if !broker.is_connected() {
            if !away {
                // Nothing can report while the broker is away: no clock runs meanwhile.
                away = true;
                for waiting in pending.lock().values_mut() {
                    waiting.control.hold_clock();
                    waiting.taken = None;
                }
            }
            continue;
        }
        if away {
            away = false;
            let now = Instant::now();
            for waiting in pending.lock().values_mut() {
                waiting.heard = now;
                if waiting.clock_started {
                    waiting.control.restart_clock();
                }
            }
        }
        end_silent(&broker, &pending);
        // Only attempts nobody announced need the broker looked at.
        let unannounced = pending.lock().values().any(|p| p.node.is_none());
        if !unannounced {
            continue;
        }
        let Some(queued) = queued(&attempts, &me).await else {
            forget_taken(&pending, None);
            continue;
        };
        find_stranded(&attempts, &pending, &queued).await;
        if ticks.is_multiple_of(VANISHED_CHECK_TICKS) {
            find_vanished(&pending, &queued);
        }
    }
}

/// Ends attempts whose node has been silent for [`NODE_SILENCE`] while this submitter was
/// connected: killed, frozen or cut off from the broker, it is noticed in seconds, not at
/// its lease's end.
fn end_silent(broker: &Broker, pending: &PendingMap) {
    if broker.connected_for() < NODE_SILENCE {
        return;
    }
    let mut pending = pending.lock();
    let silent: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.node.is_some() && p.heard.elapsed() >= NODE_SILENCE)
        .map(|(token, _)| token.clone())
        .collect();
    for token in silent {
        if let Some(waiting) = pending.remove(&token) {
            let node = waiting.node.clone().unwrap_or_default();
            lose(
                waiting,
                format!(
                    "node {node} went silent while running the attempt (killed, frozen or cut off)"
                ),
            );
        }
    }
}

fn lose(waiting: Pending, message: String) {
    waiting.settle(Verdict::Lost(TaskFailure::new(
        FailureKind::WorkerCrashed,
        message,
    )));
}

/// The tokens of this submitter's attempts still stored on the broker (`None`: it did not
/// answer). Only subjects are read, never an attempt's content.
async fn queued(attempts: &stream::Stream, me: &str) -> Option<HashSet<String>> {
    let list = async {
        let attempts = attempts.clone();
        let mut subjects = attempts
            .info_with_subjects(layout::submitter_attempts(me))
            .await
            .ok()?;
        let mut tokens = HashSet::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _count) = subject.ok()?;
            if let Some(token) = subject.rsplit('.').next() {
                tokens.insert(token.to_string());
            }
        }
        Some(tokens)
    };
    tokio::time::timeout(HEARTBEAT, list).await.ok().flatten()
}

/// Ends attempts that a node took and died (or froze) with before announcing them: the band's
/// consumer has delivered past the attempt, it is still on the broker, and no node has said
/// it holds it for [`UNANNOUNCED_AFTER`]. Without this such an attempt would wait for its
/// lease to run out (`--ack-wait`, 30 s by default). One consumer lookup per band with such
/// attempts, none when there are none.
async fn find_stranded(attempts: &stream::Stream, pending: &PendingMap, queued: &HashSet<String>) {
    let now = Instant::now();
    let bands = pending
        .lock()
        .values()
        .filter(|p| {
            p.node.is_none()
                && p.seq.is_some()
                && now.duration_since(p.since) >= STRANDED_CHECK_AFTER
        })
        .fold(0u8, |bands, p| bands | 1 << p.band);
    for band in (0..layout::BANDS).filter(|band| bands & 1 << band != 0) {
        let name = layout::band_consumer_name(band);
        let Ok(Ok(info)) = tokio::time::timeout(HEARTBEAT, attempts.consumer_info(&name)).await
        else {
            forget_taken(pending, Some(band));
            continue;
        };
        let delivered = info.delivered.stream_sequence;
        let mut pending = pending.lock();
        let mut due: Vec<(u64, String)> = pending
            .iter_mut()
            .filter(|(_, p)| p.band == band && p.node.is_none())
            .filter_map(|(token, p)| {
                let Some(seq) = p.seq.filter(|&seq| seq <= delivered) else {
                    p.taken = None;
                    return None;
                };
                // Gone from the broker instead: acknowledged or dropped, `find_vanished`'s case.
                if !queued.contains(token) {
                    return None;
                }
                let taken = *p.taken.get_or_insert(now);
                (now.duration_since(taken) >= UNANNOUNCED_AFTER).then(|| (seq, token.clone()))
            })
            .collect();
        // A bounded round (a dead node of many slots leaves many): the rest wait a heartbeat.
        due.sort_unstable();
        due.truncate(CHECKS_PER_ROUND);
        for (_, token) in due {
            if let Some(waiting) = pending.remove(&token) {
                lose(
                    waiting,
                    "the node that took the attempt went silent before announcing it (killed \
                     or frozen as it started)"
                        .to_string(),
                );
            }
        }
    }
}

/// Restarts the unannounced-attempt clocks of `band` (of every band with `None`).
fn forget_taken(pending: &PendingMap, band: Option<u8>) {
    for p in pending.lock().values_mut() {
        if band.is_none_or(|band| p.band == band) {
            p.taken = None;
        }
    }
}

/// Ends attempts that no node announced and whose message left the broker without a report
/// (a node dropped it as an orphan while this submitter looked gone, or a broker restart lost
/// it): `worker_crashed`, retried like a crash. A node removes an attempt only after its
/// submitter has the report, so a message gone for a while with no report means none is
/// coming.
fn find_vanished(pending: &PendingMap, queued: &HashSet<String>) {
    let now = Instant::now();
    let mut pending = pending.lock();
    let mut gone: Vec<(Instant, String)> = Vec::new();
    for (token, p) in pending.iter_mut() {
        if p.node.is_some() || p.seq.is_none() || now.duration_since(p.since) < VANISHED_AFTER {
            continue;
        }
        if queued.contains(token) {
            p.vanished = None;
            continue;
        }
        let since = *p.vanished.get_or_insert(now);
        if now.duration_since(since) >= VANISHED_AFTER {
            gone.push((p.since, token.clone()));
        }
    }
    gone.sort();
    gone.truncate(CHECKS_PER_ROUND);
    for (_, token) in gone {
        if let Some(waiting) = pending.remove(&token) {
            lose(
                waiting,
                "the attempt left the NATS server without a report (lost in a broker restart, \
                 or dropped by a node that took this submitter for gone)"
                    .to_string(),
            );
        }
    }
}
