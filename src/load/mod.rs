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

pub mod pb;
