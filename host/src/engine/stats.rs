//! What a host counts about its plugin loads, for the metrics: how many, where their code
//! came from, and the time spent. A few relaxed atomics per load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::CacheOutcome;

/// Plugin loads of one host so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LoadStats {
    /// Compiled now (a cache miss, a rebuilt entry, or no cache).
    pub(crate) compiled: u64,
    /// Loaded from the compile cache.
    pub(crate) cached: u64,
    /// Deserialized from a precompiled artifact.
    pub(crate) precompiled: u64,
    /// Time spent loading, in seconds.
    pub(crate) seconds: f64,
}

/// The counters behind [`LoadStats`].
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    compiled: AtomicU64,
    cached: AtomicU64,
    precompiled: AtomicU64,
    nanos: AtomicU64,
}

impl LoadCounters {
    /// One load ended with `outcome` after `took`.
    pub(crate) fn loaded(&self, outcome: CacheOutcome, took: Duration) {
        let counter = match outcome {
            CacheOutcome::Hit => &self.cached,
            CacheOutcome::Precompiled => &self.precompiled,
            CacheOutcome::Miss | CacheOutcome::Rebuilt | CacheOutcome::Disabled => &self.compiled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let nanos = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LoadStats {
        LoadStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            precompiled: self.precompiled.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}
