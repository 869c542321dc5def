//! A trained model in a session file: written as ONNX beside the session file (atomically,
//! never over the model or the session), read back when the session is reopened. The session
//! keeps naming the original model, so its data sources (the bundled digits) stay as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::export::onnx_writer::{onnx_model_proto, write_model_proto};
use crate::ir::Model;
use crate::load::load_model;
use crate::summary::ModelSummary;

use super::super::layers::layer_rows;
use super::super::load_job::LoadedModel;
use super::super::session::Session;

/// The trained model's file beside the session file `session_path`: its name with
/// `.trained.onnx` in place of the extension.
pub fn trained_file_name(session_path: &Path) -> PathBuf {
    let stem = session_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "session".into());
    PathBuf::from(format!("{stem}.trained.onnx"))
}

/// Writes the session's (trained) model beside `session_path`; returns its file name.
pub fn save_beside(session: &Session, session_path: &Path) -> Result<PathBuf> {
    let name = trained_file_name(session_path);
    let target = session_path.with_file_name(&name);
    let proto = onnx_model_proto(&session.loaded.model.graph)?;
    write_model_proto(
        &proto,
        &target,
        &[session.loaded.model.path.as_path(), session_path],
    )?;
    Ok(name)
}

/// Reads the trained model `file` (relative to the session file `session_path`) as the model
/// `session` shows, under the path of the model it was trained from.
pub fn load_beside(session: &Session, session_path: &Path, file: &Path) -> Result<LoadedModel> {
    let path = match session_path.parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    };
    let read = load_model(&path).map_err(|e| Error::Input {
        name: "trained model".into(),
        msg: format!("{}: {e}", path.display()),
    })?;
    let original = &session.loaded.model;
    let model = Model {
        path: original.path.clone(),
        format: original.format,
        graph: read.graph,
    };
    Ok(LoadedModel {
        summary: ModelSummary::of(&model),
        layers: layer_rows(&model.graph),
        model: Arc::new(model),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trained_file_is_named_after_the_session_file() {
        assert_eq!(
            trained_file_name(Path::new("/x/lab.quantscope.json")),
            PathBuf::from("lab.quantscope.trained.onnx")
        );
    }
}
