//! The sgemm wrapper shared by the matrix products and the convolutions: strided matrix views
//! checked once, matrixmultiply for the product, a parallel matrix–vector path for single rows.

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
/// (row stride `ldc`). Bounds are checked once; the product runs in matrixmultiply (which may
/// use its own threads for large products).
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
    // SAFETY: every element touched lies inside the slices (checked above); `c` is borrowed
    // mutably so nothing aliases it.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr().add(a.off),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr().add(b.off),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// `c = alpha·a·b + beta·c` for a single row `a` [1, k] and `b` [k, n] with unit row or column
/// stride (a matrix–vector product: matrixmultiply would spend its time packing `b`).
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

/// Dot product with 8 independent accumulators (vectorizes).
fn dot(x: &[f32], y: &[f32]) -> f32 {
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

/// Whether matrixmultiply would itself split a product of this size over threads (mirrors its
/// heuristic: (m·k + k·n) ≥ 2^15 for two threads); below that, parallelize outside it.
pub(super) fn gemm_is_threaded(m: usize, k: usize, n: usize) -> bool {
    m * k + k * n >= 1 << 15
}
