//! Feeding the model's single input in batches of [`BATCH`] samples.

use std::collections::HashMap;

use ndarray::{ArrayD, Axis, Slice};

use crate::ir::{Graph, TensorData};
use crate::jobs::JobError;

/// Samples per batch of calibration and evaluation runs.
pub const BATCH: usize = 64;

/// The name of the model's single input.
pub fn input_name(graph: &Graph) -> Result<&str, JobError> {
    match graph.inputs.as_slice() {
        [input] => Ok(&input.name),
        many => Err(JobError::Failed(format!(
            "the app runs single-input models; this one has {} inputs",
            many.len()
        ))),
    }
}

/// (start, end) of each batch of `samples`.
pub(super) fn batches(samples: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..samples)
        .step_by(BATCH)
        .map(move |s| (s, (s + BATCH).min(samples)))
}

/// The feeds of samples `start..end` of `inputs` for the input `name`.
pub(super) fn batch_feeds(
    name: &str,
    inputs: &ArrayD<f32>,
    start: usize,
    end: usize,
) -> HashMap<String, TensorData> {
    let batch = inputs
        .slice_axis(Axis(0), Slice::from(start..end))
        .to_owned();
    HashMap::from([(name.to_string(), TensorData::F32(batch))])
}
