//! Resident memory: this process's peak (`VmHWM`, resettable on Linux so that one phase of a
//! longer run can be measured on its own) and now, a finished child's peak (`wait4`'s
//! `ru_maxrss`), and the memory still available to the process.

/// Peak resident set size of this process in bytes (`VmHWM`); `None` where `/proc` is absent.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident set size of this process now, in bytes (`VmRSS`); `None` where `/proc` is absent.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory the process can still take, in bytes: the kernel's `MemAvailable`, less where the
/// process's cgroup (v2) allows less (`memory.max` over `memory.current`); `None` where
/// `/proc` is absent.
pub fn available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let host = kb * 1024;
    Some(cgroup_headroom().map_or(host, |c| c.min(host)))
}

/// What the process's cgroup (v2) still allows, where it sets a limit.
fn cgroup_headroom() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max": no limit
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// Resets the peak resident set size to the current one (Linux: `5` into
/// `/proc/self/clear_refs`). False when the kernel does not allow it; a peak read after a
/// failed reset covers the whole process.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_available_is_read_and_is_less_than_the_machines() {
        let Some(avail) = available_bytes() else {
            return; // no /proc here (not Linux)
        };
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_kb: u64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap();
        assert!(avail > 0 && avail <= total_kb * 1024, "{avail}");
    }

    #[test]
    fn the_peak_is_read_and_a_reset_does_not_raise_it() {
        let Some(before) = peak_rss_bytes() else {
            return; // no /proc here (not Linux): nothing to read
        };
        assert!(before > 0);
        let now = rss_bytes().unwrap();
        let block = vec![1u8; 32 << 20];
        std::hint::black_box(&block);
        let grown = peak_rss_bytes().unwrap();
        assert!(
            rss_bytes().unwrap() >= now + (16 << 20),
            "the block is resident now"
        );
        assert!(grown >= before + (16 << 20), "{before} -> {grown}");
        drop(block);
        if reset_peak_rss() {
            assert!(peak_rss_bytes().unwrap() < grown, "the peak was reset");
        }
    }
}
