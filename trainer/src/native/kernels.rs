//! The native engine's kernels: one strided matrix product (gemm's AVX-512/AVX2 microkernels
//! on rayon's threads), and row-parallel loops for RMSNorm, RoPE, SwiGLU, causal attention and
//! the log-softmax over the vocabulary, each with its backward.
//!
//! Every buffer is row-major `f32`. A [`View`] names a matrix inside a slice by its strides, so
//! transposes and per-head column blocks are free.

use rayon::prelude::*;

/// A read-only matrix inside a slice: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Any strides.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * rs + (cols - 1) * cs;
            assert!(last < data.len(), "view past the end of its buffer");
        }
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// Whether a product runs on rayon's threads or on the calling one (inside a parallel loop).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// gemm splits the product over the pool.
    Pool,
    /// The caller is already one of many parallel tasks.
    One,
}

/// `dst = a · b` (or `dst += a · b` with `acc`), times `scale`; `dst` is `a.rows × b.cols`
/// with row stride `dst_rs`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    a: View,
    b: View,
    scale: f32,
    acc: bool,
    threads: Threads,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "product past the end of dst"
    );
    if k == 0 {
        if !acc {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    gemm_raw(dst, dst_rs, 1, a, b, scale, acc, threads);
}

/// `dst (+)= scale · a · b` with any destination strides; the bounds are the caller's.
#[allow(clippy::too_many_arguments)]
fn gemm_raw(
    dst: &mut [f32],
    dst_rs: usize,
    dst_cs: usize,
    a: View,
    b: View,
    scale: f32,
    acc: bool,
    threads: Threads,
) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(
        (m - 1) * dst_rs + (n - 1) * dst_cs < dst.len(),
        "product past the end of dst"
    );
    let par = match threads {
        Threads::Pool => gemm::Parallelism::Rayon(rayon::current_num_threads()),
        Threads::One => gemm::Parallelism::None,
    };
    // SAFETY: the asserts keep every index of dst, a and b inside their slices; dst is
    // borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

/// Rows per parallel task for row-wise loops: enough work per task to amortise the pool.
fn chunk_rows(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

/// RMSNorm of each row of `x` (`width` wide) into `out`, times `w`; returns the inverse RMS of
/// each row (kept for the backward).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], inv: &mut [f32]) {
    let width = w.len();
    let c = chunk_rows(width);
    out.par_chunks_mut(width * c)
        .zip(inv.par_chunks_mut(c))
        .enumerate()
        .for_each(|(ci, (o, iv))| {
            for (r, (orow, ir)) in o.chunks_mut(width).zip(iv.iter_mut()).enumerate() {
                let xr = &x[(ci * c + r) * width..][..width];
                let ms = xr.iter().map(|v| v * v).sum::<f32>() / width as f32;
                let k = 1.0 / (ms + eps).sqrt();
                *ir = k;
                for ((o, &xv), &wv) in orow.iter_mut().zip(xr).zip(w) {
                    *o = xv * k * wv;
                }
            }
        });
}

/// Backward of [`rms_norm`]: `dx += ∂(norm)/∂x · dy` for each row.
pub fn rms_norm_back(x: &[f32], w: &[f32], inv: &[f32], dy: &[f32], dx: &mut [f32]) {
    let width = w.len();
    let c = chunk_rows(width);
    dx.par_chunks_mut(width * c)
        .enumerate()
        .for_each(|(ci, d)| {
            for (r, drow) in d.chunks_mut(width).enumerate() {
                let row = ci * c + r;
                let (xr, gr) = (&x[row * width..][..width], &dy[row * width..][..width]);
                let k = inv[row];
                // y_j = x_j k w_j with k = (mean x² + eps)^-1/2:
                // dx_i = k (g_i w_i - x_i k² mean_j(g_j w_j x_j)).
                let dot = xr
                    .iter()
                    .zip(gr)
                    .zip(w)
                    .map(|((&xv, &g), &wv)| xv * g * wv)
                    .sum::<f32>()
                    / width as f32;
                for (((dv, &xv), &g), &wv) in drow.iter_mut().zip(xr).zip(gr).zip(w) {
                    *dv += k * (g * wv - xv * k * k * dot);
                }
            }
        });
}

/// How RoPE pairs a head's dimensions.
pub use crate::config::Rope;

/// Rotates every head of `x` (`[s, heads * d]`) in place by the tables (`[s, d/2]`);
/// `inverse` rotates back (the backward: a rotation's transpose is its inverse).
pub fn rope(x: &mut [f32], d: usize, cos: &[f32], sin: &[f32], kind: Rope, inverse: bool) {
    let half = d / 2;
    let s = cos.len() / half;
    let width = x.len() / s;
    let sign = if inverse { -1.0 } else { 1.0 };
    x.par_chunks_mut(width).enumerate().for_each(|(p, row)| {
        let (c, sn) = (&cos[p * half..][..half], &sin[p * half..][..half]);
        for head in row.chunks_mut(d) {
            for i in 0..half {
                let (ia, ib) = match kind {
                    Rope::Norm => (2 * i, 2 * i + 1),
                    Rope::Neox => (i, i + half),
                };
                let (a, b) = (head[ia], head[ib]);
                let s = sign * sn[i];
                head[ia] = a * c[i] - b * s;
                head[ib] = b * c[i] + a * s;
            }
        }
    });
}

/// SwiGLU: `out = silu(g) * u`.
pub fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) {
    const C: usize = 16_384;
    out.par_chunks_mut(C)
        .zip(g.par_chunks(C).zip(u.par_chunks(C)))
        .for_each(|(o, (g, u))| {
            for ((ov, &gv), &uv) in o.iter_mut().zip(g).zip(u) {
                *ov = gv / (1.0 + fast_exp(-gv)) * uv;
            }
        });
}

/// Backward of [`swiglu`]: from `da`, writes `dg` and `du` (overwriting).
pub fn swiglu_back(g: &[f32], u: &[f32], da: &[f32], dg: &mut [f32], du: &mut [f32]) {
    const C: usize = 16_384;
    dg.par_chunks_mut(C)
        .zip(du.par_chunks_mut(C))
        .zip(g.par_chunks(C).zip(u.par_chunks(C)).zip(da.par_chunks(C)))
        .for_each(|((dgc, duc), ((g, u), da))| {
            let inputs = g.iter().zip(u).zip(da);
            for ((dgv, duv), ((&gv, &uv), &d)) in dgc.iter_mut().zip(duc.iter_mut()).zip(inputs) {
                let sig = 1.0 / (1.0 + fast_exp(-gv));
                let silu = gv * sig;
                *duv = d * silu;
                *dgv = d * uv * (sig + silu * (1.0 - sig));
            }
        });
}

/// The shape of causal multi-head attention with grouped KV heads.
#[derive(Clone, Copy)]
pub struct Heads {
    /// Sequence length.
    pub s: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv: usize,
    /// Width of one head.
    pub d: usize,
}

impl Heads {
    fn q_width(&self) -> usize {
        self.heads * self.d
    }

    fn kv_width(&self) -> usize {
        self.kv * self.d
    }
}

/// A raw pointer that parallel tasks share, each writing its own disjoint part.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: every task that uses a `Shared` writes a region no other task touches (one head's
// columns of one block of rows, or one head's probabilities); the owner waits for all tasks
// before reading.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The whole buffer again, inside one task.
    ///
    /// # Safety
    /// The task writes only the part no other task touches (see the `Send` impl).
    unsafe fn slice<'a>(self, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0, len)
    }
}

/// Query rows are taken in blocks of this many: block b attends to keys `0..end(b)` only, so
/// the products skip the masked upper triangle but for the diagonal blocks.
const BLOCK: usize = 64;

impl Heads {
    /// The blocks of query rows: `(first row, end row, offset of the block's probabilities)`.
    fn blocks(&self) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let (mut r0, mut off) = (0, 0);
        while r0 < self.s {
            let r1 = (r0 + BLOCK).min(self.s);
            out.push((r0, r1, off));
            off += (r1 - r0) * r1;
            r0 = r1;
        }
        out
    }

    /// Floats of one head's kept probabilities: each block's rows over its live keys.
    pub fn probs_len(&self) -> usize {
        self.blocks()
            .last()
            .map_or(0, |&(r0, r1, off)| off + (r1 - r0) * r1)
    }

    /// Head h's rows `r0..r1`, columns of a `[s, width]` buffer.
    fn rows<'a>(&self, buf: &'a [f32], width: usize, h: usize, r0: usize, r1: usize) -> View<'a> {
        View::strided(&buf[r0 * width + h * self.d..], r1 - r0, self.d, width, 1)
    }
}

/// Row-wise causal softmax of one block of scores `p` (`rows × end`, row i being query
/// `r0 + i`), in place.
fn causal_softmax(p: &mut [f32], r0: usize, end: usize) {
    for (i, row) in p.chunks_mut(end).enumerate() {
        let live = &mut row[..=r0 + i];
        let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for v in live.iter_mut() {
            *v = fast_exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        live.iter_mut().for_each(|v| *v *= inv);
        row[r0 + i + 1..].fill(0.0);
    }
}

/// Causal attention: `o[:, head h] = softmax(scale · q_h k_gᵀ) v_g` with g = h / (heads / kv).
/// `q` is `[s, heads·d]`, `k` and `v` `[s, kv·d]`, `o` `[s, heads·d]`. The probabilities are
/// written to `probs` (`heads × probs_len()`) for the backward. Every (head, block) pair is its
/// own parallel task.
pub fn attention(hd: &Heads, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32], probs: &mut [f32]) {
    let (qw, kw, plen) = (hd.q_width(), hd.kv_width(), hd.probs_len());
    assert_eq!(probs.len(), hd.heads * plen, "probability buffer size");
    let scale = (hd.d as f32).powf(-0.5);
    let rep = hd.heads / hd.kv;
    let blocks = hd.blocks();
    let (out, olen) = (Shared(o.as_mut_ptr()), o.len());
    let (pout, total) = (Shared(probs.as_mut_ptr()), probs.len());
    let tasks: Vec<(usize, (usize, usize, usize))> = (0..hd.heads)
        .flat_map(|h| blocks.iter().map(move |&b| (h, b)))
        .collect();
    tasks.into_par_iter().for_each(|(h, (r0, r1, off))| {
        let g = h / rep;
        // SAFETY: task (h, block) writes only rows r0..r1 of head h's columns of o and its own
        // block of head h's probabilities.
        let (o, probs) = unsafe { (out.slice(olen), pout.slice(total)) };
        let p = &mut probs[h * plen + off..][..(r1 - r0) * r1];
        let keys = hd.rows(k, kw, g, 0, r1);
        matmul(
            p,
            r1,
            hd.rows(q, qw, h, r0, r1),
            keys.t(),
            scale,
            false,
            Threads::One,
        );
        causal_softmax(p, r0, r1);
        let dst = &mut o[r0 * qw + h * hd.d..];
        let values = hd.rows(v, kw, g, 0, r1);
        matmul(
            dst,
            qw,
            View::rows(p, r1 - r0, r1),
            values,
            1.0,
            false,
            Threads::One,
        );
    });
}

/// Backward of [`attention`] from its kept probabilities. Writes `dq` and accumulates into
/// `dk`, `dv`; query heads run in parallel.
#[allow(clippy::too_many_arguments)]
pub fn attention_back(
    hd: &Heads,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    d_o: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (s, d, qw, kw, plen) = (hd.s, hd.d, hd.q_width(), hd.kv_width(), hd.probs_len());
    let scale = (d as f32).powf(-0.5);
    let rep = hd.heads / hd.kv;
    let blocks = hd.blocks();
    let (dq_out, dq_len) = (Shared(dq.as_mut_ptr()), dq.len());
    // Each query head's share of its KV head's gradient, summed after the parallel part.
    let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..hd.heads)
        .into_par_iter()
        .map(|h| {
            let g = h / rep;
            let (mut dkh, mut dvh) = (vec![0f32; s * d], vec![0f32; s * d]);
            let mut scratch = vec![0f32; BLOCK * s];
            for &(r0, r1, off) in &blocks {
                let rows = r1 - r0;
                let p = &probs[h * plen + off..][..rows * r1];
                let ds = &mut scratch[..rows * r1];
                let doh = hd.rows(d_o, qw, h, r0, r1);
                // dP = dO vᵀ; dS = P ∘ (dP − rowsum(P ∘ dP)).
                let values = hd.rows(v, kw, g, 0, r1);
                matmul(ds, r1, doh, values.t(), 1.0, false, Threads::One);
                for (prow, drow) in p.chunks(r1).zip(ds.chunks_mut(r1)) {
                    let dot: f32 = prow.iter().zip(drow.iter()).map(|(a, b)| a * b).sum();
                    for (dv, &pv) in drow.iter_mut().zip(prow) {
                        *dv = pv * (*dv - dot);
                    }
                }
                let dsv = View::rows(ds, rows, r1);
                // SAFETY: head h writes only its own columns of dq.
                let dq = unsafe { dq_out.slice(dq_len) };
                let kh = hd.rows(k, kw, g, 0, r1);
                matmul(
                    &mut dq[r0 * qw + h * d..],
                    qw,
                    dsv,
                    kh,
                    scale,
                    false,
                    Threads::One,
                );
                let qh = hd.rows(q, qw, h, r0, r1);
                matmul(&mut dkh, d, dsv.t(), qh, scale, true, Threads::One);
                let pv = View::rows(p, rows, r1).t();
                matmul(&mut dvh, d, pv, doh, 1.0, true, Threads::One);
            }
            (dkh, dvh)
        })
        .collect();
    for (h, (dkh, dvh)) in parts.iter().enumerate() {
        let g = h / rep;
        for r in 0..s {
            let (dst_k, dst_v) = (
                &mut dk[r * kw + g * d..][..d],
                &mut dv[r * kw + g * d..][..d],
            );
            for j in 0..d {
                dst_k[j] += dkh[r * d + j];
                dst_v[j] += dvh[r * d + j];
            }
        }
    }
}

/// `e^x` to a few ulp, written so the compiler vectorises loops over it (libm's `expf` is a
/// call per element; softmax and SiLU spent most of their time in it). Cody-Waite reduction
/// to `x = k ln2 + r`, `|r| <= ln2/2`, a degree-6 Taylor polynomial, and `2^k` from the
/// exponent bits. Inputs are clamped to [-87, 88], where the result is a normal float.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Rounds to the nearest integer by adding and subtracting 1.5 · 2^23.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^k: k + 127 lands in the low mantissa bits of ROUND + 127 + k (no float-to-int
    // conversion, which would keep the loop from vectorising); shifted into the exponent.
    let bits = (k + (ROUND + 127.0)).to_bits() << 23;
    p * f32::from_bits(bits)
}

/// For each row of `logits` (`[m, vocab]`), replaced in place by its softmax: returns the
/// log-probability of `targets[row]`.
pub fn log_softmax_pick(logits: &mut [f32], vocab: usize, targets: &[u32]) -> Vec<f32> {
    logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|v| *v = fast_exp(*v - max));
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            let inv = (1.0 / sum) as f32;
            let picked = row[t as usize];
            row.iter_mut().for_each(|v| *v *= inv);
            (picked as f64 / sum).ln() as f32
        })
        .collect()
}

/// Backward of [`log_softmax_pick`] in place: each softmax row becomes
/// `∂L/∂logits = g · (onehot(target) − softmax)`.
pub fn log_softmax_pick_back(probs: &mut [f32], vocab: usize, targets: &[u32], g: &[f32]) {
    probs
        .par_chunks_mut(vocab)
        .zip(targets.par_iter().zip(g.par_iter()))
        .for_each(|(row, (&t, &gv))| {
            row.iter_mut().for_each(|v| *v *= -gv);
            row[t as usize] += gv;
        });
}

#[cfg(test)]
mod tests;
