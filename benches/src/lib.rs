//! The benchmarks: the harness of `retroformer bench` ([`harness`]), and the helpers of the
//! bench targets in `benches/` (model resolution, medians, spreads, reports).

pub mod harness;

use std::path::PathBuf;

use harness::BenchError;

/// A model name or path as a file (fetching a named model if needed) and a label.
pub fn resolve_model(name: &str) -> Result<(PathBuf, String), BenchError> {
    let r = retroformer::backend::resolve(name, Some(&retroformer::fetch::Silent))?;
    let label = match &r.manifest {
        Some(m) => m.name.clone(),
        None => r.path.display().to_string(),
    };
    Ok((r.path, label))
}

/// Median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (min, max) of `xs`.
pub fn spread(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

pub use harness::system::load_average;

/// The commit and worktree state where the benchmark runs (shared with the run folders'
/// `sessions.json`).
pub use retroformer::provenance::{git_commit, git_dirty};
pub use retroformer_core::rss::{peak_rss_bytes, rss_bytes};

/// What every benchmark file records about where and how it ran: the machine (CPU model, the
/// SIMD flags that change ggml's speed, cores, memory, OS), the commit and whether the checkout
/// had changes, the threads the benchmark used, the versions of what it links, and the build.
pub fn provenance(threads: u32) -> serde_json::Value {
    let machine = harness::system::fingerprint("cpu");
    serde_json::json!({
        "machine": machine,
        "commit": git_commit(),
        "worktree_dirty": git_dirty(),
        "threads": threads,
        "versions": {
            "retroformer": env!("CARGO_PKG_VERSION"),
            "llama_cpp_binding": harness::system::LLAMA_CPP_BINDING,
        },
        "build": {
            "optimised": !cfg!(debug_assertions),
            // What the Rust code was compiled for (.cargo/config.toml asks for target-cpu=native).
            "rust_target_features": compiled_features(),
        },
    })
}

/// The SIMD features the Rust code of this build was compiled with.
fn compiled_features() -> Vec<&'static str> {
    [
        ("sse4.2", cfg!(target_feature = "sse4.2")),
        ("avx", cfg!(target_feature = "avx")),
        ("avx2", cfg!(target_feature = "avx2")),
        ("fma", cfg!(target_feature = "fma")),
        ("f16c", cfg!(target_feature = "f16c")),
        ("avx512f", cfg!(target_feature = "avx512f")),
        ("neon", cfg!(target_feature = "neon")),
        ("dotprod", cfg!(target_feature = "dotprod")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

/// The end of every benchmark: a note when the machine was not quiet at the start, and the
/// JSON report, with its [`provenance`] (the benchmark ran on `threads` threads) under
/// `"provenance"`, written atomically to `out` (its folder made) if one was asked for.
pub fn finish_report(
    report: &serde_json::Value,
    out: Option<&std::path::Path>,
    load_start: Option<f64>,
    threads: u32,
) -> Result<(), BenchError> {
    if let Some(l) = load_start {
        if l > 0.5 {
            println!("note: load average {l:.2} at the start: the machine was not quiet");
        }
    }
    if let Some(p) = out {
        let mut report = report.clone();
        if let Some(fields) = report.as_object_mut() {
            fields.insert("provenance".into(), provenance(threads));
        }
        let io = |source| BenchError::Io {
            path: p.to_path_buf(),
            source,
        };
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(&report).expect("a JSON value serialises");
        retroformer_core::fsutil::write_atomic(p, text.as_bytes()).map_err(io)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_report_carries_the_machine_commit_threads_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/report.json");
        let report = serde_json::json!({"format_version": 1, "figure": 2.5});
        finish_report(&report, Some(&out), None, 3).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["figure"], 2.5);
        let p = &v["provenance"];
        assert_eq!(p["threads"], 3);
        assert!(
            !p["machine"]["cpu_model"].as_str().unwrap().is_empty(),
            "{p}"
        );
        assert!(
            p["machine"]["simd"].is_array() && p["machine"]["logical_cores"].as_u64() > Some(0)
        );
        assert_eq!(
            p["versions"]["llama_cpp_binding"],
            harness::system::LLAMA_CPP_BINDING
        );
        // Run from a git checkout (the tests are), the commit is a full hash.
        assert_eq!(p["commit"].as_str().map(str::len), Some(40), "{p}");
        assert!(p["worktree_dirty"].is_boolean());
    }

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-12);
        assert!(median(&[]).is_nan());
        assert_eq!(spread(&[2.0, 5.0, 1.0]), (1.0, 5.0));
    }
}
