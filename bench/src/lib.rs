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

/// CPU time (user + system) process `pid` has used so far, in seconds; `None` when it is gone.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')'):
    // state is field 3, utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// CPU time the whole machine has spent busy (everything but idle and iowait), in seconds.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice (guest time is in user already)
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4 | 8 | 9))
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / clock_ticks())
}

/// Ticks per second of `/proc/*/stat` times: Linux's USER_HZ, 100 on every architecture
/// whose ABI we build for (the kernel converts from its internal HZ).
fn clock_ticks() -> f64 {
    100.0
}
