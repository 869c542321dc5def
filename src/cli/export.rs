//! `quantscope export`: quantize as `quantize` does (same flags, or a session file) and write
//! the result as QDQ/baked ONNX, AIMET encodings, a TensorRT cache, a range table or a report.

use std::path::PathBuf;

use clap::Args;
use quantscope::export::{
    CalibrationSource, ExportFormat, ExportInputs, Session, export_to, report_paths,
};
use quantscope::quant::QuantizedModel;
use quantscope::workflow::{
    DEFAULT_BATCH, EvalOptions, Evaluator, RunControl, calibrate as calibrate_samples,
};

use super::adaround::AdaRoundFlags;
use super::args::{QuantFlags, apply_encodings};
use super::feeds::{BatchFlags, DataFlags, LabelFlags, data_line, open_model, plan_for};
use super::paths::{CommandFiles, MODEL};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Calibration data: a .npy, an .npz (arrays by input name, samples on axis 0), a folder
    /// of .npz files (one sample each) or a folder of images (see --preset).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    data_flags: DataFlags,
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
    /// Data to evaluate the report on, in the same forms (default: the calibration data).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    #[command(flatten)]
    labels: LabelFlags,
    #[command(flatten)]
    batch: BatchFlags,
    #[command(flatten)]
    adaround: AdaRoundFlags,
}

/// The model, data, labels, session and encodings it reads; the output (and the report's
/// files beside it) and the session it writes.
fn files(args: &ExportArgs) -> CommandFiles {
    let mut files = CommandFiles::new()
        .input(MODEL, &args.model)
        .input("--data", &args.data)
        .maybe_input("--eval-data", args.eval_data.as_ref())
        .maybe_input("--labels", args.labels.labels.as_ref())
        .maybe_input("--session", args.session.as_ref())
        .maybe_input("--import-encodings", args.import_encodings.as_ref());
    if args.format == ExportFormat::Report {
        let [md, tensors, layers, json] = report_paths(&args.out);
        files = files
            .output("--out", &md)
            .output("the report's tensor table", &tensors)
            .output("the report's layer table", &layers)
            .output("the report's JSON", &json);
    } else {
        files = files.output("--out", &args.out);
    }
    files.maybe_output("--save-session", args.save_session.as_ref())
}

pub fn export(args: &ExportArgs) -> anyhow::Result<()> {
    files(args).check()?;
    let model = open_model(&args.model)?;
    plan_for(&model)?;
    let graph = &model.graph;
    let control = RunControl::default();
    let mut config = match &args.session {
        Some(path) => {
            let (session, report) = Session::load(path, &model.graph)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            session.config
        }
        None => args.flags.config(graph)?,
    };
    if let Some(path) = &args.import_encodings {
        apply_encodings(path, &model.graph, &mut config)?;
    }
    let quantizes_activations = config.default.activations.is_some()
        || config.layers.values().any(|l| l.activations.is_some());
    let calibration = args.data_flags.samples(graph, &args.data)?;
    let (stats, batch_size) = if quantizes_activations {
        let c = calibrate_samples(graph, &calibration, args.batch.batch_size, &control)?;
        println!("{}", data_line("calibration data", &calibration, &c.batch));
        (c.stats, c.batch.size)
    } else {
        (
            Default::default(),
            args.batch.batch_size.unwrap_or(DEFAULT_BATCH),
        )
    };
    let config = args.adaround.apply(graph, config, &calibration)?;
    let quantized = QuantizedModel::prepare(&model.graph, &config, &stats)?;
    for w in &quantized.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &args.save_session {
        let calibration = CalibrationSource {
            path: args.data.clone(),
            batch_size,
        };
        Session::new(&args.model, Some(calibration), config.clone())?.save(path)?;
        println!("wrote session {}", path.display());
    }
    let evaluation = match args.format {
        ExportFormat::Report => {
            let path = args.eval_data.as_ref().unwrap_or(&args.data);
            let samples = args
                .data_flags
                .labelled_samples(graph, path, &args.labels)?;
            let evaluation = Evaluator::new(graph, &samples, args.batch.batch_size, &control)?
                .evaluate_prepared(
                    graph,
                    &config,
                    &quantized,
                    &EvalOptions::full(None),
                    &control,
                )?;
            println!(
                "{}",
                data_line("evaluation data", &samples, &evaluation.batch)
            );
            Some(evaluation)
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
