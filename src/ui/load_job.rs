//! Loading a model on a named worker thread: the file, its summary and its layer rows.

use std::path::Path;
use std::sync::Arc;

use crate::ir::Model;
use crate::jobs::{JobContext, JobError};
use crate::load::load_model;
use crate::summary::ModelSummary;

use super::layers::{LayerRow, layer_rows};

/// A model as the UI shows it.
pub struct LoadedModel {
    pub model: Arc<Model>,
    pub summary: ModelSummary,
    pub layers: Vec<LayerRow>,
}

/// The work of a load job.
pub fn load_for_view(path: &Path, ctx: &JobContext) -> Result<LoadedModel, JobError> {
    let model = load_model(path)?;
    ctx.check()?;
    let summary = ModelSummary::of(&model);
    let layers = layer_rows(&model.graph);
    Ok(LoadedModel {
        model: Arc::new(model),
        summary,
        layers,
    })
}
