//! The Linux layers: a uid per run, a network namespace, Landlock and seccomp.
//!
//! Everything the child needs is prepared in the parent (the seccomp program, the Landlock
//! ruleset file descriptor, the limits); between `fork` and `exec` the child only makes
//! async-signal-safe system calls.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::{apply_limits, posix_limits, Layer, Layers, Limit, ResourceKind, Sandbox};

/// First uid handed to runs when the host is root; far above login and subordinate-uid ranges.
pub const UID_BASE: u32 = 1_900_000_000;
/// Runs that can hold a uid at once.
const UID_SLOTS: usize = 256;

/// Per-run uids, so that the process limit and signals are per run. One pool per process
/// ([`UidPool::global`]); across processes each uid is also held with an exclusive `flock` on
/// `/run/retroformer/uid-N.lock`, so two retroformer processes never share a uid.
#[derive(Debug)]
pub(crate) struct UidPool {
    used: Mutex<Vec<bool>>,
    freed: Condvar,
    lock_dir: Option<PathBuf>,
}

/// A uid held by a run.
pub(crate) struct HeldUid {
    pub uid: u32,
    _lock: Option<std::fs::File>,
}

impl UidPool {
    fn new(lock_dir: Option<PathBuf>) -> Self {
        Self {
            used: Mutex::new(vec![false; UID_SLOTS]),
            freed: Condvar::new(),
            lock_dir,
        }
    }

    /// The process-wide pool.
    pub(crate) fn global() -> Arc<UidPool> {
        static POOL: OnceLock<Arc<UidPool>> = OnceLock::new();
        Arc::clone(POOL.get_or_init(|| {
            let dir = PathBuf::from("/run/retroformer");
            let usable = is_root()
                && std::fs::create_dir_all(&dir).is_ok()
                && std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).is_ok();
            if is_root() && !usable {
                tracing::warn!(
                    "sandbox: cannot use {} for uid locks; two retroformer processes could hand the same uid to two runs",
                    dir.display()
                );
            }
            Arc::new(UidPool::new(usable.then_some(dir)))
        }))
    }

    /// Try to hold slot `i` across processes.
    fn lock_slot(&self, i: usize) -> Option<Option<std::fs::File>> {
        let Some(dir) = &self.lock_dir else {
            return Some(None);
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(format!("uid-{i}.lock")))
            .ok()?;
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        (r == 0).then_some(Some(f))
    }

    fn acquire(&self) -> HeldUid {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            for i in 0..UID_SLOTS {
                if used[i] {
                    continue;
                }
                if let Some(lock) = self.lock_slot(i) {
                    used[i] = true;
                    return HeldUid {
                        uid: UID_BASE + i as u32,
                        _lock: lock,
                    };
                }
            }
            // Every slot is busy here or in another process: wait a little and look again.
            used = self
                .freed
                .wait_timeout(used, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn release(&self, held: HeldUid) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = used.get_mut((held.uid - UID_BASE) as usize) {
            *slot = false;
        }
        drop(held);
        self.freed.notify_one();
    }
}

/// Kill every process of `uid` (a forked helper that becomes `uid` and signals -1), for runs
/// without the seccomp layer, whose processes may have left the run's process group.
fn kill_all_of(uid: u32) {
    let mut cmd = Command::new("/bin/true");
    // SAFETY: only async-signal-safe calls in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::kill(-1, libc::SIGKILL);
            Ok(())
        });
    }
    let _ = cmd.status();
}

/// Held for the duration of a run: gives the uid back and closes the Landlock ruleset.
pub(crate) struct Guard<'a> {
    uid: Option<(HeldUid, &'a UidPool)>,
    seccomp: bool,
    _ruleset: Option<OwnedFd>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some((held, pool)) = self.uid.take() {
            // The run's process group has been killed and reaped by now. With the seccomp
            // layer no process of the run can have left the group; without it, kill whatever
            // still runs as the uid. The uid goes back to the pool only once no task of it is
            // left, a zombie included (it would count against the next run's process limit).
            if !self.seccomp {
                kill_all_of(held.uid);
            }
            let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while uid_has_tasks(held.uid) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if uid_has_tasks(held.uid) {
                tracing::warn!(
                    uid = held.uid,
                    "sandbox: a run's processes outlived it; its uid is not reused"
                );
                std::mem::forget(held);
                return;
            }
            pool.release(held);
        }
    }
}

/// Makes this process the reaper of its descendants' orphans (`PR_SET_CHILD_SUBREAPER`).
pub(crate) fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Whether any task (a zombie included) runs as `uid`.
fn uid_has_tasks(uid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| e.file_name().as_bytes().iter().all(u8::is_ascii_digit))
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .any(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|s| s.parse::<u32>().ok())
                == Some(uid)
        })
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Tasks (processes and threads) the invoking user runs now, for a non-root `RLIMIT_NPROC`.
fn tasks_of_current_user() -> u64 {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut n = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 4096;
    };
    for e in dir.flatten() {
        if !e.file_name().as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let mut owner = None;
        let mut threads = 1;
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("Uid:") {
                owner = rest
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u32>().ok());
            } else if let Some(rest) = line.strip_prefix("Threads:") {
                threads = rest.trim().parse().unwrap_or(1);
            }
        }
        if owner == Some(uid) {
            n += threads;
        }
    }
    n
}

// ---- Landlock (uapi/linux/landlock.h) -------------------------------------------------------

const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;
const FS_EXECUTE: u64 = 1 << 0;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_REMOVE_DIR: u64 = 1 << 4;
const FS_REMOVE_FILE: u64 = 1 << 5;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_DIR: u64 = 1 << 7;
const FS_MAKE_REG: u64 = 1 << 8;
const FS_MAKE_SOCK: u64 = 1 << 9;
const FS_MAKE_FIFO: u64 = 1 << 10;
const FS_MAKE_BLOCK: u64 = 1 << 11;
const FS_MAKE_SYM: u64 = 1 << 12;
const FS_REFER: u64 = 1 << 13;
const FS_TRUNCATE: u64 = 1 << 14;
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version, 0 when Landlock is unavailable.
fn landlock_abi() -> u32 {
    // SAFETY: the documented version query: null attributes, size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        0
    } else {
        v as u32
    }
}

fn handled_fs(abi: u32) -> u64 {
    let mut fs = FS_EXECUTE
        | FS_READ_FILE
        | FS_READ_DIR
        | FS_WRITE_FILE
        | FS_REMOVE_DIR
        | FS_REMOVE_FILE
        | FS_MAKE_CHAR
        | FS_MAKE_DIR
        | FS_MAKE_REG
        | FS_MAKE_SOCK
        | FS_MAKE_FIFO
        | FS_MAKE_BLOCK
        | FS_MAKE_SYM;
    if abi >= 2 {
        fs |= FS_REFER;
    }
    if abi >= 3 {
        fs |= FS_TRUNCATE;
    }
    fs
}

/// Folders an interpreter needs to read (and execute from); the rest of the file system (home
/// folders, the project, the benchmark data with its hidden tests) is neither readable nor
/// writable.
const READ_ROOTS: [&str; 9] = [
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc",
    "/sys/devices/system/cpu",
];

/// The interpreter's installation prefix (`PREFIX/bin/python3` -> `PREFIX`), if it resolves.
fn python_prefix(python: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(python).ok()?;
    Some(real.parent()?.parent()?.to_path_buf())
}

/// A ruleset: reads only beneath [`READ_ROOTS`], the interpreter's prefix and `dir`; writes
/// only beneath `dir` (and to `/dev/null`); no TCP bind or connect (ABI 4+); no abstract Unix
/// sockets or signals outside the sandbox (ABI 6+).
fn landlock_ruleset(abi: u32, dir: &Path, python: &Path) -> Result<OwnedFd, String> {
    let fs = handled_fs(abi);
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    let size = match abi {
        0 => return Err("Landlock is not available".into()),
        1..=3 => 8,
        4 | 5 => 16,
        _ => 24,
    };
    // SAFETY: a valid attribute struct of at least `size` bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            size as usize,
            0u32,
        )
    };
    if fd < 0 {
        return Err(format!(
            "landlock_create_ruleset: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel returned a new file descriptor that we now own.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let truncate = if abi >= 3 { FS_TRUNCATE } else { 0 };
    let mut rules: Vec<(PathBuf, u64)> = vec![
        (dir.to_path_buf(), fs),
        (
            PathBuf::from("/dev/null"),
            FS_READ_FILE | FS_WRITE_FILE | truncate,
        ),
    ];
    for dev in ["/dev/urandom", "/dev/random", "/dev/zero"] {
        rules.push((PathBuf::from(dev), FS_READ_FILE));
    }
    let mut roots: Vec<PathBuf> = READ_ROOTS.iter().map(PathBuf::from).collect();
    roots.extend(python_prefix(python));
    for root in roots {
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => rules.push((root, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR)),
            Ok(_) => rules.push((root, FS_EXECUTE | FS_READ_FILE)),
            Err(_) => {}
        }
    }
    for (path, allowed) in &rules {
        let (path, allowed) = (path.as_path(), *allowed);
        if !path.exists() {
            continue;
        }
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{}: path contains a NUL byte", path.display()))?;
        // SAFETY: a valid C string; O_PATH opens without reading.
        let pfd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if pfd < 0 {
            return Err(format!(
                "{}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: we own the new descriptor.
        let pfd = unsafe { OwnedFd::from_raw_fd(pfd) };
        let rule = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: pfd.as_raw_fd(),
        };
        // SAFETY: valid ruleset fd and rule struct.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                LANDLOCK_RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(format!(
                "landlock_add_rule {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(ruleset)
}

// ---- putting it together --------------------------------------------------------------------

/// Configure `cmd` with every layer in `layers`; what the child runs between fork and exec is
/// async-signal-safe.
pub(crate) fn prepare<'a>(
    sandbox: &'a Sandbox,
    cmd: &mut Command,
    dir: &Path,
    layers: Layers,
) -> Result<Guard<'a>, String> {
    let c = &sandbox.config;
    let mut limits: Vec<Limit> = posix_limits(c);
    let root = is_root();
    let nproc = if layers.own_user || root {
        c.max_processes
    } else {
        // The limit counts every task of the user, not only the run's.
        tasks_of_current_user() + c.max_processes
    };
    limits.push(Limit {
        resource: libc::RLIMIT_NPROC as ResourceKind,
        soft: nproc,
        hard: nproc,
    });
    let mut guard = Guard {
        uid: None,
        seccomp: layers.seccomp,
        _ruleset: None,
    };
    let uid = if layers.own_user {
        let held = sandbox.uids.acquire();
        let uid = held.uid;
        guard.uid = Some((held, &*sandbox.uids));
        for p in [dir.to_path_buf(), dir.join("main.py")] {
            std::os::unix::fs::chown(&p, Some(uid), Some(uid))
                .map_err(|e| format!("chown {}: {e}", p.display()))?;
        }
        Some(uid)
    } else {
        None
    };
    let ruleset = if layers.landlock_abi > 0 {
        Some(landlock_ruleset(layers.landlock_abi, dir, &c.python)?)
    } else {
        None
    };
    let ruleset_fd = ruleset.as_ref().map(|f| f.as_raw_fd());
    let program = if layers.seccomp {
        seccomp_program()
    } else {
        None
    };
    let mut namespaces = 0;
    if layers.net_namespace {
        namespaces |= libc::CLONE_NEWNET;
    }
    if layers.ipc_namespace {
        namespaces |= libc::CLONE_NEWIPC;
    }
    if namespaces != 0 && !root {
        namespaces |= libc::CLONE_NEWUSER;
    }
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            // Descriptors the host opened without close-on-exec (llama.cpp's model files, a
            // driver's sockets) must not reach the program. CLOEXEC rather than close: std's
            // error pipe and the Landlock ruleset are needed until exec.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if libc::setsid() < 0 {
                return fail();
            }
            apply_limits(&limits)?;
            if namespaces != 0 && libc::unshare(namespaces) != 0 {
                return fail();
            }
            if let Some(uid) = uid {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    return fail();
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return fail();
            }
            if let Some(fd) = ruleset_fd {
                if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                    return fail();
                }
            }
            if let Some(p) = &program {
                let prog = libc::sock_fprog {
                    len: p.len() as u16,
                    filter: p.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
                {
                    return fail();
                }
            }
            Ok(())
        });
    }
    guard._ruleset = ruleset;
    Ok(guard)
}

/// Which optional layers work here: each is added in turn and kept if `pass` still runs.
pub(crate) fn probe(sandbox: &Sandbox) -> Layers {
    let mut layers = Layers::default();
    let works = |l: Layers| sandbox.run_with("pass\n", l).outcome == super::Outcome::Passed;
    if is_root() {
        let mut t = layers;
        t.own_user = true;
        if works(t) {
            layers = t;
        } else {
            tracing::warn!(
                "sandbox: {} does not run as an unprivileged user (is it under a private home \
                 folder?); generated code will run as root. Pass an interpreter such as \
                 /usr/bin/python3.",
                sandbox.config.python.display()
            );
        }
    }
    let mut t = layers;
    t.net_namespace = true;
    if works(t) {
        layers = t;
    }
    let mut t = layers;
    t.ipc_namespace = true;
    if works(t) {
        layers = t;
    }
    let abi = landlock_abi();
    if abi > 0 {
        let mut t = layers;
        t.landlock_abi = abi;
        if works(t) {
            layers = t;
        }
    }
    if AUDIT_ARCH.is_some() {
        let mut t = layers;
        t.seccomp = true;
        if works(t) {
            layers = t;
        }
    }
    layers
}

pub(crate) fn describe(l: &Layers) -> Vec<Layer> {
    let root = is_root();
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let user = if l.own_user {
        Layer {
            name: "unprivileged user".into(),
            active: true,
            detail: format!(
                "each run has its own uid from {UID_BASE} (no groups): the process limit is per run and runs cannot signal each other"
            ),
        }
    } else if root {
        Layer {
            name: "unprivileged user".into(),
            active: false,
            detail: "runs as root: the interpreter does not run as another user".into(),
        }
    } else {
        Layer {
            name: "unprivileged user".into(),
            active: true,
            detail: format!("runs as the invoking user (uid {uid}), not root, with no uid of its own: the process limit counts that user's other tasks, and without Landlock ABI 6 it could signal them"),
        }
    };
    let net_ns = Layer {
        name: "network namespace".into(),
        active: l.net_namespace,
        detail: if l.net_namespace {
            "a new network namespace: no interfaces but a down loopback".into()
        } else {
            "unshare(CLONE_NEWNET) is not permitted here".into()
        },
    };
    let ipc_ns = Layer {
        name: "IPC namespace".into(),
        active: l.ipc_namespace,
        detail: if l.ipc_namespace {
            "a new IPC namespace: System V shared memory, queues and semaphores are the run's own and die with it".into()
        } else {
            "unshare(CLONE_NEWIPC) is not permitted here".into()
        },
    };
    let ll = l.landlock_abi;
    let landlock_off = |what: &str, need: u32| {
        if ll == 0 {
            format!("Landlock is not available in this kernel ({what})")
        } else {
            format!("needs Landlock ABI {need}, this kernel has {ll}")
        }
    };
    vec![
        user,
        net_ns,
        ipc_ns,
        Layer {
            name: "network: seccomp socket filter".into(),
            active: l.seccomp,
            detail: if l.seccomp {
                "socket() fails with EACCES for every family (socketpair still works); kill(-1) denied".into()
            } else {
                "seccomp filters are not available here".into()
            },
        },
        Layer {
            name: "network: Landlock TCP".into(),
            active: ll >= 4,
            detail: if ll >= 4 {
                "TCP bind and connect denied".into()
            } else {
                landlock_off("TCP", 4)
            },
        },
        Layer {
            name: "filesystem: Landlock".into(),
            active: ll >= 1,
            detail: if ll >= 1 {
                format!("reads only system folders (/usr, /lib*, /bin, /etc, ...), the interpreter's prefix and the run's folder; writes only inside the run's folder and to /dev/null (ABI {ll})")
            } else {
                landlock_off("filesystem", 1)
            },
        },
        Layer {
            name: "signals: Landlock scope".into(),
            active: ll >= 6,
            detail: if ll >= 6 {
                "no signals or abstract Unix sockets outside the run".into()
            } else {
                landlock_off("signals", 6)
            },
        },
        Layer {
            name: "seccomp: group escape".into(),
            active: l.seccomp,
            detail: if l.seccomp {
                "setsid, setpgid, ptrace, io_uring_setup and every way into a namespace (unshare, setns, clone with a namespace flag, clone3) denied, so the group kill reaches every process; memfd_create (memory outside the address-space limit), the keyrings (state that outlives a run), userfaultfd and personality changes denied".into()
            } else {
                "seccomp filters are not available here".into()
            },
        },
    ]
}

mod seccomp;
use seccomp::{seccomp_program, AUDIT_ARCH};

#[cfg(test)]
mod tests;
