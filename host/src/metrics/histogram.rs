//! A histogram of durations kept in atomics: an observation is two relaxed additions (its
//! bucket and the sum), with no lock, so recording stays cheap on the hot path of a queue.
//! prometheus-client's own histogram takes a lock per observation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};

/// Upper bounds of the buckets, in seconds: from a trivial attempt to a long one.
pub(crate) const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0,
];

/// Durations, bucketed by [`DURATION_BUCKETS`] (plus one bucket past the last bound).
#[derive(Debug, Default)]
pub(crate) struct DurationHistogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    /// The sum of every observation, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// Records one duration.
    pub(crate) fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS.partition_point(|bound| *bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the histogram through prometheus-client's encoder.
    pub(crate) fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        let mut buckets = [(0.0, 0); DURATION_BUCKETS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let bound = DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            *slot = (bound, self.buckets[i].load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let histogram = DurationHistogram::default();
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_secs(3600));
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.buckets[0].load(Ordering::Relaxed), 1);
        // A bound is inclusive (`le`).
        assert_eq!(histogram.buckets[1].load(Ordering::Relaxed), 1);
        assert_eq!(
            histogram.buckets[DURATION_BUCKETS.len()].load(Ordering::Relaxed),
            1
        );
    }
}
