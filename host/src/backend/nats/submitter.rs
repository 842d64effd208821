//! The submitter's side of the broker: publishes attempts, routes reports back to them, and
//! notices nodes that die while running one. Every queue rule stays in the queue core; this
//! is what ProcessQueue's worker pipe is to a subprocess.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{kv, object_store, stream};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, OnceCell, oneshot};
use tokio::task::JoinHandle;

use super::super::wire::{AttemptSpec, outbound};
use super::NatsError;
use super::layout::{self, Broker, HEARTBEAT};
use super::wire::{AttemptMsg, ReportMsg, StartedMsg, unix_millis};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport};
use crate::engine::Plugin;
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::backend::Attempt;

/// How long an attempt keeps trying to reach the broker before it fails as `WorkerStart`
/// (retryable): longer than a broker restart, shorter than forever.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(60);
/// How often (in heartbeats) unannounced attempts are looked for on the broker.
const VANISHED_CHECK_TICKS: u64 = 3;
/// An attempt is looked for once it is this old, and declared lost once it has been gone
/// this long.
const VANISHED_AFTER: Duration = Duration::from_secs(3);
/// Attempts looked for per round (by each of the two checks), oldest first.
const VANISHED_CHECKS: usize = 64;
/// Heartbeats a node may miss, while it runs one of our attempts, before the attempt is
/// reported crashed.
const MISSED_HEARTBEATS: u8 = 2;
/// Unannounced attempts this old are looked up on their band's consumer.
const STRANDED_CHECK_AFTER: Duration = Duration::from_secs(1);
/// How long an attempt some node has taken may go unannounced, in time the broker was
/// answering, before its node counts as dead. A live node announces within moments of
/// taking an attempt (and again every few seconds while it runs), so silence this long means
/// the node died or froze before its first announcement.
const UNANNOUNCED_AFTER: Duration = Duration::from_secs(4);

/// An attempt waiting for its report.
struct Pending {
    reply: oneshot::Sender<ReportMsg>,
    /// The attempt's control: its clock restarts when a node takes it.
    control: Arc<AttemptControl>,
    /// The node that announced it took the attempt.
    node: Option<String>,
    /// Consecutive liveness checks that did not find that node.
    missing: u8,
    /// The attempt's stream sequence, once published.
    seq: Option<u64>,
    /// Its priority band.
    band: u8,
    /// When its band's consumer was first seen past it with no node announcing it.
    taken: Option<Instant>,
    /// When it was published.
    since: Instant,
    /// When its message was first found gone from the broker without a report.
    vanished: Option<Instant>,
}

type PendingMap = Arc<Mutex<HashMap<String, Pending>>>;

/// One submitter: an id, a connection, and the tasks that keep it alive.
pub(crate) struct Submitter {
    pub(crate) id: String,
    broker: Broker,
    attempts: stream::Stream,
    plugins: object_store::ObjectStore,
    submitters: kv::Store,
    pending: PendingMap,
    /// Plugins uploaded (or found in the store) by this submitter, by hash.
    uploads: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    next_attempt: AtomicU64,
    /// Bands with new attempts since the last kick.
    kick_bands: Arc<AtomicU8>,
    kick: Arc<Notify>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Submitter {
    /// Sets up the layout and starts the report dispatcher, the heartbeat, the liveness
    /// watch and the kicker.
    pub(crate) async fn start(broker: Broker) -> Result<Arc<Self>, NatsError> {
        let id = format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let attempts = broker.attempts().await?;
        let reports = broker
            .client
            .subscribe(layout::report_subject(&id))
            .await
            .map_err(|e| NatsError::broker("subscribe to reports", e))?;
        let plugins = broker.plugins().await?;
        let submitters = broker.liveness(layout::SUBMITTERS_BUCKET).await?;
        let nodes = broker.liveness(layout::NODES_BUCKET).await?;
        submitters
            .put(&id, Bytes::from_static(b"1"))
            .await
            .map_err(|e| NatsError::broker("register the submitter", e))?;
        let events = broker
            .client
            .subscribe(layout::event_subject(&id))
            .await
            .map_err(|e| NatsError::broker("subscribe to node events", e))?;
        let submitter = Arc::new(Self {
            id,
            broker,
            attempts,
            plugins,
            submitters,
            pending: PendingMap::default(),
            uploads: Mutex::new(HashMap::new()),
            next_attempt: AtomicU64::new(1),
            kick_bands: Arc::new(AtomicU8::new(0)),
            kick: Arc::new(Notify::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            tokio::spawn(dispatch(
                submitter.broker.client.clone(),
                reports,
                submitter.pending.clone(),
            )),
            tokio::spawn(track_starts(events, submitter.pending.clone())),
            tokio::spawn(watch_liveness(
                submitter.broker.client.clone(),
                nodes,
                submitter.attempts.clone(),
                submitter.pending.clone(),
            )),
            tokio::spawn(heartbeat(
                submitter.submitters.clone(),
                submitter.id.clone(),
            )),
            tokio::spawn(kicker(
                submitter.broker.client.clone(),
                submitter.kick_bands.clone(),
                submitter.kick.clone(),
            )),
        ];
        *submitter.tasks.lock() = tasks;
        tracing::debug!(submitter = %submitter.id, "NATS submitter started");
        Ok(submitter)
    }

    /// Stops the background tasks and removes this submitter from the live set, so that
    /// nodes drop whatever of it is still queued.
    pub(crate) fn stop(&self, runtime: &tokio::runtime::Handle) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        let (submitters, id) = (self.submitters.clone(), self.id.clone());
        let leave = async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), submitters.delete(&id)).await;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            runtime.spawn(leave);
        } else {
            runtime.block_on(leave);
        }
    }

    /// Runs one attempt on some node: publish, wait for its report, stop it remotely when
    /// the control says so.
    pub(crate) async fn run(self: &Arc<Self>, attempt: Attempt<'_>) -> AttemptReport {
        let (call, name, control) = (attempt.call, attempt.name, attempt.control);
        let plugin = call.task().plugin();
        let (path, input) = match outbound(&attempt, "node") {
            Ok(outbound) => outbound,
            Err(failure) => return AttemptReport::failed(failure),
        };
        let uploaded = tokio::select! {
            biased;
            uploaded = self.ensure_plugin(plugin, path) => uploaded,
            _ = control.stopped() => return control.stopped_outcome(name).into(),
        };
        if let Err(failure) = uploaded {
            return AttemptReport::failed(failure);
        }

        let uid = format!(
            "{}-{}",
            self.id,
            self.next_attempt.fetch_add(1, Ordering::Relaxed)
        );
        let spec = AttemptSpec::new(&attempt, input);
        // Only a limit that a node's start does not move (the run's) makes an orphan.
        let expires_unix_ms = spec
            .left_ms
            .filter(|left| spec.timeout_ms.is_none_or(|timeout| *left < timeout))
            .map(|left| unix_millis().saturating_add(left));
        let message = AttemptMsg {
            uid: uid.clone(),
            submitter: self.id.clone(),
            plugin_name: plugin.name().to_string(),
            expires_unix_ms,
            spec,
        };
        let payload = match serde_json::to_vec(&message) {
            Ok(payload) if payload.len() <= self.broker.max_payload => Bytes::from(payload),
            Ok(payload) => {
                return AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!(
                        "the attempt of task '{name}' is {} bytes, over the NATS server's \
                         max_payload of {} bytes",
                        payload.len(),
                        self.broker.max_payload
                    ),
                ));
            }
            Err(error) => {
                return AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("cannot encode the attempt of task '{name}': {error}"),
                ));
            }
        };

        let band = layout::band(attempt.priority);
        let (reply, report) = oneshot::channel();
        self.pending.lock().insert(
            uid.clone(),
            Pending {
                reply,
                control: control.clone(),
                node: None,
                missing: 0,
                seq: None,
                band,
                taken: None,
                since: Instant::now(),
                vanished: None,
            },
        );
        let mut in_flight = InFlight {
            submitter: self.clone(),
            uid,
            seq: None,
            settled: false,
        };
        let subject = layout::attempt_subject(band, &self.id);
        match self
            .publish(&subject, &in_flight.uid, payload, control, name)
            .await
        {
            Ok(seq) => {
                in_flight.seq = Some(seq);
                if let Some(waiting) = self.pending.lock().get_mut(&in_flight.uid) {
                    waiting.seq = Some(seq);
                }
            }
            Err(report) => return report,
        }
        self.kick_bands.fetch_or(1 << band, Ordering::Relaxed);
        self.kick.notify_one();
        // Its timeout runs once a node takes it (the node says so), not while it waits on
        // the broker for a free slot.
        // Under the lock a node's announcement takes: held, then restarted, never the other
        // way round.
        if let Some(waiting) = self.pending.lock().get(&in_flight.uid)
            && waiting.node.is_none()
        {
            control.hold_clock();
        }

        tokio::pin!(report);
        let stopped = tokio::select! {
            biased;
            report = &mut report => return in_flight.settle(report),
            _ = control.stopped() => true,
        };
        debug_assert!(stopped);
        // Stop it remotely and wait for the node's own report (the queue gives up after its
        // grace, dropping this future).
        in_flight.stop_remote();
        let mut report = in_flight.settle(report.await);
        // The node stopped it on our word, or at its own deadline (a little later than
        // ours): what it was stopped for is decided here, as in every backend.
        if matches!(
            &report.outcome,
            AttemptOutcome::Cancelled
                | AttemptOutcome::Failed(TaskFailure {
                    kind: FailureKind::Timeout,
                    ..
                })
        ) {
            report.outcome = control.stopped_outcome(name);
        }
        report
    }

    /// Publishes an attempt until the broker stores it; returns its stream sequence.
    async fn publish(
        &self,
        subject: &str,
        uid: &str,
        payload: Bytes,
        control: &Arc<AttemptControl>,
        name: &str,
    ) -> Result<u64, AttemptReport> {
        let started = Instant::now();
        loop {
            let publish = async {
                let message = PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(format!("att.{uid}"));
                self.broker
                    .js
                    .send_publish(subject.to_string(), message)
                    .await?
                    .await
            };
            let error = tokio::select! {
                biased;
                published = publish => match published {
                    Ok(ack) => return Ok(ack.sequence),
                    Err(error) => error,
                },
                _ = control.stopped() => {
                    // It may be stored even so: tell the nodes not to run it.
                    self.send_cancel(uid);
                    return Err(control.stopped_outcome(name).into());
                }
            };
            if error.kind() == PublishErrorKind::MaxPayloadExceeded {
                return Err(AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("the attempt of task '{name}' is too large for the NATS server"),
                )));
            }
            if started.elapsed() >= PUBLISH_PATIENCE {
                return Err(AttemptReport::failed(TaskFailure::new(
                    FailureKind::WorkerStart,
                    format!(
                        "cannot queue the attempt on the NATS server for {}s: {error}",
                        PUBLISH_PATIENCE.as_secs()
                    ),
                )));
            }
            tracing::debug!(%error, "publishing an attempt failed; retrying");
            // The same message id: if the first one was stored after all, the broker drops
            // the copy.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = control.stopped() => {}
            }
        }
    }

    /// Makes sure the plugin is in the object store, once per hash per submitter. The file
    /// is read again and must still have the hash the queue loaded.
    async fn ensure_plugin(&self, plugin: &Plugin, path: &Path) -> Result<(), TaskFailure> {
        let cell = self
            .uploads
            .lock()
            .entry(plugin.hash().to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let name = layout::plugin_object(plugin.hash());
            if self.plugins.info(&name).await.is_ok() {
                return Ok(());
            }
            let bytes = read_plugin(path).await?;
            if blake3::hash(&bytes).to_hex().as_str() != plugin.hash() {
                return Err(TaskFailure::new(
                    FailureKind::PluginLoad,
                    format!(
                        "plugin '{}' changed on disk since the queue loaded it",
                        path.display()
                    ),
                ));
            }
            self.plugins
                .put(name.as_str(), &mut bytes.as_slice())
                .await
                .map_err(|e| {
                    TaskFailure::new(
                        FailureKind::WorkerStart,
                        format!("cannot upload plugin '{}' to NATS: {e}", plugin.name()),
                    )
                })?;
            tracing::debug!(plugin = plugin.name(), object = %name, "plugin uploaded");
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Tells every node to stop (or never start) attempt `uid`.
    fn send_cancel(&self, uid: &str) {
        let (client, subject, uid) = (
            self.broker.client.clone(),
            layout::cancel_subject(&self.id),
            uid.to_string(),
        );
        tokio::spawn(async move {
            let _ = client.publish(subject, Bytes::from(uid)).await;
        });
    }
}

/// An attempt between publish and report. Dropped early (the queue gave up on it), it
/// stops the attempt remotely: deleted if still queued, cancelled if running.
struct InFlight {
    submitter: Arc<Submitter>,
    uid: String,
    seq: Option<u64>,
    settled: bool,
}

impl InFlight {
    fn settle(&mut self, report: Result<ReportMsg, oneshot::error::RecvError>) -> AttemptReport {
        self.settled = true;
        match report {
            Ok(report) => {
                if report.local {
                    // Made up here (its node vanished, the broker is away): whatever still
                    // runs or waits out there is stopped.
                    self.stop_remote();
                }
                report.into_report()
            }
            // The sender went away without a report: the submitter is stopping.
            Err(_) => AttemptReport::failed(TaskFailure::new(
                FailureKind::WorkerCrashed,
                "the NATS submitter stopped before the attempt reported",
            )),
        }
    }

    fn stop_remote(&mut self) {
        self.submitter.send_cancel(&self.uid);
        if let Some(seq) = self.seq.take() {
            let attempts = self.submitter.attempts.clone();
            tokio::spawn(async move {
                // Fails when a node already holds it (then the cancel reaches the node).
                let _ = attempts.delete_message(seq).await;
            });
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.submitter.pending.lock().remove(&self.uid);
        if !self.settled && tokio::runtime::Handle::try_current().is_ok() {
            self.stop_remote();
        }
    }
}

/// Reads a plugin file, bounded like every plugin the host loads.
async fn read_plugin(path: &Path) -> Result<Vec<u8>, TaskFailure> {
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        crate::engine::read_plugin_file(&path, layout::MAX_PLUGIN_BYTES)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(TaskFailure::new(FailureKind::PluginLoad, error.to_string())),
        Err(error) => Err(TaskFailure::new(FailureKind::PluginLoad, error.to_string())),
    }
}

/// Routes reports to the attempts waiting for them, and answers each once it is taken, so
/// that the node may acknowledge the attempt. A report of an attempt that is no longer
/// pending (a late node, a repeat after a lost answer) is answered and dropped.
async fn dispatch(
    client: async_nats::Client,
    mut reports: async_nats::Subscriber,
    pending: PendingMap,
) {
    while let Some(message) = reports.next().await {
        if message.payload.is_empty() {
            // A node asking whether this submitter is alive.
        } else {
            route(&pending, &message.payload);
        }
        if let Some(reply) = message.reply {
            let _ = client.publish(reply, Bytes::new()).await;
        }
    }
}

/// Hands a report to the attempt waiting for it.
fn route(pending: &PendingMap, payload: &[u8]) {
    {
        match serde_json::from_slice::<ReportMsg>(payload) {
            Ok(report) => {
                let waiting = pending.lock().remove(&report.uid);
                match waiting {
                    Some(waiting) => {
                        let _ = waiting.reply.send(report);
                    }
                    None => tracing::debug!(
                        uid = %crate::text::escape_control(&report.uid),
                        "dropping a report of an attempt that is no longer pending"
                    ),
                }
            }
            Err(error) => tracing::warn!(%error, "dropping a report that does not parse"),
        }
    }
}

/// Notes which node took which attempt, and starts the attempt's clock then.
async fn track_starts(mut events: async_nats::Subscriber, pending: PendingMap) {
    while let Some(message) = events.next().await {
        if let Ok(started) = serde_json::from_slice::<StartedMsg>(&message.payload)
            && let Some(waiting) = pending.lock().get_mut(&started.uid)
            && waiting.node.is_none()
        {
            // The attempt may have waited on the broker for a free slot: its timeout counts
            // from now (docs/queues.md §7.1).
            waiting.control.restart_clock();
            waiting.node = Some(started.node);
        }
    }
}

/// Ends attempts whose runner is gone: reported crashed once the node running one has
/// missed heartbeats (a killed or frozen node is noticed in seconds, not at the broker's
/// redelivery deadline), and failed `WorkerStart` (retryable) once the broker itself has
/// been out of reach for [`PUBLISH_PATIENCE`].
async fn watch_liveness(
    client: async_nats::Client,
    nodes: kv::Store,
    attempts: stream::Stream,
    pending: PendingMap,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut disconnected_since: Option<Instant> = None;
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        ticks += 1;
        if client.connection_state() == async_nats::connection::State::Connected {
            disconnected_since = None;
        } else {
            // Silence while the broker is away says nothing about the nodes.
            forget_taken(&pending, None);
            let since = *disconnected_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= PUBLISH_PATIENCE {
                let lost: Vec<(String, Pending)> = pending.lock().drain().collect();
                for (uid, waiting) in lost {
                    let failure = TaskFailure::new(
                        FailureKind::WorkerStart,
                        format!(
                            "lost the NATS server for {}s while the attempt ran",
                            PUBLISH_PATIENCE.as_secs()
                        ),
                    );
                    let _ = waiting
                        .reply
                        .send(ReportMsg::failed(&uid, "", failure).local());
                }
            }
            continue;
        }
        if ticks.is_multiple_of(VANISHED_CHECK_TICKS) {
            find_vanished(&attempts, &pending).await;
        }
        find_stranded(&attempts, &pending).await;
        if pending.lock().values().all(|p| p.node.is_none()) {
            continue;
        }
        // A failed read (the broker is away) says nothing about the nodes.
        let Ok(Ok(keys)) = tokio::time::timeout(HEARTBEAT, nodes.keys()).await else {
            continue;
        };
        let live: HashSet<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
        let mut pending = pending.lock();
        let lost: Vec<String> = pending
            .iter_mut()
            .filter_map(|(uid, waiting)| {
                let node = waiting.node.as_ref()?;
                if live.contains(node) {
                    waiting.missing = 0;
                    return None;
                }
                waiting.missing += 1;
                (waiting.missing >= MISSED_HEARTBEATS).then(|| uid.clone())
            })
            .collect();
        for uid in lost {
            if let Some(waiting) = pending.remove(&uid) {
                let node = waiting.node.unwrap_or_default();
                let failure = TaskFailure::new(
                    FailureKind::WorkerCrashed,
                    format!("node {node} stopped heartbeating while running the attempt"),
                );
                let _ = waiting
                    .reply
                    .send(ReportMsg::failed(&uid, &node, failure).local());
            }
        }
    }
}

/// Ends attempts that a node took and died (or froze) with before announcing them: the band's
/// consumer has delivered past the attempt, its message is still on the broker, and no node
/// has said it holds it for [`UNANNOUNCED_AFTER`]. Without this such an attempt would wait
/// for its lease to run out (`--ack-wait`, 30 s by default) and the broker to hand it out
/// again. One consumer lookup per band with such attempts, none when there are none.
async fn find_stranded(attempts: &stream::Stream, pending: &PendingMap) {
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
        let mut due: Vec<(String, u64)> = pending
            .lock()
            .iter_mut()
            .filter(|(_, p)| p.band == band && p.node.is_none())
            .filter_map(|(uid, p)| {
                let Some(seq) = p.seq.filter(|&seq| seq <= delivered) else {
                    p.taken = None;
                    return None;
                };
                let taken = *p.taken.get_or_insert(now);
                (now.duration_since(taken) >= UNANNOUNCED_AFTER).then(|| (uid.clone(), seq))
            })
            .collect();
        // A bounded round (a dead node of many slots leaves many): the rest wait a heartbeat.
        due.sort_unstable_by_key(|&(_, seq)| seq);
        due.truncate(VANISHED_CHECKS);
        for (uid, seq) in due {
            // Gone from the broker instead: acknowledged or dropped, `find_vanished`'s case.
            let held = matches!(
                tokio::time::timeout(HEARTBEAT, attempts.get_raw_message(seq)).await,
                Ok(Ok(_))
            );
            let mut pending = pending.lock();
            if !held || pending.get(&uid).is_none_or(|p| p.node.is_some()) {
                continue;
            }
            if let Some(waiting) = pending.remove(&uid) {
                let failure = TaskFailure::new(
                    FailureKind::WorkerCrashed,
                    "the node that took the attempt went silent before announcing it (killed or \
                     frozen as it started)",
                );
                let _ = waiting
                    .reply
                    .send(ReportMsg::failed(&uid, "", failure).local());
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
/// coming. Checks the oldest few per round.
async fn find_vanished(attempts: &stream::Stream, pending: &PendingMap) {
    let now = Instant::now();
    let mut candidates: Vec<(Instant, String, u64)> = pending
        .lock()
        .iter()
        .filter(|(_, p)| p.node.is_none() && now.duration_since(p.since) >= VANISHED_AFTER)
        .filter_map(|(uid, p)| Some((p.since, uid.clone(), p.seq?)))
        .collect();
    candidates.sort();
    candidates.truncate(VANISHED_CHECKS);
    for (_, uid, seq) in candidates {
        let gone = match tokio::time::timeout(HEARTBEAT, attempts.get_raw_message(seq)).await {
            Ok(Ok(_)) => false,
            Ok(Err(error)) => {
                error.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound
            }
            Err(_) => false,
        };
        let mut pending = pending.lock();
        let Some(waiting) = pending.get_mut(&uid) else {
            continue;
        };
        if !gone {
            waiting.vanished = None;
            continue;
        }
        let since = *waiting.vanished.get_or_insert(now);
        if now.duration_since(since) >= VANISHED_AFTER
            && let Some(waiting) = pending.remove(&uid)
        {
            let failure = TaskFailure::new(
                FailureKind::WorkerCrashed,
                "the attempt left the NATS server without a report (lost in a broker \
                 restart, or dropped by a node that took this submitter for gone)",
            );
            let _ = waiting
                .reply
                .send(ReportMsg::failed(&uid, "", failure).local());
        }
    }
}

/// Keeps this submitter in the live set.
async fn heartbeat(submitters: kv::Store, id: String) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let _ =
            tokio::time::timeout(HEARTBEAT, submitters.put(&id, Bytes::from_static(b"1"))).await;
    }
}

/// Wakes idle nodes when attempts are queued: one core message per wake-up, naming the
/// bands that have new work.
async fn kicker(client: async_nats::Client, bands: Arc<AtomicU8>, kick: Arc<Notify>) {
    loop {
        kick.notified().await;
        let bands = bands.swap(0, Ordering::Relaxed);
        if bands != 0 {
            let _ = client
                .publish(layout::KICK_SUBJECT, Bytes::copy_from_slice(&[bands]))
                .await;
            // Attempts queued meanwhile share the next kick: nodes that are busy sweep the
            // bands anyway, and an idle one waits a millisecond at most.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
