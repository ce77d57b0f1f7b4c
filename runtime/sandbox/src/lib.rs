//! Running generated Python safely: one subprocess per run, in layers.
//!
//! Every run gets a fresh private folder as its working directory and home, a scrubbed
//! environment, its own session (so the whole process group is killed at the end, whatever
//! happens), resource limits (address space, CPU time, processes, open files, file size, no core
//! files), a wall-clock deadline and capped output. On Linux, where the kernel allows, it also
//! gets: an unprivileged user of its own when the host runs as root (so the process limit bites
//! and parallel runs cannot touch each other), new network and IPC namespaces, Landlock (writes only
//! inside its folder, no TCP, no signals or abstract sockets outside the sandbox) and a seccomp
//! filter (no sockets other than Unix ones, no `setsid`/`setpgid` to escape the group kill, no
//! `ptrace`, no io_uring, no memory files, kernel keyrings, userfaultfd or new namespaces). Run
//! as root without a user of its own, it refuses an interpreter that cannot drop to one unless
//! [`SandboxConfig::allow_root`] says so. [`Sandbox::new`] probes which layers this machine supports;
//! [`Sandbox::isolation`] says which are active, and a missing network layer is a warning that
//! names what is missing.
//!
//! Every run ends in exactly one [`Outcome`]; they are never collapsed.

mod cleanup;
#[cfg(target_os = "linux")]
mod linux;
#[doc(hidden)]
pub mod testing;

use std::io::Read;
use std::os::fd::AsRawFd;
#[cfg(not(target_os = "linux"))]
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use cleanup::remove_tree;
use cleanup::{exited_unreaped, kill_group, reap_group};

/// Limits of one run. The defaults suit unit tests of small functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The Python interpreter (an absolute path is best; see [`default_python`]).
    pub python: PathBuf,
    /// Wall-clock limit of a run, in milliseconds.
    pub wall_ms: u64,
    /// CPU-time limit per process, in seconds (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Address-space limit per process, in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Most processes (and threads) at once (`RLIMIT_NPROC`).
    pub max_processes: u64,
    /// Most open files per process (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
    /// Largest file a run may write, in bytes (`RLIMIT_FSIZE`).
    pub max_file_bytes: u64,
    /// Bytes kept of stdout and of stderr each; the rest is read and dropped.
    pub max_output_bytes: usize,
    /// Refuse to run (instead of warning) when no network isolation layer is available.
    pub require_network_isolation: bool,
    /// When the host runs as root and runs cannot get a uid of their own, run generated code
    /// as root anyway (otherwise [`Sandbox::new`] fails).
    pub allow_root: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            python: default_python(),
            wall_ms: 10_000,
            cpu_seconds: 10,
            memory_bytes: 1 << 30,
            max_processes: 32,
            max_open_files: 64,
            max_file_bytes: 16 << 20,
            max_output_bytes: 64 << 10,
            require_network_isolation: false,
            allow_root: false,
        }
    }
}

/// The system Python: `/usr/bin/python3` or `/usr/local/bin/python3` when present (readable
/// by an unprivileged sandbox user, unlike interpreters under a home folder), else `python3`
/// from `PATH`.
pub fn default_python() -> PathBuf {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("python3"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit status 0.
    Passed,
    /// An `AssertionError` ended it.
    Failed,
    /// Any other exception or non-zero exit.
    Error,
    /// The wall-clock or CPU-time limit ended it.
    Timeout,
    /// It ran out of its address space (`MemoryError` or an allocation failure).
    MemoryLimit,
    /// A signal killed it (other than the sandbox's own timeout kill).
    KilledBySignal,
    /// The sandbox could not run it (interpreter missing, a layer failed to apply, ...).
    SandboxFailure,
}

impl Outcome {
    /// The name used in results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::KilledBySignal => "killed_by_signal",
            Outcome::SandboxFailure => "sandbox_failure",
        }
    }
}

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// The start of stdout (lossy UTF-8), at most `max_output_bytes`.
    pub stdout: String,
    /// The start of stderr (lossy UTF-8), at most `max_output_bytes`.
    pub stderr: String,
    /// Output was cut at `max_output_bytes`.
    pub truncated: bool,
    /// Wall time, milliseconds.
    pub wall_ms: f64,
    /// Why the sandbox failed, for [`Outcome::SandboxFailure`].
    pub detail: Option<String>,
}

impl RunReport {
    fn failure(detail: String, start: Instant) -> Self {
        Self {
            outcome: Outcome::SandboxFailure,
            exit_code: None,
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            wall_ms: start.elapsed().as_secs_f64() * 1e3,
            detail: Some(detail),
        }
    }

    /// The last line of stderr that names an exception (`ValueError: ...`), for feedback.
    pub fn exception_line(&self) -> Option<&str> {
        self.stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("File ") && !l.starts_with('^'))
    }
}

/// One isolation layer and whether it is active here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Its name.
    pub name: String,
    /// Whether runs get it.
    pub active: bool,
    /// What it does, or why it is off.
    pub detail: String,
}

/// Errors setting a sandbox up (a run's own failures are [`Outcome::SandboxFailure`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The interpreter does not run.
    #[error("python interpreter {path}: {reason}")]
    Python {
        /// The interpreter.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Network isolation was required and no layer provides it.
    #[error("no network isolation on this machine ({missing}) and it was required")]
    NoNetworkIsolation {
        /// What is missing.
        missing: String,
    },
    /// The host runs as root and runs cannot be given an unprivileged user.
    #[error("running as root and {python} does not run as an unprivileged user (is it under a private home folder?): generated code would run as root; pass a system interpreter such as /usr/bin/python3, or allow it explicitly (allow_root, --allow-root)")]
    RootOnly {
        /// The interpreter.
        python: PathBuf,
    },
    /// A setting is out of range.
    #[error("sandbox setting {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Which optional layers runs get (decided once by probing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Layers {
    /// Switch to a per-run unprivileged uid (host runs as root).
    pub own_user: bool,
    /// `unshare(CLONE_NEWNET)` (with `CLONE_NEWUSER` when not root).
    pub net_namespace: bool,
    /// `unshare(CLONE_NEWIPC)`: System V shared memory, queues and semaphores of a run are its
    /// own and die with it.
    pub ipc_namespace: bool,
    /// The Landlock ABI version, 0 when unavailable.
    pub landlock_abi: u32,
    /// The seccomp filter.
    pub seccomp: bool,
}

/// A sandbox: settings plus the layers this machine supports. Cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: Arc<SandboxConfig>,
    layers: Layers,
    isolation: Arc<Vec<Layer>>,
    #[cfg(target_os = "linux")]
    uids: Arc<linux::UidPool>,
}

impl Sandbox {
    /// Check the settings and the interpreter, and probe the layers this machine supports.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let positive = |field: &'static str, v: u64| {
            if v == 0 {
                Err(SandboxError::Config {
                    field,
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("wall_ms", config.wall_ms)?;
        positive("cpu_seconds", config.cpu_seconds)?;
        positive("max_processes", config.max_processes)?;
        positive("max_open_files", config.max_open_files)?;
        positive("max_file_bytes", config.max_file_bytes)?;
        const DAY_MS: u64 = 24 * 3600 * 1000;
        if config.wall_ms > DAY_MS || config.cpu_seconds > DAY_MS / 1000 {
            return Err(SandboxError::Config {
                field: if config.wall_ms > DAY_MS {
                    "wall_ms"
                } else {
                    "cpu_seconds"
                },
                reason: "at most one day".into(),
            });
        }
        if config.memory_bytes < 64 << 20 {
            return Err(SandboxError::Config {
                field: "memory_bytes",
                reason: format!(
                    "{} bytes is too little for a Python interpreter (at least 64 MiB)",
                    config.memory_bytes
                ),
            });
        }
        // Orphans of a run become this process's children, so that they are reaped before the
        // run's uid is given to another run (see `reap_group`).
        #[cfg(target_os = "linux")]
        linux::become_subreaper();
        let mut sandbox = Sandbox {
            config: Arc::new(config),
            layers: Layers::default(),
            isolation: Arc::new(Vec::new()),
            #[cfg(target_os = "linux")]
            uids: linux::UidPool::global(),
        };
        // The interpreter must run with the base layers before anything is probed.
        let base = sandbox.run_with("pass\n", sandbox.layers);
        if base.outcome != Outcome::Passed {
            return Err(SandboxError::Python {
                path: sandbox.config.python.clone(),
                reason: base.detail.clone().unwrap_or_else(|| {
                    format!(
                        "`pass` ended {}: {}",
                        base.outcome.name(),
                        base.stderr.trim()
                    )
                }),
            });
        }
        #[cfg(target_os = "linux")]
        {
            sandbox.layers = linux::probe(&sandbox);
            if linux::is_root() && !sandbox.layers.own_user && !sandbox.config.allow_root {
                return Err(SandboxError::RootOnly {
                    python: sandbox.config.python.clone(),
                });
            }
        }
        let isolation = sandbox.describe();
        // Landlock alone only stops TCP (UDP, e.g. DNS, stays open): it does not count.
        let network = sandbox.layers.net_namespace || sandbox.layers.seccomp;
        if !network {
            let missing = "no network namespace and no seccomp socket filter".to_string();
            if sandbox.config.require_network_isolation {
                return Err(SandboxError::NoNetworkIsolation { missing });
            }
            tracing::warn!(
                "sandbox: generated code can reach the network on this machine: {missing}"
            );
        }
        sandbox.isolation = Arc::new(isolation);
        Ok(sandbox)
    }

    /// The settings.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The isolation layers and whether each is active.
    pub fn isolation(&self) -> &[Layer] {
        &self.isolation
    }

    fn describe(&self) -> Vec<Layer> {
        let c = &self.config;
        let mut v = vec![
            Layer {
                name: "working folder".into(),
                active: true,
                detail: "a fresh private temporary folder per run, removed afterwards".into(),
            },
            Layer {
                name: "environment".into(),
                active: true,
                detail: "scrubbed: only PATH, HOME and TMPDIR (the run's folder), LANG, PYTHONHASHSEED=0, PYTHONDONTWRITEBYTECODE, PYTHONIOENCODING; python -s -B".into(),
            },
            Layer {
                name: "process group".into(),
                active: true,
                detail: "own session; the whole group is killed when the run ends or times out".into(),
            },
            Layer {
                name: "resource limits".into(),
                active: true,
                detail: format!(
                    "wall {} ms, cpu {} s, address space {} MiB, {} processes, {} open files, files up to {} MiB, no core files, output capped at {} KiB",
                    c.wall_ms,
                    c.cpu_seconds,
                    c.memory_bytes >> 20,
                    c.max_processes,
                    c.max_open_files,
                    c.max_file_bytes >> 20,
                    c.max_output_bytes >> 10
                ),
            },
        ];
        #[cfg(target_os = "linux")]
        v.extend(linux::describe(&self.layers));
        #[cfg(not(target_os = "linux"))]
        v.push(Layer {
            name: "network".into(),
            active: false,
            detail: "namespaces, Landlock and seccomp are Linux-only".into(),
        });
        v
    }

    /// Run a Python program. Never panics on the program's behaviour: every ending is an
    /// [`Outcome`].
    pub fn run_python(&self, source: &str) -> RunReport {
        self.run_with(source, self.layers)
    }

    pub(crate) fn run_with(&self, source: &str, layers: Layers) -> RunReport {
        let start = Instant::now();
        let dir = match tempfile::Builder::new().prefix("rf-sandbox-").tempdir() {
            Ok(d) => d,
            Err(e) => return RunReport::failure(format!("temporary folder: {e}"), start),
        };
        let program = dir.path().join("main.py");
        if let Err(e) = std::fs::write(&program, source) {
            return RunReport::failure(format!("{}: {e}", program.display()), start);
        }
        let mut cmd = Command::new(&self.config.python);
        // Not `-I`: it would also ignore the PYTHON* variables set here. The environment is
        // ours (cleared), `-s` drops the user site folder and `-B` bytecode files.
        cmd.arg("-s")
            .arg("-B")
            .arg("main.py")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("TMPDIR", dir.path())
            .env("LANG", "C.UTF-8")
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(target_os = "linux")]
        let _guard = match linux::prepare(self, &mut cmd, dir.path(), layers) {
            Ok(g) => g,
            Err(e) => return RunReport::failure(e, start),
        };
        #[cfg(not(target_os = "linux"))]
        {
            let limits = posix_limits(&self.config);
            // SAFETY: only async-signal-safe calls (setsid, setrlimit) run in the child.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    apply_limits(&limits)
                });
            }
            let _ = layers;
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return RunReport::failure(
                    format!("cannot start {}: {e}", self.config.python.display()),
                    start,
                )
            }
        };
        let pgid = child.id() as libc::pid_t;
        let mut report = supervise(child, &self.config, start);
        // What the run left: its orphans (reaped before its uid goes back to the pool), then
        // its folder, removed even when the program made it deep or unreadable.
        reap_group(pgid);
        #[cfg(target_os = "linux")]
        drop(_guard);
        let path = dir.keep();
        if let Err(e) = remove_tree(&path) {
            tracing::error!(dir = %path.display(), error = %e, "sandbox: the run's folder was not removed");
            report.detail = Some(format!(
                "the run's folder {} could not be removed: {e}",
                path.display()
            ));
        }
        report
    }
}

/// A pool of worker threads that run programs through one sandbox, so that several tests run
/// at once and the caller can go on (e.g. keep the model generating) while they do.
pub struct Pool {
    tx: Option<std::sync::mpsc::Sender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

type Job = (String, std::sync::mpsc::Sender<RunReport>);

/// A submitted run; [`Pending::wait`] for its report.
pub struct Pending(std::sync::mpsc::Receiver<RunReport>);

impl Pending {
    /// Block until the run ends.
    pub fn wait(self) -> RunReport {
        self.0.recv().unwrap_or_else(|_| {
            RunReport::failure("the sandbox worker stopped".into(), Instant::now())
        })
    }

    /// The report if the run has ended.
    pub fn try_get(&self) -> Option<RunReport> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(RunReport::failure(
                "the sandbox worker stopped".into(),
                Instant::now(),
            )),
        }
    }
}

impl Pool {
    /// `workers` threads (at least 1) sharing `sandbox`.
    pub fn new(sandbox: Sandbox, workers: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut pool = Self {
            tx: Some(tx),
            workers: Vec::new(),
        };
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let sandbox = sandbox.clone();
            pool.workers.push(
                std::thread::Builder::new()
                    .name(format!("sandbox-{i}"))
                    .spawn(move || loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((source, reply)) = job else { return };
                        let _ = reply.send(sandbox.run_python(&source));
                    })?,
            );
        }
        Ok(pool)
    }

    /// Queue a program.
    pub fn submit(&self, source: String) -> Pending {
        let (reply, rx) = std::sync::mpsc::channel();
        if let Some(tx) = &self.tx {
            let _ = tx.send((source, reply));
        }
        Pending(rx)
    }

    /// Run programs in parallel; reports in the same order.
    pub fn run_all(&self, sources: Vec<String>) -> Vec<RunReport> {
        let pending: Vec<Pending> = sources.into_iter().map(|s| self.submit(s)).collect();
        pending.into_iter().map(Pending::wait).collect()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A resource limit to set in the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub resource: ResourceKind,
    pub soft: u64,
    pub hard: u64,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) type ResourceKind = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) type ResourceKind = libc::c_int;

pub(crate) fn posix_limits(c: &SandboxConfig) -> Vec<Limit> {
    vec![
        Limit {
            resource: libc::RLIMIT_AS as ResourceKind,
            soft: c.memory_bytes,
            hard: c.memory_bytes,
        },
        Limit {
            resource: libc::RLIMIT_CPU as ResourceKind,
            soft: c.cpu_seconds,
            hard: c.cpu_seconds.saturating_add(1),
        },
        Limit {
            resource: libc::RLIMIT_NOFILE as ResourceKind,
            soft: c.max_open_files,
            hard: c.max_open_files,
        },
        Limit {
            resource: libc::RLIMIT_FSIZE as ResourceKind,
            soft: c.max_file_bytes,
            hard: c.max_file_bytes,
        },
        Limit {
            resource: libc::RLIMIT_CORE as ResourceKind,
            soft: 0,
            hard: 0,
        },
    ]
}

/// Set the limits (async-signal-safe: only `setrlimit`).
pub(crate) fn apply_limits(limits: &[Limit]) -> std::io::Result<()> {
    for l in limits {
        let r = libc::rlimit {
            rlim_cur: l.soft as libc::rlim_t,
            rlim_max: l.hard as libc::rlim_t,
        };
        // SAFETY: a valid pointer to a local rlimit.
        if unsafe { libc::setrlimit(l.resource, &r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Read both pipes without blocking, enforce the deadline, kill the group, classify.
fn supervise(mut child: std::process::Child, c: &SandboxConfig, start: Instant) -> RunReport {
    let pgid = child.id() as libc::pid_t;
    let deadline = start + Duration::from_millis(c.wall_ms);
    let mut out = Capture::new(child.stdout.take(), c.max_output_bytes);
    let mut err = Capture::new(child.stderr.take(), c.max_output_bytes);
    let mut timed_out = false;
    loop {
        out.poll_read(&mut err, 10);
        if exited_unreaped(pgid) {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
    }
    // Kill the group while its leader is still an unreaped zombie: its pid, and so the group
    // id, cannot have been reused by another run. Whatever the program left behind dies too,
    // so no straggler keeps the pipes open or the CPU busy.
    kill_group(pgid);
    let status = child.wait().ok();
    let drain_until = Instant::now() + Duration::from_millis(500);
    while (out.open() || err.open()) && Instant::now() < drain_until {
        out.poll_read(&mut err, 10);
    }
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let truncated = out.dropped || err.dropped;
    let stdout = String::from_utf8_lossy(&out.buf).into_owned();
    let mut stderr = String::from_utf8_lossy(&err.buf).into_owned();
    if err.dropped {
        // The traceback is at the end: keep the tail too, marked, for the report and the
        // classification.
        stderr.push_str("\n[... output cut ...]\n");
        stderr.push_str(&String::from_utf8_lossy(&err.tail));
    }
    let Some(status) = status else {
        return RunReport::failure("lost track of the child process".into(), start);
    };
    let exit_code = status.code();
    let signal = status.signal();
    let outcome = classify(exit_code, signal, &stderr, timed_out);
    RunReport {
        outcome,
        exit_code,
        signal,
        stdout,
        stderr,
        truncated,
        wall_ms,
        detail: None,
    }
}

/// The outcome of a finished run.
pub fn classify(
    exit_code: Option<i32>,
    signal: Option<i32>,
    stderr: &str,
    timed_out: bool,
) -> Outcome {
    if timed_out {
        return Outcome::Timeout;
    }
    let last = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let memory = last.starts_with("MemoryError")
        || stderr.contains("\nMemoryError")
        || stderr.contains("Cannot allocate memory")
        || stderr.contains("cannot allocate memory");
    match (exit_code, signal) {
        (Some(0), _) => Outcome::Passed,
        (_, Some(s)) if s == libc::SIGXCPU => Outcome::Timeout,
        // SIGKILL from elsewhere (the OOM killer, the CPU hard limit after an ignored SIGXCPU)
        // is reported as such: the cause cannot be told apart here.
        (_, Some(s)) if s == libc::SIGKILL => Outcome::KilledBySignal,
        (_, Some(_)) if memory => Outcome::MemoryLimit,
        (_, Some(_)) => Outcome::KilledBySignal,
        _ if memory => Outcome::MemoryLimit,
        _ if last.starts_with("AssertionError") => Outcome::Failed,
        _ => Outcome::Error,
    }
}

/// One output pipe: non-blocking reads into a capped buffer.
struct Capture {
    pipe: Option<Box<dyn ReadFd>>,
    buf: Vec<u8>,
    cap: usize,
    dropped: bool,
    /// The last [`TAIL`] bytes read past the cap.
    tail: Vec<u8>,
}

/// Bytes of the end of an over-long stream kept besides its start.
const TAIL: usize = 4096;

trait ReadFd: Read + AsRawFd {}
impl<T: Read + AsRawFd> ReadFd for T {}

impl Capture {
    fn new<R: Read + AsRawFd + 'static>(pipe: Option<R>, cap: usize) -> Self {
        let pipe = pipe.map(|p| {
            // SAFETY: setting O_NONBLOCK on a pipe we own.
            unsafe {
                let fd = p.as_raw_fd();
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
            Box::new(p) as Box<dyn ReadFd>
        });
        Self {
            pipe,
            buf: Vec::new(),
            cap,
            dropped: false,
            tail: Vec::new(),
        }
    }

    fn open(&self) -> bool {
        self.pipe.is_some()
    }

    /// Wait up to `timeout_ms` for either pipe, then read what is there from both.
    fn poll_read(&mut self, other: &mut Capture, timeout_ms: i32) {
        let mut fds = Vec::with_capacity(2);
        for c in [&*self, &*other] {
            if let Some(p) = &c.pipe {
                fds.push(libc::pollfd {
                    fd: p.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(timeout_ms as u64));
            return;
        }
        // SAFETY: a valid array of pollfd of the given length.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms);
        }
        self.read_available();
        other.read_available();
    }

    fn read_available(&mut self) {
        let Some(p) = self.pipe.as_mut() else { return };
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match p.read(&mut chunk) {
                Ok(0) => {
                    self.pipe = None;
                    return;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.buf.len());
                    self.buf.extend_from_slice(&chunk[..n.min(room)]);
                    if n > room {
                        self.dropped = true;
                        self.tail.extend_from_slice(&chunk[room..n]);
                        if self.tail.len() > TAIL {
                            self.tail.drain(..self.tail.len() - TAIL);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.pipe = None;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
