//! One evaluation of a quantization config against the float model for any task:
//!
//! * every float graph output: SQNR, cosine, max |error| and, where the output is a
//!   distribution (or classification logits), the mean KL per row;
//! * the classification output (see `reduce`), when there is one: top-1 agreement, output KL,
//!   and float and quantized top-1 accuracy when labels are given (labels out of range are an
//!   error; labels for a model with no `[N, classes]` output too);
//! * each quantizable layer's output SQNR, size and BitOps per inference, and the exact figures
//!   of one focused tensor.
//!
//! It streams: chunks run in parallel (float, then quantized), each reduced to sums merged in
//! chunk order. An [`Evaluator`] measures many configs on the same samples (sensitivity,
//! allocation, the paper's table) and keeps the float outputs when they fit
//! [`float_cache_bytes`], else runs float again per config.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;

use super::batching::{BatchChoice, choose_batch};
use super::cost::{Cost, RunShapes, quantized_cost};
use super::focus::{Focus, FocusFigures, activation_focus, weight_focus};
use super::reduce::{
    ChunkLabels, ChunkSums, FloatRecorder, KlKind, LayerComparer, kl_kinds, reduce_outputs,
};
use super::runner::{RunControl, run_chunks};
use super::samples::Samples;
use crate::budget::MemoryBudget;
use crate::calib::CalibrationStats;
use crate::engine::{Plan, TensorHook};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::metrics::sqnr_db;
use crate::quant::config::QUANTIZABLE_OPS;
use crate::quant::cost::ShapeRecorder;
use crate::quant::fake::{ActivationReport, WeightReport};
use crate::quant::{QuantConfig, QuantizedModel};

/// Float outputs an [`Evaluator`] keeps between configs at most (bytes): a thirty-second of
/// the process's memory budget (256 MiB of the default 8 GiB).
pub fn float_cache_bytes() -> usize {
    usize::try_from(MemoryBudget::current().bytes() / 32).unwrap_or(usize::MAX)
}

/// One graph output, float against quantized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputError {
    pub name: String,
    pub sqnr_db: f64,
    pub cosine: f64,
    pub max_abs_error: f64,
    /// Mean KL(float ‖ quantized) per row, where the output is a distribution or logits.
    pub kl: Option<f64>,
}

/// The classification output's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub output: String,
    pub classes: usize,
    /// Top-1 accuracy with labels.
    pub float_accuracy: Option<f64>,
    pub quant_accuracy: Option<f64>,
    /// Fraction of samples where both models pick the same class.
    pub agreement: f64,
    /// Mean KL(float ‖ quantized) of the class distributions, in nats.
    pub output_kl: f64,
}

/// Output SQNR of one quantizable layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerError {
    pub node: String,
    pub sqnr_db: f64,
}

/// Everything an evaluation computes for one config.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Every float graph output, in graph order.
    pub outputs: Vec<OutputError>,
    pub classification: Option<Classification>,
    /// Quantizable layers in graph order (when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerError>,
    #[serde(skip)]
    pub weights: Vec<WeightReport>,
    #[serde(skip)]
    pub activations: Vec<ActivationReport>,
    /// Size and BitOps per inference (when asked for).
    pub cost: Option<Cost>,
    #[serde(skip)]
    pub focus: Option<FocusFigures>,
    pub samples: usize,
    /// What the samples are.
    pub data: String,
    pub synthetic: bool,
    pub batch: BatchChoice,
}

impl Evaluation {
    /// The lowest output SQNR.
    pub fn worst_output_sqnr_db(&self) -> Option<f64> {
        self.outputs
            .iter()
            .map(|o| o.sqnr_db)
            .min_by(|a, b| a.total_cmp(b))
    }

    /// Quantized top-1 accuracy (with labels).
    pub fn quant_accuracy(&self) -> Option<f64> {
        self.classification.as_ref()?.quant_accuracy
    }

    /// Float top-1 accuracy (with labels).
    pub fn float_accuracy(&self) -> Option<f64> {
        self.classification.as_ref()?.float_accuracy
    }

    /// One number for "how far from float", lower is better, for ranking configs of any task:
    /// the classification output's KL when there is one, else the mean over outputs of the
    /// noise-to-signal power ratio 10^(−SQNR/10).
    pub fn loss(&self) -> f64 {
        if let Some(c) = &self.classification {
            return c.output_kl;
        }
        let ratios: Vec<f64> = self
            .outputs
            .iter()
            .map(|o| 10f64.powf(-o.sqnr_db / 10.0))
            .collect();
        if ratios.is_empty() {
            0.0
        } else {
            ratios.iter().sum::<f64>() / ratios.len() as f64
        }
    }
}

/// What an evaluation computes besides the outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalOptions<'a> {
    /// Each quantizable layer's output SQNR (needs a float run per config).
    pub layers: bool,
    /// Size and BitOps per inference.
    pub cost: bool,
    /// The exact figures of this tensor.
    pub focus: Option<&'a Focus>,
}

impl<'a> EvalOptions<'a> {
    /// Outputs, layers, cost and the focus: what the app and reports show.
    pub fn full(focus: Option<&'a Focus>) -> Self {
        EvalOptions {
            layers: true,
            cost: true,
            focus,
        }
    }
}

/// Evaluates configs of one float model on one set of samples.
pub struct Evaluator<'a> {
    float_plan: Plan<'a>,
    samples: &'a Samples,
    batch: BatchChoice,
    kinds: HashMap<String, KlKind>,
    /// Float graph outputs per chunk, when kept.
    cache: Option<Vec<Vec<(String, TensorData)>>>,
    shapes: Mutex<Option<RunShapes>>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator of `float_graph` on `samples` (at most `limit` per chunk); runs nothing
    /// but the batch probe.
    pub fn new(
        float_graph: &'a Graph,
        samples: &'a Samples,
        limit: Option<usize>,
        control: &RunControl<'_>,
    ) -> Result<Self> {
        let float_plan = Plan::new(float_graph)?;
        samples.check(float_graph)?;
        if samples.count() == 0 {
            return Err(Error::Input {
                name: "evaluation data".into(),
                msg: "holds no samples".into(),
            });
        }
        let batch = choose_batch(&float_plan, samples, limit, control.options())?;
        Ok(Evaluator {
            float_plan,
            samples,
            batch,
            kinds: kl_kinds(float_graph),
            cache: None,
            shapes: Mutex::new(None),
        })
    }

    /// Runs the float model once and keeps its outputs for every later config, when they fit
    /// [`float_cache_bytes`].
    pub fn with_float_cache(mut self, control: &RunControl<'_>) -> Result<Self> {
        let plan = &self.float_plan;
        let outputs = run_chunks(self.samples, self.batch.size, control, |chunk, feeds| {
            let mut shapes = ShapeRecorder::default();
            let hook: Option<&mut dyn TensorHook> = (chunk.index == 0).then_some(&mut shapes);
            let out = plan.run(feeds, hook, control.options())?;
            if chunk.index == 0 {
                self.set_shapes(shapes, chunk.len());
            }
            Ok(out)
        })?;
        let bytes: usize = outputs.iter().flatten().map(|(_, t)| t.len() * 8).sum();
        if bytes <= float_cache_bytes() {
            self.cache = Some(outputs);
        }
        Ok(self)
    }

    /// The float graph.
    pub fn float_graph(&self) -> &'a Graph {
        self.float_plan.graph()
    }

    /// The samples evaluated on.
    pub fn samples(&self) -> &'a Samples {
        self.samples
    }

    /// The chunk size and why.
    pub fn batch(&self) -> &BatchChoice {
        &self.batch
    }

    /// The float run's tensor shapes, once a float run happened.
    pub fn shapes(&self) -> Option<RunShapes> {
        self.shapes.lock().ok()?.clone()
    }

    fn set_shapes(&self, recorder: ShapeRecorder, samples: usize) {
        if let Ok(mut shapes) = self.shapes.lock()
            && shapes.is_none()
        {
            *shapes = Some(RunShapes {
                shapes: recorder.shapes,
                samples,
            });
        }
    }

    /// Quantizes `graph` under `config` and measures it; the evaluation carries the weight
    /// and activation reports.
    pub fn evaluate(
        &self,
        graph: &Graph,
        config: &QuantConfig,
        stats: &BTreeMap<String, CalibrationStats>,
        options: &EvalOptions<'_>,
        control: &RunControl<'_>,
    ) -> Result<Evaluation> {
        let quantized = QuantizedModel::prepare(graph, config, stats)?;
        control.check()?;
        let mut evaluation = self.evaluate_prepared(graph, config, &quantized, options, control)?;
        evaluation.weights = quantized.weights;
        evaluation.activations = quantized.activations;
        Ok(evaluation)
    }

    /// Measures a prepared model (made from `graph` under `config`; AdaRound weights, say)
    /// against the float model. The weight and activation reports stay with `quantized`.
    pub fn evaluate_prepared(
        &self,
        graph: &Graph,
        config: &QuantConfig,
        quantized: &QuantizedModel,
        options: &EvalOptions<'_>,
        control: &RunControl<'_>,
    ) -> Result<Evaluation> {
        let quant_plan = Plan::new(&quantized.graph)?;
        let layer_names: Vec<String> = graph
            .nodes
            .iter()
            .filter(|n| options.layers && QUANTIZABLE_OPS.contains(&n.op_type.as_str()))
            .map(|n| n.name.clone())
            .collect();
        let layer_set: HashSet<String> = layer_names.iter().cloned().collect();
        let focus_activation = match options.focus {
            Some(Focus::Activation { tensor }) => Some(tensor.as_str()),
            _ => None,
        };
        let needs_shapes = options.cost && self.shapes().is_none();
        let per_chunk = run_chunks(self.samples, self.batch.size, control, |chunk, feeds| {
            let cached = self.cache.as_ref().and_then(|c| c.get(chunk.index));
            let focus = focus_activation.filter(|_| chunk.index == 0);
            let mut recorder = FloatRecorder {
                layers: options.layers.then_some(&layer_set),
                focus,
                outputs: HashMap::new(),
                focus_values: None,
                shapes: (needs_shapes && chunk.index == 0).then(ShapeRecorder::default),
            };
            let rerun = cached.is_none() || options.layers || focus.is_some() || needs_shapes;
            let fresh;
            let float = match (cached, rerun) {
                (Some(outputs), false) => outputs,
                _ => {
                    fresh = self.float_plan.run(
                        feeds.clone(),
                        Some(&mut recorder),
                        control.options(),
                    )?;
                    &fresh
                }
            };
            if let Some(shapes) = recorder.shapes.take() {
                self.set_shapes(shapes, chunk.len());
            }
            let mut fake = quantized.hook();
            let mut comparer = LayerComparer {
                float: &recorder.outputs,
                sums: HashMap::new(),
                inner: &mut fake,
            };
            let quant = quant_plan.run(feeds, Some(&mut comparer), control.options())?;
            let mut sums = ChunkSums {
                layers: comparer.sums,
                focus: recorder.focus_values.take(),
                ..Default::default()
            };
            let labels = self.samples.labels.as_ref().map(|l| ChunkLabels {
                labels: l.slice(ndarray::s![chunk.range.clone()]),
                first: chunk.range.start,
            });
            reduce_outputs(float, &quant, &self.kinds, chunk.len(), labels, &mut sums)?;
            Ok(sums)
        })?;
        let merged = merge(per_chunk);
        let classification = merged.classification.as_ref().map(|c| {
            let kl = merged
                .outputs
                .iter()
                .find(|o| o.name == c.output)
                .map_or(0.0, |o| o.kl_sum / o.kl_rows.max(1) as f64);
            let rows = c.rows.max(1) as f64;
            let labelled = self.samples.labels.is_some();
            Classification {
                output: c.output.clone(),
                classes: c.classes,
                float_accuracy: labelled.then(|| c.float_correct as f64 / rows),
                quant_accuracy: labelled.then(|| c.quant_correct as f64 / rows),
                agreement: c.agree as f64 / rows,
                output_kl: kl,
            }
        });
        if self.samples.labels.is_some() && classification.is_none() {
            let outputs: Vec<String> = merged
                .outputs
                .iter()
                .map(|o| format!("'{}'", o.name))
                .collect();
            return Err(Error::Input {
                name: "labels".into(),
                msg: format!(
                    "labels were given, but no output is [N, classes] (outputs: {}); leave the \
                     labels out to compare the outputs",
                    outputs.join(", ")
                ),
            });
        }
        let outputs = merged
            .outputs
            .iter()
            .map(|o| OutputError {
                name: o.name.clone(),
                sqnr_db: sqnr_db(o.signal, o.noise),
                cosine: cosine(o.dot, o.signal, o.quant_power),
                max_abs_error: o.max_abs,
                kl: (o.has_kl && o.kl_rows > 0).then(|| o.kl_sum / o.kl_rows as f64),
            })
            .collect();
        let layers = layer_names
            .iter()
            .filter_map(|name| {
                let (signal, noise) = merged.layers.get(name)?;
                Some(LayerError {
                    node: name.clone(),
                    sqnr_db: sqnr_db(*signal, *noise),
                })
            })
            .collect();
        let cost = match (options.cost, self.shapes()) {
            (true, Some(shapes)) => Some(quantized_cost(graph, config, quantized, &shapes)?),
            _ => None,
        };
        let focus = match options.focus {
            Some(Focus::Weight { tensor, node }) => {
                weight_focus(graph, config, quantized, tensor, node)?
            }
            Some(Focus::Activation { tensor }) => {
                activation_focus(quantized, tensor, merged.focus)?
            }
            None => None,
        };
        Ok(Evaluation {
            outputs,
            classification,
            layers,
            weights: Vec::new(),
            activations: Vec::new(),
            cost,
            focus,
            samples: self.samples.count(),
            data: self.samples.description.clone(),
            synthetic: self.samples.synthetic,
            batch: self.batch.clone(),
        })
    }
}

fn cosine(dot: f64, a: f64, b: f64) -> f64 {
    if a <= 0.0 && b <= 0.0 {
        1.0
    } else if a <= 0.0 || b <= 0.0 {
        0.0
    } else {
        dot / (a.sqrt() * b.sqrt())
    }
}

/// Merges the chunks' sums in chunk order.
fn merge(chunks: Vec<ChunkSums>) -> ChunkSums {
    let mut iter = chunks.into_iter();
    let Some(mut total) = iter.next() else {
        return ChunkSums::default();
    };
    for chunk in iter {
        for (mine, theirs) in total.outputs.iter_mut().zip(&chunk.outputs) {
            mine.merge(theirs);
        }
        match (&mut total.classification, &chunk.classification) {
            (Some(a), Some(b)) if a.output == b.output => {
                a.rows += b.rows;
                a.agree += b.agree;
                a.float_correct += b.float_correct;
                a.quant_correct += b.quant_correct;
            }
            _ => {}
        }
        for (name, (s, n)) in chunk.layers {
            let entry = total.layers.entry(name).or_default();
            entry.0 += s;
            entry.1 += n;
        }
    }
    total
}

/// Evaluates `config` applied to `graph` against the float model `float_graph` (they differ
/// when a transform such as bias correction changes the graph only for quantization) on
/// `samples`, in one pass.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    float_graph: &Graph,
    graph: &Graph,
    config: &QuantConfig,
    stats: &BTreeMap<String, CalibrationStats>,
    samples: &Samples,
    limit: Option<usize>,
    options: &EvalOptions<'_>,
    control: &RunControl<'_>,
) -> Result<Evaluation> {
    Evaluator::new(float_graph, samples, limit, control)?
        .evaluate(graph, config, stats, options, control)
}
