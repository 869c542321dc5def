//! The sgemm wrapper shared by the matrix products and the convolutions: strided matrix views
//! checked once, the `gemm` crate for the product (threaded on the rayon pool for large products),
//! a parallel matrix–vector path for single rows.

use gemm::Parallelism;
use rayon::prelude::*;

/// A read-only matrix inside a slice: element (i, j) is `data[off + i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major matrix with `cols` columns starting at `off`.
    pub fn rows(data: &'a [f32], off: usize, cols: usize) -> Self {
        Mat {
            data,
            off,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (same storage).
    pub fn t(self) -> Self {
        Mat {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = self.off + (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(
                last < self.data.len(),
                "matrix view out of bounds: {last} >= {}",
                self.data.len()
            );
        }
    }
}

/// `c = alpha·a·b + beta·c` with `a` [m, k], `b` [k, n] and `c` a row-major [m, n] slice
/// (row stride `ldc`). Bounds are checked once; the product runs in the `gemm` crate, on the
/// rayon pool when [`gemm_is_threaded`] says so and on the calling thread otherwise.
#[allow(clippy::too_many_arguments)]
pub(super) fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "output too small");
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            for v in &mut row[..n] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    a.check(m, k);
    b.check(k, n);
    if m == 1 && (b.rs == 1 || b.cs == 1) {
        gemv(k, alpha, a, b, beta, &mut c[..n]);
        return;
    }
    let parallelism = if gemm_is_threaded(m, k, n) {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: every element touched lies inside the slices (checked above); `c` is borrowed
    // mutably so nothing aliases it. The crate's `alpha` scales the old `dst` (not read when
    // `read_dst` is false, so garbage in `c` does not leak through a zero `beta`) and its `beta`
    // the product.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            beta != 0.0,
            a.data.as_ptr().add(a.off),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.off),
            b.cs as isize,
            b.rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `c = alpha·a·b + beta·c` for a single row `a` [1, k] and `b` [k, n] with unit row or column
/// stride (a matrix–vector product, split over the rayon pool by columns).
fn gemv(k: usize, alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: &mut [f32]) {
    let av: Vec<f32> = (0..k).map(|p| a.data[a.off + p * a.cs]).collect();
    let finish = |acc: f32, cj: &mut f32| {
        *cj = alpha * acc + if beta == 0.0 { 0.0 } else { beta * *cj };
    };
    // Columns per task: enough work to be worth a thread.
    let min_cols = ((1usize << 15) / k.max(1)).max(1);
    if b.rs == 1 {
        // Column j of b is contiguous: one dot product per output.
        c.par_chunks_mut(min_cols).enumerate().for_each(|(ci, cs)| {
            for (jj, cj) in cs.iter_mut().enumerate() {
                let j = ci * min_cols + jj;
                let col = &b.data[b.off + j * b.cs..b.off + j * b.cs + k];
                finish(dot(&av, col), cj);
            }
        });
    } else {
        // Rows of b are contiguous: accumulate a[p]·b[p, :] over p.
        c.par_chunks_mut(min_cols).enumerate().for_each(|(ci, cs)| {
            let j0 = ci * min_cols;
            let mut acc = vec![0.0f32; cs.len()];
            for (p, &ap) in av.iter().enumerate() {
                let start = b.off + p * b.rs + j0;
                let row = &b.data[start..start + cs.len()];
                for (x, &bv) in acc.iter_mut().zip(row) {
                    *x += ap * bv;
                }
            }
            for (cj, &v) in cs.iter_mut().zip(&acc) {
                finish(v, cj);
            }
        });
    }
}

/// Dot product with 8 independent accumulators, compiled for the widest vector instructions
/// this CPU has (the lanes' arithmetic and order do not change, so neither do the bits).
fn dot(x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512(x: &[f32], y: &[f32]) -> f32 {
            dot_plain(x, y)
        }
        #[target_feature(enable = "avx2")]
        fn avx2(x: &[f32], y: &[f32]) -> f32 {
            dot_plain(x, y)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return unsafe { avx512(x, y) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { avx2(x, y) };
        }
    }
    dot_plain(x, y)
}

#[inline(always)]
fn dot_plain(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a8, b8) in xc.zip(yc) {
        for i in 0..8 {
            acc[i] += a8[i] * b8[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Whether [`sgemm`] splits a product of this size over the rayon pool: only with more than one
/// thread, and only where the `gemm` crate would itself thread a block (its test: rows × columns
/// × depth of one k-block ≥ its threading threshold; k-blocks are 512 deep on x86, balanced
/// over `k`). Below that, callers parallelize outside it.
pub(super) fn gemm_is_threaded(m: usize, k: usize, n: usize) -> bool {
    let kc = k.div_ceil(k.div_ceil(512).max(1));
    rayon::current_num_threads() > 1
        && m.saturating_mul(n).saturating_mul(kc) >= gemm::get_threading_threshold()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alpha·a·b + beta·c` element by element, in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: Mat<'_>,
        b: Mat<'_>,
        beta: f32,
        c: &[f32],
        ldc: usize,
    ) -> Vec<f32> {
        let mut out = c.to_vec();
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| {
                        f64::from(a.data[a.off + i * a.rs + p * a.cs])
                            * f64::from(b.data[b.off + p * b.rs + j * b.cs])
                    })
                    .sum();
                let old = if beta == 0.0 {
                    0.0
                } else {
                    f64::from(beta * c[i * ldc + j])
                };
                out[i * ldc + j] = (f64::from(alpha) * dot + old) as f32;
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7 + seed * 13) % 23) as f32 - 11.0) / 8.0)
            .collect()
    }

    #[test]
    fn matches_the_naive_product_for_strided_views_alpha_and_beta() {
        // Shapes below and above the threading threshold, a single row, an empty depth.
        for &(m, k, n) in &[
            (3, 5, 4),
            (1, 9, 7),
            (17, 33, 129),
            (64, 300, 100),
            (5, 0, 6),
        ] {
            let ldc = n + 3;
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let ad = values(m * k + 2, 1);
                    let bd = values(k * n + 1, 2);
                    let a = if ta {
                        Mat::rows(&ad, 2, m).t()
                    } else {
                        Mat::rows(&ad, 2, k)
                    };
                    let b = if tb {
                        Mat::rows(&bd, 1, k).t()
                    } else {
                        Mat::rows(&bd, 1, n)
                    };
                    let mut c = values((m - 1) * ldc + n, 3);
                    if beta == 0.0 {
                        // Never read when beta is zero, as in BLAS.
                        c.iter_mut().for_each(|v| *v = f32::NAN);
                    }
                    let want = naive(m, k, n, alpha, a, b, beta, &c, ldc);
                    sgemm(m, k, n, alpha, a, b, beta, &mut c, ldc);
                    let case = format!("{m}x{k}x{n} alpha {alpha} beta {beta} t {ta}/{tb}");
                    for i in 0..m {
                        for j in 0..n {
                            let (got, exp) = (c[i * ldc + j], want[i * ldc + j]);
                            assert!(
                                (got - exp).abs() <= 1e-4 * exp.abs().max(1.0),
                                "{case} at ({i}, {j}): {got} vs {exp}"
                            );
                        }
                    }
                    // The padding between rows is left alone.
                    for i in 0..m.saturating_sub(1) {
                        for j in n..ldc {
                            assert_eq!(c[i * ldc + j].to_bits(), want[i * ldc + j].to_bits());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn threading_needs_a_second_thread_and_a_large_block() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        assert!(!one.install(|| gemm_is_threaded(512, 512, 512)));
        assert!(two.install(|| gemm_is_threaded(512, 512, 512)));
        assert!(!two.install(|| gemm_is_threaded(8, 8, 8)));
        assert!(!two.install(|| gemm_is_threaded(8, 0, 8)));
    }
}
