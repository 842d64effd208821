//! A node's word to submitters about the attempts it holds: "still running", signed with each
//! attempt's key, and their cancellations in, checked against the same keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;

use super::super::alarm::Forgeries;
use super::super::layout;
use super::super::message::{Announced, CancelMsg, RunningMsg};
use super::super::timing::{ANNOUNCE_AFTER, ANNOUNCE_AGAIN};
use super::NodeShared;

pub(super) static FORGED_CANCELS: Forgeries = Forgeries::new("cancellation");

/// Announces held attempts to their submitters: each one once this node has held it for
/// [`ANNOUNCE_AFTER`], and again when its guest starts if it has a timeout (its clock starts
/// then) or reports progress (the latest report, at most once per [`ANNOUNCE_AFTER`]); all of
/// them every [`ANNOUNCE_AGAIN`], one message per submitter.
pub(super) async fn announce(shared: Arc<NodeShared>) {
    let mut beat = 0u64;
    let mut last_round = Instant::now();
    let mut tick = tokio::time::interval(ANNOUNCE_AFTER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.announce_now.notified() => {}
        }
        let now = Instant::now();
        let full = now.duration_since(last_round) >= ANNOUNCE_AGAIN;
        if full {
            last_round = now;
        }
        beat += 1;
        let mut by_submitter: HashMap<String, Vec<Announced>> = HashMap::new();
        {
            let mut attempts = shared.attempts.lock();
            for ((submitter, token), held) in attempts.held.iter_mut() {
                let progress = held.progress.take_changed();
                let due = progress.is_some()
                    || match held.announced {
                        // Nothing said yet: once held a while, or started with a clock.
                        None => {
                            (held.timed && held.running)
                                || now.duration_since(held.taken) >= ANNOUNCE_AFTER
                        }
                        // Its clock started since: say so now.
                        Some(said) => full || (held.timed && held.running && !said),
                    };
                if !due {
                    continue;
                }
                held.announced = Some(held.running);
                let entry =
                    Announced::new(&held.key, &shared.id, beat, token, held.running, progress);
                by_submitter
                    .entry(submitter.clone())
                    .or_default()
                    .push(entry);
            }
        }
        for (submitter, attempts) in by_submitter {
            let message = RunningMsg {
                node: shared.id.clone(),
                beat,
                attempts,
            };
            if let Ok(payload) = serde_json::to_vec(&message) {
                let _ = shared
                    .broker
                    .client
                    .publish(layout::event_subject(&submitter), Bytes::from(payload))
                    .await;
            }
        }
    }
}

/// Stops held attempts (and remembers others) that their submitter cancelled. A cancellation
/// counts only when the attempt's key signed it.
pub(super) async fn listen_for_cancels(
    mut cancels: async_nats::Subscriber,
    shared: Arc<NodeShared>,
) {
    while let Some(message) = cancels.next().await {
        let submitter = message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default();
        match serde_json::from_slice::<CancelMsg>(&message.payload) {
            Ok(cancel) if layout::is_token(submitter) && layout::is_token(&cancel.token) => {
                shared.cancel(submitter, &cancel.token, cancel.mac);
            }
            _ => FORGED_CANCELS.dropped("a cancellation that does not parse"),
        }
    }
}
