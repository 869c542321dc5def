//! The table of Nagel et al. 2019 on a model: accuracy in float, after BN folding with
//! per-tensor weights and activations, with cross-layer equalization, high-bias absorption and
//! bias correction added, and with per-channel weights instead. Each row quantizes and
//! calibrates its own transformed graph (min-max activation ranges on the calibration data)
//! and is measured against the float model by the workflow's evaluator: top-1 accuracy with
//! labels, agreement for classifiers, and the worst output SQNR for any model.

use std::cell::Cell;
use std::collections::BTreeMap;

use serde::Serialize;

use super::absorb_bias::absorb_high_bias;
use super::bias_correction::{analytic_bias_correction, empirical_bias_correction};
use super::equalize::{EqualizeOptions, equalize};
use super::fold_bn::fold_batch_norm;
use super::{FloatGraph, TransformReport};
use crate::calib::{CalibrationStats, Method};
use crate::error::Result;
use crate::ir::Graph;
use crate::quant::{ActivationQuant, QuantConfig, WeightQuant, WeightScheme};
use crate::workflow::{EvalOptions, Evaluation, Evaluator, RunControl, Samples, calibrate};

/// Settings of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    pub weight_bits: u32,
    pub activation_bits: u32,
    pub equalize: EqualizeOptions,
    /// Most samples per chunk (the graph's own limit wins).
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
    pub total: usize,
    /// Correctly classified samples and top-1 accuracy (with labels).
    pub correct: Option<usize>,
    pub accuracy: Option<f64>,
    /// Top-1 agreement with the float model (classifiers; not for the float row).
    pub agreement: Option<f64>,
    /// The lowest output SQNR against the float model (not for the float row).
    pub worst_output_sqnr_db: Option<f64>,
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

/// The calibration samples, the evaluator on the original float model, and the settings.
struct Table<'a> {
    calibration: &'a Samples,
    evaluator: Evaluator<'a>,
    options: CompareOptions,
    control: RunControl<'a>,
    /// The float model's accuracy, from the first row's evaluation.
    float_accuracy: Cell<Option<f64>>,
}

impl Table<'_> {
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
        let limit = Some(self.options.batch_size);
        Ok(calibrate(graph, self.calibration, limit, &self.control)?.stats)
    }

    /// `graph` quantized under `config` (calibrated on its own) against the float model.
    fn row(&self, name: &str, graph: &Graph, config: &QuantConfig) -> Result<CompareRow> {
        let stats = self.calibrate(graph)?;
        let e = self.evaluator.evaluate(
            graph,
            config,
            &stats,
            &EvalOptions::default(),
            &self.control,
        )?;
        self.float_accuracy.set(e.float_accuracy());
        Ok(row_of(name, e.samples, e.quant_accuracy(), &e))
    }
}

fn row_of(name: &str, total: usize, accuracy: Option<f64>, e: &Evaluation) -> CompareRow {
    CompareRow {
        name: name.to_string(),
        total,
        correct: accuracy.map(|a| (a * total as f64).round() as usize),
        accuracy,
        agreement: e.classification.as_ref().map(|c| c.agreement),
        worst_output_sqnr_db: e.worst_output_sqnr_db(),
    }
}

/// Builds the table for `graph`: `calibration` samples calibrate each row's own graph,
/// `evaluation` samples (labels optional) measure it against the float model.
pub fn paper_table(
    graph: &Graph,
    calibration: &Samples,
    evaluation: &Samples,
    options: &CompareOptions,
    control: &RunControl<'_>,
) -> Result<CompareTable> {
    calibration.check(graph)?;
    let evaluator = Evaluator::new(graph, evaluation, Some(options.batch_size), control)?
        .with_float_cache(control)?;
    let table = Table {
        calibration,
        evaluator,
        options: *options,
        control: *control,
        float_accuracy: Cell::new(None),
    };
    let per_tensor = table.config(false);
    let per_channel = table.config(true);
    let mut rows = Vec::new();
    let mut reports = Vec::new();

    let (folded, report) = fold_batch_norm(&FloatGraph::new(graph.clone()))?;
    reports.push(report);
    rows.push(table.row(ROWS[1], &folded.graph, &per_tensor)?);
    let (equalized, report) = equalize(&folded, &options.equalize)?;
    reports.push(report);
    rows.push(table.row(ROWS[2], &equalized.graph, &per_tensor)?);
    let (absorbed, report) = absorb_high_bias(&equalized)?;
    reports.push(report);
    rows.push(table.row(ROWS[3], &absorbed.graph, &per_tensor)?);
    let (analytic, report) = analytic_bias_correction(&absorbed, &per_tensor)?;
    reports.push(report);
    rows.push(table.row(ROWS[4], &analytic.graph, &per_tensor)?);
    let stats = table.calibrate(&absorbed.graph)?;
    let (empirical, report) =
        empirical_bias_correction(&absorbed, &per_tensor, &stats, calibration, control)?;
    reports.push(report);
    rows.push(table.row(ROWS[5], &empirical.graph, &per_tensor)?);
    rows.push(table.row(ROWS[6], &folded.graph, &per_channel)?);
    let float_accuracy = table.float_accuracy.get();
    rows.insert(
        0,
        CompareRow {
            name: ROWS[0].to_string(),
            total: evaluation.count(),
            correct: float_accuracy.map(|a| (a * evaluation.count() as f64).round() as usize),
            accuracy: float_accuracy,
            agreement: None,
            worst_output_sqnr_db: None,
        },
    );
    Ok(CompareTable {
        weight_bits: options.weight_bits,
        activation_bits: options.activation_bits,
        rows,
        reports,
    })
}
