//! Benchmarks of hstream-io: the standard workload ([`workload`]) every benchmark uses, and the
//! physical-limit loaders behind `hstream-io-bench load` ([`load`]), the SQL sink benchmark behind
//! `hstream-io-bench sink` ([`sink`]) and the whole pipeline ([`pipeline`]). Figures:
//! `docs/benchmarks.md`.

pub mod load;
pub mod pipeline;
pub mod sink;
pub mod source_mysql;
pub mod source_pg;
pub mod workload;

/// Peak resident set (`VmHWM` in `/proc/<pid>/status`) of process `pid`, in KiB;
/// `None` when the process is gone or the line is missing.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
