//! NumPy `.npy` / `.npz` arrays: reading them as named arrays (calibration data, reference
//! outputs) or as a weights-only model, and writing `.npz`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor};
use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyError, ReadNpyExt, ReadNpzError, ReadableElement};

use super::safetensors::file_stem;
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
/// arrays in archive order, names without the `.npy` suffix).
pub fn read_arrays(path: &Path) -> Result<Vec<NamedArray>> {
    match extension(path).as_deref() {
        Some("npy") => read_npy_file(path).map(|a| vec![a]),
        Some("npz") => read_npz_file(path),
        _ => Err(Error::format(
            path,
            "expected a .npy or .npz file for arrays",
        )),
    }
}

/// Writes arrays to an uncompressed `.npz` (f32 data as float32, i64 data as int64).
pub fn write_npz(path: &Path, arrays: &[(&str, &TensorData)]) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut npz = NpzWriter::new(BufWriter::new(file));
    for (name, data) in arrays {
        let written = match data {
            TensorData::F32(a) => npz.add_array(*name, a),
            TensorData::I64(a) => npz.add_array(*name, a),
        };
        written.map_err(|e| Error::format(path, format!("writing array '{name}' failed: {e}")))?;
    }
    npz.finish()
        .map_err(|e| Error::format(path, format!("finishing the npz archive failed: {e}")))?;
    Ok(())
}

/// Loads a `.npy` or `.npz` file as a weights-only model (initializers, no nodes).
pub fn load_numpy_model(path: &Path) -> Result<Model> {
    let format = match extension(path).as_deref() {
        Some("npz") => ModelFormat::Npz,
        _ => ModelFormat::Npy,
    };
    let arrays = read_arrays(path)?;
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

/// Why one attempt at reading an array as a given element type failed.
enum Fail {
    /// The file's dtype descriptor is a different type (try the next one).
    WrongType(String),
    /// Anything else: the file is broken.
    Broken(String),
}

impl From<ReadNpyError> for Fail {
    fn from(e: ReadNpyError) -> Self {
        match e {
            ReadNpyError::WrongDescriptor(d) => Fail::WrongType(d.to_string()),
            other => Fail::Broken(other.to_string()),
        }
    }
}

impl From<ReadNpzError> for Fail {
    fn from(e: ReadNpzError) -> Self {
        match e {
            ReadNpzError::Npy(e) => e.into(),
            other => Fail::Broken(other.to_string()),
        }
    }
}

/// Something one array can be read from, as any element type.
trait ArraySource {
    fn read<T: ReadableElement>(&mut self) -> Result<ArrayD<T>, Fail>;
}

struct NpyBytes<'a>(&'a [u8]);

impl ArraySource for NpyBytes<'_> {
    fn read<T: ReadableElement>(&mut self) -> Result<ArrayD<T>, Fail> {
        Ok(ArrayD::<T>::read_npy(Cursor::new(self.0))?)
    }
}

struct NpzEntry<'a, R: std::io::Read + std::io::Seek> {
    npz: &'a mut NpzReader<R>,
    index: usize,
}

impl<R: std::io::Read + std::io::Seek> ArraySource for NpzEntry<'_, R> {
    fn read<T: ReadableElement>(&mut self) -> Result<ArrayD<T>, Fail> {
        Ok(self.npz.by_index(self.index)?)
    }
}

/// Reads an array, trying each supported element type until the dtype descriptor matches.
fn read_any(src: &mut impl ArraySource) -> Result<(TensorData, DType), String> {
    let mut descriptor = String::new();
    macro_rules! attempt {
        ($t:ty, $dtype:expr, $convert:expr) => {
            match src.read::<$t>() {
                Ok(a) => return Ok(($convert(a), $dtype)),
                Err(Fail::WrongType(d)) => {
                    if descriptor.is_empty() {
                        descriptor = d;
                    }
                }
                Err(Fail::Broken(m)) => return Err(m),
            }
        };
    }
    attempt!(f32, DType::F32, TensorData::F32);
    attempt!(f64, DType::F64, |a: ArrayD<f64>| TensorData::F32(
        a.mapv(|v| v as f32)
    ));
    attempt!(i64, DType::I64, TensorData::I64);
    attempt!(i32, DType::I32, |a: ArrayD<i32>| TensorData::I64(
        a.mapv(i64::from)
    ));
    attempt!(i16, DType::I16, |a: ArrayD<i16>| TensorData::F32(
        a.mapv(f32::from)
    ));
    attempt!(i8, DType::I8, |a: ArrayD<i8>| TensorData::F32(
        a.mapv(f32::from)
    ));
    attempt!(u8, DType::U8, |a: ArrayD<u8>| TensorData::F32(
        a.mapv(f32::from)
    ));
    attempt!(u16, DType::U16, |a: ArrayD<u16>| TensorData::F32(
        a.mapv(f32::from)
    ));
    attempt!(u32, DType::U32, |a: ArrayD<u32>| TensorData::I64(
        a.mapv(i64::from)
    ));
    attempt!(u64, DType::U64, |a: ArrayD<u64>| {
        TensorData::I64(a.mapv(super::convert::saturate_u64))
    });
    attempt!(bool, DType::Bool, |a: ArrayD<bool>| TensorData::I64(
        a.mapv(i64::from)
    ));
    Err(format!(
        "unsupported dtype {descriptor} (Quantscope reads float32, float64, int8/16/32/64, \
         uint8/16/32/64 and bool arrays; float16 and complex arrays are not supported)"
    ))
}

fn read_npy_file(path: &Path) -> Result<NamedArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::format(path, "the file is empty, not a .npy array"));
    }
    let (data, dtype) = read_any(&mut NpyBytes(&bytes))
        .map_err(|e| Error::format(path, format!("not a readable .npy array: {e}")))?;
    Ok(NamedArray {
        name: file_stem(path),
        data,
        dtype,
    })
}

fn read_npz_file(path: &Path) -> Result<Vec<NamedArray>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut npz = NpzReader::new(BufReader::new(file)).map_err(|e| {
        Error::format(
            path,
            format!("not a readable .npz archive ({e}); it may be truncated"),
        )
    })?;
    let names = npz
        .names()
        .map_err(|e| Error::format(path, format!("cannot list the .npz archive: {e}")))?;
    let mut arrays = Vec::with_capacity(names.len());
    for (index, name) in names.into_iter().enumerate() {
        let (data, dtype) = read_any(&mut NpzEntry {
            npz: &mut npz,
            index,
        })
        .map_err(|e| Error::format(path, format!("array '{name}': {e}")))?;
        arrays.push(NamedArray { name, data, dtype });
    }
    Ok(arrays)
}
