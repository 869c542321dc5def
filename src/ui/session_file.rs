//! Session files in the app: saving what is on screen (the whole `QuantConfig` with manual
//! clip ranges, the transform switches, the selected tensor) through `export::Session`, and
//! reopening one: its model loads first, then the saved state is applied to the new session
//! (with a warning when the model changed, keeping what still matches). A trained model the
//! session shows is written beside the session file and read back from there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::export::Session as SavedSession;
use crate::transform::toggles::TransformToggles;

use super::selection::{Part, Selection};
use super::session::Session;
use super::train::stored as trained;
use super::waker::Waker;

/// The app's part of a session file (`view`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct ViewState {
    transforms: TransformToggles,
    /// The selected layer's node and part ("weight", "input", "output").
    selected_node: Option<String>,
    selected_part: Option<String>,
    auto_evaluate: Option<bool>,
    /// A trained (QAT) model shown instead of the file's: written beside the session file
    /// (this path relative to it), with what trained it.
    trained_model: Option<PathBuf>,
    trained: Option<String>,
}

/// A session file read before its model has loaded.
#[derive(Debug, Clone)]
pub struct PendingSession {
    pub path: PathBuf,
    pub model_path: PathBuf,
}

/// Saves `session` to `path` (atomically).
pub fn save(session: &Session, path: &Path) -> crate::Result<()> {
    let mut saved = SavedSession::new(&session.loaded.model.path, None, session.config.clone())?;
    let selected = session
        .selection
        .and_then(|s| Some((session.loaded.layers.get(s.layer)?.node.clone(), s.part)));
    let view = ViewState {
        transforms: session.transforms(),
        selected_node: selected.as_ref().map(|(node, _)| node.clone()),
        selected_part: selected.map(|(_, part)| part.name().to_string()),
        auto_evaluate: Some(session.auto_evaluate),
        trained_model: match &session.trained {
            Some(_) => Some(trained::save_beside(session, path)?),
            None => None,
        },
        trained: session.trained.clone(),
    };
    saved.view = serde_json::to_value(view).unwrap_or_default();
    saved.save(path)
}

/// Reads the session file at `path` (its model is opened next).
pub fn read(path: &Path) -> crate::Result<PendingSession> {
    let saved = SavedSession::read(path)?;
    Ok(PendingSession {
        path: path.to_path_buf(),
        model_path: saved.model_path(path),
    })
}

/// Applies the session file to a freshly loaded `session`; returns the warnings to show.
pub fn restore(
    session: &mut Session,
    pending: &PendingSession,
    wake: &Waker,
) -> crate::Result<Vec<String>> {
    let (saved, report) = SavedSession::load(&pending.path, &session.loaded.model.graph)?;
    let view: ViewState = serde_json::from_value(saved.view.clone()).unwrap_or_default();
    match &view.trained_model {
        Some(file) => {
            let loaded = trained::load_beside(session, &pending.path, file)?;
            let summary = view.trained.clone().unwrap_or_else(|| "trained".into());
            session.use_trained(loaded, saved.config, summary, wake);
        }
        None => session.set_config(saved.config),
    }
    if let Some(auto) = view.auto_evaluate {
        session.auto_evaluate = auto;
    }
    if let Some(node) = &view.selected_node {
        let part = Part::from_name(view.selected_part.as_deref());
        if let Some(selection) = Selection::of_node(&session.loaded.layers, node, part) {
            session.selection = Some(selection);
        }
    }
    session.set_transforms(view.transforms, wake);
    Ok(report.warnings)
}
