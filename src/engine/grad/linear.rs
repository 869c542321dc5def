//! Backward of the matrix products.
//!
//! * Gemm, Y = α·op(A)·op(B) + β·C: dA = α·G·op(B)ᵀ (transposed back when `transA`),
//!   dB = α·op(A)ᵀ·G (transposed back when `transB`), dC = β·G summed to C's shape.
//! * MatMul (numpy semantics: 1-D operands promoted, batch dims broadcast): per batch matrix
//!   dA = G·Bᵀ and dB = Aᵀ·G, summed over the batch dims an operand was broadcast along. A 2-D
//!   right operand (a weight) shared by every batch matrix folds the batch into the rows, so its
//!   gradient is one product.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, IxDyn, linalg::general_mat_mul};
use rayon::prelude::*;

use super::{GradCtx, GradRegistry, GradResult, Grads, grad_output, reduce_to_shape};
use crate::engine::ops::{OpError, input_f32, optional};
use crate::ir::TensorData;

pub fn register(registry: &mut GradRegistry) {
    registry.add("Gemm", gemm);
    registry.add("MatMul", matmul);
}

fn as_2d<'a>(a: &'a ArrayD<f32>, what: &str) -> Result<ArrayView2<'a, f32>, OpError> {
    a.view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| OpError(format!("{what} must be 2-D, got shape {:?}", a.shape())))
}

/// α·a·b as a new matrix.
fn product(alpha: f32, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut c = Array2::<f32>::zeros((a.nrows(), b.ncols()));
    general_mat_mul(alpha, &a, &b, 0.0, &mut c);
    c
}

fn gemm(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let node = ctx.node;
    let alpha = node.attr_float("alpha", 1.0)?;
    let beta = node.attr_float("beta", 1.0)?;
    let trans_a = node.attr_int("transA", 0)? != 0;
    let trans_b = node.attr_int("transB", 0)? != 0;
    let a = input_f32(inputs, 0)?;
    let b = input_f32(inputs, 1)?;
    let g = grad_output(grads, 0)?;
    let (a2, b2, g2) = (as_2d(a, "A")?, as_2d(b, "B")?, as_2d(g, "the gradient")?);
    let op_a = if trans_a { a2.t() } else { a2 };
    let op_b = if trans_b { b2.t() } else { b2 };
    let mut out: Grads = vec![None, None, None];
    if ctx.wants(0) {
        // d op(A) = α·G·op(B)ᵀ; dA is its transpose when transA.
        let d = if trans_a {
            product(alpha, op_b, g2.t())
        } else {
            product(alpha, g2, op_b.t())
        };
        out[0] = Some(d.into_dyn());
    }
    if ctx.wants(1) {
        let d = if trans_b {
            product(alpha, g2.t(), op_a)
        } else {
            product(alpha, op_a.t(), g2)
        };
        out[1] = Some(d.into_dyn());
    }
    if ctx.wants(2)
        && let Some(c) = optional(inputs, 2)
    {
        let scaled = if beta == 1.0 {
            g.clone()
        } else {
            g.mapv(|v| v * beta)
        };
        out[2] = Some(reduce_to_shape(scaled, c.shape())?);
    }
    Ok(out)
}

fn matmul(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let a = input_f32(inputs, 0)?;
    let b = input_f32(inputs, 1)?;
    let g = grad_output(grads, 0)?;
    let (ga, gb) = matmul_grads(a, b, g, ctx.wants(0), ctx.wants(1))?;
    Ok(vec![ga, gb])
}

/// The gradients of the two operands of a product (None where not wanted).
pub(super) type OperandGrads = (Option<ArrayD<f32>>, Option<ArrayD<f32>>);

/// The gradients of numpy matmul(a, b) given the gradient `g` of the result.
pub(super) fn matmul_grads(
    a: &ArrayD<f32>,
    b: &ArrayD<f32>,
    g: &ArrayD<f32>,
    want_a: bool,
    want_b: bool,
) -> Result<OperandGrads, OpError> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(OpError("MatMul operands must have rank ≥ 1".into()));
    }
    // Promote 1-D operands as the forward does: a [K] → [1, K], b [K] → [K, 1].
    let mut ash = a.shape().to_vec();
    let mut bsh = b.shape().to_vec();
    if ash.len() == 1 {
        ash.insert(0, 1);
    }
    if bsh.len() == 1 {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let n = bsh[bsh.len() - 1];
    let abatch = &ash[..ash.len() - 2];
    let bbatch = &bsh[..bsh.len() - 2];
    let rank = abatch.len().max(bbatch.len());
    let batch: Vec<usize> = (0..rank)
        .map(|i| {
            let da = (i + abatch.len())
                .checked_sub(rank)
                .map_or(1, |j| abatch[j]);
            let db = (i + bbatch.len())
                .checked_sub(rank)
                .map_or(1, |j| bbatch[j]);
            da.max(db)
        })
        .collect();
    let count: usize = batch.iter().product();
    let mut full_g = batch.clone();
    full_g.extend([m, n]);
    if g.len() != full_g.iter().product::<usize>() {
        return Err(OpError(format!(
            "gradient of shape {:?} does not fit a MatMul of {:?} and {:?}",
            g.shape(),
            a.shape(),
            b.shape()
        )));
    }
    let g3 = g
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[count, m, n]))
        .map_err(|e| OpError(e.to_string()))?;
    let a_prom = a
        .view()
        .into_shape_with_order(IxDyn(&ash))
        .map_err(|e| OpError(e.to_string()))?;
    let b_prom = b
        .view()
        .into_shape_with_order(IxDyn(&bsh))
        .map_err(|e| OpError(e.to_string()))?;

    // A weight-like right operand (2-D, no batch): fold the batch into the rows.
    if bbatch.is_empty() {
        let a_rows = a_prom
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((count * m, k))
            .map_err(|e| OpError(e.to_string()))?;
        let g_rows = g3
            .view()
            .into_shape_with_order((count * m, n))
            .map_err(|e| OpError(e.to_string()))?;
        let b2 = b_prom
            .into_dimensionality::<Ix2>()
            .map_err(|e| OpError(e.to_string()))?;
        let ga = if want_a {
            let d = product(1.0, g_rows.view(), b2.t());
            let mut full_a = batch.clone();
            full_a.extend([m, k]);
            let d = d
                .into_shape_with_order(IxDyn(&full_a))
                .map_err(|e| OpError(e.to_string()))?;
            Some(
                reduce_to_shape(d, &ash)?
                    .into_shape_with_order(IxDyn(a.shape()))
                    .map_err(|e| OpError(e.to_string()))?,
            )
        } else {
            None
        };
        let gb = if want_b {
            let d = product(1.0, a_rows.t(), g_rows.view());
            Some(
                d.into_shape_with_order(IxDyn(b.shape()))
                    .map_err(|e| OpError(e.to_string()))?,
            )
        } else {
            None
        };
        return Ok((ga, gb));
    }

    // General case: broadcast both to the full batch, one product per batch matrix.
    let bcast = |x: ndarray::ArrayViewD<'_, f32>,
                 rows: usize,
                 cols: usize|
     -> Result<ArrayD<f32>, OpError> {
        let mut shape = batch.clone();
        shape.extend([rows, cols]);
        let v = x
            .broadcast(IxDyn(&shape))
            .ok_or_else(|| OpError("MatMul batch dimensions do not broadcast".into()))?;
        v.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[count, rows, cols]))
            .map_err(|e| OpError(e.to_string()))
    };
    let a3 = bcast(a_prom.view(), m, k)?;
    let b3 = bcast(b_prom.view(), k, n)?;
    let per_batch = |rows: usize, cols: usize, f: &(dyn Fn(usize, &mut Array2<f32>) + Sync)| {
        let mut d = ArrayD::<f32>::zeros(IxDyn(&[count, rows, cols]));
        d.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(i, dst)| {
                let mut tmp = Array2::<f32>::zeros((rows, cols));
                f(i, &mut tmp);
                let mut dst = dst.into_dimensionality::<Ix2>().expect("2-D");
                dst.assign(&tmp);
            });
        d
    };
    let finish = |d: ArrayD<f32>,
                  rows: usize,
                  cols: usize,
                  prom: &[usize],
                  orig: &[usize]|
     -> Result<ArrayD<f32>, OpError> {
        let mut full = batch.clone();
        full.extend([rows, cols]);
        let d = d
            .into_shape_with_order(IxDyn(&full))
            .map_err(|e| OpError(e.to_string()))?;
        reduce_to_shape(d, prom)?
            .into_shape_with_order(IxDyn(orig))
            .map_err(|e| OpError(e.to_string()))
    };
    let ga = if want_a {
        let d = per_batch(m, k, &|i, out| {
            general_mat_mul(1.0, &as2(&g3, i), &as2(&b3, i).t(), 0.0, out)
        });
        Some(finish(d, m, k, &ash, a.shape())?)
    } else {
        None
    };
    let gb = if want_b {
        let d = per_batch(k, n, &|i, out| {
            general_mat_mul(1.0, &as2(&a3, i).t(), &as2(&g3, i), 0.0, out)
        });
        Some(finish(d, k, n, &bsh, b.shape())?)
    } else {
        None
    };
    Ok((ga, gb))
}

/// Matrix `i` of a [count, rows, cols] array.
fn as2(x: &ArrayD<f32>, i: usize) -> ArrayView2<'_, f32> {
    x.index_axis(Axis(0), i)
        .into_dimensionality::<Ix2>()
        .expect("2-D")
}

#[cfg(test)]
mod tests {
    use super::super::check::{Case, check, random};

    #[test]
    fn gemm_every_transpose_and_bias_shape() {
        for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            for c_shape in [&[4usize, 5][..], &[5], &[1, 5], &[4, 1], &[]] {
                let a = if ta == 1 {
                    random(&[3, 4], 1, -1.0, 1.0)
                } else {
                    random(&[4, 3], 1, -1.0, 1.0)
                };
                let b = if tb == 1 {
                    random(&[5, 3], 2, -1.0, 1.0)
                } else {
                    random(&[3, 5], 2, -1.0, 1.0)
                };
                let c = random(c_shape, 3, -1.0, 1.0);
                let case = Case::new("Gemm")
                    .attr_int("transA", ta)
                    .attr_int("transB", tb)
                    .attr_float("alpha", 0.7)
                    .attr_float("beta", 1.3)
                    .input(a)
                    .input(b)
                    .input(c);
                check(&case, 2e-3);
            }
        }
    }

    #[test]
    fn matmul_batched_broadcast_and_vectors() {
        let shapes: [(&[usize], &[usize]); 8] = [
            (&[3, 4], &[4, 5]),
            (&[2, 3, 4], &[4, 5]),
            (&[2, 3, 4], &[2, 4, 5]),
            (&[2, 1, 3, 4], &[3, 4, 2]),
            (&[3, 4], &[2, 4, 5]),
            (&[4], &[4, 5]),
            (&[2, 3, 4], &[4]),
            (&[4], &[4]),
        ];
        for (sa, sb) in shapes {
            let case = Case::new("MatMul")
                .input(random(sa, 4, -1.0, 1.0))
                .input(random(sb, 5, -1.0, 1.0));
            check(&case, 2e-3);
        }
    }
}
