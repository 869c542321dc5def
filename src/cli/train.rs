//! `quantscope qat`: quantization-aware training of a model on labelled data, starting from
//! the PTQ configuration the flags describe; writes the trained model and a JSON report with
//! the float, PTQ and QAT accuracies and the per-epoch curves.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ndarray::Axis;
use quantscope::calib::{ActivationCollector, Method};
use quantscope::export::onnx_writer::{onnx_model_proto, write_model_proto};
use quantscope::ir::TensorData;
use quantscope::load::load_model;
use quantscope::quant::{ActivationQuant, QuantConfig, WeightQuant, WeightScheme};
use quantscope::train::fake_quant::RangeLearning;
use quantscope::train::optim::OptimizerKind;
use quantscope::train::{Labelled, QatConfig, QatInputs, QatOptions, QatProgress, run_qat};
use serde::Serialize;

use quantscope::workflow::sources::{DataSource, read_labels, read_samples};

use super::feeds::plan_for;

/// Samples of the training data used for the activation statistics (PTQ's starting ranges).
const CALIBRATION_SAMPLES: usize = 512;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RangesArg {
    /// Exponential moving average of the batch min/max (the lecture's).
    Ema,
    /// Learned clip (PACT).
    Pact,
    /// Learned step size (LSQ).
    Lsq,
    /// The calibrated ranges, unchanged.
    Fixed,
}

#[derive(Debug, Args)]
pub struct QatArgs {
    /// Model file (.onnx) with one input and class scores as its first output.
    model: PathBuf,
    /// Training samples (.npy or .npz; labels from `labels`/`y` in the .npz or --train-labels).
    #[arg(long)]
    train_data: PathBuf,
    /// Labels of the training samples (.npy), when the data file holds none.
    #[arg(long)]
    train_labels: Option<PathBuf>,
    /// Held-out samples for the accuracies (labels from the .npz or --labels).
    #[arg(long)]
    eval_data: PathBuf,
    /// Labels of the held-out samples (.npy), when the data file holds none.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Weights: int8, int4, int2 (any int<bits>[-asym]), binary, binary-stochastic,
    /// binary-scaled, xnor (XNOR-Net: inner Conv/Gemm layers binary with binary inputs, first
    /// and last int8), ternary (TWN), ttq, kmeans2..8.
    #[arg(long, default_value = "int8")]
    weights: String,
    /// Activation bits (1: binary sign activations, as in BNN); 0 keeps them in float.
    #[arg(long, default_value_t = 8)]
    activations: u32,
    /// Calibration method of the starting activation ranges.
    #[arg(long, default_value = "minmax")]
    calib: Method,
    /// How activation ranges move during training.
    #[arg(long, value_enum, default_value_t = RangesArg::Ema)]
    ranges: RangesArg,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Learning rate (cosine schedule).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// TTQ's threshold factor t (Δ = t·max|W|).
    #[arg(long, default_value_t = quantscope::quant::ternary::TTQ_DEFAULT_THRESHOLD)]
    ttq_threshold: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the trained model (.onnx; quantized weights stored de-quantized).
    #[arg(long)]
    out: PathBuf,
    /// Where to write the JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    weights: String,
    activations: u32,
    float_accuracy: Option<f64>,
    ptq_accuracy: Option<f64>,
    qat_accuracy: Option<f64>,
    epochs: usize,
    train_loss: Vec<f64>,
    eval_accuracy: Vec<Option<f64>>,
    /// The configuration that quantizes the written model to the trained one.
    config: QuantConfig,
}

/// Samples and labels of a data file (labels from `labels_path` or from the file).
fn labelled(
    graph: &quantscope::ir::Graph,
    data: &Path,
    labels_path: Option<&Path>,
    input: &str,
) -> anyhow::Result<Labelled> {
    let samples = read_samples(graph, &DataSource::File(data.to_path_buf()))?;
    let Some(TensorData::F32(x)) = samples.stacked_input(input) else {
        bail!(
            "{}: holds no float samples for input '{input}'",
            data.display()
        );
    };
    let labels = match (labels_path, &samples.labels) {
        (Some(p), _) => read_labels(p)?,
        (None, Some(l)) => l.clone(),
        (None, None) => bail!(
            "{}: holds no labels (`labels` or `y`); pass them with a labels .npy",
            data.display()
        ),
    };
    Labelled::new(x.clone(), labels.to_vec()).with_context(|| format!("{}", data.display()))
}

fn qat_config(args: &QatArgs, graph: &quantscope::ir::Graph) -> anyhow::Result<QatConfig> {
    let activations = match args.activations {
        0 => None,
        1..=16 => Some(ActivationQuant {
            bits: args.activations,
            symmetric: false,
            method: args.calib,
        }),
        b => bail!("--activations {b}: expected 1 to 16 bits, or 0 for float"),
    };
    if args.weights == "xnor" {
        let int8 = WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 8,
                symmetric: true,
            },
            per_channel: true,
        };
        return Ok(QatConfig::xnor_net(
            graph,
            QuantConfig::uniform(Some(int8), activations),
        ));
    }
    let scheme: WeightScheme = args
        .weights
        .parse()
        .map_err(|e: quantscope::quant::QuantError| anyhow::anyhow!("--weights: {}", e.0))?;
    Ok(QatConfig::new(QuantConfig::uniform(
        Some(WeightQuant {
            scheme,
            per_channel: true,
        }),
        activations,
    )))
}

pub fn qat(args: &QatArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let plan = plan_for(&model)?;
    let graph = &model.graph;
    let [input] = graph.inputs.as_slice() else {
        bail!(
            "training supports single-input models; this one has {}",
            graph.inputs.len()
        );
    };
    let train = labelled(
        graph,
        &args.train_data,
        args.train_labels.as_deref(),
        &input.name,
    )?;
    let eval = labelled(graph, &args.eval_data, args.labels.as_deref(), &input.name)?;
    let config = qat_config(args, graph)?;

    let calibration = train.x.slice_axis(
        Axis(0),
        ndarray::Slice::from(0..train.len().min(CALIBRATION_SAMPLES)),
    );
    let mut collector = ActivationCollector::new();
    collector.run_batches(&plan, &input.name, calibration, 64)?;
    let stats = collector.into_stats();

    let options = QatOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        optimizer: match args.optimizer {
            OptimizerArg::Adam => OptimizerKind::ADAM,
            OptimizerArg::Sgd => OptimizerKind::SGD,
        },
        ranges: match args.ranges {
            RangesArg::Ema => RangeLearning::EMA,
            RangesArg::Pact => RangeLearning::Pact,
            RangesArg::Lsq => RangeLearning::Lsq,
            RangesArg::Fixed => RangeLearning::Fixed,
        },
        ttq_threshold: args.ttq_threshold,
        seed: args.seed,
        ..QatOptions::default()
    };
    let inputs = QatInputs {
        graph,
        config: &config,
        stats: &stats,
        train: &train,
        eval: Some(&eval),
    };
    let mut printed = 0;
    let mut progress = |p: &QatProgress<'_>| {
        if p.curve.len() > printed {
            printed = p.curve.len();
            if let Some(point) = p.curve.last() {
                let accuracy = point
                    .eval_accuracy
                    .map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
                println!(
                    "epoch {}/{}: train loss {:.4}, held-out accuracy {accuracy}",
                    point.epoch, p.epochs, point.train_loss
                );
            }
        }
    };
    let result = run_qat(&inputs, &options, &mut progress, &AtomicBool::new(false))?;
    if !result.bypassed_activations.is_empty() {
        println!(
            "XNOR-Net: sign is the activation of binarized layers; made Identity: {}",
            result.bypassed_activations.join(", ")
        );
    }
    let show = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
    println!(
        "top-1 accuracy: float {}, PTQ {}, QAT {}",
        show(result.float_accuracy),
        show(result.ptq_accuracy),
        show(result.qat_accuracy)
    );
    write_model_proto(
        &onnx_model_proto(&result.graph)?,
        &args.out,
        &[args.model.as_path()],
    )?;
    println!("wrote {}", args.out.display());
    if let Some(path) = &args.report {
        let report = Report {
            model: args.model.display().to_string(),
            weights: args.weights.clone(),
            activations: args.activations,
            float_accuracy: result.float_accuracy,
            ptq_accuracy: result.ptq_accuracy,
            qat_accuracy: result.qat_accuracy,
            epochs: result.epochs,
            train_loss: result.curve.iter().map(|p| p.train_loss).collect(),
            eval_accuracy: result.curve.iter().map(|p| p.eval_accuracy).collect(),
            config: result.config,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
