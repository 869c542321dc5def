//! `quantscope export`: quantize as `quantize` does (same flags, or a session file) and write
//! the result as QDQ/baked ONNX, AIMET encodings, a TensorRT cache, a range table or a report.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ndarray::{Array2, Ix1, Ix2};
use quantscope::engine::{Plan, RunOptions};
use quantscope::export::{
    CalibrationSource, Evaluation, ExportFormat, ExportInputs, Session, export_to, import_encodings,
};
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};
use quantscope::metrics::{top1_accuracy, top1_agreement};
use quantscope::quant::QuantizedModel;
use quantscope::quant::cost::ShapeRecorder;

use super::calibrate::collect_stats;
use super::feeds::{plan_for, read_feeds};
use super::quantize::{QuantFlags, model_cost};

/// Calibration batch size (as `quantize` uses).
const CALIBRATION_BATCH: usize = 64;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Calibration data (.npy for the single input, .npz by input name).
    #[arg(long)]
    data: PathBuf,
    /// qdq, baked, aimet, aimet-1.0, trt-cache, ranges (.csv or .json) or report (.md plus
    /// .tensors.csv, .layers.csv and .json beside it).
    #[arg(long)]
    format: ExportFormat,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    flags: QuantFlags,
    /// Take the whole configuration (manual ranges included) from a session file instead of
    /// the flags above.
    #[arg(long)]
    session: Option<PathBuf>,
    /// Encodings to apply as manual ranges first: AIMET JSON (0.6.1 or 1.0.0) or onnxruntime
    /// TensorQuantOverrides.
    #[arg(long)]
    import_encodings: Option<PathBuf>,
    /// Also save the configuration used as a session file.
    #[arg(long)]
    save_session: Option<PathBuf>,
    /// Data to evaluate the report on (default: the calibration data).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Labels of the evaluation data (.npy) for the report's top-1 accuracy.
    #[arg(long)]
    labels: Option<PathBuf>,
}

pub fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let plan = plan_for(&model)?;
    let mut config = match &args.session {
        Some(path) => {
            let (session, report) = Session::load(path, &model.graph)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            session.config
        }
        None => args.flags.config(),
    };
    if let Some(path) = &args.import_encodings {
        apply_encodings(path, &model.graph, &mut config)?;
    }
    let quantizes_activations = config.default.activations.is_some()
        || config.layers.values().any(|l| l.activations.is_some());
    let stats = if quantizes_activations {
        collect_stats(&model.graph, &plan, &args.data, CALIBRATION_BATCH)?
    } else {
        Default::default()
    };
    let quantized = QuantizedModel::prepare(&model.graph, &config, &stats)?;
    if let Some(path) = &args.save_session {
        let calibration = CalibrationSource {
            path: args.data.clone(),
            batch_size: CALIBRATION_BATCH,
        };
        Session::new(&args.model, Some(calibration), config.clone())?.save(path)?;
        println!("wrote session {}", path.display());
    }
    let evaluation = match args.format {
        ExportFormat::Report => Some(evaluate(args, &model.graph, &plan, &config, &quantized)?),
        _ => None,
    };
    let inputs = ExportInputs {
        model: &model,
        config: &config,
        quantized: &quantized,
        evaluation: evaluation.as_ref(),
    };
    let summary = export_to(args.format, &inputs, &args.out)?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    for f in &summary.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// Imports encodings into `config`'s manual ranges, printing what was applied and skipped.
pub fn apply_encodings(
    path: &std::path::Path,
    graph: &quantscope::ir::Graph,
    config: &mut quantscope::quant::QuantConfig,
) -> anyhow::Result<()> {
    let report = import_encodings(path, graph, config)?;
    println!(
        "imported {} activation and {} weight range(s) from {}",
        report.activations.len(),
        report.weights.len(),
        path.display()
    );
    for line in report.skipped_lines() {
        eprintln!("warning: {line}");
    }
    Ok(())
}

/// Float vs quantized accuracy, agreement and size on the evaluation data.
fn evaluate(
    args: &ExportArgs,
    graph: &quantscope::ir::Graph,
    plan: &Plan<'_>,
    config: &quantscope::quant::QuantConfig,
    quantized: &QuantizedModel,
) -> anyhow::Result<Evaluation> {
    let feeds = read_feeds(graph, args.eval_data.as_ref().unwrap_or(&args.data))?;
    let mut shapes = ShapeRecorder::default();
    let float_out = plan.run(feeds.clone(), Some(&mut shapes), RunOptions::default())?;
    let quant_plan = Plan::new(&quantized.graph)?;
    let mut hook = quantized.hook();
    let quant_out = quant_plan.run(feeds, Some(&mut hook), RunOptions::default())?;
    let (float_logits, quant_logits) = (first_logits(&float_out)?, first_logits(&quant_out)?);
    let cost = model_cost(graph, config, quantized, &shapes)?;
    let mut evaluation = Evaluation {
        top1_agreement: Some(top1_agreement(float_logits.view(), quant_logits.view())?),
        size_bytes: Some(cost.size_bytes),
        float32_size_bytes: Some(cost.float32_size_bytes),
        ..Default::default()
    };
    if let Some(path) = &args.labels {
        let labels = match read_arrays(path)?.into_iter().next().map(|a| a.data) {
            Some(TensorData::I64(a)) => a.into_dimensionality::<Ix1>()?,
            _ => anyhow::bail!("{}: labels must be a 1-D integer array", path.display()),
        };
        evaluation.float_accuracy = Some(top1_accuracy(float_logits.view(), labels.view())?);
        evaluation.quantized_accuracy = Some(top1_accuracy(quant_logits.view(), labels.view())?);
    }
    Ok(evaluation)
}

fn first_logits(out: &[(String, TensorData)]) -> anyhow::Result<Array2<f32>> {
    let first = out.first().context("the model has no outputs")?;
    let array = first.1.as_f32().context("the first output is not float")?;
    array
        .clone()
        .into_dimensionality::<Ix2>()
        .context("the first output is not [N, classes]")
}
