//! Peak resident memory: of this process (`VmHWM`, resettable on Linux so that one phase of a
//! longer run can be measured on its own) and of a finished child (`wait4`'s `ru_maxrss`).

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
