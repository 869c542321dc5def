//! The integer-only layers of a fake-quantized model, run next to the simulation: each Conv and
//! Gemm/MatMul with symmetric ≤ 8-bit weights and a quantized input runs on the codes of the
//! simulation's input, and its output codes are counted against the simulation's output codes
//! (equal, 1 LSB apart, further apart, saturated) with the used accumulator range.
//!
//! The simulation's output of a layer is quantized with the parameters of the tensor where the
//! simulation next quantizes it: the layer's output itself, or the output of a ReLU reading it
//! (the ReLU is then fused), or else a range from the calibration statistics of the output.
//! Every layer reads the simulation's input, so differences do not accumulate from layer to
//! layer; layers the integer path cannot run stay in float and are listed with the reason.

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, Axis, Ix2};
use serde::Serialize;

use super::codes::{QuantizedWeights, quantize_tensor};
use super::explain::{ElementTrace, InputTrace, TraceLayer, trace_element};
use super::{IntConv, IntLinear, LayerGrids};
use crate::calib::CalibrationStats;
use crate::engine::geometry::WindowSpec;
use crate::engine::{Plan, TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Attribute, Graph, Node, TensorData};
use crate::quant::config::QuantConfig;
use crate::quant::fake::{FakeQuantHook, QuantizedModel};
use crate::quant::grid::{LinearParams, QuantError};
use crate::workflow::{RunControl, Samples, choose_batch, run_chunks};

/// A layer left in float, and why.
#[derive(Debug, Clone, Serialize)]
pub struct FloatFallback {
    pub layer: String,
    pub op_type: String,
    pub reason: String,
}

/// Integer path against simulation for one layer's output tensor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TensorComparison {
    pub layer: String,
    /// The tensor compared (the layer's output, or the fused ReLU's output).
    pub tensor: String,
    pub relu_fused: bool,
    pub elements: u64,
    /// Output codes exactly 1 LSB from the simulation's.
    pub off_by_one: u64,
    /// Output codes more than 1 LSB from the simulation's.
    pub beyond_one: u64,
    /// Integer output codes at the grid's lower end (when that code is not the real 0).
    pub saturated_low: u64,
    /// Integer output codes at the grid's upper end.
    pub saturated_high: u64,
    /// Smallest and largest i32 accumulator (before requantization) seen.
    pub accumulator_min: i32,
    pub accumulator_max: i32,
}

impl TensorComparison {
    /// The share of the i32 range (2^31) the accumulator used.
    pub fn accumulator_use(&self) -> f64 {
        let m = i64::from(self.accumulator_min)
            .abs()
            .max(i64::from(self.accumulator_max).abs());
        m as f64 / 2f64.powi(31)
    }

    fn merge(&mut self, other: &TensorComparison) {
        if self.elements == 0 {
            *self = other.clone();
            return;
        }
        if other.elements == 0 {
            return;
        }
        self.elements += other.elements;
        self.off_by_one += other.off_by_one;
        self.beyond_one += other.beyond_one;
        self.saturated_low += other.saturated_low;
        self.saturated_high += other.saturated_high;
        self.accumulator_min = self.accumulator_min.min(other.accumulator_min);
        self.accumulator_max = self.accumulator_max.max(other.accumulator_max);
    }
}

enum Kernel {
    Conv(Box<IntConv>),
    Linear(Box<IntLinear>),
}

impl Kernel {
    fn input_params(&self) -> LinearParams {
        match self {
            Kernel::Conv(k) => k.input_params(),
            Kernel::Linear(k) => k.input_params(),
        }
    }

    fn trace_layer<'a>(&'a self, name: &'a str) -> TraceLayer<'a> {
        match self {
            Kernel::Conv(k) => k.trace_layer(name),
            Kernel::Linear(k) => k.trace_layer(name),
        }
    }
}

struct IntegerLayer {
    name: String,
    input: String,
    compared: String,
    relu: bool,
    kernel: Kernel,
}

/// The layers of a quantized model that run on the integer path, and those that stay float.
pub struct IntegerLayers {
    layers: Vec<IntegerLayer>,
    pub fallbacks: Vec<FloatFallback>,
}

/// Per-chunk results, merged into the final table.
pub type Comparisons = Vec<TensorComparison>;

impl IntegerLayers {
    /// Builds the integer layers of `quantized` (prepared from `graph` under `config`, with
    /// the calibration `stats`). An error names the model's layers when none can run.
    pub fn build(
        graph: &Graph,
        config: &QuantConfig,
        quantized: &QuantizedModel,
        stats: &BTreeMap<String, CalibrationStats>,
    ) -> Result<Self> {
        let params: HashMap<&str, LinearParams> = quantized
            .activations
            .iter()
            .map(|a| (a.tensor.as_str(), a.params))
            .collect();
        let mut layers = Vec::new();
        let mut fallbacks = Vec::new();
        for node in &graph.nodes {
            if !matches!(node.op_type.as_str(), "Conv" | "Gemm" | "MatMul") {
                continue;
            }
            match build_layer(graph, config, quantized, stats, &params, node) {
                Ok(layer) => layers.push(layer),
                Err(reason) => fallbacks.push(FloatFallback {
                    layer: node.name.clone(),
                    op_type: node.op_type.clone(),
                    reason: reason.0,
                }),
            }
        }
        if layers.is_empty() {
            let why = match fallbacks.first() {
                Some(f) => format!("{} {}: {}", f.op_type, f.layer, f.reason),
                None => "it has no Conv, Gemm or MatMul".into(),
            };
            return Err(Error::Quant {
                tensor: "model".into(),
                msg: format!("no layer can run on the integer path ({why})"),
            });
        }
        Ok(IntegerLayers { layers, fallbacks })
    }

    /// Names of the layers that run on the integer path.
    pub fn integer_layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.name.as_str()).collect()
    }

    /// The hook to run `quantized.graph` with: the simulation's fake quantization, plus the
    /// integer layers compared as their outputs are produced.
    pub fn hook<'a>(&'a self, quantized: &'a QuantizedModel) -> CompareHook<'a> {
        CompareHook {
            inner: quantized.hook(),
            layers: self,
            inputs: HashMap::new(),
            peaks: HashMap::new(),
            results: vec![TensorComparison::default(); self.layers.len()],
            traces: vec![None; self.layers.len()],
        }
    }

    /// Merges per-chunk results into one comparison per integer layer.
    pub fn merge(&self, chunks: &[Comparisons]) -> Comparisons {
        let mut out = vec![TensorComparison::default(); self.layers.len()];
        for chunk in chunks {
            for (o, c) in out.iter_mut().zip(chunk) {
                o.merge(c);
            }
        }
        out
    }
}

fn initializer<'g>(graph: &'g Graph, name: Option<&str>) -> Option<&'g ArrayD<f32>> {
    graph
        .initializers
        .get(name.filter(|n| !n.is_empty())?)
        .and_then(|t| t.data.as_f32())
}

fn build_layer(
    graph: &Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    stats: &BTreeMap<String, CalibrationStats>,
    params: &HashMap<&str, LinearParams>,
    node: &Node,
) -> std::result::Result<IntegerLayer, QuantError> {
    let input_name = node.input(0).unwrap_or("");
    let input = *params
        .get(input_name)
        .ok_or_else(|| QuantError("its input is not quantized".into()))?;
    let weight_name = node.input(1).unwrap_or("");
    let report = quantized
        .weights
        .iter()
        .find(|w| w.tensor == weight_name)
        .ok_or_else(|| QuantError("its weight is not a quantized initializer".into()))?;
    let grid = match report.params.first() {
        Some(p) => p.grid,
        None => {
            return Err(QuantError(format!(
                "weight scheme {} has no linear grid",
                report.scheme
            )));
        }
    };
    if report.params.iter().any(|p| p.zero_point != 0) || !grid.signed || grid.bits > 8 {
        return Err(QuantError(format!(
            "weight scheme {} is not symmetric signed with at most 8 bits",
            report.scheme
        )));
    }
    let dequantized = initializer(&quantized.graph, Some(weight_name))
        .ok_or_else(|| QuantError("its weight is not float".into()))?;
    // Codes and scales on axis 0 (output channels): Conv [Cout, ...], linear [N, K].
    let attr_int = |name: &str, default: i64| match node.attributes.get(name) {
        Some(Attribute::Int(v)) => *v,
        _ => default,
    };
    let attr_float = |name: &str| match node.attributes.get(name) {
        Some(Attribute::Float(v)) => *v,
        _ => 1.0,
    };
    let oriented = match node.op_type.as_str() {
        "Conv" => dequantized.clone(),
        "Gemm" if attr_int("transB", 0) != 0 => dequantized.clone(),
        _ => {
            if dequantized.ndim() != 2 {
                return Err(QuantError(format!(
                    "weight of shape {:?} is not 2-D",
                    dequantized.shape()
                )));
            }
            dequantized.t().as_standard_layout().into_owned()
        }
    };
    if node.op_type == "Gemm" && (attr_float("alpha") != 1.0 || attr_int("transA", 0) != 0) {
        return Err(QuantError("Gemm with alpha ≠ 1 or transA".into()));
    }
    let channels = oriented.shape().first().copied().unwrap_or(0);
    let scales: Vec<f32> = report.params.iter().map(|p| p.scale).collect();
    if scales.len() != 1 && scales.len() != channels {
        return Err(QuantError(format!(
            "{} weight scales are not per output channel ({channels})",
            scales.len()
        )));
    }
    let mut codes = ArrayD::<i8>::zeros(oriented.raw_dim());
    for (c, (mut out, w)) in codes
        .axis_iter_mut(Axis(0))
        .zip(oriented.axis_iter(Axis(0)))
        .enumerate()
    {
        let s = scales[if scales.len() == 1 { 0 } else { c }];
        out.zip_mut_with(&w, |o, &v| *o = (v / s).round() as i8);
    }
    let weights = QuantizedWeights {
        codes,
        scales,
        grid,
    };
    let bias: Option<Vec<f32>> = match node.op_type.as_str() {
        "MatMul" => None,
        _ => match node.input(2).filter(|n| !n.is_empty()) {
            None => None,
            Some(name) => {
                let b = initializer(graph, Some(name))
                    .ok_or_else(|| QuantError("its bias is not a float initializer".into()))?;
                let beta = if node.op_type == "Gemm" {
                    attr_float("beta")
                } else {
                    1.0
                };
                if b.len() != channels {
                    return Err(QuantError(format!(
                        "bias of shape {:?} is not one value per output channel",
                        b.shape()
                    )));
                }
                Some(b.iter().map(|v| v * beta).collect())
            }
        },
    };
    let output_name = node.outputs.first().cloned().unwrap_or_default();
    let relu_consumer = {
        let readers: Vec<&Node> = graph
            .nodes
            .iter()
            .filter(|n| n.inputs.contains(&output_name))
            .collect();
        match readers.as_slice() {
            [r] if r.op_type == "Relu" && !graph.outputs.iter().any(|o| o.name == output_name) => {
                r.outputs.first().cloned()
            }
            _ => None,
        }
    };
    let (compared, relu, output) = if let Some(p) = params.get(output_name.as_str()) {
        (output_name, false, *p)
    } else if let Some((r, p)) = relu_consumer
        .as_ref()
        .and_then(|r| params.get(r.as_str()).map(|p| (r.clone(), *p)))
    {
        (r, true, p)
    } else {
        let act = config
            .layer(&node.name)
            .activations
            .ok_or_else(|| QuantError("activations are float".into()))?;
        let (name, relu) = match &relu_consumer {
            Some(r) => (r.clone(), true),
            None => (output_name, false),
        };
        let s = stats
            .get(&name)
            .ok_or_else(|| QuantError(format!("no calibration statistics for '{name}'")))?;
        let range = act
            .method
            .range(s, act.bits)
            .map_err(|e| QuantError(e.to_string()))?;
        let grid = crate::quant::grid::IntGrid::new(act.bits, act.symmetric, false)?;
        (
            name,
            relu,
            LinearParams::from_range(range.0, range.1, grid, act.symmetric)?,
        )
    };
    let grids = LayerGrids {
        input,
        output,
        relu,
    };
    let kernel = match node.op_type.as_str() {
        "Conv" => {
            let window =
                WindowSpec::conv(node, &weights.codes.shape()[2.min(weights.codes.ndim())..])
                    .map_err(|e| QuantError(e.to_string()))?;
            Kernel::Conv(Box::new(IntConv::new(
                weights,
                bias.as_deref(),
                grids,
                window,
            )?))
        }
        _ => Kernel::Linear(Box::new(IntLinear::new(weights, bias.as_deref(), grids)?)),
    };
    Ok(IntegerLayer {
        name: node.name.clone(),
        input: input_name.to_string(),
        compared,
        relu,
        kernel,
    })
}

/// Fake-quantizes as the simulation does and compares every integer layer on the fly.
pub struct CompareHook<'a> {
    inner: FakeQuantHook<'a>,
    layers: &'a IntegerLayers,
    /// Input codes of layers whose output has not been produced yet.
    inputs: HashMap<String, ArrayD<i32>>,
    /// Per input tensor and sample, the value of largest magnitude (the traced input value).
    peaks: HashMap<String, Vec<f32>>,
    results: Comparisons,
    /// One traced output element per layer (see [`super::explain`]).
    traces: Vec<Option<ElementTrace>>,
}

impl CompareHook<'_> {
    /// The comparisons of the chunks this hook saw.
    pub fn into_results(self) -> Comparisons {
        self.results
    }

    /// The comparisons and one traced element per layer that ran.
    pub fn into_parts(self) -> (Comparisons, Vec<Option<ElementTrace>>) {
        (self.results, self.traces)
    }

    /// Traces an element of layer `index`: the first one 1 LSB from the simulation, else the
    /// one with the largest |accumulator|.
    fn trace(
        &mut self,
        index: usize,
        codes: &ArrayD<i32>,
        reference: &ArrayD<i32>,
        acc: &ArrayD<i32>,
    ) {
        if self.traces[index].is_some() || codes.is_empty() || acc.shape() != codes.shape() {
            return;
        }
        let layer = &self.layers.layers[index];
        let flat = codes
            .iter()
            .zip(reference.iter())
            .position(|(&q, &s)| (i64::from(q) - i64::from(s)).abs() == 1)
            .or_else(|| {
                acc.iter()
                    .enumerate()
                    .max_by_key(|(_, a)| i64::from(**a).abs())
                    .map(|(i, _)| i)
            })
            .unwrap_or(0);
        let (Some(&a), Some(&q), Some(&s)) = (
            acc.iter().nth(flat),
            codes.iter().nth(flat),
            reference.iter().nth(flat),
        ) else {
            return;
        };
        let per_sample = codes.len() / codes.shape().first().copied().unwrap_or(1).max(1);
        let sample = flat / per_sample.max(1);
        let peak = self
            .peaks
            .get(&layer.input)
            .and_then(|p| p.get(sample))
            .copied()
            .unwrap_or(0.0);
        let traced = trace_element(
            &layer.kernel.trace_layer(&layer.name),
            codes.shape(),
            flat,
            a,
            InputTrace::new(peak, &layer.kernel.input_params()),
            s,
        );
        debug_assert_eq!(
            traced.output_code, q,
            "the trace follows the layer's arithmetic"
        );
        self.traces[index] = Some(traced);
    }

    fn compare(
        &mut self,
        index: usize,
        simulated: &ArrayD<f32>,
    ) -> std::result::Result<(), QuantError> {
        let layer = &self.layers.layers[index];
        let x = self
            .inputs
            .get(&layer.input)
            .ok_or_else(|| QuantError(format!("input '{}' was not seen", layer.input)))?;
        let (codes, acc, output) = match &layer.kernel {
            Kernel::Conv(k) => (k.run(x)?, k.accumulators(x)?, k.output_params()),
            Kernel::Linear(k) => {
                let x2 = x.view().into_dimensionality::<Ix2>().map_err(|_| {
                    QuantError(format!("input of shape {:?} is not 2-D", x.shape()))
                })?;
                let x2 = x2.to_owned().into_dyn();
                (k.run(&x2)?, k.accumulators(&x2)?, k.output_params())
            }
        };
        let reference = quantize_tensor(simulated, &output);
        if reference.shape() != codes.shape() {
            return Err(QuantError(format!(
                "integer output {:?} and simulation {:?} differ in shape",
                codes.shape(),
                reference.shape()
            )));
        }
        let (lo, hi) = (output.grid.qmin(), output.grid.qmax());
        let mut r = TensorComparison {
            layer: layer.name.clone(),
            tensor: layer.compared.clone(),
            relu_fused: layer.relu,
            accumulator_min: i32::MAX,
            accumulator_max: i32::MIN,
            ..Default::default()
        };
        for (&q, &s) in codes.iter().zip(reference.iter()) {
            r.elements += 1;
            match (i64::from(q) - i64::from(s)).abs() {
                0 => {}
                1 => r.off_by_one += 1,
                _ => r.beyond_one += 1,
            }
            if q == lo && lo != output.zero_point {
                r.saturated_low += 1;
            }
            if q == hi {
                r.saturated_high += 1;
            }
        }
        for &a in acc.iter() {
            r.accumulator_min = r.accumulator_min.min(a);
            r.accumulator_max = r.accumulator_max.max(a);
        }
        self.results[index].merge(&r);
        self.trace(index, &codes, &reference, &acc);
        Ok(())
    }
}

impl TensorHook for CompareHook<'_> {
    fn wants(&self, name: &str) -> bool {
        self.inner.wants(name)
            || self
                .layers
                .layers
                .iter()
                .any(|l| l.input == name || l.compared == name)
    }

    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        self.inner.on_tensor(site, value)?;
        let Some(values) = value.as_f32() else {
            return Ok(());
        };
        for (i, layer) in self.layers.layers.iter().enumerate() {
            if layer.input == site.name && !self.inputs.contains_key(site.name) {
                let params = layer.kernel.input_params();
                self.inputs
                    .insert(site.name.to_string(), quantize_tensor(values, &params));
                self.peaks
                    .insert(site.name.to_string(), sample_peaks(values));
            }
            if layer.compared == site.name {
                let values = values.clone();
                self.compare(i, &values).map_err(|e| Error::Quant {
                    tensor: layer.name.clone(),
                    msg: format!("integer path: {}", e.0),
                })?;
            }
        }
        Ok(())
    }
}

/// Per sample (axis 0), the value of largest magnitude.
fn sample_peaks(values: &ArrayD<f32>) -> Vec<f32> {
    if values.ndim() == 0 {
        return vec![values.iter().copied().next().unwrap_or(0.0)];
    }
    values
        .axis_iter(Axis(0))
        .map(|s| {
            s.iter()
                .copied()
                .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m })
        })
        .collect()
}

/// The integer path against the simulation on a set of samples.
#[derive(Debug, Clone, Serialize)]
pub struct IntegerComparison {
    pub samples: usize,
    /// One comparison per layer on the integer path, in graph order.
    pub tensors: Comparisons,
    /// Layers left in float, and why.
    pub fallbacks: Vec<FloatFallback>,
    /// One traced output element per integer layer that ran.
    pub traces: Vec<ElementTrace>,
}

impl IntegerComparison {
    /// The traced element of layer `node`.
    pub fn trace(&self, node: &str) -> Option<&ElementTrace> {
        self.traces.iter().find(|t| t.layer == node)
    }
}

/// Prepares `config` on `graph` (with the calibration `stats`), builds its integer layers and
/// runs them beside the simulation over `samples` (at most `batch_limit` per run).
pub fn compare_integer(
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    samples: &Samples,
    batch_limit: Option<usize>,
    control: &RunControl<'_>,
) -> Result<IntegerComparison> {
    let quantized = QuantizedModel::prepare(graph, config, stats)?;
    let layers = IntegerLayers::build(graph, config, &quantized, stats)?;
    let plan = Plan::new(&quantized.graph)?;
    let batch = choose_batch(&plan, samples, batch_limit, control.options())?;
    let chunks = run_chunks(samples, batch.size, control, |_, feeds| {
        let mut hook = layers.hook(&quantized);
        plan.run(feeds, Some(&mut hook), control.options())?;
        Ok(hook.into_parts())
    })?;
    let mut traces: Vec<Option<ElementTrace>> = vec![None; layers.layers.len()];
    let mut results = Vec::with_capacity(chunks.len());
    for (comparisons, chunk_traces) in chunks {
        for (t, c) in traces.iter_mut().zip(chunk_traces) {
            if t.is_none() {
                *t = c;
            }
        }
        results.push(comparisons);
    }
    Ok(IntegerComparison {
        samples: samples.count(),
        tensors: layers.merge(&results),
        fallbacks: layers.fallbacks.clone(),
        traces: traces.into_iter().flatten().collect(),
    })
}
