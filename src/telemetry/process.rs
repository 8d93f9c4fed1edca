//! Process metrics read at scrape time from `/proc/self` (Linux only; elsewhere omitted):
//! `process_cpu_seconds_total` tells whether the load generator itself is saturated, and
//! `process_resident_memory_bytes` that memory stays bounded over a long run.

use super::names;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports `/proc/*/stat` times in USER_HZ, which the kernel ABI fixes at 100.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system) of this process.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields after its closing paren are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`, so no page-size syscall).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = cpu_seconds() {
            let c = ConstCounter::new(cpu);
            let name = names::PROCESS_CPU.prometheus.trim_end_matches("_total");
            let m = encoder.encode_descriptor(
                name,
                names::PROCESS_CPU.help.trim_end_matches('.'),
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        if let Some(rss) = resident_bytes() {
            let g = ConstGauge::new(rss as i64);
            let m = encoder.encode_descriptor(
                names::PROCESS_RSS.prometheus,
                names::PROCESS_RSS.help.trim_end_matches('.'),
                None,
                g.metric_type(),
            )?;
            g.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_proc_self() {
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(super::cpu_seconds().unwrap() >= 0.0);
        assert!(super::resident_bytes().unwrap() > 1024 * 1024);
    }
}
