//! Matrix products: Gemm and MatMul.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::gemm::{Mat, gemm_is_threaded, sgemm};
use super::{OpCtx, OpError, OpResult, Registry, checked_len, input_f32, optional, single};
use crate::engine::buffers::zeroed;
use crate::ir::TensorData;

pub fn register(registry: &mut Registry) {
    registry.add("Gemm", gemm_op);
    registry.add("MatMul", matmul_op);
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
    checked_len(&[m, n])?;
    let mut out = zeroed::<f32>(m * n);
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
    let mut full = batch.clone();
    full.extend([m, n]);
    checked_len(&full)?;
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
    let mut out = zeroed::<f32>(count * m * n);
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

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, arr2};

    use super::super::testutil::{Rng, assert_arrays_close, err, node, run1};
    use crate::ir::Attribute;

    /// Naive [m,k]×[k,n] in f64.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    s += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn gemm_node(ta: bool, tb: bool, alpha: f32, beta: f32, with_c: bool) -> crate::ir::Node {
        node(
            "Gemm",
            if with_c { 3 } else { 2 },
            1,
            vec![
                ("transA", Attribute::Int(ta as i64)),
                ("transB", Attribute::Int(tb as i64)),
                ("alpha", Attribute::Float(alpha)),
                ("beta", Attribute::Float(beta)),
            ],
        )
    }

    #[test]
    fn gemm_closed_form() {
        let a = arr2(&[[1.0f32, 2.0], [3.0, 4.0]]).into_dyn();
        let b = arr2(&[[5.0f32, 6.0], [7.0, 8.0]]).into_dyn();
        let c = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0f32, -1.0]).unwrap();
        let y = run1(
            &gemm_node(false, false, 1.0, 1.0, true),
            &[Some(&a), Some(&b), Some(&c)],
        );
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![20.0, 21.0, 44.0, 49.0]
        );
        let y = run1(
            &gemm_node(true, true, 2.0, 0.5, true),
            &[Some(&a), Some(&b), Some(&c)],
        );
        // Aᵀ·Bᵀ = [[23, 31], [34, 46]]
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![46.5, 61.5, 68.5, 91.5]
        );
    }

    #[test]
    fn gemm_random_all_broadcasts() {
        let mut rng = Rng::new(7);
        for case in 0..40 {
            let (m, k, n) = (rng.range(1, 9), rng.range(1, 40), rng.range(1, 9));
            let (ta, tb) = (case % 2 == 1, (case / 2) % 2 == 1);
            let alpha = 0.5 + rng.f32();
            let beta = 0.5 + rng.f32();
            let a_log = rng.array(&[m, k]);
            let b_log = rng.array(&[k, n]);
            let a = if ta {
                a_log.t().to_owned()
            } else {
                a_log.clone()
            };
            let b = if tb {
                b_log.t().to_owned()
            } else {
                b_log.clone()
            };
            let prod = naive(
                a_log.as_slice().unwrap(),
                b_log.as_standard_layout().as_slice().unwrap(),
                m,
                k,
                n,
            );
            let c_shapes: Vec<Vec<usize>> = vec![
                vec![],
                vec![n],
                vec![1, n],
                vec![m, 1],
                vec![m, n],
                vec![1, 1],
                vec![1],
            ];
            for cs in c_shapes {
                let c = rng.array(&cs);
                let cb = c.broadcast(IxDyn(&[m, n])).unwrap();
                let want: Vec<f32> = prod
                    .iter()
                    .zip(cb.iter())
                    .map(|(p, cv)| alpha * p + beta * cv)
                    .collect();
                let want = ArrayD::from_shape_vec(IxDyn(&[m, n]), want).unwrap();
                let y = run1(
                    &gemm_node(ta, tb, alpha, beta, true),
                    &[Some(&a), Some(&b), Some(&c)],
                );
                assert_arrays_close(&y, &want, 1e-5, &format!("gemm C{cs:?} ta={ta} tb={tb}"));
            }
            // Without C.
            let want =
                ArrayD::from_shape_vec(IxDyn(&[m, n]), prod.iter().map(|p| alpha * p).collect())
                    .unwrap();
            let y = run1(
                &gemm_node(ta, tb, alpha, beta, false),
                &[Some(&a), Some(&b)],
            );
            assert_arrays_close(&y, &want, 1e-5, "gemm no C");
        }
    }

    #[test]
    fn gemm_single_row_paths() {
        // m = 1 runs as a matrix–vector product, split over column chunks.
        let mut rng = Rng::new(13);
        let (k, n) = (1000, 300);
        let a = rng.array(&[1, k]);
        let b_log = rng.array(&[k, n]);
        let c = rng.array(&[n]);
        let prod = naive(a.as_slice().unwrap(), b_log.as_slice().unwrap(), 1, k, n);
        let want = ArrayD::from_shape_vec(
            IxDyn(&[1, n]),
            prod.iter()
                .zip(c.iter())
                .map(|(p, cv)| 2.0 * p + 0.5 * cv)
                .collect(),
        )
        .unwrap();
        for tb in [false, true] {
            let b = if tb {
                b_log.t().as_standard_layout().into_owned()
            } else {
                b_log.clone()
            };
            let y = run1(
                &gemm_node(false, tb, 2.0, 0.5, true),
                &[Some(&a), Some(&b), Some(&c)],
            );
            assert_arrays_close(&y, &want, 1e-5, &format!("gemv transB={tb}"));
        }
    }

    #[test]
    fn gemm_errors() {
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[4, 5]));
        let msg = err(
            &gemm_node(false, false, 1.0, 1.0, false),
            &[Some(&a), Some(&b)],
        );
        assert!(msg.contains("inner dimensions"), "{msg}");
        let b = ArrayD::<f32>::zeros(IxDyn(&[3, 5]));
        let c = ArrayD::<f32>::zeros(IxDyn(&[3]));
        let msg = err(
            &gemm_node(false, false, 1.0, 1.0, true),
            &[Some(&a), Some(&b), Some(&c)],
        );
        assert!(msg.contains("cannot be broadcast"), "{msg}");
        let v = ArrayD::<f32>::zeros(IxDyn(&[3]));
        let msg = err(
            &gemm_node(false, false, 1.0, 1.0, false),
            &[Some(&v), Some(&b)],
        );
        assert!(msg.contains("2-D"), "{msg}");
    }

    /// Reference numpy matmul via explicit broadcasting loops.
    fn matmul_ref(a: &ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
        let mut ash = a.shape().to_vec();
        let mut bsh = b.shape().to_vec();
        let (av, bv) = (ash.len() == 1, bsh.len() == 1);
        if av {
            ash.insert(0, 1);
        }
        if bv {
            bsh.push(1);
        }
        let a = a.to_shape(IxDyn(&ash)).unwrap().to_owned();
        let b = b.to_shape(IxDyn(&bsh)).unwrap().to_owned();
        let rank = ash.len().max(bsh.len());
        let pad = |s: &[usize]| {
            let mut v = vec![1; rank - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (pa, pb) = (pad(&ash), pad(&bsh));
        let a = a.to_shape(IxDyn(&pa)).unwrap().to_owned();
        let b = b.to_shape(IxDyn(&pb)).unwrap().to_owned();
        let (m, k, n) = (pa[rank - 2], pa[rank - 1], pb[rank - 1]);
        let mut out_shape: Vec<usize> = (0..rank - 2).map(|i| pa[i].max(pb[i])).collect();
        out_shape.extend([m, n]);
        let mut out = ArrayD::<f32>::zeros(IxDyn(&out_shape));
        for (idx, v) in out.indexed_iter_mut() {
            let mut ia: Vec<usize> = (0..rank - 2)
                .map(|i| if pa[i] == 1 { 0 } else { idx[i] })
                .collect();
            let mut ib: Vec<usize> = (0..rank - 2)
                .map(|i| if pb[i] == 1 { 0 } else { idx[i] })
                .collect();
            let (i, j) = (idx[rank - 2], idx[rank - 1]);
            let mut s = 0.0f64;
            for p in 0..k {
                ia.extend([i, p]);
                ib.extend([p, j]);
                s += a[IxDyn(&ia)] as f64 * b[IxDyn(&ib)] as f64;
                ia.truncate(rank - 2);
                ib.truncate(rank - 2);
            }
            *v = s as f32;
        }
        let mut final_shape = out_shape[..rank - 2].to_vec();
        if !av {
            final_shape.push(m);
        }
        if !bv {
            final_shape.push(n);
        }
        out.to_shape(IxDyn(&final_shape)).unwrap().to_owned()
    }

    #[test]
    fn matmul_broadcasting_and_vectors() {
        let mut rng = Rng::new(11);
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[2, 1, 3, 4], &[5, 4, 6], &[2, 5, 3, 6]),
            (&[3, 4], &[4, 5], &[3, 5]),
            (&[4], &[4, 5], &[5]),
            (&[3, 4], &[4], &[3]),
            (&[4], &[4], &[]),
            (&[7, 3, 4], &[4], &[7, 3]),
            (&[4], &[2, 4, 6], &[2, 6]),
            (&[1, 3, 4], &[6, 4, 2], &[6, 3, 2]),
            (&[6, 1, 1, 5], &[1, 2, 5, 1], &[6, 2, 1, 1]),
            (&[2, 3, 0], &[0, 4], &[2, 3, 4]),
            (&[64, 20, 33], &[64, 33, 17], &[64, 20, 17]),
            (&[2, 200, 300], &[300, 100], &[2, 200, 100]),
        ];
        for (sa, sb, so) in cases {
            let a = rng.array(sa);
            let b = rng.array(sb);
            let y = run1(&node("MatMul", 2, 1, vec![]), &[Some(&a), Some(&b)]);
            assert_eq!(y.shape(), *so, "{sa:?}×{sb:?}");
            assert_arrays_close(&y, &matmul_ref(&a, &b), 1e-5, &format!("{sa:?}×{sb:?}"));
        }
        // Non-contiguous operand.
        let a = rng.array(&[5, 3]);
        let b = rng.array(&[4, 5]);
        let at = a.t().to_owned().into_dyn();
        let bt = b.clone().reversed_axes();
        let y = run1(&node("MatMul", 2, 1, vec![]), &[Some(&at), Some(&bt)]);
        assert_arrays_close(
            &y,
            &matmul_ref(&at, &bt.to_owned()),
            1e-5,
            "transposed views",
        );
    }

    #[test]
    fn matmul_errors() {
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 4]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[3, 4, 5]));
        let msg = err(&node("MatMul", 2, 1, vec![]), &[Some(&a), Some(&b)]);
        assert!(msg.contains("do not broadcast"), "{msg}");
        let b = ArrayD::<f32>::zeros(IxDyn(&[5, 5]));
        let msg = err(&node("MatMul", 2, 1, vec![]), &[Some(&a), Some(&b)]);
        assert!(msg.contains("inner dimensions"), "{msg}");
        let s = ArrayD::<f32>::zeros(IxDyn(&[]));
        let msg = err(&node("MatMul", 2, 1, vec![]), &[Some(&s), Some(&b)]);
        assert!(msg.contains("rank"), "{msg}");
    }
}
