use std::fmt;

/// Why a task did not produce a value.
///
/// Any [`std::error::Error`] converts into [`TaskError::Failed`] with `?`, so ordinary fallible
/// code needs no mapping; use [`TaskError::permanent`] or [`TaskError::invalid_input`] when a
/// retry cannot help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// Worth retrying: counts against the caller's `retries`.
    Failed(String),
    /// No retry can fix it; never retried.
    Permanent(String),
    /// The input did not decode or validate; never retried.
    InvalidInput(String),
}

impl TaskError {
    /// A retryable failure.
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl fmt::Display) -> Self {
        Self::Permanent(message.to_string())
    }

    /// The input is unusable; never retried.
    pub fn invalid_input(message: impl fmt::Display) -> Self {
        Self::InvalidInput(message.to_string())
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Self::Failed(m) | Self::Permanent(m) | Self::InvalidInput(m) => m,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Failed(_) => "failed",
            Self::Permanent(_) => "permanent",
            Self::InvalidInput(_) => "invalid input",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(error: E) -> Self {
        Self::Failed(error.to_string())
    }
}
