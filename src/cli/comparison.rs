//! Float vs quantized on a data file (`quantize` and `export --format report`): top-1
//! agreement, output KL, top-1 accuracy when labels are given, and the quantized model's size
//! and BitOps.

use std::path::Path;

use anyhow::Context;
use ndarray::{Array2, Ix2};
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{Graph, TensorData};
use quantscope::jobs::pipeline::{Cost, quantized_cost};
use quantscope::metrics::{mean_softmax_kl, top1_accuracy, top1_agreement};
use quantscope::quant::cost::ShapeRecorder;
use quantscope::quant::{QuantConfig, QuantizedModel};
use serde::Serialize;

use super::feeds::{read_feeds, read_labels};

/// How the quantized model's first output compares with the float model's.
#[derive(Debug, Serialize)]
pub struct ModelComparison {
    pub float_accuracy: Option<f64>,
    pub quantized_accuracy: Option<f64>,
    pub top1_agreement: f64,
    pub mean_output_kl: f64,
}

/// Runs the float `graph` (through `plan`) and `quantized` on the samples of `data`; compares
/// their first outputs (accuracy against the labels at `labels`, if given) and costs the
/// quantized model with the shapes of the float run.
pub fn compare_on_data(
    graph: &Graph,
    plan: &Plan<'_>,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    data: &Path,
    labels: Option<&Path>,
) -> anyhow::Result<(ModelComparison, Cost)> {
    let feeds = read_feeds(graph, data)?;
    let mut shapes = ShapeRecorder::default();
    let float_out = plan.run(feeds.clone(), Some(&mut shapes), RunOptions::default())?;
    let cost = quantized_cost(graph, config, quantized, &shapes.shapes)?;
    let quant_plan = Plan::new(&quantized.graph)?;
    let mut hook = quantized.hook();
    let quant_out = quant_plan.run(feeds, Some(&mut hook), RunOptions::default())?;
    let (float_logits, quant_logits) = (first_logits(&float_out)?, first_logits(&quant_out)?);
    let mut comparison = ModelComparison {
        float_accuracy: None,
        quantized_accuracy: None,
        top1_agreement: top1_agreement(float_logits.view(), quant_logits.view())?,
        mean_output_kl: mean_softmax_kl(float_logits.view(), quant_logits.view())?,
    };
    if let Some(path) = labels {
        let labels = read_labels(path)?;
        comparison.float_accuracy = Some(top1_accuracy(float_logits.view(), labels.view())?);
        comparison.quantized_accuracy = Some(top1_accuracy(quant_logits.view(), labels.view())?);
    }
    Ok((comparison, cost))
}

/// The first output as `[N, classes]` logits.
fn first_logits(out: &[(String, TensorData)]) -> anyhow::Result<Array2<f32>> {
    let first = out.first().context("the model has no outputs")?;
    let array = first.1.as_f32().context("the first output is not float")?;
    array
        .clone()
        .into_dimensionality::<Ix2>()
        .context("the first output is not [N, classes]")
}
