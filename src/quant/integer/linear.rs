//! The integer-only fully connected layer (Gemm, 2-D MatMul).

use std::collections::BTreeMap;

use ndarray::ArrayD;

use super::codes::QuantizedWeights;
use super::fixed_point::FixedMultiplier;
use super::layer::{Core, LayerGrids, contiguous, layer_accessors, output_array};
use crate::ir::Attribute;
use crate::quant::grid::{IntGrid, LinearParams, QuantError};

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
        grids: LayerGrids,
    ) -> Result<Self, QuantError> {
        if weights.codes.ndim() != 2 {
            return Err(QuantError(format!(
                "linear weights must be [N, K], got {:?}",
                weights.codes.shape()
            )));
        }
        Ok(IntLinear {
            core: Core::new(weights, bias, grids)?,
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
        grids: LayerGrids,
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
        Self::new(w, bias.as_deref(), grids)
    }

    /// From a 2-D MatMul's B `[K, N]` (no bias).
    pub fn from_matmul(
        b: &ArrayD<f32>,
        per_channel: bool,
        weight_grid: IntGrid,
        grids: LayerGrids,
    ) -> Result<Self, QuantError> {
        Self::from_gemm(b, false, 1.0, 1.0, None, per_channel, weight_grid, grids)
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
        let attributes = BTreeMap::from([("transB".to_string(), Attribute::Int(1))]);
        self.core.fake_quant_float(x, "Gemm", attributes)
    }
}

layer_accessors!(IntLinear);
