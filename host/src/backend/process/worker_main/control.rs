//! The worker's side of the protocol channel: the request stream, read between attempts by the
//! main loop and during an attempt by the engine's epoch check (cancellations), and what an
//! attempt sends on the reply stream while it runs (progress).

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::logs::SharedWriter;
use super::super::protocol::{Frame, FrameReader, Reply, Request, RunRequest, write_frame};
use crate::attempt::{AttemptControl, ProgressFn};
use crate::progress::{Progress, ProgressCell};

/// How often a running attempt's checks read the request pipe, at most.
const CANCEL_READ_INTERVAL: Duration = Duration::from_millis(1);
/// Cancellations of attempts not started yet that a worker remembers (the parent has a few
/// in flight; anything past this is dropped, oldest first).
const MAX_REMEMBERED_CANCELS: usize = 1024;

/// Takes over the protocol channel: the original stdin for requests and stdout for replies,
/// kept on close-on-exec descriptors; fd 0 then reads /dev/null and fd 1 goes to stderr, so
/// stray prints and child processes cannot touch the stream.
pub(super) fn protocol_channel() -> Result<(FrameReader, SharedWriter), String> {
    // SAFETY: plain libc calls on this process's own descriptors and attributes.
    let (input, output) = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        let input = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        let output = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        // Nothing this process starts (a hook's helper, say) may read requests or write
        // frames: fd 0 becomes /dev/null and fd 1 stderr.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if input < 0 || output < 0 || null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(2, 1) < 0 {
            return Err("cannot set up the protocol channel".into());
        }
        libc::close(null);
        // SAFETY: both are fresh descriptors owned by nothing else.
        (OwnedFd::from_raw_fd(input), OwnedFd::from_raw_fd(output))
    };
    let requests = FrameReader::new(input).map_err(|e| format!("cannot read requests: {e}"))?;
    let out = Arc::new(Mutex::new(BufWriter::new(File::from(output))));
    Ok((requests, out))
}

/// The request stream, read between attempts by the main loop and during an attempt by the
/// epoch check.
pub(super) struct ControlChannel {
    requests: FrameReader,
    /// Frames read during an attempt that are not for it, in order.
    pending: VecDeque<Frame<Request>>,
    /// Attempts the parent asked to cancel: the running one, or ones not started yet.
    cancels: BTreeSet<u64>,
    /// The id of the last attempt started (ids grow in the order the parent sends them).
    started: u64,
    /// When a running attempt's check last read the pipe.
    last_read: Option<Instant>,
    /// The parent asked the worker to stop, or went away.
    closing: bool,
}

impl ControlChannel {
    /// The channel of `requests`, before the first attempt.
    pub(super) fn new(requests: FrameReader) -> Self {
        Self {
            requests,
            pending: VecDeque::new(),
            cancels: BTreeSet::new(),
            started: 0,
            last_read: None,
            closing: false,
        }
    }

    /// Whether the parent asked the worker to stop, or went away.
    pub(super) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether a request can be had without waiting: one already read, or one in the pipe
    /// now (read without waiting, and kept for [`next`](Self::next)).
    pub(super) fn has_request(&mut self) -> bool {
        if !self.pending.is_empty() || self.requests.has_frame() {
            return true;
        }
        self.last_read = Some(Instant::now());
        match self.requests.next::<Request>(Some(Duration::ZERO)) {
            Ok(Some(frame)) => {
                self.pending.push_back(frame);
                true
            }
            Ok(None) => false,
            // `next` reports it again.
            Err(_) => true,
        }
    }

    /// The next request, waiting for it.
    pub(super) fn next(&mut self) -> std::io::Result<Frame<Request>> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        loop {
            let frame = self.requests.next(None)?;
            // It read the pipe (unless the frame was buffered, read no longer ago).
            self.last_read = Some(Instant::now());
            if let Some(frame) = frame {
                return Ok(frame);
            }
        }
    }

    /// Attempt `id` starts; true if it was cancelled before it did (it is answered
    /// `Cancelled` without running).
    pub(super) fn start(&mut self, id: u64) -> bool {
        self.started = id;
        // Cancellations of attempts that have ended are stale.
        self.cancels = self.cancels.split_off(&id);
        self.cancels.remove(&id)
    }

    /// Notes a cancellation of the running attempt or of one not started yet.
    pub(super) fn remember_cancel(&mut self, id: u64) {
        if id < self.started {
            return;
        }
        self.cancels.insert(id);
        if self.cancels.len() > MAX_REMEMBERED_CANCELS {
            self.cancels.pop_first();
        }
    }

    /// Takes the requests already read, and reads what has arrived without waiting (the
    /// pipe at most once per [`CANCEL_READ_INTERVAL`], counting the main loop's reads: a
    /// short attempt costs no read of its own); true if `attempt_id` is to stop.
    pub(super) fn poll_cancel(&mut self, attempt_id: u64) -> bool {
        let now = Instant::now();
        let read = self
            .last_read
            .is_none_or(|last| now.duration_since(last) >= CANCEL_READ_INTERVAL);
        if read {
            self.last_read = Some(now);
        }
        while !self.closing {
            if !read && !self.requests.has_frame() {
                return self.cancels.contains(&attempt_id);
            }
            match self.requests.next::<Request>(Some(Duration::ZERO)) {
                Ok(None) => return self.cancels.contains(&attempt_id),
                Ok(Some(Frame::Message(Request::Cancel { attempt_id: id }))) => {
                    self.remember_cancel(id);
                }
                Ok(Some(frame @ (Frame::Message(Request::Stop) | Frame::Eof))) => {
                    self.closing = true;
                    self.pending.push_back(frame);
                }
                Ok(Some(frame)) => self.pending.push_back(frame),
                Err(error) => {
                    tracing::error!("protocol error: {error}");
                    self.closing = true;
                }
            }
        }
        true
    }
}

/// The control of one attempt: its deadline, and a watch that, whenever the engine checks,
/// reads cancellations from the channel and sends the replies waiting in the buffer.
pub(super) fn watch(
    channel: &Arc<Mutex<ControlChannel>>,
    out: &SharedWriter,
    request: &RunRequest,
) -> Arc<AttemptControl> {
    let attempt_id = request.attempt_id;
    let (channel, out) = (channel.clone(), out.clone());
    let (timeout, left) = request.spec.clock();
    AttemptControl::watched(
        timeout,
        left,
        Box::new(move || {
            // The replies of the attempts before this one wait at most one check.
            if let Ok(mut out) = out.try_lock()
                && !out.buffer().is_empty()
            {
                let _ = out.flush();
            }
            // Checks from another thread (an HTTP watcher) skip a read already in progress.
            channel
                .try_lock()
                .is_ok_and(|mut channel| channel.poll_cancel(attempt_id))
        }),
    )
}

/// Where the guest's progress goes: a `Progress` frame to the parent, coalesced to at most
/// one per `PROGRESS_INTERVAL` however often the guest reports.
pub(super) fn progress_sender(
    out: &SharedWriter,
    attempt_id: u64,
    cell: &Arc<ProgressCell>,
) -> ProgressFn {
    let (out, cell) = (out.clone(), cell.clone());
    Arc::new(move |done, total| {
        if cell.report(Progress::new(done, total), true) {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write_frame(
                &mut *out,
                &Reply::Progress {
                    attempt_id,
                    done,
                    total,
                },
            );
        }
    })
}
