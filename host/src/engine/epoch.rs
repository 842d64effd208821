//! The epoch ticker: one thread per host that advances the epoch every tick, so that
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
    /// Starts the ticker thread of `engines` (a tiered host has two). It holds only weak
    /// engine references and exits once the engines are dropped.
    pub(crate) fn start(engines: &[&Engine], interval: Duration) -> std::io::Result<Self> {
        let interval_nanos = Arc::new(AtomicU64::new(nanos(interval)));
        let weak: Vec<_> = engines.iter().map(|engine| engine.weak()).collect();
        let shared = interval_nanos.clone();
        std::thread::Builder::new()
            .name("osiiso-epoch".into())
            .spawn(move || {
                loop {
                    let interval = Duration::from_nanos(shared.load(Ordering::Relaxed));
                    std::thread::sleep(interval);
                    let mut alive = false;
                    for engine in weak.iter().filter_map(|weak| weak.upgrade()) {
                        engine.increment_epoch();
                        alive = true;
                    }
                    if !alive {
                        break;
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
