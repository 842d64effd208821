//! Per-attempt resource limits and the store limiter that enforces the memory ones.

use serde::{Deserialize, Serialize};

/// Resource limits applied to every attempt of a plugin's tasks.
///
/// ```
/// use osiiso_host::Limits;
/// let limits = Limits::new().fuel(50_000_000).max_memory(64 << 20);
/// assert_eq!(limits.fuel, Some(50_000_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel budget per attempt (roughly one unit per wasm instruction); `None` = unmetered.
    pub fuel: Option<u64>,
    /// Maximum bytes of linear memory per memory (default 1 GiB).
    pub max_memory: usize,
    /// Maximum elements per table.
    pub max_table_elements: usize,
    /// Bytes kept from the end of each of stdout and stderr (default 64 KiB).
    pub capture_bytes: usize,
    /// Largest JSON input accepted, in bytes (default 16 MiB); larger is `invalid_input`.
    pub max_input_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: None,
            max_memory: 1 << 30,
            max_table_elements: 100_000,
            capture_bytes: 64 << 10,
            max_input_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// The defaults: unmetered fuel, 1 GiB of memory, 64 KiB output capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the fuel budget per attempt.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Sets the linear-memory cap in bytes.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Sets how many bytes of each output stream are kept.
    pub fn capture_bytes(mut self, bytes: usize) -> Self {
        self.capture_bytes = bytes;
        self
    }

    /// Sets the largest accepted input.
    pub fn max_input_bytes(mut self, bytes: usize) -> Self {
        self.max_input_bytes = bytes;
        self
    }
}

/// Enforces [`Limits`] on one store and remembers whether it refused growth, so that the
/// resulting trap is reported as a memory-limit error rather than a generic trap.
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    max_table_elements: usize,
    pub(crate) refused: bool,
    /// The operating system could not provide memory the limiter allowed (e.g. `RLIMIT_AS`).
    pub(crate) os_refused: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            max_memory: limits.max_memory,
            max_table_elements: limits.max_table_elements,
            refused: false,
            os_refused: false,
        }
    }

    pub(crate) fn max_memory(&self) -> usize {
        self.max_memory
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        tracing::debug!(%error, "linear memory growth failed");
        self.os_refused = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_table_elements;
        self.refused |= !allowed;
        Ok(allowed)
    }
}
