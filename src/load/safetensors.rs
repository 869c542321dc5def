//! Weights-only `.safetensors` files → a [`Graph`] with initializers and no nodes.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::convert;
use super::mapped;
use crate::budget::{Ledger, MemoryBudget};
use crate::error::{Error, Result, shown_path};
use crate::ir::{self, DType, Graph, Model, ModelFormat, Tensor};

/// Loads a `.safetensors` file: every tensor becomes an initializer, roles are assigned from
/// names and shapes. The tensors must fit the process-wide memory budget.
pub fn load_safetensors(path: &Path) -> Result<Model> {
    load_safetensors_counted(path, &mut MemoryBudget::current().ledger())
}

pub(crate) fn load_safetensors_counted(path: &Path, ledger: &mut Ledger) -> Result<Model> {
    let map = mapped::map_file(path, "a safetensors file")?;
    let release = |slice: &[u8]| mapped::release_pages(&map, slice);
    let graph = decode(&map, path, ledger, &release)?;
    Ok(Model {
        path: path.to_path_buf(),
        format: ModelFormat::Safetensors,
        graph,
    })
}

/// Decodes a safetensors file held in memory (`path` names it in messages and gives the graph
/// its name) within `budget`.
pub fn load_safetensors_bytes(bytes: &[u8], path: &Path, budget: MemoryBudget) -> Result<Graph> {
    decode(bytes, path, &mut budget.ledger(), &|_| {})
}

fn decode(
    bytes: &[u8],
    path: &Path,
    ledger: &mut Ledger,
    release: &dyn Fn(&[u8]),
) -> Result<Graph> {
    if bytes.is_empty() {
        return Err(Error::format(
            path,
            "the file is empty, not a safetensors file",
        ));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::format(
            path,
            format!("not a valid safetensors file ({e}); it may be truncated"),
        )
    })?;
    let mut initializers = BTreeMap::new();
    for (name, view) in st.iter() {
        let dtype = dtype_of(view.dtype()).ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "tensor '{name}' has unsupported dtype {:?} (Quantscope reads F32, F16, BF16, F64, \
                     I8, U8, I16, U16, I32, U32, I64, U64 and BOOL)",
                    view.dtype()
                ),
            )
        })?;
        let held = convert::held_bytes(dtype, view.shape())
            .map_err(|e| Error::format(path, format!("tensor '{name}': {e}")))?;
        ledger.reserve(held, || {
            format!(
                "{}: tensor '{name}' of shape {} ({dtype})",
                shown_path(path),
                convert::shape_text(view.shape())
            )
        })?;
        let data = convert::from_le_bytes(dtype, view.shape(), view.data())
            .map_err(|e| Error::format(path, format!("tensor '{name}': {e}")))?;
        release(view.data());
        initializers.insert(name.to_string(), Tensor::new(name, data, dtype));
    }
    let mut graph = Graph {
        name: file_stem(path),
        initializers,
        ..Graph::default()
    };
    ir::assign_roles(&mut graph);
    Ok(graph)
}

fn dtype_of(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::I16 => DType::I16,
        Dtype::U16 => DType::U16,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::U64 => DType::U64,
        _ => return None,
    })
}

/// The file name without its extension, for graph and array names.
pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
