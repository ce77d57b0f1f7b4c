//! The Linux layers: a uid per run, a network namespace, Landlock and seccomp.
//!
//! Everything the child needs is prepared in the parent (the seccomp program, the Landlock
//! ruleset file descriptor, the limits); between `fork` and `exec` the child only makes
//! async-signal-safe system calls.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Condvar, Mutex};

use super::{apply_limits, posix_limits, Layer, Layers, Limit, ResourceKind, Sandbox};

/// First uid handed to runs when the host is root; far above login and subordinate-uid ranges.
pub const UID_BASE: u32 = 1_900_000_000;
/// Runs that can hold a uid at once.
const UID_SLOTS: usize = 256;

/// Per-run uids, so that the process limit and signals are per run.
#[derive(Debug)]
pub(crate) struct UidPool {
    used: Mutex<Vec<bool>>,
    freed: Condvar,
}

impl UidPool {
    pub(crate) fn new() -> Self {
        Self {
            used: Mutex::new(vec![false; UID_SLOTS]),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> u32 {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(i) = used.iter().position(|u| !u) {
                used[i] = true;
                return UID_BASE + i as u32;
            }
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self, uid: u32) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = used.get_mut((uid - UID_BASE) as usize) {
            *slot = false;
        }
        self.freed.notify_one();
    }
}

/// Held for the duration of a run: gives the uid back and closes the Landlock ruleset.
pub(crate) struct Guard<'a> {
    uid: Option<(u32, &'a UidPool)>,
    _ruleset: Option<OwnedFd>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some((uid, pool)) = self.uid.take() {
            // The run's process group has been killed by now, and with the seccomp layer no
            // process of the run can have left the group, so the uid is free again.
            pool.release(uid);
        }
    }
}

fn is_root() -> bool {
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
    let mut fs = FS_WRITE_FILE
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

/// A ruleset: no writes anywhere but beneath `dir` (and to `/dev/null`), no TCP bind or
/// connect (ABI 4+), no abstract Unix sockets or signals outside the sandbox (ABI 6+).
fn landlock_ruleset(abi: u32, dir: &Path) -> Result<OwnedFd, String> {
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
    let file_rights = FS_WRITE_FILE | if abi >= 3 { FS_TRUNCATE } else { 0 };
    for (path, allowed) in [(dir, fs), (Path::new("/dev/null"), file_rights)] {
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

// ---- seccomp --------------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter: sockets other than `AF_UNIX`, `setsid`, `setpgid`, `ptrace` and io_uring fail
/// with `EACCES`/`EPERM`; a foreign architecture (or the x32 ABI) kills the process.
fn seccomp_program() -> Option<Vec<libc::sock_filter>> {
    let arch = AUDIT_ARCH?;
    let denied: [(libc::c_long, u32); 4] = [
        (libc::SYS_setsid, libc::EPERM as u32),
        (libc::SYS_setpgid, libc::EPERM as u32),
        (libc::SYS_ptrace, libc::EPERM as u32),
        (libc::SYS_io_uring_setup, libc::EPERM as u32),
    ];
    let mut p = vec![
        stmt(BPF_LD_W_ABS, 4),       // seccomp_data.arch
        jump(BPF_JEQ_K, arch, 1, 0), // right architecture: go on
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
    ];
    if cfg!(target_arch = "x86_64") {
        // x32 system calls (nr | 0x40000000) would bypass the numbers below.
        p.push(jump(BPF_JGE_K, 0x4000_0000, 0, 1));
        p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
    }
    for (nr, errno) in denied {
        p.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
        p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ERRNO | errno));
    }
    // socket(domain, ...): only AF_UNIX.
    p.push(jump(BPF_JEQ_K, libc::SYS_socket as u32, 1, 0));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p.push(stmt(BPF_LD_W_ABS, 16)); // args[0], low 32 bits (little-endian)
    p.push(jump(BPF_JEQ_K, libc::AF_UNIX as u32, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p.push(stmt(
        BPF_RET_K,
        libc::SECCOMP_RET_ERRNO | libc::EACCES as u32,
    ));
    Some(p)
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
    let uid = if layers.own_user {
        let uid = sandbox.uids.acquire();
        let chown = |p: &Path| {
            std::os::unix::fs::chown(p, Some(uid), Some(uid))
                .map_err(|e| format!("chown {}: {e}", p.display()))
        };
        if let Err(e) = chown(dir).and_then(|_| chown(&dir.join("main.py"))) {
            sandbox.uids.release(uid);
            return Err(e);
        }
        Some(uid)
    } else {
        None
    };
    let guard_uid = uid.map(|u| (u, &*sandbox.uids));
    let ruleset = if layers.landlock_abi > 0 {
        match landlock_ruleset(layers.landlock_abi, dir) {
            Ok(fd) => Some(fd),
            Err(e) => {
                if let Some((u, pool)) = guard_uid {
                    pool.release(u);
                }
                return Err(e);
            }
        }
    } else {
        None
    };
    let ruleset_fd = ruleset.as_ref().map(|f| f.as_raw_fd());
    let program = if layers.seccomp {
        seccomp_program()
    } else {
        None
    };
    let net = layers.net_namespace;
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::setsid() < 0 {
                return fail();
            }
            apply_limits(&limits)?;
            if net {
                let flags = if root {
                    libc::CLONE_NEWNET
                } else {
                    libc::CLONE_NEWUSER | libc::CLONE_NEWNET
                };
                if libc::unshare(flags) != 0 {
                    return fail();
                }
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
    Ok(Guard {
        uid: guard_uid,
        _ruleset: ruleset,
    })
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
            detail: format!("runs as the invoking user (uid {uid}), not root; the process limit counts that user's other tasks"),
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
        Layer {
            name: "network: seccomp socket filter".into(),
            active: l.seccomp,
            detail: if l.seccomp {
                "socket() fails with EACCES for every family but AF_UNIX".into()
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
                format!("writes only inside the run's folder and to /dev/null (ABI {ll})")
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
                "setsid, setpgid, ptrace and io_uring_setup denied, so the group kill reaches every process".into()
            } else {
                "seccomp filters are not available here".into()
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Outcome, SandboxConfig};

    fn sandbox() -> Sandbox {
        Sandbox::new(SandboxConfig {
            wall_ms: 4_000,
            ..SandboxConfig::default()
        })
        .expect("python3 runs in the sandbox")
    }

    /// Each layer on its own must stop what it is there to stop (defence in depth: no layer
    /// relies on another).
    #[test]
    fn each_network_layer_alone_blocks_a_connection() {
        let s = sandbox();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let program = format!(
            "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')\n"
        );
        let open = s.run_with(&program, Layers::default());
        assert_eq!(
            open.outcome,
            Outcome::Passed,
            "the probe itself must work: {open:?}"
        );
        let probed = s.layers;
        let alone = [
            (
                probed.net_namespace,
                Layers {
                    net_namespace: true,
                    ..Layers::default()
                },
            ),
            (
                probed.seccomp,
                Layers {
                    seccomp: true,
                    ..Layers::default()
                },
            ),
            (
                probed.landlock_abi >= 4,
                Layers {
                    landlock_abi: probed.landlock_abi,
                    ..Layers::default()
                },
            ),
        ];
        for (available, layers) in alone {
            if available {
                let r = s.run_with(&program, layers);
                assert_eq!(r.outcome, Outcome::Error, "{layers:?}: {r:?}");
            }
        }
    }

    #[test]
    fn landlock_alone_blocks_writes_outside_the_folder() {
        let s = sandbox();
        if s.layers.landlock_abi == 0 {
            return;
        }
        let target = std::env::temp_dir().join(format!("rf-ll-{}", std::process::id()));
        let program = format!("open({:?}, 'w').write('x')\n", target.to_str().unwrap());
        let layers = Layers {
            landlock_abi: s.layers.landlock_abi,
            ..Layers::default()
        };
        let r = s.run_with(&program, layers);
        assert_eq!(r.outcome, Outcome::Error, "{r:?}");
        assert!(!target.exists());
    }

    #[test]
    fn the_seccomp_program_denies_setsid_and_allows_unix_sockets() {
        let s = sandbox();
        if !s.layers.seccomp {
            return;
        }
        let layers = Layers {
            seccomp: true,
            ..Layers::default()
        };
        let r = s.run_with("import os\nos.setsid()\n", layers);
        assert!(r.stderr.contains("PermissionError"), "{r:?}");
        let unix = s.run_with(
            "import socket\na, b = socket.socketpair()\na.send(b'hi')\nassert b.recv(2) == b'hi'\n",
            layers,
        );
        assert_eq!(unix.outcome, Outcome::Passed, "{unix:?}");
    }

    #[test]
    fn uids_are_handed_out_once_and_given_back() {
        let pool = UidPool::new();
        let a = pool.acquire();
        let b = pool.acquire();
        assert_ne!(a, b);
        pool.release(a);
        assert_eq!(pool.acquire(), a);
    }
}
