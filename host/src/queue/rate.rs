//! The GCRA rate gate shared by a queue's workers (docs/queues.md §4.3).

use std::time::{Duration, Instant};

/// Generic cell rate algorithm: `interval = 1/rate`, `tau = (burst − 1) × interval`.
#[derive(Debug)]
pub(crate) struct RateGate {
    interval: Duration,
    tau: Duration,
    /// Theoretical arrival time; `None` means "in the past".
    tat: Option<Instant>,
}

impl RateGate {
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        let interval = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX);
        Self {
            interval,
            tau: interval.saturating_mul(burst.saturating_sub(1)),
            tat: None,
        }
    }

    /// Reserves one attempt and returns when it may start. The reservation is consumed even
    /// if the caller never starts.
    pub(crate) fn reserve(&mut self, now: Instant) -> Instant {
        let base = self.tat.map_or(now, |tat| tat.max(now));
        self.tat = Some(base.checked_add(self.interval).unwrap_or(base));
        base.checked_sub(self.tau).unwrap_or(now).max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_passes_then_spacing_applies() {
        let mut gate = RateGate::new(10.0, 3);
        let now = Instant::now();
        let waits: Vec<Duration> = (0..5).map(|_| gate.reserve(now) - now).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits[..3], [ms(0), ms(0), ms(0)]);
        assert_eq!(waits[3], ms(100));
        assert_eq!(waits[4], ms(200));
    }
}
