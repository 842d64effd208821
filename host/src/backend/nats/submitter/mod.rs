//! The submitter's side of the broker: publishes attempts, takes their reports, and notices
//! nodes and attempts that are gone. Every queue rule stays in the queue core; this is what
//! ProcessQueue's worker pipe is to a subprocess.
//!
//! - [`reports`]: reports and announcements in, checked against each attempt's key.
//! - [`watch`]: nodes gone silent, attempts gone from the broker, clocks held while the
//!   broker is away.
//! - [`upload`]: plugins and large inputs into the object stores.

mod reports;
mod upload;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{kv, object_store, stream};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

use super::NatsError;
use super::connection::{Broker, patiently};
use super::frame::{AttemptKey, Body, write_frame};
use super::layout;
use super::message::{AttemptHeader, CancelMsg};
use super::payload::delete_object;
use super::timing::{HEARTBEAT, LEAVE_PATIENCE, PUBLISH_RETRY};
use crate::attempt::{AttemptControl, AttemptOutcome, AttemptReport, ProgressFn};
use crate::backend::remote::{AttemptSpec, outbound};
use crate::failure::{FailureKind, TaskFailure};
use crate::queue::backend::Attempt;

/// How an attempt's wait ended.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Its node's report (checked against the attempt's key).
    Reported {
        report: AttemptReport,
        /// The node found the stored plugin corrupted: check the store again.
        bad_plugin: bool,
    },
    /// Made up here: its node or its message went away.
    Lost(TaskFailure),
    /// A draining node handed it back without running it: publish it again.
    Returned,
}

/// An attempt waiting for its report.
pub(super) struct Pending {
    pub key: AttemptKey,
    pub reply: oneshot::Sender<Verdict>,
    /// The attempt's control: its clock restarts when a node takes it.
    pub control: Arc<AttemptControl>,
    /// The node that announced it took the attempt.
    pub node: Option<String>,
    /// When that node last said it still runs the attempt.
    pub heard: Instant,
    /// The node's last announcement counter (an older one is a replay).
    pub beat: u64,
    /// The node said the attempt's guest runs: its clock runs.
    pub clock_started: bool,
    /// The attempt's stream sequence, once published.
    pub seq: Option<u64>,
    /// Its priority band.
    pub band: u8,
    /// When it was published.
    pub since: Instant,
    /// When its band's consumer was first seen past it with no node announcing it.
    pub taken: Option<Instant>,
    /// When its message was first found gone from the broker without a report.
    pub vanished: Option<Instant>,
    /// A stored report body is being fetched.
    pub fetching: bool,
    /// Where the guest's progress reports go, as the node's announcements carry them.
    pub progress: Option<ProgressFn>,
}

impl Pending {
    /// Ends the wait with `verdict`.
    pub(super) fn settle(self, verdict: Verdict) {
        let _ = self.reply.send(verdict);
    }
}

pub(super) type PendingMap = Arc<Mutex<HashMap<String, Pending>>>;

/// One submitter: an id, a connection, and the tasks that keep it alive.
pub(crate) struct Submitter {
    pub(crate) id: String,
    broker: Broker,
    attempts: stream::Stream,
    plugins: object_store::ObjectStore,
    payloads: object_store::ObjectStore,
    submitters: kv::Store,
    pending: PendingMap,
    /// Plugins found good (or uploaded) in the store by this submitter: their sizes, by hash.
    uploads: Mutex<HashMap<String, Arc<OnceCell<u64>>>>,
    /// Plugins a node found corrupted in the store: checked byte by byte next time.
    suspect: Mutex<HashSet<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Submitter {
    /// Sets up the layout (waiting up to `patience` for JetStream) and starts the report
    /// dispatcher, the heartbeat and the watch.
    pub(crate) async fn start(
        broker: Broker,
        patience: Option<Duration>,
    ) -> Result<Arc<Self>, NatsError> {
        let id = layout::random_id("s");
        let (attempts, plugins, payloads, submitters, nodes) =
            patiently(&broker, "setting up the NATS layout", patience, || async {
                Ok((
                    broker.attempts().await?,
                    broker.plugins().await?,
                    broker.payloads().await?,
                    broker.submitters().await?,
                    broker.nodes().await?,
                ))
            })
            .await?;
        let reports = broker
            .client
            .subscribe(layout::report_subject(&id))
            .await
            .map_err(|e| NatsError::broker("subscribe to reports", e))?;
        let events = broker
            .client
            .subscribe(layout::event_subject(&id))
            .await
            .map_err(|e| NatsError::broker("subscribe to node announcements", e))?;
        submitters
            .put(&id, Bytes::from_static(b"1"))
            .await
            .map_err(|e| NatsError::broker("register the submitter", e))?;
        let submitter = Arc::new(Self {
            id,
            broker,
            attempts,
            plugins,
            payloads,
            submitters,
            pending: PendingMap::default(),
            uploads: Mutex::new(HashMap::new()),
            suspect: Mutex::new(HashSet::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let _ = nodes;
        let tasks = vec![
            tokio::spawn(reports::dispatch(
                submitter.broker.clone(),
                reports,
                submitter.pending.clone(),
                submitter.payloads.clone(),
                submitter.id.clone(),
            )),
            tokio::spawn(reports::track_running(events, submitter.pending.clone())),
            tokio::spawn(watch::watch(
                submitter.broker.clone(),
                submitter.attempts.clone(),
                submitter.pending.clone(),
                submitter.id.clone(),
            )),
            tokio::spawn(heartbeat(
                submitter.submitters.clone(),
                submitter.id.clone(),
            )),
        ];
        *submitter.tasks.lock() = tasks;
        tracing::debug!(submitter = %submitter.id, "NATS submitter started");
        Ok(submitter)
    }

    /// Stops the background tasks and removes this submitter from the live set, so that
    /// nodes drop whatever of it is still queued. Inside a runtime this runs in the
    /// background: the task it returns.
    pub(crate) fn stop(&self, runtime: &tokio::runtime::Handle) -> Option<JoinHandle<()>> {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        let (submitters, id) = (self.submitters.clone(), self.id.clone());
        let leave = async move {
            let _ = tokio::time::timeout(LEAVE_PATIENCE, submitters.delete(&id)).await;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            Some(runtime.spawn(leave))
        } else {
            runtime.block_on(leave);
            None
        }
    }

    /// Runs one attempt on some node: publish, wait for its report, stop it remotely when
    /// the control says so. An attempt a draining node hands back is published again.
    pub(crate) async fn run(self: &Arc<Self>, attempt: Attempt<'_>) -> AttemptReport {
        let (call, name, control) = (attempt.call, attempt.display_name, attempt.control);
        let plugin = call.task().plugin();
        let (path, input) = match outbound(&attempt, "node") {
            Ok(outbound) => outbound,
            Err(failure) => return AttemptReport::failed(failure),
        };
        // The node's clock: the whole timeout, from when the node starts the attempt.
        let mut spec = AttemptSpec::new(&attempt, String::new());
        spec.left_ms = spec.timeout_ms;
        // Here, the timeout runs once a node announces the attempt (docs/queues.md §7.1): not
        // while the plugin uploads, the broker is away or the attempt waits for a free slot.
        control.hold_clock();
        let prepared = tokio::select! {
            biased;
            prepared = self.prepare(plugin, path, spec, input, name) => prepared,
            _ = control.stopped() => return control.stopped_outcome(name).into(),
        };
        let (mut header, inline) = match prepared {
            Ok(prepared) => prepared,
            Err(failure) => return AttemptReport::failed(failure),
        };
        let stored = match &header.body {
            Body::Stored { object, .. } => Some(object.clone()),
            Body::Inline { .. } => None,
        };
        let band = layout::band(attempt.priority);
        let report = loop {
            match self
                .publish_and_wait(&header, &inline, band, control, attempt.progress, name)
                .await
            {
                Waited::Done(report) => break report,
                Waited::Returned => {
                    tracing::debug!(
                        task = name,
                        "an attempt handed back by a node; publishing it again"
                    );
                    header.token = layout::random_id("a");
                    header.key = AttemptKey::random();
                }
            }
        };
        if let Some(object) = stored {
            delete_object(&self.payloads, &object).await;
        }
        report
    }

    /// Publishes one copy of the attempt and waits for its verdict.
    async fn publish_and_wait(
        self: &Arc<Self>,
        header: &AttemptHeader,
        inline: &[u8],
        band: u8,
        control: &Arc<AttemptControl>,
        progress: Option<&ProgressFn>,
        name: &str,
    ) -> Waited {
        let frame = match write_frame(header, &[inline], None) {
            Ok(frame) if frame.len() <= self.broker.max_payload => Bytes::from(frame),
            Ok(frame) => {
                return Waited::Done(AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!(
                        "the attempt of task '{name}' is {} bytes without its input, over the \
                         NATS server's max_payload of {} bytes",
                        frame.len() - inline.len(),
                        self.broker.max_payload
                    ),
                )));
            }
            Err(error) => {
                return Waited::Done(AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("cannot encode the attempt of task '{name}': {error}"),
                )));
            }
        };
        let token = header.token.clone();
        let (reply, verdict) = oneshot::channel();
        let now = Instant::now();
        self.pending.lock().insert(
            token.clone(),
            Pending {
                key: header.key.clone(),
                reply,
                control: control.clone(),
                node: None,
                heard: now,
                beat: 0,
                clock_started: false,
                seq: None,
                band,
                since: now,
                taken: None,
                vanished: None,
                fetching: false,
                progress: progress.cloned(),
            },
        );
        let mut in_flight = InFlight {
            submitter: self.clone(),
            token,
            key: header.key.clone(),
            plugin_hash: header.spec.plugin_hash.clone(),
            seq: None,
            settled: false,
        };
        let subject = layout::attempt_subject(band, &self.id, &in_flight.token);
        match self
            .publish(&subject, &in_flight, frame, control, name)
            .await
        {
            Ok(seq) => {
                in_flight.seq = Some(seq);
                if let Some(waiting) = self.pending.lock().get_mut(&in_flight.token) {
                    waiting.seq = Some(seq);
                }
            }
            Err(report) => return Waited::Done(report),
        }

        tokio::pin!(verdict);
        tokio::select! {
            biased;
            verdict = &mut verdict => return in_flight.settle(verdict),
            _ = control.stopped() => {}
        }
        // Stop it remotely and wait for the node's own report (the queue gives up after its
        // grace, dropping this future).
        in_flight.stop_remote();
        let mut report = match in_flight.settle(verdict.await) {
            Waited::Done(report) => report,
            Waited::Returned => control.stopped_outcome(name).into(),
        };
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
        Waited::Done(report)
    }

    /// Publishes an attempt until the broker stores it, however long the broker is away;
    /// returns its stream sequence.
    async fn publish(
        &self,
        subject: &str,
        in_flight: &InFlight,
        payload: Bytes,
        control: &Arc<AttemptControl>,
        name: &str,
    ) -> Result<u64, AttemptReport> {
        let message_id = format!("att.{}.{}", self.id, in_flight.token);
        loop {
            let publish = async {
                let message = PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(message_id.as_str());
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
                    self.send_cancel(&in_flight.token, &in_flight.key);
                    return Err(control.stopped_outcome(name).into());
                }
            };
            if error.kind() == PublishErrorKind::MaxPayloadExceeded {
                return Err(AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("the attempt of task '{name}' is too large for the NATS server"),
                )));
            }
            tracing::debug!(%error, "publishing an attempt failed; trying again");
            // The same message id: if the first one was stored after all, the broker drops
            // the copy.
            tokio::select! {
                () = tokio::time::sleep(PUBLISH_RETRY) => {}
                _ = control.stopped() => {}
            }
        }
    }

    /// Tells every node to stop (or never start) attempt `token`.
    fn send_cancel(&self, token: &str, key: &AttemptKey) {
        let Ok(payload) = serde_json::to_vec(&CancelMsg::new(key, token)) else {
            return;
        };
        let (client, subject) = (self.broker.client.clone(), layout::cancel_subject(&self.id));
        tokio::spawn(async move {
            let _ = client.publish(subject, Bytes::from(payload)).await;
        });
    }
}

/// How one published copy of an attempt ended.
enum Waited {
    Done(AttemptReport),
    Returned,
}

/// An attempt between publish and report. Dropped early (the queue gave up on it), it
/// stops the attempt remotely: deleted if still queued, cancelled if running.
struct InFlight {
    submitter: Arc<Submitter>,
    token: String,
    key: AttemptKey,
    plugin_hash: String,
    seq: Option<u64>,
    settled: bool,
}

impl InFlight {
    fn settle(&mut self, verdict: Result<Verdict, oneshot::error::RecvError>) -> Waited {
        self.settled = true;
        match verdict {
            Ok(Verdict::Reported { report, bad_plugin }) => {
                if bad_plugin {
                    self.submitter.distrust_plugin(&self.plugin_hash);
                }
                Waited::Done(report)
            }
            Ok(Verdict::Lost(failure)) => {
                // Made up here (its node vanished): whatever still runs or waits out there is
                // stopped.
                self.stop_remote();
                Waited::Done(AttemptReport::failed(failure))
            }
            Ok(Verdict::Returned) => Waited::Returned,
            // The sender went away without a verdict: the submitter is stopping.
            Err(_) => Waited::Done(AttemptReport::failed(TaskFailure::new(
                FailureKind::WorkerCrashed,
                "the NATS submitter stopped before the attempt reported",
            ))),
        }
    }

    fn stop_remote(&mut self) {
        self.submitter.send_cancel(&self.token, &self.key);
        if let Some(seq) = self.seq.take() {
            let attempts = self.submitter.attempts.clone();
            tokio::spawn(async move {
                let _ = attempts.delete_message(seq).await;
            });
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.submitter.pending.lock().remove(&self.token);
        if !self.settled && tokio::runtime::Handle::try_current().is_ok() {
            self.stop_remote();
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
