//! Where a run folder's results came from: each session that wrote results into it, with the
//! machine, the program and the threads (`sessions.json`, beside `run.json`).
//!
//! Why: greedy decoding is deterministic on one CPU but not across CPUs, since ggml picks its
//! kernels by instruction set (the same evaluation on an AMD EPYC and an Intel Xeon with
//! AVX-512 gave other answers on 18 of 50 GSM8K problems). Two arms compared problem by problem
//! should come from one machine; this record lets a report check that instead of trusting
//! memory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::agent::files::{read_json, write_json, FileError};

/// Format version of `sessions.json`.
pub const FORMAT_VERSION: u32 = 1;
/// The record's file name in a run folder.
pub const SESSIONS_FILE: &str = "sessions.json";

/// SIMD extensions that change ggml's kernels (and so its speed and its rounding), in the
/// spelling of `/proc/cpuinfo`.
pub const SIMD: &[&str] = &[
    "sse3",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "asimddp",
    "dotprod",
    "i8mm",
    "sve",
    "sve2",
    "bf16",
];

/// The CPU model, physical cores and SIMD flags from `/proc/cpuinfo`'s text.
pub fn parse_cpuinfo(text: &str) -> (Option<String>, Option<u32>, Vec<String>) {
    let mut model = None;
    let mut flags: Vec<String> = Vec::new();
    let mut cores = std::collections::BTreeSet::new();
    let mut physical = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "model name" | "Model" | "Hardware" if model.is_none() && !v.is_empty() => {
                model = Some(v.to_string())
            }
            "flags" | "Features" if flags.is_empty() => {
                // x86 kernels spell SSE3 `pni`.
                let have: Vec<&str> = v
                    .split_whitespace()
                    .map(|f| if f == "pni" { "sse3" } else { f })
                    .collect();
                flags = SIMD
                    .iter()
                    .filter(|f| have.contains(f))
                    .map(|f| f.to_string())
                    .collect();
            }
            "physical id" => physical = Some(v.to_string()),
            "core id" => {
                cores.insert((physical.clone(), v.to_string()));
            }
            _ => {}
        }
    }
    let n = (!cores.is_empty()).then_some(cores.len() as u32);
    (model, n, flags)
}

/// The commit checked out in the current folder (`git rev-parse HEAD`), if git can tell.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether the checkout has changes not committed (`git status --porcelain` says any), if git
/// can tell.
pub fn git_dirty() -> Option<bool> {
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()?;
    out.status.success().then_some(!out.stdout.is_empty())
}

/// What decides a CPU's results: its model, architecture and SIMD extensions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`), or the architecture when unknown.
    pub cpu_model: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// The SIMD extensions of [`SIMD`] that the CPU has.
    pub simd: Vec<String>,
    /// Logical cores available to the process.
    pub logical_cores: u32,
}

impl Machine {
    /// This machine.
    pub fn this() -> Self {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (model, _, simd) = parse_cpuinfo(&text);
        Machine {
            cpu_model: model.unwrap_or_else(|| std::env::consts::ARCH.into()),
            arch: std::env::consts::ARCH.into(),
            simd,
            logical_cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }

    /// Whether the two give the same kernels: same CPU model, architecture and extensions
    /// (the core count changes the threads, which [`Session`] records apart).
    pub fn same_kernels(&self, other: &Machine) -> bool {
        (&self.cpu_model, &self.arch, &self.simd) == (&other.cpu_model, &other.arch, &other.simd)
    }

    /// `CPU model (arch, widest extension)`, short enough for a report's line.
    pub fn label(&self) -> String {
        let widest = ["amx_int8", "avx512f", "avx2", "avx", "sve", "i8mm", "asimd"]
            .iter()
            .find(|f| self.simd.iter().any(|s| s == *f))
            .copied()
            .unwrap_or("no SIMD listed");
        format!("{} ({}, {widest})", self.cpu_model, self.arch)
    }
}

/// One session that wrote results into a run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// When it started, seconds since the Unix epoch.
    pub started_unix: u64,
    /// Results the folder held before it (the session wrote the ones after, up to the next
    /// session's figure).
    pub saved_before: usize,
    /// The machine.
    pub machine: Machine,
    /// Threads of its model session.
    pub threads: Option<u32>,
    /// This program's version.
    pub version: String,
    /// sha256 of the running executable (the exact build, wherever it was copied).
    pub executable_sha256: Option<String>,
    /// The commit of the git checkout the process ran in, and whether it had changes (the
    /// executable may have been built from another commit: its sha256 says which build ran).
    pub checkout_commit: Option<String>,
    /// Whether that checkout had changes not committed.
    pub checkout_dirty: Option<bool>,
    /// What besides the machine decided its numbers (the target profile's
    /// [`numerics`](retroformer_llm::target::TargetProfile::numerics)); absent in sessions
    /// recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerics: Option<String>,
    /// When it last saved a result (its start until it saves one), seconds since the Unix
    /// epoch: a run resumed over many processes adds up its time from these. Absent in
    /// sessions recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_saved_unix: Option<u64>,
}

impl Session {
    /// The session starting now on this machine with `threads`, after `saved_before` results.
    pub fn now(saved_before: usize, threads: Option<u32>) -> Self {
        let now = now_unix();
        Session {
            started_unix: now,
            last_saved_unix: Some(now),
            saved_before,
            machine: Machine::this(),
            threads,
            version: env!("CARGO_PKG_VERSION").into(),
            executable_sha256: std::env::current_exe()
                .ok()
                .and_then(|exe| crate::fetch::sha256_file(&exe, &crate::fetch::Silent).ok()),
            checkout_commit: git_commit(),
            checkout_dirty: git_dirty(),
            numerics: None,
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The time a folder's results took over all the sessions that wrote them: each session's
/// from its start to its last save, summed (what a session did after its last save is not
/// counted: that work was lost when it stopped, and redone by the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsTime {
    /// Seconds.
    pub seconds: u64,
    /// The sessions.
    pub sessions: usize,
}

/// `sessions.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// In the order they started.
    pub sessions: Vec<Session>,
}

impl Sessions {
    /// The distinct machines (by kernels) that wrote results, in the order they first did.
    pub fn machines(&self) -> Vec<&Machine> {
        distinct(
            self.sessions.iter().map(|s| &s.machine),
            Machine::same_kernels,
        )
    }

    /// The time the folder's results took over its sessions; `None` when a session predates
    /// the record.
    pub fn time(&self) -> Option<SessionsTime> {
        let seconds = self
            .sessions
            .iter()
            .map(|s| Some(s.last_saved_unix?.saturating_sub(s.started_unix)))
            .sum::<Option<u64>>()?;
        Some(SessionsTime {
            seconds,
            sessions: self.sessions.len(),
        })
    }

    /// The distinct numerics its sessions recorded, in the order they first did (sessions
    /// from before the record have none).
    pub fn numerics(&self) -> Vec<&str> {
        let recorded = self.sessions.iter().filter_map(|s| s.numerics.as_deref());
        distinct(recorded, |a, b| a == b)
    }
}

/// `items` without repeats (by `same`), in the order they first come.
fn distinct<'a, T: ?Sized>(
    items: impl Iterator<Item = &'a T>,
    same: impl Fn(&T, &T) -> bool,
) -> Vec<&'a T> {
    let mut out: Vec<&'a T> = Vec::new();
    for x in items {
        if !out.iter().any(|o| same(o, x)) {
            out.push(x);
        }
    }
    out
}

/// `Some(true)` when two folders each hold one setting (by `same`) and it is the same one;
/// `None` when either has no record.
fn one_setting<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    Some(a.len() == 1 && b.len() == 1 && same(&a[0], &b[0]))
}

/// Whether two folders' results were decoded with the same numerics (target profile): each
/// with one, the same; `None` when either has no record.
pub fn same_numerics(a: &[String], b: &[String]) -> Option<bool> {
    one_setting(a, b, |x, y| x == y)
}

/// Whether two folders' results come from one machine: each was written on one machine only,
/// and both on the same kernels; `None` when either is not recorded.
pub fn one_machine(a: &[Machine], b: &[Machine]) -> Option<bool> {
    one_setting(a, b, Machine::same_kernels)
}

/// A warning when `out` already holds results that another machine wrote: resumed here, the
/// folder's results would mix machines.
pub fn other_machine_warning(out: &Path) -> Result<Option<String>, FileError> {
    let this = Machine::this();
    let others: Vec<String> = machines_in(out)?
        .iter()
        .filter(|m| !m.same_kernels(&this))
        .map(Machine::label)
        .collect();
    Ok((!others.is_empty()).then(|| {
        format!(
            "{}: results so far come from {}, this machine is {}: greedy answers differ across CPUs, so the folder's results will mix machines (reports say so)",
            out.display(),
            others.join("; "),
            this.label()
        )
    }))
}

/// Reads `out/sessions.json`: `None` for a folder written before it was kept.
pub fn read_sessions(out: &Path) -> Result<Option<Sessions>, FileError> {
    let path = out.join(SESSIONS_FILE);
    let found: Option<Sessions> = read_json(&path)?;
    match found {
        Some(s) if s.format_version != FORMAT_VERSION => Err(crate::agent::files::file_err(
            &path,
            format!(
                "format_version {} (this build reads {FORMAT_VERSION})",
                s.format_version
            ),
        )),
        other => Ok(other),
    }
}

/// What `out/sessions.json` records about how `out`'s results were made, read once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// The distinct machines that wrote the results (empty: no `sessions.json`).
    pub machines: Vec<Machine>,
    /// The distinct numerics of the sessions; empty unless every session recorded its own (a
    /// folder begun by a build from before the record has answers of unknown numerics).
    pub numerics: Vec<String>,
    /// The time its results took over its sessions (`None`: a session predates the record).
    pub time: Option<SessionsTime>,
}

/// Reads `out`'s [`Provenance`] (empty for a folder written before `sessions.json` was kept).
pub fn provenance_in(out: &Path) -> Result<Provenance, FileError> {
    let Some(all) = read_sessions(out)? else {
        return Ok(Provenance::default());
    };
    let machines = all.machines().into_iter().cloned().collect();
    let numerics = if all.sessions.iter().any(|s| s.numerics.is_none()) {
        Vec::new()
    } else {
        all.numerics().into_iter().map(str::to_string).collect()
    };
    Ok(Provenance {
        machines,
        numerics,
        time: all.time(),
    })
}

/// The distinct machines that wrote `out`'s results (empty: no `sessions.json`).
pub fn machines_in(out: &Path) -> Result<Vec<Machine>, FileError> {
    Ok(provenance_in(out)?.machines)
}

/// Adds `session` to `out/sessions.json` (atomically). Call it when a session is about to
/// write results, not when it finds them all saved.
pub fn record_session(out: &Path, session: Session) -> Result<(), FileError> {
    let all = read_sessions(out)?;
    append_session(out, all, session)
}

fn append_session(out: &Path, all: Option<Sessions>, session: Session) -> Result<(), FileError> {
    let mut all = all.unwrap_or(Sessions {
        format_version: FORMAT_VERSION,
        sessions: Vec::new(),
    });
    all.sessions.push(session);
    write_json(&out.join(SESSIONS_FILE), &all)
}

/// Notes in `out/sessions.json` that its newest session saved a result now (a run folder has
/// one writer at a time, so the newest session is the caller's); nothing without the file.
pub fn note_saved(out: &Path) -> Result<(), FileError> {
    let Some(mut all) = read_sessions(out)? else {
        return Ok(());
    };
    if let Some(s) = all.sessions.last_mut() {
        s.last_saved_unix = Some(now_unix());
    }
    write_json(&out.join(SESSIONS_FILE), &all)
}

/// Records the session about to write `pending` results into `out` after `saved_before` of
/// them, with `model`'s session (its threads and numerics); nothing when nothing is pending.
/// Refused when an earlier session decoded with other numerics (another target profile):
/// resumed, the folder's answers would mix two settings without a report being able to tell.
pub fn record_model_session(
    out: &Path,
    saved_before: usize,
    pending: usize,
    model: &dyn retroformer_llm::Session,
) -> Result<(), FileError> {
    if pending == 0 {
        return Ok(());
    }
    let info = model.info().ok();
    let mut session = Session::now(saved_before, info.as_ref().map(|i| i.threads));
    session.numerics = info.map(|i| i.numerics);
    let recorded = read_sessions(out)?;
    check_numerics(out, recorded.as_ref(), session.numerics.as_deref())?;
    append_session(out, recorded, session)
}

/// Refuses `numerics` when a session `recorded` in `out` had others (sessions without a
/// record pass: they predate it).
fn check_numerics(
    out: &Path,
    recorded: Option<&Sessions>,
    numerics: Option<&str>,
) -> Result<(), FileError> {
    let (Some(now), Some(recorded)) = (numerics, recorded) else {
        return Ok(());
    };
    match recorded.numerics().into_iter().find(|n| *n != now) {
        Some(then) => Err(crate::agent::files::file_err(
            &out.join(SESSIONS_FILE),
            format!(
                "the results so far were decoded with \"{then}\", this session would decode with \"{now}\": resume with the target profile that began the run (--target, --kv-type), or write to another folder"
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_gives_the_model_physical_cores_and_the_simd_flags_that_matter() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t: 0\n\
                    flags\t\t: fpu pni avx avx2 fma f16c avx512f foo\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\ncore id\t: 0\n\
                    flags\t\t: fpu sse3 avx avx2 fma f16c avx512f foo\n\n\
                    processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n";
        let (m, cores, simd) = parse_cpuinfo(text);
        assert_eq!(m.as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cores, Some(2));
        assert_eq!(simd, vec!["sse3", "avx", "avx2", "fma", "f16c", "avx512f"]);
        let arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nModel\t: Raspberry Pi 5\n";
        let (m, cores, simd) = parse_cpuinfo(arm);
        assert_eq!(m.as_deref(), Some("Raspberry Pi 5"));
        assert_eq!(cores, None);
        assert_eq!(simd, vec!["asimd", "asimddp", "i8mm"]);
    }

    fn machine(cpu: &str, simd: &[&str], cores: u32) -> Machine {
        Machine {
            cpu_model: cpu.into(),
            arch: "x86_64".into(),
            simd: simd.iter().map(|s| s.to_string()).collect(),
            logical_cores: cores,
        }
    }

    #[test]
    fn machines_differ_by_cpu_or_extensions_but_not_by_core_count() {
        let epyc = machine("AMD EPYC 7B13", &["avx2"], 2);
        let xeon = machine("Intel(R) Xeon(R) Processor", &["avx2", "avx512f"], 2);
        assert!(epyc.same_kernels(&machine("AMD EPYC 7B13", &["avx2"], 16)));
        assert!(!epyc.same_kernels(&xeon));
        assert!(!xeon.same_kernels(&machine("Intel(R) Xeon(R) Processor", &["avx2"], 2)));
        assert_eq!(xeon.label(), "Intel(R) Xeon(R) Processor (x86_64, avx512f)");
    }

    #[test]
    fn sessions_accumulate_in_the_folder_and_name_each_machine_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_sessions(dir.path()).unwrap(), None);
        let mut s = Session::now(0, Some(2));
        assert_eq!(s.machine, Machine::this());
        assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(s.executable_sha256.as_deref().map(str::len), Some(64));
        record_session(dir.path(), s.clone()).unwrap();
        s.saved_before = 10;
        record_session(dir.path(), s.clone()).unwrap();
        s.machine = machine("Other CPU", &[], 4);
        s.saved_before = 20;
        record_session(dir.path(), s).unwrap();
        let all = read_sessions(dir.path()).unwrap().unwrap();
        assert_eq!(all.format_version, FORMAT_VERSION);
        let before: Vec<usize> = all.sessions.iter().map(|s| s.saved_before).collect();
        assert_eq!(before, vec![0, 10, 20]);
        let labels: Vec<&str> = all
            .machines()
            .iter()
            .map(|m| m.cpu_model.as_str())
            .collect();
        assert_eq!(
            labels,
            vec![Machine::this().cpu_model.as_str(), "Other CPU"]
        );
    }

    #[test]
    fn a_folders_time_adds_each_sessions_start_to_its_last_save() {
        let dir = tempfile::tempdir().unwrap();
        note_saved(dir.path()).unwrap(); // no sessions.json: nothing to note
        assert_eq!(read_sessions(dir.path()).unwrap(), None);
        let mut first = Session::now(0, Some(2));
        assert_eq!(first.last_saved_unix, Some(first.started_unix));
        first.started_unix -= 7200;
        first.last_saved_unix = Some(first.started_unix + 3600);
        record_session(dir.path(), first.clone()).unwrap();
        let mut second = Session::now(40, Some(2));
        second.started_unix -= 100;
        record_session(dir.path(), second.clone()).unwrap();
        note_saved(dir.path()).unwrap();
        let all = read_sessions(dir.path()).unwrap().unwrap();
        assert_eq!(all.sessions[0], first, "only the newest session is noted");
        let t = all.time().unwrap();
        assert_eq!(t.sessions, 2);
        assert!((3700..3710).contains(&t.seconds), "{t:?}");
        assert_eq!(provenance_in(dir.path()).unwrap().time, Some(t));
        // A session recorded before the field was kept leaves the time unknown.
        let mut old = all.clone();
        old.sessions[0].last_saved_unix = None;
        assert_eq!(old.time(), None);
        let text = serde_json::to_string(&old.sessions[0]).unwrap();
        assert!(!text.contains("last_saved_unix"), "{text}");
    }

    #[test]
    fn resuming_a_folder_another_machine_wrote_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(other_machine_warning(dir.path()).unwrap(), None);
        record_session(dir.path(), Session::now(0, Some(2))).unwrap();
        assert_eq!(other_machine_warning(dir.path()).unwrap(), None);
        let mut s = Session::now(5, Some(2));
        s.machine = machine("Other CPU", &["avx2"], 2);
        record_session(dir.path(), s).unwrap();
        let w = other_machine_warning(dir.path()).unwrap().unwrap();
        assert!(
            w.contains("results so far come from Other CPU (x86_64, avx2)"),
            "{w}"
        );
        assert!(w.contains(&Machine::this().label()), "{w}");
    }

    #[test]
    fn resuming_a_folder_under_other_numerics_is_refused_with_both_named() {
        let dir = tempfile::tempdir().unwrap();
        let check = |n: Option<&str>| {
            let recorded = read_sessions(dir.path()).unwrap();
            check_numerics(dir.path(), recorded.as_ref(), n)
        };
        let fast =
            "cpu backend, 0 GPU layers, kv f16, flash attention auto, batch 512/512, fast kernels";
        assert!(check(Some(fast)).is_ok());
        // A session from before the record says nothing either way.
        record_session(dir.path(), Session::now(0, Some(2))).unwrap();
        assert!(check(Some("anything")).is_ok());
        assert!(provenance_in(dir.path()).unwrap().numerics.is_empty());
        let mut s = Session::now(3, Some(2));
        s.numerics = Some(fast.into());
        record_session(dir.path(), s).unwrap();
        assert!(check(Some(fast)).is_ok());
        assert!(check(None).is_ok());
        // The first session's answers have unknown numerics: the folder's are not known.
        assert!(provenance_in(dir.path()).unwrap().numerics.is_empty());
        let whole = tempfile::tempdir().unwrap();
        let mut s = Session::now(0, Some(2));
        s.numerics = Some(fast.into());
        record_session(whole.path(), s).unwrap();
        assert_eq!(
            provenance_in(whole.path()).unwrap().numerics,
            vec![fast.to_string()]
        );
        let reference = fast.replace("fast kernels", "reference kernels");
        let e = check(Some(&reference)).unwrap_err().to_string();
        assert!(e.contains("sessions.json"), "{e}");
        assert!(e.contains(fast) && e.contains(&reference), "{e}");
        assert!(e.contains("--target"), "{e}");
    }

    #[test]
    fn two_folders_share_numerics_only_when_each_recorded_the_same_one() {
        let (f, r) = (["fast".to_string()], ["reference".to_string()]);
        assert_eq!(same_numerics(&f, &f), Some(true));
        assert_eq!(same_numerics(&f, &r), Some(false));
        // A folder that mixed two settings matches nothing, itself included.
        let mixed = [f[0].clone(), r[0].clone()];
        assert_eq!(same_numerics(&mixed, &mixed), Some(false));
        assert_eq!(same_numerics(&[], &f), None);
    }

    #[test]
    fn a_session_from_before_the_numerics_record_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        record_session(dir.path(), Session::now(0, Some(2))).unwrap();
        let text = std::fs::read_to_string(dir.path().join(SESSIONS_FILE)).unwrap();
        assert!(!text.contains("numerics"), "{text}");
        let all = read_sessions(dir.path()).unwrap().unwrap();
        assert_eq!(all.sessions[0].numerics, None);
    }

    #[test]
    fn a_sessions_file_of_another_format_version_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SESSIONS_FILE),
            r#"{"format_version": 99, "sessions": []}"#,
        )
        .unwrap();
        let e = read_sessions(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("sessions.json") && e.contains("format_version 99"),
            "{e}"
        );
    }
}
