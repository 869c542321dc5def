//! `quantscope compare`: the table of Nagel et al. 2019 on a model: float, BN folded with
//! per-tensor weights and activations, + cross-layer equalization, + high-bias absorption,
//! + bias correction (analytic and empirical), and per-channel weights.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ndarray::{Array1, ArrayD};
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};
use quantscope::transform::compare::{CompareOptions, paper_table};
use quantscope::transform::equalize::Relu6Handling;

use super::feeds::plan_for;

/// What equalization does with ReLU6.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Relu6Arg {
    /// Exact: ReLU then a per-channel cap scaled with the channel.
    Cap,
    /// The paper's choice: ReLU6 becomes ReLU (outputs change where activations exceed 6).
    Relu,
}

impl From<Relu6Arg> for Relu6Handling {
    fn from(arg: Relu6Arg) -> Self {
        match arg {
            Relu6Arg::Cap => Relu6Handling::PerChannelCap,
            Relu6Arg::Relu => Relu6Handling::ReplaceWithRelu,
        }
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Model file (.onnx) with one input and [N, classes] logits.
    model: PathBuf,
    /// Evaluation inputs: .npy, or .npz holding the inputs and the labels as `labels` or `y`.
    #[arg(long)]
    data: PathBuf,
    /// Labels (.npy of class indices) when --data does not hold them.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Calibration inputs (.npy); the evaluation inputs when omitted.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Weight bits (symmetric, per tensor except the per-channel row).
    #[arg(long, default_value_t = 8)]
    weight_bits: u32,
    /// Activation bits (asymmetric, min-max ranges).
    #[arg(long, default_value_t = 8)]
    act_bits: u32,
    /// ReLU6 handling in equalization.
    #[arg(long, value_enum, default_value_t = Relu6Arg::Cap)]
    relu6: Relu6Arg,
    /// Print the table and the transform reports as JSON.
    #[arg(long)]
    json: bool,
}

/// The float array of a data file (its one array, or the one that is not the labels) and the
/// labels (`labels` or `y`) if any.
fn read_inputs(path: &Path) -> anyhow::Result<(ArrayD<f32>, Option<Array1<i64>>)> {
    let arrays = read_arrays(path)?;
    let mut inputs = None;
    let mut labels = None;
    for array in arrays {
        if array.name == "y" || array.name == "labels" {
            labels = Some(to_labels(array.data, path)?);
        } else if inputs.is_none() {
            inputs = Some(array.data.to_f32());
        }
    }
    let inputs = inputs.with_context(|| format!("{}: holds no input array", path.display()))?;
    Ok((inputs, labels))
}

fn to_labels(data: TensorData, path: &Path) -> anyhow::Result<Array1<i64>> {
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

pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    plan_for(&model)?;
    let (inputs, bundled_labels) = read_inputs(&args.data)?;
    let labels = match (&args.labels, bundled_labels) {
        (Some(path), _) => {
            let data = read_arrays(path)?
                .into_iter()
                .next()
                .with_context(|| format!("{}: holds no arrays", path.display()))?
                .data;
            to_labels(data, path)?
        }
        (None, Some(labels)) => labels,
        (None, None) => bail!(
            "{}: has no labels (`labels` or `y`); give them with --labels FILE.npy",
            args.data.display()
        ),
    };
    let calib = match &args.calib {
        Some(path) => read_inputs(path)?.0,
        None => inputs.clone(),
    };
    let mut options = CompareOptions {
        weight_bits: args.weight_bits,
        activation_bits: args.act_bits,
        ..Default::default()
    };
    options.equalize.relu6 = args.relu6.into();
    let table = paper_table(
        &model.graph,
        calib.view(),
        inputs.view(),
        labels.view(),
        &options,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
        return Ok(());
    }
    for report in &table.reports {
        println!("{}\n", report.summary());
    }
    println!(
        "{} (int{} weights, uint{} activations)",
        args.model.display(),
        table.weight_bits,
        table.activation_bits
    );
    println!(
        "{:<50} {:>9} {:>9} {:>10}",
        "model", "correct", "top-1", "agreement"
    );
    for row in &table.rows {
        println!(
            "{:<50} {:>9} {:>8.2}% {:>9.2}%",
            row.name,
            format!("{}/{}", row.correct, row.total),
            100.0 * row.accuracy,
            100.0 * row.agreement
        );
    }
    Ok(())
}
