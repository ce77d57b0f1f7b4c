//! Each kernel against a plain loop, and each backward against central finite differences of
//! its forward (in f32, so tolerances are a few parts in a thousand).

use super::*;

fn vals(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.731 + seed).sin() * 1.3)
        .collect()
}

fn assert_close(a: f32, b: f32, tol: f32, what: &str) {
    assert!(
        (a - b).abs() <= tol * (1.0 + b.abs()),
        "{what}: {a} against {b}"
    );
}

/// ∂(Σ w·f(x))/∂x_i by central differences.
fn numeric(x: &[f32], w: &[f32], f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    let h = 1e-2f32;
    (0..x.len())
        .map(|i| {
            let mut p = x.to_vec();
            p[i] += h;
            let mut m = x.to_vec();
            m[i] -= h;
            let (fp, fm) = (f(&p), f(&m));
            let dot = |v: &[f32]| v.iter().zip(w).map(|(a, b)| (a * b) as f64).sum::<f64>();
            ((dot(&fp) - dot(&fm)) / (2.0 * h as f64)) as f32
        })
        .collect()
}

#[test]
fn a_strided_product_equals_the_plain_triple_loop_with_transposes_and_accumulation() {
    let (m, n, k) = (5, 7, 3);
    let a = vals(k * m, 0.1); // stored [k, m]: used transposed
    let b = vals(k * n, 0.7);
    let mut dst = vals(m * n, 2.0);
    let before = dst.clone();
    matmul(
        &mut dst,
        n,
        View::rows(&a, k, m).t(),
        View::rows(&b, k, n),
        0.5,
        true,
        Threads::Pool,
    );
    for i in 0..m {
        for j in 0..n {
            let want =
                before[i * n + j] + 0.5 * (0..k).map(|p| a[p * m + i] * b[p * n + j]).sum::<f32>();
            assert_close(dst[i * n + j], want, 1e-5, "product");
        }
    }
}

#[test]
fn the_rms_norm_backward_matches_finite_differences() {
    let (rows, width) = (3, 8);
    let x = vals(rows * width, 0.3);
    let w = vals(width, 1.1);
    let dy = vals(rows * width, 2.2);
    let fwd = |x: &[f32]| {
        let mut out = vec![0f32; x.len()];
        let mut inv = vec![0f32; rows];
        rms_norm(x, &w, 1e-5, &mut out, &mut inv);
        out
    };
    let mut out = vec![0f32; x.len()];
    let mut inv = vec![0f32; rows];
    rms_norm(&x, &w, 1e-5, &mut out, &mut inv);
    let mut dx = vec![0f32; x.len()];
    rms_norm_back(&x, &w, &inv, &dy, &mut dx);
    for (a, b) in dx.iter().zip(numeric(&x, &dy, fwd)) {
        assert_close(*a, b, 5e-3, "rms_norm dx");
    }
}

#[test]
fn rope_backward_undoes_the_rotation_for_both_pairings() {
    let (s, d, heads) = (4, 8, 2);
    let cos: Vec<f32> = (0..s * d / 2).map(|i| (i as f32 * 0.3).cos()).collect();
    let sin: Vec<f32> = (0..s * d / 2).map(|i| (i as f32 * 0.3).sin()).collect();
    for kind in [Rope::Norm, Rope::Neox] {
        let x = vals(s * d * heads, 0.9);
        let mut y = x.clone();
        rope(&mut y, d, &cos, &sin, kind, false);
        assert!(y.iter().zip(&x).any(|(a, b)| (a - b).abs() > 1e-3));
        rope(&mut y, d, &cos, &sin, kind, true);
        for (a, b) in y.iter().zip(&x) {
            assert_close(*a, *b, 1e-5, "rope round trip");
        }
    }
}

#[test]
fn the_swiglu_backward_matches_finite_differences() {
    let n = 10;
    let (g, u, da) = (vals(n, 0.2), vals(n, 1.4), vals(n, 3.3));
    let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
    swiglu_back(&g, &u, &da, &mut dg, &mut du);
    let fg = |g: &[f32]| {
        let mut o = vec![0f32; n];
        swiglu(g, &u, &mut o);
        o
    };
    let fu = |u: &[f32]| {
        let mut o = vec![0f32; n];
        swiglu(&g, u, &mut o);
        o
    };
    for (a, b) in dg.iter().zip(numeric(&g, &da, fg)) {
        assert_close(*a, b, 5e-3, "swiglu dg");
    }
    for (a, b) in du.iter().zip(numeric(&u, &da, fu)) {
        assert_close(*a, b, 5e-3, "swiglu du");
    }
}

#[test]
fn the_attention_backward_matches_finite_differences_with_grouped_kv_heads() {
    // 150 positions: three blocks of query rows, the last one short.
    let hd = Heads {
        s: 150,
        heads: 4,
        kv: 2,
        d: 4,
    };
    let (qw, kw) = (hd.heads * hd.d, hd.kv * hd.d);
    let (q, k, v) = (
        vals(hd.s * qw, 0.5),
        vals(hd.s * kw, 1.5),
        vals(hd.s * kw, 2.5),
    );
    let d_o = vals(hd.s * qw, 3.5);
    let (mut dq, mut dk, mut dv) = (
        vec![0f32; q.len()],
        vec![0f32; k.len()],
        vec![0f32; v.len()],
    );
    let run = |q: &[f32], k: &[f32], v: &[f32]| {
        let mut o = vec![0f32; hd.s * qw];
        let mut probs = vec![0f32; hd.heads * hd.probs_len()];
        attention(&hd, q, k, v, &mut o, &mut probs);
        (o, probs)
    };
    let probs = run(&q, &k, &v).1;
    attention_back(&hd, &q, &k, &v, &probs, &d_o, &mut dq, &mut dk, &mut dv);
    let run = |q: &[f32], k: &[f32], v: &[f32]| run(q, k, v).0;
    for (a, b) in dq.iter().zip(numeric(&q, &d_o, |x| run(x, &k, &v))) {
        assert_close(*a, b, 5e-3, "attention dq");
    }
    for (a, b) in dk.iter().zip(numeric(&k, &d_o, |x| run(&q, x, &v))) {
        assert_close(*a, b, 5e-3, "attention dk");
    }
    for (a, b) in dv.iter().zip(numeric(&v, &d_o, |x| run(&q, &k, x))) {
        assert_close(*a, b, 5e-3, "attention dv");
    }
    // Causality: the first position attends only to itself, so its output is v's first row.
    let o = run(&q, &k, &v);
    for h in 0..hd.heads {
        let g = h / 2;
        for j in 0..hd.d {
            assert_close(o[h * hd.d + j], v[g * hd.d + j], 1e-6, "first row");
        }
    }
}

#[test]
fn fast_exp_is_within_a_few_ulp_of_libm_over_the_range_softmax_uses() {
    let mut worst = 0f32;
    for i in 0..200_000 {
        let x = -87.0 + i as f32 * (175.0 / 200_000.0);
        let (a, b) = (fast_exp(x), x.exp());
        worst = worst.max(((a - b) / b).abs());
    }
    assert!(worst < 1e-6, "relative error {worst}");
}

#[test]
fn the_picked_log_softmax_and_its_backward_match_finite_differences() {
    let (m, vocab) = (3, 6);
    let logits = vals(m * vocab, 0.8);
    let targets = [2u32, 0, 5];
    let g = [0.5f32, -1.0, 2.0];
    let fwd = |x: &[f32]| {
        let mut p = x.to_vec();
        log_softmax_pick(&mut p, vocab, &targets)
    };
    let mut probs = logits.clone();
    let lp = log_softmax_pick(&mut probs, vocab, &targets);
    for (r, &t) in targets.iter().enumerate() {
        let row = &logits[r * vocab..][..vocab];
        let lse = row.iter().map(|v| v.exp()).sum::<f32>().ln();
        assert_close(lp[r], row[t as usize] - lse, 1e-5, "log-probability");
    }
    log_softmax_pick_back(&mut probs, vocab, &targets, &g);
    for (a, b) in probs.iter().zip(numeric(&logits, &g, fwd)) {
        assert_close(*a, b, 5e-3, "d logits");
    }
}
