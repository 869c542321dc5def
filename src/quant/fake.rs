//! Fake quantization of a whole model: weights quantized once per config (any scheme, per
//! tensor or per channel, per layer), activations quantized at the inputs of quantized layers
//! (and at the graph's outputs when [`QuantConfig::quantize_outputs`] says so) through the
//! executor's tensor hook, with ranges from calibration or set by hand (per tensor,
//! or for single channels of an activation, see [`channel_clips`]).

pub mod channel_clips;
#[cfg(test)]
mod recurrent_tests;

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;
use serde::Serialize;

use super::channels::Granularity;
use super::config::{
    ActivationQuant, QUANTIZABLE_OPS, QuantConfig, WeightQuant, WeightScheme, weight_input_names,
};
use super::grid::{IntGrid, LinearParams, QuantError};
use super::learned_rounding::LearnedRounding;
use super::linear::{self, LinearConfig, Rounding};
use super::scheme::FakeQuantized;
use super::weight_calib::calibrated_ranges;
use crate::calib::{CalibrationStats, Method};
use crate::engine::{TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, ParamRole, Tensor, TensorData};
use crate::metrics::{MetricOptions, TensorMetrics, compare};
use channel_clips::{ActivationChannels, activation_channels, fake_quantize_channels};

/// What quantizing one weight tensor did.
#[derive(Debug, Clone, Serialize)]
pub struct WeightReport {
    pub tensor: String,
    /// The (first) layer reading it.
    pub node: String,
    pub scheme: String,
    pub per_channel: bool,
    /// Linear schemes: the clip range and (S, Z) of each channel (one per tensor).
    pub ranges: Vec<(f32, f32)>,
    pub params: Vec<LinearParams>,
    /// Channels whose clip range was set by hand (per-channel manual clips).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub manual_channels: Vec<usize>,
    /// Float vs de-quantized weights.
    pub metrics: TensorMetrics,
    /// Rounded by the learned (AdaRound) rounding of the config instead of to nearest.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adaround: bool,
}

/// One quantized activation tensor.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationReport {
    pub tensor: String,
    pub range: (f32, f32),
    pub params: LinearParams,
    /// Whether the range was set by hand rather than calibrated.
    pub manual: bool,
    /// Channels clipped by hand, if any: the activation is then quantized per channel, these
    /// channels on their own grid and the others on this tensor's (`range`, `params`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<ActivationChannels>,
}

/// A graph whose weights are replaced by their de-quantized values, plus the activation
/// quantizers applied by [`QuantizedModel::hook`].
pub struct QuantizedModel {
    pub graph: Graph,
    pub weights: Vec<WeightReport>,
    pub activations: Vec<ActivationReport>,
    /// Learned roundings of the config that did not apply (other weights or ranges), and why;
    /// those tensors are rounded to nearest.
    pub warnings: Vec<String>,
    activation_params: HashMap<String, LinearParams>,
    activation_channels: HashMap<String, ActivationChannels>,
}

fn quant_error(tensor: &str) -> impl Fn(QuantError) -> Error + '_ {
    move |e| Error::Quant {
        tensor: tensor.to_string(),
        msg: e.0,
    }
}

impl QuantizedModel {
    /// Quantizes `graph` under `config`. `stats` holds calibration statistics of activation
    /// tensors (from [`crate::calib::ActivationCollector`]); they are needed for every
    /// quantized activation without a manual range.
    pub fn prepare(
        graph: &Graph,
        config: &QuantConfig,
        stats: &BTreeMap<String, CalibrationStats>,
    ) -> Result<QuantizedModel> {
        let mut quantized = graph.clone();
        let mut weights = Vec::new();
        let mut activations = Vec::new();
        let mut activation_params = HashMap::new();
        let mut per_channel = HashMap::new();
        let mut warnings = Vec::new();
        // The quantized activations in order, with their layer's settings.
        let mut sites: Vec<(&str, ActivationQuant)> = Vec::new();
        // Layers inside subgraphs read their weights from the top graph (`ir::scope`), so they
        // are quantized like any other; their activations stay float, as in the QDQ export.
        for node in graph.nodes_recursive() {
            if !QUANTIZABLE_OPS.contains(&node.op_type.as_str()) {
                continue;
            }
            let layer = config.layer(&node.name);
            for name in weight_input_names(node) {
                let Some(weight_quant) = &layer.weights else {
                    break;
                };
                let Some(tensor) = graph.initializers.get(name) else {
                    continue;
                };
                if tensor.role != ParamRole::Weight
                    || weights.iter().any(|w: &WeightReport| w.tensor == name)
                {
                    continue;
                }
                let manual = ManualClips {
                    tensor: config.weight_ranges.get(name).copied(),
                    channels: config.weight_channel_ranges.get(name),
                };
                let entry = config.adaround.get(name);
                let config_mismatch = entry.and_then(|l| l.config_mismatch(config, name));
                let learned = entry.filter(|_| config_mismatch.is_none());
                let (values, report) = quantize_weight(
                    tensor,
                    weight_quant,
                    manual,
                    config.weight_calib,
                    &node.name,
                    learned,
                )?;
                if entry.is_some() && !report.adaround {
                    let why = config_mismatch.unwrap_or_else(|| {
                        "the weights or their clip ranges differ from the ones it was learned on"
                            .into()
                    });
                    warnings.push(format!(
                        "AdaRound rounding of '{name}' not applied ({why}): rounded to nearest"
                    ));
                }
                if let Some(target) = quantized.initializers.get_mut(name) {
                    target.data = TensorData::F32(values);
                }
                weights.push(report);
            }
            let Some(act) = &layer.activations else {
                continue;
            };
            if !graph
                .nodes
                .as_ptr_range()
                .contains(&std::ptr::from_ref(node))
            {
                continue; // a layer inside a subgraph
            }
            // Data inputs: input 0, and MatMul's second operand when it is not a weight.
            let mut data_inputs = vec![node.input(0)];
            if node.op_type == "MatMul"
                && !graph.initializers.contains_key(node.input(1).unwrap_or(""))
            {
                data_inputs.push(node.input(1));
            }
            for name in data_inputs.into_iter().flatten() {
                if !sites.iter().any(|(site, _)| *site == name) {
                    sites.push((name, *act));
                }
            }
        }
        if config.quantize_outputs
            && let Some(act) = config.default.activations
        {
            for name in quantized_graph_outputs(graph, config, stats) {
                if !sites.iter().any(|(site, _)| *site == name) {
                    sites.push((name, act));
                }
            }
        }
        for (name, act) in sites {
            let report = activation_report(graph, config, stats, &act, name)?;
            activation_params.insert(name.to_string(), report.params);
            if let Some(channels) = &report.channels {
                per_channel.insert(name.to_string(), channels.clone());
            }
            activations.push(report);
        }
        // A bias behind an activation quantized per channel stays float, as the QDQ export
        // leaves it (its scale S_x·S_w would differ per input channel).
        let per_tensor: HashMap<String, LinearParams> = activation_params
            .iter()
            .filter(|(name, _)| !per_channel.contains_key(*name))
            .map(|(name, p)| (name.clone(), *p))
            .collect();
        super::bias::quantize_biases(&mut quantized, graph, &weights, &per_tensor);
        Ok(QuantizedModel {
            graph: quantized,
            weights,
            activations,
            warnings,
            activation_params,
            activation_channels: per_channel,
        })
    }

    /// The hook that fake-quantizes activations during a run of `self.graph`.
    pub fn hook(&self) -> FakeQuantHook<'_> {
        FakeQuantHook {
            params: &self.activation_params,
            channels: &self.activation_channels,
        }
    }
}

/// The quantizer of activation `name` under `act`: its range set by hand in `config`, else
/// calibrated from `stats` by `act.method`; per channel where channels are clipped by hand.
fn activation_report(
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    act: &ActivationQuant,
    name: &str,
) -> Result<ActivationReport> {
    let grid = IntGrid::new(act.bits, act.symmetric, false).map_err(quant_error(name))?;
    let (range, manual) = match config.activation_ranges.get(name) {
        Some(&range) => (range, true),
        None => {
            let tensor_stats = stats.get(name).ok_or_else(|| Error::Quant {
                tensor: name.to_string(),
                msg: "no calibration statistics (calibrate with data first)".into(),
            })?;
            let range = act
                .method
                .range(tensor_stats, act.bits)
                .map_err(|e| Error::Quant {
                    tensor: name.to_string(),
                    msg: e.to_string(),
                })?;
            (range, false)
        }
    };
    let params = LinearParams::from_range(range.0, range.1, grid, act.symmetric)
        .map_err(quant_error(name))?;
    let channels = match config.activation_channel_ranges.get(name) {
        Some(clips) if !clips.is_empty() => Some(activation_channels(
            graph,
            name,
            clips,
            grid,
            act.symmetric,
        )?),
        _ => None,
    };
    Ok(ActivationReport {
        tensor: name.to_string(),
        range,
        params,
        manual,
        channels,
    })
}

/// The graph outputs [`QuantConfig::quantize_outputs`] quantizes: float tensors computed by
/// the graph (not its inputs or constants). An output declared with another element type, or
/// with no declared type, no calibration statistics and no manual range (integer tensors are
/// not calibrated), is left as it is.
fn quantized_graph_outputs<'a>(
    graph: &'a Graph,
    config: &'a QuantConfig,
    stats: &'a BTreeMap<String, CalibrationStats>,
) -> impl Iterator<Item = &'a str> + 'a {
    graph
        .outputs
        .iter()
        .filter(|o| !graph.inputs.iter().any(|i| i.name == o.name))
        .filter(|o| !graph.initializers.contains_key(&o.name))
        .filter(move |o| match o.dtype {
            Some(dtype) => dtype == DType::F32,
            None => stats.contains_key(&o.name) || config.activation_ranges.contains_key(&o.name),
        })
        .map(|o| o.name.as_str())
}

/// A weight tensor's clip ranges set by hand: one for the whole tensor, some channels'.
#[derive(Debug, Clone, Copy, Default)]
struct ManualClips<'a> {
    tensor: Option<(f32, f32)>,
    channels: Option<&'a BTreeMap<usize, (f32, f32)>>,
}

/// Linear clip ranges: one for the whole tensor or one per channel.
type ClipRanges = Vec<(f32, f32)>;

/// The granularity and linear clip ranges of a weight tensor (None: the scheme computes its
/// own). A per-tensor manual range makes the tensor per tensor, unless channels have manual
/// ranges: then it is per channel, those channels at their range and the others at the
/// tensor's manual range or at their calibrated one.
fn weight_ranges(
    values: ArrayViewD<'_, f32>,
    name: &str,
    quant: &WeightQuant,
    channel_axis: Option<usize>,
    manual: ManualClips<'_>,
    calib: Option<Method>,
) -> Result<(Granularity, Option<ClipRanges>)> {
    let err = |msg: String| Error::Quant {
        tensor: name.to_string(),
        msg,
    };
    let channel_clips = manual.channels.filter(|c| !c.is_empty());
    let WeightScheme::Linear { bits, .. } = quant.scheme else {
        let granularity = match (quant.per_channel, channel_axis) {
            (true, Some(axis)) if manual.tensor.is_none() => Granularity::PerChannel { axis },
            _ => Granularity::PerTensor,
        };
        return Ok((granularity, manual.tensor.map(|r| vec![r])));
    };
    let calibrated = |granularity: Granularity| -> Result<Vec<(f32, f32)>> {
        match calib {
            Some(method) => calibrated_ranges(values.view(), granularity, method, bits),
            None => linear::minmax_ranges(values.view(), granularity),
        }
        .map_err(quant_error(name))
    };
    let Some(clips) = channel_clips else {
        return Ok(match (manual.tensor, quant.per_channel, channel_axis) {
            (Some(range), _, _) => (Granularity::PerTensor, Some(vec![range])),
            (None, true, Some(axis)) => {
                let granularity = Granularity::PerChannel { axis };
                (
                    granularity,
                    calib.map(|_| calibrated(granularity)).transpose()?,
                )
            }
            (None, _, _) => (
                Granularity::PerTensor,
                calib
                    .map(|_| calibrated(Granularity::PerTensor))
                    .transpose()?,
            ),
        });
    };
    let axis = channel_axis.filter(|&a| a < values.ndim()).ok_or_else(|| {
        err("per-channel clip ranges set, but the tensor has no channel axis".into())
    })?;
    let channels = values.shape()[axis];
    let granularity = Granularity::PerChannel { axis };
    let mut ranges = match (manual.tensor, quant.per_channel) {
        (Some(range), _) => vec![range; channels],
        (None, true) => calibrated(granularity)?,
        (None, false) => vec![calibrated(Granularity::PerTensor)?[0]; channels],
    };
    for (&c, &(lo, hi)) in clips {
        if c >= channels {
            return Err(err(format!(
                "clip range for channel {c}, but the tensor has {channels} channels"
            )));
        }
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(err(format!("channel {c}: invalid clip range [{lo}, {hi}]")));
        }
        ranges[c] = (lo, hi);
    }
    Ok((granularity, Some(ranges)))
}

/// The linear grid `prepare` puts the weight `tensor` on when quantized as `quant` under
/// `config` (manual ranges and weight calibration included): its granularity, clip ranges and
/// parameters. None for non-linear schemes.
pub fn linear_weight_grid(
    tensor: &Tensor,
    quant: &WeightQuant,
    config: &QuantConfig,
) -> Result<Option<(Granularity, ClipRanges, Vec<LinearParams>)>> {
    let name = tensor.name.as_str();
    let WeightScheme::Linear { bits, symmetric } = quant.scheme else {
        return Ok(None);
    };
    let values = tensor.data.as_f32().ok_or_else(|| Error::Quant {
        tensor: name.to_string(),
        msg: "integer tensors are not quantized".into(),
    })?;
    let manual = ManualClips {
        tensor: config.weight_ranges.get(name).copied(),
        channels: config.weight_channel_ranges.get(name),
    };
    let (granularity, ranges) = weight_ranges(
        values.view(),
        name,
        quant,
        tensor.channel_axis,
        manual,
        config.weight_calib,
    )?;
    let ranges = match ranges {
        Some(ranges) => ranges,
        None => linear::minmax_ranges(values.view(), granularity).map_err(quant_error(name))?,
    };
    let linear_config = LinearConfig {
        grid: IntGrid::new(bits, true, false).map_err(quant_error(name))?,
        symmetric,
        granularity,
        rounding: Rounding::NearestEven,
    };
    let params =
        linear::params(values.view(), &linear_config, &ranges).map_err(quant_error(name))?;
    Ok(Some((granularity, ranges, params)))
}

/// The de-quantized values, ranges and parameters of `values` rounded by `learned` on the
/// linear grid of `quant` with `ranges` (None: min-max), or None when it does not apply.
fn learned_values(
    values: ArrayViewD<'_, f32>,
    quant: &WeightQuant,
    granularity: Granularity,
    ranges: Option<&ClipRanges>,
    learned: &LearnedRounding,
) -> Option<(ArrayD<f32>, ClipRanges, Vec<LinearParams>)> {
    let WeightScheme::Linear { bits, symmetric } = quant.scheme else {
        return None;
    };
    let ranges = match ranges {
        Some(ranges) => ranges.clone(),
        None => linear::minmax_ranges(values.view(), granularity).ok()?,
    };
    let config = LinearConfig {
        grid: IntGrid::new(bits, true, false).ok()?,
        symmetric,
        granularity,
        rounding: Rounding::NearestEven,
    };
    let params = linear::params(values.view(), &config, &ranges).ok()?;
    let codes = learned
        .codes(values.view(), &ranges, &params, granularity)
        .ok()?;
    let values = linear::dequantize(codes.view(), &params, granularity).ok()?;
    Some((values, ranges, params))
}

/// Quantizes one weight tensor, returning the de-quantized values and a report; `learned`
/// rounds it instead of round-to-nearest when it matches the tensor's weights and grid.
fn quantize_weight(
    tensor: &Tensor,
    quant: &WeightQuant,
    manual: ManualClips<'_>,
    calib: Option<Method>,
    node: &str,
    learned: Option<&LearnedRounding>,
) -> Result<(ArrayD<f32>, WeightReport)> {
    let name = tensor.name.as_str();
    let values: ArrayViewD<'_, f32> = match &tensor.data {
        TensorData::F32(a) => a.view(),
        TensorData::I64(_) => {
            return Err(Error::Quant {
                tensor: name.to_string(),
                msg: "integer tensors are not quantized".into(),
            });
        }
    };
    let (granularity, ranges) = weight_ranges(
        values.view(),
        name,
        quant,
        tensor.channel_axis,
        manual,
        calib,
    )?;
    let manual_channels = match (granularity, manual.channels) {
        (Granularity::PerChannel { .. }, Some(clips)) if quant.scheme.is_linear() => {
            clips.keys().copied().collect()
        }
        _ => Vec::new(),
    };
    let rounded =
        learned.and_then(|l| learned_values(values.view(), quant, granularity, ranges.as_ref(), l));
    let adaround = rounded.is_some();
    let quantized = match rounded {
        Some((values, ranges, params)) => FakeQuantized {
            values,
            ranges,
            params,
        },
        None => quant
            .scheme
            .fake_quantize_in(values.view(), granularity, ranges)
            .map_err(quant_error(name))?,
    };
    let metrics = compare(
        values.view(),
        quantized.values.view(),
        &MetricOptions::default(),
    )
    .map_err(|e| Error::Quant {
        tensor: name.to_string(),
        msg: e.to_string(),
    })?;
    let report = WeightReport {
        tensor: name.to_string(),
        node: node.to_string(),
        scheme: quant.scheme.to_string(),
        per_channel: matches!(granularity, Granularity::PerChannel { .. }),
        ranges: quantized.ranges,
        params: quantized.params,
        manual_channels,
        metrics,
        adaround,
    };
    Ok((quantized.values, report))
}

/// Elements per parallel work item of the hook's fake quantization.
const FAKE_QUANT_CHUNK: usize = 16 * 1024;

/// Fake-quantizes the activations that have parameters, in place, as they are produced.
pub struct FakeQuantHook<'a> {
    params: &'a HashMap<String, LinearParams>,
    /// Activations with channels clipped by hand, quantized per channel.
    channels: &'a HashMap<String, ActivationChannels>,
}

impl TensorHook for FakeQuantHook<'_> {
    fn wants(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let Some(params) = self.params.get(site.name)
            && let Some(channels) = self.channels.get(site.name)
        {
            fake_quantize_channels(value, site.name, *params, channels)?;
        } else if let Some(params) = self.params.get(site.name)
            && let TensorData::F32(values) = value
        {
            let params = *params;
            match values.as_slice_mut() {
                Some(flat) => flat
                    .par_chunks_mut(FAKE_QUANT_CHUNK)
                    .for_each(|chunk| params.fake_quantize_slice(chunk)),
                None => values.par_mapv_inplace(|x| params.fake_quantize(x)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DType;
    use crate::quant::test_support::gaussian_like;

    fn weight(per_channel: bool) -> (Tensor, WeightQuant) {
        let mut t = Tensor::new(
            "w",
            TensorData::F32(gaussian_like(&[4, 3, 3, 3], 7, 1.0)),
            DType::F32,
        );
        t.role = ParamRole::Weight;
        t.channel_axis = Some(0);
        let q = WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 8,
                symmetric: true,
            },
            per_channel,
        };
        (t, q)
    }

    fn quantize(
        t: &Tensor,
        q: &WeightQuant,
        tensor: Option<(f32, f32)>,
        channels: &BTreeMap<usize, (f32, f32)>,
    ) -> Result<WeightReport> {
        let manual = ManualClips {
            tensor,
            channels: Some(channels),
        };
        quantize_weight(t, q, manual, None, "conv", None).map(|(_, r)| r)
    }

    #[test]
    fn a_channel_clip_changes_only_that_channels_parameters() {
        let (t, q) = weight(true);
        let none = BTreeMap::new();
        let plain = quantize(&t, &q, None, &none).unwrap();
        assert!(plain.per_channel && plain.manual_channels.is_empty());
        let clips = BTreeMap::from([(2, (-0.25, 0.25))]);
        let clipped = quantize(&t, &q, None, &clips).unwrap();
        assert_eq!(clipped.manual_channels, vec![2]);
        for c in 0..4 {
            if c == 2 {
                assert_eq!(clipped.ranges[c], (-0.25, 0.25));
                assert_eq!(clipped.params[c].scale, 0.25 / 127.0);
            } else {
                assert_eq!(clipped.params[c], plain.params[c], "channel {c}");
            }
        }
        assert!(clipped.metrics.mse > plain.metrics.mse);
    }

    #[test]
    fn channel_clips_make_per_tensor_layers_per_channel_around_the_tensors_range() {
        let (t, q) = weight(false);
        let none = BTreeMap::new();
        let tensor_range = quantize(&t, &q, None, &none).unwrap().ranges[0];
        let clips = BTreeMap::from([(0, (-0.5, 0.5))]);
        let r = quantize(&t, &q, None, &clips).unwrap();
        assert!(r.per_channel);
        assert_eq!(
            r.ranges,
            vec![(-0.5, 0.5), tensor_range, tensor_range, tensor_range]
        );
        // With a per-tensor range set by hand, the other channels take it.
        let r = quantize(&t, &q, Some((-1.0, 1.0)), &clips).unwrap();
        assert_eq!(
            r.ranges,
            vec![(-0.5, 0.5), (-1.0, 1.0), (-1.0, 1.0), (-1.0, 1.0)]
        );
        // Without channel clips a manual range stays per tensor, as before.
        let r = quantize(&t, &q, Some((-1.0, 1.0)), &none).unwrap();
        assert!(!r.per_channel && r.ranges == vec![(-1.0, 1.0)]);
    }

    /// Weights float, activations uint8 min-max.
    fn uint8_activations_only() -> QuantConfig {
        use crate::quant::config::LayerQuant;
        QuantConfig {
            default: LayerQuant {
                weights: None,
                activations: Some(ActivationQuant {
                    bits: 8,
                    symmetric: false,
                    method: Method::MinMax,
                }),
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_activation_channel_clip_quantizes_that_channel_alone_on_its_grid() {
        use crate::ir::{Graph, Node, ValueInfo};
        let (w, _) = weight(true);
        let graph = Graph {
            name: "g".into(),
            nodes: vec![Node::new("conv", "Conv", &["x", "w"], &["y"])],
            inputs: vec![ValueInfo {
                name: "x".into(),
                dtype: Some(DType::F32),
                shape: None,
            }],
            outputs: vec![],
            initializers: BTreeMap::from([("w".into(), w)]),
            opset: 13,
        };
        let mut config = uint8_activations_only();
        config.activation_ranges.insert("x".into(), (0.0, 4.0));
        let plain = QuantizedModel::prepare(&graph, &config, &BTreeMap::new()).unwrap();
        assert!(plain.activations[0].channels.is_none());
        config
            .activation_channel_ranges
            .insert("x".into(), BTreeMap::from([(2, (0.0, 1.0))]));
        let clipped = QuantizedModel::prepare(&graph, &config, &BTreeMap::new()).unwrap();
        let report = &clipped.activations[0];
        assert_eq!(
            report.params, plain.activations[0].params,
            "the tensor's grid"
        );
        let channels = report.channels.as_ref().unwrap();
        assert_eq!((channels.axis, channels.count), (1, Some(3)));
        let scales: Vec<f32> = channels
            .all_params(report.params)
            .unwrap()
            .iter()
            .map(|p| p.scale)
            .collect();
        assert_eq!(scales, vec![4.0 / 255.0, 4.0 / 255.0, 1.0 / 255.0]);
        // Through the hook: channel 2 saturates at 1.0 on the fine grid, the others do not.
        let values = ndarray::Array::from_shape_fn((2, 3, 2, 2), |(n, c, h, w)| {
            0.37 * (n + c + h + w) as f32
        })
        .into_dyn();
        let site = TensorSite {
            name: "x",
            producer: None,
            step: None,
        };
        let run = |model: &QuantizedModel| {
            let mut value = TensorData::F32(values.clone());
            model.hook().on_tensor(site, &mut value).unwrap();
            value.as_f32().unwrap().to_owned()
        };
        let (p, q) = (run(&plain), run(&clipped));
        let fine = channels.clips[0].params;
        for ((i, &a), &b) in p.indexed_iter().zip(q.iter()) {
            let x = values[&i];
            if i[1] == 2 {
                assert_eq!(b, fine.fake_quantize(x), "{i:?}");
                assert!(b <= 1.0);
            } else {
                assert_eq!(a, b, "{i:?}: another channel changed");
            }
        }
        // A channel the consuming convolution does not have is refused by name.
        config
            .activation_channel_ranges
            .insert("x".into(), BTreeMap::from([(3, (0.0, 1.0))]));
        let e = QuantizedModel::prepare(&graph, &config, &BTreeMap::new())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("'x'") && e.contains("channel 3"), "{e}");
    }

    #[test]
    fn bad_channel_clips_are_errors_naming_the_tensor() {
        let (t, q) = weight(true);
        let out_of_range = BTreeMap::from([(4, (-0.5, 0.5))]);
        let e = quantize(&t, &q, None, &out_of_range)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tensor 'w': "), "{e}");
        assert!(e.contains("channel 4") && e.contains("4 channels"), "{e}");
        let inverted = BTreeMap::from([(1, (0.5, -0.5))]);
        let e = quantize(&t, &q, None, &inverted).unwrap_err().to_string();
        assert!(e.contains("channel 1: invalid clip range"), "{e}");
        let (mut flat, q) = weight(true);
        flat.channel_axis = None;
        let e = quantize(&flat, &q, None, &BTreeMap::from([(0, (-0.5, 0.5))]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no channel axis"), "{e}");
    }

    #[test]
    fn quantize_outputs_adds_the_float_graph_outputs_and_skips_integer_ones() {
        use crate::ir::{Graph, Node, ValueInfo};
        let (w, _) = weight(true);
        let info = |name: &str, dtype: Option<DType>| ValueInfo {
            name: name.into(),
            dtype,
            shape: None,
        };
        let graph = Graph {
            name: "g".into(),
            nodes: vec![
                Node::new("conv", "Conv", &["x", "w"], &["y"]),
                Node::new("argmax", "ArgMax", &["y"], &["k"]),
                Node::new("shape", "Shape", &["y"], &["s"]),
            ],
            inputs: vec![info("x", Some(DType::F32))],
            outputs: vec![
                info("y", Some(DType::F32)),
                info("k", Some(DType::I64)),
                info("s", None),
                info("x", Some(DType::F32)),
            ],
            initializers: BTreeMap::from([("w".into(), w)]),
            opset: 13,
        };
        let mut config = uint8_activations_only();
        config.activation_ranges.insert("x".into(), (0.0, 4.0));
        config.activation_ranges.insert("y".into(), (-1.0, 3.0));
        let tensors = |config: &QuantConfig| -> Vec<String> {
            QuantizedModel::prepare(&graph, config, &BTreeMap::new())
                .unwrap()
                .activations
                .into_iter()
                .map(|a| a.tensor)
                .collect()
        };
        assert_eq!(tensors(&config), vec!["x"]);
        config.quantize_outputs = true;
        assert_eq!(tensors(&config), vec!["x", "y"]);
        // A float output without a range or statistics is an error naming it.
        config.activation_ranges.remove("y");
        let e = QuantizedModel::prepare(&graph, &config, &BTreeMap::new())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("tensor 'y'") && e.contains("no calibration statistics"),
            "{e}"
        );
    }
}
