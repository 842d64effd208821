//! Bounded capture of guest stdout/stderr: keeps the last bytes written and counts them all.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::failure::CapturedOutput;

/// An output stream that never blocks or fails the guest: it keeps a tail of `capacity` bytes.
#[derive(Clone)]
pub(crate) struct TailPipe {
    inner: Arc<Mutex<Tail>>,
}

struct Tail {
    bytes: VecDeque<u8>,
    capacity: usize,
    total: u64,
}

impl TailPipe {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Tail {
                bytes: VecDeque::new(),
                capacity,
                total: 0,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut tail = self.inner.lock().unwrap();
        tail.total += data.len() as u64;
        let keep = data.len().min(tail.capacity);
        let data = &data[data.len() - keep..];
        let overflow = (tail.bytes.len() + data.len()).saturating_sub(tail.capacity);
        tail.bytes.drain(..overflow);
        tail.bytes.extend(data);
    }

    /// Forgets what was captured, for the next attempt of a warm instance.
    pub(crate) fn reset(&self) {
        let mut tail = self.inner.lock().unwrap();
        tail.bytes.clear();
        tail.total = 0;
    }

    /// The captured tail, or `None` if nothing was written.
    pub(crate) fn captured(&self) -> Option<CapturedOutput> {
        let tail = self.inner.lock().unwrap();
        if tail.total == 0 {
            return None;
        }
        let (a, b) = tail.bytes.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        Some(CapturedOutput {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            truncated: tail.total > tail.bytes.len() as u64,
            total_bytes: tail.total,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TailPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for TailPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl AsyncWrite for TailPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
