//! Fake quantization of a whole model: weights quantized once per config (any scheme, per
//! tensor or per channel, per layer), activations quantized at the inputs of quantized layers
//! through the executor's tensor hook, with ranges from calibration or set by hand.

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, ArrayViewD};
use serde::Serialize;

use super::channels::Granularity;
use super::config::{QUANTIZABLE_OPS, QuantConfig, WeightQuant};
use super::grid::{IntGrid, LinearParams, QuantError};
use crate::calib::CalibrationStats;
use crate::engine::{TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Graph, ParamRole, Tensor, TensorData};
use crate::metrics::{MetricOptions, TensorMetrics, compare};

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
    /// Float vs de-quantized weights.
    pub metrics: TensorMetrics,
}

/// One quantized activation tensor.
#[derive(Debug, Clone, Serialize)]
pub struct ActivationReport {
    pub tensor: String,
    pub range: (f32, f32),
    pub params: LinearParams,
    /// Whether the range was set by hand rather than calibrated.
    pub manual: bool,
}

/// A graph whose weights are replaced by their de-quantized values, plus the activation
/// quantizers applied by [`QuantizedModel::hook`].
pub struct QuantizedModel {
    pub graph: Graph,
    pub weights: Vec<WeightReport>,
    pub activations: Vec<ActivationReport>,
    activation_params: HashMap<String, LinearParams>,
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
        // Layers inside subgraphs read their weights from the top graph (`ir::scope`), so they
        // are quantized like any other; their activations stay float, as in the QDQ export.
        for node in graph.nodes_recursive() {
            if !QUANTIZABLE_OPS.contains(&node.op_type.as_str()) {
                continue;
            }
            let layer = config.layer(&node.name);
            if let Some(weight_quant) = &layer.weights
                && let Some(name) = node.input(1)
                && let Some(tensor) = graph.initializers.get(name)
                && tensor.role == ParamRole::Weight
                && !weights.iter().any(|w: &WeightReport| w.tensor == name)
            {
                let manual = config.weight_ranges.get(name).copied();
                let (values, report) = quantize_weight(tensor, weight_quant, manual, &node.name)?;
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
                if activation_params.contains_key(name) {
                    continue;
                }
                let grid =
                    IntGrid::new(act.bits, act.symmetric, false).map_err(quant_error(name))?;
                let (range, manual) = match config.activation_ranges.get(name) {
                    Some(&range) => (range, true),
                    None => {
                        let tensor_stats = stats.get(name).ok_or_else(|| Error::Quant {
                            tensor: name.to_string(),
                            msg: "no calibration statistics (calibrate with data first)".into(),
                        })?;
                        let range =
                            act.method
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
                activation_params.insert(name.to_string(), params);
                activations.push(ActivationReport {
                    tensor: name.to_string(),
                    range,
                    params,
                    manual,
                });
            }
        }
        Ok(QuantizedModel {
            graph: quantized,
            weights,
            activations,
            activation_params,
        })
    }

    /// The hook that fake-quantizes activations during a run of `self.graph`.
    pub fn hook(&self) -> FakeQuantHook<'_> {
        FakeQuantHook {
            params: &self.activation_params,
        }
    }
}

/// Quantizes one weight tensor, returning the de-quantized values and a report.
fn quantize_weight(
    tensor: &Tensor,
    quant: &WeightQuant,
    manual_range: Option<(f32, f32)>,
    node: &str,
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
    let granularity = match (quant.per_channel, tensor.channel_axis) {
        (true, Some(axis)) if manual_range.is_none() => Granularity::PerChannel { axis },
        _ => Granularity::PerTensor,
    };
    let quantized = quant
        .scheme
        .fake_quantize(values.view(), granularity, manual_range)
        .map_err(quant_error(name))?;
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
        metrics,
    };
    Ok((quantized.values, report))
}

/// Fake-quantizes the activations that have parameters, in place, as they are produced.
pub struct FakeQuantHook<'a> {
    params: &'a HashMap<String, LinearParams>,
}

impl TensorHook for FakeQuantHook<'_> {
    fn wants(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let Some(params) = self.params.get(site.name)
            && let TensorData::F32(values) = value
        {
            let params = *params;
            values.par_mapv_inplace(|x| params.fake_quantize(x));
        }
        Ok(())
    }
}
