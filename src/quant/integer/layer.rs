//! What the integer Conv and Gemm share: the quantized weights and bias, the grids, the
//! per-channel fixed-point multipliers and zero-point corrections, the float reference.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis, IxDyn};

use super::codes::{QuantizedWeights, dequantize_tensor, quantize_bias, quantize_tensor};
use super::fixed_point::FixedMultiplier;
use crate::engine::ops::{OpCtx, kernel_for};
use crate::ir::{Attribute, Node, TensorData};
use crate::quant::grid::{LinearParams, QuantError};

/// A layer's input and output quantization parameters and whether a ReLU is fused into the
/// output clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerGrids {
    pub input: LinearParams,
    pub output: LinearParams,
    pub relu: bool,
}

/// What Conv and Gemm share: quantized weights and bias, the grids, the per-channel fixed-point
/// multipliers and zero-point corrections.
#[derive(Debug, Clone)]
pub(super) struct Core {
    pub weights: QuantizedWeights,
    pub bias: Vec<i32>,
    pub input: LinearParams,
    pub output: LinearParams,
    pub relu: bool,
    pub multipliers: Vec<FixedMultiplier>,
    /// Z_x · Σ_k q_w,k per output channel.
    pub zero_point_terms: Vec<i32>,
    /// Worst-case |accumulator| over all inputs on the input grid (any intermediate sum).
    pub bound: i64,
}

impl Core {
    pub fn new(
        weights: QuantizedWeights,
        bias: Option<&[f32]>,
        grids: LayerGrids,
    ) -> Result<Self, QuantError> {
        let LayerGrids {
            input,
            output,
            relu,
        } = grids;
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

    pub fn set_output(&mut self, output: LinearParams) {
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
    pub fn clamp_bounds(&self) -> (i32, i32) {
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
    pub fn finish(&self, raw: i32, c: usize, lo: i32, hi: i32) -> i32 {
        let acc = raw - self.zero_point_terms[c];
        let y = self.multipliers[c].apply(acc);
        y.saturating_add(self.output.zero_point).clamp(lo, hi)
    }

    pub fn check_input(&self, x: &ArrayD<i32>) -> Result<(), QuantError> {
        let (lo, hi) = (self.input.grid.qmin(), self.input.grid.qmax());
        match x.iter().find(|&&q| q < lo || q > hi) {
            Some(q) => Err(QuantError(format!(
                "input code {q} is outside the input grid [{lo}, {hi}]"
            ))),
            None => Ok(()),
        }
    }

    /// Quantizes a float output with the output parameters.
    pub fn quantize_output(&self, y: ArrayD<f32>) -> ArrayD<i32> {
        quantize_tensor(&y, &self.output)
    }

    pub fn dequantized_bias(&self) -> ArrayD<f32> {
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

    /// The float side of fake quantization: the input quantized and dequantized, the float
    /// engine's `op_type` (with `attributes`) on dequantized weights `weights` and bias, ReLU if
    /// fused — before output quantization.
    pub fn fake_quant_float(
        &self,
        x: &ArrayD<f32>,
        op_type: &str,
        attributes: BTreeMap<String, Attribute>,
    ) -> Result<ArrayD<f32>, QuantError> {
        let xq = dequantize_tensor(&quantize_tensor(x, &self.input), &self.input);
        let y = run_float_op(
            op_type,
            attributes,
            vec![xq, self.weights.dequantize(), self.dequantized_bias()],
        )?;
        Ok(if self.relu { y.mapv(|v| v.max(0.0)) } else { y })
    }
}

/// Runs the float engine's kernel for a synthetic node of `op_type` with `attributes`.
pub(super) fn run_float_op(
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

/// The elements of an array in standard layout (an internal error otherwise).
pub(super) fn contiguous<'a, T, D: ndarray::Dimension>(
    a: &'a ndarray::CowArray<'_, T, D>,
) -> Result<&'a [T], QuantError> {
    a.as_slice()
        .ok_or_else(|| QuantError("internal: standard layout is not contiguous".into()))
}

/// An output array of `shape` from its elements (an internal error if they do not fit).
pub(super) fn output_array(shape: &[usize], out: Vec<i32>) -> Result<ArrayD<i32>, QuantError> {
    ArrayD::from_shape_vec(IxDyn(shape), out)
        .map_err(|e| QuantError(format!("internal: output shape {shape:?}: {e}")))
}

/// The accessors and entry points IntConv and IntLinear share through their `core: Core` and
/// their own `compute(x, requantize)` and `fake_quant_float(x)`.
macro_rules! layer_accessors {
    ($layer:ident) => {
        impl $layer {
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

            /// The fixed-point requantization multiplier of each output channel.
            pub fn multipliers(&self) -> &[FixedMultiplier] {
                &self.core.multipliers
            }

            /// Lower and upper clamp bounds of the output codes (Z_y below with a fused ReLU).
            pub fn clamp_bounds(&self) -> (i32, i32) {
                self.core.clamp_bounds()
            }

            /// Everything of the layer an element trace reads, under the name `name`.
            pub fn trace_layer<'a>(
                &'a self,
                name: &'a str,
            ) -> $crate::quant::integer::explain::TraceLayer<'a> {
                $crate::quant::integer::explain::TraceLayer {
                    name,
                    weights: &self.core.weights,
                    bias_codes: &self.core.bias,
                    multipliers: &self.core.multipliers,
                    input: self.core.input,
                    output: self.core.output,
                    clamp: self.core.clamp_bounds(),
                }
            }

            /// The largest |accumulator| any input on the grid can produce (checked to fit i32).
            pub fn accumulator_bound(&self) -> i64 {
                self.core.bound
            }

            /// The accumulators Σ q_w (q_x − Z_x) + q_b (i32, before requantization).
            pub fn accumulators(&self, x: &ArrayD<i32>) -> Result<ArrayD<i32>, QuantError> {
                self.compute(x, false)
            }

            /// Runs the layer on input codes; returns output codes.
            pub fn run(&self, x: &ArrayD<i32>) -> Result<ArrayD<i32>, QuantError> {
                self.compute(x, true)
            }

            /// The fake-quantization reference for `run`: `fake_quant_float` quantized with the
            /// output parameters. The integer path is within 1 LSB of it.
            pub fn fake_quant_reference(&self, x: &ArrayD<f32>) -> Result<ArrayD<i32>, QuantError> {
                Ok(self.core.quantize_output(self.fake_quant_float(x)?))
            }
        }
    };
}
pub(super) use layer_accessors;
