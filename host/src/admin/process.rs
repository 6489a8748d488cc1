//! The process figures of `/metrics` (`process_*`, as Prometheus client libraries name
//! them), read from `/proc/self` on Linux; elsewhere there are none.

/// What `/proc/self` says about the broker process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// The figures now, or `None` where `/proc` cannot be read (not Linux).
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    // SAFETY: sysconf only reads a system setting.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let fields = StatFields::parse(&stat)?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessStats {
        resident_bytes: fields.rss_pages * page as u64,
        cpu_seconds: (fields.utime + fields.stime) as f64 / ticks as f64,
        open_fds,
        start_time_seconds: boot_time as f64 + fields.start_ticks as f64 / ticks as f64,
    })
}

/// The fields of `/proc/self/stat` that the figures need (proc(5) numbers them from 1).
#[derive(Debug, PartialEq)]
struct StatFields {
    /// (14) user time, clock ticks.
    utime: u64,
    /// (15) system time, clock ticks.
    stime: u64,
    /// (22) start time after boot, clock ticks.
    start_ticks: u64,
    /// (24) resident set size, pages.
    rss_pages: u64,
}

impl StatFields {
    fn parse(stat: &str) -> Option<StatFields> {
        // The command name (2) is in parentheses and may hold spaces and parentheses of its
        // own: the fields that follow start after the last `)`, with (3) the state.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(StatFields { utime: field(14)?, stime: field(15)?, start_ticks: field(22)?, rss_pages: field(24)? })
    }
}

/// The `btime` line of `/proc/stat`: when the system booted, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1800 0 0 0 250 75 0 0 20 0 12 0 \
                    98765 1234567890 3000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(StatFields::parse(stat), Some(StatFields { utime: 250, stime: 75, start_ticks: 98765, rss_pages: 3000 }));
        assert_eq!(StatFields::parse("4242 (cut short) S 1 2"), None);
    }

    #[test]
    fn boot_time_is_the_btime_line() {
        assert_eq!(boot_time("cpu  1 2 3\nintr 5\nbtime 1764660000\nprocesses 9\n"), Some(1_764_660_000));
        assert_eq!(boot_time("cpu  1 2 3\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_open_files_and_started_in_the_past() {
        let stats = read().expect("/proc/self is readable on Linux");
        assert!(stats.resident_bytes > 1 << 20, "{stats:?}");
        assert!(stats.open_fds >= 3, "{stats:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0 && stats.start_time_seconds > now - 86_400.0 * 365.0, "{stats:?}");
    }
}
