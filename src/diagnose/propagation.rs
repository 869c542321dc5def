//! Error propagation through a quantized model, per quantizable layer:
//!
//! * **own** SQNR: only this layer quantized (weights and input quantizers as configured), its
//!   inputs float; its output against float ([`super::own`]);
//! * **accumulated** SQNR: every layer quantized, so everything up to and including this
//!   layer; its output against float (the [`Evaluation`]'s layer SQNR);
//! * **output SQNR with this layer float**: the worst model output's SQNR when every other
//!   layer is quantized and this one left float (one [`Evaluation`] per layer).
//!
//! A layer whose own SQNR is low is where error is made; a large gain in output SQNR when it is
//! left float is where the model breaks. Any model and data, no labels needed.
//!
//! Cost in passes over the samples (see [`Passes`]): one float pass with every layer run alone
//! beside it (about one quantized pass), one float and one quantized pass for the accumulated
//! error, and, for the leave-one-float column, one float pass kept as a cache (when the outputs
//! fit [`float_cache_bytes`](crate::workflow::evaluate::float_cache_bytes); else one more per
//! layer) plus one quantized pass and one weight quantization per layer.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::own::{OwnErrorHook, SingleLayers};
use crate::calib::CalibrationStats;
use crate::engine::Plan;
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::metrics::sqnr_db;
use crate::quant::config::{LayerQuant, QUANTIZABLE_OPS};
use crate::quant::{QuantConfig, QuantizedModel};
use crate::workflow::{EvalOptions, Evaluation, Evaluator, RunControl, Samples, run_chunks};

/// What to measure besides the own and accumulated errors.
#[derive(Debug, Clone, Copy)]
pub struct DiagnoseOptions {
    /// The output SQNR with each layer left float (one quantized pass per layer).
    pub leave_one_float: bool,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        DiagnoseOptions {
            leave_one_float: true,
        }
    }
}

/// One quantizable layer's figures (SQNR in dB; +∞ where the error is zero).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerDiagnosis {
    pub node: String,
    pub op_type: String,
    /// Only this layer quantized, float inputs: its output against float.
    pub own_sqnr_db: f64,
    /// Everything up to and including this layer quantized: its output against float.
    pub accumulated_sqnr_db: f64,
    /// The worst model output's SQNR with only this layer left float.
    pub output_sqnr_db_with_layer_float: Option<f64>,
}

/// Passes over the samples a diagnosis made (a single-layer pass runs every layer alone once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Passes {
    pub float: usize,
    pub quantized: usize,
    pub single_layer: usize,
}

/// The diagnosis of one config on one set of samples.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// The diagnosed layers in execution order.
    pub layers: Vec<LayerDiagnosis>,
    /// Everything quantized, against float.
    pub quantized: Evaluation,
    /// The nominal passes (a float pass per layer more when the float outputs exceed the
    /// evaluator's cache).
    pub passes: Passes,
}

impl Diagnosis {
    /// The layers by own SQNR, worst (lowest) first.
    pub fn worst_first(&self) -> Vec<&LayerDiagnosis> {
        let mut layers: Vec<&LayerDiagnosis> = self.layers.iter().collect();
        layers.sort_by(|a, b| a.own_sqnr_db.total_cmp(&b.own_sqnr_db));
        layers
    }

    /// The figures of `node`.
    pub fn layer(&self, node: &str) -> Option<&LayerDiagnosis> {
        self.layers.iter().find(|l| l.node == node)
    }
}

/// The layers a diagnosis covers, in execution order: the top-level Conv, ConvTranspose, Gemm
/// and MatMul nodes whose settings in `config` quantize something (weights or inputs).
pub fn diagnosed_layers(plan: &Plan<'_>, config: &QuantConfig) -> Vec<(String, String)> {
    let graph = plan.graph();
    plan.execution_order()
        .map(|i| &graph.nodes[i])
        .filter(|n| QUANTIZABLE_OPS.contains(&n.op_type.as_str()))
        .filter(|n| {
            let layer = config.layer(&n.name);
            layer.weights.is_some() || layer.activations.is_some()
        })
        .map(|n| (n.name.clone(), n.op_type.clone()))
        .collect()
}

/// A control reporting its fraction as stage `stage` of `stages`.
fn staged<'a>(
    control: &'a RunControl<'a>,
    stage: usize,
    stages: usize,
) -> impl Fn(f32) + Sync + 'a {
    move |f: f32| control.report((stage as f32 + f) / stages.max(1) as f32)
}

/// Diagnoses `config` on `graph` (the float model) over `samples` (at most `limit` per
/// chunk). `stats` are the calibration statistics the activation quantizers need.
pub fn diagnose(
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    samples: &Samples,
    limit: Option<usize>,
    options: &DiagnoseOptions,
    control: &RunControl<'_>,
) -> Result<Diagnosis> {
    let plan = Plan::new(graph)?;
    let layers = diagnosed_layers(&plan, config);
    if layers.is_empty() {
        return Err(Error::Input {
            name: "diagnose".into(),
            msg: "the model has no Conv, ConvTranspose, Gemm or MatMul layer the settings \
                  quantize"
                .into(),
        });
    }
    let evaluator = Evaluator::new(graph, samples, limit, control)?;
    let stages = 2 + if options.leave_one_float {
        1 + layers.len()
    } else {
        0
    };
    let quantized = QuantizedModel::prepare(graph, config, stats)?;

    // Own errors: one float pass, each layer run alone beside it.
    let names: Vec<String> = layers.iter().map(|(n, _)| n.clone()).collect();
    let singles = SingleLayers::new(&quantized, &names)?;
    let plans = singles.plans()?;
    let by_node: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    let mut readers: HashMap<String, usize> = HashMap::new();
    for single in &plans {
        for input in &single.graph().inputs {
            *readers.entry(input.name.clone()).or_default() += 1;
        }
    }
    let progress = staged(control, 0, stages);
    let stage = RunControl {
        cancel: control.cancel,
        progress: Some(&progress),
    };
    let per_chunk = run_chunks(samples, evaluator.batch().size, &stage, |_, feeds| {
        let mut hook = OwnErrorHook::new(&plans, &quantized, &by_node, &readers, stage.options());
        plan.run(feeds, Some(&mut hook), stage.options())?;
        Ok(hook.sums)
    })?;
    let mut own = vec![(0.0f64, 0.0f64); names.len()];
    for chunk in per_chunk {
        for (total, part) in own.iter_mut().zip(chunk) {
            total.0 += part.0;
            total.1 += part.1;
        }
    }

    // Accumulated errors: everything quantized, each layer's output against float.
    let progress = staged(control, 1, stages);
    let stage = RunControl {
        cancel: control.cancel,
        progress: Some(&progress),
    };
    let all = evaluator.evaluate_prepared(
        graph,
        config,
        &quantized,
        &EvalOptions {
            layers: true,
            ..Default::default()
        },
        &stage,
    )?;
    let mut passes = Passes {
        float: 2,
        quantized: 1,
        single_layer: 1,
    };

    // Output SQNR with each layer left float.
    let mut left_float: Vec<Option<f64>> = vec![None; names.len()];
    if options.leave_one_float {
        let progress = staged(control, 2, stages);
        let stage = RunControl {
            cancel: control.cancel,
            progress: Some(&progress),
        };
        let evaluator = evaluator.with_float_cache(&stage)?;
        passes.float += 1;
        for (i, name) in names.iter().enumerate() {
            let progress = staged(control, 3 + i, stages);
            let stage = RunControl {
                cancel: control.cancel,
                progress: Some(&progress),
            };
            let mut variant = config.clone();
            variant.layers.insert(name.clone(), LayerQuant::default());
            let evaluation =
                evaluator.evaluate(graph, &variant, stats, &EvalOptions::default(), &stage)?;
            left_float[i] = evaluation.worst_output_sqnr_db();
            passes.quantized += 1;
        }
    }

    let accumulated: HashMap<&str, f64> = all
        .layers
        .iter()
        .map(|l| (l.node.as_str(), l.sqnr_db))
        .collect();
    let layers = layers
        .into_iter()
        .zip(own)
        .zip(left_float)
        .map(
            |(((node, op_type), (signal, noise)), left)| LayerDiagnosis {
                accumulated_sqnr_db: accumulated.get(node.as_str()).copied().unwrap_or(f64::NAN),
                own_sqnr_db: sqnr_db(signal, noise),
                output_sqnr_db_with_layer_float: left,
                node,
                op_type,
            },
        )
        .collect();
    control.report(1.0);
    Ok(Diagnosis {
        layers,
        quantized: all,
        passes,
    })
}
