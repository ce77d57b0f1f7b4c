//! Hostile programs through the real sandbox: each gets its own outcome, the host is unharmed
//! and the next run still works.

#![cfg(unix)]

use retroformer_sandbox::{Outcome, Sandbox, SandboxConfig};
use std::sync::OnceLock;

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        Sandbox::new(SandboxConfig {
            wall_ms: 4_000,
            cpu_seconds: 3,
            memory_bytes: 256 << 20,
            max_processes: 16,
            max_file_bytes: 1 << 20,
            max_output_bytes: 4096,
            ..SandboxConfig::default()
        })
        .expect("python3 runs in the sandbox")
    })
}

/// Whether the layer `name` is active here (a test that needs an absent one skips, or fails
/// where `RETROFORMER_SANDBOX_REQUIRE` requires it: `retroformer_sandbox::testing`).
fn active(name: &str) -> bool {
    let on = sandbox()
        .isolation()
        .iter()
        .any(|l| l.name == name && l.active);
    retroformer_sandbox::testing::layer_present(on, name)
}

/// After each hostile run, an ordinary one still passes.
fn still_works() {
    let r = sandbox().run_python("print(sum(range(10)))\n");
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    assert_eq!(r.stdout.trim(), "45");
}

#[test]
fn passing_failing_and_erroring_programs_get_three_different_outcomes() {
    let s = sandbox();
    assert_eq!(s.run_python("assert 1 + 1 == 2\n").outcome, Outcome::Passed);
    let f = s.run_python("def f(x):\n    return x\nassert f(1) == 2\n");
    assert_eq!(f.outcome, Outcome::Failed, "{f:?}");
    let e = s.run_python("{}['missing']\n");
    assert_eq!(e.outcome, Outcome::Error, "{e:?}");
    assert_eq!(e.exception_line(), Some("KeyError: 'missing'"));
    let syntax = s.run_python("def f(:\n");
    assert_eq!(syntax.outcome, Outcome::Error);
}

#[test]
fn an_infinite_loop_times_out_and_is_killed() {
    let r = sandbox().run_python("while True:\n    pass\n");
    assert_eq!(r.outcome, Outcome::Timeout, "{r:?}");
    still_works();
}

#[test]
fn a_sleeping_program_is_killed_at_the_wall_clock_limit() {
    let r = sandbox().run_python("import time\ntime.sleep(60)\n");
    assert_eq!(r.outcome, Outcome::Timeout, "{r:?}");
    assert!(r.wall_ms < 10_000.0, "{}", r.wall_ms);
}

#[test]
fn a_memory_hog_hits_the_memory_limit() {
    let r = sandbox().run_python("x = bytearray(2 * 1024 ** 3)\n");
    assert_eq!(r.outcome, Outcome::MemoryLimit, "{r:?}");
    let grow = sandbox().run_python("x = []\nwhile True:\n    x.append('y' * 10**6)\n");
    assert_eq!(grow.outcome, Outcome::MemoryLimit, "{grow:?}");
    still_works();
}

#[test]
fn a_fork_bomb_is_contained_and_everything_it_started_is_killed() {
    let r = sandbox().run_python(
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n",
    );
    assert!(
        matches!(r.outcome, Outcome::Timeout | Outcome::Error),
        "{r:?}"
    );
    still_works();
}

#[test]
fn a_ten_gigabyte_write_is_stopped_at_the_file_size_limit() {
    let r = sandbox().run_python(
        "with open('big', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(b'x' * 2**20)\n",
    );
    assert_eq!(r.outcome, Outcome::Error, "{r:?}");
    assert!(r.stderr.contains("File too large"), "{}", r.stderr);
    still_works();
}

#[test]
fn a_write_outside_its_folder_fails_and_leaves_nothing_behind() {
    let target = std::env::temp_dir().join(format!("rf-escape-{}", std::process::id()));
    let r = sandbox().run_python(&format!(
        "open({:?}, 'w').write('escaped')\n",
        target.to_str().unwrap()
    ));
    if active("filesystem: Landlock")
        || active("unprivileged user") && !target_dir_is_world_writable()
    {
        assert_eq!(r.outcome, Outcome::Error, "{r:?}");
        assert!(r.stderr.contains("PermissionError"), "{}", r.stderr);
        assert!(!target.exists());
    } else {
        eprintln!("no filesystem layer here: outcome {:?}", r.outcome);
        let _ = std::fs::remove_file(&target);
    }
    // Its own folder is writable.
    let own =
        sandbox().run_python("open('here.txt', 'w').write('ok')\nprint(open('here.txt').read())\n");
    assert_eq!(own.outcome, Outcome::Passed, "{own:?}");
}

fn target_dir_is_world_writable() -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(std::env::temp_dir())
        .map(|m| m.permissions().mode() & 0o002 != 0)
        .unwrap_or(true)
}

#[test]
fn a_network_connection_is_refused() {
    // A listener on the host's loopback: the sandbox must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = sandbox().run_python(&format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')\n"
    ));
    let isolated = sandbox()
        .isolation()
        .iter()
        .any(|l| l.name.starts_with("network") && l.active);
    if isolated {
        assert_eq!(r.outcome, Outcome::Error, "{r:?}");
        assert!(!r.stdout.contains("connected"));
    } else {
        eprintln!("no network layer on this machine: {:?}", r.outcome);
    }
}

#[test]
fn a_process_that_ignores_sigterm_is_still_killed() {
    let r = sandbox().run_python(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)\n",
    );
    assert_eq!(r.outcome, Outcome::Timeout, "{r:?}");
    still_works();
}

#[test]
fn a_background_child_does_not_outlive_its_run() {
    // The child keeps the stdout pipe open; the run must still end when the parent exits.
    let r = sandbox().run_python(
        "import os, time\nif os.fork() == 0:\n    time.sleep(30)\nprint('parent done')\n",
    );
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    assert!(r.wall_ms < 3_000.0, "{}", r.wall_ms);
}

#[test]
fn escaping_the_process_group_is_denied_when_seccomp_is_active() {
    let r = sandbox().run_python("import os\nos.setsid()\n");
    if active("seccomp: group escape") {
        assert_eq!(r.outcome, Outcome::Error, "{r:?}");
        assert!(r.stderr.contains("PermissionError"), "{}", r.stderr);
    }
}

#[test]
fn a_huge_print_is_capped_and_marked_truncated() {
    let r = sandbox().run_python("print('x' * 50_000_000)\n");
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    assert!(r.truncated);
    assert_eq!(r.stdout.len(), 4096);
    still_works();
}

#[test]
fn a_signal_death_is_its_own_outcome() {
    let r = sandbox().run_python("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n");
    assert_eq!(r.outcome, Outcome::KilledBySignal, "{r:?}");
    assert_eq!(r.signal, Some(libc::SIGSEGV));
}

#[test]
fn the_environment_is_scrubbed() {
    // SAFETY (test): set before any run in this process reads the environment.
    let r = sandbox().run_python("import os\nprint(sorted(os.environ))\n");
    assert_eq!(r.outcome, Outcome::Passed);
    assert!(!r.stdout.contains("CARGO"), "{}", r.stdout);
    assert!(!r.stdout.contains("RETROFORMER"), "{}", r.stdout);
}

#[test]
fn a_missing_interpreter_is_a_clear_setup_error() {
    let err = Sandbox::new(SandboxConfig {
        python: "/nonexistent/python3".into(),
        ..SandboxConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/python3"), "{err}");
}

#[test]
fn runs_in_parallel_threads_do_not_disturb_each_other() {
    let handles: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                let r = sandbox().run_python(&format!("print({i} * {i})\n"));
                (i, r)
            })
        })
        .collect();
    for h in handles {
        let (i, r) = h.join().unwrap();
        assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
        assert_eq!(r.stdout.trim(), (i * i).to_string());
    }
}

#[test]
fn the_project_and_its_benchmark_data_cannot_be_read() {
    // The hidden tests live in files like these: a program must not be able to read them.
    let secret = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let r = sandbox().run_python(&format!(
        "print(open({:?}).read()[:20])\n",
        secret.to_str().unwrap()
    ));
    if active("filesystem: Landlock") {
        assert_eq!(r.outcome, Outcome::Error, "{r:?}");
        assert!(r.stderr.contains("PermissionError"), "{}", r.stderr);
    }
    // The standard library still imports.
    let ok = sandbox().run_python("import json, math, re, collections, itertools, hashlib, random\nprint(json.dumps(math.pi))\n");
    assert_eq!(ok.outcome, Outcome::Passed, "{ok:?}");
}

#[test]
fn descriptors_the_host_left_open_do_not_reach_the_program() {
    // A descriptor opened without close-on-exec, as llama.cpp opens model files.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: open with a valid C string; closed below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let r = sandbox().run_python(&format!(
        "import os\ntry:\n    os.fstat({fd})\n    print('open')\nexcept OSError:\n    print('closed')\n"
    ));
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    assert_eq!(r.stdout.trim(), "closed", "{r:?}");
}

/// Whether any task (a zombie included) runs as `uid`.
#[cfg(target_os = "linux")]
fn uid_has_tasks(uid: u32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .any(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|u| u.parse::<u32>().ok())
                == Some(uid)
        })
}

#[test]
fn system_v_shared_memory_queues_and_semaphores_die_with_their_run() {
    if !active("IPC namespace") {
        return;
    }
    let make = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nkey = 0x52460001\n\
        shm = libc.shmget(key, 256 << 20, 0o1666)\nq = libc.msgget(key, 0o1666)\n\
        sem = libc.semget(key, 1, 0o1666)\nprint(shm, q, sem)\nassert min(shm, q, sem) >= 0\n";
    let r = sandbox().run_python(make);
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    // Not in the host's namespace, and not there for the next run.
    for table in ["shm", "msg", "sem"] {
        let t = std::fs::read_to_string(format!("/proc/sysvipc/{table}")).unwrap_or_default();
        assert!(!t.contains("1380319233"), "{table}: {t}");
    }
    let find = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nkey = 0x52460001\n\
        print(libc.shmget(key, 0, 0), libc.msgget(key, 0), libc.semget(key, 0, 0))\n";
    let r = sandbox().run_python(find);
    assert_eq!(r.stdout.trim(), "-1 -1 -1", "{r:?}");
}

#[test]
fn memory_files_that_escape_the_address_space_limit_are_denied() {
    if !active("seccomp: group escape") {
        return;
    }
    let r = sandbox().run_python(
        "import os\nfd = os.memfd_create('x')\nos.ftruncate(fd, 1 << 30)\nprint('made', fd)\n",
    );
    assert_eq!(r.outcome, Outcome::Error, "{r:?}");
    assert!(r.stderr.contains("PermissionError"), "{r:?}");
    still_works();
}

#[test]
fn the_kernel_keyrings_are_denied() {
    if !active("seccomp: group escape") {
        return;
    }
    let (add_key, keyctl) = if cfg!(target_arch = "aarch64") {
        (217, 219)
    } else {
        (248, 250)
    };
    let r = sandbox().run_python(&format!(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         k = libc.syscall({add_key}, b'user', b'rf-secret', b'leak', 4, -3)\n\
         e1 = ctypes.get_errno()\nr = libc.syscall({keyctl}, 0, -3, 0)\ne2 = ctypes.get_errno()\n\
         print(k, e1, r, e2)\n"
    ));
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    assert_eq!(r.stdout.trim(), "-1 1 -1 1", "EPERM for both: {r:?}");
}

#[test]
fn a_deep_unreadable_folder_chain_is_removed_after_its_run() {
    let r = sandbox().run_python(
        "import os\nprint(os.getcwd(), flush=True)\nfor i in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\n\
         open('f', 'w').write('x')\nos.chdir(os.environ['HOME'])\nos.chmod('d', 0)\n",
    );
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    assert!(r.detail.is_none(), "{r:?}");
    let dir = r.stdout.lines().next().unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} is still there");
}

#[test]
#[cfg(target_os = "linux")]
fn zombies_of_a_run_are_reaped_before_its_uid_is_given_to_another_run() {
    if !active("unprivileged user") || !active("seccomp: group escape") {
        return;
    }
    // Children that exit while their parent never waits for them, then the parent exits: the
    // zombies are left to whoever adopts them.
    let r = sandbox().run_python(
        "import os, time\nprint(os.getuid(), flush=True)\nfor i in range(10):\n    if os.fork() == 0:\n        os._exit(0)\n\
         time.sleep(0.2)\nos._exit(0)\n",
    );
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    let uid: u32 = r.stdout.trim().parse().unwrap();
    assert!(
        !uid_has_tasks(uid),
        "processes of uid {uid} outlived the run"
    );
    still_works();
}

#[test]
fn every_way_into_another_namespace_is_denied_and_threads_and_fork_still_work() {
    if !active("seccomp: group escape") {
        return;
    }
    // Syscall numbers: clone, clone3, unshare, setns, userfaultfd, personality.
    let nr = if cfg!(target_arch = "aarch64") {
        [220, 435, 97, 268, 282, 92]
    } else {
        [56, 435, 272, 308, 323, 135]
    };
    let program = format!(
        "import ctypes, os, struct, threading\n\
         CLONE, CLONE3, UNSHARE, SETNS, UFFD, PERS = {nr:?}\n\
         NEWUSER, NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17\n\
         libc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n\
         def call(*a):\n    ctypes.set_errno(0)\n    r = libc.syscall(*[ctypes.c_long(x) for x in a])\n\
         \x20   if r == 0 and a[0] in (CLONE, CLONE3):\n        os._exit(0)\n\
         \x20   return r, ctypes.get_errno()\n\
         args = ctypes.create_string_buffer(struct.pack('8Q', NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0))\n\
         ns = os.open('/proc/self/ns/net', os.O_RDONLY)\n\
         print('unshare', *call(UNSHARE, NEWUSER))\n\
         print('setns', *call(SETNS, ns, 0))\n\
         print('clone', *call(CLONE, NEWUSER | SIGCHLD, 0, 0, 0, 0))\n\
         print('clone-net', *call(CLONE, NEWNET | SIGCHLD, 0, 0, 0, 0))\n\
         print('clone3', *call(CLONE3, ctypes.addressof(args), 64))\n\
         print('userfaultfd', *call(UFFD, 0))\n\
         print('personality', *call(PERS, 0x0040000))\n\
         print('query', call(PERS, 0xffffffff)[0] >= 0)\n\
         t = threading.Thread(target=lambda: None)\nt.start()\nt.join()\n\
         pid = os.fork()\nif pid == 0:\n    os._exit(7)\n\
         print('fork', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    );
    let r = sandbox().run_python(&program);
    assert_eq!(r.outcome, Outcome::Passed, "{r:?}");
    let want = "unshare -1 1\nsetns -1 1\nclone -1 1\nclone-net -1 1\nclone3 -1 38\n\
                userfaultfd -1 1\npersonality -1 1\nquery True\nfork 7";
    assert_eq!(r.stdout.trim(), want, "EPERM, and ENOSYS for clone3: {r:?}");
    still_works();
}
