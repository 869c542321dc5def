//! Turning a .npy/.npz data file into the model's named inputs and labels, running in
//! batches, and collecting calibration statistics over a data file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, bail};
use ndarray::{Array1, ArrayD, Axis, concatenate};
use quantscope::calib::{ActivationCollector, CalibrationStats};
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{Graph, TensorData};
use quantscope::load::read_arrays;

/// Samples per calibration batch of `quantize` and `export`.
pub const CALIBRATION_BATCH: usize = 64;

/// Reads `path` and maps its arrays to the graph's inputs: a .npy feeds the single input; an
/// .npz feeds inputs by name (a one-array .npz also feeds a single-input model).
pub fn read_feeds(graph: &Graph, path: &Path) -> anyhow::Result<HashMap<String, TensorData>> {
    let arrays = read_arrays(path)?;
    let input_names: Vec<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
    let mut feeds = HashMap::new();
    let by_position = input_names.len() == 1
        && (arrays.len() == 1 || !arrays.iter().any(|a| a.name == input_names[0]));
    if by_position {
        let Some(array) = arrays.into_iter().next() else {
            bail!("{}: holds no arrays", path.display());
        };
        feeds.insert(input_names[0].to_string(), array.data);
        return Ok(feeds);
    }
    let mut by_name: HashMap<String, TensorData> =
        arrays.into_iter().map(|a| (a.name, a.data)).collect();
    for name in &input_names {
        let data = by_name.remove(*name).with_context(|| {
            format!(
                "{}: has no array named '{name}' (the model's inputs: {})",
                path.display(),
                input_names.join(", ")
            )
        })?;
        feeds.insert(name.to_string(), data);
    }
    Ok(feeds)
}

/// Leading (batch) dimension shared by all feeds, if they all have one and agree.
fn common_batch(feeds: &HashMap<String, TensorData>) -> Option<usize> {
    let mut sizes = feeds.values().map(|t| t.shape().first().copied());
    let first = sizes.next()??;
    sizes.all(|s| s == Some(first)).then_some(first)
}

fn slice_batch(data: &TensorData, start: usize, end: usize) -> TensorData {
    match data {
        TensorData::F32(a) => {
            TensorData::F32(a.slice_axis(Axis(0), (start..end).into()).to_owned())
        }
        TensorData::I64(a) => {
            TensorData::I64(a.slice_axis(Axis(0), (start..end).into()).to_owned())
        }
    }
}

fn concat_batches(name: &str, parts: Vec<TensorData>) -> anyhow::Result<TensorData> {
    if parts.len() == 1 {
        return parts.into_iter().next().context("no batches were run");
    }
    let result = match &parts[0] {
        TensorData::F32(_) => {
            let views: Vec<_> = parts
                .iter()
                .filter_map(|p| p.as_f32())
                .map(|a| a.view())
                .collect();
            concatenate(Axis(0), &views).map(TensorData::F32)
        }
        TensorData::I64(_) => {
            let views: Vec<_> = parts
                .iter()
                .filter_map(|p| p.as_i64())
                .map(|a| a.view())
                .collect();
            concatenate(Axis(0), &views).map(TensorData::I64)
        }
    };
    result.with_context(|| format!("output '{name}' has no batch dimension to join batches along"))
}

/// Runs `plan` on `feeds`, `batch_size` samples at a time (0 = all at once), joining the
/// outputs along the batch axis.
pub fn run_batched(
    plan: &Plan<'_>,
    feeds: HashMap<String, TensorData>,
    batch_size: usize,
) -> anyhow::Result<Vec<(String, TensorData)>> {
    let total = common_batch(&feeds);
    let chunked = match total {
        Some(n) => batch_size > 0 && n > batch_size,
        None => false,
    };
    if !chunked {
        return Ok(plan.run(feeds, None, RunOptions::default())?);
    }
    let n = total.unwrap_or(0);
    let mut collected: Vec<(String, Vec<TensorData>)> = Vec::new();
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let chunk: HashMap<String, TensorData> = feeds
            .iter()
            .map(|(k, v)| (k.clone(), slice_batch(v, start, end)))
            .collect();
        let outputs = plan.run(chunk, None, RunOptions::default())?;
        if collected.is_empty() {
            collected = outputs.into_iter().map(|(k, v)| (k, vec![v])).collect();
        } else {
            for ((_, parts), (_, v)) in collected.iter_mut().zip(outputs) {
                parts.push(v);
            }
        }
    }
    collected
        .into_iter()
        .map(|(name, parts)| {
            let joined = concat_batches(&name, parts)?;
            Ok((name, joined))
        })
        .collect()
}

/// The run plan of a loaded model; weights-only files say so, naming the file.
pub fn plan_for(model: &quantscope::ir::Model) -> anyhow::Result<Plan<'_>> {
    if !model.graph.is_runnable() {
        return Err(quantscope::Error::NotRunnable(model.path.clone()).into());
    }
    Ok(Plan::new(&model.graph)?)
}

/// Runs the float model over `data` in batches, collecting every activation's statistics.
pub fn collect_stats(
    graph: &Graph,
    plan: &Plan<'_>,
    data: &Path,
    batch_size: usize,
) -> anyhow::Result<BTreeMap<String, CalibrationStats>> {
    let feeds = read_feeds(graph, data)?;
    let [input] = graph.inputs.as_slice() else {
        anyhow::bail!(
            "calibration supports single-input models; this one has {}",
            graph.inputs.len()
        );
    };
    let Some(TensorData::F32(values)) = feeds.get(&input.name) else {
        anyhow::bail!("{}: calibration data must be float", data.display());
    };
    let mut collector = ActivationCollector::new();
    collector.run_batches(plan, &input.name, values.view(), batch_size)?;
    Ok(collector.into_stats())
}

/// Class labels read from `path` (its first array).
pub fn read_labels(path: &Path) -> anyhow::Result<Array1<i64>> {
    let data = read_arrays(path)?
        .into_iter()
        .next()
        .with_context(|| format!("{}: holds no arrays", path.display()))?
        .data;
    labels_of(data, path)
}

/// `data` (read from `path`) as class labels: a 1-D integer array.
pub fn labels_of(data: TensorData, path: &Path) -> anyhow::Result<Array1<i64>> {
    match data {
        TensorData::I64(a) if a.ndim() == 1 => Ok(a.into_dimensionality()?),
        other => bail!(
            "{}: labels must be a 1-D integer array (got {} of shape {:?})",
            path.display(),
            other.kind_name(),
            other.shape()
        ),
    }
}

/// The samples of a data file and its labels, if it holds any (`labels` or `y`): the array
/// named `input` when there is one, else the first array that is not the labels.
pub fn read_samples(
    path: &Path,
    input: Option<&str>,
) -> anyhow::Result<(ArrayD<f32>, Option<Array1<i64>>)> {
    let arrays = read_arrays(path)?;
    let is_label = |name: &str| name == "labels" || name == "y";
    let mut samples = None;
    let mut labels = None;
    let mut named = false;
    for array in arrays {
        if is_label(&array.name) {
            labels = Some(labels_of(array.data, path)?);
        } else if samples.is_none() || (!named && input == Some(array.name.as_str())) {
            named = input == Some(array.name.as_str());
            samples = Some(array.data.to_f32());
        }
    }
    let samples = samples.with_context(|| format!("{}: holds no input array", path.display()))?;
    Ok((samples, labels))
}
