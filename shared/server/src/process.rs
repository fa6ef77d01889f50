//! Process metrics for `/metrics`, in the names Prometheus's own clients use
//! (`process_resident_memory_bytes`, ...), read from `/proc/self` at scrape
//! time. Memory is the figure operators watch for sled, whose page cache and
//! written values stay resident; a container limit is sized from it.
//!
//! On a system without `/proc` (not Linux) nothing is written: an absent
//! series is honest, a 0 would not be.

use std::fmt::Write;

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

/// Appends the process metrics in Prometheus text format to `out`.
pub fn render(out: &mut String) {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    let stats = parse_status(&text);
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
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        }
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

    #[cfg(target_os = "linux")]
    #[test]
    fn renders_this_process() {
        let mut out = String::new();
        render(&mut out);
        let rss: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("no RSS line");
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(out.contains("# TYPE process_open_fds gauge"), "{out}");
    }
}
