//! `quantscope run`: run a model on data of any form, in the chunks the model accepts; report
//! output shapes and top-1 accuracy (with labels); save the outputs. With `--integer`, also
//! run the integer-only layers against fake quantization on the same data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ndarray::{Axis, concatenate, stack};
use quantscope::ir::TensorData;
use quantscope::load::write_npz;
use quantscope::workflow::{
    RunControl, SampleInputs, Samples, check_labels, choose_batch, classification_rows, run_chunks,
};

use super::args::QuantFlags;
use super::feeds::{BatchFlags, DataFlags, LabelFlags, data_line, open_model, plan_for};
use super::paths::{CommandFiles, MODEL};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Input data: a .npy (the single input), an .npz (arrays by input name, samples on axis
    /// 0), a folder of .npz files (one sample each) or a folder of images (see --preset).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: DataFlags,
    #[command(flatten)]
    labels: LabelFlags,
    /// Write every graph output to this .npz, keyed by output name.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    batch: BatchFlags,
    /// Write the inputs as the model received them (after the image preset) to this .npz,
    /// keyed by input name, samples on axis 0; for reproducing a run elsewhere.
    #[arg(long)]
    save_inputs: Option<PathBuf>,
    /// Also run the Conv/Gemm/MatMul layers on the integer-only path (i32 accumulators,
    /// fixed-point requantization) and compare them with fake quantization, calibrated on
    /// --data with the quantization flags below; prints a per-tensor table.
    #[arg(long)]
    integer: bool,
    #[command(flatten)]
    quant: QuantFlags,
    /// With --integer: write the per-tensor comparison as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Joins per-chunk outputs: along axis 0 for stacked samples, on a new axis 0 (one entry per
/// sample) for per-sample feeds.
fn join(
    chunks: Vec<Vec<(String, TensorData)>>,
    per_sample: bool,
) -> anyhow::Result<Vec<(String, TensorData)>> {
    let Some(first) = chunks.first() else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = first.iter().map(|(n, _)| n.clone()).collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let parts: Vec<&TensorData> = chunks
                .iter()
                .filter_map(|c| c.get(i).map(|p| &p.1))
                .collect();
            let joined = match parts.first() {
                Some(TensorData::F32(_)) => {
                    let views: Vec<_> = parts
                        .iter()
                        .filter_map(|p| p.as_f32())
                        .map(|a| a.view())
                        .collect();
                    join_samples(&views, per_sample).map(TensorData::F32)
                }
                _ => {
                    let views: Vec<_> = parts
                        .iter()
                        .filter_map(|p| p.as_i64())
                        .map(|a| a.view())
                        .collect();
                    join_samples(&views, per_sample).map(TensorData::I64)
                }
            };
            Ok((
                name.clone(),
                joined
                    .with_context(|| format!("output '{name}': the chunks' outputs do not join"))?,
            ))
        })
        .collect()
}

/// Writes the inputs of every sample to `path`: stacked arrays as they are (constants once),
/// per-sample feeds stacked on a new axis 0.
fn save_inputs(samples: &Samples, path: &Path) -> anyhow::Result<()> {
    let arrays: Vec<(String, TensorData)> = match samples.inputs() {
        SampleInputs::Stacked {
            arrays, constants, ..
        } => arrays
            .iter()
            .chain(constants)
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        SampleInputs::PerSample(feeds) => {
            let chunks = feeds
                .iter()
                .map(|f| {
                    f.arrays
                        .iter()
                        .map(|(n, v)| (n.clone(), v.clone()))
                        .collect()
                })
                .collect();
            join(chunks, true)?
        }
    };
    let named: Vec<(&str, &TensorData)> = arrays.iter().map(|(n, v)| (n.as_str(), v)).collect();
    write_npz(path, &named)?;
    println!("wrote {} input(s) to {}", named.len(), path.display());
    Ok(())
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    CommandFiles::new()
        .input(MODEL, &args.model)
        .input("--data", &args.data)
        .maybe_input("--labels", args.labels.labels.as_ref())
        .maybe_output("--out", args.out.as_ref())
        .maybe_output("--save-inputs", args.save_inputs.as_ref())
        .maybe_output("--report", args.report.as_ref())
        .check()?;
    if args.report.is_some() && !args.integer {
        anyhow::bail!("--report holds the --integer comparison; add --integer");
    }
    let model = open_model(&args.model)?;
    let plan = plan_for(&model)?;
    let samples = args
        .flags
        .labelled_samples(&model.graph, &args.data, &args.labels)?;
    let control = RunControl::default();
    let batch = choose_batch(&plan, &samples, args.batch.batch_size, control.options())?;
    println!("{}", data_line("data", &samples, &batch));
    if let Some(path) = &args.save_inputs {
        save_inputs(&samples, path)?;
    }
    let chunks = run_chunks(&samples, batch.size, &control, |_, feeds| {
        plan.run(feeds, None, control.options())
    })?;
    let outputs = join(chunks, samples.is_per_sample())?;
    for (name, value) in &outputs {
        println!(
            "output '{name}': shape {:?} ({})",
            value.shape(),
            value.kind_name()
        );
    }
    if let Some(labels) = &samples.labels {
        let rows = samples.count();
        let (name, scores) = classification_rows(&model.graph, &outputs, rows)
            .with_context(|| format!("labels were given, but no output is [{rows}, classes]"))?;
        check_labels(labels.view(), 0, scores.ncols(), &name)?;
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
        println!(
            "accuracy of '{name}': {:.2}% ({correct}/{rows})",
            100.0 * correct as f64 / rows.max(1) as f64
        );
    }
    if args.integer {
        super::integer::compare(
            &model,
            &samples,
            args.batch.batch_size,
            &args.quant,
            args.report.as_deref(),
        )?;
    }
    if let Some(out) = &args.out {
        let named: Vec<(&str, &TensorData)> =
            outputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
        write_npz(out, &named)?;
        println!("wrote {} output(s) to {}", named.len(), out.display());
    }
    Ok(())
}

/// Chunks joined along the sample axis: stacked when each chunk is one sample without that
/// axis, concatenated otherwise.
fn join_samples<T: Clone>(
    views: &[ndarray::ArrayViewD<'_, T>],
    per_sample: bool,
) -> Result<ndarray::ArrayD<T>, ndarray::ShapeError> {
    if per_sample {
        stack(Axis(0), views)
    } else {
        concatenate(Axis(0), views)
    }
}
