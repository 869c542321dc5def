//! `quantscope quantize`: quantize a model's weights (any scheme) and input activations,
//! print a per-tensor table (range, S, Z, MSE, SQNR), then every output against float (SQNR,
//! cosine, max error, KL), accuracy and agreement for classifiers, and size and BitOps per
//! inference.

use std::path::PathBuf;

use clap::Args;
use quantscope::export::write_bytes_atomic;
use quantscope::quant::{QuantConfig, QuantizedModel};
use quantscope::workflow::{
    Cost, EvalOptions, Evaluation, Evaluator, RunControl, calibrate as calibrate_samples,
};
use serde::Serialize;

use super::adaround::AdaRoundFlags;
use super::args::QuantFlags;
use super::feeds::{BatchFlags, DataFlags, LabelFlags, data_line, open_runnable};
use super::format::db;
use super::paths::{CommandFiles, MODEL};

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Calibration data: a .npy, an .npz (arrays by input name, samples on axis 0), a folder
    /// of .npz files (one sample each) or a folder of images (see --preset).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: QuantFlags,
    #[command(flatten)]
    data_flags: DataFlags,
    /// Data to evaluate on, in the same forms (default: the calibration data).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    #[command(flatten)]
    labels: LabelFlags,
    #[command(flatten)]
    batch: BatchFlags,
    #[command(flatten)]
    adaround: AdaRoundFlags,
    /// Write the per-tensor table and model metrics as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Encodings to apply as manual ranges: AIMET JSON (0.6.1 or 1.0.0) or onnxruntime
    /// TensorQuantOverrides.
    #[arg(long)]
    import_encodings: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    config: &'a QuantConfig,
    cost: Option<Cost>,
    weights: &'a [quantscope::quant::fake::WeightReport],
    activations: &'a [quantscope::quant::fake::ActivationReport],
    evaluation: &'a Evaluation,
}

/// Prints every output's error, the classification figures and the cost per inference.
fn print_evaluation(e: &Evaluation) {
    println!(
        "\n{:<36} {:>9} {:>9} {:>12} {:>11}",
        "output", "SQNR dB", "cosine", "max |err|", "KL"
    );
    for o in &e.outputs {
        println!(
            "{:<36} {:>9} {:>9.5} {:>12.4e} {:>11}",
            o.name,
            db(Some(o.sqnr_db)),
            o.cosine,
            o.max_abs_error,
            o.kl.map_or("-".into(), |k| format!("{k:.3e}"))
        );
    }
    if let Some(worst) = e.worst_output_sqnr_db() {
        println!("worst output SQNR: {} dB", db(Some(worst)));
    }
    if let Some(c) = &e.classification {
        if let (Some(f), Some(q)) = (c.float_accuracy, c.quant_accuracy) {
            println!(
                "top-1 accuracy: float {:.2}%, quantized {:.2}%",
                100.0 * f,
                100.0 * q
            );
        }
        println!(
            "classes of '{}': top-1 agreement with float {:.2}%; mean output KL {:.3e} nats",
            c.output,
            100.0 * c.agreement,
            c.output_kl
        );
    }
    if let Some(cost) = e.cost {
        println!(
            "model size: {:.1} KiB vs {:.1} KiB in float32 ({:.2}x smaller); BitOps per inference: {:.3e} vs {:.3e} in float ({:.1}x fewer)",
            cost.size_bytes / 1024.0,
            cost.float_size_bytes / 1024.0,
            cost.float_size_bytes / cost.size_bytes.max(1.0),
            cost.bitops as f64,
            cost.float_bitops as f64,
            cost.float_bitops as f64 / (cost.bitops.max(1)) as f64
        );
    }
}

pub fn quantize(args: &QuantizeArgs) -> anyhow::Result<()> {
    CommandFiles::new()
        .input(MODEL, &args.model)
        .input("--data", &args.data)
        .maybe_input("--eval-data", args.eval_data.as_ref())
        .maybe_input("--labels", args.labels.labels.as_ref())
        .maybe_input("--import-encodings", args.import_encodings.as_ref())
        .maybe_output("--report", args.report.as_ref())
        .check()?;
    let model = open_runnable(&args.model)?;
    let graph = &model.graph;
    let config = args
        .flags
        .config_with_encodings(graph, args.import_encodings.as_deref())?;
    let calibration = args.data_flags.samples(graph, &args.data)?;
    let evaluation_path = args.eval_data.as_ref().unwrap_or(&args.data);
    let evaluation_samples =
        args.data_flags
            .labelled_samples(graph, evaluation_path, &args.labels)?;
    let control = RunControl::default();
    let stats = if config.default.activations.is_some() {
        let c = calibrate_samples(graph, &calibration, args.batch.batch_size, &control)?;
        println!("{}", data_line("calibration data", &calibration, &c.batch));
        c.stats
    } else {
        Default::default()
    };
    let config = args.adaround.apply(graph, config, &calibration)?;
    let quantized = QuantizedModel::prepare(graph, &config, &stats)?;
    for w in &quantized.warnings {
        eprintln!("warning: {w}");
    }

    println!(
        "{:<36} {:<14} {:>23} {:>11} {:>5} {:>11} {:>8}",
        "weight", "scheme", "range", "S", "Z", "MSE", "SQNR dB"
    );
    for w in &quantized.weights {
        let (range, scale, zero) = match (w.ranges.as_slice(), w.params.as_slice()) {
            ([r], [p]) => (
                format!("[{:.4}, {:.4}]", r.0, r.1),
                format!("{:.3e}", p.scale),
                p.zero_point.to_string(),
            ),
            ([], _) => ("-".into(), "-".into(), "-".into()),
            (many, _) => (
                format!("{} channels", many.len()),
                "per-ch".into(),
                "per-ch".into(),
            ),
        };
        println!(
            "{:<36} {:<14} {range:>23} {scale:>11} {zero:>5} {:>11.3e} {:>8.2}",
            w.tensor, w.scheme, w.metrics.mse, w.metrics.sqnr_db
        );
    }
    if !quantized.activations.is_empty() {
        println!(
            "\n{:<36} {:<14} {:>23} {:>11} {:>5}",
            "activation", "method", "range", "S", "Z"
        );
        for a in &quantized.activations {
            let method = if a.manual {
                "manual".to_string()
            } else {
                args.flags.calib.to_string()
            };
            println!(
                "{:<36} {method:<14} {:>23} {:>11.3e} {:>5}",
                a.tensor,
                format!("[{:.4}, {:.4}]", a.range.0, a.range.1),
                a.params.scale,
                a.params.zero_point
            );
        }
    }

    let evaluator = Evaluator::new(graph, &evaluation_samples, args.batch.batch_size, &control)?;
    println!(
        "\n{}",
        data_line("evaluation data", &evaluation_samples, evaluator.batch())
    );
    let options = EvalOptions {
        cost: true,
        ..Default::default()
    };
    let evaluation = evaluator.evaluate_prepared(graph, &config, &quantized, &options, &control)?;
    print_evaluation(&evaluation);
    if let Some(path) = &args.report {
        let report = Report {
            model: args.model.display().to_string(),
            config: &config,
            cost: evaluation.cost,
            weights: &quantized.weights,
            activations: &quantized.activations,
            evaluation: &evaluation,
        };
        write_bytes_atomic(path, &[], serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
