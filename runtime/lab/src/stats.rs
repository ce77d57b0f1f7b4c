//! The paired statistics of two arms' outcomes on the same tasks: the 2x2 [`Table`], the exact
//! McNemar test, and three intervals of the difference in success rates: the paired bootstrap,
//! Newcombe's score interval and the exact conditional interval, the one that excludes 0
//! exactly when McNemar's p is below its level (so that a verdict and its interval never
//! disagree).

use retroformer_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// The paired 2x2 table of one trial: tasks solved by both runs, only by `a`, only by `b`,
/// by neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Solved by both.
    pub both: usize,
    /// Solved by `a` only.
    pub only_a: usize,
    /// Solved by `b` only.
    pub only_b: usize,
    /// Solved by neither.
    pub neither: usize,
}

impl Table {
    /// Tasks in the table.
    pub fn n(&self) -> usize {
        self.both + self.only_a + self.only_b + self.neither
    }

    /// The table of two runs' outcomes, task by task.
    pub fn of(a: &[bool], b: &[bool]) -> Table {
        let mut t = Table::default();
        for (&x, &y) in a.iter().zip(b) {
            match (x, y) {
                (true, true) => t.both += 1,
                (true, false) => t.only_a += 1,
                (false, true) => t.only_b += 1,
                (false, false) => t.neither += 1,
            }
        }
        t
    }
}

/// P(X <= k) for X ~ Bin(n, 1/2), accurate for n in the many thousands: the terms are summed
/// relative to the largest, and that one's logarithm is computed exactly enough, so nothing
/// overflows or loses the tail.
pub fn binomial_cdf_half(n: u64, k: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    if 2 * k >= n {
        // Symmetry: P(X <= k) = 1 - P(X >= k + 1) = 1 - P(X <= n - k - 1).
        return 1.0 - lower_tail_half(n, n - k - 1);
    }
    lower_tail_half(n, k)
}

/// P(X <= k) for 2k < n, where P(X = j) grows with j up to k.
fn lower_tail_half(n: u64, k: u64) -> f64 {
    let ln_choose: f64 = (1..=k).map(|i| ((n - k + i) as f64 / i as f64).ln()).sum();
    let ln_top = ln_choose - n as f64 * std::f64::consts::LN_2;
    // Terms relative to P(X = k): P(X = j - 1) / P(X = j) = j / (n - j + 1).
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for j in (1..=k).rev() {
        term *= j as f64 / (n - j + 1) as f64;
        sum += term;
        if term < sum * 1e-18 {
            break;
        }
    }
    (ln_top + sum.ln()).exp()
}

/// The exact two-sided McNemar p-value of `b` and `c` discordant pairs: a binomial test of
/// min(b, c) in b + c trials at 1/2, doubled, at most 1; 1 without discordant pairs.
pub fn mcnemar_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    (2.0 * binomial_cdf_half(n, b.min(c))).min(1.0)
}

/// The percentile interval, at `confidence`, of `rate_b - rate_a` over `resamples` resamples
/// of the table's tasks with replacement (the paired bootstrap: a task keeps both outcomes),
/// drawn with SplitMix64 from `seed`.
pub fn bootstrap_interval(t: &Table, resamples: u32, seed: u64, confidence: f64) -> [f64; 2] {
    let n = t.n();
    if n == 0 || resamples == 0 {
        return [0.0, 0.0];
    }
    if t.only_a + t.only_b == 0 {
        // Every resample is concordant: the difference is 0 in each.
        return [0.0, 0.0];
    }
    let mut rng = SplitMix64::new(seed);
    // Tasks in the order only-a, only-b, concordant: a draw's index says its kind.
    let (a_end, b_end) = (t.only_a, t.only_a + t.only_b);
    let mut diffs: Vec<i64> = (0..resamples)
        .map(|_| {
            let mut d = 0i64;
            for _ in 0..n {
                let k = rng.below(n);
                if k < a_end {
                    d -= 1;
                } else if k < b_end {
                    d += 1;
                }
            }
            d
        })
        .collect();
    diffs.sort_unstable();
    let tail = (1.0 - confidence) / 2.0;
    [
        quantile(&diffs, tail) / n as f64,
        quantile(&diffs, 1.0 - tail) / n as f64,
    ]
}

/// The `q` quantile of sorted values, interpolated between neighbours (Hyndman and Fan's
/// type 7, R's default).
fn quantile(sorted: &[i64], q: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return 0.0;
    };
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let Some(&next) = sorted.get(lo + 1) else {
        return last as f64;
    };
    let x = sorted[lo] as f64;
    x + (h - lo as f64) * (next as f64 - x)
}

/// Wilson's score interval of `x` successes in `n` at normal quantile `z`.
pub fn wilson_interval(x: usize, n: usize, z: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (x, nf) = (x as f64, n as f64);
    let p = x / nf;
    let z2 = z * z;
    let centre = 2.0 * x + z2;
    let half = z * (z2 + 4.0 * x * (1.0 - p)).sqrt();
    let denom = 2.0 * (nf + z2);
    [(centre - half) / denom, (centre + half) / denom]
}

/// Newcombe's (1998) method 10 score interval of `rate_b - rate_a` for paired outcomes: the
/// Wilson intervals of the two rates combined ("square and add") with their estimated
/// correlation, whose numerator is shrunk towards 0 by n/2 when positive, as the method says.
pub fn newcombe_interval(t: &Table, z: f64) -> [f64; 2] {
    let n = t.n();
    if n == 0 {
        return [-1.0, 1.0];
    }
    let nf = n as f64;
    // Newcombe's "first" proportion is b's, so his theta is rate_b - rate_a.
    let (x1, x2) = (t.both + t.only_b, t.both + t.only_a);
    let (p1, p2) = (x1 as f64 / nf, x2 as f64 / nf);
    let [l1, u1] = wilson_interval(x1, n, z);
    let [l2, u2] = wilson_interval(x2, n, z);
    let margins = [x1, n - x1, x2, n - x2];
    let phi = if margins.contains(&0) {
        0.0
    } else {
        let product: f64 = margins.iter().map(|&m| m as f64).product();
        let cross = t.both as f64 * t.neither as f64 - t.only_b as f64 * t.only_a as f64;
        let numerator = if cross > nf / 2.0 {
            cross - nf / 2.0
        } else if cross >= 0.0 {
            0.0
        } else {
            cross
        };
        numerator / product.sqrt()
    };
    let spread = |x: f64, y: f64| (x * x - 2.0 * phi * x * y + y * y).max(0.0).sqrt();
    let theta = p1 - p2;
    [
        theta - spread(p1 - l1, u2 - p2),
        theta + spread(p2 - l2, u1 - p1),
    ]
}

/// P(X <= k) for X ~ Bin(n, p), summed in log space so that no term underflows before it is
/// weighed against the others.
pub fn binomial_cdf(n: u64, k: u64, p: f64) -> f64 {
    if k >= n || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let (ln_p, ln_q) = (p.ln(), (-p).ln_1p());
    // ln P(X = j), from j = 0 by the ratio (n - j) / (j + 1) * p / q.
    let mut ln_term = n as f64 * ln_q;
    let mut terms = Vec::with_capacity(k as usize + 1);
    for j in 0..=k {
        terms.push(ln_term);
        ln_term += ((n - j) as f64 / (j + 1) as f64).ln() + ln_p - ln_q;
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
    (top + sum.ln()).exp().min(1.0)
}

/// The Clopper-Pearson (exact) interval of a proportion, `x` successes in `n`, at
/// `confidence`: each end is where the binomial tail beyond `x` holds half the error.
pub fn clopper_pearson(x: u64, n: u64, confidence: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let half = (1.0 - confidence) / 2.0;
    // P(X >= x | p) grows with p; P(X <= x | p) falls.
    let lower = if x == 0 {
        0.0
    } else {
        bisect(|p| 1.0 - binomial_cdf(n, x - 1, p) < half)
    };
    let upper = if x >= n {
        1.0
    } else {
        bisect(|p| binomial_cdf(n, x, p) > half)
    };
    [lower, upper]
}

/// The boundary in [0, 1] where `below` turns from true to false (it must be monotone).
fn bisect(below: impl Fn(f64) -> bool) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if below(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The exact conditional interval of `rate_b - rate_a`: given the m discordant tasks, the
/// number that only `b` solved is Bin(m, pi), and the difference is (m / n)(2 pi - 1); the
/// Clopper-Pearson interval of pi, mapped so, excludes 0 exactly when the exact McNemar test
/// (two-sided, `1 - confidence`) rejects. [0, 0] without discordant tasks.
pub fn exact_paired_interval(t: &Table, confidence: f64) -> [f64; 2] {
    let m = t.only_a + t.only_b;
    if m == 0 {
        return [0.0, 0.0];
    }
    let [lo, hi] = clopper_pearson(t.only_b as u64, m as u64, confidence);
    let scale = m as f64 / t.n() as f64;
    [scale * (2.0 * lo - 1.0), scale * (2.0 * hi - 1.0)]
}

#[cfg(test)]
mod tests;
