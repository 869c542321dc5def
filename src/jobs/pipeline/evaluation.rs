//! Evaluation of a quantization config against the float model on the evaluation data, batch
//! by batch: logit comparison (accuracy, agreement, output KL), each quantizable layer's
//! output SQNR, size and BitOps, and the exact figures of one focused tensor.

use std::collections::{BTreeMap, HashMap, HashSet};

use ndarray::{ArrayD, Axis, Ix2};

use super::cost::{Cost, quantized_cost};
use super::data::DataSet;
use super::feeds::{batch_feeds, batches, input_name};
use super::focus::{Focus, FocusFigures, activation_focus, weight_focus};
use crate::calib::CalibrationStats;
use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
use crate::ir::{Graph, TensorData};
use crate::jobs::{JobContext, JobError};
use crate::metrics::{LogitComparison, compare_logits, sqnr_db};
use crate::quant::config::QUANTIZABLE_OPS;
use crate::quant::cost::ShapeRecorder;
use crate::quant::fake::{ActivationReport, WeightReport};
use crate::quant::{QuantConfig, QuantizedModel};

/// Output SQNR of one quantizable layer over the evaluation data.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    pub node: String,
    pub sqnr_db: f64,
}

/// Everything an evaluation computes for one config.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub comparison: LogitComparison,
    /// Quantizable layers in graph order.
    pub layers: Vec<LayerError>,
    pub weights: Vec<WeightReport>,
    pub activations: Vec<ActivationReport>,
    pub cost: Cost,
    pub focus: Option<FocusFigures>,
    /// Evaluation data description (and whether it is synthetic).
    pub data: String,
}

/// Records the outputs of the quantizable layers (and of one focus tensor) of a run, passing
/// every tensor on to `inner` afterwards.
struct Recorder<'a> {
    layers: &'a HashSet<String>,
    focus: Option<&'a str>,
    outputs: HashMap<String, ArrayD<f32>>,
    inner: Option<&'a mut dyn TensorHook>,
}

impl<'a> Recorder<'a> {
    fn new(
        layers: &'a HashSet<String>,
        focus: Option<&'a str>,
        inner: Option<&'a mut dyn TensorHook>,
    ) -> Self {
        Recorder {
            layers,
            focus,
            outputs: HashMap::new(),
            inner,
        }
    }
}

impl TensorHook for Recorder<'_> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> crate::Result<()> {
        let wanted = site
            .producer
            .is_some_and(|node| self.layers.contains(&node.name))
            || self.focus == Some(site.name);
        if wanted && let Some(values) = value.as_f32() {
            let key = match site.producer {
                Some(node) if self.layers.contains(&node.name) => node.name.clone(),
                _ => site.name.to_string(),
            };
            self.outputs.insert(key, values.clone());
            if self.focus == Some(site.name) {
                self.outputs
                    .insert(format!("focus:{}", site.name), values.clone());
            }
        }
        match self.inner.as_mut() {
            Some(inner) => inner.on_tensor(site, value),
            None => Ok(()),
        }
    }
}

/// Evaluates `config` on the evaluation data: float and quantized runs batch by batch.
pub fn evaluate(
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    data: &DataSet,
    focus: Option<&Focus>,
    ctx: &JobContext,
) -> Result<Evaluation, JobError> {
    evaluate_against(graph, graph, config, stats, data, focus, ctx)
}

/// Evaluates `config` applied to `graph` against the float model `float_graph` (they differ
/// when a transform such as bias correction changes the graph only for quantization).
pub fn evaluate_against(
    float_graph: &Graph,
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    data: &DataSet,
    focus: Option<&Focus>,
    ctx: &JobContext,
) -> Result<Evaluation, JobError> {
    let quantized = QuantizedModel::prepare(graph, config, stats)?;
    ctx.check()?;
    let float_plan = Plan::new(float_graph)?;
    let quant_plan = Plan::new(&quantized.graph)?;
    let input = input_name(graph)?;
    let samples = data.sample_count("evaluation")?;
    let layer_names: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| QUANTIZABLE_OPS.contains(&n.op_type.as_str()))
        .map(|n| n.name.clone())
        .collect();
    let layer_set: HashSet<String> = layer_names.iter().cloned().collect();
    let focus_activation = match focus {
        Some(Focus::Activation { tensor }) => Some(tensor.as_str()),
        _ => None,
    };
    // Σ float², Σ (float − quantized)² per layer.
    let mut sums: HashMap<String, (f64, f64)> = HashMap::new();
    let mut float_logits = Vec::new();
    let mut quant_logits = Vec::new();
    let mut focus_values: Option<ArrayD<f32>> = None;
    for (start, end) in batches(samples) {
        ctx.check()?;
        let options = || RunOptions {
            cancel: Some(ctx.cancel_flag()),
        };
        let mut float_rec = Recorder::new(&layer_set, focus_activation, None);
        let float_out = float_plan.run(
            batch_feeds(input, &data.inputs, start, end),
            Some(&mut float_rec),
            options(),
        )?;
        let mut hook = quantized.hook();
        let mut quant_rec = Recorder::new(&layer_set, None, Some(&mut hook));
        let quant_out = quant_plan.run(
            batch_feeds(input, &data.inputs, start, end),
            Some(&mut quant_rec),
            options(),
        )?;
        for (name, f) in &float_rec.outputs {
            if let Some(q) = quant_rec.outputs.get(name)
                && f.shape() == q.shape()
            {
                let entry = sums.entry(name.clone()).or_default();
                for (a, b) in f.iter().zip(q.iter()) {
                    let (a, b) = (f64::from(*a), f64::from(*b));
                    entry.0 += a * a;
                    entry.1 += (a - b) * (a - b);
                }
            }
        }
        if let Some(name) = focus_activation
            && focus_values.is_none()
        {
            focus_values = float_rec.outputs.remove(&format!("focus:{name}"));
        }
        float_logits.push(first_logits(float_out)?);
        quant_logits.push(first_logits(quant_out)?);
        ctx.set_progress(end as f32 / samples as f32);
    }
    let join = |parts: &[ndarray::Array2<f32>]| {
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| JobError::Failed(e.to_string()))
    };
    let (float_logits, quant_logits) = (join(&float_logits)?, join(&quant_logits)?);
    let comparison = compare_logits(
        float_logits.view(),
        quant_logits.view(),
        data.labels.as_ref().map(|l| l.view()),
    )
    .map_err(|e| JobError::Failed(e.to_string()))?;
    let layers = layer_names
        .iter()
        .filter_map(|name| {
            let (signal, noise) = sums.get(name)?;
            Some(LayerError {
                node: name.clone(),
                sqnr_db: sqnr_db(*signal, *noise),
            })
        })
        .collect();
    let cost = cost(graph, config, &quantized, input, data)?;
    let focus = match focus {
        Some(Focus::Weight { tensor, node }) => {
            weight_focus(graph, config, &quantized, tensor, node)?
        }
        Some(Focus::Activation { tensor }) => activation_focus(&quantized, tensor, focus_values)?,
        None => None,
    };
    Ok(Evaluation {
        comparison,
        layers,
        weights: quantized.weights,
        activations: quantized.activations,
        cost,
        focus,
        data: data.description.clone(),
    })
}

fn first_logits(outputs: Vec<(String, TensorData)>) -> Result<ndarray::Array2<f32>, JobError> {
    let (name, first) = outputs
        .into_iter()
        .next()
        .ok_or_else(|| JobError::Failed("the model has no outputs".into()))?;
    let array = first
        .as_f32()
        .ok_or_else(|| JobError::Failed(format!("output '{name}' is not float")))?;
    let rows = array.shape().first().copied().unwrap_or(0);
    array
        .clone()
        .into_shape_with_order((rows, array.len() / rows.max(1)))
        .map(|a| a.into_dimensionality::<Ix2>())
        .map_err(|e| JobError::Failed(format!("output '{name}' is not [N, classes]: {e}")))?
        .map_err(|e| JobError::Failed(format!("output '{name}' is not [N, classes]: {e}")))
}

/// Size and per-sample BitOps (shapes from a one-sample float run).
fn cost(
    graph: &Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    input: &str,
    data: &DataSet,
) -> Result<Cost, JobError> {
    let mut shapes = ShapeRecorder::default();
    Plan::new(graph)?.run(
        batch_feeds(input, &data.inputs, 0, 1),
        Some(&mut shapes),
        RunOptions::default(),
    )?;
    quantized_cost(graph, config, quantized, &shapes.shapes).map_err(|e| JobError::Failed(e.0))
}
