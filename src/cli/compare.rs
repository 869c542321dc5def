//! `quantscope compare`: the table of Nagel et al. 2019 on a model: float, BN folded with
//! per-tensor weights and activations, + cross-layer equalization, + high-bias absorption,
//! + bias correction (analytic and empirical), and per-channel weights.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use quantscope::load::load_model;
use quantscope::transform::compare::{CompareOptions, paper_table};

use super::args::Relu6Arg;
use super::feeds::{plan_for, read_labels, read_samples};

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

pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    plan_for(&model)?;
    let (inputs, bundled_labels) = read_samples(&args.data, None)?;
    let labels = match (&args.labels, bundled_labels) {
        (Some(path), _) => read_labels(path)?,
        (None, Some(labels)) => labels,
        (None, None) => bail!(
            "{}: has no labels (`labels` or `y`); give them with --labels FILE.npy",
            args.data.display()
        ),
    };
    let calib = match &args.calib {
        Some(path) => read_samples(path, None)?.0,
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
