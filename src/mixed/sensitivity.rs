//! Per-layer sensitivity: each quantizable layer alone with its weights at b bits, every other
//! layer in float, measured against the float model with the workflow's [`Evaluation`]
//! (accuracy drop and output KL for classifiers, output SQNR for any model). Layers run in
//! parallel on rayon; progress is a count of finished layers; a cancel flag stops the job.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::{Graph, ParamRole, Tensor};
use crate::quant::config::{LayerQuant, QuantConfig, WeightQuant, weight_input_names};
use crate::workflow::{EvalOptions, Evaluation, Evaluator, RunControl};

/// A layer whose weight can be quantized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuantizableLayer {
    pub node: String,
    pub op_type: String,
    /// The weight initializers' names: W, and also R for the recurrent ops.
    pub tensors: Vec<String>,
    /// Number of weights.
    pub params: usize,
}

/// Every Conv, ConvTranspose, Gemm, MatMul, LSTM, GRU and RNN reading a stored weight, in graph
/// order (each weight once).
pub fn quantizable_layers(graph: &Graph) -> Vec<QuantizableLayer> {
    let mut layers: Vec<QuantizableLayer> = Vec::new();
    for node in &graph.nodes {
        let tensors: Vec<&Tensor> = weight_input_names(node)
            .filter_map(|n| graph.initializers.get(n))
            .filter(|t| t.role == ParamRole::Weight)
            .filter(|t| !layers.iter().any(|l| l.tensors.contains(&t.name)))
            .collect();
        if tensors.is_empty() {
            continue;
        }
        layers.push(QuantizableLayer {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            tensors: tensors.iter().map(|t| t.name.clone()).collect(),
            params: tensors.iter().map(|t| t.data.len()).sum(),
        });
    }
    layers
}

/// The config quantizing only `node`'s weights as `weights`.
pub fn single_layer_config(node: &str, weights: WeightQuant) -> QuantConfig {
    let mut config = QuantConfig::default();
    config.layers.insert(
        node.to_string(),
        LayerQuant {
            weights: Some(weights),
            activations: None,
        },
    );
    config
}

/// Measures a weights-only `config` on `evaluator`'s float graph and samples (outputs only).
pub fn measure(
    evaluator: &Evaluator<'_>,
    config: &QuantConfig,
    cancel: &AtomicBool,
) -> Result<Evaluation> {
    evaluator.evaluate(
        evaluator.float_graph(),
        config,
        &BTreeMap::new(),
        &EvalOptions::default(),
        &RunControl::cancel(cancel),
    )
}

/// One layer quantized alone.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSensitivity {
    #[serde(flatten)]
    pub layer: QuantizableLayer,
    pub evaluation: Evaluation,
    /// Float accuracy minus this accuracy (with labels), in [−1, 1].
    pub accuracy_drop: Option<f64>,
}

/// The sensitivity of every quantizable layer at one weight setting.
#[derive(Debug, Clone, Serialize)]
pub struct SensitivityReport {
    pub weights: String,
    pub per_channel: bool,
    pub float_accuracy: Option<f64>,
    pub layers: Vec<LayerSensitivity>,
}

impl SensitivityReport {
    /// The entry of `node`.
    pub fn layer(&self, node: &str) -> Option<&LayerSensitivity> {
        self.layers.iter().find(|l| l.layer.node == node)
    }
}

/// Quantizes each layer alone with `weights` and measures it. `progress(done, total)` is called
/// after each layer (from rayon's threads).
pub fn analyze(
    evaluator: &Evaluator<'_>,
    weights: WeightQuant,
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &AtomicBool,
) -> Result<SensitivityReport> {
    let layers = quantizable_layers(evaluator.float_graph());
    if layers.is_empty() {
        return Err(Error::Input {
            name: "sensitivity".into(),
            msg: "the model has no Conv, Gemm or MatMul layer with a stored weight".into(),
        });
    }
    let done = AtomicUsize::new(0);
    let total = layers.len();
    let measured: Result<Vec<LayerSensitivity>> = layers
        .into_par_iter()
        .map(|layer| {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let evaluation = measure(
                evaluator,
                &single_layer_config(&layer.node, weights),
                cancel,
            )?;
            let accuracy_drop = evaluation
                .float_accuracy()
                .zip(evaluation.quant_accuracy())
                .map(|(f, q)| f - q);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            Ok(LayerSensitivity {
                layer,
                evaluation,
                accuracy_drop,
            })
        })
        .collect();
    let layers = measured?;
    Ok(SensitivityReport {
        weights: weights.scheme.to_string(),
        per_channel: weights.per_channel,
        float_accuracy: layers.first().and_then(|l| l.evaluation.float_accuracy()),
        layers,
    })
}
