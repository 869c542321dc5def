//! ONNX tensors → IR tensors: element types, inline data, and external data read only from
//! regular files whose real path lies inside the model's directory, each reserved in the load's
//! memory ledger before it is allocated.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use half::{bf16, f16};

use super::Ctx;
use crate::error::{Error, Result, io_text, shown_path};
use crate::ir::{DType, Tensor, TensorData};
use crate::load::convert::{self, shape_text, to_array};
use crate::load::pb;
use crate::load::pb::tensor_proto::{DataLocation, DataType};

/// Name of an ONNX data type code for messages.
fn data_type_name(code: i32) -> String {
    DataType::try_from(code)
        .map_or_else(|_| format!("code {code}"), |t| t.as_str_name().to_string())
}

/// Converts one tensor. `what` names it in messages (e.g. `initializer 'conv1.weight'`).
pub(super) fn convert_tensor(
    t: pb::TensorProto,
    name: String,
    what: &str,
    ctx: &mut Ctx<'_>,
) -> Result<Tensor> {
    let code = t
        .data_type
        .ok_or_else(|| ctx.err(format!("{what} has no data_type")))?;
    let dtype = DType::from_onnx(code).ok_or_else(|| {
        ctx.err(format!(
            "{what} has unsupported data type {} (Quantscope reads float32/16, bfloat16, double and integer/bool tensors)",
            data_type_name(code)
        ))
    })?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        let Ok(d) = usize::try_from(d) else {
            return Err(ctx.err(format!(
                "{what} has a negative dimension in dims {}",
                shape_text(&t.dims)
            )));
        };
        shape.push(d);
    }
    let count = convert::element_count(&shape).ok_or_else(|| {
        ctx.err(format!(
            "{what}: dims {} are too large",
            shape_text(&t.dims)
        ))
    })?;
    let held = convert::held_bytes(dtype, &shape).map_err(|e| ctx.err(format!("{what}: {e}")))?;
    let path = ctx.path;
    let fail = |e: String| Error::format(path, format!("{what}: {e}"));

    // Each branch checks the declared size against the bytes present before reserving the
    // converted tensor in the ledger and allocating it.
    let data = if t.data_location == Some(DataLocation::External as i32) {
        let raw = read_external(&t, what, dtype, &shape, ctx)?;
        let reserved = reserve_tensor(ctx, held, what, &shape, dtype);
        let data =
            reserved.and_then(|()| convert::from_le_bytes(dtype, &shape, &raw).map_err(fail));
        ctx.ledger.release(raw.len() as u64);
        data?
    } else if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
        let mismatch = |e: String| {
            Error::format(
                path,
                format!(
                    "{what}: raw_data does not match dims {}: {e}",
                    shape_text(&t.dims)
                ),
            )
        };
        let expected = convert::byte_len(dtype, &shape).map_err(mismatch)?;
        if raw.len() != expected {
            return Err(mismatch(format!(
                "data holds {} bytes, but shape {} of {dtype} needs {expected}",
                raw.len(),
                shape_text(&shape)
            )));
        }
        reserve_tensor(ctx, held, what, &shape, dtype)?;
        let data = convert::from_le_bytes(dtype, &shape, raw).map_err(mismatch)?;
        if let Some(release) = ctx.release {
            release(raw);
        }
        data
    } else {
        // The values are already decoded in the message (so bounded by the file's size);
        // converting them needs the field's length to match first.
        let data = typed_data(t, dtype, &shape, count).map_err(fail)?;
        reserve_tensor(ctx, held, what, &shape, dtype)?;
        data
    };
    Ok(Tensor::new(name, data, dtype))
}

/// Reserves a converted tensor's bytes in the load's ledger.
fn reserve_tensor(
    ctx: &mut Ctx<'_>,
    held: u64,
    what: &str,
    shape: &[usize],
    dtype: DType,
) -> Result<()> {
    let path = ctx.path;
    ctx.ledger.reserve(held, || {
        format!(
            "{}: {what} of shape {} ({dtype})",
            shown_path(path),
            shape_text(shape)
        )
    })
}

/// Data held in the type-specific repeated fields.
fn typed_data(
    t: pb::TensorProto,
    dtype: DType,
    shape: &[usize],
    count: usize,
) -> Result<TensorData, String> {
    let check = |field: &str, len: usize| {
        if len == count {
            Ok(())
        } else {
            Err(format!(
                "{field} holds {len} values, but dims {} need {count}",
                shape_text(shape)
            ))
        }
    };
    let data = match dtype {
        DType::F32 => {
            check("float_data", t.float_data.len())?;
            TensorData::F32(to_array(shape, t.float_data)?)
        }
        DType::F64 => {
            check("double_data", t.double_data.len())?;
            TensorData::F32(to_array(
                shape,
                t.double_data.iter().map(|&v| v as f32).collect(),
            )?)
        }
        DType::F16 | DType::BF16 => {
            check("int32_data", t.int32_data.len())?;
            // 16-bit floats are stored as their bit patterns, one per int32 entry.
            let values = if dtype == DType::F16 {
                t.int32_data
                    .iter()
                    .map(|&v| f16::from_bits(v as u16).to_f32())
                    .collect()
            } else {
                t.int32_data
                    .iter()
                    .map(|&v| bf16::from_bits(v as u16).to_f32())
                    .collect()
            };
            TensorData::F32(to_array(shape, values)?)
        }
        DType::I8 | DType::U8 | DType::I16 | DType::U16 => {
            check("int32_data", t.int32_data.len())?;
            TensorData::F32(to_array(
                shape,
                t.int32_data.iter().map(|&v| v as f32).collect(),
            )?)
        }
        DType::I32 => {
            check("int32_data", t.int32_data.len())?;
            TensorData::I64(to_array(
                shape,
                t.int32_data.iter().map(|&v| i64::from(v)).collect(),
            )?)
        }
        DType::Bool => {
            check("int32_data", t.int32_data.len())?;
            TensorData::I64(to_array(
                shape,
                t.int32_data.iter().map(|&v| i64::from(v != 0)).collect(),
            )?)
        }
        DType::I64 => {
            check("int64_data", t.int64_data.len())?;
            TensorData::I64(to_array(shape, t.int64_data)?)
        }
        DType::U32 | DType::U64 => {
            check("uint64_data", t.uint64_data.len())?;
            TensorData::I64(to_array(
                shape,
                t.uint64_data
                    .iter()
                    .map(|&v| convert::saturate_u64(v))
                    .collect(),
            )?)
        }
    };
    Ok(data)
}

/// Reads an externally stored tensor's bytes (`location`, `offset`, `length` keys) from a file
/// relative to the model's directory.
fn read_external(
    t: &pb::TensorProto,
    what: &str,
    dtype: DType,
    shape: &[usize],
    ctx: &mut Ctx<'_>,
) -> Result<Vec<u8>> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for entry in &t.external_data {
        let value = entry.value();
        let number = |key: &str| {
            value.parse::<u64>().map_err(|_| {
                Error::format(
                    ctx.path,
                    format!("{what}: external data '{key}' is not a byte count: '{value}'"),
                )
            })
        };
        match entry.key() {
            "location" => location = Some(value.to_string()),
            "offset" => offset = number("offset")?,
            "length" => length = Some(number("length")?),
            _ => {}
        }
    }
    let location = location
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ctx.err(format!("{what} is stored externally but names no location")))?;
    let needed = convert::byte_len(dtype, shape).map_err(|e| ctx.err(format!("{what}: {e}")))?;
    if let Some(length) = length
        && length != needed as u64
    {
        return Err(ctx.err(format!(
            "{what}: external data length {length} does not match dims {} of {dtype} ({needed} bytes)",
            shape_text(shape)
        )));
    }

    if !ctx.external.contains_key(&location) {
        let opened = open_external(&location, what, ctx)?;
        ctx.external.insert(location.clone(), opened);
    }
    let Some(external) = ctx.external.get_mut(&location) else {
        return Err(ctx.err(format!(
            "{what}: external data file '{location}' went missing"
        )));
    };
    let (full, file, size) = (&external.0, &mut external.1, external.2);
    let in_file = |e: String| {
        Error::format(
            ctx.path,
            format!("{what}: external data file '{}' {e}", shown_path(full)),
        )
    };
    if offset
        .checked_add(needed as u64)
        .is_none_or(|end| end > size)
    {
        return Err(in_file(format!(
            "is too short: needs {needed} bytes at offset {offset}, the file has {size}"
        )));
    }
    ctx.ledger.reserve(needed as u64, || {
        format!(
            "{}: reading {what} from '{}'",
            shown_path(ctx.path),
            shown_path(full)
        )
    })?;
    let mut buf = vec![0u8; needed];
    if let Err(e) = file
        .seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut buf))
    {
        ctx.ledger.release(needed as u64);
        return Err(in_file(format!("could not be read: {}", io_text(&e))));
    }
    Ok(buf)
}

/// Opens the external-data file at `location` (relative to the model's directory) after
/// checking that its real path, with every link resolved, is a regular file inside the
/// model's directory. Returns (real path, file, size).
fn open_external(location: &str, what: &str, ctx: &mut Ctx<'_>) -> Result<(PathBuf, File, u64)> {
    let relative = Path::new(location);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ctx.err(format!(
            "{what}: external data location '{location}' is not a path inside the model's directory"
        )));
    }
    let real_base = match &ctx.real_base {
        Some(base) => base.clone(),
        None => {
            let base = ctx.base_dir.canonicalize().map_err(|e| {
                ctx.err(format!(
                    "{what}: cannot resolve the model's directory '{}' for external data: {}",
                    shown_path(ctx.base_dir),
                    io_text(&e)
                ))
            })?;
            ctx.real_base = Some(base.clone());
            base
        }
    };
    let full = ctx.base_dir.join(relative);
    let real = full.canonicalize().map_err(|e| {
        ctx.err(format!(
            "{what}: cannot open external data file '{}': {}",
            shown_path(&full),
            io_text(&e)
        ))
    })?;
    if !real.starts_with(&real_base) {
        return Err(ctx.err(format!(
            "{what}: external data location '{location}' resolves to '{}', outside the model's directory '{}'; refusing to read it",
            shown_path(&real),
            shown_path(&real_base)
        )));
    }
    let file = crate::load::open_regular(&real, "an external data file")
        .map_err(|e| ctx.err(format!("{what}: {e}")))?;
    let size = file.metadata().map_err(|e| Error::io(&real, e))?.len();
    Ok((real, file, size))
}
