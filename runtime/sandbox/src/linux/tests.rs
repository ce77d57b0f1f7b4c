use super::*;
use crate::{Outcome, SandboxConfig};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        wall_ms: 4_000,
        ..SandboxConfig::default()
    })
    .expect("python3 runs in the sandbox")
}

use crate::testing::layer_present as present;

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
            present(probed.net_namespace, "network namespace"),
            Layers {
                net_namespace: true,
                ..Layers::default()
            },
        ),
        (
            present(probed.seccomp, "network: seccomp socket filter"),
            Layers {
                seccomp: true,
                ..Layers::default()
            },
        ),
        (
            present(probed.landlock_abi >= 4, "network: Landlock TCP"),
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
    if !present(s.layers.landlock_abi > 0, "filesystem: Landlock") {
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
fn the_seccomp_program_denies_setsid_and_sockets_but_allows_socketpair() {
    let s = sandbox();
    if !present(s.layers.seccomp, "seccomp: group escape") {
        return;
    }
    let layers = Layers {
        seccomp: true,
        ..Layers::default()
    };
    let r = s.run_with("import os\nos.setsid()\n", layers);
    assert!(r.stderr.contains("PermissionError"), "{r:?}");
    let unix = s.run_with(
        "import socket\nsocket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n",
        layers,
    );
    assert!(unix.stderr.contains("PermissionError"), "{unix:?}");
    let all = s.run_with("import os\nos.kill(-1, 9)\n", layers);
    assert!(all.stderr.contains("PermissionError"), "{all:?}");
    let unix = s.run_with(
        "import socket\na, b = socket.socketpair()\na.send(b'hi')\nassert b.recv(2) == b'hi'\n",
        layers,
    );
    assert_eq!(unix.outcome, Outcome::Passed, "{unix:?}");
}

#[test]
fn uids_are_handed_out_once_and_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let pool = UidPool::new(Some(dir.path().to_path_buf()));
    let a = pool.acquire();
    let b = pool.acquire();
    assert_ne!(a.uid, b.uid);
    // Another process (here: another pool on the same lock folder) skips held uids.
    let other = UidPool::new(Some(dir.path().to_path_buf()));
    let c = other.acquire();
    assert!(c.uid != a.uid && c.uid != b.uid);
    let a_uid = a.uid;
    pool.release(a);
    assert_eq!(pool.acquire().uid, a_uid);
}
