use super::*;

fn close(x: f64, y: f64, tol: f64) -> bool {
    (x - y).abs() <= tol
}

/// The standard normal quantile for 95 % (two-sided).
const Z_95: f64 = 1.959_963_984_540_054;

#[test]
fn mcnemar_of_ten_against_two_is_0_0386() {
    // 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * 79 / 4096.
    let p = mcnemar_p(10, 2);
    assert!(close(p, 2.0 * 79.0 / 4096.0, 1e-12), "{p}");
    assert_eq!(format!("{p:.4}"), "0.0386");
}

#[test]
fn no_discordant_pair_gives_p_one() {
    assert_eq!(mcnemar_p(0, 0), 1.0);
}

#[test]
fn mcnemar_is_symmetric_in_its_two_counts() {
    for (b, c) in [(0, 1), (1, 5), (3, 17), (40, 2), (1000, 1100), (2500, 2300)] {
        assert_eq!(mcnemar_p(b, c), mcnemar_p(c, b), "{b} {c}");
    }
}

#[test]
fn equal_discordant_counts_give_p_one() {
    for b in [1, 2, 7, 50, 3000] {
        assert_eq!(mcnemar_p(b, b), 1.0, "{b}");
    }
    // One apart is not significant either: 2 * P(X <= b) for n = 2b + 1 is exactly 1.
    assert!(close(mcnemar_p(5, 6), 1.0, 1e-12));
}

#[test]
fn the_binomial_tail_matches_exact_integer_arithmetic_up_to_120_trials() {
    for n in 0u64..=120 {
        let mut choose = 1u128;
        let mut sum = 0u128;
        for k in 0..=n {
            // C(n, k) from C(n, k - 1), exactly.
            if k > 0 {
                choose = choose * u128::from(n - k + 1) / u128::from(k);
            }
            sum += choose;
            let exact = sum as f64 / 2f64.powi(n as i32);
            let got = binomial_cdf_half(n, k);
            assert!(
                (got - exact).abs() <= 1e-12 * exact,
                "n {n} k {k}: {got} vs {exact}"
            );
        }
    }
}

#[test]
fn the_binomial_tail_stays_accurate_for_thousands_of_trials() {
    // Reference values: exact rationals (Python's fractions and math.comb), rounded once.
    for (n, k, exact) in [
        (32, 2, 1.231_674_104_928_97e-7),
        (2000, 900, 4.228_544_767_751_963e-6),
        (5000, 2400, 2.441_824_868_758_759e-3),
        (4000, 2000, 5.063_074_370_779_177e-1),
        (3001, 1400, 1.300_385_059_710_648e-4),
        (6000, 2700, 4.994_554_574_571_234e-15),
    ] {
        let got = binomial_cdf_half(n, k);
        assert!(
            (got - exact).abs() <= 1e-10 * exact,
            "n {n} k {k}: {got} vs {exact}"
        );
    }
}

#[test]
fn wilson_intervals_match_newcombes_published_examples() {
    // Newcombe (1998), "Two-sided confidence intervals for the single proportion",
    // Statistics in Medicine 17:857-872, Table II, method 3 (score, no correction).
    for (x, n, lo, hi) in [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ] {
        let [l, u] = wilson_interval(x, n, Z_95);
        assert!(close(l, lo, 5e-5) && close(u, hi, 5e-5), "{x}/{n}: {l} {u}");
    }
}

#[test]
fn the_general_binomial_cdf_matches_exact_sums_and_the_fair_coin() {
    // Bin(10, 0.3): P(X <= 2) = 0.3827827864 (sum of C(10, j) 0.3^j 0.7^(10 - j), j <= 2).
    assert!(close(binomial_cdf(10, 2, 0.3), 0.382_782_786_4, 1e-10));
    for (n, k) in [(12, 2), (50, 20), (2000, 900), (3001, 1400)] {
        let (got, half) = (binomial_cdf(n, k, 0.5), binomial_cdf_half(n, k));
        assert!(
            (got - half).abs() <= 1e-9 * half,
            "n {n} k {k}: {got} vs {half}"
        );
    }
    assert_eq!(binomial_cdf(5, 5, 0.9), 1.0);
    assert_eq!(binomial_cdf(5, 0, 0.0), 1.0);
    assert_eq!(binomial_cdf(5, 4, 1.0), 0.0);
}

#[test]
fn clopper_pearson_intervals_match_published_values() {
    // R's binom.test: 5 of 10 gives 0.187086 to 0.812914, 0 of 10 gives 0 to 0.308497, 10 of
    // 10 gives 0.691503 to 1; 81 of 263 gives 0.252737 to 0.367622 (computed apart, with
    // exact binomial sums in Python's math.comb).
    for (x, n, lo, hi) in [
        (5, 10, 0.187_086, 0.812_914),
        (0, 10, 0.0, 0.308_497),
        (10, 10, 0.691_503, 1.0),
        (81, 263, 0.252_737, 0.367_622),
    ] {
        let [l, u] = clopper_pearson(x, n, 0.95);
        assert!(close(l, lo, 2e-6) && close(u, hi, 2e-6), "{x}/{n}: {l} {u}");
    }
}

#[test]
fn the_exact_interval_excludes_zero_exactly_when_mcnemar_rejects() {
    // Every split of up to 60 discordant tasks among 100: the interval and the test agree.
    let mut rejected = 0;
    for m in 0..=60usize {
        for only_b in 0..=m {
            let t = Table {
                both: 20,
                only_a: m - only_b,
                only_b,
                neither: 80 - m,
            };
            let [lo, hi] = exact_paired_interval(&t, 0.95);
            let p = mcnemar_p(only_b as u64, (m - only_b) as u64);
            let excludes = lo > 0.0 || hi < 0.0;
            assert_eq!(excludes, p < 0.05, "table {t:?}: [{lo}, {hi}], p {p}");
            let d = (only_b as f64 - (m - only_b) as f64) / 100.0;
            assert!(
                lo <= d + 1e-12 && d <= hi + 1e-12,
                "{t:?}: {d} not in [{lo}, {hi}]"
            );
            rejected += usize::from(excludes);
        }
    }
    // Not vacuous: both verdicts occur.
    assert!(rejected > 100, "{rejected}");
}

#[test]
fn the_exact_interval_of_a_table_without_discordant_tasks_is_zero() {
    let t = Table {
        both: 3,
        neither: 7,
        ..Table::default()
    };
    assert_eq!(exact_paired_interval(&t, 0.95), [0.0, 0.0]);
}
