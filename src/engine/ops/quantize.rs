//! QuantizeLinear and DequantizeLinear, so a model that is already quantized (a QDQ file from
//! Quantscope's export, onnxruntime's quantizer or another toolchain) runs as onnxruntime runs
//! it before fusing: `q = saturate(round_half_even(x / S) + Z)` and `x = (q − Z) · S`, per tensor
//! or per axis.
//!
//! Codes are held as the IR holds integers of their type: 8- and 16-bit codes as f32 (exact),
//! 32-bit codes as i64. The saturation range of QuantizeLinear comes from its `output_dtype`
//! attribute, which the plan's rewrite sets from the zero point's element type when the file
//! leaves it out (`engine::rewrite::simplify::type_quantizers`); without a zero point the codes
//! are uint8, as ONNX says.

use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use super::{
    OpCtx, OpError, OpResult, Registry, array_from, float_values, input, normalize_axis, optional,
};
use crate::engine::buffers::recycled;
use crate::ir::{DType, TensorData};

/// Elements per parallel work item of the per-tensor kernels.
const CHUNK: usize = 16 * 1024;

/// 1.5·2²³: adding then subtracting it rounds an f32 of magnitude below 2²² to the nearest
/// integer, ties to even (the sum lies where the spacing of f32 is 1), in one vector add each.
const ROUNDER: f32 = 12_582_912.0;

/// One linear grid, `q = saturate(round_half_even(x / S) + Z)` on codes `qmin..=qmax` held
/// as f32 and `x̂ = (q − Z)·S`, in loops the compiler vectorizes (no call to a rounding
/// function per element). Results equal the scalar definitions bit for bit: the rounding is
/// exact because the quotient is clamped to just past the grid first (values beyond it
/// saturate either way). Grids wider than 2²⁰ codes (32-bit) are not taken: see
/// [`Quantizer::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    scale: f32,
    zero_point: f32,
    qmin: f32,
    qmax: f32,
}

impl Quantizer {
    /// The grid of `scale` and `zero_point` on codes `qmin..=qmax`; None when the grid or the
    /// zero point is too wide for the exact vector rounding (use the scalar definition).
    pub fn new(scale: f32, zero_point: f32, qmin: f32, qmax: f32) -> Option<Self> {
        let limit = (1u32 << 20) as f32;
        (qmax - qmin <= limit && zero_point.abs() <= limit && qmin.abs() <= limit).then_some(
            Quantizer {
                scale,
                zero_point,
                qmin,
                qmax,
            },
        )
    }

    /// The code of `x` (NaN stays NaN). Comparisons and branch-free selects only: `f32::max`
    /// and `min` handle NaN and keep the loops (also inside convolution epilogues) scalar.
    #[inline(always)]
    fn code(&self, x: f32) -> f32 {
        use std::hint::select_unpredictable as select;
        let t = x / self.scale;
        let (lo, hi) = (
            self.qmin - self.zero_point - 1.0,
            self.qmax - self.zero_point + 1.0,
        );
        let clamped = select(t > lo, t, lo);
        let clamped = select(clamped < hi, clamped, hi);
        let rounded = (clamped + ROUNDER) - ROUNDER;
        let q = rounded + self.zero_point;
        let q = select(q > self.qmin, q, self.qmin);
        let q = select(q < self.qmax, q, self.qmax);
        select(t.is_nan(), t, q)
    }

    /// The codes of `src` into `dst` (same length).
    pub fn quantize_into(&self, src: &[f32], dst: &mut [f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = self.code(x);
        }
    }

    /// The de-quantized values of the codes `src` into `dst` (same length).
    pub fn dequantize_into(&self, src: &[f32], dst: &mut [f32]) {
        for (d, &q) in dst.iter_mut().zip(src) {
            *d = (q - self.zero_point) * self.scale;
        }
    }

    /// The de-quantized codes of `src` into `dst` (same length): QuantizeLinear then
    /// DequantizeLinear in one pass, NaN staying NaN as there.
    pub fn round_trip_into(&self, src: &[f32], dst: &mut [f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = self.round_trip(x);
        }
    }

    /// The de-quantized code of `x` (NaN stays NaN).
    #[inline(always)]
    fn round_trip(&self, x: f32) -> f32 {
        (self.code(x) - self.zero_point) * self.scale
    }

    /// [`round_trip_into`](Self::round_trip_into) in place (inlined, so that it vectorizes
    /// for the caller's instruction set).
    #[inline(always)]
    pub fn round_trip_in_place(&self, values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = self.round_trip(*v);
        }
    }

    /// The grid as `[scale, zero point, qmin, qmax]`, and back (None when
    /// [`Quantizer::new`] refuses it).
    pub fn to_array(self) -> [f32; 4] {
        [self.scale, self.zero_point, self.qmin, self.qmax]
    }

    /// See [`to_array`](Self::to_array).
    pub fn from_array([scale, zero_point, qmin, qmax]: [f32; 4]) -> Option<Self> {
        Quantizer::new(scale, zero_point, qmin, qmax)
    }

    /// Every value replaced by its de-quantized code; NaN becomes 0 (the code Z).
    pub fn fake_quantize_in_place(&self, values: &mut [f32]) {
        for v in values.iter_mut() {
            let q = self.code(*v);
            *v = if q.is_nan() {
                0.0
            } else {
                (q - self.zero_point) * self.scale
            };
        }
    }
}

/// Set (to 1) by the plan's rewrite on a QuantizeLinear whose codes only a DequantizeLinear on
/// the same grid read (`engine::rewrite::quantize_pairs`): the node then outputs the
/// de-quantized codes `(q − Z)·S`, the pair's result, in one pass.
pub const DEQUANTIZE_ATTR: &str = "quantscope.dequantize";

/// The one grid of `node`, a QuantizeLinear marked with [`DEQUANTIZE_ATTR`] quantizing per
/// tensor to 8- or 16-bit codes with the given scale and zero point, when [`Quantizer`] takes
/// it: what the node computes, as a [`Quantizer::round_trip_into`] (None otherwise).
pub fn round_trip_grid(
    node: &crate::ir::Node,
    scale: &TensorData,
    zero_point: Option<&TensorData>,
) -> Option<Quantizer> {
    if node.attr_int(DEQUANTIZE_ATTR, 0).ok()? != 1
        || node.attr_int("block_size", 0).ok()? != 0
        || scale.len() != 1
        || zero_point.is_some_and(|z| z.len() != 1)
    {
        return None;
    }
    let ctx = OpCtx { node, opset: 0 };
    let dtype = output_dtype(&ctx, zero_point.is_some()).ok()?;
    if !dtype.is_held_as_f32() {
        return None;
    }
    let (lo, hi) = code_range(dtype).ok()?;
    let s = float_values(scale)[0];
    let z = zero_point.map_or(0.0, |z| float_values(z)[0]);
    (s.is_finite() && s > 0.0)
        .then(|| Quantizer::new(s, z, lo, hi))
        .flatten()
}

pub fn register(registry: &mut Registry) {
    registry.add("QuantizeLinear", quantize_linear);
    registry.add("DequantizeLinear", dequantize_linear);
}

/// The code range of an element type QuantizeLinear may produce.
fn code_range(dtype: DType) -> Result<(f32, f32), OpError> {
    Ok(match dtype {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (-2_147_483_648.0, 2_147_483_647.0),
        other => {
            return Err(OpError(format!(
                "codes of element type {other} are not supported (8, 16 or 32-bit integers)"
            )));
        }
    })
}

/// The element type of the codes: the `output_dtype` attribute, else uint8 when there is no
/// zero point.
fn output_dtype(ctx: &OpCtx<'_>, has_zero_point: bool) -> Result<DType, OpError> {
    let code = ctx.node.attr_int("output_dtype", 0)?;
    if code != 0 {
        let code = i32::try_from(code).ok().and_then(DType::from_onnx);
        return code.ok_or_else(|| {
            OpError(format!(
                "output_dtype {} is not an element type Quantscope reads",
                ctx.node.attr_int("output_dtype", 0).unwrap_or_default()
            ))
        });
    }
    if has_zero_point {
        return Err(OpError(
            "the zero point's element type is unknown (not an initializer or Constant)".into(),
        ));
    }
    Ok(DType::U8)
}

/// Scales and zero points: one pair (per tensor) or one per index of `axis`.
struct Parameters {
    axis: Option<usize>,
    scales: Vec<f32>,
    zero_points: Vec<f32>,
}

/// Scale and zero point checked against the input's `shape`: per tensor (one value) or per
/// axis (one value per index of the `axis` attribute).
fn parameters(
    ctx: &OpCtx<'_>,
    shape: &[usize],
    scale: &TensorData,
    zero_point: Option<&TensorData>,
) -> Result<Parameters, OpError> {
    if ctx.node.attr_int("block_size", 0)? != 0 {
        return Err(OpError(
            "blocked quantization (block_size) is not supported".into(),
        ));
    }
    let scales = float_values(scale);
    let zero_points = match zero_point {
        Some(z) => float_values(z),
        None => vec![0.0; scales.len()],
    };
    if zero_points.len() != scales.len() {
        return Err(OpError(format!(
            "{} zero points for {} scales",
            zero_points.len(),
            scales.len()
        )));
    }
    if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(OpError(format!(
            "scale {bad} is not a positive finite number"
        )));
    }
    if scale.shape().is_empty() || (scales.len() == 1 && shape.is_empty()) {
        return Ok(Parameters {
            axis: None,
            scales,
            zero_points,
        });
    }
    if scale.shape().len() != 1 {
        return Err(OpError(format!(
            "scale of shape {:?}: per-tensor (a scalar) or per-axis (1-D) only",
            scale.shape()
        )));
    }
    let axis = normalize_axis(ctx.node.attr_int("axis", 1)?, shape.len())?;
    if scales.len() != shape[axis] {
        return Err(OpError(format!(
            "{} scales for axis {axis} of length {} (input shape {shape:?})",
            scales.len(),
            shape[axis]
        )));
    }
    Ok(Parameters {
        axis: Some(axis),
        scales,
        zero_points,
    })
}

/// Applies `f(value, scale, zero_point)` to every element, with the parameters of its index
/// along `axis` (or the one pair).
fn map_with_parameters(
    values: ArrayD<f32>,
    axis: Option<usize>,
    scales: &[f32],
    zero_points: &[f32],
    f: impl Fn(f32, f32, f32) -> f32,
) -> ArrayD<f32> {
    let mut values = values;
    match axis {
        None => values.mapv_inplace(|x| f(x, scales[0], zero_points[0])),
        Some(axis) => {
            for (k, mut lane) in values.axis_iter_mut(Axis(axis)).enumerate() {
                lane.mapv_inplace(|x| f(x, scales[k], zero_points[k]));
            }
        }
    }
    values
}

/// `q − Z` of integer codes, per element, as f32.
fn map_integers(codes: &ArrayD<i64>, axis: Option<usize>, zero_points: &[f32]) -> ArrayD<f32> {
    let mut out = codes.mapv(|c| c as f64);
    match axis {
        None => out.mapv_inplace(|c| c - f64::from(zero_points[0])),
        Some(axis) => {
            for (k, mut lane) in out.axis_iter_mut(Axis(axis)).enumerate() {
                lane.mapv_inplace(|c| c - f64::from(zero_points[k]));
            }
        }
    }
    out.mapv(|d| d as f32)
}

/// The grids of `p` on codes `lo..=hi`, one per parameter pair, when all take the vector
/// rounding.
fn quantizers(p: &Parameters, lo: f32, hi: f32) -> Option<Vec<Quantizer>> {
    p.scales
        .iter()
        .zip(&p.zero_points)
        .map(|(&s, &z)| Quantizer::new(s, z, lo, hi))
        .collect()
}

/// `kernel(grid, src, dst)` over `src` into a new tensor of `shape`, each contiguous run of
/// elements with its grid (one for the whole tensor, or one per index of `axis`), in parallel.
fn map_by_grid(
    src: &[f32],
    shape: &[usize],
    axis: Option<usize>,
    grids: &[Quantizer],
    kernel: impl Fn(&Quantizer, &[f32], &mut [f32]) + Sync,
) -> Result<ArrayD<f32>, OpError> {
    let mut out = recycled::<f32>(src.len());
    match axis {
        None => out
            .par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(dst, src)| kernel(&grids[0], src, dst)),
        Some(axis) => {
            let inner: usize = shape[axis + 1..].iter().product();
            let row = shape[axis] * inner;
            if row > 0 {
                out.par_chunks_mut(row)
                    .zip(src.par_chunks(row))
                    .for_each(|(dst, src)| {
                        for ((grid, dst), src) in grids
                            .iter()
                            .zip(dst.chunks_mut(inner))
                            .zip(src.chunks(inner))
                        {
                            kernel(grid, src, dst);
                        }
                    });
            }
        }
    }
    array_from(shape, out)
}

fn quantize_linear(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let scale = input(inputs, 1)?;
    let zero_point = optional(inputs, 2);
    let dtype = output_dtype(ctx, zero_point.is_some())?;
    let (lo, hi) = code_range(dtype)?;
    let shape = x.shape().to_vec();
    let params = parameters(ctx, &shape, scale, zero_point)?;
    let round_trip = ctx.node.attr_int(DEQUANTIZE_ATTR, 0)? == 1;
    if let (Some(grids), TensorData::F32(values)) = (quantizers(&params, lo, hi), x)
        && dtype.is_held_as_f32()
        && let Some(src) = values.as_slice()
    {
        let kernel = if round_trip {
            Quantizer::round_trip_into
        } else {
            Quantizer::quantize_into
        };
        let out = map_by_grid(src, &shape, params.axis, &grids, kernel)?;
        return Ok(vec![TensorData::F32(out)]);
    }
    let codes = quantize_scalar(x, &shape, &params, lo, hi, dtype)?;
    if round_trip {
        return Ok(vec![TensorData::F32(dequantize_scalar(&codes, &params))]);
    }
    Ok(vec![codes])
}

/// QuantizeLinear by the scalar definition (grids too wide for [`Quantizer`], non-contiguous
/// or non-f32 input): codes held as the IR holds `dtype`.
fn quantize_scalar(
    x: &TensorData,
    shape: &[usize],
    params: &Parameters,
    lo: f32,
    hi: f32,
    dtype: DType,
) -> Result<TensorData, OpError> {
    let values = ArrayD::from_shape_vec(IxDyn(shape), float_values(x))
        .map_err(|e| OpError(format!("internal shape error: {e}")))?;
    let codes = map_with_parameters(
        values,
        params.axis,
        &params.scales,
        &params.zero_points,
        |x, s, z| ((x / s).round_ties_even() + z).clamp(lo, hi),
    );
    Ok(if dtype.is_held_as_f32() {
        TensorData::F32(codes)
    } else {
        TensorData::I64(codes.mapv(|c| c as i64))
    })
}

/// DequantizeLinear by the scalar definition, as onnxruntime computes it: float(q − Z) · S,
/// the difference taken in integers for 32-bit codes.
fn dequantize_scalar(codes: &TensorData, params: &Parameters) -> ArrayD<f32> {
    let Parameters {
        axis,
        scales,
        zero_points,
    } = params;
    match codes {
        TensorData::F32(a) => {
            map_with_parameters(a.clone(), *axis, scales, zero_points, |q, s, z| (q - z) * s)
        }
        TensorData::I64(a) => {
            let differences = map_integers(a, *axis, zero_points);
            map_with_parameters(differences, *axis, scales, zero_points, |d, s, _| d * s)
        }
    }
}

fn dequantize_linear(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let codes = input(inputs, 0)?;
    let scale = input(inputs, 1)?;
    let shape = codes.shape().to_vec();
    let params = parameters(ctx, &shape, scale, optional(inputs, 2))?;
    if let TensorData::F32(a) = codes
        && let Some(src) = a.as_slice()
    {
        // (q − Z)·S needs no saturation: the grids are unbounded.
        let grids: Vec<Quantizer> = params
            .scales
            .iter()
            .zip(&params.zero_points)
            .map(|(&scale, &zero_point)| Quantizer {
                scale,
                zero_point,
                qmin: f32::MIN,
                qmax: f32::MAX,
            })
            .collect();
        let values = map_by_grid(src, &shape, params.axis, &grids, Quantizer::dequantize_into)?;
        return Ok(vec![TensorData::F32(values)]);
    }
    Ok(vec![TensorData::F32(dequantize_scalar(codes, &params))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::testutil::run;
    use crate::ir::Attribute;

    fn f32s(shape: &[usize], v: &[f32]) -> TensorData {
        TensorData::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).expect("shape"))
    }

    fn values(t: &TensorData) -> Vec<f32> {
        float_values(t)
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates_to_the_code_type() {
        let x = f32s(&[6], &[0.5, 1.5, 2.5, -0.5, 300.0, -300.0]);
        let s = f32s(&[], &[1.0]);
        let z = f32s(&[], &[0.0]);
        let int8 = vec![("output_dtype", Attribute::Int(3))];
        let q = run("QuantizeLinear", 13, int8, &[&x, &s, &z]).expect("runs");
        assert_eq!(values(&q[0]), vec![0.0, 2.0, 2.0, -0.0, 127.0, -128.0]);
        // no zero point: uint8
        let q = run("QuantizeLinear", 13, vec![], &[&x, &s]).expect("runs");
        assert_eq!(values(&q[0]), vec![0.0, 2.0, 2.0, 0.0, 255.0, 0.0]);
    }

    #[test]
    fn per_axis_parameters_follow_the_axis_and_round_trip() {
        // [2, 3]: axis 1 has three channels with their own scale and zero point
        let x = f32s(&[2, 3], &[0.2, 1.0, -4.0, 0.4, 2.0, 4.0]);
        let s = f32s(&[3], &[0.1, 0.5, 2.0]);
        let z = f32s(&[3], &[10.0, 0.0, 128.0]);
        let attrs = || {
            vec![
                ("axis", Attribute::Int(1)),
                ("output_dtype", Attribute::Int(2)),
            ]
        };
        let q = run("QuantizeLinear", 13, attrs(), &[&x, &s, &z]).expect("runs");
        assert_eq!(values(&q[0]), vec![12.0, 2.0, 126.0, 14.0, 4.0, 130.0]);
        let y = run("DequantizeLinear", 13, attrs(), &[&q[0], &s, &z]).expect("runs");
        let expected = [0.2, 1.0, -4.0, 0.4, 2.0, 4.0];
        for (a, b) in values(&y[0]).iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn vector_kernels_equal_the_scalar_definitions_bit_for_bit() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // [2, 3, 700]: per tensor and per axis 1, ties, ordinary values, any bit pattern
        let scales = [0.02f32, 0.37, 3.1];
        let x: Vec<f32> = (0..2 * 3 * 700)
            .map(|i| match i % 3 {
                0 => ((next() % 400) as f32 - 200.0 + 0.5) * scales[(i / 700) % 3],
                1 => (next() % 100_000) as f32 * 0.01 - 500.0,
                _ => f32::from_bits(next() as u32),
            })
            .collect();
        let x = f32s(&[2, 3, 700], &x);
        for (dtype, zeros) in [
            (2, [0.0, 17.0, 255.0]),
            (3, [0.0, -5.0, 127.0]),
            (4, [0.0, 300.0, 65535.0]),
            (5, [0.0, -300.0, 1.0]),
        ] {
            let (lo, hi) = code_range(DType::from_onnx(dtype).expect("type")).expect("range");
            for per_axis in [false, true] {
                let (s, z, attrs) = if per_axis {
                    let attrs = vec![
                        ("axis", Attribute::Int(1)),
                        ("output_dtype", Attribute::Int(i64::from(dtype))),
                    ];
                    (f32s(&[3], &scales), f32s(&[3], &zeros), attrs)
                } else {
                    let attrs = vec![("output_dtype", Attribute::Int(i64::from(dtype)))];
                    (f32s(&[], &scales[1..2]), f32s(&[], &zeros[1..2]), attrs)
                };
                let q = run("QuantizeLinear", 13, attrs.clone(), &[&x, &s, &z]).expect("runs");
                let y = run("DequantizeLinear", 13, attrs, &[&q[0], &s, &z]).expect("runs");
                let channel = |i: usize| if per_axis { (i / 700) % 3 } else { 1 };
                for (i, ((v, code), back)) in values(&x)
                    .iter()
                    .zip(values(&q[0]))
                    .zip(values(&y[0]))
                    .enumerate()
                {
                    let (sc, zp) = (scales[channel(i)], zeros[channel(i)]);
                    let want = ((v / sc).round_ties_even() + zp).clamp(lo, hi);
                    assert_eq!(code.to_bits(), want.to_bits(), "type {dtype}: {v} → {code}");
                    assert_eq!(back.to_bits(), ((want - zp) * sc).to_bits());
                }
            }
        }
    }

    #[test]
    fn int32_codes_dequantize_as_onnxruntime_does() {
        // float(q − Z) · S: the difference is exact, its conversion to f32 rounds
        let q = TensorData::I64(
            ArrayD::from_shape_vec(IxDyn(&[2]), vec![16_777_219, -3]).expect("shape"),
        );
        let s = f32s(&[], &[0.5]);
        let z = TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[]), vec![2]).expect("shape"));
        let y = run("DequantizeLinear", 13, vec![], &[&q, &s, &z]).expect("runs");
        assert_eq!(values(&y[0]), vec![8_388_608.0, -2.5]);
    }

    #[test]
    fn bad_parameters_are_errors_naming_them() {
        let x = f32s(&[2, 3], &[0.0; 6]);
        let zero_scale = f32s(&[], &[0.0]);
        let err = run("QuantizeLinear", 13, vec![], &[&x, &zero_scale]).expect_err("refused");
        assert!(err.0.contains("scale 0"), "{err:?}");
        let two = f32s(&[2], &[1.0, 1.0]);
        let err = run("DequantizeLinear", 13, vec![], &[&x, &two]).expect_err("refused");
        assert!(err.0.contains("2 scales for axis 1"), "{err:?}");
        let z = f32s(&[], &[0.0]);
        let s = f32s(&[], &[1.0]);
        let err = run("QuantizeLinear", 13, vec![], &[&x, &s, &z]).expect_err("refused");
        assert!(err.0.contains("element type is unknown"), "{err:?}");
        let blocked = vec![("block_size", Attribute::Int(2))];
        let err = run("DequantizeLinear", 21, blocked, &[&x, &s]).expect_err("refused");
        assert!(err.0.contains("block_size"), "{err:?}");
    }
}
