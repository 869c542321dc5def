//! Matrix products: Gemm and MatMul, plus the sgemm wrapper the convolution kernels share.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::{OpCtx, OpError, OpResult, Registry, input_f32, optional, single};
use crate::ir::TensorData;

pub fn register(registry: &mut Registry) {
    registry.add("Gemm", gemm_op);
    registry.add("MatMul", matmul_op);
}

// ---- sgemm wrapper ---------------------------------------------------------------------------

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

/// Whether matrixmultiply would itself split a product of this size over threads (mirrors its
/// heuristic: (m·k + k·n) ≥ 2^15 for two threads); below that, parallelize outside it.
pub(super) fn gemm_is_threaded(m: usize, k: usize, n: usize) -> bool {
    m * k + k * n >= 1 << 15
}

// ---- Gemm ------------------------------------------------------------------------------------

fn gemm_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let node = ctx.node;
    let a = input_f32(inputs, 0)?;
    let b = input_f32(inputs, 1)?;
    let c = match optional(inputs, 2) {
        Some(t) => Some(t.as_f32().ok_or_else(|| {
            OpError(format!(
                "input C must be a float tensor, got {}",
                t.kind_name()
            ))
        })?),
        None => None,
    };
    let alpha = node.attr_float("alpha", 1.0)?;
    let beta = node.attr_float("beta", 1.0)?;
    let trans_a = node.attr_int("transA", 0)? != 0;
    let trans_b = node.attr_int("transB", 0)? != 0;
    if a.ndim() != 2 || b.ndim() != 2 {
        return Err(OpError(format!(
            "Gemm needs 2-D A and B, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let a = a.as_standard_layout();
    let b = b.as_standard_layout();
    let (ar, ac) = (a.shape()[0], a.shape()[1]);
    let (br, bc) = (b.shape()[0], b.shape()[1]);
    let mut am = Mat::rows(a.as_slice().expect("standard layout"), 0, ac);
    let mut bm = Mat::rows(b.as_slice().expect("standard layout"), 0, bc);
    let (m, k) = if trans_a {
        am = am.t();
        (ac, ar)
    } else {
        (ar, ac)
    };
    let (kb, n) = if trans_b {
        bm = bm.t();
        (bc, br)
    } else {
        (br, bc)
    };
    if k != kb {
        return Err(OpError(format!(
            "Gemm inner dimensions differ: A{} is {m}×{k}, B{} is {kb}×{n}",
            if trans_a { "ᵀ" } else { "" },
            if trans_b { "ᵀ" } else { "" },
        )));
    }
    let mut out = vec![0.0f32; m * n];
    let mut beta_eff = 0.0;
    if let Some(c) = c
        && beta != 0.0
    {
        broadcast_into(c, m, n, &mut out)?;
        beta_eff = beta;
    }
    sgemm(m, k, n, alpha, am, bm, beta_eff, &mut out, n);
    let out = ArrayD::from_shape_vec(IxDyn(&[m, n]), out).map_err(|e| OpError(e.to_string()))?;
    single(out)
}

/// Writes `c` broadcast unidirectionally to [m, n] into `out` (row-major).
fn broadcast_into(c: &ArrayD<f32>, m: usize, n: usize, out: &mut [f32]) -> Result<(), OpError> {
    let shape = c.shape();
    let bad = || {
        OpError(format!(
            "Gemm input C of shape {shape:?} cannot be broadcast to [{m}, {n}]"
        ))
    };
    let (cm, cn) = match shape.len() {
        0 => (1, 1),
        1 => (1, shape[0]),
        2 => (shape[0], shape[1]),
        _ => return Err(bad()),
    };
    if (cm != 1 && cm != m) || (cn != 1 && cn != n) {
        return Err(bad());
    }
    let c = c.as_standard_layout();
    let cs = c.as_slice().expect("standard layout");
    for (i, row) in out.chunks_mut(n.max(1)).take(m).enumerate() {
        let ci = if cm == 1 { 0 } else { i };
        if cn == 1 {
            row.fill(cs[ci]);
        } else {
            row.copy_from_slice(&cs[ci * n..ci * n + n]);
        }
    }
    Ok(())
}

// ---- MatMul ----------------------------------------------------------------------------------

fn matmul_op(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let a = input_f32(inputs, 0)?;
    let b = input_f32(inputs, 1)?;
    single(matmul(a, b)?)
}

/// numpy-style matmul: 1-D operands are promoted (and the added dim removed), batch dims
/// broadcast.
pub(super) fn matmul(a: &ArrayD<f32>, b: &ArrayD<f32>) -> Result<ArrayD<f32>, OpError> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(OpError(format!(
            "MatMul operands must have rank ≥ 1, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let mut ash = a.shape().to_vec();
    let mut bsh = b.shape().to_vec();
    let a_vec = ash.len() == 1;
    let b_vec = bsh.len() == 1;
    if a_vec {
        ash.insert(0, 1);
    }
    if b_vec {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (kb, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != kb {
        return Err(OpError(format!(
            "MatMul inner dimensions differ: {:?} × {:?} ({k} vs {kb})",
            a.shape(),
            b.shape()
        )));
    }
    let abatch = &ash[..ash.len() - 2];
    let bbatch = &bsh[..bsh.len() - 2];
    let rank = abatch.len().max(bbatch.len());
    let mut batch = vec![0usize; rank];
    // Element strides (in matrices) of each operand per broadcast batch dim; 0 where broadcast.
    let mut astr = vec![0usize; rank];
    let mut bstr = vec![0usize; rank];
    {
        let mut sa = m * k;
        let mut sb = k * n;
        for i in (0..rank).rev() {
            let da = (i + abatch.len()).checked_sub(rank).map(|j| abatch[j]);
            let db = (i + bbatch.len()).checked_sub(rank).map(|j| bbatch[j]);
            let (xa, xb) = (da.unwrap_or(1), db.unwrap_or(1));
            batch[i] = match (xa, xb) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => {
                    return Err(OpError(format!(
                        "MatMul batch dimensions of {:?} and {:?} do not broadcast",
                        a.shape(),
                        b.shape()
                    )));
                }
            };
            astr[i] = if xa == 1 { 0 } else { sa };
            bstr[i] = if xb == 1 { 0 } else { sb };
            sa *= xa;
            sb *= xb;
        }
    }
    let count: usize = batch.iter().product();
    let a = a.as_standard_layout();
    let b = b.as_standard_layout();
    let asl = a.as_slice().expect("standard layout");
    let bsl = b.as_slice().expect("standard layout");
    let offsets = |mut idx: usize| {
        let (mut oa, mut ob) = (0, 0);
        for i in (0..rank).rev() {
            let j = idx % batch[i];
            idx /= batch[i];
            oa += j * astr[i];
            ob += j * bstr[i];
        }
        (oa, ob)
    };
    let mut out = vec![0.0f32; count * m * n];
    let run = |bi: usize, chunk: &mut [f32]| {
        let (oa, ob) = offsets(bi);
        sgemm(
            m,
            k,
            n,
            1.0,
            Mat::rows(asl, oa, k),
            Mat::rows(bsl, ob, n),
            0.0,
            chunk,
            n,
        );
    };
    if m * n > 0 {
        if count > 1 && !gemm_is_threaded(m, k, n) {
            out.par_chunks_mut(m * n)
                .with_min_len((1 << 16) / (m * n * k.max(1)).max(1))
                .enumerate()
                .for_each(|(bi, chunk)| run(bi, chunk));
        } else {
            for (bi, chunk) in out.chunks_mut(m * n).enumerate() {
                run(bi, chunk);
            }
        }
    }
    let mut shape = batch;
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| OpError(e.to_string()))
}
