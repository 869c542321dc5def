//! `quantscope compare`: the table of Nagel et al. 2019 on a model: float, BN folded with
//! per-tensor weights and activations, then cross-layer equalization, high-bias absorption
//! and bias correction (analytic and empirical) added, and per-channel weights; top-1 accuracy
//! with labels, agreement for classifiers and the worst output SQNR for any model.

use std::path::PathBuf;

use clap::Args;
use quantscope::transform::compare::{CompareOptions, paper_table};
use quantscope::workflow::RunControl;

use super::args::Relu6Arg;
use super::feeds::{DataFlags, LabelFlags, open_runnable};
use super::format::db;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Evaluation data: a .npy, an .npz (arrays by input name and optional `labels` or `y`),
    /// a folder of .npz files or a folder of images (see --preset).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    data_flags: DataFlags,
    #[command(flatten)]
    labels: LabelFlags,
    /// Calibration data in the same forms; the evaluation data when omitted.
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

fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}

pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let model = open_runnable(&args.model)?;
    let graph = &model.graph;
    let evaluation = args
        .data_flags
        .labelled_samples(graph, &args.data, &args.labels)?;
    let calibration = match &args.calib {
        Some(path) => args.data_flags.samples(graph, path)?,
        None => evaluation.clone(),
    };
    let mut options = CompareOptions {
        weight_bits: args.weight_bits,
        activation_bits: args.act_bits,
        ..Default::default()
    };
    options.equalize.relu6 = args.relu6.into();
    let table = paper_table(
        graph,
        &calibration,
        &evaluation,
        &options,
        &RunControl::default(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table)?);
        return Ok(());
    }
    for report in &table.reports {
        println!("{}\n", report.summary());
    }
    println!(
        "{} (int{} weights, uint{} activations) on {}",
        args.model.display(),
        table.weight_bits,
        table.activation_bits,
        evaluation.description
    );
    println!(
        "{:<50} {:>9} {:>9} {:>10} {:>15}",
        "model", "correct", "top-1", "agreement", "worst SQNR dB"
    );
    for row in &table.rows {
        println!(
            "{:<50} {:>9} {:>9} {:>10} {:>15}",
            row.name,
            row.correct
                .map_or("-".into(), |c| format!("{c}/{}", row.total)),
            percent(row.accuracy),
            percent(row.agreement),
            db(row.worst_output_sqnr_db)
        );
    }
    Ok(())
}
