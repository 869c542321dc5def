//! Exact figures of one tensor (the one the app shows) under a config: a weight's metrics with
//! its SQNR per tensor and per channel, or an activation's metrics on the first evaluation
//! chunk.

use std::collections::BTreeMap;

use ndarray::ArrayD;

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::metrics::{MetricOptions, TensorMetrics, compare};
use crate::quant::linear::{Granularity, Rounding, fake_quantize};
use crate::quant::{LayerQuant, QuantConfig, QuantizedModel, WeightQuant};

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

/// The weight's metrics under the config, and its SQNR per tensor and per channel.
pub fn weight_focus(
    graph: &Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    tensor: &str,
    node: &str,
) -> Result<Option<FocusFigures>> {
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
        if let Some(clips) = config.weight_channel_ranges.get(tensor) {
            single
                .weight_channel_ranges
                .insert(tensor.to_string(), clips.clone());
        }
        single.weight_calib = config.weight_calib;
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

/// The activation's metrics under its quantization parameters (first evaluation chunk).
pub fn activation_focus(
    quantized: &QuantizedModel,
    tensor: &str,
    values: Option<ArrayD<f32>>,
) -> Result<Option<FocusFigures>> {
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
    .map_err(|e| Error::Quant {
        tensor: tensor.to_string(),
        msg: e.0,
    })?;
    let metrics =
        compare(values.view(), dequantized.view(), &MetricOptions::default()).map_err(|e| {
            Error::Quant {
                tensor: tensor.to_string(),
                msg: e.to_string(),
            }
        })?;
    Ok(Some(FocusFigures {
        tensor: tensor.to_string(),
        metrics,
        per_tensor_sqnr_db: Some(metrics.sqnr_db),
        per_channel_sqnr_db: None,
    }))
}
