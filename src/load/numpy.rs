//! NumPy `.npy` / `.npz` arrays: reading them as named arrays (calibration data, reference
//! outputs) or as a weights-only model, and writing `.npz`.
//!
//! Headers are parsed by ndarray-npy and archives opened by zip; before any array is allocated
//! its declared size is checked against the bytes the file (or archive member) really holds
//! and against the memory [`Ledger`], and a compressed member is never inflated past what its
//! header declares.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, Write};
use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{NpzWriter, ReadNpyExt, ReadableElement};
use zip::ZipArchive;

use super::convert::{element_count, element_size, shape_text};
use super::safetensors::file_stem;
use super::{mapped, open_regular};
use crate::budget::{Ledger, MemoryBudget, bytes_text};
use crate::error::{Error, Result};
use crate::ir::{self, DType, Graph, Model, ModelFormat, Tensor, TensorData};

/// One array read from a `.npy` or `.npz` file.
#[derive(Debug, Clone)]
pub struct NamedArray {
    pub name: String,
    /// Values as f32 (float and small-integer dtypes) or i64 (wide integers, bool).
    pub data: TensorData,
    /// The dtype the file stored.
    pub dtype: DType,
}

/// Reads every array of a `.npy` (one array, named after the file stem) or `.npz` file (all
/// arrays in archive order, names without the `.npy` suffix), within the process-wide
/// memory budget ([`MemoryBudget::current`]).
pub fn read_arrays(path: &Path) -> Result<Vec<NamedArray>> {
    read_arrays_within(path, MemoryBudget::current())
}

/// [`read_arrays`] with an explicit memory budget for all the arrays together.
pub fn read_arrays_within(path: &Path, budget: MemoryBudget) -> Result<Vec<NamedArray>> {
    read_arrays_counted(path, &mut budget.ledger())
}

fn read_arrays_counted(path: &Path, ledger: &mut Ledger) -> Result<Vec<NamedArray>> {
    match extension(path).as_deref() {
        Some("npy") => read_npy_file(path, ledger).map(|a| vec![a]),
        Some("npz") => read_npz_file(path, ledger),
        _ => Err(Error::format(
            path,
            "expected a .npy or .npz file for arrays",
        )),
    }
}

/// Reads one `.npy` array held in memory; `path` names it in messages and gives its name.
pub fn read_npy_bytes(bytes: &[u8], path: &Path, budget: MemoryBudget) -> Result<NamedArray> {
    let source = Source { path, array: None };
    let (data, dtype) = decode_npy(bytes, &source, &mut budget.ledger())?;
    Ok(NamedArray {
        name: file_stem(path),
        data,
        dtype,
    })
}

/// Reads every array of a `.npz` archive held in memory; `path` names it in messages.
pub fn read_npz_bytes(bytes: &[u8], path: &Path, budget: MemoryBudget) -> Result<Vec<NamedArray>> {
    read_npz(Cursor::new(bytes), path, &mut budget.ledger())
}

/// Writes arrays to an uncompressed `.npz` (f32 data as float32, i64 data as int64),
/// atomically: the archive appears whole or not at all.
pub fn write_npz(path: &Path, arrays: &[(&str, &TensorData)]) -> Result<()> {
    crate::export::write_atomic_file(path, &[], |file| {
        let mut sink = StopAtFirstError::new(BufWriter::new(file));
        let outcome = fill_npz(&mut sink, path, arrays);
        match (sink.first_error.take(), outcome) {
            // A full disk or a failing device: say so plainly.
            (Some(e), _) => Err(Error::format(
                path,
                format!("cannot write the file ({})", crate::error::io_text(&e)),
            )),
            (None, outcome) => outcome,
        }
    })
}

fn fill_npz<W: Write + Seek>(
    sink: &mut StopAtFirstError<W>,
    path: &Path,
    arrays: &[(&str, &TensorData)],
) -> Result<()> {
    let mut npz = NpzWriter::new(sink);
    for (name, data) in arrays {
        let written = match data {
            TensorData::F32(a) => npz.add_array(*name, a),
            TensorData::I64(a) => npz.add_array(*name, a),
        };
        if let Err(e) = written {
            // Dropping a zip writer after a failure makes it try to finish the archive and
            // print its own message when that fails too; the archive is a temporary file that
            // is removed anyway, so it is abandoned (its few bookkeeping bytes included).
            std::mem::forget(npz);
            return Err(Error::format(
                path,
                format!("writing array '{name}' failed: {e}"),
            ));
        }
    }
    let sink = npz
        .finish()
        .map_err(|e| Error::format(path, format!("finishing the npz archive failed: {e}")))?;
    sink.flush().map_err(|e| {
        Error::format(
            path,
            format!("cannot write the file ({})", crate::error::io_text(&e)),
        )
    })
}

/// Passes writes and seeks through until the first error, which it keeps (so the message can
/// say "no space left on the device" rather than the zip writer's chain of wrappers); after
/// it, every call succeeds without doing anything.
struct StopAtFirstError<W> {
    inner: W,
    first_error: Option<std::io::Error>,
}

impl<W> StopAtFirstError<W> {
    fn new(inner: W) -> Self {
        StopAtFirstError {
            inner,
            first_error: None,
        }
    }

    fn keep<T>(&mut self, result: std::io::Result<T>, after_failure: T) -> std::io::Result<T> {
        if self.first_error.is_some() {
            return Ok(after_failure);
        }
        result.map_err(|e| {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            self.first_error = Some(e);
            copy
        })
    }
}

impl<W: Write> Write for StopAtFirstError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.first_error.is_some() {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        self.keep(result, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.first_error.is_some() {
            return Ok(());
        }
        let result = self.inner.flush();
        self.keep(result, ())
    }
}

impl<W: Seek> Seek for StopAtFirstError<W> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        if self.first_error.is_some() {
            return Ok(0);
        }
        let result = self.inner.seek(pos);
        self.keep(result, 0)
    }
}

/// Loads a `.npy` or `.npz` file as a weights-only model (initializers, no nodes).
pub(crate) fn load_numpy_model(path: &Path, ledger: &mut Ledger) -> Result<Model> {
    let format = match extension(path).as_deref() {
        Some("npz") => ModelFormat::Npz,
        _ => ModelFormat::Npy,
    };
    let arrays = read_arrays_counted(path, ledger)?;
    let mut initializers = BTreeMap::new();
    for a in arrays {
        if initializers.contains_key(&a.name) {
            return Err(Error::format(
                path,
                format!("array '{}' appears twice", a.name),
            ));
        }
        initializers.insert(a.name.clone(), Tensor::new(a.name, a.data, a.dtype));
    }
    let mut graph = Graph {
        name: file_stem(path),
        initializers,
        ..Graph::default()
    };
    ir::assign_roles(&mut graph);
    Ok(Model {
        path: path.to_path_buf(),
        format,
        graph,
    })
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// Where an array comes from, for messages: a `.npy` file, or a member of a `.npz` file.
struct Source<'a> {
    path: &'a Path,
    array: Option<&'a str>,
}

impl Source<'_> {
    fn err(&self, what: impl std::fmt::Display) -> Error {
        match self.array {
            Some(name) => Error::format(self.path, format!("array '{name}': {what}")),
            None => Error::format(self.path, format!("not a readable .npy array: {what}")),
        }
    }

    /// "x.npy: the array" / "d.npz: array 'x'", for budget messages.
    fn label(&self) -> String {
        let path = crate::error::shown_path(self.path);
        match self.array {
            Some(name) => format!("{path}: array '{name}'"),
            None => format!("{path}: the array"),
        }
    }
}

/// The largest `.npy` header accepted (NumPy itself refuses headers over 10,000 bytes unless
/// told otherwise).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Bytes before the header text and the header text's declared length, read from the first
/// bytes of a `.npy` stream; None when they are not a `.npy` prefix of a known version (the
/// header parser then says what is wrong).
fn declared_header_span(prefix: &[u8]) -> Option<(usize, usize)> {
    if !prefix.starts_with(b"\x93NUMPY") {
        return None;
    }
    match (prefix.get(6), prefix.get(8..12)) {
        (Some(1), Some(len)) => Some((10, usize::from(u16::from_le_bytes([len[0], len[1]])))),
        (Some(2 | 3), Some(&[a, b, c, d])) => Some((12, u32::from_le_bytes([a, b, c, d]) as usize)),
        _ => None,
    }
}

/// The element type a descriptor such as `<f4`, `|u1` or `b` names.
fn dtype_of_descriptor(header: &Header) -> std::result::Result<DType, String> {
    let descriptor = &header.type_descriptor;
    let text = descriptor.as_string().map_or("", String::as_str);
    let body = text.trim_start_matches(['<', '>', '|']);
    Ok(match body {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "b1" => DType::Bool,
        "i1" | "b" => DType::I8,
        "u1" | "B" => DType::U8,
        "i2" => DType::I16,
        "u2" => DType::U16,
        "i4" => DType::I32,
        "u4" => DType::U32,
        "i8" => DType::I64,
        "u8" => DType::U64,
        _ => {
            let shown = if text.is_empty() {
                descriptor.to_string()
            } else {
                text.to_string()
            };
            return Err(format!(
                "unsupported dtype {shown} (Quantscope reads float32, float64, int8/16/32/64, \
                 uint8/16/32/64 and bool arrays; float16 and complex arrays are not supported)"
            ));
        }
    })
}

/// What a parsed header declares.
struct Declared {
    dtype: DType,
    shape: Vec<usize>,
    count: usize,
    /// Bytes of element data the header calls for.
    data_bytes: usize,
}

impl Declared {
    fn of(header: &Header) -> std::result::Result<Declared, String> {
        let dtype = dtype_of_descriptor(header)?;
        let shape = header.shape.clone();
        let too_large = || format!("shape {} is too large", shape_text(&shape));
        let count = element_count(&shape).ok_or_else(too_large)?;
        let data_bytes = count
            .checked_mul(element_size(dtype))
            .ok_or_else(too_large)?;
        Ok(Declared {
            dtype,
            shape,
            count,
            data_bytes,
        })
    }

    /// "shape [2, 3] of float32 (24 bytes)" for messages.
    fn text(&self) -> String {
        format!(
            "shape {} of {} ({})",
            shape_text(&self.shape),
            self.dtype.name(),
            bytes_text(self.data_bytes as u64)
        )
    }

    /// Bytes the array occupies once read (f32 or i64 values).
    fn held_bytes(&self) -> u64 {
        let per = if self.dtype.is_held_as_f32() { 4 } else { 8 };
        (self.count as u64).saturating_mul(per)
    }

    /// Bytes of the temporary array read before converting to f32/i64 (none when the file's
    /// type is already the one held).
    fn temporary_bytes(&self) -> u64 {
        match self.dtype {
            DType::F32 | DType::I64 => 0,
            _ => self.data_bytes as u64,
        }
    }
}

/// Parses the header at the start of `bytes`: what it declares and where the data starts.
fn parse_header(bytes: &[u8], source: &Source<'_>) -> Result<(Declared, usize)> {
    if let Some((prefix, len)) = declared_header_span(bytes)
        && (len > MAX_HEADER_BYTES || prefix + len > bytes.len())
    {
        return Err(source.err(format!(
            "the header declares {len} bytes of header text, but {} follow{}",
            bytes.len().saturating_sub(prefix),
            if len > MAX_HEADER_BYTES {
                " and no NumPy header is that long"
            } else {
                "; the file is truncated"
            }
        )));
    }
    let mut cursor = Cursor::new(bytes);
    let header = Header::from_reader(&mut cursor)
        .map_err(|e| source.err(format!("bad header ({})", first_line(&e.to_string()))))?;
    let declared = Declared::of(&header).map_err(|e| source.err(e))?;
    let offset = usize::try_from(cursor.position()).unwrap_or(bytes.len());
    Ok((declared, offset))
}

/// The first line of a parser's message (pest errors draw the input over several lines).
fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(text)
}

/// Decodes a whole `.npy` stream held in memory, checking its declared size against the bytes
/// present and the ledger before reading.
fn decode_npy(
    bytes: &[u8],
    source: &Source<'_>,
    ledger: &mut Ledger,
) -> Result<(TensorData, DType)> {
    let (declared, offset) = parse_header(bytes, source)?;
    let present = bytes.len() - offset.min(bytes.len());
    if present != declared.data_bytes {
        let how = if present < declared.data_bytes {
            "the file is truncated or the header is wrong"
        } else {
            "extra bytes follow the data"
        };
        return Err(source.err(format!(
            "the header declares {}, but {present} bytes of data follow it; {how}",
            declared.text()
        )));
    }
    let temporary = declared.temporary_bytes();
    ledger.reserve(declared.held_bytes().saturating_add(temporary), || {
        format!("{} ({})", source.label(), declared.text())
    })?;
    let data = read_typed(bytes, declared.dtype).map_err(|e| source.err(e));
    ledger.release(temporary);
    if data.is_err() {
        ledger.release(declared.held_bytes());
    }
    Ok((data?, declared.dtype))
}

/// Reads the array with ndarray-npy as the element type of `dtype` and converts it to the
/// type it is held as.
fn read_typed(bytes: &[u8], dtype: DType) -> std::result::Result<TensorData, String> {
    fn read<T: ReadableElement>(bytes: &[u8]) -> std::result::Result<ArrayD<T>, String> {
        ArrayD::<T>::read_npy(Cursor::new(bytes)).map_err(|e| first_line(&e.to_string()).into())
    }
    Ok(match dtype {
        DType::F32 => TensorData::F32(read::<f32>(bytes)?),
        DType::F64 => TensorData::F32(read::<f64>(bytes)?.mapv(|v| v as f32)),
        DType::I64 => TensorData::I64(read::<i64>(bytes)?),
        DType::I32 => TensorData::I64(read::<i32>(bytes)?.mapv(i64::from)),
        DType::I16 => TensorData::F32(read::<i16>(bytes)?.mapv(f32::from)),
        DType::I8 => TensorData::F32(read::<i8>(bytes)?.mapv(f32::from)),
        DType::U8 => TensorData::F32(read::<u8>(bytes)?.mapv(f32::from)),
        DType::U16 => TensorData::F32(read::<u16>(bytes)?.mapv(f32::from)),
        DType::U32 => TensorData::I64(read::<u32>(bytes)?.mapv(i64::from)),
        DType::U64 => TensorData::I64(read::<u64>(bytes)?.mapv(super::convert::saturate_u64)),
        DType::Bool => TensorData::I64(read::<bool>(bytes)?.mapv(i64::from)),
        DType::F16 | DType::BF16 => return Err(format!("unsupported dtype {}", dtype.name())),
    })
}

fn read_npy_file(path: &Path, ledger: &mut Ledger) -> Result<NamedArray> {
    let map = mapped::map_file(path, "a .npy array")?;
    let source = Source { path, array: None };
    let (data, dtype) = decode_npy(&map, &source, ledger)?;
    Ok(NamedArray {
        name: file_stem(path),
        data,
        dtype,
    })
}

fn read_npz_file(path: &Path, ledger: &mut Ledger) -> Result<Vec<NamedArray>> {
    let file = open_regular(path, "a .npz archive")?;
    read_npz(BufReader::new(file), path, ledger)
}

fn read_npz<R: Read + Seek>(
    reader: R,
    path: &Path,
    ledger: &mut Ledger,
) -> Result<Vec<NamedArray>> {
    let mut zip = ZipArchive::new(reader).map_err(|e| {
        Error::format(
            path,
            format!("not a readable .npz archive ({e}); it may be truncated"),
        )
    })?;
    let mut arrays = Vec::new();
    for index in 0..zip.len() {
        let mut member = zip.by_index(index).map_err(|e| {
            Error::format(
                path,
                format!("cannot open member #{index} of the .npz archive: {e}"),
            )
        })?;
        let full_name = member.name().to_string();
        let name = full_name
            .strip_suffix(".npy")
            .unwrap_or(&full_name)
            .to_string();
        let source = Source {
            path,
            array: Some(&name),
        };
        let declared_size = member.size();
        let bytes = read_member(&mut member, declared_size, &source, ledger)?;
        let decoded = decode_npy(&bytes, &source, ledger);
        ledger.release(bytes.len() as u64);
        drop(bytes);
        let (data, dtype) = decoded?;
        arrays.push(NamedArray { name, data, dtype });
    }
    Ok(arrays)
}

/// Reads one archive member into memory: its header first, then exactly the data the header
/// declares (checked against the member's size in the archive and reserved in the ledger
/// before reading), inflating at most one byte more, which tells a member longer than
/// declared.
fn read_member(
    member: &mut impl Read,
    member_size: u64,
    source: &Source<'_>,
    ledger: &mut Ledger,
) -> Result<Vec<u8>> {
    let io_err = |e: std::io::Error| source.err(format!("cannot read the member: {e}"));
    let mut head = Vec::with_capacity(12);
    member
        .by_ref()
        .take(12)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    let Some((prefix, header_len)) = declared_header_span(&head) else {
        // Too short or not a .npy stream: the header parser says which.
        parse_header(&head, source)?;
        return Err(source.err("not a .npy array"));
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(source.err(format!(
            "the header declares {header_len} bytes of header text; no NumPy header is that long"
        )));
    }
    let header_end = prefix + header_len;
    head.truncate(header_end);
    if head.len() < header_end {
        member
            .by_ref()
            .take((header_end - head.len()) as u64)
            .read_to_end(&mut head)
            .map_err(io_err)?;
    }
    let mut cursor = Cursor::new(&head);
    let header = Header::from_reader(&mut cursor)
        .map_err(|e| source.err(format!("bad header ({})", first_line(&e.to_string()))))?;
    let declared = Declared::of(&header).map_err(|e| source.err(e))?;
    let member_data = member_size.saturating_sub(header_end as u64);
    if member_data < declared.data_bytes as u64 {
        return Err(source.err(format!(
            "the header declares {}, but the archive member holds {member_data} bytes of data",
            declared.text()
        )));
    }
    let total = header_end
        .checked_add(declared.data_bytes)
        .and_then(|t| t.checked_add(1))
        .ok_or_else(|| source.err(format!("{} is too large", declared.text())))?;
    ledger.reserve(total as u64, || {
        format!(
            "{} (inflating {} of data)",
            source.label(),
            bytes_text(declared.data_bytes as u64)
        )
    })?;
    // Allocated once for what was reserved (growing by doubling would need twice as much).
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&head);
    let read = member
        .by_ref()
        .take(declared.data_bytes as u64 + 1)
        .read_to_end(&mut bytes);
    if let Err(e) = read {
        ledger.release(total as u64);
        return Err(io_err(e));
    }
    // Keep exactly what was reserved on the books; the caller releases `bytes.len()`.
    ledger.release(total as u64 - bytes.len() as u64);
    Ok(bytes)
}
