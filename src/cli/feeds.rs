//! Turning a .npy/.npz data file into the model's named inputs, and running in batches.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use ndarray::{Axis, concatenate};
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{Graph, TensorData};
use quantscope::load::read_arrays;

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
