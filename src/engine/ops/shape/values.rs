//! Value makers: Constant, ConstantOfShape, Range and Cast.

use super::*;
use crate::engine::ops::float_values;

pub(super) fn constant(ctx: &OpCtx<'_>, _inputs: &[Option<&TensorData>]) -> OpResult {
    let attrs = &ctx.node.attributes;
    let mut found = Vec::new();
    for (name, value) in attrs {
        let t: TensorData = match (name.as_str(), value) {
            ("value", Attribute::Tensor(t)) => t.data.clone(),
            ("value_float", Attribute::Float(v)) => array_from(&[], vec![*v])?.into(),
            ("value_floats", Attribute::Floats(v)) => array_from(&[v.len()], v.clone())?.into(),
            ("value_int", Attribute::Int(v)) => array_from(&[], vec![*v])?.into(),
            ("value_ints", Attribute::Ints(v)) => array_from(&[v.len()], v.clone())?.into(),
            ("value" | "value_float" | "value_floats" | "value_int" | "value_ints", _) => {
                return Err(OpError(format!("attribute '{name}' has the wrong kind")));
            }
            (other, _) => {
                return Err(OpError(format!(
                    "attribute '{other}' is not supported (only numeric values)"
                )));
            }
        };
        found.push(t);
    }
    match found.len() {
        1 => single(found.remove(0)),
        0 => Err(OpError("no value attribute".into())),
        _ => Err(OpError("more than one value attribute".into())),
    }
}

pub(super) fn constant_of_shape(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let dims = dims_from(&int_values(input(inputs, 0)?, "shape")?, "shape")?;
    checked_len(&dims)?;
    let value = ctx.node.attr_tensor("value")?;
    let value = match value {
        None => TensorData::F32(array_from(&[], vec![0.0])?),
        Some(t) => {
            if t.data.len() != 1 {
                return Err(OpError(format!(
                    "value must hold one element, it has {}",
                    t.data.len()
                )));
            }
            t.data.clone()
        }
    };
    single(match value {
        TensorData::F32(a) => TensorData::F32(ArrayD::from_elem(
            IxDyn(&dims),
            a.iter().next().copied().unwrap_or(0.0),
        )),
        TensorData::I64(a) => TensorData::I64(ArrayD::from_elem(
            IxDyn(&dims),
            a.iter().next().copied().unwrap_or(0),
        )),
    })
}

pub(super) fn scalar_of(t: &TensorData, name: &str) -> Result<TensorData, OpError> {
    if t.len() != 1 {
        return Err(OpError(format!(
            "{name} must be a scalar, got shape {:?}",
            t.shape()
        )));
    }
    Ok(t.clone())
}

pub(super) fn range(_ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let start = scalar_of(input(inputs, 0)?, "start")?;
    let limit = scalar_of(input(inputs, 1)?, "limit")?;
    let delta = scalar_of(input(inputs, 2)?, "delta")?;
    match (&start, &limit, &delta) {
        (TensorData::I64(s), TensorData::I64(l), TensorData::I64(d)) => {
            let (s, l, d) = (s.iter().next(), l.iter().next(), d.iter().next());
            let (Some(&s), Some(&l), Some(&d)) = (s, l, d) else {
                return Err(OpError("empty scalar".into()));
            };
            if d == 0 {
                return Err(OpError("delta cannot be 0".into()));
            }
            let span = l as i128 - s as i128;
            let n = ((span + d as i128 - d.signum() as i128) / d as i128).max(0);
            let n = usize::try_from(n)
                .map_err(|_| OpError(format!("range of {n} elements is too long")))?;
            checked_len(&[n])?;
            let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
            single(array_from(&[v.len()], v)?)
        }
        _ => {
            let f = |t: &TensorData| float_values(t).first().copied().unwrap_or(0.0) as f64;
            let (s, l, d) = (f(&start), f(&limit), f(&delta));
            if d == 0.0 {
                return Err(OpError("delta cannot be 0".into()));
            }
            let n = ((l - s) / d).ceil().max(0.0);
            if !n.is_finite() || n >= usize::MAX as f64 {
                return Err(OpError(format!("range of {n} elements is too long")));
            }
            checked_len(&[n as usize])?;
            let v: Vec<f32> = (0..n as usize).map(|i| (s + i as f64 * d) as f32).collect();
            single(array_from(&[v.len()], v)?)
        }
    }
}

/// Truncates toward zero and wraps into the range of an integer dtype.
pub(super) fn to_int(v: i64, dtype: DType) -> i64 {
    match dtype {
        DType::I8 => v as i8 as i64,
        DType::U8 => v as u8 as i64,
        DType::I16 => v as i16 as i64,
        DType::U16 => v as u16 as i64,
        DType::I32 => v as i32 as i64,
        DType::U32 => v as u32 as i64,
        _ => v,
    }
}

pub(super) fn cast(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let to = ctx.node.attr_int("to", -1)?;
    let dtype = i32::try_from(to)
        .ok()
        .and_then(DType::from_onnx)
        .ok_or_else(|| OpError(format!("cannot cast to data type {to}")))?;
    let out: TensorData = match dtype {
        DType::F32 | DType::F64 => TensorData::F32(x.to_f32()),
        DType::F16 => TensorData::F32(x.to_f32().mapv(|v| half::f16::from_f32(v).to_f32())),
        DType::BF16 => TensorData::F32(x.to_f32().mapv(|v| half::bf16::from_f32(v).to_f32())),
        DType::Bool => TensorData::I64(match x {
            TensorData::F32(a) => a.mapv(|v| (v != 0.0) as i64),
            TensorData::I64(a) => a.mapv(|v| (v != 0) as i64),
        }),
        _ => {
            // integer targets: truncate toward zero (NaN -> 0), then wrap to the width
            let ints = match x {
                TensorData::F32(a) => a.mapv(|v| to_int(v.trunc() as i64, dtype)),
                TensorData::I64(a) => a.mapv(|v| to_int(v, dtype)),
            };
            if dtype.is_held_as_f32() {
                // 8/16-bit integers are held as f32 throughout Quantscope
                TensorData::F32(ints.mapv(|v| v as f32))
            } else {
                TensorData::I64(ints)
            }
        }
    };
    single(out)
}
