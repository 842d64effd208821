//! Why a task attempt did not produce a value: the typed failures of docs/queues.md §5.3.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text;

/// The kind of a failure. Decides whether the queue retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The guest returned `failed(msg)`, or a native task returned an ordinary error.
    Failed,
    /// The guest returned `permanent(msg)`: no retry can fix it.
    Permanent,
    /// The input was refused before or by the guest.
    InvalidInput,
    /// The attempt's deadline passed.
    Timeout,
    /// The guest trapped (unreachable, out of bounds, stack overflow, panic, exit).
    Trap,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The memory limiter refused linear-memory or table growth.
    MemoryLimit,
    /// The host refused the guest a resource it spends on the guest's behalf beyond its
    /// limit: a descriptor (file, directory, listing, HTTP connection) over
    /// [`Limits::max_open_files`](crate::Limits::max_open_files) or the process's pool.
    ResourceLimit,
    /// A process worker died mid-attempt.
    WorkerCrashed,
    /// A process worker could not be spawned, handshaken or initialised.
    WorkerStart,
    /// A native closure or future panicked.
    Panic,
    /// The component cannot be compiled, linked or instantiated, or lacks the export.
    PluginLoad,
    /// A value could not be encoded or decoded (output not JSON, frame too large, ...).
    Serialization,
}

impl FailureKind {
    /// Every kind, in declaration order (the order metrics list them in).
    pub const ALL: [FailureKind; 13] = [
        Self::Failed,
        Self::Permanent,
        Self::InvalidInput,
        Self::Timeout,
        Self::Trap,
        Self::OutOfFuel,
        Self::MemoryLimit,
        Self::ResourceLimit,
        Self::WorkerCrashed,
        Self::WorkerStart,
        Self::Panic,
        Self::PluginLoad,
        Self::Serialization,
    ];

    /// The position of this kind in [`ALL`](Self::ALL).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether a failure of this kind is retried (while retries remain).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Failed
                | Self::Timeout
                | Self::Trap
                | Self::WorkerCrashed
                | Self::WorkerStart
                | Self::Panic
        )
    }

    /// The snake_case name used in JSON results (`out_of_fuel`, `memory_limit`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Permanent => "permanent",
            Self::InvalidInput => "invalid_input",
            Self::Timeout => "timeout",
            Self::Trap => "trap",
            Self::OutOfFuel => "out_of_fuel",
            Self::MemoryLimit => "memory_limit",
            Self::ResourceLimit => "resource_limit",
            Self::WorkerCrashed => "worker_crashed",
            Self::WorkerStart => "worker_start",
            Self::Panic => "panic",
            Self::PluginLoad => "plugin_load",
            Self::Serialization => "serialization",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt: its kind, a one-line message and optional detail (e.g. a wasm backtrace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// What went wrong, in the terms the retry rules use.
    pub kind: FailureKind,
    /// One line for humans.
    pub message: String,
    /// More context: a wasm backtrace, the full error chain.
    pub detail: Option<String>,
}

impl TaskFailure {
    /// A failure without detail. A message over [`MAX_MESSAGE_BYTES`](crate::text::MAX_MESSAGE_BYTES)
    /// is cut there, with a marker that gives its full length.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: text::truncate_owned(message.into(), text::MAX_MESSAGE_BYTES),
            detail: None,
        }
    }

    /// Adds detail (cut at [`MAX_DETAIL_BYTES`](crate::text::MAX_DETAIL_BYTES)).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(text::truncate_owned(detail.into(), text::MAX_DETAIL_BYTES));
        self
    }

    /// The failure of a native closure or future that panicked: kind
    /// [`Panic`](FailureKind::Panic), the payload as the message.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".into());
        Self::new(FailureKind::Panic, message)
    }

    /// The standard per-attempt timeout failure: `task '<name>' exceeded <t>s timeout`.
    pub fn timeout(task_name: &str, timeout: std::time::Duration) -> Self {
        Self::new(
            FailureKind::Timeout,
            format!(
                "task '{task_name}' exceeded {}s timeout",
                timeout.as_secs_f64()
            ),
        )
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for TaskFailure {}

/// A bounded capture of one guest output stream: the last bytes written, plus the total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedOutput {
    /// The tail of the stream (at most the capture limit), lossily decoded as UTF-8.
    pub text: String,
    /// True when earlier bytes were dropped to respect the limit.
    pub truncated: bool,
    /// Every byte the guest wrote.
    pub total_bytes: u64,
}
