//! Shared conversion of little-endian element bytes (ONNX `raw_data`, external data,
//! safetensors buffers) into [`TensorData`].

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use crate::ir::{DType, TensorData};

/// Bytes per element as stored on disk.
pub(crate) fn element_size(dtype: DType) -> usize {
    match dtype {
        DType::I8 | DType::U8 | DType::Bool => 1,
        DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
        DType::F32 | DType::I32 | DType::U32 => 4,
        DType::F64 | DType::I64 | DType::U64 => 8,
    }
}

/// Formats a shape for messages, e.g. `[64, 3, 7, 7]`.
pub(crate) fn shape_text<T: std::fmt::Display>(dims: &[T]) -> String {
    let parts: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Number of elements of a shape, or None when the shape is too large for an array: the
/// product overflows `usize`, or (ndarray's rule, checked even when an axis is 0) the
/// product of the non-zero axes exceeds `isize::MAX`.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    if nonzero > isize::MAX as usize {
        return None;
    }
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Number of bytes a tensor of `shape` and `dtype` occupies, or an error text.
pub(crate) fn byte_len(dtype: DType, shape: &[usize]) -> Result<usize, String> {
    element_count(shape)
        .and_then(|n| n.checked_mul(element_size(dtype)))
        .ok_or_else(|| format!("shape {} is too large", shape_text(shape)))
}

/// Bytes a tensor of `shape` and `dtype` occupies once converted (f32 or i64 values), or an
/// error text when the size overflows.
pub(crate) fn held_bytes(dtype: DType, shape: &[usize]) -> Result<u64, String> {
    let per = if dtype.is_held_as_f32() { 4 } else { 8 };
    element_count(shape)
        .and_then(|n| u64::try_from(n).ok())
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(|| format!("shape {} is too large", shape_text(shape)))
}

/// Applies `f` to each `N`-byte chunk of `raw` (the length is checked by the caller).
fn decode<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    let (chunks, _rest) = raw.as_chunks::<N>();
    chunks.iter().map(|b| f(*b)).collect()
}

/// Wraps a flat vector into an array of `shape`.
pub(crate) fn to_array<T>(shape: &[usize], values: Vec<T>) -> Result<ArrayD<T>, String> {
    let n = values.len();
    ArrayD::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| format!("{n} values do not fit shape {}: {e}", shape_text(shape)))
}

/// Converts little-endian element bytes into tensor data of `shape`: dtypes held as f32
/// become [`TensorData::F32`], the others [`TensorData::I64`] (uint64 values above
/// `i64::MAX` saturate). The byte length must match the shape exactly.
pub(crate) fn from_le_bytes(
    dtype: DType,
    shape: &[usize],
    raw: &[u8],
) -> Result<TensorData, String> {
    let expected = byte_len(dtype, shape)?;
    if raw.len() != expected {
        return Err(format!(
            "data holds {} bytes, but shape {} of {dtype} needs {expected}",
            raw.len(),
            shape_text(shape)
        ));
    }
    let data = match dtype {
        DType::F32 => TensorData::F32(to_array(shape, decode(raw, f32::from_le_bytes))?),
        DType::F16 => TensorData::F32(to_array(
            shape,
            decode(raw, |b| f16::from_bits(u16::from_le_bytes(b)).to_f32()),
        )?),
        DType::BF16 => TensorData::F32(to_array(
            shape,
            decode(raw, |b| bf16::from_bits(u16::from_le_bytes(b)).to_f32()),
        )?),
        DType::F64 => TensorData::F32(to_array(
            shape,
            decode(raw, |b| f64::from_le_bytes(b) as f32),
        )?),
        DType::I8 => TensorData::F32(to_array(
            shape,
            decode(raw, |b: [u8; 1]| f32::from(i8::from_le_bytes(b))),
        )?),
        DType::U8 => TensorData::F32(to_array(shape, decode(raw, |b: [u8; 1]| f32::from(b[0])))?),
        DType::I16 => TensorData::F32(to_array(
            shape,
            decode(raw, |b| f32::from(i16::from_le_bytes(b))),
        )?),
        DType::U16 => TensorData::F32(to_array(
            shape,
            decode(raw, |b| f32::from(u16::from_le_bytes(b))),
        )?),
        DType::I32 => TensorData::I64(to_array(
            shape,
            decode(raw, |b| i64::from(i32::from_le_bytes(b))),
        )?),
        DType::U32 => TensorData::I64(to_array(
            shape,
            decode(raw, |b| i64::from(u32::from_le_bytes(b))),
        )?),
        DType::I64 => TensorData::I64(to_array(shape, decode(raw, i64::from_le_bytes))?),
        DType::U64 => TensorData::I64(to_array(
            shape,
            decode(raw, |b| saturate_u64(u64::from_le_bytes(b))),
        )?),
        DType::Bool => TensorData::I64(to_array(
            shape,
            decode(raw, |b: [u8; 1]| i64::from(b[0] != 0)),
        )?),
    };
    Ok(data)
}

/// uint64 → i64, saturating at `i64::MAX`.
pub(crate) fn saturate_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_each_dtype() {
        let f = from_le_bytes(DType::F32, &[2], &[0, 0, 128, 63, 0, 0, 0, 192]).unwrap();
        assert_eq!(f.as_f32().unwrap().as_slice().unwrap(), &[1.0, -2.0]);
        let h = from_le_bytes(DType::F16, &[1], &f16::from_f32(0.5).to_le_bytes()).unwrap();
        assert_eq!(h.as_f32().unwrap()[[0]], 0.5);
        let b = from_le_bytes(DType::Bool, &[2], &[0, 7]).unwrap();
        assert_eq!(b.as_i64().unwrap().as_slice().unwrap(), &[0, 1]);
        let u = from_le_bytes(DType::U64, &[], &u64::MAX.to_le_bytes()).unwrap();
        assert_eq!(u.as_i64().unwrap().ndim(), 0);
        assert_eq!(u.as_i64().unwrap()[[]], i64::MAX);
        let i = from_le_bytes(DType::I8, &[1], &[0xff]).unwrap();
        assert_eq!(i.as_f32().unwrap()[[0]], -1.0);
    }

    #[test]
    fn rejects_wrong_length_and_overflow() {
        let e = from_le_bytes(DType::F32, &[3], &[0; 8]).unwrap_err();
        assert!(e.contains("8 bytes") && e.contains("needs 12"), "{e}");
        let e = from_le_bytes(DType::F32, &[usize::MAX, 2], &[]).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        // An empty array whose other axes could not exist (ndarray refuses the shape).
        let e = from_le_bytes(DType::F32, &[0, 1 << 62, 1 << 62], &[]).unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }
}
