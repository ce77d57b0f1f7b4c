//! Where a step's time goes, by phase, when `RETROFORMER_PROFILE` is set: the engine adds each
//! phase's wall time here and the training loop logs the totals once per step (`tracing`,
//! target `retroformer_trainer::native`). Off, a phase costs one relaxed load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The phases of a step.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// The frozen projections' products (forward, and the input gradients of the backward).
    Projection,
    /// The LoRA factors' products and gradients.
    Lora,
    /// Attention, forward and backward.
    Attention,
    /// RMSNorm, RoPE, SwiGLU and residual adds.
    Elementwise,
    /// The output head and the log-softmax over the vocabulary.
    Head,
}

const NAMES: [&str; 5] = ["projection", "lora", "attention", "elementwise", "head"];
static NANOS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RETROFORMER_PROFILE").is_some())
}

/// Runs `f`, adding its wall time to `phase` when profiling.
pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let t = Instant::now();
    let out = f();
    NANOS[phase as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// The totals since the last call, `phase seconds` pairs, and resets them; `None` when not
/// profiling.
pub fn take() -> Option<String> {
    if !enabled() {
        return None;
    }
    let parts: Vec<String> = NAMES
        .iter()
        .zip(&NANOS)
        .map(|(n, a)| format!("{n} {:.3} s", a.swap(0, Ordering::Relaxed) as f64 / 1e9))
        .collect();
    Some(parts.join(", "))
}
