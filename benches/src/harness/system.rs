//! What the benchmark needs to know about the machine: its fingerprint, its load from other
//! processes while the suite runs, and this process's peak memory (Linux `/proc`; on other
//! systems the figures are absent rather than guessed).

use retroformer::provenance::parse_cpuinfo;

use super::Fingerprint;

/// `PRETTY_NAME` from `/etc/os-release`'s text.
fn pretty_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// Total memory in bytes from `/proc/meminfo`'s text.
fn mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The fingerprint of this machine, without the GPU list and llama.cpp's build summary (the
/// suite adds those, since they need the backend).
pub fn fingerprint(backend: &str) -> Fingerprint {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (model, physical, simd) = parse_cpuinfo(&read("/proc/cpuinfo"));
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let os = pretty_name(&read("/etc/os-release")).unwrap_or_else(|| std::env::consts::OS.into());
    let host = read("/proc/sys/kernel/hostname").trim().to_string();
    Fingerprint {
        host: if host.is_empty() {
            std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into())
        } else {
            host
        },
        cpu_model: model.unwrap_or_else(|| std::env::consts::ARCH.into()),
        arch: std::env::consts::ARCH.into(),
        logical_cores: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        physical_cores: physical,
        simd,
        memory_bytes: mem_total(&read("/proc/meminfo")),
        gpus: Vec::new(),
        backend: backend.into(),
        os: if kernel.is_empty() {
            os
        } else {
            format!("{os} (kernel {kernel})")
        },
        retroformer_version: env!("CARGO_PKG_VERSION").into(),
        llama_cpp_binding: LLAMA_CPP_BINDING.into(),
        llama_cpp_system_info: String::new(),
    }
}

/// The `llama-cpp-2` version this build pins (checked against the workspace manifest by a test).
pub const LLAMA_CPP_BINDING: &str = "0.1.160";

/// CPU time in clock ticks: (all processes' busy time, this process's own incl. children).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = cpu.iter().take(8).sum::<u64>() - cpu.get(3)? - cpu.get(4).unwrap_or(&0);
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14..=17, i.e. rest[11..15].
    let own: u64 = rest
        .get(11..15)?
        .iter()
        .filter_map(|x| x.parse::<u64>().ok())
        .sum();
    Some((busy, own))
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Watches the machine's CPU use by other processes between [`LoadMeter::start`] and
/// [`LoadMeter::finish`].
#[derive(Debug, Clone)]
pub struct LoadMeter {
    start: std::time::Instant,
    ticks: Option<(u64, u64)>,
    loadavg: Option<f64>,
}

impl LoadMeter {
    /// Starts watching.
    pub fn start() -> Self {
        Self {
            start: std::time::Instant::now(),
            ticks: cpu_ticks(),
            loadavg: load_average(),
        }
    }

    /// Cores' worth of CPU that other processes used since the start (`None` off Linux).
    pub fn external_cores(&self) -> Option<f64> {
        let (b0, o0) = self.ticks?;
        let (b1, o1) = cpu_ticks()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let secs = self.start.elapsed().as_secs_f64();
        if hz <= 0 || secs <= 0.0 {
            return None;
        }
        let other = (b1.saturating_sub(b0) as f64 - o1.saturating_sub(o0) as f64).max(0.0);
        Some(other / hz as f64 / secs)
    }

    /// The load report: flagged when other processes used more than [`load_limit`] cores on
    /// average.
    pub fn finish(&self, logical_cores: u32) -> super::LoadReport {
        let external = self.external_cores();
        let limit = load_limit(logical_cores);
        let flagged = external.is_some_and(|x| x > limit);
        super::LoadReport {
            loadavg_start: self.loadavg,
            loadavg_end: load_average(),
            external_cores: external,
            flagged,
            note: flagged.then(|| {
                format!(
                    "other processes used {:.2} cores on average during the run (limit {limit:.2}): the figures are not comparable",
                    external.unwrap_or(0.0)
                )
            }),
        }
    }
}

/// Cores' worth of foreign CPU use above which a run is flagged: half a core, or a tenth of
/// the cores on larger machines.
pub fn load_limit(logical_cores: u32) -> f64 {
    (0.1 * f64::from(logical_cores)).max(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_and_meminfo_are_read() {
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n").as_deref(),
            Some("Debian GNU/Linux 12")
        );
        assert_eq!(
            mem_total("MemTotal:  1024 kB\nMemFree: 1 kB\n"),
            Some(1024 * 1024)
        );
    }

    #[test]
    fn the_pinned_binding_version_is_the_workspaces() {
        let ws =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
        assert!(
            ws.contains(&format!(
                "llama-cpp-2 = {{ version = \"={LLAMA_CPP_BINDING}\""
            )),
            "update LLAMA_CPP_BINDING to the workspace's llama-cpp-2 pin"
        );
    }

    #[test]
    fn foreign_load_is_flagged_above_half_a_core_or_a_tenth_of_the_cores() {
        assert!((load_limit(2) - 0.5).abs() < 1e-12);
        assert!((load_limit(64) - 6.4).abs() < 1e-12);
    }
}
