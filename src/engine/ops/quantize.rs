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

use super::{OpCtx, OpError, OpResult, Registry, float_values, input, normalize_axis, optional};
use crate::ir::{DType, TensorData};

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

fn quantize_linear(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let scale = input(inputs, 1)?;
    let zero_point = optional(inputs, 2);
    let dtype = output_dtype(ctx, zero_point.is_some())?;
    let (lo, hi) = code_range(dtype)?;
    let shape = x.shape().to_vec();
    let Parameters {
        axis,
        scales,
        zero_points,
    } = parameters(ctx, &shape, scale, zero_point)?;
    let values = ArrayD::from_shape_vec(IxDyn(&shape), float_values(x))
        .map_err(|e| OpError(format!("internal shape error: {e}")))?;
    let codes = map_with_parameters(values, axis, &scales, &zero_points, |x, s, z| {
        ((x / s).round_ties_even() + z).clamp(lo, hi)
    });
    Ok(vec![if dtype.is_held_as_f32() {
        TensorData::F32(codes)
    } else {
        TensorData::I64(codes.mapv(|c| c as i64))
    }])
}

fn dequantize_linear(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let codes = input(inputs, 0)?;
    let scale = input(inputs, 1)?;
    let shape = codes.shape().to_vec();
    let Parameters {
        axis,
        scales,
        zero_points,
    } = parameters(ctx, &shape, scale, optional(inputs, 2))?;
    // as onnxruntime: float(q − Z) · S, the difference taken in integers for i32 codes
    let values = match codes {
        TensorData::F32(a) => {
            map_with_parameters(a.clone(), axis, &scales, &zero_points, |q, s, z| {
                (q - z) * s
            })
        }
        TensorData::I64(a) => {
            let differences = map_integers(a, axis, &zero_points);
            map_with_parameters(differences, axis, &scales, &zero_points, |d, s, _| d * s)
        }
    };
    Ok(vec![TensorData::F32(values)])
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
