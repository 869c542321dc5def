//! Tensors of codes: quantizing and dequantizing activations, symmetric weights per tensor or
//! per output channel, and i32 biases.

use ndarray::{ArrayD, Axis};

use crate::quant::grid::{IntGrid, LinearParams, QuantError};

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

    pub(super) fn check(&self) -> Result<(), QuantError> {
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
