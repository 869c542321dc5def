//! One output element of an integer layer spelled out: an input value's quantization
//! q = round(x/S) + Z, the element's i32 accumulator and its parts, the fixed-point
//! requantization (M = S_w·S_x/S_y = M0·2^−31·2^−n, the doubling high multiply, the rounding
//! shift), the output code, and the simulation's code for the same element. Every step is the
//! arithmetic of [`super::fixed_point`], so the traced code equals the layer's output.

use serde::Serialize;

use super::fixed_point::{rounding_divide_by_pot, saturating_rounding_doubling_high_mul};
use super::{FixedMultiplier, QuantizedWeights};
use crate::quant::grid::LinearParams;

/// One input value quantized: q = clamp(round(x/S) + Z).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InputTrace {
    pub x: f32,
    pub scale: f32,
    pub zero_point: i32,
    /// x/S before rounding (in f32, as the quantizer computes it).
    pub ratio: f64,
    pub code: i32,
    pub qmin: i32,
    pub qmax: i32,
}

impl InputTrace {
    /// The quantization of `x` with `params`.
    pub fn new(x: f32, params: &LinearParams) -> Self {
        InputTrace {
            x,
            scale: params.scale,
            zero_point: params.zero_point,
            ratio: f64::from(x / params.scale),
            code: params.quantize(x),
            qmin: params.grid.qmin(),
            qmax: params.grid.qmax(),
        }
    }
}

/// One output element's integer arithmetic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElementTrace {
    pub layer: String,
    /// The element's index in the output tensor (of the first chunk it was seen in).
    pub index: Vec<usize>,
    pub channel: usize,
    /// The largest |x| of the element's sample in the layer's input, quantized.
    pub input: InputTrace,
    /// q_b: the bias at scale S_w·S_x.
    pub bias_code: i32,
    /// Z_x · Σ_k q_w,k of the element's channel (subtracted).
    pub zero_point_term: i32,
    /// acc = q_b + Σ_k q_w,k q_x,k − Z_x Σ_k q_w,k.
    pub accumulator: i32,
    pub weight_scale: f32,
    pub input_scale: f32,
    pub output_scale: f32,
    /// M = S_w·S_x/S_y.
    pub multiplier: f64,
    pub m0: i32,
    /// The right shift n (negative: a left shift by −n first).
    pub shift: i32,
    /// The accumulator after the left shift (equal to it when n ≥ 0).
    pub shifted: i32,
    /// round(shifted · M0 / 2^31), the doubling high multiply.
    pub high: i32,
    /// high / 2^n rounded (equal to `high` when n ≤ 0).
    pub scaled: i32,
    pub output_zero_point: i32,
    /// The clamp bounds (the lower one is Z_y with a fused ReLU).
    pub clamp: (i32, i32),
    /// clamp(scaled + Z_y).
    pub output_code: i32,
    /// The simulation's code of the same element (its output quantized).
    pub simulated_code: i32,
    /// round(M · acc) in real arithmetic, for comparison with the fixed-point result.
    pub real_product: f64,
}

/// Everything of a layer the trace reads.
pub struct TraceLayer<'a> {
    pub name: &'a str,
    pub weights: &'a QuantizedWeights,
    pub bias_codes: &'a [i32],
    pub multipliers: &'a [FixedMultiplier],
    pub input: LinearParams,
    pub output: LinearParams,
    pub clamp: (i32, i32),
}

/// Traces the element at flat position `flat` of an output of `shape` (channels on axis 1),
/// whose accumulator (q_b + Σ q_w q_x − Z_x Σ q_w) is `accumulator`; `input` is the traced
/// input value and `simulated_code` the simulation's code of the element.
pub fn trace_element(
    layer: &TraceLayer<'_>,
    shape: &[usize],
    flat: usize,
    accumulator: i32,
    input: InputTrace,
    simulated_code: i32,
) -> ElementTrace {
    let mut index = vec![0; shape.len()];
    let mut rest = flat;
    for (i, &d) in shape.iter().enumerate().rev() {
        index[i] = rest % d.max(1);
        rest /= d.max(1);
    }
    let channel = index.get(1).copied().unwrap_or(0);
    let m = layer.multipliers[channel];
    let zx = i64::from(layer.input.zero_point);
    let weight_sum: i64 = layer
        .weights
        .codes
        .index_axis(ndarray::Axis(0), channel)
        .iter()
        .map(|&q| i64::from(q))
        .sum();
    let shifted = if m.shift < 0 {
        let left = (-m.shift).min(32);
        (i64::from(accumulator) << left).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    } else {
        accumulator
    };
    let high = saturating_rounding_doubling_high_mul(shifted, m.m0);
    let scaled = if m.shift > 0 {
        rounding_divide_by_pot(high, m.shift)
    } else {
        high
    };
    let output_code = scaled
        .saturating_add(layer.output.zero_point)
        .clamp(layer.clamp.0, layer.clamp.1);
    let weight_scale = layer.weights.scale_of(channel);
    let multiplier =
        f64::from(weight_scale) * f64::from(layer.input.scale) / f64::from(layer.output.scale);
    ElementTrace {
        layer: layer.name.to_string(),
        index,
        channel,
        input,
        bias_code: layer.bias_codes.get(channel).copied().unwrap_or(0),
        zero_point_term: (zx * weight_sum) as i32,
        accumulator,
        weight_scale,
        input_scale: layer.input.scale,
        output_scale: layer.output.scale,
        multiplier,
        m0: m.m0,
        shift: m.shift,
        shifted,
        high,
        scaled,
        output_zero_point: layer.output.zero_point,
        clamp: layer.clamp,
        output_code,
        simulated_code,
        real_product: multiplier * f64::from(accumulator),
    }
}

impl ElementTrace {
    /// Σ_k q_w,k q_x,k: the accumulator without the bias and the zero-point term.
    pub fn products(&self) -> i64 {
        i64::from(self.accumulator) - i64::from(self.bias_code) + i64::from(self.zero_point_term)
    }

    /// The steps as lines of text with the numbers.
    pub fn lines(&self) -> Vec<String> {
        let i = &self.input;
        let mut lines = vec![
            format!(
                "input: q = round(x/S) + Z = round({:.5} / {:.6}) + {} = round({:.3}) + {} → {} (grid [{}, {}])",
                i.x, i.scale, i.zero_point, i.ratio, i.zero_point, i.code, i.qmin, i.qmax
            ),
            format!(
                "output element {:?} (channel {}): acc = q_b + Σ q_w·q_x − Z_x·Σ q_w = {} + {} − {} = {} (i32)",
                self.index,
                self.channel,
                self.bias_code,
                self.products(),
                self.zero_point_term,
                self.accumulator
            ),
            format!(
                "M = S_w·S_x/S_y = {:.6e}·{:.6e}/{:.6e} = {:.8e} = M0·2^−31·2^−n with M0 = {}, n = {}",
                self.weight_scale,
                self.input_scale,
                self.output_scale,
                self.multiplier,
                self.m0,
                self.shift
            ),
        ];
        if self.shift < 0 {
            lines.push(format!(
                "n < 0: acc·2^{} = {} (saturating)",
                -self.shift, self.shifted
            ));
        }
        lines.push(format!(
            "round(acc·M0/2^31) = {}; rounded ÷ 2^{} = {} (M·acc = {:.3} in real arithmetic)",
            self.high,
            self.shift.max(0),
            self.scaled,
            self.real_product
        ));
        lines.push(format!(
            "q_y = clamp({} + Z_y {}, {}, {}) = {}; the simulation gives {}{}",
            self.scaled,
            self.output_zero_point,
            self.clamp.0,
            self.clamp.1,
            self.output_code,
            self.simulated_code,
            match (i64::from(self.output_code) - i64::from(self.simulated_code)).abs() {
                0 => " (equal)".to_string(),
                d => format!(" ({d} LSB apart: the two roundings of the fixed-point path)"),
            }
        ));
        lines
    }
}
