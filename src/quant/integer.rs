//! Integer-arithmetic-only inference (Jacob et al. 2018) for Conv, Gemm and MatMul, the
//! reference the fake-quantized float path is checked against.
//!
//! # The arithmetic
//!
//! With r = S·(q − Z) for input x, weight w and output y, one output of a layer is
//!
//! ```text
//! S_y (q_y − Z_y) = Σ_k S_w q_w,k · S_x (q_x,k − Z_x) + b
//! q_y = Z_y + M · (Σ_k q_w,k q_x,k − Z_x Σ_k q_w,k + q_b),   M = S_w S_x / S_y
//! ```
//!
//! Weights are symmetric (Z_w = 0), so of the four zero-point terms of the paper only
//! `Z_x · Σ_k q_w,k` remains; it depends on the weights alone and is precomputed per output
//! channel. Padding taps read the input code Z_x (the code of the real value 0), so the
//! correction is the same for every output position. The bias is stored as i32 at scale
//! S_w·S_x with zero point 0: q_b = round_half_to_even(b / (S_w S_x)).
//!
//! Products of ≤ 8-bit codes fit in 16 bits, but their sums do not: everything is accumulated
//! in i32. [`IntConv::new`] and [`IntLinear::new`] bound the accumulator over all inputs on the
//! grid and refuse layers that could overflow i32 (see [`IntConv::accumulator_bound`]).
//!
//! # Requantization (gemmlowp / TFLite semantics)
//!
//! The real multiplier M (one per output channel with per-channel weights) is written as
//! M = M0 · 2^−31 · 2^−n with M0 ∈ [2^30, 2^31) — a Q31 fixed-point number in [0.5, 1) — by
//! [`quantize_multiplier`]. An accumulator `acc` is then scaled without floating point:
//!
//! 1. if n < 0 (M ≥ 1), `acc` is first shifted left by −n, saturating to i32 (as in TFLite,
//!    so M ≥ 1 saturates when acc·2^−n leaves the i32 range even if acc·M would not);
//! 2. [`saturating_rounding_doubling_high_mul`]`(acc, M0)` = the high 32 bits of 2·acc·M0,
//!    i.e. acc·M0 / 2^31 rounded to nearest, computed in i64: a nudge of 2^30 (for a
//!    non-negative product) or 1 − 2^30 (negative) is added and the division truncates toward
//!    zero, so ties round toward +∞ (1.5 → 2, −1.5 → −1). The single overflowing case,
//!    (−2^31)·(−2^31), saturates to i32::MAX;
//! 3. if n > 0, [`rounding_divide_by_pot`]`(·, n)` divides by 2^n rounding to nearest, ties
//!    away from zero (the remainder is compared against half the divisor, one more for
//!    negative values).
//!
//! Finally Z_y is added and the result clamped to the output grid; a fused ReLU raises the lower
//! clamp bound to Z_y (the code of 0). The two roundings compound (double rounding): the
//! result equals round(M·acc) except when M·acc lies within about 2^−(n+1) of a tie, and is
//! always within 1 LSB of it — and of the fake-quantized float reference
//! ([`IntConv::fake_quant_reference`]), which rounds the float result half to even once.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis, IxDyn};

use super::grid::{IntGrid, LinearParams, QuantError};
use crate::engine::ops::{OpCtx, kernel_for};
use crate::ir::{Attribute, Node, TensorData};

// ---- fixed-point multiplier -------------------------------------------------------------------

/// Writes a real multiplier `m` as `(m0, n)` with m = m0 · 2^−31 · 2^−n and |m0| ∈ [2^30, 2^31)
/// (a Q31 number in [0.5, 1)); `n` is the right shift (negative for m ≥ 1).
///
/// Powers of two are exact; otherwise the relative error is at most 2^−31. Zero, non-finite
/// values and multipliers so small that every i32 would round to 0 (n > 62) give `(0, 0)`.
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 || !m.is_finite() {
        return (0, 0);
    }
    // m = q · 2^e with |q| ∈ [0.5, 1).
    let (q, mut e) = libm::frexp(m);
    let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
    if q_fixed.abs() == 1i64 << 31 {
        q_fixed /= 2;
        e += 1;
    }
    let shift = -e;
    if shift > 62 {
        return (0, 0);
    }
    (q_fixed as i32, shift)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`: a·b / 2^31 rounded to nearest with ties
/// toward +∞ (the nudge is 2^30 for a non-negative product, 1 − 2^30 for a negative one, and
/// the division truncates toward zero), saturating the single overflow case a = b = i32::MIN to i32::MAX.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge = if ab >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp `RoundingDivideByPOT`: x / 2^exponent rounded to nearest, ties away from zero.
/// `exponent` must be in 0..=62.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!((0..=62).contains(&exponent));
    let x = i64::from(x);
    let mask = (1i64 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i64::from(x < 0);
    ((x >> exponent) + i64::from(remainder > threshold)) as i32
}

/// A real multiplier in fixed point: value = m0 · 2^−31 · 2^−shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedMultiplier {
    pub m0: i32,
    pub shift: i32,
}

impl FixedMultiplier {
    /// The fixed-point form of `m` (see [`quantize_multiplier`]).
    pub fn from_real(m: f64) -> Self {
        let (m0, shift) = quantize_multiplier(m);
        FixedMultiplier { m0, shift }
    }

    /// The real value represented.
    pub fn to_real(self) -> f64 {
        f64::from(self.m0) * 2f64.powi(-31 - self.shift)
    }

    /// round(x · multiplier) with gemmlowp semantics (TFLite `MultiplyByQuantizedMultiplier`).
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        let x = if self.shift < 0 {
            let left = (-self.shift).min(32);
            (i64::from(x) << left).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        } else {
            x
        };
        let high = saturating_rounding_doubling_high_mul(x, self.m0);
        if self.shift > 0 {
            rounding_divide_by_pot(high, self.shift)
        } else {
            high
        }
    }
}

// ---- tensors of codes -------------------------------------------------------------------------

/// Quantizes a real tensor to codes (ONNX QuantizeLinear), held as i32.
pub fn quantize_tensor(x: &ArrayD<f32>, params: &LinearParams) -> ArrayD<i32> {
    x.mapv(|v| params.quantize(v))
}

/// Dequantizes codes: r = S·(q − Z).
pub fn dequantize_tensor(q: &ArrayD<i32>, params: &LinearParams) -> ArrayD<f32> {
    q.mapv(|v| params.dequantize(v))
}

/// Symmetric (Z = 0) signed weights of at most 8 bits, per tensor or per output channel.
///
/// Output channels are on axis 0: Conv weights are `[Cout, Cin/group, kh, kw]`, Gemm/MatMul
/// weights are held as `[N, K]` (one row per output feature).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeights {
    pub codes: ArrayD<i8>,
    /// One scale (per tensor) or one per output channel.
    pub scales: Vec<f32>,
    pub grid: IntGrid,
}

impl QuantizedWeights {
    /// Quantizes `w` symmetrically on `grid` (signed, at most 8 bits): S = max|w| / (2^(b−1) − 1)
    /// over the tensor, or over each output channel (axis 0) when `per_channel`.
    pub fn quantize(w: &ArrayD<f32>, per_channel: bool, grid: IntGrid) -> Result<Self, QuantError> {
        if !grid.signed || grid.bits > 8 {
            return Err(QuantError(format!(
                "integer weights need a signed grid of at most 8 bits, got {} bits ({})",
                grid.bits,
                if grid.signed { "signed" } else { "unsigned" }
            )));
        }
        if w.ndim() < 2 || w.shape()[0] == 0 {
            return Err(QuantError(format!(
                "weights of shape {:?} have no output-channel axis",
                w.shape()
            )));
        }
        let params_of = |values: &mut dyn Iterator<Item = f32>| {
            let abs_max = values.fold(0f32, |m, v| m.max(v.abs()));
            LinearParams::from_range(-abs_max, abs_max, grid, true)
        };
        let params: Vec<LinearParams> = if per_channel {
            w.axis_iter(Axis(0))
                .map(|c| params_of(&mut c.iter().copied()))
                .collect::<Result<_, _>>()?
        } else {
            vec![params_of(&mut w.iter().copied())?]
        };
        let mut codes = ArrayD::<i8>::zeros(w.raw_dim());
        for (c, (mut out, input)) in codes
            .axis_iter_mut(Axis(0))
            .zip(w.axis_iter(Axis(0)))
            .enumerate()
        {
            let p = params[if per_channel { c } else { 0 }];
            out.zip_mut_with(&input, |o, &v| *o = p.quantize(v) as i8);
        }
        Ok(QuantizedWeights {
            codes,
            scales: params.iter().map(|p| p.scale).collect(),
            grid,
        })
    }

    /// Number of output channels (axis 0).
    pub fn out_channels(&self) -> usize {
        self.codes.shape()[0]
    }

    /// Whether there is one scale per output channel (rather than one for the tensor).
    pub fn is_per_channel(&self) -> bool {
        self.scales.len() > 1
    }

    /// The scale of output channel `c`.
    pub fn scale_of(&self, c: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[c]
        }
    }

    /// Real values S_c · q.
    pub fn dequantize(&self) -> ArrayD<f32> {
        let mut out = self.codes.mapv(f32::from);
        for (c, mut ch) in out.axis_iter_mut(Axis(0)).enumerate() {
            let s = self.scale_of(c);
            ch.mapv_inplace(|v| v * s);
        }
        out
    }

    fn check(&self) -> Result<(), QuantError> {
        let n = self.out_channels();
        if self.scales.len() != 1 && self.scales.len() != n {
            return Err(QuantError(format!(
                "{} weight scales for {n} output channels (expected 1 or {n})",
                self.scales.len()
            )));
        }
        if let Some(s) = self.scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(QuantError(format!(
                "weight scale {s} must be finite and positive"
            )));
        }
        let (lo, hi) = (self.grid.qmin(), self.grid.qmax());
        if let Some(q) = self
            .codes
            .iter()
            .find(|&&q| i32::from(q) < lo || i32::from(q) > hi)
        {
            return Err(QuantError(format!(
                "weight code {q} is outside the grid [{lo}, {hi}]"
            )));
        }
        Ok(())
    }
}

/// Quantizes a bias to i32 at scale S_w,c · S_x with zero point 0 (round half to even,
/// saturating to the i32 range).
pub fn quantize_bias(bias: &[f32], weights: &QuantizedWeights, input_scale: f32) -> Vec<i32> {
    bias.iter()
        .enumerate()
        .map(|(c, &b)| {
            let scale = f64::from(weights.scale_of(c)) * f64::from(input_scale);
            let q = (f64::from(b) / scale).round_ties_even();
            if q.is_nan() {
                0
            } else {
                q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            }
        })
        .collect()
}

// ---- shared layer core ------------------------------------------------------------------------

/// What Conv and Gemm share: quantized weights and bias, the grids, the per-channel fixed-point
/// multipliers and zero-point corrections.
#[derive(Debug, Clone)]
struct Core {
    weights: QuantizedWeights,
    bias: Vec<i32>,
    input: LinearParams,
    output: LinearParams,
    relu: bool,
    multipliers: Vec<FixedMultiplier>,
    /// Z_x · Σ_k q_w,k per output channel.
    zero_point_terms: Vec<i32>,
    /// Worst-case |accumulator| over all inputs on the input grid (any intermediate sum).
    bound: i64,
}

impl Core {
    fn new(
        weights: QuantizedWeights,
        bias: Option<&[f32]>,
        input: LinearParams,
        output: LinearParams,
        relu: bool,
    ) -> Result<Self, QuantError> {
        weights.check()?;
        let n = weights.out_channels();
        let bias = match bias {
            None => vec![0; n],
            Some(b) if b.len() == n => quantize_bias(b, &weights, input.scale),
            Some(b) => {
                return Err(QuantError(format!(
                    "bias has {} values for {n} output channels",
                    b.len()
                )));
            }
        };
        let x_abs = i64::from(input.grid.qmin().abs().max(input.grid.qmax().abs()));
        let zx = i64::from(input.zero_point);
        let mut zero_point_terms = Vec::with_capacity(n);
        let mut bound = 0i64;
        for (c, ch) in weights.codes.axis_iter(Axis(0)).enumerate() {
            let sum: i64 = ch.iter().map(|&q| i64::from(q)).sum();
            let abs_sum: i64 = ch.iter().map(|&q| i64::from(q).abs()).sum();
            let b = i64::from(bias[c]).abs();
            // The running sum is bias + Σ q_w q_x, then Z_x Σ q_w is subtracted.
            bound = bound
                .max(b + abs_sum * x_abs)
                .max(b + abs_sum * x_abs + (zx * sum).abs());
            zero_point_terms.push(zx * sum);
        }
        if bound > i64::from(i32::MAX) {
            return Err(QuantError(format!(
                "the accumulator can reach {bound}, which overflows i32; reduce the reduction \
                 length or the bit widths"
            )));
        }
        let mut core = Core {
            weights,
            bias,
            input,
            output,
            relu,
            multipliers: Vec::new(),
            zero_point_terms: zero_point_terms.into_iter().map(|v| v as i32).collect(),
            bound,
        };
        core.set_output(output);
        Ok(core)
    }

    fn set_output(&mut self, output: LinearParams) {
        self.output = output;
        self.multipliers = (0..self.weights.out_channels())
            .map(|c| {
                let m = f64::from(self.weights.scale_of(c)) * f64::from(self.input.scale)
                    / f64::from(output.scale);
                FixedMultiplier::from_real(m)
            })
            .collect();
    }

    /// Lower and upper clamp bounds of the output codes.
    fn clamp_bounds(&self) -> (i32, i32) {
        let g = self.output.grid;
        let lo = if self.relu {
            g.qmin().max(self.output.zero_point)
        } else {
            g.qmin()
        };
        (lo, g.qmax())
    }

    /// Output code from a raw accumulator (bias + Σ q_w q_x) of channel `c`.
    #[inline]
    fn finish(&self, raw: i32, c: usize, lo: i32, hi: i32) -> i32 {
        let acc = raw - self.zero_point_terms[c];
        let y = self.multipliers[c].apply(acc);
        y.saturating_add(self.output.zero_point).clamp(lo, hi)
    }

    fn check_input(&self, x: &ArrayD<i32>) -> Result<(), QuantError> {
        let (lo, hi) = (self.input.grid.qmin(), self.input.grid.qmax());
        match x.iter().find(|&&q| q < lo || q > hi) {
            Some(q) => Err(QuantError(format!(
                "input code {q} is outside the input grid [{lo}, {hi}]"
            ))),
            None => Ok(()),
        }
    }

    /// Quantizes a float output with the output parameters.
    fn quantize_output(&self, y: ArrayD<f32>) -> ArrayD<i32> {
        quantize_tensor(&y, &self.output)
    }

    fn dequantized_bias(&self) -> ArrayD<f32> {
        let b: Vec<f32> = self
            .bias
            .iter()
            .enumerate()
            .map(|(c, &q)| {
                (f64::from(q) * f64::from(self.weights.scale_of(c)) * f64::from(self.input.scale))
                    as f32
            })
            .collect();
        ndarray::Array1::from(b).into_dyn()
    }
}

/// Runs the float engine's kernel for a synthetic node of `op_type` with `attributes`.
fn run_float_op(
    op_type: &str,
    attributes: BTreeMap<String, Attribute>,
    inputs: Vec<ArrayD<f32>>,
) -> Result<ArrayD<f32>, QuantError> {
    let node = Node {
        name: format!("{op_type}_reference"),
        op_type: op_type.to_string(),
        domain: String::new(),
        inputs: (0..inputs.len()).map(|i| format!("in{i}")).collect(),
        outputs: vec!["out".into()],
        attributes,
    };
    let kernel = kernel_for(&node)
        .ok_or_else(|| QuantError(format!("the float engine has no {op_type} kernel")))?;
    let data: Vec<TensorData> = inputs.into_iter().map(TensorData::F32).collect();
    let args: Vec<Option<&TensorData>> = data.iter().map(Some).collect();
    let ctx = OpCtx {
        node: &node,
        opset: 13,
    };
    let out = kernel(&ctx, &args).map_err(|e| QuantError(format!("float {op_type}: {}", e.0)))?;
    out.into_iter()
        .next()
        .and_then(|t| t.as_f32().cloned())
        .ok_or_else(|| QuantError(format!("float {op_type} gave no float output")))
}

// ---- Conv -------------------------------------------------------------------------------------

/// Window geometry of a 2-D convolution, pads resolved (ONNX attribute semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// ONNX order: [top, left, bottom, right].
    pub pads: [usize; 4],
    pub group: usize,
}

impl Default for Conv2dGeometry {
    fn default() -> Self {
        Conv2dGeometry {
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
            group: 1,
        }
    }
}

impl Conv2dGeometry {
    /// Reads `strides`, `dilations`, `pads`, `group` and `auto_pad` of a Conv node with 2
    /// spatial dims; `auto_pad` SAME_* needs the input's spatial size `input_hw`.
    pub fn from_node(
        node: &Node,
        input_hw: [usize; 2],
        kernel_hw: [usize; 2],
    ) -> Result<Self, QuantError> {
        let dims = conv_window(node, &input_hw, &kernel_hw)?;
        let group = node.attr_int("group", 1).map_err(QuantError)?;
        if group < 1 {
            return Err(QuantError(format!("group {group} must be at least 1")));
        }
        Ok(Conv2dGeometry {
            strides: [dims[0].stride, dims[1].stride],
            dilations: [dims[0].dilation, dims[1].dilation],
            pads: [
                dims[0].pad_begin,
                dims[1].pad_begin,
                dims[0].pad_end,
                dims[1].pad_end,
            ],
            group: group as usize,
        })
    }

    /// Output spatial size for `input_hw` and `kernel_hw`.
    pub fn output_hw(
        &self,
        input_hw: [usize; 2],
        kernel_hw: [usize; 2],
    ) -> Result<[usize; 2], QuantError> {
        let mut out = [0; 2];
        for i in 0..2 {
            if self.strides[i] == 0 || self.dilations[i] == 0 {
                return Err(QuantError("strides and dilations must be positive".into()));
            }
            let padded = input_hw[i] + self.pads[i] + self.pads[i + 2];
            out[i] = window_output(i, padded, kernel_hw[i], self.strides[i], self.dilations[i])?;
        }
        Ok(out)
    }

    fn attributes(&self) -> BTreeMap<String, Attribute> {
        let ints = |v: &[usize]| Attribute::Ints(v.iter().map(|&x| x as i64).collect());
        BTreeMap::from([
            ("strides".to_string(), ints(&self.strides)),
            ("dilations".to_string(), ints(&self.dilations)),
            ("pads".to_string(), ints(&self.pads)),
            ("group".to_string(), Attribute::Int(self.group as i64)),
        ])
    }
}

/// Window geometry of one spatial axis of a convolution, pads resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvAxis {
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    /// Output size along this axis.
    pub output: usize,
}

/// Reads a Conv node's `strides`, `dilations`, `pads` and `auto_pad` for any number of spatial
/// dims and resolves each axis (ONNX output-size rules).
pub fn conv_window(
    node: &Node,
    input: &[usize],
    kernel: &[usize],
) -> Result<Vec<ConvAxis>, QuantError> {
    let sp = input.len();
    if kernel.len() != sp {
        return Err(QuantError(format!(
            "kernel {kernel:?} and input {input:?} have different spatial ranks"
        )));
    }
    let list =
        |name: &str, len: usize, default: usize, min: i64| -> Result<Vec<usize>, QuantError> {
            match node.attr_ints(name).map_err(QuantError)? {
                None => Ok(vec![default; len]),
                Some(v) if v.len() == len && v.iter().all(|&x| x >= min && x <= 1 << 30) => {
                    Ok(v.into_iter().map(|x| x as usize).collect())
                }
                Some(v) => Err(QuantError(format!(
                    "attribute '{name}' {v:?} should be {len} values ≥ {min}"
                ))),
            }
        };
    let strides = list("strides", sp, 1, 1)?;
    let dilations = list("dilations", sp, 1, 1)?;
    let auto_pad = node.attr_string("auto_pad", "NOTSET").map_err(QuantError)?;
    let pads = match auto_pad.as_str() {
        "NOTSET" | "" => list("pads", 2 * sp, 0, 0)?,
        "VALID" | "SAME_UPPER" | "SAME_LOWER" => vec![0; 2 * sp],
        other => return Err(QuantError(format!("unknown auto_pad '{other}'"))),
    };
    let mut axes = Vec::with_capacity(sp);
    for i in 0..sp {
        let span = dilations[i] * (kernel[i].max(1) - 1) + 1;
        let (pad_begin, pad_end) = if auto_pad.starts_with("SAME") {
            let out = input[i].div_ceil(strides[i]);
            let total = ((out.max(1) - 1) * strides[i] + span).saturating_sub(input[i]);
            let small = total / 2;
            if auto_pad == "SAME_UPPER" {
                (small, total - small)
            } else {
                (total - small, small)
            }
        } else {
            (pads[i], pads[i + sp])
        };
        let padded = input[i] + pad_begin + pad_end;
        axes.push(ConvAxis {
            stride: strides[i],
            dilation: dilations[i],
            pad_begin,
            pad_end,
            output: window_output(i, padded, kernel[i], strides[i], dilations[i])?,
        });
    }
    Ok(axes)
}

/// The elements of an array in standard layout (an internal error otherwise).
fn contiguous<'a, T, D: ndarray::Dimension>(
    a: &'a ndarray::CowArray<'_, T, D>,
) -> Result<&'a [T], QuantError> {
    a.as_slice()
        .ok_or_else(|| QuantError("internal: standard layout is not contiguous".into()))
}

/// An output array of `shape` from its elements (an internal error if they do not fit).
fn output_array(shape: &[usize], out: Vec<i32>) -> Result<ArrayD<i32>, QuantError> {
    ArrayD::from_shape_vec(IxDyn(shape), out)
        .map_err(|e| QuantError(format!("internal: output shape {shape:?}: {e}")))
}

/// Output size of a convolution window along spatial axis `axis` (stride and dilation ≥ 1)
/// over an input of `padded` size, pads included: ⌊(padded − span)/stride⌋ + 1 with span the
/// dilated kernel extent; an error when the window does not fit once.
fn window_output(
    axis: usize,
    padded: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Result<usize, QuantError> {
    let span = dilation * (kernel.max(1) - 1) + 1;
    if padded < span {
        return Err(QuantError(format!(
            "kernel extent {span} exceeds the padded input {padded} on spatial axis {axis}"
        )));
    }
    Ok((padded - span) / stride + 1)
}

/// An integer-only 2-D convolution (NCHW), optionally fused with ReLU.
#[derive(Debug, Clone)]
pub struct IntConv {
    core: Core,
    geometry: Conv2dGeometry,
}

impl IntConv {
    /// A layer from quantized weights `[Cout, Cin/group, kh, kw]`, a float bias (quantized to
    /// i32 at S_w·S_x), the input and output quantization parameters and the geometry.
    pub fn new(
        weights: QuantizedWeights,
        bias: Option<&[f32]>,
        input: LinearParams,
        output: LinearParams,
        geometry: Conv2dGeometry,
        relu: bool,
    ) -> Result<Self, QuantError> {
        let shape = weights.codes.shape();
        if shape.len() != 4 {
            return Err(QuantError(format!(
                "conv weights must be [Cout, Cin/group, kh, kw], got {shape:?}"
            )));
        }
        if geometry.group == 0 || !shape[0].is_multiple_of(geometry.group) {
            return Err(QuantError(format!(
                "{} output channels do not split into {} groups",
                shape[0], geometry.group
            )));
        }
        if geometry.strides.contains(&0) || geometry.dilations.contains(&0) {
            return Err(QuantError("strides and dilations must be positive".into()));
        }
        Ok(IntConv {
            core: Core::new(weights, bias, input, output, relu)?,
            geometry,
        })
    }

    /// Quantizes float weights (per tensor or per output channel, on `weight_grid`) and builds
    /// the layer.
    #[allow(clippy::too_many_arguments)]
    pub fn from_float(
        weights: &ArrayD<f32>,
        bias: Option<&[f32]>,
        per_channel: bool,
        weight_grid: IntGrid,
        input: LinearParams,
        output: LinearParams,
        geometry: Conv2dGeometry,
        relu: bool,
    ) -> Result<Self, QuantError> {
        let w = QuantizedWeights::quantize(weights, per_channel, weight_grid)?;
        Self::new(w, bias, input, output, geometry, relu)
    }

    /// The same layer with other output parameters (multipliers recomputed).
    pub fn with_output(mut self, output: LinearParams) -> Self {
        self.core.set_output(output);
        self
    }

    pub fn weights(&self) -> &QuantizedWeights {
        &self.core.weights
    }

    /// The i32 bias codes (scale S_w,c · S_x, zero point 0).
    pub fn bias_codes(&self) -> &[i32] {
        &self.core.bias
    }

    pub fn input_params(&self) -> LinearParams {
        self.core.input
    }

    pub fn output_params(&self) -> LinearParams {
        self.core.output
    }

    pub fn geometry(&self) -> Conv2dGeometry {
        self.geometry
    }

    /// The fixed-point requantization multiplier of each output channel.
    pub fn multipliers(&self) -> &[FixedMultiplier] {
        &self.core.multipliers
    }

    /// The largest |accumulator| any input on the grid can produce (checked to fit i32).
    pub fn accumulator_bound(&self) -> i64 {
        self.core.bound
    }

    fn output_shape(&self, x: &ArrayD<i32>) -> Result<[usize; 4], QuantError> {
        let ws = self.core.weights.codes.shape();
        let xs = x.shape();
        if xs.len() != 4 || xs[1] != ws[1] * self.geometry.group {
            return Err(QuantError(format!(
                "conv input {xs:?} does not fit weights {ws:?} with {} groups",
                self.geometry.group
            )));
        }
        let [oh, ow] = self.geometry.output_hw([xs[2], xs[3]], [ws[2], ws[3]])?;
        Ok([xs[0], ws[0], oh, ow])
    }

    /// The accumulators Σ q_w (q_x − Z_x) + q_b (i32, before requantization), `[N, Cout, OH, OW]`.
    pub fn accumulators(&self, x: &ArrayD<i32>) -> Result<ArrayD<i32>, QuantError> {
        self.compute(x, false)
    }

    /// Runs the layer on input codes `[N, Cin, H, W]`; returns output codes `[N, Cout, OH, OW]`.
    pub fn run(&self, x: &ArrayD<i32>) -> Result<ArrayD<i32>, QuantError> {
        self.compute(x, true)
    }

    fn compute(&self, x: &ArrayD<i32>, requantize: bool) -> Result<ArrayD<i32>, QuantError> {
        self.core.check_input(x)?;
        let [n, cout, oh, ow] = self.output_shape(x)?;
        let (cin, h, w) = (x.shape()[1], x.shape()[2], x.shape()[3]);
        let ws = self.core.weights.codes.shape();
        let (cin_g, kh, kw) = (ws[1], ws[2], ws[3]);
        let cout_g = cout / self.geometry.group;
        let x = x.as_standard_layout();
        let xs = contiguous(&x)?;
        let wcodes = self.core.weights.codes.as_standard_layout();
        let wv = contiguous(&wcodes)?;
        let zx = self.core.input.zero_point;
        let (lo, hi) = self.core.clamp_bounds();
        let g = &self.geometry;
        let mut out = vec![0i32; n * cout * oh * ow];
        let mut chunks = out.chunks_mut(oh * ow);
        for b in 0..n {
            for oc in 0..cout {
                let Some(plane) = chunks.next() else {
                    return Err(QuantError("internal: output planes run short".into()));
                };
                let c0 = (oc / cout_g) * cin_g;
                let wk = &wv[oc * cin_g * kh * kw..(oc + 1) * cin_g * kh * kw];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = self.core.bias[oc];
                        for ic in 0..cin_g {
                            let xplane = &xs[(b * cin + c0 + ic) * h * w..][..h * w];
                            let wplane = &wk[ic * kh * kw..][..kh * kw];
                            for ky in 0..kh {
                                let iy = (oy * g.strides[0] + ky * g.dilations[0]) as isize
                                    - g.pads[0] as isize;
                                let row_ok = iy >= 0 && (iy as usize) < h;
                                for kx in 0..kw {
                                    let ix = (ox * g.strides[1] + kx * g.dilations[1]) as isize
                                        - g.pads[1] as isize;
                                    let q = if row_ok && ix >= 0 && (ix as usize) < w {
                                        xplane[iy as usize * w + ix as usize]
                                    } else {
                                        zx // padding holds the code of real 0
                                    };
                                    acc += i32::from(wplane[ky * kw + kx]) * q;
                                }
                            }
                        }
                        plane[oy * ow + ox] = if requantize {
                            self.core.finish(acc, oc, lo, hi)
                        } else {
                            acc - self.core.zero_point_terms[oc]
                        };
                    }
                }
            }
        }
        output_array(&[n, cout, oh, ow], out)
    }

    /// The float side of fake quantization: the input quantized and dequantized, the float
    /// engine's Conv on dequantized weights and bias, ReLU if fused — before output quantization.
    pub fn fake_quant_float(&self, x: &ArrayD<f32>) -> Result<ArrayD<f32>, QuantError> {
        let xq = dequantize_tensor(&quantize_tensor(x, &self.core.input), &self.core.input);
        let y = run_float_op(
            "Conv",
            self.geometry.attributes(),
            vec![
                xq,
                self.core.weights.dequantize(),
                self.core.dequantized_bias(),
            ],
        )?;
        Ok(if self.core.relu {
            y.mapv(|v| v.max(0.0))
        } else {
            y
        })
    }

    /// The fake-quantization reference for [`IntConv::run`]: [`IntConv::fake_quant_float`]
    /// quantized with the output parameters. The integer path is within 1 LSB of it.
    pub fn fake_quant_reference(&self, x: &ArrayD<f32>) -> Result<ArrayD<i32>, QuantError> {
        Ok(self.core.quantize_output(self.fake_quant_float(x)?))
    }
}

// ---- Gemm / MatMul ----------------------------------------------------------------------------

/// An integer-only fully connected layer: Y[M, N] = X[M, K] · Wᵀ + b with W held as `[N, K]`,
/// optionally fused with ReLU. Covers Gemm (transB, alpha, beta, bias) and 2-D MatMul.
#[derive(Debug, Clone)]
pub struct IntLinear {
    core: Core,
}

impl IntLinear {
    /// A layer from quantized weights `[N, K]` and a float bias of N values.
    pub fn new(
        weights: QuantizedWeights,
        bias: Option<&[f32]>,
        input: LinearParams,
        output: LinearParams,
        relu: bool,
    ) -> Result<Self, QuantError> {
        if weights.codes.ndim() != 2 {
            return Err(QuantError(format!(
                "linear weights must be [N, K], got {:?}",
                weights.codes.shape()
            )));
        }
        Ok(IntLinear {
            core: Core::new(weights, bias, input, output, relu)?,
        })
    }

    /// From a Gemm's B (`[K, N]`, or `[N, K]` with `trans_b`), `alpha` (folded into the weights
    /// before quantization), and C (`[N]`, `[1, N]` or a scalar; scaled by `beta`).
    #[allow(clippy::too_many_arguments)]
    pub fn from_gemm(
        b: &ArrayD<f32>,
        trans_b: bool,
        alpha: f32,
        beta: f32,
        c: Option<&ArrayD<f32>>,
        per_channel: bool,
        weight_grid: IntGrid,
        input: LinearParams,
        output: LinearParams,
        relu: bool,
    ) -> Result<Self, QuantError> {
        if b.ndim() != 2 {
            return Err(QuantError(format!(
                "Gemm B must be 2-D, got {:?}",
                b.shape()
            )));
        }
        let w = if trans_b {
            b.clone()
        } else {
            b.t().as_standard_layout().into_owned()
        };
        let w = w.mapv(|v| v * alpha);
        let n = w.shape()[0];
        let bias: Option<Vec<f32>> = match c {
            None => None,
            Some(c) if c.len() == 1 => {
                Some(vec![c.iter().next().copied().unwrap_or(0.0) * beta; n])
            }
            Some(c) if c.len() == n && c.shape().iter().rev().skip(1).all(|&d| d == 1) => {
                Some(c.iter().map(|v| v * beta).collect())
            }
            Some(c) => {
                return Err(QuantError(format!(
                    "Gemm C of shape {:?} is not a per-output bias of {n} values",
                    c.shape()
                )));
            }
        };
        let w = QuantizedWeights::quantize(&w, per_channel, weight_grid)?;
        Self::new(w, bias.as_deref(), input, output, relu)
    }

    /// From a 2-D MatMul's B `[K, N]` (no bias).
    pub fn from_matmul(
        b: &ArrayD<f32>,
        per_channel: bool,
        weight_grid: IntGrid,
        input: LinearParams,
        output: LinearParams,
        relu: bool,
    ) -> Result<Self, QuantError> {
        Self::from_gemm(
            b,
            false,
            1.0,
            1.0,
            None,
            per_channel,
            weight_grid,
            input,
            output,
            relu,
        )
    }

    /// The same layer with other output parameters (multipliers recomputed).
    pub fn with_output(mut self, output: LinearParams) -> Self {
        self.core.set_output(output);
        self
    }

    pub fn weights(&self) -> &QuantizedWeights {
        &self.core.weights
    }

    pub fn bias_codes(&self) -> &[i32] {
        &self.core.bias
    }

    pub fn input_params(&self) -> LinearParams {
        self.core.input
    }

    pub fn output_params(&self) -> LinearParams {
        self.core.output
    }

    pub fn multipliers(&self) -> &[FixedMultiplier] {
        &self.core.multipliers
    }

    /// The largest |accumulator| any input on the grid can produce (checked to fit i32).
    pub fn accumulator_bound(&self) -> i64 {
        self.core.bound
    }

    /// The accumulators Σ q_w (q_x − Z_x) + q_b, `[M, N]`.
    pub fn accumulators(&self, x: &ArrayD<i32>) -> Result<ArrayD<i32>, QuantError> {
        self.compute(x, false)
    }

    /// Runs the layer on input codes `[M, K]`; returns output codes `[M, N]`.
    pub fn run(&self, x: &ArrayD<i32>) -> Result<ArrayD<i32>, QuantError> {
        self.compute(x, true)
    }

    fn compute(&self, x: &ArrayD<i32>, requantize: bool) -> Result<ArrayD<i32>, QuantError> {
        self.core.check_input(x)?;
        let ws = self.core.weights.codes.shape();
        let (n, k) = (ws[0], ws[1]);
        if x.ndim() != 2 || x.shape()[1] != k {
            return Err(QuantError(format!(
                "linear input {:?} does not fit weights [{n}, {k}]",
                x.shape()
            )));
        }
        let m = x.shape()[0];
        let x = x.as_standard_layout();
        let xs = contiguous(&x)?;
        let wcodes = self.core.weights.codes.as_standard_layout();
        let wv = contiguous(&wcodes)?;
        let (lo, hi) = self.core.clamp_bounds();
        let mut out = Vec::with_capacity(m * n);
        for row in xs.chunks(k.max(1)).take(m) {
            for (j, wrow) in wv.chunks(k.max(1)).take(n).enumerate() {
                let mut acc = self.core.bias[j];
                for (&q, &wq) in row.iter().zip(wrow) {
                    acc += i32::from(wq) * q;
                }
                out.push(if requantize {
                    self.core.finish(acc, j, lo, hi)
                } else {
                    acc - self.core.zero_point_terms[j]
                });
            }
        }
        output_array(&[m, n], out)
    }

    /// The float side of fake quantization (the float engine's Gemm on dequantized values).
    pub fn fake_quant_float(&self, x: &ArrayD<f32>) -> Result<ArrayD<f32>, QuantError> {
        let xq = dequantize_tensor(&quantize_tensor(x, &self.core.input), &self.core.input);
        let y = run_float_op(
            "Gemm",
            BTreeMap::from([("transB".to_string(), Attribute::Int(1))]),
            vec![
                xq,
                self.core.weights.dequantize(),
                self.core.dequantized_bias(),
            ],
        )?;
        Ok(if self.core.relu {
            y.mapv(|v| v.max(0.0))
        } else {
            y
        })
    }

    /// The fake-quantization reference for [`IntLinear::run`].
    pub fn fake_quant_reference(&self, x: &ArrayD<f32>) -> Result<ArrayD<i32>, QuantError> {
        Ok(self.core.quantize_output(self.fake_quant_float(x)?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;

    use ndarray::{Array, Slice};

    use super::*;
    use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
    use crate::ir::ParamRole;

    /// xorshift64*: deterministic test data without depending on rand's API.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [lo, hi).
        fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn array(&mut self, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
            Array::from_shape_simple_fn(IxDyn(shape), || self.uniform(lo, hi))
        }
    }

    fn range_of(a: &ArrayD<f32>) -> (f32, f32) {
        a.iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }

    /// Largest |a − b| and how many elements differ at all.
    fn compare(a: &ArrayD<i32>, b: &ArrayD<i32>) -> (i32, usize) {
        assert_eq!(a.shape(), b.shape());
        a.iter().zip(b).fold((0, 0), |(worst, n), (&x, &y)| {
            (worst.max((x - y).abs()), n + usize::from(x != y))
        })
    }

    #[test]
    fn quantize_multiplier_is_exact_for_powers_of_two() {
        for k in -60..=20 {
            let m = 2f64.powi(k);
            let (m0, n) = quantize_multiplier(m);
            assert_eq!((m0, n), (1 << 30, -(k + 1)), "2^{k}");
            assert_eq!(FixedMultiplier { m0, shift: n }.to_real(), m);
        }
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
        assert_eq!(quantize_multiplier(1e-30), (0, 0));
    }

    #[test]
    fn quantize_multiplier_relative_error_is_below_2_pow_minus_30() {
        let mut rng = Rng(7);
        for _ in 0..20_000 {
            let m = 10f64.powf(f64::from(rng.uniform(-8.0, 3.0)));
            let (m0, n) = quantize_multiplier(m);
            assert!((1 << 30..=i32::MAX).contains(&m0), "m0 {m0} for {m}");
            let back = FixedMultiplier { m0, shift: n }.to_real();
            assert!(((back - m) / m).abs() < 2f64.powi(-30), "{m} -> {back}");
        }
        // Values just under 1 round up to 2^31 and renormalize.
        let (m0, n) = quantize_multiplier(1.0 - 1e-12);
        assert_eq!((m0, n), (1 << 30, -1));
    }

    #[test]
    fn fixed_point_primitives_follow_gemmlowp() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // 2^30 is 0.5 in Q31: halves; ties go toward +∞ (−1.5 → −1, −3.5 → −3).
        let half = 1 << 30;
        assert_eq!(
            [3, -3, 5, -5, 4, -7].map(|x| saturating_rounding_doubling_high_mul(x, half)),
            [2, -1, 3, -2, 2, -3]
        );
        assert_eq!(
            [
                (5, 1),
                (-5, 1),
                (7, 2),
                (-6, 2),
                (6, 2),
                (-5, 2),
                (0, 3),
                (1000, 0)
            ]
            .map(|(x, e)| rounding_divide_by_pot(x, e)),
            [3, -3, 2, -2, 2, -1, 0, 1000]
        );
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
    }

    #[test]
    fn fixed_multiplier_rounds_within_one_of_exact() {
        let mut rng = Rng(11);
        let (mut exact, mut counted) = (0, 0);
        let trials = 50_000;
        for _ in 0..trials {
            let m = 10f64.powf(f64::from(rng.uniform(-6.0, 1.5)));
            let acc = (rng.next() as i32) >> rng.below(24);
            let fixed = FixedMultiplier::from_real(m);
            let got = fixed.apply(acc);
            let want = (f64::from(acc) * m).round();
            // M ≥ 1 pre-shifts acc left, which must itself fit in i32.
            let pre_shifted = f64::from(acc) * 2f64.powi((-fixed.shift).max(0));
            if pre_shifted.abs() < 2e9 {
                assert!(
                    (f64::from(got) - want).abs() <= 1.0,
                    "{acc}·{m}: {got} vs {want}"
                );
                // Large results also carry M0's relative error (2^−31) times their size, and
                // a small shift n lets the first rounding move the second one (double
                // rounding is off when acc·M is within 2^−(n+1) of a tie).
                if want.abs() < 65_536.0 && fixed.shift >= 8 {
                    exact += usize::from(f64::from(got) == want);
                    counted += 1;
                }
            }
        }
        assert!(counted > trials / 4);
        assert!(
            exact * 100 > counted * 99,
            "only {exact} of {counted} exact"
        );
        // M ≥ 1 shifts left first, saturating at i32::MAX, so the result is capped at
        // M0 · (2^31 − 1) / 2^31 (here M0 = 0.5).
        let big = FixedMultiplier::from_real(4.0);
        assert_eq!(big.apply(1000), 4000);
        assert_eq!(big.apply(-1000), -4000);
        assert_eq!(big.apply(i32::MAX / 2), 1 << 30);
    }

    /// Builds a conv with output parameters taken from the float output's range, checks the
    /// integer path against fake quantization within 1 LSB everywhere; returns the count of
    /// differing elements and the element count.
    #[allow(clippy::too_many_arguments)]
    fn check_conv(
        rng: &mut Rng,
        x_shape: [usize; 4],
        cout: usize,
        kernel: [usize; 2],
        geometry: Conv2dGeometry,
        per_channel: bool,
        relu: bool,
        signed_input: bool,
    ) -> (usize, usize) {
        let cin_g = x_shape[1] / geometry.group;
        let mut w = rng.array(&[cout, cin_g, kernel[0], kernel[1]], -0.5, 0.5);
        // Very different channel ranges, where per-channel scales matter.
        for (c, mut ch) in w.axis_iter_mut(Axis(0)).enumerate() {
            let f = 1.0 + 4.0 * (c % 3) as f32;
            ch.mapv_inplace(|v| v * f);
        }
        let bias: Vec<f32> = (0..cout).map(|_| rng.uniform(-0.3, 0.3)).collect();
        let (x, in_grid) = if signed_input {
            (rng.array(&x_shape, -1.5, 1.0), IntGrid::INT8)
        } else {
            (rng.array(&x_shape, -0.2, 2.0), IntGrid::UINT8)
        };
        let (lo, hi) = range_of(&x);
        let input = LinearParams::from_range(lo, hi, in_grid, false).unwrap();
        let placeholder = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
        let layer = IntConv::from_float(
            &w,
            Some(&bias),
            per_channel,
            IntGrid::INT8,
            input,
            placeholder,
            geometry,
            relu,
        )
        .unwrap();
        let (ylo, yhi) = range_of(&layer.fake_quant_float(&x).unwrap());
        let out_grid = if relu { IntGrid::UINT8 } else { IntGrid::INT8 };
        let layer = layer.with_output(LinearParams::from_range(ylo, yhi, out_grid, false).unwrap());
        let got = layer.run(&quantize_tensor(&x, &input)).unwrap();
        let want = layer.fake_quant_reference(&x).unwrap();
        let (worst, differ) = compare(&got, &want);
        assert!(
            worst <= 1,
            "{x_shape:?} → {cout}, kernel {kernel:?}, {geometry:?}, per-channel {per_channel}, \
             relu {relu}: worst difference {worst} LSB"
        );
        if relu {
            let z = layer.output_params().zero_point;
            assert!(got.iter().all(|&q| q >= z));
        }
        (differ, got.len())
    }

    #[test]
    fn random_convs_match_fake_quantization_within_one_lsb() {
        let mut rng = Rng(0x5eed);
        let geometry = |s: usize, p: [usize; 4], d: usize, g: usize| Conv2dGeometry {
            strides: [s, s],
            dilations: [d, d],
            pads: p,
            group: g,
        };
        // (input, Cout, kernel, geometry)
        let cases = [
            ([2, 3, 9, 9], 8, [3, 3], geometry(1, [1, 1, 1, 1], 1, 1)),
            ([1, 16, 8, 8], 16, [3, 3], geometry(1, [1, 1, 1, 1], 1, 16)), // depthwise
            ([2, 8, 11, 7], 12, [3, 3], geometry(2, [1, 0, 2, 1], 1, 4)),  // grouped, strided
            ([1, 4, 10, 10], 6, [3, 2], geometry(1, [2, 1, 2, 1], 2, 2)),  // dilated
            ([3, 32, 5, 5], 10, [1, 1], geometry(1, [0; 4], 1, 1)),        // pointwise
            ([1, 5, 12, 12], 7, [5, 5], geometry(3, [2, 2, 2, 2], 1, 1)),
        ];
        let (mut differ, mut total) = (0, 0);
        for (i, &(x_shape, cout, kernel, geom)) in cases.iter().enumerate() {
            for per_channel in [false, true] {
                for relu in [false, true] {
                    let signed = (i + usize::from(relu)) % 2 == 0;
                    let (d, n) = check_conv(
                        &mut rng,
                        x_shape,
                        cout,
                        kernel,
                        geom,
                        per_channel,
                        relu,
                        signed,
                    );
                    differ += d;
                    total += n;
                }
            }
        }
        // Off-by-one only at rounding ties: rare.
        assert!(differ * 50 < total, "{differ} of {total} elements differ");
    }

    fn check_linear(rng: &mut Rng, m: usize, k: usize, n: usize, per_channel: bool, relu: bool) {
        let b = rng.array(&[k, n], -0.4, 0.4);
        let c = rng.array(&[n], -0.5, 0.5);
        let x = rng.array(&[m, k], -1.0, 3.0);
        let (lo, hi) = range_of(&x);
        let input = LinearParams::from_range(lo, hi, IntGrid::UINT8, false).unwrap();
        let placeholder = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
        let layers = [
            IntLinear::from_gemm(
                &b,
                false,
                1.0,
                1.0,
                Some(&c),
                per_channel,
                IntGrid::INT8,
                input,
                placeholder,
                relu,
            ),
            IntLinear::from_gemm(
                &b.t().as_standard_layout().into_owned(),
                true,
                1.0,
                1.0,
                Some(&c),
                per_channel,
                IntGrid::INT8,
                input,
                placeholder,
                relu,
            ),
            IntLinear::from_matmul(&b, per_channel, IntGrid::INT8, input, placeholder, relu),
        ];
        for layer in layers {
            let layer = layer.unwrap();
            let (ylo, yhi) = range_of(&layer.fake_quant_float(&x).unwrap());
            let layer = layer
                .with_output(LinearParams::from_range(ylo, yhi, IntGrid::INT8, false).unwrap());
            let got = layer.run(&quantize_tensor(&x, &input)).unwrap();
            let want = layer.fake_quant_reference(&x).unwrap();
            assert_eq!(got.shape(), &[m, n]);
            let (worst, _) = compare(&got, &want);
            assert!(worst <= 1, "[{m},{k}]x[{k},{n}]: worst {worst} LSB");
        }
    }

    #[test]
    fn random_gemms_and_matmuls_match_fake_quantization_within_one_lsb() {
        let mut rng = Rng(42);
        for (m, k, n) in [(1, 64, 10), (7, 33, 5), (16, 128, 64), (3, 1, 4)] {
            for per_channel in [false, true] {
                for relu in [false, true] {
                    check_linear(&mut rng, m, k, n, per_channel, relu);
                }
            }
        }
    }

    #[test]
    fn gemm_alpha_beta_and_scalar_bias_are_folded() {
        let mut rng = Rng(3);
        let b = rng.array(&[6, 4], -1.0, 1.0);
        let x = rng.array(&[5, 6], 0.0, 1.0);
        let input = LinearParams::from_range(0.0, 1.0, IntGrid::UINT8, false).unwrap();
        let output = LinearParams::from_range(-4.0, 4.0, IntGrid::INT8, false).unwrap();
        let c = ArrayD::from_elem(IxDyn(&[1]), 0.25f32);
        let layer = IntLinear::from_gemm(
            &b,
            false,
            0.5,
            2.0,
            Some(&c),
            true,
            IntGrid::INT8,
            input,
            output,
            false,
        )
        .unwrap();
        let want_float = x
            .clone()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap()
            .dot(&b.clone().into_dimensionality::<ndarray::Ix2>().unwrap())
            * 0.5
            + 0.5;
        let got = dequantize_tensor(&layer.run(&quantize_tensor(&x, &input)).unwrap(), &output);
        for (g, w) in got.iter().zip(want_float.iter()) {
            assert!((g - w).abs() < 0.08, "{g} vs {w}");
        }
        let bad = ArrayD::zeros(IxDyn(&[5, 4]));
        assert!(
            IntLinear::from_gemm(
                &b,
                false,
                1.0,
                1.0,
                Some(&bad),
                true,
                IntGrid::INT8,
                input,
                output,
                false
            )
            .is_err()
        );
    }

    #[test]
    fn accumulation_overflowing_i16_is_exact_in_i32() {
        // 64 taps of 255 · 127: 2,072,640, far beyond i16 (32,767), well inside i32.
        let input = LinearParams::from_scale_zero(1.0 / 255.0, 0, IntGrid::UINT8).unwrap();
        let output = LinearParams::from_scale_zero(0.5, 0, IntGrid::UINT8).unwrap();
        let weights = ArrayD::from_elem(IxDyn(&[1, 64]), 1.0f32);
        let layer = IntLinear::from_matmul(
            &weights.t().to_owned(),
            false,
            IntGrid::INT8,
            input,
            output,
            false,
        )
        .unwrap();
        assert_eq!(layer.weights().codes.iter().next(), Some(&127));
        let x = ArrayD::from_elem(IxDyn(&[1, 64]), 255i32);
        let acc = layer.accumulators(&x).unwrap()[[0, 0]];
        assert_eq!(acc, 64 * 127 * 255);
        assert!(layer.accumulator_bound() > i64::from(i16::MAX));
        // The same sum in a 16-bit accumulator wraps to garbage: 32 bits are required.
        let acc16 = (0..64).fold(0i16, |a, _| {
            a.wrapping_add((127i16).wrapping_mul(255u8 as i16))
        });
        assert_ne!(i32::from(acc16), acc);
        // And the output is right: 64 inputs of 1.0 times weights of 1.0 = 64.0 → 128 at S_y 0.5,
        // clamped to 255; with a larger S_y it is exact.
        let wide =
            LinearParams::from_scale_zero(0.5, 0, IntGrid::new(8, false, false).unwrap()).unwrap();
        assert_eq!(
            layer.clone().with_output(wide).run(&x).unwrap()[[0, 0]],
            128
        );

        // A 3×3×64 conv with u8 activations: accumulators need 25 bits.
        let w = ArrayD::from_elem(IxDyn(&[2, 64, 3, 3]), -1.0f32);
        let conv = IntConv::from_float(
            &w,
            None,
            true,
            IntGrid::INT8,
            input,
            output,
            Conv2dGeometry::default(),
            false,
        )
        .unwrap();
        let bound = conv.accumulator_bound();
        assert!(bound > i64::from(i16::MAX) && bound <= i64::from(i32::MAX));
        let x = ArrayD::from_elem(IxDyn(&[1, 64, 3, 3]), 255i32);
        assert_eq!(
            conv.accumulators(&x).unwrap()[[0, 1, 0, 0]],
            -(64 * 9 * 127 * 255)
        );
    }

    #[test]
    fn layers_that_could_overflow_i32_are_refused() {
        let input = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
        let output = input;
        // 70,000 · 127 · 255 ≈ 2.27e9 > 2^31.
        let b = ArrayD::from_elem(IxDyn(&[70_000, 1]), 1.0f32);
        let err =
            IntLinear::from_matmul(&b, false, IntGrid::INT8, input, output, false).unwrap_err();
        assert!(err.0.contains("overflows i32"), "{err}");
        // Codes outside the input grid are refused too.
        let ok = IntLinear::from_matmul(
            &ArrayD::from_elem(IxDyn(&[4, 1]), 1.0f32),
            false,
            IntGrid::INT8,
            input,
            output,
            false,
        )
        .unwrap();
        assert!(ok.run(&ArrayD::from_elem(IxDyn(&[1, 4]), 256)).is_err());
        assert!(ok.run(&ArrayD::from_elem(IxDyn(&[1, 3]), 1)).is_err());
    }

    #[test]
    fn geometry_reads_onnx_attributes() {
        let mut node = Node {
            name: "c".into(),
            op_type: "Conv".into(),
            domain: String::new(),
            inputs: vec!["x".into(), "w".into()],
            outputs: vec!["y".into()],
            attributes: BTreeMap::new(),
        };
        node.attributes
            .insert("strides".into(), Attribute::Ints(vec![2, 2]));
        node.attributes
            .insert("auto_pad".into(), Attribute::String("SAME_UPPER".into()));
        node.attributes.insert("group".into(), Attribute::Int(4));
        let g = Conv2dGeometry::from_node(&node, [7, 8], [3, 3]).unwrap();
        assert_eq!(g.pads, [1, 0, 1, 1]);
        assert_eq!(g.group, 4);
        assert_eq!(g.output_hw([7, 8], [3, 3]).unwrap(), [4, 4]);
        node.attributes.remove("auto_pad");
        node.attributes
            .insert("pads".into(), Attribute::Ints(vec![0, 1, 2, 3]));
        node.attributes
            .insert("dilations".into(), Attribute::Ints(vec![2, 1]));
        let g = Conv2dGeometry::from_node(&node, [7, 8], [3, 3]).unwrap();
        assert_eq!((g.pads, g.dilations), ([0, 1, 2, 3], [2, 1]));
        // (7 + 2 − 5) / 2 + 1 = 3 and (8 + 4 − 3) / 2 + 1 = 5.
        assert_eq!(g.output_hw([7, 8], [3, 3]).unwrap(), [3, 5]);
    }

    struct Capture {
        wanted: HashSet<String>,
        got: HashMap<String, ArrayD<f32>>,
    }

    impl TensorHook for Capture {
        fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> crate::Result<()> {
            if self.wanted.contains(site.name) {
                self.got.insert(site.name.to_string(), value.to_f32());
            }
            Ok(())
        }
    }

    #[test]
    fn sample_cnn_convs_match_fake_quantization_within_one_lsb() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_models");
        let model = crate::load::load_model(&root.join("digits_cnn.onnx")).unwrap();
        let graph = &model.graph;
        let calib = crate::load::read_arrays(&root.join("data/digits_calib_x.npy")).unwrap();
        let images = calib[0]
            .data
            .to_f32()
            .slice_axis(Axis(0), Slice::from(0..32))
            .to_owned();
        let convs: Vec<&Node> = graph.nodes.iter().filter(|n| n.op_type == "Conv").collect();
        assert!(convs.len() >= 2, "the sample CNN has {} convs", convs.len());
        let mut capture = Capture {
            wanted: convs.iter().map(|n| n.inputs[0].clone()).collect(),
            got: HashMap::new(),
        };
        let plan = Plan::new(graph).unwrap();
        let feeds = HashMap::from([(graph.inputs[0].name.clone(), TensorData::F32(images))]);
        plan.run(feeds, Some(&mut capture), RunOptions::default())
            .unwrap();

        for node in convs {
            let x = &capture.got[&node.inputs[0]];
            let w_tensor = &graph.initializers[node.input(1).unwrap()];
            assert_eq!(w_tensor.role, ParamRole::Weight);
            let w = w_tensor.data.as_f32().unwrap();
            let bias: Option<Vec<f32>> = node
                .input(2)
                .and_then(|b| graph.initializers.get(b))
                .map(|b| b.data.to_f32().iter().copied().collect());
            let ws = w.shape();
            let geometry =
                Conv2dGeometry::from_node(node, [x.shape()[2], x.shape()[3]], [ws[2], ws[3]])
                    .unwrap();
            let (lo, hi) = range_of(x);
            let input = LinearParams::from_range(lo, hi, IntGrid::UINT8, false).unwrap();
            let placeholder = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
            let layer = IntConv::from_float(
                w,
                bias.as_deref(),
                true,
                IntGrid::INT8,
                input,
                placeholder,
                geometry,
                false,
            )
            .unwrap();
            let (ylo, yhi) = range_of(&layer.fake_quant_float(x).unwrap());
            let layer = layer
                .with_output(LinearParams::from_range(ylo, yhi, IntGrid::INT8, false).unwrap());
            let got = layer.run(&quantize_tensor(x, &input)).unwrap();
            let want = layer.fake_quant_reference(x).unwrap();
            let (worst, differ) = compare(&got, &want);
            assert!(
                worst <= 1,
                "{}: worst difference {worst} LSB ({differ} of {} differ)",
                node.name,
                got.len()
            );
            assert!(differ * 50 < got.len(), "{}: {differ} differ", node.name);
        }
    }
}
