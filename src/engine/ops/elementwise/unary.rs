//! Float activations and unary math as one value type, [`UnaryOp`]: read from a node once,
//! applied over slices with vector loops (into a new buffer, or in place when the executor hands
//! the input over). The fused elementwise programs and the plan's rewrites use the same type.

use rayon::prelude::*;

use super::math;
use super::{CHUNK, bound};
use crate::engine::buffers::recycled;
use crate::engine::ops::{Args, OpCtx, OpError, OpFn, OpResult, array_from, go_parallel, single};
use crate::ir::{Node, TensorData};

/// One float function of one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum UnaryOp {
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    /// min(max(x, lo), hi), NaN passing through.
    Clip {
        lo: f32,
        hi: f32,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// x · HardSigmoid(x) with α = 1/6, β = 1/2.
    HardSwish,
    Tanh,
    Erf,
    Exp,
    Log,
    Sqrt,
    Neg,
    Abs,
    Reciprocal,
    /// x · Φ(x) with the exact erf.
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
}

/// Evaluates `$body` with `$f` bound to the scalar function of the op `$op` (each arm its own
/// closure type, so the loop in `$body` is compiled once per op).
macro_rules! with_scalar_fn {
    ($op:expr, $f:ident => $body:expr) => {
        match $op {
            UnaryOp::Relu => {
                let $f = relu;
                $body
            }
            UnaryOp::LeakyRelu { alpha } => {
                let $f = move |v| leaky(v, alpha);
                $body
            }
            UnaryOp::Clip { lo, hi } => {
                let $f = move |v| clip(v, lo, hi);
                $body
            }
            UnaryOp::Sigmoid => {
                let $f = math::sigmoid;
                $body
            }
            UnaryOp::HardSigmoid { alpha, beta } => {
                let $f = move |v| hard_sigmoid(v, alpha, beta);
                $body
            }
            UnaryOp::HardSwish => {
                let $f = hard_swish;
                $body
            }
            UnaryOp::Tanh => {
                let $f = math::tanh;
                $body
            }
            UnaryOp::Erf => {
                let $f = math::erf;
                $body
            }
            UnaryOp::Exp => {
                let $f = math::exp;
                $body
            }
            UnaryOp::Log => {
                let $f = f32::ln;
                $body
            }
            UnaryOp::Sqrt => {
                let $f = f32::sqrt;
                $body
            }
            UnaryOp::Neg => {
                let $f = |v: f32| -v;
                $body
            }
            UnaryOp::Abs => {
                let $f = f32::abs;
                $body
            }
            UnaryOp::Reciprocal => {
                let $f = |v: f32| 1.0 / v;
                $body
            }
            UnaryOp::Gelu => {
                let $f = math::gelu;
                $body
            }
            UnaryOp::GeluTanh => {
                let $f = gelu_tanh;
                $body
            }
        }
    };
}

impl UnaryOp {
    /// The op of a unary node whose attributes and bound inputs are in `args`. None for ops
    /// that are not float unary functions. Clip's bounds come from its inputs (opset 11+) or
    /// attributes.
    pub fn of_node(node: &Node, opset: i64, args: &Args<'_>) -> Result<Option<UnaryOp>, OpError> {
        Ok(Some(match node.op_type.as_str() {
            "Relu" => UnaryOp::Relu,
            "LeakyRelu" => UnaryOp::LeakyRelu {
                alpha: node.attr_float("alpha", 0.01)?,
            },
            "Clip" => {
                let (lo, hi) = if opset < 11 {
                    (
                        node.attr_float("min", f32::MIN)?,
                        node.attr_float("max", f32::MAX)?,
                    )
                } else {
                    (
                        bound(args.get(1), TensorData::as_f32, "min")?.unwrap_or(f32::NEG_INFINITY),
                        bound(args.get(2), TensorData::as_f32, "max")?.unwrap_or(f32::INFINITY),
                    )
                };
                UnaryOp::Clip { lo, hi }
            }
            "Sigmoid" => UnaryOp::Sigmoid,
            "HardSigmoid" => UnaryOp::HardSigmoid {
                alpha: node.attr_float("alpha", 0.2)?,
                beta: node.attr_float("beta", 0.5)?,
            },
            "HardSwish" => UnaryOp::HardSwish,
            "Tanh" => UnaryOp::Tanh,
            "Erf" => UnaryOp::Erf,
            "Exp" => UnaryOp::Exp,
            "Log" => UnaryOp::Log,
            "Sqrt" => UnaryOp::Sqrt,
            "Neg" => UnaryOp::Neg,
            "Abs" => UnaryOp::Abs,
            "Reciprocal" => UnaryOp::Reciprocal,
            "Gelu" => match node.attr_string("approximate", "none")?.as_str() {
                "none" => UnaryOp::Gelu,
                "tanh" => UnaryOp::GeluTanh,
                other => {
                    return Err(OpError(format!(
                        "approximate must be \"none\" or \"tanh\", got \"{other}\""
                    )));
                }
            },
            _ => return Ok(None),
        }))
    }

    /// The function at one value (the slice loops below inline the same code).
    #[inline(always)]
    pub fn at(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => relu(x),
            UnaryOp::LeakyRelu { alpha } => leaky(x, alpha),
            UnaryOp::Clip { lo, hi } => clip(x, lo, hi),
            UnaryOp::Sigmoid => math::sigmoid(x),
            UnaryOp::HardSigmoid { alpha, beta } => hard_sigmoid(x, alpha, beta),
            UnaryOp::HardSwish => hard_swish(x),
            UnaryOp::Tanh => math::tanh(x),
            UnaryOp::Erf => math::erf(x),
            UnaryOp::Exp => math::exp(x),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Gelu => math::gelu(x),
            UnaryOp::GeluTanh => gelu_tanh(x),
        }
    }

    /// `out[i] = f(x[i])` (one vector loop per op, chosen once).
    pub fn map_into(self, x: &[f32], out: &mut [f32]) {
        with_scalar_fn!(self, f => math::map_into(x, out, f))
    }

    /// `x[i] = f(x[i])`.
    pub fn map_in_place(self, x: &mut [f32]) {
        with_scalar_fn!(self, f => math::map_in_place(x, f))
    }

    /// The op over a whole slice into a new buffer, in parallel chunks when large.
    pub fn map(self, x: &[f32]) -> Vec<f32> {
        let mut out = recycled::<f32>(x.len()); // every element is written below
        if go_parallel(x.len()) {
            out.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(o, i)| self.map_into(i, o));
        } else {
            self.map_into(x, &mut out);
        }
        out
    }

    /// The op over a whole slice in place, in parallel chunks when large.
    pub fn apply(self, x: &mut [f32]) {
        if go_parallel(x.len()) {
            x.par_chunks_mut(CHUNK).for_each(|c| self.map_in_place(c));
        } else {
            self.map_in_place(x);
        }
    }
}

#[inline(always)]
fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

#[inline(always)]
fn leaky(x: f32, alpha: f32) -> f32 {
    if x >= 0.0 { x } else { alpha * x }
}

#[inline(always)]
fn clip(x: f32, lo: f32, hi: f32) -> f32 {
    let v = if x < lo { lo } else { x };
    if v > hi { hi } else { v }
}

#[inline(always)]
fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    clip(alpha * x + beta, 0.0, 1.0)
}

#[inline(always)]
fn hard_swish(x: f32) -> f32 {
    x * clip(x / 6.0 + 0.5, 0.0, 1.0)
}

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/π)
    0.5 * x * (1.0 + math::tanh(K * (x + 0.044715 * x * x * x)))
}

/// Applies a float unary op to input 0: in place when the executor handed it over (and it is
/// a contiguous float tensor), else into a new buffer. Integer inputs are cast to float.
pub(super) fn unary_float(op: UnaryOp, args: &mut Args<'_>) -> OpResult {
    if let Some(TensorData::F32(mut a)) = args.take(0) {
        if let Some(s) = a.as_slice_mut() {
            op.apply(s);
            return single(a);
        }
        a.mapv_inplace(|v| op.at(v));
        return single(a);
    }
    let x = args
        .get(0)
        .ok_or_else(|| OpError("missing required input 0".into()))?
        .to_f32_cow();
    match x.as_slice() {
        Some(s) => single(array_from(x.shape(), op.map(s))?),
        None => single(x.mapv(|v| op.at(v))),
    }
}

/// The storage-reusing kernel of every float unary op; `integer` handles integer inputs of
/// the ops defined on them (Relu, Neg, Abs, Clip); other ops cast integers to float.
pub(super) fn unary_moving(
    ctx: &OpCtx<'_>,
    args: &mut Args<'_>,
    integer: Option<OpFn>,
) -> OpResult {
    if let (Some(TensorData::I64(_)), Some(integer)) = (args.get(0), integer) {
        return integer(ctx, &args.refs());
    }
    let op = UnaryOp::of_node(ctx.node, ctx.opset, args)?
        .ok_or_else(|| OpError(format!("{} is not a float unary op", ctx.node.op_type)))?;
    unary_float(op, args)
}
