//! What a process says when a file it has memory-mapped shrinks under it. llama.cpp maps model
//! files (`mmap = true` in a profile); if one is truncated while in use, the next read of a
//! vanished page raises SIGBUS, which would end the process with no word of why. With
//! [`install_report`], the process instead prints which files were mapped and exits with
//! status 1, as for any other error. (Nothing can carry on: the weights are gone.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

/// The message the handler writes: a leaked buffer, replaced (never freed) as models load.
static MESSAGE: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());
static MAPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Makes a SIGBUS in this process print the mapped model files and exit with status 1.
/// Process-wide; for binaries (a library embedding us keeps its own signal handling).
pub fn install_report() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    publish(&MAPPED.lock().unwrap_or_else(|e| e.into_inner()));
    // SAFETY: a zeroed sigaction with a handler that only calls async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// Records that `path` is memory-mapped (for the message).
pub(crate) fn note_mapped(path: &Path) {
    let mut all = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    all.push(path.display().to_string());
    publish(&all);
}

fn publish(mapped: &[String]) {
    let text = format!(
        "error: a memory-mapped model file shrank under this process (SIGBUS: truncated or \
         replaced in place while in use). Mapped: {}. Restore it (or fetch it again), or use a \
         target whose mmap is off.\n",
        if mapped.is_empty() {
            "none recorded".to_string()
        } else {
            mapped.join(", ")
        }
    );
    // Leaked on purpose: the handler may be reading the previous one.
    MESSAGE.store(Box::into_raw(Box::new(text.into_bytes())), Ordering::SeqCst);
}

extern "C" fn on_sigbus(_: libc::c_int) {
    let m = MESSAGE.load(Ordering::SeqCst);
    // SAFETY: `m` is null or a leaked, never-mutated Vec; write and _exit are
    // async-signal-safe.
    unsafe {
        if let Some(v) = m.as_ref() {
            libc::write(2, v.as_ptr().cast(), v.len());
        }
        libc::_exit(1);
    }
}
