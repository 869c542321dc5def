//! Loaders: model and data files into the IR, and nothing else.

use std::path::Path;

use crate::error::{Error, Result};
use crate::ir::Model;

/// Loads a model file (.onnx, .safetensors, .npy, .npz), assigning parameter roles.
pub fn load_model(path: &Path) -> Result<Model> {
    Err(Error::UnsupportedFormat {
        path: path.to_path_buf(),
    })
}

// Placeholder API until the loader lands (replaced by the loader branch).
/// A named array read from a .npy/.npz file.
pub struct NamedArray {
    pub name: String,
    pub data: crate::ir::TensorData,
    pub dtype: crate::ir::DType,
}

/// Reads every array of a .npy or .npz file.
pub fn read_arrays(path: &Path) -> Result<Vec<NamedArray>> {
    Err(Error::UnsupportedFormat {
        path: path.to_path_buf(),
    })
}

/// Writes arrays to an .npz file.
pub fn write_npz(path: &Path, _arrays: &[(&str, &crate::ir::TensorData)]) -> Result<()> {
    Err(Error::UnsupportedFormat {
        path: path.to_path_buf(),
    })
}
