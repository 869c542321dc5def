//! The integer-only 2-D convolution (NCHW), its window read through [`WindowSpec`].

use ndarray::ArrayD;

use super::codes::QuantizedWeights;
use super::fixed_point::FixedMultiplier;
use super::layer::{Core, LayerGrids, contiguous, layer_accessors, output_array};
use crate::engine::geometry::WindowSpec;
use crate::quant::grid::{IntGrid, LinearParams, QuantError};

/// An integer-only 2-D convolution (NCHW), optionally fused with ReLU.
#[derive(Debug, Clone)]
pub struct IntConv {
    core: Core,
    window: WindowSpec,
}

impl IntConv {
    /// A layer from quantized weights `[Cout, Cin/group, kh, kw]`, a float bias (quantized to
    /// i32 at S_w·S_x), the input and output quantization parameters and the window (strides,
    /// dilations, padding, group; its kernel must be the weights' spatial shape).
    pub fn new(
        weights: QuantizedWeights,
        bias: Option<&[f32]>,
        grids: LayerGrids,
        window: WindowSpec,
    ) -> Result<Self, QuantError> {
        let shape = weights.codes.shape();
        if shape.len() != 4 {
            return Err(QuantError(format!(
                "conv weights must be [Cout, Cin/group, kh, kw], got {shape:?}"
            )));
        }
        if window.kernel != shape[2..] {
            return Err(QuantError(
                window
                    .error(format!(
                        "the window's kernel {:?} is not the weights' spatial shape {:?}",
                        window.kernel,
                        &shape[2..]
                    ))
                    .to_string(),
            ));
        }
        if !shape[0].is_multiple_of(window.group) {
            return Err(QuantError(format!(
                "{} output channels do not split into {} groups",
                shape[0], window.group
            )));
        }
        Ok(IntConv {
            core: Core::new(weights, bias, grids)?,
            window,
        })
    }

    /// Quantizes float weights (per tensor or per output channel, on `weight_grid`) and builds
    /// the layer.
    pub fn from_float(
        weights: &ArrayD<f32>,
        bias: Option<&[f32]>,
        per_channel: bool,
        weight_grid: IntGrid,
        grids: LayerGrids,
        window: WindowSpec,
    ) -> Result<Self, QuantError> {
        let w = QuantizedWeights::quantize(weights, per_channel, weight_grid)?;
        Self::new(w, bias, grids, window)
    }

    pub fn window(&self) -> &WindowSpec {
        &self.window
    }

    /// The output shape `[N, Cout, OH, OW]` and the (stride, dilation, begin pad) of each
    /// spatial axis for input codes `x`.
    fn output_shape(&self, x: &ArrayD<i32>) -> Result<([usize; 4], [[usize; 3]; 2]), QuantError> {
        let ws = self.core.weights.codes.shape();
        let xs = x.shape();
        if xs.len() != 4 || xs[1] != ws[1] * self.window.group {
            return Err(QuantError(format!(
                "conv input {xs:?} does not fit weights {ws:?} with {} groups",
                self.window.group
            )));
        }
        let axes = self
            .window
            .axes(&xs[2..])
            .map_err(|e| QuantError(e.to_string()))?;
        // Conv pads are never negative.
        let geometry = [0, 1].map(|i| {
            let a = &axes[i];
            [a.stride, a.dilation, a.pad_begin.max(0) as usize]
        });
        Ok(([xs[0], ws[0], axes[0].output, axes[1].output], geometry))
    }

    fn compute(&self, x: &ArrayD<i32>, requantize: bool) -> Result<ArrayD<i32>, QuantError> {
        self.core.check_input(x)?;
        let ([n, cout, oh, ow], [[sy, dy, py], [sx, dx, px]]) = self.output_shape(x)?;
        let (cin, h, w) = (x.shape()[1], x.shape()[2], x.shape()[3]);
        let ws = self.core.weights.codes.shape();
        let (cin_g, kh, kw) = (ws[1], ws[2], ws[3]);
        let cout_g = cout / self.window.group;
        let x = x.as_standard_layout();
        let xs = contiguous(&x)?;
        let wcodes = self.core.weights.codes.as_standard_layout();
        let wv = contiguous(&wcodes)?;
        let zx = self.core.input.zero_point;
        let (lo, hi) = self.core.clamp_bounds();
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
                                let iy = (oy * sy + ky * dy) as isize - py as isize;
                                let row_ok = iy >= 0 && (iy as usize) < h;
                                for kx in 0..kw {
                                    let ix = (ox * sx + kx * dx) as isize - px as isize;
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
        self.core
            .fake_quant_float(x, "Conv", self.window.attributes())
    }
}

layer_accessors!(IntConv);
