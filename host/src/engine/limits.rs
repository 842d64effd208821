//! Per-attempt resource limits and the store limiter that enforces the memory ones.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::budget::{MemoryBudget, Refusal, Reservation};
use crate::attempt::AttemptControl;
use crate::failure::{FailureKind, TaskFailure};

/// Resource limits applied to every attempt of a plugin's tasks
/// ([`Plugin::with_limits`](crate::Plugin::with_limits),
/// [`Host::load_with_limits`](crate::Host::load_with_limits)). An attempt that goes over one
/// fails with the [`FailureKind`] that names it ([`OutOfFuel`](FailureKind::OutOfFuel),
/// [`MemoryLimit`](FailureKind::MemoryLimit), [`InvalidInput`](FailureKind::InvalidInput)
/// for an input too large, ...), which is not retried; the other tasks go on.
///
/// ```
/// use osiiso_host::{FailureKind, Host, Limits, ThreadQueue};
/// use osiiso_host::queue::TaskOptions;
/// use serde_json::json;
/// # let score_wasm = osiiso_test_artifacts::SCORE;
/// let limits = Limits::new().fuel(5_000_000).max_memory(64 << 20);
/// assert_eq!(limits.fuel, Some(5_000_000));
/// let score = Host::new()?.load(score_wasm)?.with_limits(limits).task("score")?;
///
/// let queue = ThreadQueue::builder().build()?;
/// let small = queue.submit(score.with_input(json!(1_000)), TaskOptions::new())?;
/// let huge = queue.submit(score.with_input(json!(10_000_000_000u64)), TaskOptions::new().retries(3))?;
/// queue.run()?;
/// assert!(small.wait().ok());
/// let stopped = huge.wait();
/// assert_eq!(stopped.error.as_ref().map(|e| e.kind), Some(FailureKind::OutOfFuel));
/// assert_eq!(stopped.attempts, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
    /// Attempts one instance may serve before it is replaced (default 1: a fresh instance
    /// for every attempt). Above 1, instances are kept warm between attempts of the same
    /// plugin, limits and sandbox: faster, but a task can see what an earlier task of the
    /// same plugin left in memory. See [`WarmPool`](super::WarmPool).
    #[serde(default = "one")]
    pub reuse: u32,
    /// Descriptors the host may hold for one instance at a time (default 256): files and
    /// directories the guest opened, directory listings it is reading (two each), outgoing
    /// HTTP connections in flight. Beyond it the guest's call fails (`quota`, or
    /// `connection-limit-reached` for HTTP), and an attempt that then fails is reported as
    /// [`ResourceLimit`](FailureKind::ResourceLimit).
    #[serde(default = "default_max_open_files")]
    pub max_open_files: u32,
}

fn one() -> u32 {
    1
}

/// The default of [`Limits::max_open_files`].
pub(crate) const DEFAULT_MAX_OPEN_FILES: u32 = 256;

fn default_max_open_files() -> u32 {
    DEFAULT_MAX_OPEN_FILES
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: None,
            max_memory: 1 << 30,
            max_table_elements: 100_000,
            capture_bytes: 64 << 10,
            max_input_bytes: 16 << 20,
            reuse: 1,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }
}

impl Limits {
    /// The defaults: unmetered fuel, 1 GiB of memory, 64 KiB output capture, 256 open
    /// files.
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

    /// Sets how many descriptors the host may hold for one instance (see
    /// [`max_open_files`](Self::max_open_files)).
    ///
    /// ```
    /// use osiiso_host::Limits;
    /// assert_eq!(Limits::new().max_open_files, 256);
    /// assert_eq!(Limits::new().max_open_files(16).max_open_files, 16);
    /// ```
    pub fn max_open_files(mut self, descriptors: u32) -> Self {
        self.max_open_files = descriptors;
        self
    }

    /// Lets one instance serve up to `attempts` attempts (see [`reuse`](Self::reuse)).
    pub fn reuse(mut self, attempts: u32) -> Self {
        self.reuse = attempts.max(1);
        self
    }

    /// Refuses an encoded input of `len` bytes over [`max_input_bytes`](Self::max_input_bytes)
    /// with [`InvalidInput`](FailureKind::InvalidInput) (never retried), before any instance
    /// or worker is touched.
    pub fn check_input(&self, task_name: &str, len: usize) -> Result<(), TaskFailure> {
        if len <= self.max_input_bytes {
            return Ok(());
        }
        Err(TaskFailure::new(
            FailureKind::InvalidInput,
            format!(
                "input of task '{task_name}' is {len} bytes, over the {} byte limit",
                self.max_input_bytes
            ),
        ))
    }
}

/// Enforces [`Limits`] on one store, and the host's memory budget across stores. It
/// remembers why it refused growth, so that the resulting trap is reported as a memory-limit
/// error rather than a generic trap.
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    max_table_elements: usize,
    /// This store's share of the host-wide budget.
    reservation: Reservation,
    /// Asked whether the attempt must stop while growth waits for room.
    control: Arc<AttemptControl>,
    /// The last growth granted, given back if the allocation then fails.
    last_grant: usize,
    /// Growth beyond the attempt's own cap was refused.
    pub(crate) refused: bool,
    /// Growth was refused because the host's total budget is in use.
    pub(crate) budget_refused: bool,
    /// The operating system could not provide memory the limiter allowed (e.g. `RLIMIT_AS`).
    pub(crate) os_refused: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(
        limits: &Limits,
        budget: Arc<MemoryBudget>,
        control: Arc<AttemptControl>,
    ) -> Self {
        Self {
            max_memory: limits.max_memory,
            max_table_elements: limits.max_table_elements,
            reservation: Reservation::new(budget),
            control,
            last_grant: 0,
            refused: false,
            budget_refused: false,
            os_refused: false,
        }
    }

    pub(crate) fn max_memory(&self) -> usize {
        self.max_memory
    }

    /// Starts an attempt under `control` with clean flags (a warm store keeps its memory and
    /// its share of the budget).
    pub(crate) fn begin_attempt(&mut self, control: Arc<AttemptControl>) {
        self.control = control;
        self.last_grant = 0;
        self.refused = false;
        self.budget_refused = false;
        self.os_refused = false;
    }

    /// Whether any growth was refused during the attempt.
    pub(crate) fn touched(&self) -> bool {
        self.refused || self.budget_refused || self.os_refused
    }

    /// The attempt's own cap: false (and remembered) when `desired` is over it.
    fn within_cap(&mut self, desired: usize) -> bool {
        let allowed = desired <= self.max_memory;
        self.refused |= !allowed;
        allowed
    }

    /// The table cap: false (and remembered) when `desired` elements are over it.
    fn table_within_cap(&mut self, desired: usize) -> bool {
        let allowed = desired <= self.max_table_elements;
        self.refused |= !allowed;
        allowed
    }

    fn granted(&mut self, outcome: Result<(), Refusal>, delta: usize) -> bool {
        match outcome {
            Ok(()) => {
                self.last_grant = delta;
                true
            }
            Err(Refusal::Exhausted) => {
                self.budget_refused = true;
                false
            }
        }
    }

    fn grow_failed(&mut self, error: &wasmtime::Error) {
        tracing::debug!(%error, "linear memory growth failed");
        self.reservation
            .give_back(std::mem::take(&mut self.last_grant));
        self.os_refused = true;
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.within_cap(desired) {
            return Ok(false);
        }
        let delta = desired.saturating_sub(current);
        let control = self.control.clone();
        match self
            .reservation
            .grow_blocking(delta, || control.stop_reason())
        {
            Ok(outcome) => Ok(self.granted(outcome, delta)),
            // The attempt was cancelled or timed out while waiting for room.
            Err(interrupt) => Err(wasmtime::Error::new(interrupt)),
        }
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed(&error);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.table_within_cap(desired))
    }
    // Every engine, pooled or not, holds an instance to what a pool slot holds: without a
    // pool, 100 memories of a 4 GiB reservation each would take the address space.
    fn instances(&self) -> usize {
        super::config::MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        super::config::MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        super::config::MAX_TABLES
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime::ResourceLimiterAsync for MemoryLimiter {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.within_cap(desired) {
            return Ok(false);
        }
        let delta = desired.saturating_sub(current);
        // A cancelled or timed-out attempt drops this future with the call.
        let outcome = self.reservation.grow(delta).await;
        Ok(self.granted(outcome, delta))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed(&error);
        Ok(())
    }

    async fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.table_within_cap(desired))
    }
    // Every engine, pooled or not, holds an instance to what a pool slot holds: without a
    // pool, 100 memories of a 4 GiB reservation each would take the address space.
    fn instances(&self) -> usize {
        super::config::MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        super::config::MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        super::config::MAX_TABLES
    }
}
