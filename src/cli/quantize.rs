//! `quantscope quantize`: quantize a model's weights (any scheme) and input activations,
//! print a per-tensor table (range, S, Z, MSE, SQNR) and float vs quantized accuracy.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use ndarray::Ix2;
use quantscope::calib::Method;
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};
use quantscope::metrics::{mean_softmax_kl, top1_accuracy, top1_agreement};
use quantscope::quant::{ActivationQuant, QuantConfig, QuantizedModel, WeightQuant, WeightScheme};
use serde::Serialize;

use quantscope::quant::cost::{ShapeRecorder, StorageScheme, graph_size, layer_costs};

use super::calibrate::collect_stats;
use super::feeds::{plan_for, read_feeds};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum GranularityArg {
    Tensor,
    Channel,
}

/// The scheme, granularity, bits and calibration flags shared by `quantize` and `export`.
#[derive(Debug, Args)]
pub struct QuantFlags {
    /// Weight scheme: int8, int4, int8-asym, binary, binary-scaled, binary-stochastic, ternary
    /// (TWN), ttq, kmeans4, ...
    #[arg(long, default_value = "int8")]
    pub weights: WeightScheme,
    /// One set of weight parameters per tensor or per output channel.
    #[arg(long, value_enum, default_value_t = GranularityArg::Channel)]
    granularity: GranularityArg,
    /// Activation range method: minmax, ema, batch-mean, percentile:99.99, mse, aciq-gauss,
    /// aciq-laplace, kl.
    #[arg(long, default_value = "minmax")]
    pub calib: Method,
    /// Activation bits (asymmetric, unsigned grid).
    #[arg(long, default_value_t = 8)]
    pub act_bits: u32,
    /// Keep activations in float (weights only).
    #[arg(long)]
    pub float_activations: bool,
}

impl QuantFlags {
    /// The uniform configuration these flags describe.
    pub fn config(&self) -> QuantConfig {
        let activations = (!self.float_activations).then_some(ActivationQuant {
            bits: self.act_bits,
            symmetric: false,
            method: self.calib,
        });
        QuantConfig::uniform(
            Some(WeightQuant {
                scheme: self.weights,
                per_channel: matches!(self.granularity, GranularityArg::Channel),
            }),
            activations,
        )
    }
}

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
pub(super) struct Cost {
    pub(super) size_bytes: f64,
    pub(super) float32_size_bytes: f64,
    bitops: u64,
    float_bitops: u64,
}

#[derive(Serialize)]
struct ModelComparison {
    float_accuracy: Option<f64>,
    quantized_accuracy: Option<f64>,
    top1_agreement: f64,
    mean_output_kl: f64,
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
        super::export::apply_encodings(path, &model.graph, &mut config)?;
    }
    let stats = if config.default.activations.is_some() {
        collect_stats(&model.graph, &plan, &args.data, 64)?
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

    let eval_path = args.eval_data.as_ref().unwrap_or(&args.data);
    let feeds = read_feeds(&model.graph, eval_path)?;
    let mut shapes = ShapeRecorder::default();
    let float_out = plan.run(feeds.clone(), Some(&mut shapes), RunOptions::default())?;
    let cost = model_cost(&model.graph, &config, &quantized, &shapes)?;
    let quant_plan = Plan::new(&quantized.graph)?;
    let mut hook = quantized.hook();
    let quant_out = quant_plan.run(feeds, Some(&mut hook), RunOptions::default())?;
    let logits = |out: &[(String, TensorData)]| -> anyhow::Result<ndarray::Array2<f32>> {
        let first = out.first().context("the model has no outputs")?;
        let array = first.1.as_f32().context("the first output is not float")?;
        array
            .clone()
            .into_dimensionality::<Ix2>()
            .context("the first output is not [N, classes]")
    };
    let (float_logits, quant_logits) = (logits(&float_out)?, logits(&quant_out)?);
    let mut comparison = ModelComparison {
        float_accuracy: None,
        quantized_accuracy: None,
        top1_agreement: top1_agreement(float_logits.view(), quant_logits.view())?,
        mean_output_kl: mean_softmax_kl(float_logits.view(), quant_logits.view())?,
    };
    if let Some(labels_path) = &args.labels {
        let labels = match read_arrays(labels_path)?.into_iter().next().map(|a| a.data) {
            Some(TensorData::I64(a)) => a.into_dimensionality::<ndarray::Ix1>()?,
            _ => anyhow::bail!(
                "{}: labels must be a 1-D integer array",
                labels_path.display()
            ),
        };
        comparison.float_accuracy = Some(top1_accuracy(float_logits.view(), labels.view())?);
        comparison.quantized_accuracy = Some(top1_accuracy(quant_logits.view(), labels.view())?);
    }
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
        cost.float32_size_bytes / 1024.0,
        cost.float32_size_bytes / cost.size_bytes.max(1.0),
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

/// Parameter storage and BitOps of the quantized model (shapes from a recorded float run).
pub(super) fn model_cost(
    graph: &quantscope::ir::Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    shapes: &ShapeRecorder,
) -> anyhow::Result<Cost> {
    let storage: std::collections::HashMap<&str, StorageScheme> = quantized
        .weights
        .iter()
        .filter_map(|w| {
            let quant = config.layer(&w.node).weights?;
            Some((w.tensor.as_str(), quant.storage()))
        })
        .collect();
    let size = graph_size(graph, |name, _| {
        storage.get(name).copied().unwrap_or(StorageScheme::FLOAT32)
    });
    let quantized_inputs: std::collections::HashSet<&str> = quantized
        .activations
        .iter()
        .map(|a| a.tensor.as_str())
        .collect();
    let layers = layer_costs(graph, &shapes.shapes, |node| {
        let weight_bits = config
            .layer(&node.name)
            .weights
            .filter(|_| node.input(1).is_some_and(|w| storage.contains_key(w)))
            .map_or(32, |w| w.scheme.bits());
        let activation_bits = match (config.layer(&node.name).activations, node.input(0)) {
            (Some(a), Some(input)) if quantized_inputs.contains(input) => a.bits,
            _ => 32,
        };
        (weight_bits, activation_bits)
    })?;
    Ok(Cost {
        size_bytes: size.total_bytes(),
        float32_size_bytes: size.float32_bits as f64 / 8.0,
        bitops: layers.iter().map(|l| l.bitops).sum(),
        float_bitops: layers.iter().map(|l| l.float_bitops).sum(),
    })
}
