//! Measuring a [`QuantConfig`] on labelled data: fake-quantize the graph, run it once over the
//! samples and compare its logits with the float model's (top-1 accuracy, agreement, mean
//! softmax KL). The float logits are computed once per [`Evaluator`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;

use ndarray::{Array2, ArrayView1, ArrayViewD, Ix2};
use serde::Serialize;

use crate::calib::CalibrationStats;
use crate::engine::{Plan, RunOptions};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::metrics::{MetricsError, mean_softmax_kl, top1_accuracy, top1_agreement};
use crate::quant::{QuantConfig, QuantizedModel};

/// The samples (axis 0) fed to the graph input `input`, with optional class labels.
#[derive(Debug, Clone)]
pub struct EvalData<'a> {
    pub input: &'a str,
    pub samples: ArrayViewD<'a, f32>,
    pub labels: Option<ArrayView1<'a, i64>>,
}

/// One configuration measured against the float model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Top-1 accuracy in [0, 1] (with labels).
    pub accuracy: Option<f64>,
    /// Fraction of samples with the float model's top-1 class.
    pub agreement: f64,
    /// Mean KL(softmax(float) ‖ softmax(quantized)) in nats.
    pub output_kl: f64,
}

/// Evaluates configurations of one graph on one data set.
pub struct Evaluator<'a> {
    pub graph: &'a Graph,
    pub data: EvalData<'a>,
    /// Activation statistics for configs that quantize activations (may be empty otherwise).
    pub stats: BTreeMap<String, CalibrationStats>,
    float_logits: Array2<f32>,
    pub float_accuracy: Option<f64>,
}

fn metrics_error(e: MetricsError) -> Error {
    Error::Input {
        name: "evaluation data".into(),
        msg: e.to_string(),
    }
}

/// The first output of `graph` on `data` as `[samples, classes]` logits.
fn logits(
    graph: &Graph,
    data: &EvalData<'_>,
    model: Option<&QuantizedModel>,
    cancel: &AtomicBool,
) -> Result<Array2<f32>> {
    let plan = Plan::new(graph)?;
    let feeds = HashMap::from([(
        data.input.to_string(),
        TensorData::F32(data.samples.to_owned()),
    )]);
    let options = RunOptions {
        cancel: Some(cancel),
    };
    let mut outputs = match model {
        Some(m) if !m.activations.is_empty() => plan.run(feeds, Some(&mut m.hook()), options)?,
        _ => plan.run(feeds, None, options)?,
    };
    let (name, first) = outputs
        .drain(..)
        .next()
        .ok_or_else(|| Error::Graph("the graph has no outputs".into()))?;
    let TensorData::F32(values) = first else {
        return Err(Error::Input {
            name,
            msg: "the first output is not float logits".into(),
        });
    };
    let shape = values.shape().to_vec();
    values
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::Input {
            name,
            msg: format!("expected [samples, classes] logits, got shape {shape:?}"),
        })
}

impl<'a> Evaluator<'a> {
    /// Runs the float model once on `data`.
    pub fn new(graph: &'a Graph, data: EvalData<'a>, cancel: &AtomicBool) -> Result<Self> {
        if data.samples.ndim() == 0 || data.samples.shape()[0] == 0 {
            return Err(Error::Input {
                name: data.input.to_string(),
                msg: "no samples to evaluate on".into(),
            });
        }
        let float_logits = logits(graph, &data, None, cancel)?;
        let float_accuracy = data
            .labels
            .map(|labels| top1_accuracy(float_logits.view(), labels))
            .transpose()
            .map_err(metrics_error)?;
        Ok(Evaluator {
            graph,
            data,
            stats: BTreeMap::new(),
            float_logits,
            float_accuracy,
        })
    }

    /// Fake-quantizes the graph under `config` and measures it.
    pub fn evaluate(&self, config: &QuantConfig, cancel: &AtomicBool) -> Result<Evaluation> {
        let model = QuantizedModel::prepare(self.graph, config, &self.stats)?;
        self.evaluate_prepared(&model, cancel)
    }

    /// Measures an already prepared model (e.g. AdaRound weights under a fixed-range config).
    pub fn evaluate_prepared(
        &self,
        model: &QuantizedModel,
        cancel: &AtomicBool,
    ) -> Result<Evaluation> {
        let quant = logits(&model.graph, &self.data, Some(model), cancel)?;
        Ok(Evaluation {
            accuracy: self
                .data
                .labels
                .map(|labels| top1_accuracy(quant.view(), labels))
                .transpose()
                .map_err(metrics_error)?,
            agreement: top1_agreement(self.float_logits.view(), quant.view())
                .map_err(metrics_error)?,
            output_kl: mean_softmax_kl(self.float_logits.view(), quant.view())
                .map_err(metrics_error)?,
        })
    }
}
