//! Elementwise math beyond the arithmetic core: trigonometric and hyperbolic functions,
//! rounding, Sign, IsNaN/IsInf, the parametrized activations (Elu, Selu, Celu,
//! ThresholdedRelu, Shrink, Softplus, Softsign, Mish), PRelu with a broadcast slope, Mod and
//! CastLike.
//!
//! Every kernel maps element by element through the shared broadcasting helpers of
//! `elementwise`; integer tensors keep integer results where the op defines them (Sign,
//! Floor/Ceil/Round are the identity, Mod, Abs-like ops).

use super::elementwise::{broadcast_binary, map_array};
use super::{OpCtx, OpError, OpResult, Registry, input, single};
use crate::ir::TensorData;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("Sin", sin);
    registry.add("Cos", cos);
    registry.add("Tan", tan);
    registry.add("Asin", asin);
    registry.add("Acos", acos);
    registry.add("Atan", atan);
    registry.add("Sinh", sinh);
    registry.add("Cosh", cosh);
    registry.add("Asinh", asinh);
    registry.add("Acosh", acosh);
    registry.add("Atanh", atanh);
    registry.add("Softplus", softplus);
    registry.add("Softsign", softsign);
    registry.add("Mish", mish);
    registry.add("Swish", swish);
    registry.add("Floor", floor);
    registry.add("Ceil", ceil);
    registry.add("Round", round);
    registry.add("Sign", sign);
    registry.add("IsNaN", is_nan);
    registry.add("IsInf", is_inf);
    registry.add("Elu", elu);
    registry.add("Selu", selu);
    registry.add("Celu", celu);
    registry.add("ThresholdedRelu", thresholded_relu);
    registry.add("Shrink", shrink);
    registry.add("PRelu", prelu);
    registry.add("Mod", modulo);
    registry.add("CastLike", cast_like);
}

/// A float kernel `f(x)` (integer inputs are converted).
macro_rules! float_unary {
    ($name:ident, |$x:ident| $f:expr) => {
        fn $name(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
            let x = input(inputs, 0)?.to_f32_cow();
            single(map_array(x.as_ref(), |$x: f32| $f)?)
        }
    };
}

float_unary!(sin, |x| x.sin());
float_unary!(cos, |x| x.cos());
float_unary!(tan, |x| x.tan());
float_unary!(asin, |x| x.asin());
float_unary!(acos, |x| x.acos());
float_unary!(atan, |x| x.atan());
float_unary!(sinh, |x| x.sinh());
float_unary!(cosh, |x| x.cosh());
float_unary!(asinh, |x| x.asinh());
float_unary!(acosh, |x| x.acosh());
float_unary!(atanh, |x| x.atanh());
float_unary!(softplus, |x| softplus_f(x));
float_unary!(softsign, |x| x / (1.0 + x.abs()));
float_unary!(mish, |x| x * softplus_f(x).tanh());

/// ln(1 + eˣ) without overflow for large x.
#[inline]
pub(super) fn softplus_f(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// A kernel with a float expression and an integer one.
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

any_unary!(floor, |x| x.floor(), |p| p);
any_unary!(ceil, |x| x.ceil(), |p| p);
// Round halves to even, as numpy and onnxruntime do.
any_unary!(round, |x| x.round_ties_even(), |p| p);
any_unary!(
    sign,
    |x| if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        // zero stays zero, NaN stays NaN
        x
    },
    |p| p.signum()
);

fn is_nan(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    match input(inputs, 0)? {
        TensorData::F32(a) => single(map_array(a, |x: f32| x.is_nan() as i64)?),
        TensorData::I64(a) => single(a.mapv(|_| 0i64)),
    }
}

fn is_inf(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let negative = ctx.node.attr_int("detect_negative", 1)? != 0;
    let positive = ctx.node.attr_int("detect_positive", 1)? != 0;
    match input(inputs, 0)? {
        TensorData::F32(a) => single(map_array(a, |x: f32| {
            ((x == f32::INFINITY && positive) || (x == f32::NEG_INFINITY && negative)) as i64
        })?),
        TensorData::I64(a) => single(a.mapv(|_| 0i64)),
    }
}

/// `x · sigmoid(alpha · x)` (opset 24; alpha defaults to 1).
fn swish(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let alpha = ctx.node.attr_float("alpha", 1.0)?;
    let x = input(inputs, 0)?.to_f32_cow();
    single(map_array(x.as_ref(), |v: f32| {
        v / (1.0 + (-alpha * v).exp())
    })?)
}

fn elu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let alpha = ctx.node.attr_float("alpha", 1.0)?;
    let x = input(inputs, 0)?.to_f32_cow();
    single(map_array(x.as_ref(), |v: f32| {
        if v >= 0.0 { v } else { alpha * v.exp_m1() }
    })?)
}

/// Selu's defaults: the constants of Klambauer et al., as the ONNX operator states them.
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_GAMMA: f32 = 1.050_701;

fn selu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let alpha = ctx.node.attr_float("alpha", SELU_ALPHA)?;
    let gamma = ctx.node.attr_float("gamma", SELU_GAMMA)?;
    let x = input(inputs, 0)?.to_f32_cow();
    single(map_array(x.as_ref(), |v: f32| {
        if v > 0.0 {
            gamma * v
        } else {
            gamma * (alpha * v.exp() - alpha)
        }
    })?)
}

fn celu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let alpha = ctx.node.attr_float("alpha", 1.0)?;
    if alpha == 0.0 {
        return Err(OpError("alpha must not be 0".into()));
    }
    let x = input(inputs, 0)?.to_f32_cow();
    single(map_array(x.as_ref(), |v: f32| {
        v.max(0.0) + (alpha * (v / alpha).exp_m1()).min(0.0)
    })?)
}

fn thresholded_relu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let alpha = ctx.node.attr_float("alpha", 1.0)?;
    let x = input(inputs, 0)?.to_f32_cow();
    single(map_array(
        x.as_ref(),
        |v: f32| if v > alpha { v } else { 0.0 },
    )?)
}

fn shrink(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let bias = ctx.node.attr_float("bias", 0.0)?;
    let lambd = ctx.node.attr_float("lambd", 0.5)?;
    match input(inputs, 0)? {
        TensorData::F32(a) => single(map_array(a, |v: f32| {
            if v < -lambd {
                v + bias
            } else if v > lambd {
                v - bias
            } else {
                0.0
            }
        })?),
        TensorData::I64(a) => {
            let (bias, lambd) = (bias as i64, f64::from(lambd));
            single(map_array(a, |v: i64| {
                if (v as f64) < -lambd {
                    v + bias
                } else if (v as f64) > lambd {
                    v - bias
                } else {
                    0
                }
            })?)
        }
    }
}

/// PRelu: `x < 0 ? slope·x : x` with the slope broadcast to X (numpy rules from opset 7; a
/// per-channel `[C]` slope of opset 6 lines up with axis 1).
fn prelu(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?.to_f32_cow();
    let slope_t = input(inputs, 1)?;
    let mut slope = slope_t.to_f32_cow().into_owned();
    let xs = x.shape();
    if ctx.opset < 7 && slope.ndim() == 1 && xs.len() > 2 && slope.len() == xs[1] && xs[1] > 1 {
        let mut shape = vec![xs[1]];
        shape.extend(std::iter::repeat_n(1, xs.len() - 2));
        slope = slope
            .into_shape_with_order(shape)
            .map_err(|e| OpError(format!("slope: {e}")))?;
    }
    let out = broadcast_binary(
        x.as_ref(),
        &slope,
        |v: f32, s: f32| {
            if v < 0.0 { s * v } else { v }
        },
    )?;
    if out.shape() != xs {
        return Err(OpError(format!(
            "slope of shape {:?} does not broadcast to X of shape {xs:?}",
            slope.shape()
        )));
    }
    single(out)
}

/// Mod: integer remainder with the divisor's sign (fmod=0, Python's %), or C's fmod (fmod=1,
/// required for floats).
fn modulo(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let fmod = ctx.node.attr_int("fmod", 0)? != 0;
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    match (a, b) {
        (TensorData::I64(a), TensorData::I64(b)) => {
            if b.iter().any(|&v| v == 0) {
                return Err(OpError("integer modulo by zero".into()));
            }
            if fmod {
                single(broadcast_binary(a, b, |p: i64, q: i64| p.wrapping_rem(q))?)
            } else {
                single(broadcast_binary(a, b, |p: i64, q: i64| {
                    let r = p.wrapping_rem(q);
                    if r != 0 && ((r < 0) != (q < 0)) {
                        r + q
                    } else {
                        r
                    }
                })?)
            }
        }
        _ => {
            if !fmod {
                return Err(OpError("fmod must be 1 for floating point inputs".into()));
            }
            let (a, b) = (a.to_f32_cow(), b.to_f32_cow());
            single(broadcast_binary(
                a.as_ref(),
                b.as_ref(),
                |p: f32, q: f32| p % q,
            )?)
        }
    }
}

/// CastLike: input 0 converted to the element kind of input 1 (floats truncate toward zero
/// when the target holds integers).
fn cast_like(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let target = input(inputs, 1)?;
    single(match (x, target) {
        (TensorData::F32(a), TensorData::I64(_)) => TensorData::I64(a.mapv(|v| v.trunc() as i64)),
        (TensorData::I64(a), TensorData::F32(_)) => TensorData::F32(a.mapv(|v| v as f32)),
        (same, _) => same.clone(),
    })
}
