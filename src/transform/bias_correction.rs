//! Bias correction (Nagel et al. 2019): quantizing weights shifts each layer's expected output
//! by E[(W_q − W)·x]; subtracting that shift from the bias removes the bias of the error.
//!
//! - **Empirical**: the shift is measured on calibration data. The float model and the
//!   quantized model (weights and activations, as `config` says) run on the same chunk; at
//!   each quantized layer the per-channel mean of its output is compared with the float one,
//!   and the quantized run continues with the corrected output, so each layer's shift is
//!   measured with the layers before it already corrected. Shifts average over the chunks.
//! - [`measure_shifts`] measures, on other (held-out) data, each corrected layer's shift in
//!   the quantized model before and after correction: the report's before/after.
//! - **Analytic (data-free)**: E[x] of a layer's input comes from the BN folded into the layer
//!   before it (pre-activation ~ N(β, γ²) per channel, see [`super::FloatGraph`]), through the
//!   ReLU (E[ReLU(x)] = γ·φ(β/γ) + β·Φ(β/γ)) or ReLU6 cap. Padding borders are ignored.

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayViewD, Axis};

use super::FloatGraph;
use super::layers::{Layer, Topology, ensure_finite};
use super::report::{ChannelShifts, TransformReport};
use crate::calib::CalibrationStats;
use crate::engine::{Plan, TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::quant::{QuantConfig, QuantizedModel};
use crate::workflow::{RunControl, Samples, choose_batch, run_chunks};

const EMPIRICAL: &str = "bias correction (empirical)";
const ANALYTIC: &str = "bias correction (analytic)";

/// Per-channel sums over every axis but axis 1 (the channel axis of NCHW and [N, C] tensors),
/// and the count of values per channel.
fn channel_sums(values: ArrayViewD<'_, f32>) -> Option<(Vec<f64>, usize)> {
    if values.ndim() < 2 {
        return None;
    }
    let per_channel = values.len() / values.len_of(Axis(1)).max(1);
    Some((
        values
            .axis_iter(Axis(1))
            .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>())
            .collect(),
        per_channel,
    ))
}

/// Records the per-channel means of the watched tensors.
struct MeanRecorder<'a> {
    watched: &'a HashMap<String, String>,
    means: BTreeMap<String, Vec<f64>>,
}

impl TensorHook for MeanRecorder<'_> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if self.watched.contains_key(site.name)
            && let TensorData::F32(a) = value
            && let Some((sums, n)) = channel_sums(a.view())
        {
            let means = sums.iter().map(|s| s / n.max(1) as f64).collect();
            self.means.insert(site.name.to_string(), means);
        }
        Ok(())
    }
}

/// Σ(quantized − float) per channel and the values per channel behind it, by output tensor.
type ShiftSums = BTreeMap<String, (Vec<f64>, usize)>;

/// Measures each watched output's shift from the float per-channel mean of the same chunk
/// and, if `correct`, removes it; then fake-quantizes. Keeps the shift's sums.
struct Corrector<'a, H> {
    float_means: &'a BTreeMap<String, Vec<f64>>,
    shifts: ShiftSums,
    quantize: H,
    correct: bool,
}

impl<H: TensorHook> TensorHook for Corrector<'_, H> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let Some(float) = self.float_means.get(site.name)
            && let TensorData::F32(a) = value
            && let Some((sums, n)) = channel_sums(a.view())
            && sums.len() == float.len()
        {
            let shift: Vec<f64> = sums
                .iter()
                .zip(float)
                .map(|(q, f)| q / n.max(1) as f64 - f)
                .collect();
            if self.correct {
                for (mut channel, s) in a.axis_iter_mut(Axis(1)).zip(&shift) {
                    let s = *s as f32;
                    channel.mapv_inplace(|v| v - s);
                }
            }
            let sums = shift.iter().map(|s| s * n as f64).collect();
            self.shifts.insert(site.name.to_string(), (sums, n));
        }
        self.quantize.on_tensor(site, value)
    }
}

/// The quantized layers (by node name) that can take a bias, keyed by output tensor.
fn correctable_layers(
    graph: &Graph,
    quantized: &QuantizedModel,
    report: &mut TransformReport,
) -> HashMap<String, String> {
    let topology = Topology::of(graph);
    let mut layers = HashMap::new();
    for w in &quantized.weights {
        let Some(index) = graph.nodes.iter().position(|n| n.name == w.node) else {
            continue;
        };
        match Layer::at(graph, &topology, index) {
            Ok(_) => {
                if let Some(out) = graph.nodes[index].outputs.first() {
                    layers.insert(out.clone(), w.node.clone());
                }
            }
            Err(why) => report.skip(&w.node, why),
        }
    }
    layers
}

/// Subtracts `shifts` (by output tensor) from the biases of the layers producing them.
fn apply_shifts(
    model: &FloatGraph,
    shifts: &BTreeMap<String, Vec<f32>>,
    layers: &HashMap<String, String>,
    transform: &str,
    report: &mut TransformReport,
) -> Result<FloatGraph> {
    let mut result = model.clone();
    let topology = Topology::of(&model.graph);
    let mut touched = Vec::new();
    for (output, shift) in shifts {
        let Some(node) = layers.get(output) else {
            continue;
        };
        let Some(index) = model.graph.nodes.iter().position(|n| &n.name == node) else {
            continue;
        };
        let layer = Layer::at(&model.graph, &topology, index)
            .map_err(|why| Error::Graph(format!("node '{node}': {why}")))?;
        let bias = layer
            .bias(&result.graph)
            .map_err(|why| Error::Graph(format!("node '{node}': {why}")))?;
        if bias.len() != shift.len() {
            report.skip(node, "output channels do not match the bias");
            continue;
        }
        let corrected = bias.iter().zip(shift).map(|(b, s)| b - s).collect();
        touched.push(layer.set_bias(&mut result.graph, corrected)?);
        let largest = shift.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        report.apply(node, format!("largest |shift| {largest:.3e}"));
        report.shifts.push(ChannelShifts {
            layer: node.clone(),
            before: shift.clone(),
            after: Vec::new(),
        });
    }
    ensure_finite(&result.graph, &touched, transform)?;
    Ok(result)
}

/// Empirical bias correction on `samples`, chunk by chunk at the batch the graph accepts:
/// in each chunk the float run gives the per-channel means, and the quantized run corrects
/// each layer to them before the next layer runs; the bias moves by the shift averaged over
/// every chunk (weighted by its values). `stats` are the activation calibration statistics
/// `config` needs (as for [`QuantizedModel::prepare`]).
pub fn empirical_bias_correction(
    model: &FloatGraph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    samples: &Samples,
    control: &RunControl<'_>,
) -> Result<(FloatGraph, TransformReport)> {
    let mut report = TransformReport::new(EMPIRICAL);
    let quantized = QuantizedModel::prepare(&model.graph, config, stats)?;
    let layers = correctable_layers(&model.graph, &quantized, &mut report);
    if layers.is_empty() {
        return Ok((model.clone(), report));
    }
    samples.check(&model.graph)?;
    let float_plan = Plan::new(&model.graph)?;
    let quant_plan = Plan::new(&quantized.graph)?;
    let batch = choose_batch(&float_plan, samples, None, control.options())?;
    let per_chunk = run_chunks(samples, batch.size, control, |_, feeds| {
        let mut recorder = MeanRecorder {
            watched: &layers,
            means: BTreeMap::new(),
        };
        float_plan.run(feeds.clone(), Some(&mut recorder), control.options())?;
        let mut corrector = Corrector {
            float_means: &recorder.means,
            shifts: BTreeMap::new(),
            quantize: quantized.hook(),
            correct: true,
        };
        quant_plan.run(feeds, Some(&mut corrector), control.options())?;
        Ok(corrector.shifts)
    })?;
    let shifts = mean_shifts(per_chunk);
    let result = apply_shifts(model, &shifts, &layers, EMPIRICAL, &mut report)?;
    Ok((result, report))
}

/// Measures on `samples` the per-channel mean output shift (quantized minus float `model`) of
/// every layer in `report.shifts`, in the quantized model before correction (`model`) and
/// after it (`corrected`, the same graph with corrected biases), and puts them in the report
/// in place of what the correction estimated. On held-out samples this shows what the
/// correction is worth beyond the data it was measured on.
pub fn measure_shifts(
    model: &FloatGraph,
    corrected: &FloatGraph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    samples: &Samples,
    control: &RunControl<'_>,
    report: &mut TransformReport,
) -> Result<()> {
    let mut watched = HashMap::new();
    for entry in &report.shifts {
        let node = model.graph.nodes.iter().find(|n| n.name == entry.layer);
        if let Some(output) = node.and_then(|n| n.outputs.first()) {
            watched.insert(output.clone(), entry.layer.clone());
        }
    }
    if watched.is_empty() {
        return Ok(());
    }
    samples.check(&model.graph)?;
    let before = QuantizedModel::prepare(&model.graph, config, stats)?;
    let after = QuantizedModel::prepare(&corrected.graph, config, stats)?;
    let float_plan = Plan::new(&model.graph)?;
    let before_plan = Plan::new(&before.graph)?;
    let after_plan = Plan::new(&after.graph)?;
    let batch = choose_batch(&float_plan, samples, None, control.options())?;
    let per_chunk = run_chunks(samples, batch.size, control, |_, feeds| {
        let mut recorder = MeanRecorder {
            watched: &watched,
            means: BTreeMap::new(),
        };
        float_plan.run(feeds.clone(), Some(&mut recorder), control.options())?;
        let mut measured = Vec::with_capacity(2);
        for (plan, quantized) in [(&before_plan, &before), (&after_plan, &after)] {
            let mut measure = Corrector {
                float_means: &recorder.means,
                shifts: BTreeMap::new(),
                quantize: quantized.hook(),
                correct: false,
            };
            plan.run(feeds.clone(), Some(&mut measure), control.options())?;
            measured.push(measure.shifts);
        }
        let after = measured.pop().unwrap_or_default();
        let before = measured.pop().unwrap_or_default();
        Ok((before, after))
    })?;
    let (before, after): (Vec<_>, Vec<_>) = per_chunk.into_iter().unzip();
    let (before, after) = (mean_shifts(before), mean_shifts(after));
    for entry in &mut report.shifts {
        let output = watched
            .iter()
            .find(|(_, node)| **node == entry.layer)
            .map(|(output, _)| output);
        if let Some((b, a)) = output.and_then(|o| Some((before.get(o)?, after.get(o)?))) {
            entry.before = b.clone();
            entry.after = a.clone();
        }
    }
    Ok(())
}

/// The per-channel mean shift by output tensor, averaged over chunks (weighted by their
/// values).
fn mean_shifts(per_chunk: Vec<ShiftSums>) -> BTreeMap<String, Vec<f32>> {
    let mut total: ShiftSums = BTreeMap::new();
    for chunk in per_chunk {
        for (name, (sums, n)) in chunk {
            let entry = total
                .entry(name)
                .or_insert_with(|| (vec![0.0; sums.len()], 0));
            if entry.0.len() == sums.len() {
                entry.0.iter_mut().zip(&sums).for_each(|(t, s)| *t += s);
                entry.1 += n;
            }
        }
    }
    total
        .into_iter()
        .map(|(name, (sums, n))| {
            let mean = sums.iter().map(|s| (s / n.max(1) as f64) as f32).collect();
            (name, mean)
        })
        .collect()
}

/// Standard normal density.
fn phi(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal distribution function.
fn cdf(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// E[ReLU(x)] for x ~ N(μ, σ²): σ·φ(μ/σ) + μ·Φ(μ/σ).
pub fn rectified_gaussian_mean(mean: f64, std: f64) -> f64 {
    if std <= 0.0 {
        return mean.max(0.0);
    }
    let z = mean / std;
    std * phi(z) + mean * cdf(z)
}

/// E[min(max(x, 0), cap)] for x ~ N(μ, σ²) = E[ReLU(x)] − E[ReLU(x − cap)].
pub fn clipped_gaussian_mean(mean: f64, std: f64, cap: f64) -> f64 {
    if cap.is_infinite() {
        return rectified_gaussian_mean(mean, std);
    }
    rectified_gaussian_mean(mean, std) - rectified_gaussian_mean(mean - cap, std)
}

/// E[x] per channel of `tensor`, from the Gaussian statistics of the layer output it derives
/// from through ReLU, caps and averaging; or why it cannot be told.
fn expected_input(
    model: &FloatGraph,
    topology: &Topology,
    tensor: &str,
) -> std::result::Result<Vec<f64>, String> {
    let graph = &model.graph;
    let mut name = tensor.to_string();
    let mut rectified = false;
    // The cap of channel j: a Clip's scalar bound or a per-channel Min.
    let mut scalar_cap = f64::INFINITY;
    let mut channel_caps: Vec<f64> = Vec::new();
    loop {
        if let Some(stats) = model.preactivations.get(&name) {
            let n = stats.mean.len();
            let cap = |j: usize| channel_caps.get(j).copied().unwrap_or(scalar_cap);
            return Ok((0..n)
                .map(|j| {
                    let (m, s) = (f64::from(stats.mean[j]), f64::from(stats.std[j]));
                    if rectified {
                        clipped_gaussian_mean(m, s, cap(j))
                    } else {
                        m
                    }
                })
                .collect());
        }
        let producer = topology
            .producer
            .get(&name)
            .map(|&i| &graph.nodes[i])
            .ok_or_else(|| format!("'{name}' has no BN statistics (no folded BN before it)"))?;
        match producer.op_type.as_str() {
            "Relu" => rectified = true,
            "Clip" => {
                let (lo, hi) = super::equalize::clip_bounds(graph, producer)?;
                if lo != 0.0 {
                    return Err(format!("Clip '{}' does not clip at 0", producer.name));
                }
                rectified = true;
                scalar_cap = f64::from(hi);
            }
            "Min" => {
                let cap = producer
                    .input(1)
                    .and_then(|c| graph.initializers.get(c))
                    .and_then(|t| t.data.as_f32())
                    .ok_or_else(|| format!("Min '{}' has no stored cap", producer.name))?;
                channel_caps = cap.iter().map(|&v| f64::from(v)).collect();
            }
            "Identity" | "GlobalAveragePool" | "AveragePool" | "Flatten" => {}
            other => {
                return Err(format!(
                    "its input passes {other} '{}', whose mean is not tracked",
                    producer.name
                ));
            }
        }
        name = producer
            .input(0)
            .ok_or_else(|| format!("'{}' has no input", producer.name))?
            .to_string();
    }
}

/// Analytic (data-free) bias correction of the weight quantization `config` describes
/// (its activation settings are not used). Needs the statistics BN folding records.
pub fn analytic_bias_correction(
    model: &FloatGraph,
    config: &QuantConfig,
) -> Result<(FloatGraph, TransformReport)> {
    let mut report = TransformReport::new(ANALYTIC);
    let mut weights_only = config.clone();
    weights_only.default.activations = None;
    for layer in weights_only.layers.values_mut() {
        layer.activations = None;
    }
    let quantized = QuantizedModel::prepare(&model.graph, &weights_only, &BTreeMap::new())?;
    let layers = correctable_layers(&model.graph, &quantized, &mut report);
    let topology = Topology::of(&model.graph);
    let mut shifts = BTreeMap::new();
    // In graph order, so that the report lists the skipped layers in the same order every run.
    let mut in_graph_order: Vec<(usize, &String, &String)> = layers
        .iter()
        .filter_map(|(output, node)| {
            let index = model.graph.nodes.iter().position(|n| &n.name == node)?;
            Some((index, output, node))
        })
        .collect();
    in_graph_order.sort_unstable_by_key(|&(index, _, _)| index);
    for (index, output, node) in in_graph_order {
        let layer = Layer::at(&model.graph, &topology, index)
            .map_err(|why| Error::Graph(format!("node '{node}': {why}")))?;
        let Some(input) = model.graph.nodes[index].input(0) else {
            continue;
        };
        let expected = match expected_input(model, &topology, input) {
            Ok(e) if e.len() == layer.in_channels => e,
            Ok(e) => {
                report.skip(
                    node,
                    format!(
                        "{} input statistics for {} channels",
                        e.len(),
                        layer.in_channels
                    ),
                );
                continue;
            }
            Err(why) => {
                report.skip(node, why);
                continue;
            }
        };
        let float_w = layer.weight(&model.graph)?;
        let quant_w = layer.weight(&quantized.graph)?;
        let delta = quant_w - float_w;
        let x: Vec<f32> = expected.iter().map(|&v| v as f32).collect();
        shifts.insert(output.clone(), layer.response_to_constant(&delta, &x));
    }
    let result = apply_shifts(model, &shifts, &layers, ANALYTIC, &mut report)?;
    Ok((result, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trapezoid integral of min(max(x,0),cap)·N(x; μ, σ²) over μ ± 12σ.
    fn numeric_mean(mean: f64, std: f64, cap: f64) -> f64 {
        let steps = 200_000;
        let (lo, hi) = (mean - 12.0 * std, mean + 12.0 * std);
        let h = (hi - lo) / steps as f64;
        (0..=steps)
            .map(|i| {
                let x = lo + i as f64 * h;
                let w = if i == 0 || i == steps { 0.5 } else { 1.0 };
                w * x.clamp(0.0, cap) * phi((x - mean) / std) / std
            })
            .sum::<f64>()
            * h
    }

    #[test]
    fn gaussian_means_match_numeric_integration() {
        for (mean, std) in [(0.0, 1.0), (1.5, 0.5), (-2.0, 1.0), (3.0, 2.5), (-0.3, 0.1)] {
            let closed = rectified_gaussian_mean(mean, std);
            let numeric = numeric_mean(mean, std, f64::INFINITY);
            assert!(
                (closed - numeric).abs() < 1e-6,
                "{mean} {std}: {closed} vs {numeric}"
            );
            let closed6 = clipped_gaussian_mean(mean, std, 6.0);
            let numeric6 = numeric_mean(mean, std, 6.0);
            assert!((closed6 - numeric6).abs() < 1e-6, "{closed6} vs {numeric6}");
        }
        // E[ReLU(x)] for a standard normal is 1/√(2π).
        let expected = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
        assert!((rectified_gaussian_mean(0.0, 1.0) - expected).abs() < 1e-12);
        assert_eq!(rectified_gaussian_mean(-1.0, 0.0), 0.0);
    }
}
