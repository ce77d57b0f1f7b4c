//! Child processes the lab waits on (the trainer): started so that they end with the lab.

use std::path::PathBuf;
use std::time::Instant;

use crate::LabError;

/// `retroformer-train`: `$RETROFORMER_TRAIN`, else next to this program, else on `PATH`.
pub fn trainer() -> std::process::Command {
    if let Some(p) = std::env::var_os("RETROFORMER_TRAIN") {
        return std::process::Command::new(p);
    }
    let name = format!("retroformer-train{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(&name)))
        .filter(|p| p.is_file());
    std::process::Command::new(beside.unwrap_or_else(|| PathBuf::from(name)))
}

/// What the trainer child will refuse of `--rank`, `--alpha`, `--lr` and `--max-len` (its own
/// checks), found before the hours of collection that precede training.
pub fn check_training(rank: usize, alpha: f32, lr: f64, max_len: usize) -> Result<(), LabError> {
    let bad = |flag: &str, why: String| Err(LabError::setting(flag, why));
    if !(1..=1024).contains(&rank) {
        return bad("rank", format!("{rank}: must be 1 to 1024"));
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return bad("alpha", format!("{alpha}: must be a positive number"));
    }
    if !(lr.is_finite() && lr > 0.0) {
        return bad("lr", format!("{lr}: must be a positive number"));
    }
    if max_len < 2 {
        return bad("max-len", format!("{max_len}: must be at least 2"));
    }
    Ok(())
}

/// Runs `cmd` to the end (output passed through): its wall seconds and peak resident memory.
pub(crate) fn run_child(
    what: &str,
    cmd: &mut std::process::Command,
) -> Result<(f64, Option<u64>), LabError> {
    let err = |message: String| LabError::Child {
        what: what.into(),
        message,
    };
    let start = Instant::now();
    die_with_parent(cmd);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| err(format!("starting {:?}: {e}", cmd.get_program())))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (std's Child is dropped without waiting).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc < 0 {
        return Err(err(format!("wait4: {}", std::io::Error::last_os_error())));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(err(format!(
            "failed (wait status {status}); its errors are above"
        )));
    }
    // Linux reports kilobytes, macOS bytes.
    let peak = if cfg!(target_os = "macos") {
        ru.ru_maxrss as u64
    } else {
        ru.ru_maxrss as u64 * 1024
    };
    Ok((start.elapsed().as_secs_f64(), Some(peak)))
}

/// Asks the kernel to end the child when the thread that started it dies (Linux): a lab
/// killed mid-training would otherwise leave its trainer running, and the resumed lab would
/// start a second one on the same checkpoint folder. `run_child` waits on the same thread, so
/// that thread lives as long as the child.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec; it calls only async-signal-safe
    // functions (prctl, getppid, _exit) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the request took effect: no signal will come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut std::process::Command) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn training_settings_the_trainer_would_refuse_are_refused_by_flag() {
        let flag = |r: Result<(), LabError>| match r {
            Err(LabError::Setting { flag, .. }) => flag,
            other => panic!("{other:?}"),
        };
        assert!(check_training(4, 8.0, 2e-4, 3072).is_ok());
        assert_eq!(flag(check_training(0, 8.0, 2e-4, 3072)), "rank");
        assert_eq!(flag(check_training(4, f32::NAN, 2e-4, 3072)), "alpha");
        assert_eq!(flag(check_training(4, 8.0, 0.0, 3072)), "lr");
        assert_eq!(flag(check_training(4, 8.0, 2e-4, 1)), "max-len");
    }

    const PIDFILE: &str = "RETROFORMER_TEST_CHILD_PIDFILE";
    const NAME: &str = "child::tests::a_child_ends_when_the_process_that_waits_on_it_is_killed";

    /// Whether `pid` is gone (or a zombie that nobody reaped yet).
    fn ended(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    #[test]
    fn a_child_ends_when_the_process_that_waits_on_it_is_killed() {
        if let Some(file) = std::env::var_os(PIDFILE) {
            // Run as the helper below: wait on a long child that names itself.
            let script = format!("echo $$ > '{}'; exec sleep 60", file.to_string_lossy());
            let _ = run_child(
                "sleeper",
                std::process::Command::new("sh").args(["-c", &script]),
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads", "1"])
            .env(PIDFILE, &pidfile)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let waited = Instant::now();
        let pid = loop {
            let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
            if let Ok(pid) = text.trim().parse::<u32>() {
                break pid;
            }
            assert!(
                waited.elapsed().as_secs() < 30,
                "the helper never started its child"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(!ended(pid));
        helper.kill().unwrap();
        helper.wait().unwrap();
        let killed = Instant::now();
        while !ended(pid) {
            assert!(
                killed.elapsed().as_secs() < 10,
                "child {pid} outlived its parent"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
