//! Prometheus metrics through `prometheus-client`, with label values from
//! closed sets.
//!
//! A labelled counter is a [`CounterVec`] over a label set whose values are
//! enums (made with [`closed_label!`](crate::closed_label)); every value is
//! registered at zero, so each series exists from the first scrape and no
//! code path can turn a record's content (an identifier, an age, a ward)
//! into a label. [`Registry::render`] writes the OpenMetrics text, with the
//! process metrics of [`crate::process`] collected at each scrape.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

/// The label value for anything outside a set's known values.
pub const OTHER: &str = "other";

/// Defines an enum of label values with their text (`New = "new"`), every
/// value in `ALL`, and its [`EncodeLabelValue`]. Variants keep Rust's names;
/// the text is what Prometheus sees.
#[macro_export]
macro_rules! closed_label {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value Prometheus sees.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl $crate::metrics::ClosedLabel for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl $crate::metrics::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut $crate::metrics::LabelValueEncoder<'_>,
            ) -> ::std::result::Result<(), ::std::fmt::Error> {
                ::std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

/// A closed set of label values; [`closed_label!`](crate::closed_label)
/// implements it.
pub trait ClosedLabel:
    EncodeLabelValue + Copy + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static
{
    /// Every value, in declaration order.
    const ALL: &'static [Self];

    /// The label value Prometheus sees.
    fn as_str(self) -> &'static str;
}

/// A label set every value of which is known in advance.
pub trait ClosedLabelSet:
    EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static
{
    /// Every label set the metric can have.
    fn all() -> Vec<Self>;
}

/// Counters keyed by a closed label set, each registered at zero.
#[derive(Debug, Clone)]
pub struct CounterVec<L: ClosedLabelSet> {
    family: Family<L, Counter>,
}

impl<L: ClosedLabelSet> CounterVec<L> {
    /// Adds one under `labels`.
    pub fn inc(&self, labels: impl Into<L>) {
        self.inc_by(labels, 1);
    }

    /// Adds `n` under `labels`.
    pub fn inc_by(&self, labels: impl Into<L>, n: u64) {
        self.family.get_or_create(&labels.into()).inc_by(n);
    }

    /// The count under `labels`.
    pub fn get(&self, labels: impl Into<L>) -> u64 {
        self.family.get_or_create(&labels.into()).get()
    }
}

/// Every metric a process exposes.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<prometheus_client::registry::Registry>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

/// The name `prometheus-client` takes for a counter: it adds `_total` itself.
fn counter_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

impl Registry {
    /// An empty registry, plus the process metrics on Linux.
    pub fn new() -> Registry {
        let mut inner = prometheus_client::registry::Registry::default();
        inner.register_collector(Box::new(crate::process::ProcessCollector::new()));
        Registry {
            inner: Mutex::new(inner),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut prometheus_client::registry::Registry) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// Registers a counter (`name` ends in `_total`, as Prometheus shows it).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let c = Counter::default();
        self.with(|r| r.register(counter_name(name), help, c.clone()));
        c
    }

    /// Registers a gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let g = Gauge::default();
        self.with(|r| r.register(name, help, g.clone()));
        g
    }

    /// Registers counters keyed by the closed label set `L`, each at zero.
    pub fn counter_vec<L: ClosedLabelSet>(&self, name: &str, help: &str) -> CounterVec<L> {
        let family = Family::<L, Counter>::default();
        for labels in L::all() {
            drop(family.get_or_create(&labels));
        }
        self.with(|r| r.register(counter_name(name), help, family.clone()));
        CounterVec { family }
    }

    /// Registers a histogram with upper bucket bounds in ascending order.
    pub fn histogram(&self, name: &str, help: &str, bounds: &[f64]) -> Histogram {
        let h = Histogram::new(bounds.iter().copied());
        self.with(|r| r.register(name, help, h.clone()));
        h
    }

    /// Everything, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.with(|r| prometheus_client::encoding::text::encode(&mut out, r))
            // Writing into a String cannot fail.
            .unwrap_or_default();
        out
    }
}

crate::closed_label! {
    /// How a scheduled backup ended.
    pub enum BackupOutcome {
        /// Written, with its manifest.
        Ok = "ok",
        /// Not written (see the error log line).
        Failed = "failed",
    }
}

/// The labels of `lacnet_backups_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BackupLabels {
    /// How it ended.
    pub outcome: BackupOutcome,
}

impl ClosedLabelSet for BackupLabels {
    fn all() -> Vec<Self> {
        BackupOutcome::ALL
            .iter()
            .map(|&outcome| BackupLabels { outcome })
            .collect()
    }
}

impl From<BackupOutcome> for BackupLabels {
    fn from(outcome: BackupOutcome) -> Self {
        BackupLabels { outcome }
    }
}

/// The scheduled backups' metrics, the same in every service (the scrape
/// target tells them apart). The age is worked out at each scrape, so an
/// alert on it fires even when the scheduler itself has stopped.
#[derive(Debug, Clone)]
pub struct BackupMetrics {
    /// Backups taken, by outcome.
    pub backups: CounterVec<BackupLabels>,
    /// Size of the last good backup, in bytes.
    pub last_size: Gauge,
    /// When the last good backup finished (Unix seconds; 0: none since start).
    pub last_success: Gauge,
    last_success_at: Arc<AtomicI64>,
}

impl BackupMetrics {
    /// Registers the backup metrics in `registry`.
    pub fn register(registry: &Registry) -> BackupMetrics {
        let last_success_at = Arc::new(AtomicI64::new(0));
        registry.with(|r| {
            r.register_collector(Box::new(BackupAge {
                at: last_success_at.clone(),
            }))
        });
        BackupMetrics {
            backups: registry.counter_vec("lacnet_backups_total", "Scheduled backups, by outcome."),
            last_size: registry.gauge(
                "lacnet_backup_last_size_bytes",
                "Size of the last good scheduled backup, in bytes.",
            ),
            last_success: registry.gauge(
                "lacnet_backup_last_success_timestamp_seconds",
                "When the last good scheduled backup finished (Unix seconds; 0: none since start).",
            ),
            last_success_at,
        }
    }

    /// Notes a good backup of `bytes`, finished at `at_unix`.
    pub fn succeeded(&self, bytes: u64, at_unix: i64) {
        self.backups.inc(BackupOutcome::Ok);
        self.last_size.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.last_success.set(at_unix);
        self.last_success_at.store(at_unix, Ordering::Relaxed);
    }

    /// Notes a failed backup.
    pub fn failed(&self) {
        self.backups.inc(BackupOutcome::Failed);
    }
}

/// `lacnet_backup_age_seconds`, from the last good backup to the scrape;
/// absent until there has been one (an alert on `absent()` covers that).
#[derive(Debug)]
struct BackupAge {
    at: Arc<AtomicI64>,
}

impl prometheus_client::collector::Collector for BackupAge {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        let at = self.at.load(Ordering::Relaxed);
        if at <= 0 {
            return Ok(());
        }
        let now = lacnet_clock::Clock::now_unix(&lacnet_clock::SystemClock);
        let g = prometheus_client::metrics::gauge::ConstGauge::new(now.saturating_sub(at).max(0));
        g.encode(encoder.encode_descriptor(
            "lacnet_backup_age_seconds",
            "Seconds since the last good scheduled backup finished.",
            None,
            g.metric_type(),
        )?)
    }
}

/// A service's named store writes (the names of its `lacnet_store::Committer`
/// jobs): a closed set, with the value that stands for any name it lacks.
pub trait StoreWriteName: ClosedLabel {
    /// The value for a job name the set does not list.
    const OTHER: Self;

    /// The write a store job's name stands for.
    fn named(name: &str) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|w| w.as_str() == name)
            .unwrap_or(Self::OTHER)
    }
}

/// The labels of the store write metrics: `{write="<job name>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WriteLabels<W> {
    /// Which write.
    pub write: W,
}

impl<W: ClosedLabel> EncodeLabelSet for WriteLabels<W> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> std::fmt::Result {
        [("write", self.write)].encode(encoder)
    }
}

impl<W: ClosedLabel> ClosedLabelSet for WriteLabels<W> {
    fn all() -> Vec<Self> {
        W::ALL.iter().map(|&write| WriteLabels { write }).collect()
    }
}

impl<W: ClosedLabel> From<W> for WriteLabels<W> {
    fn from(write: W) -> Self {
        WriteLabels { write }
    }
}

/// Every named store write counted and timed, the same in every service
/// (only the metric names' prefix differs).
#[derive(Debug, Clone)]
pub struct StoreWriteMetrics<W: StoreWriteName> {
    /// Store writes by name.
    pub writes: CounterVec<WriteLabels<W>>,
    /// Store writes that failed, by name.
    pub failures: CounterVec<WriteLabels<W>>,
    /// Time for a store write to run on the writer thread and, if it must
    /// be durable, be flushed.
    pub latency: Histogram,
}

impl<W: StoreWriteName> StoreWriteMetrics<W> {
    /// Registers `<prefix>_store_writes_total`,
    /// `<prefix>_store_write_failures_total` and `<prefix>_store_write_seconds`.
    pub fn register(registry: &Registry, prefix: &str) -> StoreWriteMetrics<W> {
        StoreWriteMetrics {
            writes: registry.counter_vec(
                &format!("{prefix}_store_writes_total"),
                "Writes to the store, by name.",
            ),
            failures: registry.counter_vec(
                &format!("{prefix}_store_write_failures_total"),
                "Writes to the store that failed, by name.",
            ),
            latency: registry.histogram(
                &format!("{prefix}_store_write_seconds"),
                "Time for a write to run on the writer thread and, if it must be durable, be flushed.",
                LATENCY_BUCKETS,
            ),
        }
    }

    /// The store's observer: counts and times every named write.
    pub fn observer(&self) -> lacnet_store::Observer {
        let m = self.clone();
        Arc::new(move |name, took, ok| {
            let write = W::named(name);
            m.writes.inc(write);
            if !ok {
                m.failures.inc(write);
            }
            m.latency.observe(took.as_secs_f64());
        })
    }
}

/// Default latency buckets in seconds, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    crate::closed_label! {
        enum Reason {
            BadDate = "bad_date",
            Other = "other",
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct ReasonLabels {
        reason: Reason,
    }

    impl ClosedLabelSet for ReasonLabels {
        fn all() -> Vec<Self> {
            Reason::ALL
                .iter()
                .map(|&reason| ReasonLabels { reason })
                .collect()
        }
    }

    impl From<Reason> for ReasonLabels {
        fn from(reason: Reason) -> Self {
            ReasonLabels { reason }
        }
    }

    #[test]
    fn renders_every_kind_and_registers_every_label_value_at_zero() {
        let r = Registry::new();
        let c = r.counter("lacnet_things_total", "Things.");
        let g = r.gauge("lacnet_depth", "Depth.");
        let v = r.counter_vec::<ReasonLabels>("lacnet_rejected_total", "Rejections.");
        let h = r.histogram("lacnet_latency_seconds", "Latency.", &[0.1, 1.0]);
        c.inc_by(3);
        g.set(-2);
        v.inc(Reason::BadDate);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let text = r.render();
        assert!(text.contains("lacnet_things_total 3\n"), "{text}");
        assert!(text.contains("lacnet_depth -2\n"), "{text}");
        assert!(
            text.contains("lacnet_rejected_total{reason=\"bad_date\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_rejected_total{reason=\"other\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_latency_seconds_bucket{le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_latency_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("lacnet_latency_seconds_count 3\n"), "{text}");
        assert!(
            text.contains("# TYPE lacnet_latency_seconds histogram\n"),
            "{text}"
        );
        assert!(!text.contains("_total_total"), "{text}");
        assert_eq!(v.get(Reason::BadDate), 1);
    }

    crate::closed_label! {
        enum Write {
            Ingest = "ingest",
            Other = "other",
        }
    }

    impl StoreWriteName for Write {
        const OTHER: Write = Write::Other;
    }

    #[test]
    fn store_writes_are_counted_by_name_and_unknown_names_are_other() {
        let r = Registry::new();
        let m = StoreWriteMetrics::<Write>::register(&r, "lacnet_svc");
        let observe = m.observer();
        observe("ingest", std::time::Duration::from_millis(1), false);
        observe(
            "a_name_not_listed",
            std::time::Duration::from_millis(1),
            true,
        );
        let text = r.render();
        for line in [
            "lacnet_svc_store_writes_total{write=\"ingest\"} 1\n",
            "lacnet_svc_store_write_failures_total{write=\"ingest\"} 1\n",
            "lacnet_svc_store_writes_total{write=\"other\"} 1\n",
            "lacnet_svc_store_write_failures_total{write=\"other\"} 0\n",
            "lacnet_svc_store_write_seconds_count 2\n",
        ] {
            assert!(text.contains(line), "no {line:?} in {text}");
        }
        assert_eq!(Write::named("ingest"), Write::Ingest);
    }

    #[test]
    fn backup_age_appears_after_the_first_good_backup() {
        let r = Registry::new();
        let b = BackupMetrics::register(&r);
        let text = r.render();
        assert!(!text.contains("lacnet_backup_age_seconds"), "{text}");
        assert!(
            text.contains("lacnet_backups_total{outcome=\"failed\"} 0\n"),
            "{text}"
        );
        b.failed();
        let an_hour_ago = lacnet_clock::Clock::now_unix(&lacnet_clock::SystemClock) - 3600;
        b.succeeded(1234, an_hour_ago);
        let text = r.render();
        assert!(
            text.contains("lacnet_backup_last_size_bytes 1234\n"),
            "{text}"
        );
        assert!(
            text.contains("lacnet_backups_total{outcome=\"failed\"} 1\n"),
            "{text}"
        );
        let age: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("lacnet_backup_age_seconds "))
            .and_then(|v| v.trim().parse().ok())
            .expect("an age line");
        assert!((3600..3700).contains(&age), "{age}");
    }
}
