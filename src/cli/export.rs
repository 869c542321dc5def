//! `quantscope export`: quantize as `quantize` does (same flags, or a session file) and write
//! the result as QDQ/baked ONNX, AIMET encodings, a TensorRT cache, a range table or a report.

use std::path::PathBuf;

use clap::Args;
use quantscope::export::{
    CalibrationSource, Evaluation, ExportFormat, ExportInputs, Session, export_to,
};
use quantscope::load::load_model;
use quantscope::quant::QuantizedModel;

use super::args::{QuantFlags, apply_encodings};
use super::comparison::compare_on_data;
use super::feeds::{CALIBRATION_BATCH, collect_stats, plan_for};

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
        ExportFormat::Report => {
            let (comparison, cost) = compare_on_data(
                &model.graph,
                &plan,
                &config,
                &quantized,
                args.eval_data.as_ref().unwrap_or(&args.data),
                args.labels.as_deref(),
            )?;
            Some(Evaluation {
                float_accuracy: comparison.float_accuracy,
                quantized_accuracy: comparison.quantized_accuracy,
                top1_agreement: Some(comparison.top1_agreement),
                size_bytes: Some(cost.size_bytes),
                float32_size_bytes: Some(cost.float_size_bytes),
            })
        }
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
