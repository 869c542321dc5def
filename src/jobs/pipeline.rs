//! The app's jobs as plain functions (run them inside a [`super::Job`]): reading calibration
//! and evaluation data, calibrating every activation, and evaluating a quantization config
//! (accuracy, agreement, output KL, per-layer output SQNR, size and BitOps, exact figures of
//! one tensor). They check the job's cancel flag between batches and report progress.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use ndarray::{Array1, ArrayD, Axis, Ix1, Ix2, IxDyn, Slice};
use rand::SeedableRng;
use rand_distr_free::gaussian;

use super::{JobContext, JobError};
use crate::calib::{ActivationCollector, CalibrationStats};
use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
use crate::ir::{Dim, Graph, TensorData};
use crate::load::images::{ImagePreset, read_image_folder};
use crate::load::read_arrays;
use crate::metrics::{
    LogitComparison, MetricOptions, TensorMetrics, compare, compare_logits, sqnr_db,
};
use crate::quant::config::QUANTIZABLE_OPS;
use crate::quant::cost::{ShapeRecorder, StorageScheme, graph_size, layer_costs};
use crate::quant::fake::{ActivationReport, WeightReport};
use crate::quant::linear::{Granularity, Rounding, fake_quantize};
use crate::quant::{LayerQuant, QuantConfig, QuantizedModel, WeightQuant};

/// Samples per batch of calibration and evaluation runs.
pub const BATCH: usize = 64;
/// Samples of synthetic Gaussian data.
pub const SYNTHETIC_SAMPLES: usize = 128;

/// Where calibration and evaluation data come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DataSource {
    /// The bundled digits (calibration `digits_calib_x.npy`, evaluation `digits_test.npz`).
    BundledDigits,
    /// A .npy (inputs) or .npz (`x` and optional labels `y`, or arrays by input name) file.
    File(PathBuf),
    /// A folder of images, resized to the model's input and normalised by `preset`.
    ImageFolder { dir: PathBuf, preset: ImagePreset },
    /// Gaussian N(0, 1) inputs of the model's input shape (no labels).
    Synthetic,
}

impl DataSource {
    /// A short description for the UI.
    pub fn describe(&self) -> String {
        match self {
            DataSource::BundledDigits => "bundled digits".into(),
            DataSource::File(p) => format!("file {}", file_name(p)),
            DataSource::ImageFolder { dir, preset } => {
                format!("images in {} ({})", file_name(dir), preset.label())
            }
            DataSource::Synthetic => "synthetic Gaussian inputs (no labels)".into(),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The bundled digits directory, when `model` is one of the sample models.
pub fn bundled_digits_dir(model: &Path) -> Option<PathBuf> {
    let name = model.file_name()?.to_string_lossy().into_owned();
    if !name.starts_with("digits_") {
        return None;
    }
    let dir = model.parent()?.join("data");
    dir.join("digits_calib_x.npy").exists().then_some(dir)
}

/// The default data source for `model`: the bundled digits for the sample models, else
/// synthetic inputs.
pub fn default_source(model: &Path) -> DataSource {
    if bundled_digits_dir(model).is_some() {
        DataSource::BundledDigits
    } else {
        DataSource::Synthetic
    }
}

/// Inputs of the model's single input (samples on axis 0) and optional labels.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub inputs: ArrayD<f32>,
    pub labels: Option<Array1<i64>>,
    /// Shown with every figure computed from it.
    pub description: String,
    pub synthetic: bool,
}

/// Calibration and evaluation data.
#[derive(Debug, Clone)]
pub struct Data {
    pub calibration: DataSet,
    pub evaluation: DataSet,
}

/// Reads `source` for `graph` (a single-input model).
pub fn read_data(graph: &Graph, model: &Path, source: &DataSource) -> Result<Data, JobError> {
    let fail = |msg: String| JobError::Failed(msg);
    match source {
        DataSource::BundledDigits => {
            let dir = bundled_digits_dir(model).ok_or_else(|| {
                fail("the bundled digits go with the digits_* sample models only".into())
            })?;
            let calibration = read_set(&dir.join("digits_calib_x.npy"), "bundled digits")?;
            let evaluation = read_set(&dir.join("digits_test.npz"), "bundled digits (test)")?;
            Ok(Data {
                calibration,
                evaluation,
            })
        }
        DataSource::File(path) => {
            let set = read_set(path, &format!("file {}", file_name(path)))?;
            Ok(Data {
                calibration: set.clone(),
                evaluation: set,
            })
        }
        DataSource::ImageFolder { dir, preset } => {
            let (channels, height, width) = image_input_shape(graph)?;
            let inputs = read_image_folder(dir, channels, height, width, *preset)
                .map_err(|e| fail(e.to_string()))?;
            let set = DataSet {
                inputs,
                labels: None,
                description: source.describe(),
                synthetic: false,
            };
            Ok(Data {
                calibration: set.clone(),
                evaluation: set,
            })
        }
        DataSource::Synthetic => {
            let set = synthetic(graph)?;
            Ok(Data {
                calibration: set.clone(),
                evaluation: set,
            })
        }
    }
}

fn read_set(path: &Path, description: &str) -> Result<DataSet, JobError> {
    let arrays = read_arrays(path)?;
    let mut inputs = None;
    let mut labels = None;
    for array in arrays {
        match (array.name.as_str(), array.data) {
            ("y" | "labels", TensorData::I64(a)) => {
                labels = a.into_dimensionality::<Ix1>().ok();
            }
            (_, TensorData::F32(a)) if inputs.is_none() => inputs = Some(a),
            _ => {}
        }
    }
    let inputs = inputs.ok_or_else(|| {
        JobError::Failed(format!("{}: holds no float input array", path.display()))
    })?;
    if let Some(l) = &labels
        && inputs.shape().first() != Some(&l.len())
    {
        labels = None;
    }
    Ok(DataSet {
        inputs,
        labels,
        description: description.to_string(),
        synthetic: false,
    })
}

/// The single input's declared shape with the batch dimension left out.
fn sample_shape(graph: &Graph) -> Result<Vec<usize>, JobError> {
    let [input] = graph.inputs.as_slice() else {
        return Err(JobError::Failed(format!(
            "the app calibrates single-input models; this one has {} inputs",
            graph.inputs.len()
        )));
    };
    let dims = input
        .shape
        .as_ref()
        .ok_or_else(|| JobError::Failed(format!("input '{}' declares no shape", input.name)))?;
    dims.iter()
        .skip(1)
        .map(|d| match d {
            Dim::Fixed(n) => Ok(*n),
            _ => Err(JobError::Failed(format!(
                "input '{}' has a non-fixed dimension {} besides the batch",
                input.name,
                input.shape_text()
            ))),
        })
        .collect()
}

/// (channels, height, width) of an image input `[N, C, H, W]`.
fn image_input_shape(graph: &Graph) -> Result<(usize, usize, usize), JobError> {
    match sample_shape(graph)?.as_slice() {
        [c, h, w] => Ok((*c, *h, *w)),
        other => Err(JobError::Failed(format!(
            "image folders need an input of shape [N, C, H, W]; this model's sample shape is {other:?}"
        ))),
    }
}

/// Seeded Gaussian inputs of the model's input shape.
pub fn synthetic(graph: &Graph) -> Result<DataSet, JobError> {
    let mut shape = vec![SYNTHETIC_SAMPLES];
    shape.extend(sample_shape(graph)?);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0x5eed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| gaussian(&mut rng)).collect();
    let inputs = ArrayD::from_shape_vec(IxDyn(&shape), values)
        .map_err(|e| JobError::Failed(e.to_string()))?;
    Ok(DataSet {
        inputs,
        labels: None,
        description: DataSource::Synthetic.describe(),
        synthetic: true,
    })
}

/// Standard normal samples by Box-Muller (no extra crate for one distribution).
mod rand_distr_free {
    use rand::RngExt;

    pub fn gaussian(rng: &mut rand_pcg::Pcg64) -> f32 {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

pub fn input_name(graph: &Graph) -> Result<&str, JobError> {
    match graph.inputs.as_slice() {
        [input] => Ok(&input.name),
        many => Err(JobError::Failed(format!(
            "the app runs single-input models; this one has {} inputs",
            many.len()
        ))),
    }
}

fn batches(samples: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..samples)
        .step_by(BATCH)
        .map(move |s| (s, (s + BATCH).min(samples)))
}

fn batch_feeds(
    name: &str,
    inputs: &ArrayD<f32>,
    start: usize,
    end: usize,
) -> HashMap<String, TensorData> {
    let batch = inputs
        .slice_axis(Axis(0), Slice::from(start..end))
        .to_owned();
    HashMap::from([(name.to_string(), TensorData::F32(batch))])
}

/// Statistics of every float tensor over the calibration data.
/// Calibration statistics and the shape (first batch) of every float tensor.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    pub stats: BTreeMap<String, CalibrationStats>,
    pub shapes: HashMap<String, Vec<usize>>,
}

/// The collector, plus the tensor shapes of the first batch.
struct CollectShapes<'a> {
    collector: &'a mut ActivationCollector,
    shapes: Option<&'a mut ShapeRecorder>,
}

impl TensorHook for CollectShapes<'_> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> crate::Result<()> {
        if let Some(shapes) = self.shapes.as_mut() {
            shapes.on_tensor(site, value)?;
        }
        self.collector.on_tensor(site, value)
    }
}

pub fn calibrate(graph: &Graph, data: &DataSet, ctx: &JobContext) -> Result<Calibration, JobError> {
    let plan = Plan::new(graph)?;
    let input = input_name(graph)?;
    let samples = data.inputs.shape().first().copied().unwrap_or(0);
    if samples == 0 {
        return Err(JobError::Failed(
            "the calibration data holds no samples".into(),
        ));
    }
    let mut collector = ActivationCollector::new();
    let mut shapes = ShapeRecorder::default();
    for (start, end) in batches(samples) {
        ctx.check()?;
        let feeds = batch_feeds(input, &data.inputs, start, end);
        let options = RunOptions {
            cancel: Some(ctx.cancel_flag()),
        };
        let mut hook = CollectShapes {
            collector: &mut collector,
            shapes: (start == 0).then_some(&mut shapes),
        };
        plan.run(feeds, Some(&mut hook), options)?;
        ctx.set_progress(end as f32 / samples as f32);
    }
    Ok(Calibration {
        stats: collector.into_stats(),
        shapes: shapes.shapes,
    })
}

/// Which tensor's exact figures an evaluation computes besides the model metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Focus {
    /// A weight tensor of the node named `node`.
    Weight { tensor: String, node: String },
    /// An activation tensor (quantized at the input of a quantized layer, or not at all).
    Activation { tensor: String },
}

/// Exact figures of the focused tensor.
#[derive(Debug, Clone)]
pub struct FocusFigures {
    pub tensor: String,
    pub metrics: TensorMetrics,
    pub per_tensor_sqnr_db: Option<f64>,
    pub per_channel_sqnr_db: Option<f64>,
}

/// Output SQNR of one quantizable layer over the evaluation data.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    pub node: String,
    pub sqnr_db: f64,
}

/// Parameter storage and BitOps (per sample) of the quantized model and of float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub size_bytes: f64,
    pub float_size_bytes: f64,
    pub bitops: u64,
    pub float_bitops: u64,
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
    let samples = data.inputs.shape().first().copied().unwrap_or(0);
    if samples == 0 {
        return Err(JobError::Failed(
            "the evaluation data holds no samples".into(),
        ));
    }
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
        let mut float_rec = Recorder {
            layers: &layer_set,
            focus: focus_activation,
            outputs: HashMap::new(),
            inner: None,
        };
        let float_out = float_plan.run(
            batch_feeds(input, &data.inputs, start, end),
            Some(&mut float_rec),
            options(),
        )?;
        let mut hook = quantized.hook();
        let mut quant_rec = Recorder {
            layers: &layer_set,
            focus: None,
            outputs: HashMap::new(),
            inner: Some(&mut hook),
        };
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
    let storage: HashMap<&str, StorageScheme> = quantized
        .weights
        .iter()
        .filter_map(|w| Some((w.tensor.as_str(), config.layer(&w.node).weights?.storage())))
        .collect();
    let size = graph_size(graph, |name, _| {
        storage.get(name).copied().unwrap_or(StorageScheme::FLOAT32)
    });
    let mut shapes = ShapeRecorder::default();
    Plan::new(graph)?.run(
        batch_feeds(input, &data.inputs, 0, 1),
        Some(&mut shapes),
        RunOptions::default(),
    )?;
    let quantized_inputs: HashSet<&str> = quantized
        .activations
        .iter()
        .map(|a| a.tensor.as_str())
        .collect();
    let layers = layer_costs(graph, &shapes.shapes, |node| {
        let layer = config.layer(&node.name);
        let weight_bits = layer
            .weights
            .filter(|_| node.input(1).is_some_and(|w| storage.contains_key(w)))
            .map_or(32, |w| w.scheme.bits());
        let activation_bits = match (layer.activations, node.input(0)) {
            (Some(a), Some(i)) if quantized_inputs.contains(i) => a.bits,
            _ => 32,
        };
        (weight_bits, activation_bits)
    })
    .map_err(|e| JobError::Failed(e.0))?;
    Ok(Cost {
        size_bytes: size.total_bytes(),
        float_size_bytes: size.float32_bits as f64 / 8.0,
        bitops: layers.iter().map(|l| l.bitops).sum(),
        float_bitops: layers.iter().map(|l| l.float_bitops).sum(),
    })
}

/// The weight's metrics under the config, and its SQNR per tensor and per channel.
fn weight_focus(
    graph: &Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    tensor: &str,
    node: &str,
) -> Result<Option<FocusFigures>, JobError> {
    let Some(report) = quantized.weights.iter().find(|w| w.tensor == tensor) else {
        return Ok(None);
    };
    let Some(quant) = config.layer(node).weights else {
        return Ok(None);
    };
    let sqnr_with = |per_channel: bool| -> Option<f64> {
        if per_channel == report.per_channel {
            return Some(report.metrics.sqnr_db);
        }
        // The same scheme at the other granularity, on a one-node graph.
        let one = Graph {
            nodes: graph
                .nodes
                .iter()
                .filter(|n| n.name == node)
                .cloned()
                .collect(),
            initializers: graph
                .initializers
                .get(tensor)
                .map(|t| BTreeMap::from([(tensor.to_string(), t.clone())]))
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut single = QuantConfig::default();
        let weights = Some(WeightQuant {
            per_channel,
            ..quant
        });
        single.layers.insert(
            node.to_string(),
            LayerQuant {
                weights,
                activations: None,
            },
        );
        if let Some(range) = config.weight_ranges.get(tensor) {
            single.weight_ranges.insert(tensor.to_string(), *range);
        }
        let other = QuantizedModel::prepare(&one, &single, &BTreeMap::new()).ok()?;
        let w = other.weights.into_iter().next()?;
        (w.per_channel == per_channel).then_some(w.metrics.sqnr_db)
    };
    Ok(Some(FocusFigures {
        tensor: tensor.to_string(),
        metrics: report.metrics,
        per_tensor_sqnr_db: sqnr_with(false),
        per_channel_sqnr_db: sqnr_with(true),
    }))
}

/// The activation's metrics under its quantization parameters (first evaluation batch).
fn activation_focus(
    quantized: &QuantizedModel,
    tensor: &str,
    values: Option<ArrayD<f32>>,
) -> Result<Option<FocusFigures>, JobError> {
    let (Some(report), Some(values)) = (
        quantized.activations.iter().find(|a| a.tensor == tensor),
        values,
    ) else {
        return Ok(None);
    };
    let dequantized = fake_quantize(
        values.view(),
        &[report.params],
        Granularity::PerTensor,
        Rounding::NearestEven,
    )
    .map_err(|e| JobError::Failed(e.0))?;
    let metrics = compare(values.view(), dequantized.view(), &MetricOptions::default())
        .map_err(|e| JobError::Failed(e.to_string()))?;
    Ok(Some(FocusFigures {
        tensor: tensor.to_string(),
        metrics,
        per_tensor_sqnr_db: Some(metrics.sqnr_db),
        per_channel_sqnr_db: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_model;
    use crate::quant::WeightScheme;

    fn sample(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("sample_models")
            .join(name)
    }

    fn int8() -> QuantConfig {
        QuantConfig::int8_per_channel()
    }

    #[test]
    fn int8_keeps_the_cnn_accurate_and_ternary_costs_accuracy_and_size() {
        let path = sample("digits_cnn.onnx");
        let model = load_model(&path).unwrap();
        let data = read_data(&model.graph, &path, &DataSource::BundledDigits).unwrap();
        assert!(data.evaluation.labels.is_some());
        let ctx = JobContext::default();
        let stats = calibrate(&model.graph, &data.calibration, &ctx)
            .unwrap()
            .stats;
        let eval = |config: &QuantConfig| {
            evaluate(&model.graph, config, &stats, &data.evaluation, None, &ctx).unwrap()
        };
        let base = eval(&int8());
        let (float_acc, q_acc) = (
            base.comparison.float_accuracy.unwrap(),
            base.comparison.quant_accuracy.unwrap(),
        );
        assert!(float_acc > 0.9, "{float_acc}");
        assert!((float_acc - q_acc).abs() <= 0.02, "{float_acc} vs {q_acc}");
        assert!(
            base.layers.iter().all(|l| l.sqnr_db > 20.0),
            "{:?}",
            base.layers
        );
        let mut ternary = int8();
        if let Some(w) = ternary.default.weights.as_mut() {
            w.scheme = WeightScheme::Ternary { ttq: false };
        }
        let ternary = eval(&ternary);
        assert!(ternary.cost.size_bytes < base.cost.size_bytes);
        assert!(ternary.cost.bitops < base.cost.bitops);
        let total = |e: &Evaluation| e.layers.iter().map(|l| l.sqnr_db).sum::<f64>();
        assert!(total(&ternary) < total(&base));
    }

    #[test]
    fn weight_focus_reports_both_granularities() {
        let path = sample("digits_cnn.onnx");
        let model = load_model(&path).unwrap();
        let data = read_data(&model.graph, &path, &DataSource::Synthetic).unwrap();
        assert!(data.evaluation.synthetic && data.evaluation.labels.is_none());
        let ctx = JobContext::default();
        let stats = calibrate(&model.graph, &data.calibration, &ctx)
            .unwrap()
            .stats;
        let node = model
            .graph
            .nodes
            .iter()
            .find(|n| n.op_type == "Conv")
            .unwrap();
        let focus = Focus::Weight {
            tensor: node.input(1).unwrap().to_string(),
            node: node.name.clone(),
        };
        let eval = evaluate(
            &model.graph,
            &int8(),
            &stats,
            &data.evaluation,
            Some(&focus),
            &ctx,
        )
        .unwrap();
        assert_eq!(eval.comparison.float_accuracy, None);
        let figures = eval.focus.unwrap();
        let (t, c) = (
            figures.per_tensor_sqnr_db.unwrap(),
            figures.per_channel_sqnr_db.unwrap(),
        );
        assert!(c >= t, "per channel {c} dB vs per tensor {t} dB");
        assert_eq!(figures.metrics.sqnr_db, c);
    }

    #[test]
    fn a_cancelled_context_stops_calibration() {
        let path = sample("digits_cnn.onnx");
        let model = load_model(&path).unwrap();
        let data = read_data(&model.graph, &path, &DataSource::BundledDigits).unwrap();
        let ctx = JobContext::default();
        ctx.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            calibrate(&model.graph, &data.calibration, &ctx).unwrap_err(),
            JobError::Cancelled
        );
    }
}
