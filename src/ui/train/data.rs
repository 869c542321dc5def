//! The Train window's data: for the sample models, the bundled digits' training split (the
//! same `digits_train.npz` the CLI and the QAT tests train on; the session's test digits are
//! held out); for any other model, the session's own samples with their labels, a fifth held
//! out for the accuracy curve. Without labels the window says so, or trains towards the float
//! model's top-1 class when asked.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use ndarray::{ArrayD, Axis, Slice};

use crate::engine::{Plan, RunOptions};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, TensorData};
use crate::train::Labelled;
use crate::train::trainer::predictions;
use crate::workflow::sources::required_inputs;
use crate::workflow::{Data, DataSource, Samples, bundled_digits_dir, read_array_file};

use super::settings::TrainSettings;

/// The bundled digits' training split, beside the calibration and test digits.
pub const DIGITS_TRAIN: &str = "digits_train.npz";

/// Fewer samples than this are not split: they all train and there is no accuracy curve.
const MIN_SPLIT: usize = 10;

/// Samples per float pass when the float model's predictions are the labels.
const LABEL_BATCH: usize = 64;

/// Training and held-out data, and what they are.
pub struct TrainData {
    pub train: Labelled,
    pub eval: Option<Labelled>,
    pub description: String,
}

/// The single graph input training feeds, or why there is none.
pub fn training_input(graph: &Graph) -> std::result::Result<String, String> {
    match required_inputs(graph).as_slice() {
        [input] => Ok(input.name.clone()),
        inputs => Err(format!(
            "training needs a model with one input; this one has {}",
            inputs.len()
        )),
    }
}

/// What a run would train on, or why it cannot start (shown in the window before a run).
pub fn plan_text(
    graph: &Graph,
    model: &Path,
    source: &DataSource,
    data: Option<&Data>,
    settings: &TrainSettings,
) -> std::result::Result<String, String> {
    let input = training_input(graph)?;
    let data = data.ok_or("wait for the session's data to load (calibration)")?;
    if let DataSource::BundledDigits = source {
        return match bundled_digits_dir(model) {
            Some(dir) if dir.join(DIGITS_TRAIN).exists() => Ok(format!(
                "bundled digits: training split {DIGITS_TRAIN}, held out: {}",
                data.evaluation.description
            )),
            _ => Err(format!("the bundled digits' {DIGITS_TRAIN} is missing")),
        };
    }
    let samples = &data.calibration;
    if samples.synthetic {
        return Err(
            "the data source is synthetic inputs: training needs real samples with \
                    labels (Settings > data: a .npz with a `labels` or `y` array)"
                .into(),
        );
    }
    if !matches!(samples.stacked_input(&input), Some(TensorData::F32(_))) {
        return Err(format!(
            "{} holds no stacked float samples of '{input}' to train on",
            samples.description
        ));
    }
    let n = samples.count();
    let held = held_out(n);
    let split = if held == 0 {
        format!("{n} samples, too few to hold some out (no accuracy curve)")
    } else {
        format!("{} samples to train, the last {held} held out", n - held)
    };
    match (&samples.labels, settings.float_labels) {
        (Some(_), _) => Ok(format!("{}: {split}", samples.description)),
        (None, true) => Ok(format!(
            "{}: {split}; labels: the float model's top-1 (accuracy = agreement with float)",
            samples.description
        )),
        (None, false) => Err(format!(
            "{} has no labels: give a .npz with a `labels` or `y` array as the data source, \
             or tick \"labels from the float model\" to train towards the float model's classes",
            samples.description
        )),
    }
}

/// How many of `n` samples are held out when the source has no separate test set.
fn held_out(n: usize) -> usize {
    if n < MIN_SPLIT { 0 } else { n / 5 }
}

/// Reads the data of a run (on a worker).
pub fn training_data(
    graph: &Graph,
    model: &Path,
    source: &DataSource,
    data: &Data,
    settings: &TrainSettings,
    cancel: &AtomicBool,
) -> Result<TrainData> {
    let input = training_input(graph).map_err(|msg| Error::Input {
        name: "model".into(),
        msg,
    })?;
    let (train, eval, description) = if let DataSource::BundledDigits = source {
        let dir = bundled_digits_dir(model).ok_or_else(|| Error::Input {
            name: "bundled digits".into(),
            msg: "they go with the digits_* sample models only".into(),
        })?;
        let path = dir.join(DIGITS_TRAIN);
        let train = labelled(&read_array_file(graph, &path)?, &input)?;
        let eval = labelled(&data.evaluation, &input)?;
        (
            train,
            Some(eval),
            format!("bundled digits ({DIGITS_TRAIN})"),
        )
    } else {
        let samples = &data.calibration;
        let x = stacked(samples, &input)?;
        let y = match (&samples.labels, settings.float_labels) {
            (Some(labels), _) => labels.to_vec(),
            (None, true) => float_labels(graph, &input, &x, cancel)?,
            (None, false) => {
                return Err(Error::Input {
                    name: samples.description.clone(),
                    msg: "has no labels".into(),
                });
            }
        };
        let n = y.len();
        let held = held_out(n);
        let part = |range: std::ops::Range<usize>| {
            Labelled::new(
                x.slice_axis(Axis(0), Slice::from(range.clone())).to_owned(),
                y[range].to_vec(),
            )
        };
        let eval = (held > 0).then(|| part(n - held..n)).transpose()?;
        (part(0..n - held)?, eval, samples.description.clone())
    };
    let train = limited(train, settings.max_samples)?;
    Ok(TrainData {
        description: format!("{description}: {} training samples", train.len()),
        train,
        eval,
    })
}

/// The first `max` samples of `data` (all when `max` is 0).
fn limited(data: Labelled, max: usize) -> Result<Labelled> {
    if max == 0 || max >= data.len() {
        return Ok(data);
    }
    Labelled::new(
        data.x.slice_axis(Axis(0), Slice::from(0..max)).to_owned(),
        data.y[..max].to_vec(),
    )
}

fn stacked(samples: &Samples, input: &str) -> Result<ArrayD<f32>> {
    match samples.stacked_input(input) {
        Some(TensorData::F32(x)) => Ok(x.clone()),
        _ => Err(Error::Input {
            name: samples.description.clone(),
            msg: format!("holds no stacked float samples of '{input}'"),
        }),
    }
}

/// Samples and labels of `samples` (labels required).
fn labelled(samples: &Samples, input: &str) -> Result<Labelled> {
    let x = stacked(samples, input)?;
    let y = samples.labels.as_ref().ok_or_else(|| Error::Input {
        name: samples.description.clone(),
        msg: "has no labels".into(),
    })?;
    Labelled::new(x, y.to_vec())
}

/// The float model's top-1 class of every sample of `x`.
fn float_labels(
    graph: &Graph,
    input: &str,
    x: &ArrayD<f32>,
    cancel: &AtomicBool,
) -> Result<Vec<i64>> {
    let plan = Plan::new(graph)?;
    // A model with a fixed batch size runs in passes of that size.
    let step = match graph
        .inputs
        .iter()
        .find(|i| i.name == input)
        .and_then(|i| i.shape.as_ref())
        .and_then(|d| d.first())
    {
        Some(Dim::Fixed(k)) => (*k).max(1),
        _ => LABEL_BATCH,
    };
    let n = x.len_of(Axis(0));
    let mut labels = Vec::with_capacity(n);
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        let feed = x.slice_axis(Axis(0), Slice::from(start..end)).to_owned();
        let feeds = HashMap::from([(input.to_string(), TensorData::F32(feed))]);
        let outputs = plan.run(
            feeds,
            None,
            RunOptions {
                cancel: Some(cancel),
            },
        )?;
        let Some((_, TensorData::F32(logits))) = outputs.into_iter().next() else {
            return Err(Error::Graph(
                "the model's first output is not float scores".into(),
            ));
        };
        labels.extend(
            predictions(&logits, end - start)?
                .into_iter()
                .map(|c| c as i64),
        );
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifth_is_held_out_from_ten_samples_on() {
        assert_eq!(held_out(9), 0);
        assert_eq!(held_out(10), 2);
        assert_eq!(held_out(100), 20);
    }

    #[test]
    fn a_limit_keeps_the_first_samples() {
        let x = ArrayD::from_shape_vec(vec![4, 2], (0..8).map(|v| v as f32).collect()).unwrap();
        let data = Labelled::new(x, vec![0, 1, 2, 3]).unwrap();
        let kept = limited(data.clone(), 3).unwrap();
        assert_eq!(kept.y, vec![0, 1, 2]);
        assert_eq!(kept.x.shape(), &[3, 2]);
        assert_eq!(limited(data, 0).unwrap().len(), 4);
    }
}
