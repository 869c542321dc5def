//! The QAT job: epochs over shuffled batches, progress and cancel, per-epoch curves, and the
//! result as a graph with the trained (de-quantized) weights plus the configuration to apply
//! to it. A plain function, so the app runs it on a worker and the CLI calls it directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{ArrayD, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64;
use serde::Serialize;

use super::config::{QatConfig, QatOptions};
use super::trainer::Trainer;
use crate::calib::CalibrationStats;
use crate::engine::{Plan, RunOptions};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::metrics::top1_accuracy;
use crate::quant::{QuantConfig, QuantizedModel};

/// Samples (along axis 0) and their class labels.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub x: ArrayD<f32>,
    pub y: Vec<i64>,
}

impl Labelled {
    /// Checks that there is one label per sample.
    pub fn new(x: ArrayD<f32>, y: Vec<i64>) -> Result<Self> {
        if x.ndim() == 0 || x.len_of(Axis(0)) != y.len() || y.is_empty() {
            return Err(Error::Input {
                name: "data".into(),
                msg: format!(
                    "{} samples (shape {:?}) with {} labels",
                    if x.ndim() == 0 { 0 } else { x.len_of(Axis(0)) },
                    x.shape(),
                    y.len()
                ),
            });
        }
        Ok(Labelled { x, y })
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Everything a run starts from.
pub struct QatInputs<'a> {
    pub graph: &'a Graph,
    pub config: &'a QatConfig,
    /// Calibration statistics of the activations (for ranges not set by hand).
    pub stats: &'a BTreeMap<String, CalibrationStats>,
    pub train: &'a Labelled,
    /// Held-out data for the accuracy curve and the figures; none: no accuracies.
    pub eval: Option<&'a Labelled>,
}

/// One point of the curves, after each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochPoint {
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with the weights as they were then).
    pub train_loss: f64,
    /// Fraction of training samples classified right during the epoch.
    pub train_accuracy: f64,
    /// Held-out accuracy after the epoch (a fraction).
    pub eval_accuracy: Option<f64>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy)]
pub struct QatProgress<'a> {
    pub epoch: usize,
    pub epochs: usize,
    /// Batches done in this epoch, of `batches`.
    pub batch: usize,
    pub batches: usize,
    /// Fraction of the whole run done.
    pub fraction: f32,
    /// The curves so far.
    pub curve: &'a [EpochPoint],
    /// Reference accuracies, once measured.
    pub float_accuracy: Option<f64>,
    pub ptq_accuracy: Option<f64>,
}

/// What a run gives back.
#[derive(Debug, Clone)]
pub struct QatResult {
    /// The model with its trained weights (quantized weights de-quantized).
    pub graph: Graph,
    /// The configuration that quantizes `graph` to the trained model.
    pub config: QuantConfig,
    /// Layers trained as XNOR-Net layers (their binary inputs are not in `config`).
    pub xnor_layers: Vec<String>,
    /// Activations in front of XNOR layers made Identity in `graph` (see
    /// [`QatConfig::xnor_graph`]).
    pub bypassed_activations: Vec<String>,
    /// Tensors with binary (sign) activations during training (not in `config`).
    pub binary_activations: Vec<String>,
    pub float_accuracy: Option<f64>,
    /// Before training: the PTQ model.
    pub ptq_accuracy: Option<f64>,
    /// After training.
    pub qat_accuracy: Option<f64>,
    pub curve: Vec<EpochPoint>,
    pub epochs: usize,
}

/// Batch size for evaluation passes.
const EVAL_BATCH: usize = 256;

/// Top-1 accuracy of the float model on `data`.
pub fn float_accuracy(
    graph: &Graph,
    input: &str,
    data: &Labelled,
    cancel: &AtomicBool,
) -> Result<f64> {
    let plan = Plan::new(graph)?;
    accuracy_of(&plan, input, data, None, cancel)
}

/// Top-1 accuracy of the PTQ model `prepare` gives for `config`.
pub fn ptq_accuracy(
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    input: &str,
    data: &Labelled,
    cancel: &AtomicBool,
) -> Result<f64> {
    let model = QuantizedModel::prepare(graph, config, stats)?;
    let plan = Plan::new(&model.graph)?;
    accuracy_of(&plan, input, data, Some(&model), cancel)
}

fn accuracy_of(
    plan: &Plan<'_>,
    input: &str,
    data: &Labelled,
    model: Option<&QuantizedModel>,
    cancel: &AtomicBool,
) -> Result<f64> {
    let mut logits_parts = Vec::new();
    let n = data.len();
    let mut start = 0;
    // A model with a fixed batch size runs in passes of that size.
    let step = match plan
        .graph()
        .inputs
        .first()
        .and_then(|i| i.shape.as_ref())
        .and_then(|d| d.first())
    {
        Some(crate::ir::Dim::Fixed(k)) => (*k).max(1),
        _ => EVAL_BATCH,
    };
    while start < n {
        let end = (start + step).min(n);
        let feeds = HashMap::from([(
            input.to_string(),
            TensorData::F32(
                data.x
                    .slice_axis(Axis(0), ndarray::Slice::from(start..end))
                    .to_owned(),
            ),
        )]);
        let options = RunOptions {
            cancel: Some(cancel),
        };
        let mut hook = model.map(|m| m.hook());
        let outputs = match hook.as_mut() {
            Some(h) => plan.run(feeds, Some(h), options)?,
            None => plan.run(feeds, None, options)?,
        };
        let logits = outputs
            .into_iter()
            .next()
            .and_then(|(_, t)| match t {
                TensorData::F32(a) => Some(a),
                TensorData::I64(_) => None,
            })
            .ok_or_else(|| Error::Graph("the model output is not a float tensor".into()))?;
        let len = logits.len();
        let rows = logits
            .into_shape_with_order((end - start, len / (end - start).max(1)))
            .map_err(|e| Error::Graph(e.to_string()))?;
        logits_parts.push(rows);
        start = end;
    }
    let views: Vec<_> = logits_parts.iter().map(|p| p.view()).collect();
    let logits = ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Graph(e.to_string()))?;
    let labels = ndarray::Array1::from(data.y.clone());
    top1_accuracy(logits.view(), labels.view()).map_err(|e| Error::Input {
        name: "labels".into(),
        msg: e.to_string(),
    })
}

/// Accuracy of a trainer on `data`.
fn trainer_accuracy(trainer: &mut Trainer<'_>, data: &Labelled) -> Result<f64> {
    let stats = trainer.evaluate(data.x.view(), &data.y, EVAL_BATCH)?;
    Ok(stats.correct as f64 / stats.samples.max(1) as f64)
}

/// Runs quantization-aware training. `progress` is called after every batch; `cancel` stops
/// the run between batches (and inside a forward pass) with [`Error::Cancelled`].
pub fn run_qat(
    inputs: &QatInputs<'_>,
    options: &QatOptions,
    progress: &mut (dyn FnMut(&QatProgress<'_>) + Send),
    cancel: &AtomicBool,
) -> Result<QatResult> {
    options.check()?;
    let graph = inputs.graph;
    let (trained_on, bypassed_activations) = inputs.config.xnor_graph(graph);
    let mut trainer = Trainer::new(&trained_on, inputs.config, inputs.stats, options)?;
    let input = trainer.input_name().to_string();
    let train = inputs.train;
    trainer.probe(train.x.view())?;

    let float_accuracy = inputs
        .eval
        .map(|e| float_accuracy(graph, &input, e, cancel))
        .transpose()?;
    let ptq_accuracy = match inputs.eval {
        None => None,
        Some(e) if trainer.is_ptq_expressible() => Some(ptq_accuracy(
            graph,
            &inputs.config.quant,
            inputs.stats,
            &input,
            e,
            cancel,
        )?),
        Some(e) => Some(trainer_accuracy(&mut trainer, e)?),
    };

    let n = train.len();
    let batches = n.div_ceil(options.batch_size);
    let total_steps = batches * options.epochs;
    let mut curve: Vec<EpochPoint> = Vec::with_capacity(options.epochs);
    let mut rng = Pcg64::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..options.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for b in 0..batches {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let idx = &order[b * options.batch_size..((b + 1) * options.batch_size).min(n)];
            let x = train.x.select(Axis(0), idx);
            let y: Vec<i64> = idx.iter().map(|&i| train.y[i]).collect();
            let step = epoch * batches + b;
            let lr = options
                .schedule
                .rate(options.learning_rate, step, total_steps, batches);
            let stats = rayon::scope(|_| trainer.train_step(x.view(), &y, lr, Some(cancel)))?;
            loss_sum += stats.loss_sum;
            correct += stats.correct;
            progress(&QatProgress {
                epoch,
                epochs: options.epochs,
                batch: b + 1,
                batches,
                fraction: (step + 1) as f32 / total_steps as f32,
                curve: &curve,
                float_accuracy,
                ptq_accuracy,
            });
        }
        let eval_accuracy = inputs
            .eval
            .map(|e| rayon::scope(|_| trainer_accuracy(&mut trainer, e)))
            .transpose()?;
        curve.push(EpochPoint {
            epoch: epoch + 1,
            train_loss: loss_sum / n as f64,
            train_accuracy: correct as f64 / n as f64,
            eval_accuracy,
        });
        progress(&QatProgress {
            epoch,
            epochs: options.epochs,
            batch: batches,
            batches,
            fraction: ((epoch + 1) * batches) as f32 / total_steps as f32,
            curve: &curve,
            float_accuracy,
            ptq_accuracy,
        });
    }
    let qat_accuracy = curve.last().and_then(|p| p.eval_accuracy);
    Ok(QatResult {
        graph: trainer.trained_graph()?,
        config: trainer.trained_config()?,
        xnor_layers: inputs.config.xnor_layers.iter().cloned().collect(),
        bypassed_activations,
        binary_activations: trainer.binary_activations(),
        float_accuracy,
        ptq_accuracy,
        qat_accuracy,
        curve,
        epochs: options.epochs,
    })
}
