//! Elementwise kernels: broadcasting arithmetic and comparisons, activations, Clip, Where,
//! Identity and Dropout.
//!
//! Binary ops follow numpy's multidirectional broadcasting. Three fast paths avoid any
//! per-element index arithmetic: operands of the same contiguous shape, a single-element
//! operand, and an operand that covers a contiguous run of the output's dimensions (bias
//! `[C,1,1]` against `[N,C,H,W]`, rows `[D]` against `[N,S,D]`). Everything else goes through
//! ndarray's strided `Zip`. Large outputs are split over rayon in fixed-size chunks.

use std::borrow::Cow;

use ndarray::{ArrayD, IxDyn, Zip};
use rayon::prelude::*;

use super::{
    Args, OpCtx, OpError, OpFn, OpResult, Registry, array_from, checked_len, go_parallel, input,
    optional, single,
};
use crate::engine::buffers::recycled;
use crate::ir::TensorData;

mod fused;
mod inplace;
pub(crate) mod math;
mod unary;

pub(crate) use fused::{Program, is_fusable};
pub(crate) use unary::UnaryOp;

/// Elements per parallel work item.
const CHUNK: usize = 8 * 1024;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("Add", add);
    registry.add("Sub", sub);
    registry.add("Mul", mul);
    registry.add("Div", div);
    registry.add_moving("Add", |ctx, args| {
        inplace::binary_moving(ctx, args, |x, y| x + y, add)
    });
    registry.add_moving("Sub", |ctx, args| {
        inplace::binary_moving(ctx, args, |x, y| x - y, sub)
    });
    registry.add_moving("Mul", |ctx, args| {
        inplace::binary_moving(ctx, args, |x, y| x * y, mul)
    });
    registry.add_moving("Div", |ctx, args| {
        inplace::binary_moving(ctx, args, |x, y| x / y, div)
    });
    registry.add("Pow", pow);
    registry.add("Min", min);
    registry.add("Max", max);
    registry.add("Sum", sum);
    registry.add("Mean", mean);
    registry.add("Equal", equal);
    registry.add("Less", less);
    registry.add("LessOrEqual", less_or_equal);
    registry.add("Greater", greater);
    registry.add("GreaterOrEqual", greater_or_equal);
    registry.add("And", and);
    registry.add("Or", or);
    registry.add("Xor", xor);
    registry.add("Not", not);
    registry.add("Where", where_op);
    // Float unary ops: one kernel over `UnaryOp`, in place when the input is handed over;
    // the integer forms of Relu, Neg, Abs and Clip keep their own kernels.
    macro_rules! unary {
        ($($op:literal => $integer:expr),* $(,)?) => {$(
            registry.add($op, |ctx, inputs| {
                unary::unary_moving(ctx, &mut Args::borrowed(inputs), $integer)
            });
            registry.add_moving($op, |ctx, args| unary::unary_moving(ctx, args, $integer));
        )*};
    }
    unary! {
        "Sqrt" => None, "Exp" => None, "Log" => None, "Reciprocal" => None, "Erf" => None,
        "LeakyRelu" => None, "Sigmoid" => None, "Tanh" => None, "Gelu" => None,
        "HardSigmoid" => None, "HardSwish" => None,
        "Neg" => Some(neg as OpFn), "Abs" => Some(abs as OpFn), "Relu" => Some(relu as OpFn),
        "Clip" => Some(clip as OpFn),
    }
    registry.add("Identity", |ctx, inputs| {
        inplace::identity_moving(ctx, &mut Args::borrowed(inputs))
    });
    registry.add_moving("Identity", inplace::identity_moving);
    registry.add("Dropout", |ctx, inputs| {
        inplace::dropout_moving(ctx, &mut Args::borrowed(inputs))
    });
    registry.add_moving("Dropout", inplace::dropout_moving);
}

// ---- broadcasting -------------------------------------------------------------------------

/// The numpy broadcast of two shapes.
pub(super) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(OpError(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            )));
        };
    }
    checked_len(&out)?;
    Ok(out)
}

/// Dimension `k` counted from the right (0 = last), 1 past the rank.
fn dim_from_right(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

/// `f` applied to every element of `x`, in parallel chunks when large.
pub(super) fn map_slice<T, U, F>(x: &[T], f: F) -> Vec<U>
where
    T: Copy + Sync,
    U: Copy + Send + Default + 'static,
    F: Fn(T) -> U + Sync + Send,
{
    let mut out = recycled::<U>(x.len()); // every element is written below
    let run = |o: &mut [U], i: &[T]| {
        for (o, &i) in o.iter_mut().zip(i) {
            *o = f(i);
        }
    };
    if go_parallel(x.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, i)| run(o, i));
    } else {
        run(&mut out, x);
    }
    out
}

/// `f` applied elementwise to an array (fast on contiguous data).
pub(super) fn map_array<T, U, F>(x: &ArrayD<T>, f: F) -> Result<ArrayD<U>, OpError>
where
    T: Copy + Sync + Send,
    U: Copy + Send + Default + 'static,
    F: Fn(T) -> U + Sync + Send,
{
    match x.as_slice() {
        Some(s) => array_from(x.shape(), map_slice(s, f)),
        None => Ok(x.mapv(f)),
    }
}

/// `f(a[i], b[i])` over two equally long slices.
fn zip_slices<A, B, U, F>(a: &[A], b: &[B], f: F) -> Vec<U>
where
    A: Copy + Sync,
    B: Copy + Sync,
    U: Copy + Send + Default + 'static,
    F: Fn(A, B) -> U + Sync + Send,
{
    let mut out = recycled::<U>(a.len()); // every element is written below
    let run = |o: &mut [U], x: &[A], y: &[B]| {
        for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
            *o = f(x, y);
        }
    };
    if go_parallel(a.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((o, x), y)| run(o, x, y));
    } else {
        run(&mut out, a, b);
    }
    out
}

/// Where a smaller operand sits inside the output: it equals the output's dims
/// `[start, end)` and is 1 elsewhere. The output is then `outer × mid × inner` with the
/// operand indexed by `mid`.
#[derive(Debug, Clone, Copy)]
struct Block {
    mid: usize,
    inner: usize,
}

fn block_of(small: &[usize], out: &[usize]) -> Option<Block> {
    let rank = out.len();
    let pad = rank - small.len();
    let padded = |i: usize| if i < pad { 1 } else { small[i - pad] };
    let first = (0..rank).find(|&i| padded(i) != 1);
    let Some(first) = first else {
        return Some(Block { mid: 1, inner: 1 });
    };
    let last = (0..rank).rev().find(|&i| padded(i) != 1)?;
    if (first..=last).any(|i| padded(i) != out[i]) {
        return None;
    }
    Some(Block {
        mid: out[first..=last].iter().product(),
        inner: out[last + 1..].iter().product(),
    })
}

/// `f(full[i], small[block index of i])` for a full contiguous operand and a block operand.
fn block_broadcast<A, B, U, F>(full: &[A], small: &[B], block: &Block, f: F) -> Vec<U>
where
    A: Copy + Sync,
    B: Copy + Sync,
    U: Copy + Send + Default + 'static,
    F: Fn(A, B) -> U + Sync + Send,
{
    if full.is_empty() {
        return Vec::new();
    }
    // every dimension is at least 1 here, so mid and inner are too
    let mut out = recycled::<U>(full.len()); // every element is written below
    let (mid, inner) = (block.mid, block.inner);
    if inner == 1 {
        // rows: every run of `mid` elements pairs with all of `small`
        let run = |o: &mut [U], x: &[A]| {
            for (orow, xrow) in o.chunks_mut(mid).zip(x.chunks(mid)) {
                for ((o, &x), &y) in orow.iter_mut().zip(xrow).zip(small) {
                    *o = f(x, y);
                }
            }
        };
        if go_parallel(full.len()) {
            let rows = (CHUNK / mid).max(1) * mid;
            out.par_chunks_mut(rows)
                .zip(full.par_chunks(rows))
                .for_each(|(o, x)| run(o, x));
        } else {
            run(&mut out, full);
        }
    } else {
        // runs of `inner` elements share one value of `small`
        let run = |first_run: usize, o: &mut [U], x: &[A]| {
            for (k, (orun, xrun)) in o.chunks_mut(inner).zip(x.chunks(inner)).enumerate() {
                let y = small[(first_run + k) % mid];
                for (o, &x) in orun.iter_mut().zip(xrun) {
                    *o = f(x, y);
                }
            }
        };
        if go_parallel(full.len()) {
            let runs_per = (CHUNK / inner).max(1);
            let len = runs_per * inner;
            out.par_chunks_mut(len)
                .zip(full.par_chunks(len))
                .enumerate()
                .for_each(|(c, (o, x))| run(c * runs_per, o, x));
        } else {
            run(0, &mut out, full);
        }
    }
    out
}

/// numpy-broadcasting binary op.
pub(super) fn broadcast_binary<A, B, U, F>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: F,
) -> Result<ArrayD<U>, OpError>
where
    A: Copy + Sync + Send,
    B: Copy + Sync + Send,
    U: Copy + Send + Sync + Default + 'static,
    F: Fn(A, B) -> U + Sync + Send,
{
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    if let (Some(sa), Some(sb)) = (a.as_slice(), b.as_slice()) {
        if a.shape() == b.shape() {
            return array_from(&shape, zip_slices(sa, sb, f));
        }
        if a.shape() == shape.as_slice()
            && let Some(block) = block_of(b.shape(), &shape)
        {
            if sb.len() == 1 {
                let y = sb[0];
                return array_from(&shape, map_slice(sa, |x| f(x, y)));
            }
            return array_from(&shape, block_broadcast(sa, sb, &block, f));
        }
        if b.shape() == shape.as_slice()
            && let Some(block) = block_of(a.shape(), &shape)
        {
            if sa.len() == 1 {
                let x = sa[0];
                return array_from(&shape, map_slice(sb, |y| f(x, y)));
            }
            return array_from(&shape, block_broadcast(sb, sa, &block, |y, x| f(x, y)));
        }
    }
    let dim = IxDyn(&shape);
    let av = a
        .broadcast(dim.clone())
        .ok_or_else(|| OpError(format!("cannot broadcast {:?} to {shape:?}", a.shape())))?;
    let bv = b
        .broadcast(dim)
        .ok_or_else(|| OpError(format!("cannot broadcast {:?} to {shape:?}", b.shape())))?;
    let zip = Zip::from(&av).and(&bv);
    let len: usize = shape.iter().product();
    Ok(if go_parallel(len) {
        zip.par_map_collect(|&x, &y| f(x, y))
    } else {
        zip.map_collect(|&x, &y| f(x, y))
    })
}

/// Two operands of one kind; integers meeting floats are promoted (8/16-bit integer tensors
/// are held as f32, so this happens with valid models).
#[allow(clippy::large_enum_variant)] // short-lived, on the stack
enum Pair<'a> {
    F(Cow<'a, ArrayD<f32>>, Cow<'a, ArrayD<f32>>),
    I(&'a ArrayD<i64>, &'a ArrayD<i64>),
}

fn pair<'a>(a: &'a TensorData, b: &'a TensorData) -> Pair<'a> {
    match (a, b) {
        (TensorData::I64(x), TensorData::I64(y)) => Pair::I(x, y),
        _ => Pair::F(a.to_f32_cow(), b.to_f32_cow()),
    }
}

fn binary_inputs<'a>(
    inputs: &[Option<&'a TensorData>],
) -> Result<(&'a TensorData, &'a TensorData), OpError> {
    if inputs.len() > 2 {
        return Err(OpError(format!("expects 2 inputs, got {}", inputs.len())));
    }
    Ok((input(inputs, 0)?, input(inputs, 1)?))
}

// ---- arithmetic -----------------------------------------------------------------------------

/// Defines a two-input kernel from a float and an integer expression.
macro_rules! arith_kernel {
    ($name:ident, |$x:ident, $y:ident| $ff:expr, |$p:ident, $q:ident| $fi:expr) => {
        fn $name(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
            let (a, b) = binary_inputs(inputs)?;
            match pair(a, b) {
                Pair::F(a, b) => single(broadcast_binary(
                    a.as_ref(),
                    b.as_ref(),
                    |$x: f32, $y: f32| $ff,
                )?),
                Pair::I(a, b) => single(broadcast_binary(a, b, |$p: i64, $q: i64| $fi)?),
            }
        }
    };
}

arith_kernel!(add, |x, y| x + y, |p, q| p.wrapping_add(q));
arith_kernel!(sub, |x, y| x - y, |p, q| p.wrapping_sub(q));
arith_kernel!(mul, |x, y| x * y, |p, q| p.wrapping_mul(q));

fn div(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let (a, b) = binary_inputs(inputs)?;
    match pair(a, b) {
        Pair::F(a, b) => single(broadcast_binary(
            a.as_ref(),
            b.as_ref(),
            |x: f32, y: f32| x / y,
        )?),
        Pair::I(a, b) => {
            if b.iter().any(|&v| v == 0) {
                return Err(OpError("integer division by zero".into()));
            }
            // wrapping_div truncates toward zero, like C
            single(broadcast_binary(a, b, |p: i64, q: i64| p.wrapping_div(q))?)
        }
    }
}

fn pow(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let (a, b) = binary_inputs(inputs)?;
    match (a, b) {
        (TensorData::I64(base), TensorData::I64(exp)) => {
            single(broadcast_binary(base, exp, |p: i64, q: i64| {
                if q < 0 {
                    // integer reciprocal: only ±1 survive
                    match p {
                        1 => 1,
                        -1 => {
                            if q % 2 == 0 {
                                1
                            } else {
                                -1
                            }
                        }
                        _ => 0,
                    }
                } else {
                    p.wrapping_pow(q.min(u32::MAX as i64) as u32)
                }
            })?)
        }
        (TensorData::I64(_), TensorData::F32(_)) => Err(OpError(
            "integer base with a float exponent is not supported".into(),
        )),
        (TensorData::F32(base), _) => {
            let exp = b.to_f32_cow();
            if exp.len() == 1 {
                let e = exp.iter().next().copied().unwrap_or(1.0);
                let shape = broadcast_shapes(base.shape(), exp.shape())?;
                if shape.as_slice() == base.shape() {
                    if e == 2.0 {
                        return single(map_array(base, |x: f32| x * x)?);
                    }
                    if e == 1.0 {
                        return single(base.clone());
                    }
                }
            }
            single(broadcast_binary(base, &exp, |x: f32, y: f32| x.powf(y))?)
        }
    }
}

/// NaN-propagating min/max.
#[inline]
fn fmin(x: f32, y: f32) -> f32 {
    if x.is_nan() || x < y { x } else { y }
}

#[inline]
fn fmax(x: f32, y: f32) -> f32 {
    if x.is_nan() || x > y { x } else { y }
}

/// A whole-array binary op.
type BinaryFn<T> = fn(&ArrayD<T>, &ArrayD<T>) -> Result<ArrayD<T>, OpError>;

/// Folds the variadic inputs of Min/Max/Sum with broadcasting.
fn variadic(
    inputs: &[Option<&TensorData>],
    ff: BinaryFn<f32>,
    fi: BinaryFn<i64>,
) -> Result<TensorData, OpError> {
    if inputs.is_empty() {
        return Err(OpError("expects at least one input".into()));
    }
    let mut acc = input(inputs, 0)?.clone();
    for i in 1..inputs.len() {
        let next = input(inputs, i)?;
        acc = match pair(&acc, next) {
            Pair::F(a, b) => TensorData::F32(ff(&a, &b)?),
            Pair::I(a, b) => TensorData::I64(fi(a, b)?),
        };
    }
    Ok(acc)
}

fn min(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    single(variadic(
        inputs,
        |a, b| broadcast_binary(a, b, fmin),
        |a, b| broadcast_binary(a, b, |p: i64, q: i64| p.min(q)),
    )?)
}

fn max(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    single(variadic(
        inputs,
        |a, b| broadcast_binary(a, b, fmax),
        |a, b| broadcast_binary(a, b, |p: i64, q: i64| p.max(q)),
    )?)
}

fn sum(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    single(variadic(
        inputs,
        |a, b| broadcast_binary(a, b, |x: f32, y: f32| x + y),
        |a, b| broadcast_binary(a, b, |p: i64, q: i64| p.wrapping_add(q)),
    )?)
}

fn mean(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let total = variadic(
        inputs,
        |a, b| broadcast_binary(a, b, |x: f32, y: f32| x + y),
        |a, b| broadcast_binary(a, b, |p: i64, q: i64| p.wrapping_add(q)),
    )?;
    let n = inputs.len() as f32;
    single(map_array(total.to_f32_cow().as_ref(), |x: f32| x / n)?)
}

// ---- comparisons and logic (results are 0/1 integers) ------------------------------------------

macro_rules! compare_kernel {
    ($name:ident, $op:tt) => {
        fn $name(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
            let (a, b) = binary_inputs(inputs)?;
            match pair(a, b) {
                Pair::F(a, b) => {
                    single(broadcast_binary(a.as_ref(), b.as_ref(), |x: f32, y: f32| (x $op y) as i64)?)
                }
                Pair::I(a, b) => single(broadcast_binary(a, b, |p: i64, q: i64| (p $op q) as i64)?),
            }
        }
    };
}

compare_kernel!(equal, ==);
compare_kernel!(less, <);
compare_kernel!(less_or_equal, <=);
compare_kernel!(greater, >);
compare_kernel!(greater_or_equal, >=);

/// A boolean tensor as 0/1 integers (float tensors: nonzero is true).
fn bools(t: &TensorData) -> Cow<'_, ArrayD<i64>> {
    match t {
        TensorData::I64(a) => Cow::Borrowed(a),
        TensorData::F32(a) => Cow::Owned(a.mapv(|v| (v != 0.0) as i64)),
    }
}

macro_rules! logic_kernel {
    ($name:ident, |$p:ident, $q:ident| $f:expr) => {
        fn $name(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
            let (a, b) = binary_inputs(inputs)?;
            let (a, b) = (bools(a), bools(b));
            single(broadcast_binary(
                a.as_ref(),
                b.as_ref(),
                |$p: i64, $q: i64| {
                    let ($p, $q) = ($p != 0, $q != 0);
                    ($f) as i64
                },
            )?)
        }
    };
}

logic_kernel!(and, |p, q| p && q);
logic_kernel!(or, |p, q| p || q);
logic_kernel!(xor, |p, q| p != q);

fn not(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = bools(input(inputs, 0)?);
    single(map_array(x.as_ref(), |v: i64| (v == 0) as i64)?)
}

/// `cond ? x : y` with three-way broadcasting.
fn select<T>(cond: &ArrayD<i64>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<ArrayD<T>, OpError>
where
    T: Copy + Send + Sync + Default + 'static,
{
    let shape = broadcast_shapes(&broadcast_shapes(cond.shape(), x.shape())?, y.shape())?;
    if let (Some(c), Some(xs), Some(ys)) = (cond.as_slice(), x.as_slice(), y.as_slice())
        && cond.shape() == shape.as_slice()
    {
        if x.shape() == cond.shape() && y.shape() == cond.shape() {
            let mut out = vec![T::default(); c.len()];
            for (((o, &c), &a), &b) in out.iter_mut().zip(c).zip(xs).zip(ys) {
                *o = if c != 0 { a } else { b };
            }
            return array_from(&shape, out);
        }
        if xs.len() == 1 && y.shape() == cond.shape() {
            let a = xs[0];
            return array_from(&shape, zip_slices(c, ys, |c, b| if c != 0 { a } else { b }));
        }
        if ys.len() == 1 && x.shape() == cond.shape() {
            let b = ys[0];
            return array_from(&shape, zip_slices(c, xs, |c, a| if c != 0 { a } else { b }));
        }
    }
    let dim = IxDyn(&shape);
    let broadcast_err = |s: &[usize]| OpError(format!("cannot broadcast {s:?} to {shape:?}"));
    let cv = cond
        .broadcast(dim.clone())
        .ok_or_else(|| broadcast_err(cond.shape()))?;
    let xv = x
        .broadcast(dim.clone())
        .ok_or_else(|| broadcast_err(x.shape()))?;
    let yv = y.broadcast(dim).ok_or_else(|| broadcast_err(y.shape()))?;
    Ok(Zip::from(&cv)
        .and(&xv)
        .and(&yv)
        .map_collect(|&c, &a, &b| if c != 0 { a } else { b }))
}

fn where_op(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let cond = bools(input(inputs, 0)?);
    let (x, y) = (input(inputs, 1)?, input(inputs, 2)?);
    match pair(x, y) {
        Pair::F(x, y) => single(select(&cond, &x, &y)?),
        Pair::I(x, y) => single(select(&cond, x, y)?),
    }
}

// ---- unary ----------------------------------------------------------------------------------

/// Defines a unary kernel that keeps integers integer.
macro_rules! any_unary {
    ($name:ident, |$x:ident| $ff:expr, |$p:ident| $fi:expr) => {
        fn $name(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
            match input(inputs, 0)? {
                TensorData::F32(a) => single(map_array(a, |$x: f32| $ff)?),
                TensorData::I64(a) => single(map_array(a, |$p: i64| $fi)?),
            }
        }
    };
}

any_unary!(neg, |x| -x, |p| p.wrapping_neg());
any_unary!(abs, |x| x.abs(), |p| p.wrapping_abs());
any_unary!(relu, |x| if x < 0.0 { 0.0 } else { x }, |p| p.max(0));

/// Clip bound from an optional one-element input.
fn bound<T: Copy>(
    t: Option<&TensorData>,
    get: fn(&TensorData) -> Option<&ArrayD<T>>,
    which: &str,
) -> Result<Option<T>, OpError> {
    let Some(t) = t else { return Ok(None) };
    let a = get(t).ok_or_else(|| {
        OpError(format!(
            "{which} must have the input's element type, got {}",
            t.kind_name()
        ))
    })?;
    if a.len() != 1 {
        return Err(OpError(format!(
            "{which} must be a scalar, got shape {:?}",
            a.shape()
        )));
    }
    Ok(a.iter().next().copied())
}

fn clip(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    if ctx.opset < 11 {
        let lo = ctx.node.attr_float("min", f32::MIN)?;
        let hi = ctx.node.attr_float("max", f32::MAX)?;
        return single(clip_f32(&x.to_f32_cow(), lo, hi)?);
    }
    match x {
        TensorData::F32(a) => {
            let lo = bound(optional(inputs, 1), TensorData::as_f32, "min")?;
            let hi = bound(optional(inputs, 2), TensorData::as_f32, "max")?;
            single(clip_f32(
                a,
                lo.unwrap_or(f32::NEG_INFINITY),
                hi.unwrap_or(f32::INFINITY),
            )?)
        }
        TensorData::I64(a) => {
            let lo = bound(optional(inputs, 1), TensorData::as_i64, "min")?.unwrap_or(i64::MIN);
            let hi = bound(optional(inputs, 2), TensorData::as_i64, "max")?.unwrap_or(i64::MAX);
            single(map_array(a, |v: i64| v.max(lo).min(hi))?)
        }
    }
}

/// min(max(x, lo), hi), NaN passing through.
fn clip_f32(x: &ArrayD<f32>, lo: f32, hi: f32) -> Result<ArrayD<f32>, OpError> {
    map_array(x, |v: f32| {
        let v = if v < lo { lo } else { v };
        if v > hi { hi } else { v }
    })
}
