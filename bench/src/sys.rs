//! What the benchmark reads from Linux about a process, a socket and a folder: resident
//! memory and CPU time from /proc/<pid>, UDP receive drops from /proc/net/udp{,6} and
//! /proc/net/snmp, disk usage of a folder (as `du`), and the open-file limit (each client
//! holds a UDP socket).

use anyhow::{bail, Context, Result};

pub use hotline_tests::{rss_bytes, udp_drops};

/// CPU time (user + system, all threads) process `pid` ("self" for this one) has used, in
/// seconds.
pub fn cpu_secs(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces; fields after it
    // start with the state (field 3). utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |n: usize| -> Result<u64> { fields.get(n - 3).and_then(|v| v.parse().ok()).context("malformed /proc stat") };
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_sec <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok((ticks(14)? + ticks(15)?) as f64 / per_sec as f64)
}

/// A process whose CPU time and memory are read from /proc.
#[derive(Debug, Clone)]
pub struct Process(String);

impl Process {
    pub fn new(pid: u32) -> Process {
        Process(pid.to_string())
    }

    /// The benchmark's own process.
    pub fn this() -> Process {
        Process("self".into())
    }

    /// CPU time (user + system) used so far, in seconds.
    pub fn cpu_secs(&self) -> Result<f64> {
        cpu_secs(&self.0)
    }

    /// Resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes(&self.0)
    }
}

/// Disk space the files under `dir` take (allocated blocks, as `du` counts them), in bytes.
pub fn disk_bytes(dir: &std::path::Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A folder removed while walking (a compaction) counts as empty.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// `RcvbufErrors` of the whole system's UDP (IPv4) from /proc/net/snmp: drops at every
/// socket, the clients' included.
pub fn udp_rcvbuf_errors() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").context("reading /proc/net/snmp")?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().context("no Udp: in /proc/net/snmp")?, udp.next().context("no Udp: values")?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .context("no RcvbufErrors in /proc/net/snmp")
}

/// Raises the soft open-file limit to the hard one. Returns (soft before, soft now).
pub fn raise_open_file_limit() -> Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
        }
    }
    Ok((before, limit.rlim_cur))
}

/// Makes glibc's malloc serve every allocation of 128 KiB or more with its own mmap, as it
/// does at first, instead of raising that threshold once such a block is freed.
///
/// Each client's quinn endpoint allocates a zeroed receive buffer of about 3 MiB (1,472 B ×
/// 64 GRO segments × 32 packets) of which only a few pages are ever written. A fresh mmap
/// costs no memory for the pages never touched; but after the first round's endpoints are
/// freed, glibc's dynamic threshold would place the next round's buffers on the heap, and
/// zeroing reused heap memory touches every page: about 3 MiB of resident memory per
/// client (30 GB for 10,000). Without glibc (musl) nothing changes.
pub fn keep_large_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
