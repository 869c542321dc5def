//! The app's jobs as plain functions over [`crate::workflow`] (run them inside a
//! [`super::Job`]): reading the data, calibrating, evaluating a config. Each turns the job's
//! context into the workflow's cancel flag and progress.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use super::{JobContext, JobError};
use crate::calib::CalibrationStats;
use crate::ir::Graph;
use crate::quant::QuantConfig;
use crate::workflow::{self, EvalOptions, RunControl};

pub use crate::workflow::{
    Calibration, Cost, Data, DataSource, Evaluation, Focus, FocusFigures, LayerError, Samples,
    bundled_digits_dir, default_source,
};

/// Runs `work` with the workflow control of `ctx` (its cancel flag; progress into it).
fn with_control<T>(
    ctx: &JobContext,
    work: impl FnOnce(&RunControl<'_>) -> crate::Result<T>,
) -> Result<T, JobError> {
    let progress = |fraction: f32| ctx.set_progress(fraction);
    let control = RunControl {
        cancel: Some(ctx.cancel_flag()),
        progress: Some(&progress),
    };
    Ok(work(&control)?)
}

/// Reads `source` for `graph` (the model at `model`).
pub fn read_data(graph: &Graph, model: &Path, source: &DataSource) -> Result<Data, JobError> {
    Ok(workflow::read_data(graph, model, source)?)
}

/// Every float tensor's statistics over `samples`, per tensor and per channel (the app shows
/// both).
pub fn calibrate(
    graph: &Graph,
    samples: &Samples,
    ctx: &JobContext,
) -> Result<Calibration, JobError> {
    with_control(ctx, |control| {
        workflow::calibrate_with_channels(graph, samples, None, control)
    })
}

/// Evaluates `config` applied to `graph` against the float model `float_graph` on `samples`:
/// outputs, layers, cost and the focused tensor's figures (`float_graph` is `graph` itself
/// unless a transform changed the graph only for quantization).
pub fn evaluate_against(
    float_graph: &Graph,
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    samples: &Samples,
    focus: Option<&Focus>,
    ctx: &JobContext,
) -> Result<Evaluation, JobError> {
    with_control(ctx, |control| {
        workflow::evaluate(
            float_graph,
            graph,
            config,
            stats,
            samples,
            None,
            &EvalOptions::full(focus),
            control,
        )
    })
}
