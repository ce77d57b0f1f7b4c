//! Child processes the runtime starts (downloads, load probes).

use std::process::Command;

/// `cmd` dies with this process (Linux): a killed parent leaves no child running.
pub(crate) fn tied_to_us(cmd: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    cmd
}
