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

/// The commit checked out where the benchmark runs (`git rev-parse HEAD`), if any.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
pub use retroformer_core::rss::{peak_rss_bytes, rss_bytes};

/// The end of every benchmark: a note when the machine was not quiet at the start, and the
/// JSON report written atomically to `out` if one was asked for.
pub fn finish_report(
    report: &serde_json::Value,
    out: Option<&std::path::Path>,
    load_start: Option<f64>,
) -> Result<(), BenchError> {
    if let Some(l) = load_start {
        if l > 0.5 {
            println!("note: load average {l:.2} at the start: the machine was not quiet");
        }
    }
    if let Some(p) = out {
        let text = serde_json::to_string_pretty(report).expect("a JSON value serialises");
        retroformer_core::fsutil::write_atomic(p, text.as_bytes()).map_err(|source| {
            BenchError::Io {
                path: p.to_path_buf(),
                source,
            }
        })?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-12);
        assert!(median(&[]).is_nan());
        assert_eq!(spread(&[2.0, 5.0, 1.0]), (1.0, 5.0));
    }
}
