//! A small Prometheus registry: counters, gauges, one-label counter vectors
//! and histograms, rendered in the text exposition format.
//!
//! Deliberately closed: a counter vector's label values are fixed when it is
//! registered, and anything else is counted under `other`. No code path can
//! turn a record's content (an identifier, an age, a ward) into a label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The label value that unknown values are counted under.
pub const OTHER: &str = "other";

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters keyed by one label whose values are fixed at registration.
#[derive(Clone, Debug)]
pub struct CounterVec {
    values: Arc<[&'static str]>,
    counts: Arc<[AtomicU64]>,
}

impl CounterVec {
    /// Adds one under `label_value`, or under `other` if it is not one of the
    /// registered values.
    pub fn inc(&self, label_value: &str) {
        self.inc_by(label_value, 1);
    }

    /// Adds `n` under `label_value` (or `other`).
    pub fn inc_by(&self, label_value: &str, n: u64) {
        let slot = self
            .values
            .iter()
            .position(|v| *v == label_value)
            .unwrap_or(self.values.len() - 1);
        self.counts[slot].fetch_add(n, Ordering::Relaxed);
    }

    /// The count under `label_value` (or `other`).
    pub fn get(&self, label_value: &str) -> u64 {
        let slot = self
            .values
            .iter()
            .position(|v| *v == label_value)
            .unwrap_or(self.values.len() - 1);
        self.counts[slot].load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramInner {
    bounds: Vec<f64>,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

/// A distribution of observations (typically seconds) in fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let inner = &self.0;
        if let Some(i) = inner.bounds.iter().position(|b| value <= *b) {
            inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        inner.count.fetch_add(1, Ordering::Relaxed);
        let mut current = inner.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match inner.sum_bits.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

/// Default latency buckets in seconds, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    CounterVec {
        label: &'static str,
        vec: CounterVec,
    },
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    metric: Metric,
}

/// Every metric a process exposes.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<Vec<Family>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    fn register(&self, name: &'static str, help: &'static str, metric: Metric) {
        debug_assert!(valid_name(name), "invalid metric name {name}");
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        families.push(Family { name, help, metric });
    }

    /// Registers a counter.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        let c = Counter::default();
        self.register(name, help, Metric::Counter(c.clone()));
        c
    }

    /// Registers a gauge.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        let g = Gauge::default();
        self.register(name, help, Metric::Gauge(g.clone()));
        g
    }

    /// Registers a counter vector with one label and a closed set of values
    /// (an `other` value is added for anything outside it).
    pub fn counter_vec(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: &[&'static str],
    ) -> CounterVec {
        let mut all: Vec<&'static str> = values.to_vec();
        if !all.contains(&OTHER) {
            all.push(OTHER);
        }
        let counts: Arc<[AtomicU64]> = all.iter().map(|_| AtomicU64::new(0)).collect();
        let vec = CounterVec {
            values: all.into(),
            counts,
        };
        self.register(
            name,
            help,
            Metric::CounterVec {
                label,
                vec: vec.clone(),
            },
        );
        vec
    }

    /// Registers a histogram with upper bucket bounds in ascending order.
    pub fn histogram(&self, name: &'static str, help: &'static str, bounds: &[f64]) -> Histogram {
        let h = Histogram(Arc::new(HistogramInner {
            bounds: bounds.to_vec(),
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }));
        self.register(name, help, Metric::Histogram(h.clone()));
        h
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(4096);
        for f in families.iter() {
            let kind = match f.metric {
                Metric::Counter(_) | Metric::CounterVec { .. } => "counter",
                Metric::Gauge(_) => "gauge",
                Metric::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            match &f.metric {
                Metric::Counter(c) => {
                    let _ = writeln!(out, "{} {}", f.name, c.get());
                }
                Metric::Gauge(g) => {
                    let _ = writeln!(out, "{} {}", f.name, g.get());
                }
                Metric::CounterVec { label, vec } => {
                    for (v, c) in vec.values.iter().zip(vec.counts.iter()) {
                        let _ = writeln!(
                            out,
                            "{}{{{label}=\"{v}\"}} {}",
                            f.name,
                            c.load(Ordering::Relaxed)
                        );
                    }
                }
                Metric::Histogram(h) => {
                    let mut cumulative = 0;
                    for (bound, bucket) in h.0.bounds.iter().zip(h.0.buckets.iter()) {
                        cumulative += bucket.load(Ordering::Relaxed);
                        let _ = writeln!(out, "{}_bucket{{le=\"{bound}\"}} {cumulative}", f.name);
                    }
                    let count = h.0.count.load(Ordering::Relaxed);
                    let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} {count}", f.name);
                    let sum = f64::from_bits(h.0.sum_bits.load(Ordering::Relaxed));
                    let _ = writeln!(out, "{}_sum {sum}", f.name);
                    let _ = writeln!(out, "{}_count {count}", f.name);
                }
            }
        }
        out
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_kind_and_confines_labels_to_the_closed_set() {
        let r = Registry::new();
        let c = r.counter("lacnet_things_total", "Things.");
        let g = r.gauge("lacnet_depth", "Depth.");
        let v = r.counter_vec(
            "lacnet_rejected_total",
            "Rejections.",
            "reason",
            &["bad_date"],
        );
        let h = r.histogram("lacnet_latency_seconds", "Latency.", &[0.1, 1.0]);
        c.inc_by(3);
        g.set(-2);
        v.inc("bad_date");
        v.inc("9434765919");
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let text = r.render();
        assert!(text.contains("lacnet_things_total 3\n"));
        assert!(text.contains("lacnet_depth -2\n"));
        assert!(text.contains("lacnet_rejected_total{reason=\"bad_date\"} 1\n"));
        assert!(text.contains("lacnet_rejected_total{reason=\"other\"} 1\n"));
        assert!(!text.contains("9434765919"), "a value became a label");
        assert!(text.contains("lacnet_latency_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("lacnet_latency_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("lacnet_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("lacnet_latency_seconds_count 3\n"));
        assert!(text.contains("# TYPE lacnet_latency_seconds histogram\n"));
    }
}
