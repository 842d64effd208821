//! The parent–worker protocol: length-prefixed JSON frames over the child's stdin/stdout.
//!
//! A frame is a little-endian `u32` length followed by that many bytes of JSON. Frames over
//! [`MAX_FRAME`] are refused on both sides.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::{Limits, Sandbox};
use crate::failure::{CapturedOutput, TaskFailure};

/// Bumped whenever a message changes shape.
pub(crate) const PROTOCOL_VERSION: u32 = 1;
/// The largest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Run one attempt in a fresh instance.
    Run(Box<RunRequest>),
    /// Stop the attempt with this id, if it is still running.
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
    /// BLAKE3 of the component bytes: the worker refuses a file that changed.
    pub plugin_hash: String,
    pub task: String,
    pub display_name: String,
    /// The JSON input, already encoded.
    pub input: String,
    pub attempt: u32,
    pub timeout_ms: Option<u64>,
    pub limits: Limits,
    pub sandbox: Sandbox,
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// First frame: who is speaking.
    Hello { version: u32, pid: u32 },
    /// The end of an attempt.
    Done(Box<DoneReply>),
    /// A frame the worker could not decode; it keeps serving.
    BadFrame { message: String },
}

/// How an attempt ended, with what it produced.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DoneReply {
    pub attempt_id: u64,
    pub outcome: WireOutcome,
    pub fuel_consumed: Option<u64>,
    pub stdout: Option<CapturedOutput>,
    pub stderr: Option<CapturedOutput>,
}

/// [`crate::AttemptOutcome`] on the wire (the value travels as JSON text).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    Succeeded(String),
    Failed(TaskFailure),
    Cancelled,
}

/// Writes one frame.
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame of {} bytes is over the {MAX_FRAME} byte limit",
                body.len()
            ),
        ));
    }
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(&body)?;
    out.flush()
}

/// What reading a frame gave.
pub(crate) enum Frame<T> {
    Message(T),
    /// A complete frame that did not decode (the stream is still in sync).
    Undecodable(String),
    /// End of stream.
    Eof,
}

/// Reads one frame. An oversized length is an error: the stream cannot be trusted after it.
pub(crate) fn read_frame<T: for<'de> Deserialize<'de>>(
    input: &mut impl Read,
) -> io::Result<Frame<T>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Frame::Eof),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} is over the {MAX_FRAME} byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    Ok(match serde_json::from_slice(&body) {
        Ok(message) => Frame::Message(message),
        Err(e) => Frame::Undecodable(e.to_string()),
    })
}
