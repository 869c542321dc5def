//! The table of Nagel et al. 2019 on a model: accuracy in float, after BN folding with
//! per-tensor weights and activations, with cross-layer equalization, high-bias absorption and
//! bias correction added, and with per-channel weights instead. Each row quantizes and
//! calibrates its own transformed graph (min-max activation ranges on the calibration data).

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayView1, ArrayViewD, Ix2};
use serde::Serialize;

use super::absorb_bias::absorb_high_bias;
use super::bias_correction::{analytic_bias_correction, empirical_bias_correction};
use super::equalize::{EqualizeOptions, equalize};
use super::fold_bn::fold_batch_norm;
use super::{FloatGraph, TransformReport};
use crate::calib::{ActivationCollector, CalibrationStats, Method};
use crate::engine::{Plan, RunOptions};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::metrics::{top1_accuracy, top1_agreement};
use crate::quant::{ActivationQuant, QuantConfig, QuantizedModel, WeightQuant, WeightScheme};

/// Settings of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    pub weight_bits: u32,
    pub activation_bits: u32,
    pub equalize: EqualizeOptions,
    /// Calibration batch size.
    pub batch_size: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            weight_bits: 8,
            activation_bits: 8,
            equalize: EqualizeOptions::default(),
            batch_size: 64,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompareRow {
    pub name: String,
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    /// Top-1 agreement with the float model.
    pub agreement: f64,
}

/// The table and the reports of the transforms behind it.
#[derive(Debug, Clone, Serialize)]
pub struct CompareTable {
    pub weight_bits: u32,
    pub activation_bits: u32,
    pub rows: Vec<CompareRow>,
    pub reports: Vec<TransformReport>,
}

/// Names of the rows, in order.
pub const ROWS: [&str; 7] = [
    "float",
    "BN folded, per-tensor",
    "+ CLE",
    "+ CLE + high-bias absorption",
    "+ CLE + absorption + bias correction (analytic)",
    "+ CLE + absorption + bias correction (empirical)",
    "BN folded, per-channel",
];

struct Evaluation<'a> {
    input: String,
    calib: ArrayViewD<'a, f32>,
    eval: ArrayViewD<'a, f32>,
    labels: ArrayView1<'a, i64>,
    options: CompareOptions,
    float_logits: Option<ndarray::Array2<f32>>,
}

fn metric_error(e: impl std::fmt::Display) -> Error {
    Error::Input {
        name: "labels".into(),
        msg: e.to_string(),
    }
}

impl Evaluation<'_> {
    fn config(&self, per_channel: bool) -> QuantConfig {
        QuantConfig::uniform(
            Some(WeightQuant {
                scheme: WeightScheme::Linear {
                    bits: self.options.weight_bits,
                    symmetric: true,
                },
                per_channel,
            }),
            Some(ActivationQuant {
                bits: self.options.activation_bits,
                symmetric: false,
                method: Method::MinMax,
            }),
        )
    }

    fn calibrate(&self, graph: &Graph) -> Result<BTreeMap<String, CalibrationStats>> {
        let plan = Plan::new(graph)?;
        let mut collector = ActivationCollector::new();
        collector.run_batches(
            &plan,
            &self.input,
            self.calib.view(),
            self.options.batch_size,
        )?;
        Ok(collector.into_stats())
    }

    fn logits(&self, graph: &Graph, config: Option<&QuantConfig>) -> Result<ndarray::Array2<f32>> {
        let feeds = HashMap::from([(self.input.clone(), TensorData::F32(self.eval.to_owned()))]);
        let outputs = match config {
            None => Plan::new(graph)?.run(feeds, None, RunOptions::default())?,
            Some(config) => {
                let stats = self.calibrate(graph)?;
                let quantized = QuantizedModel::prepare(graph, config, &stats)?;
                let mut hook = quantized.hook();
                Plan::new(&quantized.graph)?.run(feeds, Some(&mut hook), RunOptions::default())?
            }
        };
        let first = outputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::Graph("the model has no outputs".into()))?;
        first
            .1
            .to_f32()
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::Graph(format!("output '{}' is not [N, classes]", first.0)))
    }

    fn row(
        &mut self,
        name: &str,
        graph: &Graph,
        config: Option<&QuantConfig>,
    ) -> Result<CompareRow> {
        let logits = self.logits(graph, config)?;
        let float = match &self.float_logits {
            Some(f) => f.clone(),
            None => {
                self.float_logits = Some(logits.clone());
                logits.clone()
            }
        };
        let accuracy = top1_accuracy(logits.view(), self.labels).map_err(metric_error)?;
        let total = self.labels.len();
        Ok(CompareRow {
            name: name.to_string(),
            correct: (accuracy * total as f64).round() as usize,
            total,
            accuracy,
            agreement: top1_agreement(float.view(), logits.view()).map_err(metric_error)?,
        })
    }
}

/// Builds the table for `graph` (single input): `calib` samples calibrate, `eval` samples with
/// `labels` measure top-1.
pub fn paper_table(
    graph: &Graph,
    calib: ArrayViewD<'_, f32>,
    eval: ArrayViewD<'_, f32>,
    labels: ArrayView1<'_, i64>,
    options: &CompareOptions,
) -> Result<CompareTable> {
    let input = match graph.inputs.as_slice() {
        [only] => only.name.clone(),
        other => {
            return Err(Error::Graph(format!(
                "the table needs a model with one input; this one has {}",
                other.len()
            )));
        }
    };
    let mut evaluation = Evaluation {
        input,
        calib,
        eval,
        labels,
        options: *options,
        float_logits: None,
    };
    let per_tensor = evaluation.config(false);
    let per_channel = evaluation.config(true);
    let mut rows = Vec::new();
    let mut reports = Vec::new();

    rows.push(evaluation.row(ROWS[0], graph, None)?);
    let (folded, report) = fold_batch_norm(&FloatGraph::new(graph.clone()))?;
    reports.push(report);
    rows.push(evaluation.row(ROWS[1], &folded.graph, Some(&per_tensor))?);
    let (equalized, report) = equalize(&folded, &options.equalize)?;
    reports.push(report);
    rows.push(evaluation.row(ROWS[2], &equalized.graph, Some(&per_tensor))?);
    let (absorbed, report) = absorb_high_bias(&equalized)?;
    reports.push(report);
    rows.push(evaluation.row(ROWS[3], &absorbed.graph, Some(&per_tensor))?);
    let (analytic, report) = analytic_bias_correction(&absorbed, &per_tensor)?;
    reports.push(report);
    rows.push(evaluation.row(ROWS[4], &analytic.graph, Some(&per_tensor))?);
    let stats = evaluation.calibrate(&absorbed.graph)?;
    let (empirical, report) = empirical_bias_correction(
        &absorbed,
        &per_tensor,
        &stats,
        &evaluation.input,
        evaluation.calib.view(),
    )?;
    reports.push(report);
    rows.push(evaluation.row(ROWS[5], &empirical.graph, Some(&per_tensor))?);
    rows.push(evaluation.row(ROWS[6], &folded.graph, Some(&per_channel))?);
    Ok(CompareTable {
        weight_bits: options.weight_bits,
        activation_bits: options.activation_bits,
        rows,
        reports,
    })
}
