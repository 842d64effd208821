//! The metrics in the Prometheus text format: [`Metrics`] is a prometheus-client
//! [`Collector`], and this is what it writes.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{Metrics, Outcome};
use crate::engine::Host;

/// Counters and gauges through prometheus-client's encoder.
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Fmt {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64) -> Fmt {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

type Fmt = std::fmt::Result;

/// A family of counters over `(label, value)` pairs and their counts.
fn labelled_counters<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (&'a [(&'static str, &'static str)], u64)>,
) -> Fmt {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let shared = &self.shared;
        self.sample();
        let gauges = self.gauges();
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let e = &mut encoder;

        counter(
            e,
            "osiiso_tasks_submitted",
            "Tasks admitted to a queue.",
            load(&shared.submitted),
        )?;
        gauge(
            e,
            "osiiso_tasks_queued",
            "Tasks outstanding and not in their attempt loop (ready, or scheduled for later).",
            gauges.queued as f64,
        )?;
        let finished: Vec<([(&str, &str); 2], u64)> = (0..Outcome::COUNT)
            .map(|i| {
                let labels = match i {
                    0 | 1 => [("status", Outcome::label(i)), ("", "")],
                    _ => [("status", "failed"), ("kind", Outcome::label(i))],
                };
                (labels, load(&shared.finished[i]))
            })
            .collect();
        labelled_counters(
            e,
            "osiiso_tasks_finished",
            "Tasks finished, by status, and by failure kind for failed ones.",
            finished.iter().map(|(labels, value)| {
                let used = if labels[1].0.is_empty() { 1 } else { 2 };
                (&labels[..used], *value)
            }),
        )?;
        counter(
            e,
            "osiiso_task_retries",
            "Failed attempts that were retried.",
            load(&shared.retries),
        )?;
        gauge(
            e,
            "osiiso_throughput_per_second",
            "Tasks finished per second over the last minute (attempts, on a node).",
            shared.throughput.rate(self.finished_count()),
        )?;
        gauge(
            e,
            "osiiso_run_duration_seconds",
            "Duration of the current run, or of the last one once it ended.",
            self.run_duration(),
        )?;

        gauge(
            e,
            "osiiso_attempts_running",
            "Attempts running now.",
            gauges.running as f64,
        )?;
        let outcomes: Vec<[(&str, &str); 1]> = (0..Outcome::COUNT)
            .map(|i| [("outcome", Outcome::label(i))])
            .collect();
        labelled_counters(
            e,
            "osiiso_attempts_finished",
            "Attempts finished, by outcome: succeeded, cancelled, or the failure kind.",
            outcomes
                .iter()
                .zip(&shared.attempts)
                .map(|(labels, n)| (&labels[..], load(n))),
        )?;
        shared.attempt_duration.encode(e.encode_descriptor(
            "osiiso_attempt_duration_seconds",
            "Duration of finished attempts.",
            None,
            MetricType::Histogram,
        )?)?;
        counter(
            e,
            "osiiso_attempt_fuel_consumed",
            "Fuel consumed by finished attempts.",
            load(&shared.fuel),
        )?;
        gauge(
            e,
            "osiiso_slots",
            "Attempts that can run at once: a queue's live workers, a node's slots.",
            gauges.slots as f64,
        )?;
        gauge(
            e,
            "osiiso_draining",
            "1 while shutting down (no new work is taken), else 0.",
            f64::from(u8::from(gauges.draining)),
        )?;
        if let Some(connected) = gauges.broker_connected {
            gauge(
                e,
                "osiiso_broker_connected",
                "1 while a node's connection to its NATS server is up, else 0.",
                f64::from(u8::from(connected)),
            )?;
            counter(
                e,
                "osiiso_broker_reconnects",
                "Times a node's connection to its NATS server came back after a loss.",
                gauges.broker_reconnects,
            )?;
        }
        if let Some((found, seconds)) = gauges.plugin_fetches {
            let places = [
                [("source", "memory")],
                [("source", "disk")],
                [("source", "broker")],
            ];
            labelled_counters(
                e,
                "osiiso_plugin_fetches",
                "Plugins a node's attempts needed, by where the node found them: loaded in \
                 memory, its verified copy on disk, fetched from the NATS server.",
                places.iter().zip(found).map(|(l, n)| (&l[..], n)),
            )?;
            let mut family = e.encode_descriptor(
                "osiiso_plugin_fetch_seconds",
                "Time a node spent fetching plugins from the NATS server.",
                None,
                MetricType::Counter,
            )?;
            family.encode_counter::<NoLabelSet, _, u64>(&seconds, None)?;
        }

        let hosts: Vec<Host> = shared.hosts.lock().clone();
        if !hosts.is_empty() {
            let mut loads = [0u64; 3];
            for host in &hosts {
                let stats = host.load_stats();
                loads[0] += stats.compiled;
                loads[1] += stats.cached;
                loads[2] += stats.precompiled;
            }
            let sources = [
                [("source", "compiled")],
                [("source", "cache")],
                [("source", "precompiled")],
            ];
            labelled_counters(
                e,
                "osiiso_plugin_loads",
                "Plugins loaded, by where their code came from: compiled now, the compile \
                 cache, a precompiled file.",
                sources.iter().zip(loads).map(|(l, n)| (&l[..], n)),
            )?;
            let seconds: f64 = hosts.iter().map(|h| h.load_stats().seconds).sum();
            let mut family = e.encode_descriptor(
                "osiiso_plugin_load_seconds",
                "Time spent loading plugins (reading, compiling or loading from the cache).",
                None,
                MetricType::Counter,
            )?;
            family.encode_counter::<NoLabelSet, _, u64>(&seconds, None)?;
            let optimizations = [
                hosts.iter().map(Host::plugins_optimized).sum::<u64>(),
                hosts.iter().map(Host::optimizations_failed).sum(),
            ];
            labelled_counters(
                e,
                "osiiso_plugin_optimizations",
                "Background compilations of optimised code by a tiered host, by how they ended: \
                 done (the plugin runs the optimised code), failed (it keeps its baseline code).",
                [[("outcome", "done")], [("outcome", "failed")]]
                    .iter()
                    .zip(optimizations)
                    .map(|(l, n)| (&l[..], n)),
            )?;
            let (used, total) = self.memory().unwrap_or_default();
            gauge(
                e,
                "osiiso_memory_in_use_bytes",
                "The memory budget in use: linear memory of live instances and values not yet recorded.",
                used as f64,
            )?;
            gauge(
                e,
                "osiiso_memory_budget_bytes",
                "The total memory budget (--total-memory).",
                total as f64,
            )?;
        }

        Ok(())
    }
}
