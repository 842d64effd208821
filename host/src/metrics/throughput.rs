//! Throughput over the last minutes: samples of a finished counter, at most one a second, kept
//! for [`WINDOW`]. Sampled by whoever looks (a scrape, a status page, the server's clock), so
//! nothing runs on its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How far back the history goes.
pub(crate) const WINDOW: Duration = Duration::from_secs(600);
/// Samples closer than this to the last one are not kept.
const SPACING: Duration = Duration::from_millis(900);
/// The span of the throughput gauge.
const RATE_SPAN: Duration = Duration::from_secs(60);

/// Samples of a counter: `(when, value)`, oldest first, at most one per [`SPACING`].
#[derive(Debug)]
pub(crate) struct Throughput {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Throughput {
    /// A history that starts at `value` now.
    pub(crate) fn new(value: u64) -> Self {
        Self {
            samples: Mutex::new(VecDeque::from([(Instant::now(), value)])),
        }
    }

    /// Records `value` now, unless the last sample is too recent; drops what is older than
    /// the window (keeping one sample at or before its start).
    pub(crate) fn sample(&self, value: u64) {
        let now = Instant::now();
        let mut samples = self.samples.lock();
        if samples
            .back()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < SPACING)
        {
            return;
        }
        samples.push_back((now, value));
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= WINDOW)
        {
            samples.pop_front();
        }
    }

    /// Finished per second over the last minute (or since the first sample).
    pub(crate) fn rate(&self, value: u64) -> f64 {
        let now = Instant::now();
        let samples = self.samples.lock();
        let from = samples
            .iter()
            .find(|(at, _)| now.saturating_duration_since(*at) <= RATE_SPAN)
            .or(samples.back());
        match from {
            Some((at, then)) => {
                let secs = now.saturating_duration_since(*at).as_secs_f64();
                if secs < 0.5 {
                    0.0
                } else {
                    value.saturating_sub(*then) as f64 / secs
                }
            }
            None => 0.0,
        }
    }

    /// Finished per second in `buckets` equal slices of the window ending now, oldest first
    /// (a slice the history does not reach is 0).
    pub(crate) fn series(&self, buckets: usize, value: u64) -> Vec<f64> {
        let buckets = buckets.max(1);
        let now = Instant::now();
        let mut points: Vec<(f64, u64)> = {
            let samples = self.samples.lock();
            samples
                .iter()
                .map(|(at, v)| (-now.saturating_duration_since(*at).as_secs_f64(), *v))
                .collect()
        };
        points.push((0.0, value));
        let window = WINDOW.as_secs_f64();
        let width = window / buckets as f64;
        let mut series = vec![0.0; buckets];
        // Spread each interval's count over the slices it covers, in proportion.
        for pair in points.windows(2) {
            let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
            let span = t1 - t0;
            if span <= 0.0 {
                // Two samples at one instant: the count lands in the slice of that instant.
                let i = (((t1 + window) / width) as usize).min(buckets - 1);
                series[i] += v1.saturating_sub(v0) as f64 / width;
                continue;
            }
            let per_second = v1.saturating_sub(v0) as f64 / span;
            for (i, slot) in series.iter_mut().enumerate() {
                let start = -window + i as f64 * width;
                let overlap = (t1.min(start + width) - t0.max(start)).max(0.0);
                *slot += per_second * overlap / width;
            }
        }
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_spreads_what_finished_over_the_window() {
        let throughput = Throughput::new(0);
        let series = throughput.series(10, 0);
        assert_eq!(series, vec![0.0; 10]);
        // Everything since the only sample lands in the last slices, nothing is lost.
        let series = throughput.series(10, 600);
        let total: f64 = series.iter().sum::<f64>() * 60.0;
        assert!((total - 600.0).abs() < 1e-6, "{series:?}");
        assert!(series[..9].iter().all(|v| *v == 0.0), "{series:?}");
    }
}
