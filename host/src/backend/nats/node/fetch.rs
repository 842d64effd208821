//! Taking attempts from the band consumers, for free slots only, lowest band first.
//!
//! While a band has work, a node *sweeps* it: one no-wait pull for as many attempts as it has
//! free slots. A band found empty gets a *long poll*: a pull for one attempt that the broker
//! holds for [`LONG_POLL`] and answers the moment an attempt arrives (saying every
//! [`POLL_HEARTBEAT`] that it still holds it). An idle node so sends one pull per band every
//! [`LONG_POLL`], and still starts new work at once.
//!
//! Every pull is answered on one subscription, so nothing the broker delivers is ever lost
//! between requests; an attempt that arrives when no slot is free (a long poll answered while
//! a sweep filled the slots) is handed back to its submitter, which publishes it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_nats::jetstream;
use futures::StreamExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::super::NatsError;
use super::super::layout::{self, ATTEMPTS_STREAM, BANDS};
use super::super::timing::{LONG_POLL, POLL_HEARTBEAT, PULL_CHECK, REFUSED_PAUSE, REQUEST_TIMEOUT};
use super::NodeShared;
use super::execute;

/// Pulls that failed in a row (unanswered, lost) before the node sets the layout up again.
const FAILURES_BEFORE_SETUP: u32 = 10;

/// Asks the fetch loop to stop at its next safe point.
#[derive(Default)]
pub(crate) struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Resolves once set.
    async fn wait(&self) {
        crate::wait::notified(&self.notify, || self.is_set().then_some(())).await;
    }
}

/// A slot: given back, and the fetcher woken, when dropped.
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.freed.notify_one();
    }
}

/// What the node knows of a band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Band {
    /// It may have work: sweep it.
    Unknown,
    /// A long poll of this node waits on it.
    Polling,
    /// It refused a pull: leave it until then.
    Paused(Instant),
}

/// A pull the broker has not finished answering.
#[derive(Debug)]
struct Pull {
    band: u8,
    long: bool,
    /// Attempts it may still deliver.
    left: usize,
    /// When the broker last said anything about it.
    heard: Instant,
    /// Its place among this node's pulls (older ones are answered first).
    order: u64,
}

/// The fetch loop.
pub(crate) struct Fetcher {
    shared: Arc<NodeShared>,
    slots: Arc<Semaphore>,
    freed: Arc<Notify>,
    /// One permit per attempt between its delivery and its acknowledgement.
    handling: Arc<Semaphore>,
    /// Every answer to every pull of this node.
    deliveries: async_nats::Subscriber,
    inbox: String,
    bands: [Band; BANDS as usize],
    pulls: HashMap<String, Pull>,
    /// The band being swept.
    sweeping: Option<u8>,
    next: u64,
    /// Pulls that failed in a row.
    failures: u32,
}

impl Fetcher {
    pub(crate) async fn start(
        shared: Arc<NodeShared>,
        slots: usize,
        handling: Arc<Semaphore>,
    ) -> Result<Self, NatsError> {
        let client = &shared.broker.client;
        let inbox = client.new_inbox();
        let deliveries = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| NatsError::broker("subscribe to deliveries", e))?;
        Ok(Self {
            shared,
            slots: Arc::new(Semaphore::new(slots)),
            freed: Arc::new(Notify::new()),
            handling,
            deliveries,
            inbox,
            bands: [Band::Unknown; BANDS as usize],
            pulls: HashMap::new(),
            sweeping: None,
            next: 0,
            failures: 0,
        })
    }

    /// Takes attempts until `stop`; then hands back whatever the broker still delivers.
    pub(crate) async fn run(mut self, stop: &Stop) {
        let mut tick = tokio::time::interval(PULL_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconnections = self.shared.broker.reconnections();
        while !stop.is_set() {
            self.pull().await;
            tokio::select! {
                message = self.deliveries.next() => match message {
                    Some(message) => self.delivered(message).await,
                    None => break,
                },
                () = self.freed.notified() => {}
                _ = tick.tick() => self.check_pulls().await,
                _ = reconnections.changed() => self.forget_pulls(),
                () = stop.wait() => {}
            }
        }
        // No new pulls; the broker forgets the open ones once this subscription is gone, and
        // what it delivered before that arrives first.
        let _ = self.deliveries.drain().await;
        while let Ok(Some(message)) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.deliveries.next()).await
        {
            if message.status.is_none() && message.reply.is_some() {
                self.hand_back(message);
            }
        }
    }

    /// Sends the next pull, if there are free slots and a band to sweep.
    async fn pull(&mut self) {
        let free = self.slots.available_permits();
        if free == 0 || self.sweeping.is_some() {
            return;
        }
        let now = Instant::now();
        for band in 0..BANDS {
            match self.bands[usize::from(band)] {
                Band::Unknown => {}
                Band::Paused(until) if now >= until => {}
                _ => continue,
            }
            self.send(band, false, free).await;
            return;
        }
    }

    /// Sends a pull on `band`: a long poll for one attempt, or a sweep for `batch`.
    async fn send(&mut self, band: u8, long: bool, batch: usize) {
        self.next += 1;
        let reply = format!("{}.{}", self.inbox, self.next);
        let request = if long {
            serde_json::json!({
                "batch": 1,
                "expires": LONG_POLL.as_nanos() as u64,
                "idle_heartbeat": POLL_HEARTBEAT.as_nanos() as u64,
            })
        } else {
            serde_json::json!({"batch": batch, "no_wait": true})
        };
        let subject = format!(
            "$JS.API.CONSUMER.MSG.NEXT.{ATTEMPTS_STREAM}.{}",
            layout::band_consumer_name(band)
        );
        let sent = self
            .shared
            .broker
            .client
            .publish_with_reply(subject, reply.clone(), request.to_string().into())
            .await;
        let b = usize::from(band);
        if sent.is_err() {
            self.bands[b] = Band::Paused(Instant::now() + REFUSED_PAUSE);
            return;
        }
        self.pulls.insert(
            reply,
            Pull {
                band,
                long,
                left: if long { 1 } else { batch },
                heard: Instant::now(),
                order: self.next,
            },
        );
        if long {
            self.bands[b] = Band::Polling;
        } else {
            self.sweeping = Some(band);
        }
    }

    /// One message on the deliveries subscription: an attempt, or the broker's word on a pull.
    async fn delivered(&mut self, message: async_nats::Message) {
        if let Some(status) = message.status {
            let Some(pull) = self.pulls.get_mut(message.subject.as_str()) else {
                return;
            };
            pull.heard = Instant::now();
            if status == async_nats::StatusCode::IDLE_HEARTBEAT {
                self.failures = 0;
                return;
            }
            let pull = self
                .pulls
                .remove(message.subject.as_str())
                .expect("just found");
            let description = message.description.unwrap_or_default();
            self.ended(pull, status.as_u16(), &description).await;
            return;
        }
        if message.reply.is_none() {
            return;
        }
        self.failures = 0;
        let band = {
            let message = jetstream::Message {
                message: message.clone(),
                context: self.shared.broker.js.clone(),
            };
            message.info().ok().and_then(|info| {
                info.consumer
                    .strip_prefix("OSIISO2_BAND_")?
                    .parse::<u8>()
                    .ok()
            })
        };
        // Counted against the oldest pull of its band still open.
        let oldest = self
            .pulls
            .iter()
            .filter(|(_, p)| Some(p.band) == band)
            .min_by_key(|(_, p)| p.order)
            .map(|(reply, _)| reply.clone());
        if let Some(reply) = oldest
            && let Some(pull) = self.pulls.get_mut(&reply)
        {
            pull.left = pull.left.saturating_sub(1);
            pull.heard = Instant::now();
            if pull.left == 0 {
                let pull = self.pulls.remove(&reply).expect("just found");
                // Answered in full: there may be more.
                self.ended(pull, 200, "").await;
            }
        }
        self.take(message);
    }

    /// A pull is over: answered in full (`200`), found nothing (`404`, `408`), or refused.
    async fn ended(&mut self, pull: Pull, status: u16, description: &str) {
        let b = usize::from(pull.band);
        if !pull.long {
            self.sweeping = None;
        }
        match (pull.long, status) {
            // Answered in full: there may be more.
            (_, 200) => self.bands[b] = Band::Unknown,
            // The band is empty (a sweep), or stayed empty for a whole long poll: wait on it.
            (false, 404 | 408) | (true, 408) => self.send(pull.band, true, 1).await,
            _ => {
                tracing::debug!(band = pull.band, status, description, "a pull was refused");
                if description
                    .to_ascii_lowercase()
                    .contains("consumer deleted")
                {
                    self.shared.set_up_again().await;
                }
                self.bands[b] = Band::Paused(Instant::now() + REFUSED_PAUSE);
            }
        }
    }

    /// Runs a delivered attempt in a free slot, or hands it back when there is none.
    fn take(&mut self, message: async_nats::Message) {
        let Ok(handling) = self.handling.clone().try_acquire_owned() else {
            return;
        };
        let message = jetstream::Message {
            message,
            context: self.shared.broker.js.clone(),
        };
        let slot = if self.shared.draining.load(Ordering::SeqCst) {
            None
        } else {
            self.slots.clone().try_acquire_owned().ok()
        };
        let shared = self.shared.clone();
        match slot {
            Some(permit) => {
                let slot = Slot {
                    permit: Some(permit),
                    freed: self.freed.clone(),
                };
                tokio::spawn(execute::handle(shared, message, slot, handling));
            }
            None => {
                tokio::spawn(execute::hand_back(shared, message, handling));
            }
        }
    }

    fn hand_back(&self, message: async_nats::Message) {
        let Ok(handling) = self.handling.clone().try_acquire_owned() else {
            return;
        };
        let message = jetstream::Message {
            message,
            context: self.shared.broker.js.clone(),
        };
        tokio::spawn(execute::hand_back(self.shared.clone(), message, handling));
    }

    /// Pulls the broker stopped talking about are taken as lost (a server died, a consumer
    /// moved) and made again; after many, the layout is set up again.
    async fn check_pulls(&mut self) {
        let now = Instant::now();
        let lost: Vec<String> = self
            .pulls
            .iter()
            .filter(|(_, p)| {
                let silence = if p.long {
                    POLL_HEARTBEAT.saturating_mul(2)
                } else {
                    REQUEST_TIMEOUT
                };
                now.duration_since(p.heard) > silence
            })
            .map(|(reply, _)| reply.clone())
            .collect();
        for reply in lost {
            if let Some(pull) = self.pulls.remove(&reply) {
                self.failures += 1;
                if !pull.long {
                    self.sweeping = None;
                }
                self.bands[usize::from(pull.band)] = Band::Unknown;
            }
        }
        if self.failures >= FAILURES_BEFORE_SETUP {
            self.failures = 0;
            self.shared.set_up_again().await;
        }
    }

    /// After a reconnection the broker may have forgotten every pull: make them again (what
    /// the old ones still deliver is taken or handed back like anything else).
    fn forget_pulls(&mut self) {
        self.pulls.clear();
        self.sweeping = None;
        self.bands = [Band::Unknown; BANDS as usize];
    }
}
