//! `quantscope quantize`: quantize a model's weights (any scheme) and input activations,
//! print a per-tensor table (range, S, Z, MSE, SQNR) and float vs quantized accuracy.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use quantscope::jobs::pipeline::Cost;
use quantscope::load::load_model;
use quantscope::quant::{QuantConfig, QuantizedModel};
use serde::Serialize;

use super::args::{QuantFlags, apply_encodings};
use super::comparison::{ModelComparison, compare_on_data};
use super::feeds::{CALIBRATION_BATCH, collect_stats, plan_for};

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Calibration data (.npy for the single input, .npz by input name).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: QuantFlags,
    /// Data to evaluate on (default: the calibration data).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Labels of the evaluation data (.npy) for top-1 accuracy.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Learn each weight's rounding with AdaRound on the calibration data (linear schemes).
    #[arg(long)]
    adaround: bool,
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
    cost: Cost,
    weights: &'a [quantscope::quant::fake::WeightReport],
    activations: &'a [quantscope::quant::fake::ActivationReport],
    comparison: ModelComparison,
}

pub fn quantize(args: &QuantizeArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let plan = plan_for(&model)?;
    let mut config = args.flags.config();
    if let Some(path) = &args.import_encodings {
        apply_encodings(path, &model.graph, &mut config)?;
    }
    let stats = if config.default.activations.is_some() {
        collect_stats(&model.graph, &plan, &args.data, CALIBRATION_BATCH)?
    } else {
        Default::default()
    };
    let (rounded, config) = match args.adaround {
        true => {
            let r = super::adaround::adaround(&model.graph, &config, &args.data)?;
            (Some(r.graph), r.config)
        }
        false => (None, config),
    };
    let quantized =
        QuantizedModel::prepare(rounded.as_ref().unwrap_or(&model.graph), &config, &stats)?;

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

    let (comparison, cost) = compare_on_data(
        &model.graph,
        &plan,
        &config,
        &quantized,
        args.eval_data.as_ref().unwrap_or(&args.data),
        args.labels.as_deref(),
    )?;
    println!();
    if let (Some(f), Some(q)) = (comparison.float_accuracy, comparison.quantized_accuracy) {
        println!(
            "top-1 accuracy: float {:.2}%, quantized {:.2}%",
            100.0 * f,
            100.0 * q
        );
    }
    println!(
        "model size: {:.1} KiB vs {:.1} KiB in float32 ({:.2}x smaller); BitOps: {:.3e} vs {:.3e} in float ({:.1}x fewer)",
        cost.size_bytes / 1024.0,
        cost.float_size_bytes / 1024.0,
        cost.float_size_bytes / cost.size_bytes.max(1.0),
        cost.bitops as f64,
        cost.float_bitops as f64,
        cost.float_bitops as f64 / (cost.bitops.max(1)) as f64
    );
    println!(
        "top-1 agreement with float: {:.2}%; mean output KL: {:.3e} nats",
        100.0 * comparison.top1_agreement,
        comparison.mean_output_kl
    );
    if let Some(path) = &args.report {
        let report = Report {
            model: args.model.display().to_string(),
            config: &config,
            cost,
            weights: &quantized.weights,
            activations: &quantized.activations,
            comparison,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
