//! The parent–worker protocol: length-prefixed JSON frames over the child's stdin/stdout.
//!
//! A frame is a little-endian `u32` length followed by that many bytes of JSON. Frames over
//! [`MAX_FRAME`] are refused on both sides.
//!
//! A worker holds a few attempts at once (`Process::attempts_per_worker`): the parent sends
//! the next `Run` while the worker is still busy with the previous one, the worker reads
//! every frame that has arrived with one `read`, runs the attempts in the order they came and
//! answers each with one `Done`, in that order. Its replies are buffered and written once per
//! batch: before it waits for more requests, and at each epoch check of a running attempt
//! (so a reply waits at most one tick behind a slow attempt).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::init::WorkerInit;
use crate::attempt::AttemptReport;
use crate::backend::remote::{AttemptSpec, RemoteReport};

/// Bumped whenever a message changes shape.
pub(crate) const PROTOCOL_VERSION: u32 = 4;
/// The largest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 64 << 20;
/// A reader's buffer to begin with.
const INITIAL_BUFFER: usize = 16 * 1024;
/// A reader's buffer past this size shrinks back once it is empty.
const KEEP_BUFFER: usize = 1 << 20;

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Run the initializer; sent once, right after the handshake.
    Init(WorkerInit),
    /// Run one attempt in a fresh instance.
    Run(Box<RunRequest>),
    /// Stop the attempt with this id if it is running, or answer it `Cancelled` without
    /// running it if it is still waiting behind another.
    Cancel { attempt_id: u64 },
    /// Finish and exit.
    Stop,
}

/// One attempt.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunRequest {
    pub attempt_id: u64,
    /// Where the component lives; loaded through the shared compile cache.
    pub plugin_path: PathBuf,
    #[serde(flatten)]
    pub spec: AttemptSpec,
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// First frame: who is speaking.
    Hello { version: u32, pid: u32 },
    /// The initializer finished.
    Ready,
    /// The initializer failed; the worker exits after sending this.
    InitFailed { message: String },
    /// A `tracing` event of the worker, for the parent's subscriber.
    Log(LogRecord),
    /// The guest of attempt `attempt_id` reported its progress (coalesced by the worker: at
    /// most one frame per `PROGRESS_INTERVAL`, plus the last value before `Done`).
    Progress {
        attempt_id: u64,
        done: u64,
        total: u64,
    },
    /// The end of an attempt.
    Done(Box<DoneReply>),
    /// A frame the worker could not decode; it keeps serving.
    BadFrame { message: String },
}

/// One forwarded `tracing` event.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LogRecord {
    /// 1 = error … 5 = trace.
    pub level: u8,
    pub target: String,
    pub message: String,
}

/// How an attempt ended, with what it produced.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DoneReply {
    pub attempt_id: u64,
    /// Not flattened: the value inside travels as raw JSON, which serde cannot buffer.
    pub report: RemoteReport,
}

impl DoneReply {
    /// The reply that carries `report`.
    pub(crate) fn new(attempt_id: u64, report: AttemptReport) -> Self {
        Self {
            attempt_id,
            report: RemoteReport::new(report),
        }
    }

    /// The report this reply carries.
    pub(crate) fn into_report(self) -> AttemptReport {
        self.report.into_report("the worker")
    }
}

/// A message that does not fit in a frame.
#[derive(Debug)]
pub(crate) struct FrameTooLarge {
    /// Its encoded size.
    pub len: usize,
}

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, over the {} frame limit of the process protocol",
            self.len,
            crate::units::format_size(MAX_FRAME)
        )
    }
}

/// Encodes one frame (length prefix and JSON body), refusing one over [`MAX_FRAME`].
pub(crate) fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameTooLarge> {
    let mut frame = Vec::new();
    encode_frame_into(&mut frame, message)?;
    Ok(frame)
}

/// [`encode_frame`] into `frame`, which is cleared first (a sender reuses one buffer).
pub(crate) fn encode_frame_into<T: Serialize>(
    frame: &mut Vec<u8>,
    message: &T,
) -> Result<(), FrameTooLarge> {
    frame.clear();
    frame.extend_from_slice(&[0; 4]);
    // Serializing plain data into a Vec cannot fail.
    serde_json::to_writer(&mut *frame, message).expect("protocol messages serialize");
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        frame.clear();
        return Err(FrameTooLarge { len });
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Encodes and writes one frame, and flushes it.
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    write_frame_buffered(out, message)?;
    out.flush()
}

/// Encodes and writes one frame into `out` without flushing it: a batch of replies leaves
/// with one `write`.
pub(crate) fn write_frame_buffered<T: Serialize>(
    out: &mut impl Write,
    message: &T,
) -> io::Result<()> {
    let frame = encode_frame(message)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("frame of {e}")))?;
    out.write_all(&frame)
}

/// What reading a frame gave.
pub(crate) enum Frame<T> {
    Message(T),
    /// A complete frame that did not decode (the stream is still in sync).
    Undecodable(String),
    /// End of stream.
    Eof,
}

/// Reads frames from a pipe without a thread of its own: the descriptor is non-blocking and
/// [`next`](Self::next) waits with `poll(2)`, so the caller can bound each wait and a peer
/// that stops mid-frame never blocks it.
pub(crate) struct FrameReader {
    file: File,
    /// Bytes read; `start..end` are not consumed yet.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read found the pipe empty (and none has been tried since).
    drained: bool,
}

impl FrameReader {
    /// Takes over `fd` and makes it non-blocking.
    pub(crate) fn new(fd: impl Into<OwnedFd>) -> io::Result<Self> {
        let fd: OwnedFd = fd.into();
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            file: File::from(fd),
            buffer: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            drained: false,
        })
    }

    /// The next frame, waiting up to `wait` for it (`None`: without limit). `Ok(None)` means
    /// the wait ran out. An oversized length or a stream that ends mid-frame is an error: the
    /// stream cannot be trusted after it.
    pub(crate) fn next<T: for<'de> Deserialize<'de>>(
        &mut self,
        wait: Option<Duration>,
    ) -> io::Result<Option<Frame<T>>> {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            // Read first: when a batch has arrived this is the only system call. A wait
            // right after a read that found the pipe empty polls first instead (the worker
            // checks for a request before flushing its replies, then waits for one).
            if !self.drained || wait == Some(Duration::ZERO) {
                match self.fill()? {
                    Some(0) => return self.end_of_stream(),
                    Some(_) => continue,
                    None if wait == Some(Duration::ZERO) => return Ok(None),
                    None => {}
                }
            }
            self.drained = false;
            let timeout_ms = match deadline {
                None => -1,
                // Rounded up, so a short wait is not a busy loop.
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .min(i32::MAX as u128) as i32,
            };
            if !self.wait_readable(timeout_ms)? {
                return Ok(None);
            }
        }
    }

    /// Whether a whole frame is buffered: [`next`](Self::next) would return it without a
    /// system call.
    pub(crate) fn has_frame(&self) -> bool {
        let unread = &self.buffer[self.start..self.end];
        unread.first_chunk::<4>().is_some_and(|l| {
            let len = u32::from_le_bytes(*l) as usize;
            // An oversized length is an error `next` reports at once.
            len > MAX_FRAME || unread.len() >= 4 + len
        })
    }

    /// The stream ended: cleanly between frames, or in the middle of one.
    fn end_of_stream<T>(&self) -> io::Result<Option<Frame<T>>> {
        if self.start == self.end {
            Ok(Some(Frame::Eof))
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended in the middle of a frame",
            ))
        }
    }

    /// Decodes the first buffered frame, if it is complete.
    fn take_frame<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Option<Frame<T>>> {
        let unread = &self.buffer[self.start..self.end];
        let Some(len) = unread
            .first_chunk::<4>()
            .map(|l| u32::from_le_bytes(*l) as usize)
        else {
            return Ok(None);
        };
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame length {len} is over the {MAX_FRAME} byte limit"),
            ));
        }
        let Some(body) = unread.get(4..4 + len) else {
            self.make_room(4 + len);
            return Ok(None);
        };
        let frame = match serde_json::from_slice(body) {
            Ok(message) => Frame::Message(message),
            Err(e) => Frame::Undecodable(e.to_string()),
        };
        self.start += 4 + len;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            // A large frame (a big value) made the buffer grow: give that back rather than
            // hold it for the life of the worker.
            if self.buffer.len() > KEEP_BUFFER {
                self.buffer = vec![0; INITIAL_BUFFER];
            }
        }
        Ok(Some(frame))
    }

    /// Makes the buffer able to hold `frame` bytes from `start`.
    fn make_room(&mut self, frame: usize) {
        if self.start + frame > self.buffer.len() {
            self.buffer.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if frame > self.buffer.len() {
                self.buffer.resize(frame, 0);
            }
        }
    }

    /// Waits until the pipe is readable or at its end; false when `timeout_ms` ran out.
    fn wait_readable(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut fds = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            match unsafe { libc::poll(&mut fds, 1, timeout_ms) } {
                0 => return Ok(false),
                n if n > 0 => return Ok(true),
                _ => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Reads what is available: `Some(0)` at the end of the stream, `None` when there was
    /// nothing after all.
    fn fill(&mut self) -> io::Result<Option<usize>> {
        if self.end == self.buffer.len() {
            let unread = self.end - self.start;
            self.make_room(unread + 16 * 1024);
        }
        loop {
            match self.file.read(&mut self.buffer[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    self.drained = false;
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::fd::FromRawFd;

    /// A pipe whose read end is a [`FrameReader`] and whose write end gets `bytes`, then
    /// closes.
    fn reader_over(bytes: &[u8]) -> FrameReader {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fresh descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors are fresh and owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let mut write = File::from(write);
            for chunk in bytes.chunks(7) {
                if write.write_all(chunk).is_err() {
                    break;
                }
            }
        });
        FrameReader::new(read).unwrap()
    }

    /// Reads until the end, an error, or a bounded number of frames: never panics, never
    /// waits past its bound.
    fn drain(reader: &mut FrameReader) -> Result<usize, String> {
        let mut frames = 0;
        for _ in 0..10_000 {
            match reader.next::<Request>(Some(Duration::from_secs(5))) {
                Ok(Some(Frame::Eof)) => return Ok(frames),
                Ok(Some(_)) => frames += 1,
                Ok(None) => return Err("a closed pipe must not look like a wait".into()),
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(frames)
    }

    /// A wait that polls before reading (the last read found the pipe empty) still gets
    /// what arrives later, and the end of the stream.
    #[test]
    fn a_wait_after_an_empty_read_gets_later_frames_and_the_end() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fresh descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors are fresh and owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut reader = FrameReader::new(read).unwrap();
        let mut write = File::from(write);
        assert!(
            reader
                .next::<Request>(Some(Duration::ZERO))
                .unwrap()
                .is_none()
        );
        assert!(
            reader
                .next::<Request>(Some(Duration::from_millis(1)))
                .unwrap()
                .is_none()
        );
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            write
                .write_all(&encode_frame(&Request::Stop).unwrap())
                .unwrap();
            write
        });
        assert!(matches!(
            reader.next::<Request>(None).unwrap(),
            Some(Frame::Message(Request::Stop))
        ));
        assert!(
            reader
                .next::<Request>(Some(Duration::ZERO))
                .unwrap()
                .is_none()
        );
        drop(writer.join().unwrap());
        assert!(matches!(
            reader.next::<Request>(None).unwrap(),
            Some(Frame::Eof)
        ));
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut bytes = encode_frame(&Request::Cancel { attempt_id: 7 }).unwrap();
        bytes.extend(encode_frame(&Request::Stop).unwrap());
        let mut reader = reader_over(&bytes);
        assert!(matches!(
            reader.next::<Request>(None).unwrap(),
            Some(Frame::Message(Request::Cancel { attempt_id: 7 }))
        ));
        assert!(matches!(
            reader.next::<Request>(None).unwrap(),
            Some(Frame::Message(Request::Stop))
        ));
        assert!(matches!(
            reader.next::<Request>(None).unwrap(),
            Some(Frame::Eof)
        ));

        let huge = "x".repeat(MAX_FRAME + 1);
        let error = encode_frame(&Reply::BadFrame { message: huge }).unwrap_err();
        assert!(error.to_string().contains("frame limit"), "{error}");

        let mut reader = reader_over(&(u32::MAX).to_le_bytes());
        let error = reader
            .next::<Request>(None)
            .err()
            .expect("oversized length");
        assert!(error.to_string().contains("over the"), "{error}");
    }

    #[test]
    fn a_large_frame_does_not_leave_a_large_buffer_behind() {
        let big = Reply::BadFrame {
            message: "x".repeat(3 << 20),
        };
        let mut bytes = encode_frame(&big).unwrap();
        bytes.extend(encode_frame(&Request::Stop).unwrap());
        let mut reader = reader_over(&bytes);
        assert!(matches!(
            reader.next::<Reply>(None).unwrap(),
            Some(Frame::Message(Reply::BadFrame { .. }))
        ));
        assert!(matches!(
            reader.next::<Request>(None).unwrap(),
            Some(Frame::Message(Request::Stop))
        ));
        assert!(
            reader.buffer.len() <= KEEP_BUFFER,
            "{}",
            reader.buffer.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes: frames, undecodable frames, a clean end or an error; no panic,
        /// no hang.
        #[test]
        fn arbitrary_bytes_never_panic_or_hang(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = drain(&mut reader_over(&bytes));
        }

        /// Valid frames with garbage bodies keep the stream in sync: each one is reported
        /// as undecodable and the next is read.
        #[test]
        fn garbage_bodies_keep_the_stream_in_sync(bodies in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..16)
        ) {
            let mut bytes = Vec::new();
            for body in &bodies {
                bytes.extend((body.len() as u32).to_le_bytes());
                bytes.extend(body);
            }
            let frames = drain(&mut reader_over(&bytes));
            prop_assert_eq!(frames, Ok(bodies.len()));
        }
    }
}
