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
    OpCtx, OpError, OpResult, Registry, array_from, checked_len, go_parallel, input, optional,
    single,
};
use crate::engine::buffers::recycled;
use crate::ir::TensorData;

/// Elements per parallel work item.
const CHUNK: usize = 8 * 1024;

pub fn register(registry: &mut Registry) {
    registry.add("Add", add);
    registry.add("Sub", sub);
    registry.add("Mul", mul);
    registry.add("Div", div);
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
    registry.add("Sqrt", sqrt);
    registry.add("Exp", exp);
    registry.add("Log", log);
    registry.add("Neg", neg);
    registry.add("Abs", abs);
    registry.add("Reciprocal", reciprocal);
    registry.add("Erf", erf);
    registry.add("Relu", relu);
    registry.add("LeakyRelu", leaky_relu);
    registry.add("Clip", clip);
    registry.add("Sigmoid", sigmoid);
    registry.add("Tanh", tanh);
    registry.add("Gelu", gelu);
    registry.add("HardSigmoid", hard_sigmoid);
    registry.add("HardSwish", hard_swish);
    registry.add("Identity", identity);
    registry.add("Dropout", dropout);
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

fn as_f32_cow(t: &TensorData) -> Cow<'_, ArrayD<f32>> {
    match t {
        TensorData::F32(a) => Cow::Borrowed(a),
        TensorData::I64(a) => Cow::Owned(a.mapv(|v| v as f32)),
    }
}

fn pair<'a>(a: &'a TensorData, b: &'a TensorData) -> Pair<'a> {
    match (a, b) {
        (TensorData::I64(x), TensorData::I64(y)) => Pair::I(x, y),
        _ => Pair::F(as_f32_cow(a), as_f32_cow(b)),
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
            let exp = as_f32_cow(b);
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
    single(map_array(as_f32_cow(&total).as_ref(), |x: f32| x / n)?)
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

fn float_input<'a>(inputs: &[Option<&'a TensorData>]) -> Result<Cow<'a, ArrayD<f32>>, OpError> {
    Ok(as_f32_cow(input(inputs, 0)?))
}

macro_rules! float_unary {
    ($name:ident, |$x:ident| $f:expr) => {
        fn $name(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
            single(map_array(float_input(inputs)?.as_ref(), |$x: f32| $f)?)
        }
    };
}

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

float_unary!(sqrt, |x| x.sqrt());
float_unary!(exp, |x| x.exp());
float_unary!(log, |x| x.ln());
float_unary!(reciprocal, |x| 1.0 / x);
float_unary!(erf, |x| libm::erff(x));
float_unary!(sigmoid, |x| sigmoid_f(x));
float_unary!(tanh, |x| x.tanh());
float_unary!(hard_swish, |x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0));
any_unary!(neg, |x| -x, |p| p.wrapping_neg());
any_unary!(abs, |x| x.abs(), |p| p.wrapping_abs());
any_unary!(relu, |x| if x < 0.0 { 0.0 } else { x }, |p| p.max(0));

#[inline]
fn sigmoid_f(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn leaky_relu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let alpha = ctx.node.attr_float("alpha", 0.01)?;
    single(map_array(float_input(inputs)?.as_ref(), |x: f32| {
        if x >= 0.0 { x } else { alpha * x }
    })?)
}

fn hard_sigmoid(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let alpha = ctx.node.attr_float("alpha", 0.2)?;
    let beta = ctx.node.attr_float("beta", 0.5)?;
    single(map_array(float_input(inputs)?.as_ref(), |x: f32| {
        (alpha * x + beta).clamp(0.0, 1.0)
    })?)
}

fn gelu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let approximate = ctx.node.attr_string("approximate", "none")?;
    let x = float_input(inputs)?;
    match approximate.as_str() {
        "none" => single(map_array(&x, |v: f32| {
            0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2))
        })?),
        "tanh" => {
            let k = (2.0f32 / std::f32::consts::PI).sqrt();
            single(map_array(&x, |v: f32| {
                0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())
            })?)
        }
        other => Err(OpError(format!(
            "approximate must be \"none\" or \"tanh\", got \"{other}\""
        ))),
    }
}

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
        return single(clip_f32(&as_f32_cow(x), lo, hi)?);
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

fn identity(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    single(input(inputs, 0)?.clone())
}

/// Inference Dropout: the input unchanged, and a mask of ones when the node asks for one.
fn dropout(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let mut outputs = vec![x.clone()];
    if ctx.node.outputs.len() > 1 {
        outputs.push(TensorData::I64(ArrayD::from_elem(IxDyn(x.shape()), 1)));
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::ir::{Attribute, TensorData};

    #[test]
    fn broadcast_shapes_rules() {
        assert_eq!(
            super::broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(super::broadcast_shapes(&[], &[3]).unwrap(), vec![3]);
        assert!(super::broadcast_shapes(&[2, 3], &[4]).is_err());
        assert_eq!(
            super::broadcast_shapes(&[0, 3], &[1, 3]).unwrap(),
            vec![0, 3]
        );
    }

    #[test]
    fn add_broadcast_2_1_3_with_4_1() {
        let a = f(&[2, 1, 3], &[0., 1., 2., 10., 11., 12.]);
        let b = f(&[4, 1], &[100., 200., 300., 400.]);
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..4 {
                for k in 0..3 {
                    want.push((i * 10 + k) as f32 + 100.0 * (j + 1) as f32);
                }
            }
        }
        check_f("Add", 14, vec![], &[&a, &b], &[2, 4, 3], &want);
        // reversed operand order, and Sub is not commutative
        let out = run("Sub", 14, vec![], &[&b, &a]).unwrap();
        let (s, v) = fvals(&out[0]);
        assert_eq!(s, vec![2, 4, 3]);
        let neg: Vec<f32> = want
            .iter()
            .enumerate()
            .map(|(n, w)| {
                let x = w - 100.0 * ((n / 3) % 4 + 1) as f32; // a value
                100.0 * ((n / 3) % 4 + 1) as f32 - x
            })
            .collect();
        assert_close(&v, &neg, 1e-6);
    }

    #[test]
    fn fast_paths_match_general() {
        // same shape, scalar, channel block, row block, both small sides
        let x: Vec<f32> = (0..2 * 3 * 2 * 2).map(|v| v as f32).collect();
        let a = f(&[2, 3, 2, 2], &x);
        let c = f(&[3, 1, 1], &[1., 2., 3.]);
        let out = run("Sub", 14, vec![], &[&a, &c]).unwrap();
        let want: Vec<f32> = (0..24)
            .map(|n| n as f32 - ((n / 4) % 3 + 1) as f32)
            .collect();
        assert_close(&fvals(&out[0]).1, &want, 0.0);
        let out = run("Sub", 14, vec![], &[&c, &a]).unwrap();
        let want: Vec<f32> = (0..24)
            .map(|n| ((n / 4) % 3 + 1) as f32 - n as f32)
            .collect();
        assert_close(&fvals(&out[0]).1, &want, 0.0);
        let row = f(&[2], &[10., 20.]);
        let out = run("Div", 14, vec![], &[&a, &row]).unwrap();
        let want: Vec<f32> = (0..24)
            .map(|n| n as f32 / if n % 2 == 0 { 10. } else { 20. })
            .collect();
        assert_close(&fvals(&out[0]).1, &want, 1e-7);
        let s = f(&[], &[2.]);
        let out = run("Mul", 14, vec![], &[&s, &a]).unwrap();
        let want: Vec<f32> = (0..24).map(|n| 2. * n as f32).collect();
        assert_eq!(fvals(&out[0]), (vec![2, 3, 2, 2], want));
        // scalar with higher rank than the other operand
        let s3 = f(&[1, 1, 1], &[1.]);
        let v = f(&[2], &[1., 2.]);
        let out = run("Add", 14, vec![], &[&v, &s3]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![1, 1, 2], vec![2., 3.]));
    }

    #[test]
    fn large_parallel_paths() {
        let n = 3 * 40_000;
        let x: Vec<f32> = (0..n).map(|v| (v % 97) as f32).collect();
        let a = f(&[3, 200, 200], &x);
        let bias = f(&[3, 1, 1], &[1., 2., 3.]);
        let out = run("Add", 14, vec![], &[&a, &bias]).unwrap();
        let v = fvals(&out[0]).1;
        for (k, (&g, &xv)) in v.iter().zip(&x).enumerate() {
            assert_eq!(g, xv + (k / 40_000 + 1) as f32);
        }
        let row: Vec<f32> = (0..200).map(|v| v as f32).collect();
        let r = f(&[200], &row);
        let out = run("Mul", 14, vec![], &[&r, &a]).unwrap();
        let v = fvals(&out[0]).1;
        for (k, (&g, &xv)) in v.iter().zip(&x).enumerate() {
            assert_eq!(g, xv * (k % 200) as f32);
        }
        let out = run("Relu", 14, vec![], &[&a]).unwrap();
        assert_eq!(fvals(&out[0]).1, x);
        let out = run("Add", 14, vec![], &[&a, &a]).unwrap();
        let v = fvals(&out[0]).1;
        assert!(v.iter().zip(&x).all(|(g, x)| *g == 2. * x));
        // general path, parallel: [3,200,1] + [1,200]
        let col = f(&[3, 200, 1], &x[..600]);
        let out = run("Add", 14, vec![], &[&col, &r]).unwrap();
        let (s, v) = fvals(&out[0]);
        assert_eq!(s, vec![3, 200, 200]);
        assert_eq!(v[200 * 200 + 5 * 200 + 7], x[200 + 5] + 7.0);
    }

    #[test]
    fn integer_arithmetic() {
        let a = i(&[4], &[7, -7, 7, -7]);
        let b = i(&[4], &[2, 2, -2, -2]);
        let out = run("Div", 14, vec![], &[&a, &b]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![3, -3, -3, 3]);
        let out = run("Add", 14, vec![], &[&a, &i(&[], &[1])]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![8, -6, 8, -6]);
        let out = run("Mul", 14, vec![], &[&a, &b]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![14, -14, -14, 14]);
        let out = run("Sub", 14, vec![], &[&a, &b]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![5, -9, 9, -5]);
        assert!(run("Div", 14, vec![], &[&a, &i(&[1], &[0])]).is_err());
        let out = run("Pow", 14, vec![], &[&i(&[2], &[3, -2]), &i(&[], &[3])]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![27, -8]);
    }

    #[test]
    fn pow_float() {
        let a = f(&[3], &[2., 3., 4.]);
        check_f(
            "Pow",
            15,
            vec![],
            &[&a, &f(&[], &[2.])],
            &[3],
            &[4., 9., 16.],
        );
        check_f(
            "Pow",
            15,
            vec![],
            &[&a, &i(&[], &[3])],
            &[3],
            &[8., 27., 64.],
        );
        check_f(
            "Pow",
            15,
            vec![],
            &[&a, &f(&[3], &[0.5, -1., 0.])],
            &[3],
            &[2f32.sqrt(), 1. / 3., 1.],
        );
    }

    #[test]
    fn variadic_min_max_sum_mean() {
        let a = f(&[3], &[1., 5., 3.]);
        let b = f(&[3], &[4., 2., 6.]);
        let c = f(&[], &[3.5]);
        check_f("Max", 13, vec![], &[&a, &b, &c], &[3], &[4., 5., 6.]);
        check_f("Min", 13, vec![], &[&a, &b, &c], &[3], &[1., 2., 3.]);
        check_f("Min", 13, vec![], &[&a], &[3], &[1., 5., 3.]);
        check_f("Sum", 13, vec![], &[&a, &b], &[3], &[5., 7., 9.]);
        check_f("Mean", 13, vec![], &[&a, &b], &[3], &[2.5, 3.5, 4.5]);
        let out = run(
            "Max",
            13,
            vec![],
            &[&i(&[2], &[1, 9]), &i(&[2, 1], &[5, 0])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]), (vec![2, 2], vec![5, 9, 1, 9]));
        let out = run(
            "Max",
            13,
            vec![],
            &[&f(&[2], &[f32::NAN, 1.]), &f(&[2], &[0., 2.])],
        )
        .unwrap();
        let v = fvals(&out[0]).1;
        assert!(v[0].is_nan() && v[1] == 2.);
    }

    #[test]
    fn comparisons_and_where() {
        let a = f(&[3], &[1., 2., 3.]);
        let b = f(&[], &[2.]);
        let eq = run("Equal", 13, vec![], &[&a, &b]).unwrap();
        assert_eq!(ivals(&eq[0]).1, vec![0, 1, 0]);
        let lt = run("Less", 13, vec![], &[&a, &b]).unwrap();
        assert_eq!(ivals(&lt[0]).1, vec![1, 0, 0]);
        let gt = run("Greater", 13, vec![], &[&a, &b]).unwrap();
        assert_eq!(ivals(&gt[0]).1, vec![0, 0, 1]);
        let ge = run("GreaterOrEqual", 13, vec![], &[&a, &b]).unwrap();
        assert_eq!(ivals(&ge[0]).1, vec![0, 1, 1]);
        let ieq = run(
            "Equal",
            13,
            vec![],
            &[&i(&[2], &[4, 5]), &i(&[2, 1], &[4, 5])],
        )
        .unwrap();
        assert_eq!(ivals(&ieq[0]), (vec![2, 2], vec![1, 0, 0, 1]));

        let cond = i(&[2, 2], &[1, 0, 0, 1]);
        let x = f(&[2, 2], &[1., 2., 3., 4.]);
        let y = f(&[2, 2], &[-1., -2., -3., -4.]);
        check_f(
            "Where",
            16,
            vec![],
            &[&cond, &x, &y],
            &[2, 2],
            &[1., -2., -3., 4.],
        );
        let ninf = f(&[], &[f32::NEG_INFINITY]);
        check_f(
            "Where",
            16,
            vec![],
            &[&cond, &ninf, &x],
            &[2, 2],
            &[f32::NEG_INFINITY, 2., 3., f32::NEG_INFINITY],
        );
        check_f(
            "Where",
            16,
            vec![],
            &[&cond, &x, &f(&[], &[0.])],
            &[2, 2],
            &[1., 0., 0., 4.],
        );
        // broadcast condition [2] against [2,1] and [1]
        let c = i(&[2], &[1, 0]);
        let xs = f(&[2, 1], &[10., 20.]);
        let ys = f(&[1], &[0.]);
        check_f(
            "Where",
            16,
            vec![],
            &[&c, &xs, &ys],
            &[2, 2],
            &[10., 0., 20., 0.],
        );
        let out = run(
            "Where",
            16,
            vec![],
            &[&c, &i(&[2], &[1, 2]), &i(&[2], &[3, 4])],
        )
        .unwrap();
        assert_eq!(ivals(&out[0]).1, vec![1, 4]);
        assert!(run("Where", 16, vec![], &[&i(&[3], &[1, 0, 1]), &x, &y]).is_err());
        let out = run("Not", 13, vec![], &[&c]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![0, 1]);
        let out = run("And", 13, vec![], &[&c, &i(&[2], &[1, 1])]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![1, 0]);
    }

    #[test]
    fn empty_tensors_broadcast() {
        let a = f(&[2, 0], &[]);
        let b = f(&[0], &[]);
        let out = run("Add", 14, vec![], &[&a, &b]).unwrap();
        assert_eq!(fvals(&out[0]), (vec![2, 0], vec![]));
        let c = f(&[3, 1], &[1., 2., 3.]);
        let d = f(&[3, 0], &[]);
        let out = run("Mul", 14, vec![], &[&d, &c]).unwrap();
        assert_eq!(fvals(&out[0]).0, vec![3, 0]);
        let out = run("Relu", 14, vec![], &[&d]).unwrap();
        assert_eq!(fvals(&out[0]).0, vec![3, 0]);
    }

    #[test]
    fn broadcast_errors() {
        let a = f(&[2, 3], &[0.; 6]);
        let b = f(&[4], &[0.; 4]);
        let err = run("Add", 14, vec![], &[&a, &b]).unwrap_err();
        assert!(err.0.contains("broadcast"), "{}", err.0);
        assert!(run("Add", 14, vec![], &[&a]).is_err());
    }

    #[test]
    fn unary_math() {
        let x = f(&[4], &[0.25, 1., 4., 9.]);
        check_f("Sqrt", 13, vec![], &[&x], &[4], &[0.5, 1., 2., 3.]);
        check_f(
            "Reciprocal",
            13,
            vec![],
            &[&x],
            &[4],
            &[4., 1., 0.25, 1. / 9.],
        );
        check_f(
            "Log",
            13,
            vec![],
            &[&x],
            &[4],
            &[0.25f32.ln(), 0., 4f32.ln(), 9f32.ln()],
        );
        check_f(
            "Exp",
            13,
            vec![],
            &[&f(&[2], &[0., 1.])],
            &[2],
            &[1., std::f32::consts::E],
        );
        let y = f(&[3], &[-2., 0., 3.]);
        check_f("Neg", 13, vec![], &[&y], &[3], &[2., 0., -3.]);
        check_f("Abs", 13, vec![], &[&y], &[3], &[2., 0., 3.]);
        check_f("Relu", 14, vec![], &[&y], &[3], &[0., 0., 3.]);
        let out = run("Abs", 13, vec![], &[&i(&[2], &[-3, 4])]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![3, 4]);
        let out = run("Neg", 13, vec![], &[&i(&[2], &[-3, 4])]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![3, -4]);
    }

    #[test]
    fn erf_accuracy() {
        // reference values of erf
        let xs = [0.0f32, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, -0.5, -2.5];
        let want = [
            0.0,
            0.112_462_916,
            0.520_499_9,
            0.842_700_8,
            0.966_105_16,
            0.995_322_3,
            0.999_977_9,
            -0.520_499_9,
            -0.999_593,
        ];
        let out = run("Erf", 13, vec![], &[&f(&[9], &xs)]).unwrap();
        assert_close(&fvals(&out[0]).1, &want, 1e-7);
    }

    #[test]
    fn activations() {
        let x = f(&[5], &[-3., -1., 0., 1., 3.]);
        let sig: Vec<f32> = [-3f32, -1., 0., 1., 3.]
            .iter()
            .map(|v| 1. / (1. + (-v).exp()))
            .collect();
        check_f("Sigmoid", 13, vec![], &[&x], &[5], &sig);
        let th: Vec<f32> = [-3f32, -1., 0., 1., 3.].iter().map(|v| v.tanh()).collect();
        check_f("Tanh", 13, vec![], &[&x], &[5], &th);
        check_f(
            "LeakyRelu",
            16,
            vec![],
            &[&x],
            &[5],
            &[-0.03, -0.01, 0., 1., 3.],
        );
        check_f(
            "LeakyRelu",
            16,
            vec![("alpha", Attribute::Float(0.5))],
            &[&x],
            &[5],
            &[-1.5, -0.5, 0., 1., 3.],
        );
        check_f(
            "HardSigmoid",
            6,
            vec![],
            &[&x],
            &[5],
            &[0., 0.3, 0.5, 0.7, 1.],
        );
        check_f(
            "HardSwish",
            14,
            vec![],
            &[&x],
            &[5],
            &[0., -1. / 3., 0., 2. / 3., 3.],
        );
        // sigmoid far out stays finite
        let out = run("Sigmoid", 13, vec![], &[&f(&[2], &[-100., 100.])]).unwrap();
        let v = fvals(&out[0]).1;
        assert!(v[0] >= 0.0 && v[0] < 1e-30 && v[1] == 1.0, "{v:?}");
    }

    #[test]
    fn gelu_variants() {
        let xs = [-2.0f32, -0.5, 0., 0.5, 2.];
        let x = f(&[5], &xs);
        // 0.5 x (1 + erf(x / sqrt 2)) from reference erf values
        let exact = [-0.045_500_26, -0.154_268_57, 0., 0.345_731_43, 1.954_499_7];
        check_f("Gelu", 20, vec![], &[&x], &[5], &exact);
        let k = (2.0f64 / std::f64::consts::PI).sqrt();
        let tanh: Vec<f32> = xs
            .iter()
            .map(|&v| {
                let v = v as f64;
                (0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())) as f32
            })
            .collect();
        check_f(
            "Gelu",
            20,
            vec![("approximate", Attribute::String("tanh".into()))],
            &[&x],
            &[5],
            &tanh,
        );
        assert!(
            run(
                "Gelu",
                20,
                vec![("approximate", Attribute::String("fast".into()))],
                &[&x]
            )
            .is_err()
        );
    }

    #[test]
    fn clip_variants() {
        let x = f(&[4], &[-2., 0.5, 2., 7.]);
        check_f(
            "Clip",
            6,
            vec![("min", Attribute::Float(0.)), ("max", Attribute::Float(6.))],
            &[&x],
            &[4],
            &[0., 0.5, 2., 6.],
        );
        check_f(
            "Clip",
            6,
            vec![("max", Attribute::Float(1.))],
            &[&x],
            &[4],
            &[-2., 0.5, 1., 1.],
        );
        let lo = f(&[], &[0.]);
        let hi = f(&[], &[1.]);
        check_f(
            "Clip",
            13,
            vec![],
            &[&x, &lo, &hi],
            &[4],
            &[0., 0.5, 1., 1.],
        );
        // only max given (min omitted)
        let n = node("Clip", 3, 1, vec![]);
        let out = run_node(&n, 13, &[Some(&x), None, Some(&hi)]).unwrap();
        assert_eq!(fvals(&out[0]).1, vec![-2., 0.5, 1., 1.]);
        // no bounds at all
        check_f("Clip", 13, vec![], &[&x], &[4], &[-2., 0.5, 2., 7.]);
        // integers
        let xi = i(&[3], &[-5, 3, 10]);
        let out = run("Clip", 13, vec![], &[&xi, &i(&[], &[0]), &i(&[], &[6])]).unwrap();
        assert_eq!(ivals(&out[0]).1, vec![0, 3, 6]);
        // bad bound
        assert!(run("Clip", 13, vec![], &[&x, &f(&[2], &[0., 1.])]).is_err());
        assert!(run("Clip", 13, vec![], &[&x, &i(&[], &[0])]).is_err());
    }

    #[test]
    fn identity_and_dropout() {
        let x = f(&[2], &[1., 2.]);
        check_f("Identity", 16, vec![], &[&x], &[2], &[1., 2.]);
        check_f(
            "Dropout",
            13,
            vec![],
            &[&x, &f(&[], &[0.5])],
            &[2],
            &[1., 2.],
        );
        let n = node("Dropout", 1, 2, vec![]);
        let out = run_node(&n, 13, &[Some(&x)]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(ivals(&out[1]), (vec![2], vec![1, 1]));
        let xi: TensorData = i(&[1], &[4]);
        let out = run("Identity", 16, vec![], &[&xi]).unwrap();
        assert_eq!(out[0], xi);
    }
}
