//! Process metrics for `/metrics`, in the names Prometheus's own clients use
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), read
//! from `/proc` at each scrape by a `prometheus-client` collector. Memory is
//! the figure operators watch for sled, whose page cache and written values
//! stay resident; a container limit is sized from it.
//!
//! On a system without `/proc` (not Linux) nothing is written: an absent
//! series is honest, a 0 would not be.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/self/stat`: Linux fixes USER_HZ at 100
/// for user space on every architecture it exports it for.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self/status` says about the process.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStats {
    /// Resident set size (`VmRSS`), in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size (`VmSize`), in bytes.
    pub virtual_bytes: Option<u64>,
    /// OS threads (`Threads`).
    pub threads: Option<u64>,
}

/// Parses the text of `/proc/self/status` (sizes there are in kB).
pub fn parse_status(text: &str) -> ProcessStats {
    let mut stats = ProcessStats::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = value
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok());
        match key {
            "VmRSS" => stats.resident_bytes = number.map(|kb| kb.saturating_mul(1024)),
            "VmSize" => stats.virtual_bytes = number.map(|kb| kb.saturating_mul(1024)),
            "Threads" => stats.threads = number,
            _ => {}
        }
    }
    stats
}

/// CPU time and start of the process, from `/proc/self/stat`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessTimes {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// When the process started, in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and
/// may hold spaces, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcessTimes> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = field(14)?.saturating_add(field(15)?);
    Some(ProcessTimes {
        cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
        start_ticks: field(22)?,
    })
}

/// The boot time (`btime`) from the text of `/proc/stat`, in Unix seconds.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads `/proc` at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector {
    _private: (),
}

impl ProcessCollector {
    /// A collector of this process's metrics.
    pub fn new() -> ProcessCollector {
        ProcessCollector::default()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return Ok(());
        };
        let stats = parse_status(&status);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stats.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stats.virtual_bytes,
            ),
            ("process_threads", "Number of OS threads.", stats.threads),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                open_fds,
            ),
        ] {
            if let Some(v) = value {
                gauge(&mut encoder, name, help, v as f64)?;
            }
        }
        let times = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t));
        if let Some(times) = times {
            let cpu = ConstCounter::new(times.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                // The encoder adds `_total`.
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_boot_time(&t));
            if let Some(boot) = boot {
                let start = boot as f64 + times.start_ticks as f64 / TICKS_PER_SECOND;
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    start,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tlacnet-hub\nVmSize:\t  204800 kB\nVmRSS:\t   51200 kB\nThreads:\t7\n";
        assert_eq!(
            parse_status(text),
            ProcessStats {
                resident_bytes: Some(51200 * 1024),
                virtual_bytes: Some(204800 * 1024),
                threads: Some(7),
            }
        );
        assert_eq!(parse_status("garbage"), ProcessStats::default());
    }

    #[test]
    fn parses_proc_stat_with_spaces_in_the_name() {
        let text = "4242 (lacnet (hub) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 123456 0 0";
        let times = parse_stat(text).unwrap();
        assert_eq!(times.cpu_seconds, 3.0);
        assert_eq!(times.start_ticks, 123456);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn renders_this_process() {
        let out = crate::metrics::Registry::new().render();
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} line in {out}"))
        };
        assert!(value("process_resident_memory_bytes ") > 1024.0 * 1024.0);
        assert!(value("process_open_fds ") >= 3.0);
        // A short test may not have used a clock tick yet: present is what can be checked.
        assert!(value("process_cpu_seconds_total ") >= 0.0);
        assert!(value("process_start_time_seconds ") > 1_600_000_000.0);
        assert!(out.contains("# TYPE process_open_fds gauge"), "{out}");
    }
}
