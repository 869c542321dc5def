//! `quantscope run`: run a model on a data file, report shapes and accuracy, save outputs.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays, write_npz};

use super::feeds::{plan_for, read_feeds, run_batched};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Input data: a .npy feeds the model's single input; an .npz feeds inputs by name.
    #[arg(long)]
    data: PathBuf,
    /// Class labels (.npy, one integer per sample) to report top-1 accuracy of the first output.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Write every graph output to this .npz, keyed by output name.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Samples per run (0 = the whole file at once).
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let plan = plan_for(&model)?;
    let feeds = read_feeds(&model.graph, &args.data)?;
    let outputs = run_batched(&plan, feeds, args.batch_size)?;
    for (name, value) in &outputs {
        println!(
            "output '{name}': shape {:?} ({})",
            value.shape(),
            value.kind_name()
        );
    }
    if let Some(labels_path) = &args.labels {
        let (_, first) = outputs.first().context("the model has no outputs")?;
        let labels = read_labels(labels_path)?;
        let (correct, total) = top1_correct(first, &labels)?;
        println!(
            "accuracy: {:.2}% ({correct}/{total})",
            100.0 * correct as f64 / total.max(1) as f64
        );
    }
    if let Some(out) = &args.out {
        let named: Vec<(&str, &TensorData)> =
            outputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
        write_npz(out, &named)?;
        println!("wrote {} output(s) to {}", named.len(), out.display());
    }
    Ok(())
}

/// Reads integer class labels from a .npy (integer or integral float values).
fn read_labels(path: &std::path::Path) -> anyhow::Result<Vec<i64>> {
    let arrays = read_arrays(path)?;
    let array = arrays
        .into_iter()
        .next()
        .with_context(|| format!("{}: holds no arrays", path.display()))?;
    Ok(match array.data {
        TensorData::I64(a) => a.iter().copied().collect(),
        TensorData::F32(a) => {
            if let Some(bad) = a.iter().find(|v| v.fract() != 0.0 || !v.is_finite()) {
                bail!("{}: labels must be integers, found {bad}", path.display());
            }
            a.iter().map(|&v| v as i64).collect()
        }
    })
}

/// Number of rows of `scores` ([N, classes]) whose arg-max equals the label, and N.
fn top1_correct(scores: &TensorData, labels: &[i64]) -> anyhow::Result<(usize, usize)> {
    let scores = scores
        .as_f32()
        .context("the first output is not a float tensor of class scores")?;
    let shape = scores.shape();
    if shape.len() != 2 {
        bail!("accuracy needs a first output of shape [N, classes], got {shape:?}");
    }
    if shape[0] != labels.len() {
        bail!(
            "{} labels for {} samples: the label file does not match the data",
            labels.len(),
            shape[0]
        );
    }
    let correct = scores
        .outer_iter()
        .zip(labels)
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0;
            best as i64 == **label
        })
        .count();
    Ok((correct, labels.len()))
}
