//! One live worker subprocess shared by the queue worker threads that send it attempts: a
//! few attempts in flight at once, in the order they were sent; whichever waiting thread
//! holds the reply stream reads it and hands each `Done` to the thread waiting for it (no
//! thread of its own: with one attempt in flight, its waiter reads its own reply); the
//! death of the process ends every attempt it held, each exactly once.
//!
//! The worker runs its attempts one after another, in the order they came. The first one
//! not answered yet (the *head*) is the one it runs; the others wait in the worker, with
//! their clocks held ([`AttemptControl::hold_clock`]) until the answer of the one before
//! them arrives, so waiting behind a slow attempt does not eat into a timeout. A waiting
//! attempt that is cancelled (or hits a tighter deadline of the run) is ended by the parent
//! at once and the worker told to skip it; only the head can make the parent kill the
//! worker, one grace after its cancel or deadline.

use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::process::ChildStdin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::child::{ProcessHandle, WorkerProcess};
use super::logs;
use super::protocol::{Frame, FrameReader, FrameTooLarge, Reply, Request, write_frame};
use crate::attempt::{AttemptControl, AttemptReport, ProgressFn};
use crate::failure::{FailureKind, TaskFailure};

/// The requests of one worker, in the order it will run them.
pub(super) struct Channel {
    pid: u32,
    writer: Mutex<Writer>,
    /// The reply stream, read by one waiting thread at a time.
    replies: Mutex<FrameReader>,
    process: Mutex<ProcessHandle>,
    state: Mutex<State>,
    /// `state.dead.is_some()`, readable without the lock.
    dead: AtomicBool,
}

/// The request pipe, and a buffer reused for every frame.
struct Writer {
    out: BufWriter<ChildStdin>,
    frame: Vec<u8>,
}

#[derive(Default)]
struct State {
    /// Attempts sent and not yet taken by their waiter, in the order they were sent.
    in_flight: VecDeque<Entry>,
    /// Why the channel is dead, once it is: every attempt it holds ends with this.
    dead: Option<Death>,
    /// Someone is killing the process, and will record the death with this reason.
    killing: bool,
}

struct Death {
    /// What happened, for the failure's detail.
    why: String,
    /// The process's exit (`exit code N`, `signal N`).
    status: String,
}

/// One attempt in flight.
struct Entry {
    id: u64,
    waiter: Thread,
    control: Arc<AttemptControl>,
    progress: Option<ProgressFn>,
    /// Its clock is held until it becomes the head.
    held: bool,
    /// Its report, once the worker sent it.
    report: Option<AttemptReport>,
}

/// Why an attempt could not be sent.
pub(super) enum SendError {
    /// The channel is dead, and the attempt never left: send it to another worker. The
    /// report is the crash, if it must end here after all.
    Dead(Box<AttemptReport>),
    /// The attempt does not fit in a frame.
    TooLarge(FrameTooLarge),
}

impl Channel {
    /// Takes over a worker that has done its handshake (and initializer).
    pub(super) fn new(worker: WorkerProcess) -> Self {
        let WorkerProcess {
            process,
            stdin,
            replies,
            ..
        } = worker;
        Self {
            pid: process.pid(),
            writer: Mutex::new(Writer {
                out: stdin,
                frame: Vec::new(),
            }),
            replies: Mutex::new(replies),
            process: Mutex::new(process),
            state: Mutex::new(State::default()),
            dead: AtomicBool::new(false),
        }
    }

    /// Whether the channel is dead (its process killed or gone).
    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Sends an attempt with the next id from `ids`, encoded by `encode` into the buffer it
    /// is given, with that id, once its clock is set: held (`true`) when another attempt is
    /// ahead of it. Returns the id; the calling thread then waits for it with
    /// [`wait`](Self::wait).
    pub(super) fn send(
        &self,
        ids: &AtomicU64,
        control: &Arc<AttemptControl>,
        name: &str,
        progress: Option<&ProgressFn>,
        encode: impl FnOnce(&mut Vec<u8>, u64, bool) -> Result<(), FrameTooLarge>,
    ) -> Result<u64, SendError> {
        // The writer's lock orders the frames; the state's is never held across a write
        // (a waiter needs it to hand out replies while a large frame is written).
        let mut writer = self.writer.lock();
        // Taken under the writer's lock: a worker sees its attempts' ids grow.
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let held = {
            let mut state = self.state.lock();
            if let Some(death) = &state.dead {
                return Err(SendError::Dead(Box::new(crashed(control, name, death))));
            }
            let held = state.in_flight.iter().any(|e| e.report.is_none());
            if held {
                control.hold_clock();
            }
            state.in_flight.push_back(Entry {
                id,
                waiter: std::thread::current(),
                control: control.clone(),
                progress: progress.cloned(),
                held,
                report: None,
            });
            held
        };
        // Encoded after its clock is set, so that the time left it carries is measured with
        // it; outside the state's lock (the waiters need it), and no attempt can queue behind
        // this one meanwhile (the writer's lock is held).
        if let Err(too_large) = encode(&mut writer.frame, id, held) {
            self.state.lock().in_flight.retain(|e| e.id != id);
            if held {
                control.restart_clock();
            }
            return Err(SendError::TooLarge(too_large));
        }
        let Writer { out, frame } = &mut *writer;
        if let Err(error) = out.write_all(frame).and_then(|()| out.flush()) {
            drop(writer);
            // A write that failed may have left half a frame: nothing more can go through.
            self.die(format!("cannot send the attempt: {error}"));
        }
        Ok(id)
    }

    /// Waits for the report of attempt `id` (sent by this thread), checking its control
    /// every `poll`. `name` names its task in messages.
    pub(super) fn wait(
        &self,
        id: u64,
        control: &AttemptControl,
        name: &str,
        poll: Duration,
    ) -> AttemptReport {
        let (report, handed) = self.wait_for(id, control, name, poll);
        // If this thread was reading (or may have been chosen to), another waiter takes
        // over. One whose report another reader handed it was never chosen since: waking
        // the next would only cost that waiter a needless trip round its loop.
        if !handed {
            self.wake_next_reader();
        }
        report
    }

    /// The report, and whether another thread's read handed it over while this one never
    /// read.
    fn wait_for(
        &self,
        id: u64,
        control: &AttemptControl,
        name: &str,
        poll: Duration,
    ) -> (AttemptReport, bool) {
        let grace = super::grace(poll);
        let mut stop_at: Option<Instant> = None;
        let mut cancel_sent = false;
        let mut read = false;
        loop {
            let mut wait = poll;
            {
                let mut state = self.state.lock();
                let Some(index) = state.in_flight.iter().position(|e| e.id == id) else {
                    // Only this thread removes its entry.
                    unreachable!("attempt {id} is not in flight");
                };
                if state.in_flight[index].report.is_some() {
                    let entry = state.in_flight.remove(index).expect("present");
                    return (entry.report.expect("checked"), !read);
                }
                if let Some(death) = &state.dead {
                    let report = crashed(control, name, death);
                    state.in_flight.remove(index);
                    return (report, false);
                }
                let head = state
                    .in_flight
                    .iter()
                    .take(index)
                    .all(|e| e.report.is_some());
                if !head {
                    if control.should_stop() {
                        // It waits in the worker behind another: it ends here, at once, and
                        // the worker answers it `Cancelled` without running it.
                        state.in_flight.remove(index);
                        drop(state);
                        self.send_cancel(id);
                        return (control.stopped_outcome(name).into(), false);
                    }
                } else {
                    if control.is_cancelled() && !cancel_sent {
                        cancel_sent = true;
                        drop(state);
                        self.send_cancel(id);
                        stop_at.get_or_insert_with(|| Instant::now() + grace);
                        continue;
                    }
                    let now = Instant::now();
                    if stop_at.is_none()
                        && let Some(deadline) = control.deadline()
                    {
                        if now >= deadline {
                            stop_at = Some(deadline + grace);
                        } else {
                            wait = wait.min(deadline - now);
                        }
                    }
                    if let Some(at) = stop_at {
                        if now >= at {
                            // It did not report within the grace: kill the worker. The
                            // classification gives cancelled or timeout, never a crash; the
                            // attempts behind it end as the worker's crash.
                            state.in_flight.remove(index);
                            drop(state);
                            self.die(format!(
                                "the worker was killed because an attempt of task '{name}' \
                                 did not stop within {grace:?} of its cancel or deadline"
                            ));
                            return (control.stopped_outcome(name).into(), false);
                        }
                        wait = wait.min(at - now);
                    }
                }
            }
            let wait = wait.max(Duration::from_millis(1));
            match self.replies.try_lock() {
                // This thread reads for everyone until its own report arrives.
                Some(mut replies) => {
                    read = true;
                    self.read(&mut replies, wait);
                }
                // The reader unparks this thread when its report or the worker's death
                // arrives, or when it stops reading.
                None => std::thread::park_timeout(wait),
            }
        }
    }

    /// Unparks the first waiter without a report, to read the stream.
    fn wake_next_reader(&self) {
        let next = {
            let state = self.state.lock();
            let next = state.in_flight.iter().find(|e| e.report.is_none());
            next.map(|entry| entry.waiter.clone())
        };
        // Outside the lock, which the woken thread takes first.
        if let Some(waiter) = next {
            waiter.unpark();
        }
    }

    /// Reads one frame (waiting up to `wait`) and handles it; at the end of the stream or
    /// when it breaks, reaps the worker and ends what it held.
    fn read(&self, replies: &mut FrameReader, wait: Duration) {
        let why = match replies.next::<Reply>(Some(wait)) {
            Ok(None) => return,
            Ok(Some(Frame::Message(reply))) => match self.dispatch(reply) {
                None => return,
                Some(why) => why,
            },
            Ok(Some(Frame::Undecodable(message))) => {
                format!("the worker sent a malformed frame: {message}")
            }
            Ok(Some(Frame::Eof)) => "the worker closed its channel".to_string(),
            Err(error) => format!("the worker sent a malformed frame: {error}"),
        };
        if !self.claim_death() {
            return;
        }
        // A worker that closed its channel is exiting: give it its 2 s to say how, then
        // kill it.
        let status = self.process.lock().reap();
        self.mark_dead(why, status);
    }

    fn send_cancel(&self, id: u64) {
        let mut writer = self.writer.lock();
        let _ = write_frame(&mut writer.out, &Request::Cancel { attempt_id: id });
    }

    /// Kills the worker (if it is not dead already) and ends every attempt it holds with
    /// `why`.
    pub(super) fn die(&self, why: String) {
        if !self.claim_death() {
            return;
        }
        let status = {
            let mut process = self.process.lock();
            process.kill();
            process.reap()
        };
        self.mark_dead(why, status);
    }

    /// True for the one caller that is to kill the process and record why.
    fn claim_death(&self) -> bool {
        let mut state = self.state.lock();
        let first = state.dead.is_none() && !state.killing;
        state.killing = true;
        first
    }

    /// Records the death, once, and wakes every waiter.
    fn mark_dead(&self, why: String, status: String) {
        let mut state = self.state.lock();
        if state.dead.is_none() {
            state.dead = Some(Death { why, status });
            self.dead.store(true, Ordering::Release);
        }
        for entry in &state.in_flight {
            entry.waiter.unpark();
        }
    }

    /// Graceful close: `Stop`, then the process exits (or is signalled).
    pub(super) fn close(&self) {
        if !self.claim_death() {
            return;
        }
        {
            let mut writer = self.writer.lock();
            let _ = write_frame(&mut writer.out, &Request::Stop);
        }
        let status = {
            let mut process = self.process.lock();
            process.close();
            process.reap()
        };
        self.mark_dead("the queue closed its workers".into(), status);
    }

    /// Handles one reply; `Some(why)` if the worker broke the protocol.
    fn dispatch(&self, reply: Reply) -> Option<String> {
        match reply {
            Reply::Log(record) => logs::emit(self.pid, &record),
            Reply::Progress {
                attempt_id,
                done,
                total,
            } => {
                let progress = {
                    let state = self.state.lock();
                    state
                        .in_flight
                        .iter()
                        .find(|e| e.id == attempt_id && e.report.is_none())
                        .and_then(|e| e.progress.clone())
                };
                // Progress of an attempt that already ended is stale: dropped.
                if let Some(progress) = progress {
                    progress(done, total);
                }
            }
            Reply::Done(done) => {
                let id = done.attempt_id;
                // Validated outside the lock: a large value takes a while.
                let report = done.into_report();
                self.answer(|e| e.id == id, report);
            }
            Reply::BadFrame { message } => {
                // Replies come in order, so this answers the oldest unanswered request.
                let report = AttemptReport::failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("the worker could not decode the request: {message}"),
                ));
                self.answer(|_| true, report);
            }
            other => return Some(format!("the worker sent an unexpected reply: {other:?}")),
        }
        None
    }

    /// Gives `report` to the first unanswered attempt that `matches` (none: an attempt its
    /// waiter gave up on, whose answer is dropped), and starts the clock of the next one.
    fn answer(&self, matches: impl Fn(&Entry) -> bool, report: AttemptReport) {
        let waiter = {
            let mut state = self.state.lock();
            let mut unanswered = state.in_flight.iter_mut().filter(|e| e.report.is_none());
            let Some(entry) = unanswered.find(|e| matches(e)) else {
                return;
            };
            entry.report = Some(report);
            let waiter = entry.waiter.clone();
            // The worker runs the next one now: its timeout counts from here.
            if let Some(next) = unanswered.next()
                && next.held
            {
                next.held = false;
                next.control.restart_clock();
            }
            waiter
        };
        // Outside the lock: the woken thread takes it first thing.
        waiter.unpark();
    }
}

/// The report of an attempt whose worker died or broke the protocol: cancellation and the
/// deadline take precedence over the crash (docs/queues.md §5.2).
fn crashed(control: &AttemptControl, name: &str, death: &Death) -> AttemptReport {
    if control.should_stop() {
        return control.stopped_outcome(name).into();
    }
    AttemptReport::failed(
        TaskFailure::new(
            FailureKind::WorkerCrashed,
            format!("worker process died ({})", death.status),
        )
        .with_detail(&death.why),
    )
}
