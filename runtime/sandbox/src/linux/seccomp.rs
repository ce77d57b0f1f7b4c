//! The run's seccomp filter, as classic BPF: which system calls fail, and with what.

#[cfg(target_arch = "x86_64")]
pub(super) const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
pub(super) const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) const AUDIT_ARCH: Option<u32> = None;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
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

/// The clone flags that make a new namespace (`CLONE_NEWTIME` shares its bit with the exit
/// signal in `clone`, so only `clone3` and `unshare` take it: both are denied whole).
const NEW_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// The filter: `socket` (every family: a Unix socket by path reaches services outside the
/// sandbox; `socketpair` still works), `setsid`, `setpgid`, `ptrace`, io_uring, memfd, the
/// keyrings, `userfaultfd`, every way into another namespace (`unshare`, `setns`, `clone` with
/// a namespace flag; `clone3`, whose flags sit in memory a filter cannot read, fails with
/// `ENOSYS` so that libc falls back to `clone`), `personality` other than a query or plain
/// Linux (it can turn address randomisation off for what the run executes) and `kill(-1)`
/// fail with `EACCES`/`EPERM`; a foreign architecture (or the x32 ABI) kills the process.
pub(super) fn seccomp_program() -> Option<Vec<libc::sock_filter>> {
    let arch = AUDIT_ARCH?;
    let eperm = libc::EPERM as u32;
    let denied: [(libc::c_long, u32); 14] = [
        (libc::SYS_socket, libc::EACCES as u32),
        (libc::SYS_setsid, eperm),
        (libc::SYS_setpgid, eperm),
        (libc::SYS_ptrace, eperm),
        (libc::SYS_io_uring_setup, eperm),
        // Anonymous memory files escape the address-space limit (their pages are not mapped).
        (libc::SYS_memfd_create, eperm),
        (libc::SYS_memfd_secret, eperm),
        // The kernel keyrings outlive a run and are shared by its uid's later runs.
        (libc::SYS_add_key, eperm),
        (libc::SYS_request_key, eperm),
        (libc::SYS_keyctl, eperm),
        // Another namespace would escape the run's (the IPC one among them).
        (libc::SYS_unshare, eperm),
        (libc::SYS_setns, eperm),
        (libc::SYS_clone3, libc::ENOSYS as u32),
        // A page-fault handler in user space stretches kernel races wide open.
        (libc::SYS_userfaultfd, eperm),
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
    // clone(flags, ...): no flag that makes a namespace.
    p.push(jump(BPF_JEQ_K, libc::SYS_clone as u32, 0, 4));
    p.push(stmt(BPF_LD_W_ABS, 16)); // args[0], low 32 bits (little-endian)
    p.push(jump(BPF_JSET_K, NEW_NAMESPACES, 0, 1));
    p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ERRNO | eperm));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    // personality(persona): only a query (0xffffffff) or plain Linux (0).
    p.push(jump(BPF_JEQ_K, libc::SYS_personality as u32, 0, 5));
    p.push(stmt(BPF_LD_W_ABS, 16));
    p.push(jump(BPF_JEQ_K, u32::MAX, 2, 0));
    p.push(jump(BPF_JEQ_K, 0, 1, 0));
    p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ERRNO | eperm));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    // kill(pid, ...): not pid -1 (every process the run's user may signal).
    p.push(jump(BPF_JEQ_K, libc::SYS_kill as u32, 1, 0));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p.push(stmt(BPF_LD_W_ABS, 16)); // args[0], low 32 bits (little-endian)
    p.push(jump(BPF_JEQ_K, u32::MAX, 0, 1));
    p.push(stmt(
        BPF_RET_K,
        libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    ));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    Some(p)
}
