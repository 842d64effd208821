//! The epoch ticker: one thread per engine that advances the epoch every tick, so that
//! deadlines and cancellations are noticed by running guests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::Engine;

/// Shared, adjustable tick interval. Queues that share an engine tick at the smallest poll.
#[derive(Debug, Clone)]
pub(crate) struct EpochTicker {
    interval_nanos: Arc<AtomicU64>,
}

impl EpochTicker {
    /// Starts the ticker thread. It holds only a weak engine reference and exits once the
    /// engine is dropped.
    pub(crate) fn start(engine: &Engine, interval: Duration) -> std::io::Result<Self> {
        let interval_nanos = Arc::new(AtomicU64::new(nanos(interval)));
        let weak = engine.weak();
        let shared = interval_nanos.clone();
        std::thread::Builder::new()
            .name("osiiso-epoch".into())
            .spawn(move || {
                loop {
                    let interval = Duration::from_nanos(shared.load(Ordering::Relaxed));
                    std::thread::sleep(interval);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self { interval_nanos })
    }

    /// Lowers the tick interval to `interval` if that is shorter than the current one.
    pub(crate) fn request(&self, interval: Duration) {
        self.interval_nanos
            .fetch_min(nanos(interval), Ordering::Relaxed);
    }

    /// The current tick interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos.load(Ordering::Relaxed))
    }
}

fn nanos(interval: Duration) -> u64 {
    u64::try_from(interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1_000_000)
}
