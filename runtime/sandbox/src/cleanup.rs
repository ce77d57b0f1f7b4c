//! What is left of a run once it ended: its processes (killed and reaped) and its folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Whether the child has exited, without reaping it (`waitid` with `WNOWAIT`).
pub(crate) fn exited_unreaped(pid: libc::pid_t) -> bool {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // With WNOHANG, si_pid stays 0 while the child runs; an error means it is gone.
        r != 0 || info.si_pid() != 0
    }
}

/// Reaps the processes of group `pgid` that became our children (this process is their
/// subreaper, see [`Sandbox::new`]) once the group was killed: a zombie would count against the
/// next run's process limit under the same uid. Stops when none is left, or after a second.
pub(crate) fn reap_group(pgid: libc::pid_t) {
    if pgid <= 1 {
        return;
    }
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on a process group we created; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        if r < 0 || Instant::now() >= until {
            return; // ECHILD: none of ours is left in the group
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Removes the folder `root` and everything in it, however deep: each subfolder is moved up to
/// `root` before it is emptied, so no path grows beyond three components and no descriptor is
/// held per level (a chain of thousands of folders made the usual recursive removal fail). A
/// folder the program made unreadable is opened up first. Symbolic links are removed, never
/// followed.
pub fn remove_tree(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let open_up = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
    // The entries of `dir`, read before any is moved (a folder changed while it is read may
    // show an entry twice).
    let list = |dir: &Path| -> std::io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    };
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.is_dir());
    let _ = open_up(root);
    // Folders directly in `root`, still to empty.
    let mut todo = Vec::new();
    for path in list(root)? {
        if is_dir(&path)? {
            todo.push(path);
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    let mut n = 0u64;
    while let Some(dir) = todo.pop() {
        let _ = open_up(&dir);
        for path in list(&dir)? {
            if !is_dir(&path)? {
                std::fs::remove_file(&path)?;
                continue;
            }
            let up = loop {
                n += 1;
                let up = root.join(format!(".rf-up-{n}"));
                if std::fs::symlink_metadata(&up).is_err() {
                    break up;
                }
            };
            std::fs::rename(&path, &up)?;
            todo.push(up);
        }
    }
    // Every folder is now a direct, empty child of `root`.
    for path in list(root)? {
        std::fs::remove_dir(&path)?;
    }
    std::fs::remove_dir(root)
}

pub(crate) fn kill_group(pgid: libc::pid_t) {
    if pgid > 1 {
        // SAFETY: signalling a process group we created; ESRCH when it is gone is fine.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}
