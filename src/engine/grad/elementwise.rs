//! Backward of the elementwise kernels: broadcasting arithmetic (gradients summed back to each
//! operand's shape), Min/Max/Sum/Mean/Where, and the unary functions and activations.
//!
//! Piecewise functions take the forward's branch at their kinks: Relu passes where x > 0,
//! LeakyRelu uses slope 1 where x ≥ 0, Clip passes where min ≤ x ≤ max, Min/Max send the
//! gradient to the first operand equal to the result.

use ndarray::{ArrayD, Zip};

use super::{GradCtx, GradRegistry, GradResult, Grads, grad_output, output_f32, reduce_to_shape};
use crate::engine::ops::{OpError, input, optional};
use crate::ir::TensorData;

pub fn register(registry: &mut GradRegistry) {
    registry.add("Add", |ctx, inputs, _, grads| {
        spread(ctx, inputs, grads, &[1.0, 1.0])
    });
    registry.add("Sub", |ctx, inputs, _, grads| {
        spread(ctx, inputs, grads, &[1.0, -1.0])
    });
    registry.add("Mul", mul);
    registry.add("Div", div);
    registry.add("Pow", pow);
    registry.add("Min", select_extreme);
    registry.add("Max", select_extreme);
    registry.add("Sum", |ctx, inputs, _, grads| {
        spread(ctx, inputs, grads, &vec![1.0; inputs.len()])
    });
    registry.add("Mean", |ctx, inputs, _, grads| {
        let scale = 1.0 / inputs.len().max(1) as f32;
        spread(ctx, inputs, grads, &vec![scale; inputs.len()])
    });
    registry.add("Where", where_grad);
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
    registry.add("Dropout", identity);
    registry.add("Cast", cast);
}

/// `f(g, a, b)` over the shape of `g`, with `a` and `b` broadcast to it.
fn zip3(
    g: &ArrayD<f32>,
    a: &ArrayD<f32>,
    b: &ArrayD<f32>,
    f: impl Fn(f32, f32, f32) -> f32,
) -> Result<ArrayD<f32>, OpError> {
    let dim = g.raw_dim();
    let bad = |s: &[usize]| {
        OpError(format!(
            "operand {s:?} does not broadcast to {:?}",
            g.shape()
        ))
    };
    let av = a.broadcast(dim.clone()).ok_or_else(|| bad(a.shape()))?;
    let bv = b.broadcast(dim).ok_or_else(|| bad(b.shape()))?;
    Ok(Zip::from(g)
        .and(&av)
        .and(&bv)
        .map_collect(|&g, &a, &b| f(g, a, b)))
}

/// The gradients of a binary op with partial derivatives `da(g, a, b)` and `db(g, a, b)`
/// (already multiplied by the upstream gradient `g`), summed back to each operand's shape.
fn binary(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    grads: &[Option<&ArrayD<f32>>],
    da: impl Fn(f32, f32, f32) -> f32,
    db: impl Fn(f32, f32, f32) -> f32,
) -> GradResult {
    let g = grad_output(grads, 0)?;
    let a = input(inputs, 0)?.to_f32_cow();
    let b = input(inputs, 1)?.to_f32_cow();
    let mut out: Grads = vec![None, None];
    if ctx.wants(0) {
        out[0] = Some(reduce_to_shape(zip3(g, &a, &b, da)?, a.shape())?);
    }
    if ctx.wants(1) {
        out[1] = Some(reduce_to_shape(zip3(g, &a, &b, db)?, b.shape())?);
    }
    Ok(out)
}

/// A binary op's backward from its partial derivatives `da` and `db` (see [`binary`]).
macro_rules! binary_grad {
    ($(#[$doc:meta])* $name:ident, $da:expr, $db:expr) => {
        $(#[$doc])*
        fn $name(
            ctx: &GradCtx<'_>,
            inputs: &[Option<&TensorData>],
            _: &[&TensorData],
            grads: &[Option<&ArrayD<f32>>],
        ) -> GradResult {
            binary(ctx, inputs, grads, $da, $db)
        }
    };
}

binary_grad!(mul, |g, _, b| g * b, |g, a, _| g * a);
binary_grad!(div, |g, _, b| g / b, |g, a, b| -g * a / (b * b));
binary_grad!(
    /// d(a^b)/da = b·a^(b−1); d(a^b)/db = a^b·ln a (0 where a ≤ 0, where it is undefined).
    pow,
    |g, a, b| {
        if b == 0.0 {
            0.0
        } else if b == 2.0 {
            g * 2.0 * a
        } else {
            g * b * a.powf(b - 1.0)
        }
    },
    |g, a, b| if a > 0.0 { g * a.powf(b) * a.ln() } else { 0.0 }
);

/// Min/Max: the gradient goes to the first operand equal to the result at each position.
fn select_extreme(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let g = grad_output(grads, 0)?;
    let y = output_f32(outputs, 0)?;
    let mut taken = ArrayD::<bool>::from_elem(g.raw_dim(), false);
    let mut out: Grads = vec![None; inputs.len()];
    for (i, slot) in out.iter_mut().enumerate() {
        let x = input(inputs, i)?.to_f32_cow();
        let xv = x
            .broadcast(g.raw_dim())
            .ok_or_else(|| OpError(format!("operand {i} does not broadcast to the result")))?;
        let mut gi = ArrayD::<f32>::zeros(g.raw_dim());
        Zip::from(&mut gi)
            .and(&mut taken)
            .and(&xv)
            .and(y)
            .and(g)
            .for_each(|o, t, &x, &y, &g| {
                if !*t && (x == y || (x.is_nan() && y.is_nan())) {
                    *t = true;
                    *o = g;
                }
            });
        if ctx.wants(i) {
            *slot = Some(reduce_to_shape(gi, x.shape())?);
        }
    }
    Ok(out)
}

/// Add, Sub, Sum and Mean: operand `i` gets the gradient times `scales[i]` (−1 for Sub's
/// subtrahend, 1/count for Mean), summed back to its shape.
fn spread(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    grads: &[Option<&ArrayD<f32>>],
    scales: &[f32],
) -> GradResult {
    let g = grad_output(grads, 0)?;
    let mut out: Grads = vec![None; scales.len()];
    for (i, (slot, &scale)) in out.iter_mut().zip(scales).enumerate() {
        if ctx.wants(i) {
            let gi = if scale == 1.0 {
                g.clone()
            } else if scale == -1.0 {
                g.mapv(|v| -v)
            } else {
                g.mapv(|v| v * scale)
            };
            *slot = Some(reduce_to_shape(gi, input(inputs, i)?.shape())?);
        }
    }
    Ok(out)
}

/// Where(cond, x, y): x gets the gradient where cond holds, y elsewhere.
fn where_grad(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let g = grad_output(grads, 0)?;
    let cond = input(inputs, 0)?.to_f32_cow();
    let cv = cond
        .broadcast(g.raw_dim())
        .ok_or_else(|| OpError("condition does not broadcast to the result".into()))?;
    let mut out: Grads = vec![None, None, None];
    for (i, when) in [(1usize, true), (2, false)] {
        if ctx.wants(i) {
            let gi = Zip::from(g)
                .and(&cv)
                .map_collect(|&g, &c| if (c != 0.0) == when { g } else { 0.0 });
            out[i] = Some(reduce_to_shape(gi, input(inputs, i)?.shape())?);
        }
    }
    Ok(out)
}

// ---- unary ----------------------------------------------------------------------------------

/// The gradient of a unary function from `f(g, x, y)` (upstream gradient, input, output);
/// integer inputs get none.
fn unary(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
    f: impl Fn(f32, f32, f32) -> f32,
) -> GradResult {
    let mut out: Grads = vec![None; inputs.len().max(1)];
    let TensorData::F32(x) = input(inputs, 0)? else {
        return Ok(out);
    };
    if !ctx.wants(0) {
        return Ok(out);
    }
    let g = grad_output(grads, 0)?;
    let y = output_f32(outputs, 0)?;
    if g.shape() != x.shape() || y.shape() != x.shape() {
        return Err(OpError(format!(
            "gradient {:?} and output {:?} do not match the input {:?}",
            g.shape(),
            y.shape(),
            x.shape()
        )));
    }
    out[0] = Some(
        Zip::from(g)
            .and(x)
            .and(y)
            .map_collect(|&g, &x, &y| f(g, x, y)),
    );
    Ok(out)
}

macro_rules! unary_grad {
    ($name:ident, |$g:ident, $x:ident, $y:ident| $f:expr) => {
        fn $name(
            ctx: &GradCtx<'_>,
            inputs: &[Option<&TensorData>],
            outputs: &[&TensorData],
            grads: &[Option<&ArrayD<f32>>],
        ) -> GradResult {
            #[allow(unused_variables)]
            unary(ctx, inputs, outputs, grads, |$g: f32, $x: f32, $y: f32| $f)
        }
    };
}

unary_grad!(sqrt, |g, x, y| g * 0.5 / y);
unary_grad!(exp, |g, x, y| g * y);
unary_grad!(log, |g, x, y| g / x);
unary_grad!(neg, |g, x, y| -g);
unary_grad!(abs, |g, x, y| if x > 0.0 {
    g
} else if x < 0.0 {
    -g
} else {
    0.0
});
unary_grad!(reciprocal, |g, x, y| -g * y * y);
unary_grad!(erf, |g, x, y| g
    * std::f32::consts::FRAC_2_SQRT_PI
    * (-x * x).exp());
unary_grad!(relu, |g, x, y| if x > 0.0 { g } else { 0.0 });
unary_grad!(sigmoid, |g, x, y| g * y * (1.0 - y));
unary_grad!(tanh, |g, x, y| g * (1.0 - y * y));
unary_grad!(hard_swish, |g, x, y| if x < -3.0 {
    0.0
} else if x > 3.0 {
    g
} else {
    g * (x / 3.0 + 0.5)
});
unary_grad!(identity, |g, x, y| g);

fn leaky_relu(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let alpha = ctx.node.attr_float("alpha", 0.01)?;
    unary(ctx, inputs, outputs, grads, |g, x, _| {
        if x >= 0.0 { g } else { alpha * g }
    })
}

fn hard_sigmoid(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let alpha = ctx.node.attr_float("alpha", 0.2)?;
    let beta = ctx.node.attr_float("beta", 0.5)?;
    unary(ctx, inputs, outputs, grads, |g, x, _| {
        let v = alpha * x + beta;
        if v > 0.0 && v < 1.0 { g * alpha } else { 0.0 }
    })
}

/// GELU, exact (erf) or tanh form: d/dx [x·Φ(x)] = Φ(x) + x·φ(x).
fn gelu(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let approximate = ctx.node.attr_string("approximate", "none")?;
    match approximate.as_str() {
        "none" => unary(ctx, inputs, outputs, grads, |g, x, _| {
            let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
            g * (cdf + x * pdf)
        }),
        "tanh" => {
            let k = (2.0f32 / std::f32::consts::PI).sqrt();
            unary(ctx, inputs, outputs, grads, move |g, x, _| {
                let t = (k * (x + 0.044715 * x * x * x)).tanh();
                let du = k * (1.0 + 3.0 * 0.044715 * x * x);
                g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
            })
        }
        other => Err(OpError(format!(
            "approximate must be \"none\" or \"tanh\", got \"{other}\""
        ))),
    }
}

/// Clip: the gradient passes where min ≤ x ≤ max; the bounds get none.
fn clip(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let scalar = |i: usize, default: f32| -> Result<f32, OpError> {
        match optional(inputs, i) {
            None => Ok(default),
            Some(t) => t
                .to_f32_cow()
                .iter()
                .next()
                .copied()
                .ok_or_else(|| OpError(format!("Clip bound {i} is empty"))),
        }
    };
    let (lo, hi) = if ctx.opset < 11 {
        (
            ctx.node.attr_float("min", f32::MIN)?,
            ctx.node.attr_float("max", f32::MAX)?,
        )
    } else {
        (scalar(1, f32::NEG_INFINITY)?, scalar(2, f32::INFINITY)?)
    };
    unary(ctx, inputs, outputs, grads, |g, x, _| {
        if x >= lo && x <= hi { g } else { 0.0 }
    })
}

/// Cast between float types passes the gradient; casts to or from integers pass none.
fn cast(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    if outputs.first().and_then(|t| t.as_f32()).is_none() {
        return Ok(vec![None]);
    }
    unary(ctx, inputs, outputs, grads, |g, _, _| g)
}

#[cfg(test)]
mod tests {
    use super::super::check::{Case, away_from, check, random};

    #[test]
    fn broadcasting_arithmetic_matches_finite_differences() {
        let shapes: [(&[usize], &[usize]); 5] = [
            (&[2, 3, 4], &[2, 3, 4]),
            (&[2, 3, 4], &[4]),
            (&[3, 1, 5], &[1, 4, 1]),
            (&[2, 3, 1, 1], &[3, 5, 7]),
            (&[1], &[3, 2]),
        ];
        for (sa, sb) in shapes {
            for op in ["Add", "Sub", "Mul", "Div"] {
                let a = random(sa, 1, -1.0, 1.0);
                let b = if op == "Div" {
                    away_from(random(sb, 2, 0.5, 2.0), &[0.0], 0.5)
                } else {
                    random(sb, 2, -1.0, 1.0)
                };
                check(&Case::new(op).input(a).input(b), 2e-3);
            }
        }
        // Pow with a tensor exponent, positive base.
        let a = random(&[3, 4], 3, 0.5, 2.0);
        let b = random(&[4], 4, -1.5, 2.5);
        check(&Case::new("Pow").input(a).input(b), 2e-3);
        // Pow with a constant exponent 2 (LayerNorm's primitive form).
        let a = random(&[2, 5], 5, -2.0, 2.0);
        check(
            &Case::new("Pow")
                .input(a)
                .constant(super::super::check::scalar(2.0)),
            2e-3,
        );
    }

    #[test]
    fn min_max_sum_mean_where() {
        for op in ["Min", "Max"] {
            let a = random(&[3, 4], 6, -1.0, 1.0);
            let b = random(&[4], 7, -1.0, 1.0);
            // Keep the operands apart so the finite differences do not cross a kink.
            let b = b.mapv(|v| v + 0.05);
            check(&Case::new(op).input(a).input(b), 2e-3);
        }
        // ReLU6 as Min(x, 6).
        let x = away_from(random(&[2, 8], 8, 4.0, 8.0), &[6.0], 0.05);
        check(
            &Case::new("Min")
                .input(x)
                .constant(super::super::check::scalar(6.0)),
            2e-3,
        );
        for op in ["Sum", "Mean"] {
            let c = Case::new(op)
                .input(random(&[2, 3], 9, -1.0, 1.0))
                .input(random(&[3], 10, -1.0, 1.0))
                .input(random(&[2, 1], 11, -1.0, 1.0));
            check(&c, 2e-3);
        }
        let cond = random(&[2, 3], 12, -1.0, 1.0).mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
        let c = Case::new("Where")
            .constant(cond.into())
            .input(random(&[2, 3], 13, -1.0, 1.0))
            .input(random(&[3], 14, -1.0, 1.0));
        check(&c, 2e-3);
    }

    #[test]
    fn activations_match_finite_differences() {
        let smooth = random(&[3, 7], 20, -3.0, 3.0);
        for op in ["Sigmoid", "Tanh", "Erf", "Exp", "Neg", "Identity", "Gelu"] {
            check(&Case::new(op).input(smooth.clone()), 2e-3);
        }
        check(
            &Case::new("Gelu")
                .attr_str("approximate", "tanh")
                .input(smooth.clone()),
            2e-3,
        );
        let positive = random(&[3, 7], 21, 0.3, 3.0);
        for op in ["Sqrt", "Log", "Reciprocal"] {
            check(&Case::new(op).input(positive.clone()), 2e-3);
        }
        let kinked = away_from(random(&[4, 9], 22, -4.0, 4.0), &[0.0, -3.0, 3.0, 6.0], 0.05);
        for op in ["Relu", "Abs", "HardSwish", "LeakyRelu"] {
            check(&Case::new(op).input(kinked.clone()), 2e-3);
        }
        check(
            &Case::new("LeakyRelu")
                .attr_float("alpha", 0.3)
                .input(kinked.clone()),
            2e-3,
        );
        let hs = away_from(random(&[4, 9], 23, -4.0, 4.0), &[-2.5, 2.5], 0.05);
        check(&Case::new("HardSigmoid").input(hs), 2e-3);
        // ReLU6 as Clip(x, 0, 6), bounds as inputs (opset 11+) and as attributes (opset 6).
        let x = away_from(random(&[4, 9], 24, -2.0, 8.0), &[0.0, 6.0], 0.05);
        let c = Case::new("Clip")
            .input(x.clone())
            .constant(super::super::check::scalar(0.0))
            .constant(super::super::check::scalar(6.0));
        check(&c, 2e-3);
        let c = Case::new("Clip")
            .opset(6)
            .attr_float("min", 0.0)
            .attr_float("max", 6.0)
            .input(x);
        check(&c, 2e-3);
    }
}
