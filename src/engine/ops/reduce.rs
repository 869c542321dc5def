//! Reductions: ReduceMean/Sum/Max/Min/Prod/L1/L2/SumSquare/LogSum/LogSumExp, ArgMax/ArgMin.
//!
//! The reduced axes are moved last (a copy only when they are not already the trailing ones),
//! so each output element reduces one contiguous run.

use ndarray::ArrayD;
use rayon::prelude::*;

use super::shape::{Elem, permute};
use super::{
    OpCtx, OpError, OpResult, PAR_MIN, Registry, array_from, input, normalize_axis, optional,
    single,
};
use crate::ir::TensorData;

pub fn register(registry: &mut Registry) {
    registry.add("ReduceMean", reduce_mean);
    registry.add("ReduceSum", reduce_sum);
    registry.add("ReduceMax", reduce_max);
    registry.add("ReduceMin", reduce_min);
    registry.add("ReduceProd", reduce_prod);
    registry.add("ReduceL1", reduce_l1);
    registry.add("ReduceL2", reduce_l2);
    registry.add("ReduceSumSquare", reduce_sum_square);
    registry.add("ReduceLogSum", reduce_log_sum);
    registry.add("ReduceLogSumExp", reduce_log_sum_exp);
    registry.add("ArgMax", arg_max);
    registry.add("ArgMin", arg_min);
}

/// Which axes to reduce, or None for "no reduction" (noop_with_empty_axes with empty axes).
fn reduce_axes(
    ctx: &OpCtx<'_>,
    inputs: &[Option<&TensorData>],
    rank: usize,
    axes_input_since: i64,
) -> Result<Option<Vec<usize>>, OpError> {
    let raw: Option<Vec<i64>> = if ctx.opset >= axes_input_since {
        match optional(inputs, 1) {
            None => None,
            Some(TensorData::I64(a)) => {
                if a.ndim() > 1 {
                    return Err(OpError(format!(
                        "axes must be 1-D, got shape {:?}",
                        a.shape()
                    )));
                }
                Some(a.iter().copied().collect())
            }
            Some(t) => {
                return Err(OpError(format!(
                    "axes must be an integer tensor, got {}",
                    t.kind_name()
                )));
            }
        }
    } else {
        ctx.node.attr_ints("axes")?
    };
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        if ctx.node.attr_int("noop_with_empty_axes", 0)? != 0 {
            return Ok(None);
        }
        return Ok(Some((0..rank).collect()));
    }
    let mut axes = Vec::with_capacity(raw.len());
    for &a in &raw {
        let axis = normalize_axis(a, rank)?;
        if rank == 0 || axes.contains(&axis) {
            return Err(OpError(format!("invalid axes {raw:?} for rank {rank}")));
        }
        axes.push(axis);
    }
    axes.sort_unstable();
    Ok(Some(axes))
}

/// Applies `f` to the run of every output element, the reduced `axes` (sorted, unique)
/// laid out last. Returns one value per kept position, in row-major order of kept axes.
fn reduce_rows<T, U, F>(x: &ArrayD<T>, axes: &[usize], f: F) -> Vec<U>
where
    T: Elem,
    U: Copy + Send + Default,
    F: Fn(&[T]) -> U + Sync + Send,
{
    let rank = x.ndim();
    let kept: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let run: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let rows: usize = kept.iter().map(|&a| x.shape()[a]).product();
    // the reduced axes last: a blocked transpose unless they already are
    let moved;
    let data: &[T] = match x.as_slice() {
        Some(s) if perm.iter().enumerate().all(|(k, &p)| k == p) => s,
        _ => {
            moved = permute(x, &perm).unwrap_or_else(|_| x.clone());
            moved.as_slice().unwrap_or(&[])
        }
    };
    let mut out = vec![U::default(); rows];
    if run == 0 {
        let empty = f(&[]);
        out.iter_mut().for_each(|o| *o = empty);
        return out;
    }
    if data.len() >= PAR_MIN && rows > 1 {
        let per = (PAR_MIN / 4 / run).max(1);
        out.par_chunks_mut(per)
            .zip(data.par_chunks(per * run))
            .for_each(|(o, d)| {
                for (o, r) in o.iter_mut().zip(d.chunks(run)) {
                    *o = f(r);
                }
            });
    } else {
        for (o, r) in out.iter_mut().zip(data.chunks(run)) {
            *o = f(r);
        }
    }
    out
}

fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(k, &d)| {
            if !axes.contains(&k) {
                Some(d)
            } else if keepdims {
                Some(1)
            } else {
                None
            }
        })
        .collect()
}

/// A reduction with a float row function and, where meaningful, an integer one.
fn reduce<FF, FI>(
    ctx: &OpCtx<'_>,
    inputs: &[Option<&TensorData>],
    axes_input_since: i64,
    ff: FF,
    fi: Option<FI>,
) -> OpResult
where
    FF: Fn(&[f32]) -> f32 + Sync + Send,
    FI: Fn(&[i64]) -> i64 + Sync + Send,
{
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let keepdims = ctx.node.attr_int("keepdims", 1)? != 0;
    let Some(axes) = reduce_axes(ctx, inputs, shape.len(), axes_input_since)? else {
        return single(x.clone());
    };
    let out_shape = reduced_shape(shape, &axes, keepdims);
    match x {
        TensorData::F32(a) => single(array_from(&out_shape, reduce_rows(a, &axes, ff))?),
        TensorData::I64(a) => match fi {
            Some(fi) => single(array_from(&out_shape, reduce_rows(a, &axes, fi))?),
            None => {
                let a = a.mapv(|v| v as f32);
                single(array_from(&out_shape, reduce_rows(&a, &axes, ff))?)
            }
        },
    }
}

fn sum_f(r: &[f32]) -> f32 {
    r.iter().map(|&v| v as f64).sum::<f64>() as f32
}

fn sum_sq_f(r: &[f32]) -> f32 {
    r.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() as f32
}

/// The value of `r` that is `better` than all others, starting from `init` (the empty row's
/// result); the first NaN wins.
fn extreme_f(r: &[f32], init: f32, better: impl Fn(f32, f32) -> bool) -> f32 {
    r.iter().copied().fold(init, |m, v| {
        if v.is_nan() || m.is_nan() || better(v, m) {
            if m.is_nan() { m } else { v }
        } else {
            m
        }
    })
}

fn max_f(r: &[f32]) -> f32 {
    extreme_f(r, f32::NEG_INFINITY, |v, m| v > m)
}

fn min_f(r: &[f32]) -> f32 {
    extreme_f(r, f32::INFINITY, |v, m| v < m)
}

type IntRow = fn(&[i64]) -> i64;

fn reduce_mean(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        |r: &[f32]| (r.iter().map(|&v| v as f64).sum::<f64>() / r.len() as f64) as f32,
        Some(|r: &[i64]| {
            let n = r.len() as i64;
            if n == 0 {
                0
            } else {
                r.iter().fold(0i64, |s, &v| s.wrapping_add(v)) / n
            }
        }),
    )
}

fn reduce_sum(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        13,
        sum_f,
        Some(|r: &[i64]| r.iter().fold(0i64, |s, &v| s.wrapping_add(v))),
    )
}

fn reduce_max(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        max_f,
        Some(|r: &[i64]| r.iter().copied().max().unwrap_or(i64::MIN)),
    )
}

fn reduce_min(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        min_f,
        Some(|r: &[i64]| r.iter().copied().min().unwrap_or(i64::MAX)),
    )
}

fn reduce_prod(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        |r: &[f32]| r.iter().map(|&v| v as f64).product::<f64>() as f32,
        Some(|r: &[i64]| r.iter().fold(1i64, |p, &v| p.wrapping_mul(v))),
    )
}

fn reduce_l1(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        |r: &[f32]| r.iter().map(|&v| v.abs() as f64).sum::<f64>() as f32,
        Some(|r: &[i64]| {
            r.iter()
                .fold(0i64, |s, &v| s.wrapping_add(v.wrapping_abs()))
        }),
    )
}

fn reduce_l2(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        |r: &[f32]| sum_sq_f(r).sqrt(),
        None::<IntRow>,
    )
}

fn reduce_sum_square(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        sum_sq_f,
        Some(|r: &[i64]| {
            r.iter()
                .fold(0i64, |s, &v| s.wrapping_add(v.wrapping_mul(v)))
        }),
    )
}

fn reduce_log_sum(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(ctx, inputs, 18, |r: &[f32]| sum_f(r).ln(), None::<IntRow>)
}

fn reduce_log_sum_exp(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    reduce(
        ctx,
        inputs,
        18,
        |r: &[f32]| {
            let m = max_f(r);
            if !m.is_finite() {
                // all -inf (or empty) gives -inf; +inf and NaN propagate
                return if r.is_empty() { f32::NEG_INFINITY } else { m };
            }
            let s: f64 = r.iter().map(|&v| ((v - m) as f64).exp()).sum();
            m + s.ln() as f32
        },
        None::<IntRow>,
    )
}

// ---- ArgMax / ArgMin ------------------------------------------------------------------------

/// Index of the best element of a run; `better(a, b)` says a beats b strictly.
fn arg_best<T: Copy>(r: &[T], last: bool, better: impl Fn(T, T) -> bool) -> i64 {
    let mut best = 0usize;
    for (k, &v) in r.iter().enumerate().skip(1) {
        let b = r[best];
        if better(v, b) || (last && !better(b, v)) {
            best = k;
        }
    }
    best as i64
}

fn arg_common(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>], max: bool) -> OpResult {
    let x = input(inputs, 0)?;
    let shape = x.shape();
    let axis = normalize_axis(ctx.node.attr_int("axis", 0)?, shape.len())?;
    if shape.is_empty() {
        return Err(OpError("input must have rank >= 1".into()));
    }
    if shape[axis] == 0 {
        return Err(OpError(format!(
            "cannot take an arg-extreme over empty axis {axis}"
        )));
    }
    let keepdims = ctx.node.attr_int("keepdims", 1)? != 0;
    let last = ctx.node.attr_int("select_last_index", 0)? != 0;
    let out_shape = reduced_shape(shape, &[axis], keepdims);
    let idx = match x {
        TensorData::F32(a) => reduce_rows(a, &[axis], |r: &[f32]| {
            // NaN counts as the extreme (first one wins unless select_last_index)
            arg_best(r, last, |v: f32, b: f32| {
                if b.is_nan() {
                    false
                } else if v.is_nan() {
                    true
                } else if max {
                    v > b
                } else {
                    v < b
                }
            })
        }),
        TensorData::I64(a) => reduce_rows(a, &[axis], |r: &[i64]| {
            arg_best(r, last, |v: i64, b: i64| if max { v > b } else { v < b })
        }),
    };
    single(array_from(&out_shape, idx)?)
}

fn arg_max(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    arg_common(ctx, inputs, true)
}

fn arg_min(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    arg_common(ctx, inputs, false)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::ir::{Attribute, TensorData};

    fn x234() -> TensorData {
        f(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>())
    }

    #[test]
    fn reduce_mean_axes_attribute_and_input() {
        let x = x234();
        // opset 13: attribute; axis 1 with keepdims
        let want: Vec<f32> = (0..2)
            .flat_map(|a| (0..4).map(move |c| (a * 12 + c + 4) as f32))
            .collect();
        check_f(
            "ReduceMean",
            13,
            vec![("axes", Attribute::Ints(vec![1]))],
            &[&x],
            &[2, 1, 4],
            &want,
        );
        // opset 18: input
        check_f(
            "ReduceMean",
            18,
            vec![("keepdims", Attribute::Int(0))],
            &[&x, &i(&[1], &[-2])],
            &[2, 4],
            &want,
        );
        // trailing axes [1, 2] (no copy) and leading [0, 1] (transposed)
        check_f(
            "ReduceMean",
            18,
            vec![("keepdims", Attribute::Int(0))],
            &[&x, &i(&[2], &[2, 1])],
            &[2],
            &[5.5, 17.5],
        );
        check_f(
            "ReduceMean",
            13,
            vec![
                ("axes", Attribute::Ints(vec![0, 1])),
                ("keepdims", Attribute::Int(0)),
            ],
            &[&x],
            &[4],
            &[10., 11., 12., 13.],
        );
        // all axes
        check_f("ReduceMean", 13, vec![], &[&x], &[1, 1, 1], &[11.5]);
    }

    #[test]
    fn reduce_sum_opsets_and_noop() {
        let x = x234();
        // opset 11 attribute
        check_f(
            "ReduceSum",
            11,
            vec![
                ("axes", Attribute::Ints(vec![2])),
                ("keepdims", Attribute::Int(0)),
            ],
            &[&x],
            &[2, 3],
            &[6., 22., 38., 54., 70., 86.],
        );
        // opset 13 input, empty axes: reduce all, or no-op
        check_f(
            "ReduceSum",
            13,
            vec![("keepdims", Attribute::Int(0))],
            &[&x],
            &[],
            &[276.],
        );
        let n = node(
            "ReduceSum",
            2,
            1,
            vec![("noop_with_empty_axes", Attribute::Int(1))],
        );
        let empty = i(&[0], &[]);
        let out = run_node(&n, 13, &[Some(&x), Some(&empty)]).unwrap();
        assert_eq!(out[0], x);
        let out = run_node(&n, 13, &[Some(&x), None]).unwrap();
        assert_eq!(out[0], x);
        // integers
        let xi = i(&[2, 2], &[1, 2, 3, 4]);
        let out = run("ReduceSum", 13, vec![], &[&xi, &i(&[1], &[0])]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![1, 2], vec![4, 6]));
    }

    #[test]
    fn reduce_max_min_prod_l2() {
        let x = f(&[2, 3], &[1., -5., 3., 4., 2., -6.]);
        let ax = vec![("axes", Attribute::Ints(vec![1]))];
        check_f("ReduceMax", 13, ax.clone(), &[&x], &[2, 1], &[3., 4.]);
        check_f("ReduceMin", 13, ax.clone(), &[&x], &[2, 1], &[-5., -6.]);
        check_f("ReduceProd", 13, ax.clone(), &[&x], &[2, 1], &[-15., -48.]);
        check_f(
            "ReduceL2",
            13,
            ax.clone(),
            &[&x],
            &[2, 1],
            &[35f32.sqrt(), 56f32.sqrt()],
        );
        check_f("ReduceL1", 13, ax.clone(), &[&x], &[2, 1], &[9., 12.]);
        check_f(
            "ReduceSumSquare",
            13,
            ax.clone(),
            &[&x],
            &[2, 1],
            &[35., 56.],
        );
        let pos = f(&[2], &[1., 2.]);
        check_f("ReduceLogSum", 13, vec![], &[&pos], &[1], &[3f32.ln()]);
        check_f(
            "ReduceLogSumExp",
            13,
            vec![],
            &[&pos],
            &[1],
            &[(1f32.exp() + 2f32.exp()).ln()],
        );
        // opset 18 axes input for ReduceMax
        check_f(
            "ReduceMax",
            18,
            vec![("keepdims", Attribute::Int(0))],
            &[&x, &i(&[1], &[0])],
            &[3],
            &[4., 2., 3.],
        );
        let xi = i(&[3], &[2, 3, 4]);
        let out = run(
            "ReduceProd",
            13,
            vec![("keepdims", Attribute::Int(0))],
            &[&xi],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![], vec![24]));
    }

    #[test]
    fn reduce_errors() {
        let x = x234();
        assert!(
            run(
                "ReduceMean",
                13,
                vec![("axes", Attribute::Ints(vec![3]))],
                &[&x]
            )
            .is_err()
        );
        assert!(
            run(
                "ReduceMean",
                13,
                vec![("axes", Attribute::Ints(vec![1, -2]))],
                &[&x]
            )
            .is_err()
        );
        assert!(run("ReduceSum", 13, vec![], &[&x, &f(&[1], &[1.])]).is_err());
    }

    #[test]
    fn reduce_large_parallel() {
        let xs: Vec<f32> = (0..256 * 512).map(|v| (v % 7) as f32).collect();
        let x = f(&[256, 512], &xs);
        let out = run(
            "ReduceSum",
            13,
            vec![("keepdims", Attribute::Int(0))],
            &[&x, &i(&[1], &[1])],
        )
        .unwrap();
        let (s, v) = fvals(&out[0]);
        assert_eq!(s, vec![256]);
        for (r, &g) in v.iter().enumerate() {
            let want: f32 = xs[r * 512..(r + 1) * 512].iter().sum();
            assert_eq!(g, want);
        }
        let out = run(
            "ReduceSum",
            13,
            vec![("keepdims", Attribute::Int(0))],
            &[&x, &i(&[1], &[0])],
        )
        .unwrap();
        let (s, v) = fvals(&out[0]);
        assert_eq!(s, vec![512]);
        let want: f32 = (0..256).map(|r| xs[r * 512 + 3]).sum();
        assert_eq!(v[3], want);
    }

    #[test]
    fn arg_max_min() {
        let x = f(&[2, 3], &[1., 5., 5., 7., 2., 7.]);
        let out = run("ArgMax", 13, vec![("axis", Attribute::Int(1))], &[&x]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![2, 1], vec![1, 0]));
        let out = run(
            "ArgMax",
            13,
            vec![
                ("axis", Attribute::Int(-1)),
                ("keepdims", Attribute::Int(0)),
                ("select_last_index", Attribute::Int(1)),
            ],
            &[&x],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![2], vec![2, 2]));
        let out = run("ArgMin", 13, vec![("keepdims", Attribute::Int(0))], &[&x]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![3], vec![0, 1, 0]));
        let xi = i(&[3], &[4, 9, 9]);
        let out = run("ArgMax", 13, vec![], &[&xi]).unwrap();
        assert_eq!(ivals(&out[0]), (vec![1], vec![1]));
    }
}
