//! Bit allocation under a budget: from the per-layer sensitivities at each candidate bit width,
//! the Pareto frontier of (cost, predicted output KL) over all per-layer choices (costs and
//! predicted KLs add over layers); a spread of frontier points and the best predicted ones
//! within the budget are measured on the data. The result is the best measured allocation
//! within the budget plus the measured size-vs-accuracy curve.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use super::sensitivity::{QuantizableLayer, SensitivityReport, measure, quantizable_layers};
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::quant::config::{LayerQuant, QuantConfig, WeightQuant, WeightScheme};
use crate::quant::cost::{StorageScheme, graph_size};
use crate::workflow::{Evaluation, Evaluator, RunShapes};

/// What an allocation may cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Budget {
    /// Whole-model parameter size in bytes (quantized weights, side information, other
    /// parameters in float32).
    SizeBytes(f64),
    /// Σ MACs × weight bits × activation bits over the compute layers.
    BitOps(u64),
}

/// The weight settings an allocation chooses from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllocationOptions {
    /// Candidate weight bit widths (any order).
    pub candidates: Vec<u32>,
    pub per_channel: bool,
    pub symmetric: bool,
    /// Activation bits assumed by the BitOps count (activations are not quantized here).
    pub activation_bits: u32,
}

impl Default for AllocationOptions {
    fn default() -> Self {
        AllocationOptions {
            candidates: vec![8, 4, 2],
            per_channel: true,
            symmetric: true,
            activation_bits: 8,
        }
    }
}

impl AllocationOptions {
    /// The weight setting at `bits`.
    pub fn weights(&self, bits: u32) -> WeightQuant {
        WeightQuant {
            scheme: WeightScheme::Linear {
                bits,
                symmetric: self.symmetric,
            },
            per_channel: self.per_channel,
        }
    }

    /// Candidates from high to low, deduplicated.
    fn descending(&self) -> Vec<u32> {
        let mut bits = self.candidates.clone();
        bits.sort_unstable_by(|a, b| b.cmp(a));
        bits.dedup();
        bits
    }
}

/// Weight bits per layer (node name).
pub type BitAssignment = BTreeMap<String, u32>;

/// The config quantizing each layer's weights at its assigned bits (others stay float).
pub fn config_for(bits: &BitAssignment, options: &AllocationOptions) -> QuantConfig {
    let mut config = QuantConfig::default();
    for (node, &b) in bits {
        config.layers.insert(
            node.clone(),
            LayerQuant {
                weights: Some(options.weights(b)),
                activations: None,
            },
        );
    }
    config
}

/// Size and BitOps (per inference) of assignments on one graph.
pub struct CostModel<'a> {
    graph: &'a Graph,
    layers: Vec<QuantizableLayer>,
    shapes: RunShapes,
}

impl<'a> CostModel<'a> {
    /// Costs from the activation shapes of a float run (an [`Evaluator`]'s, say).
    pub fn new(graph: &'a Graph, shapes: RunShapes) -> Self {
        CostModel {
            graph,
            layers: quantizable_layers(graph),
            shapes,
        }
    }

    /// Costs with the shapes of `evaluator`'s float run (run with a float cache first).
    pub fn of(evaluator: &Evaluator<'a>) -> Result<Self> {
        let shapes = evaluator.shapes().ok_or_else(|| Error::Input {
            name: "costs".into(),
            msg: "the evaluator has not run the float model yet".into(),
        })?;
        Ok(CostModel::new(evaluator.float_graph(), shapes))
    }

    /// Parameter bytes with the assigned weights quantized, everything else in float32.
    pub fn size_bytes(&self, bits: &BitAssignment, options: &AllocationOptions) -> f64 {
        let by_tensor: HashMap<&str, u32> = self
            .layers
            .iter()
            .filter_map(|l| bits.get(&l.node).map(|&b| (l, b)))
            .flat_map(|(l, b)| l.tensors.iter().map(move |t| (t.as_str(), b)))
            .collect();
        graph_size(self.graph, |name, _| match by_tensor.get(name) {
            Some(&b) => options.weights(b).storage(),
            None => StorageScheme::FLOAT32,
        })
        .total_bytes()
    }

    /// BitOps per inference: assigned layers at (bits, activation bits), the rest at 32 × 32.
    pub fn bitops(&self, bits: &BitAssignment, options: &AllocationOptions) -> Result<u64> {
        let (bitops, _) = self.shapes.bitops_per_inference(self.graph, |node| {
            bits.get(&node.name)
                .map_or((32, 32), |&b| (b, options.activation_bits))
        })?;
        Ok(bitops)
    }

    fn cost(
        &self,
        budget: &Budget,
        bits: &BitAssignment,
        options: &AllocationOptions,
    ) -> Result<f64> {
        Ok(match budget {
            Budget::SizeBytes(_) => self.size_bytes(bits, options),
            Budget::BitOps(_) => self.bitops(bits, options)? as f64,
        })
    }
}

impl Budget {
    fn limit(&self) -> f64 {
        match *self {
            Budget::SizeBytes(b) => b,
            Budget::BitOps(b) => b as f64,
        }
    }
}

/// One measured allocation.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub bits: BitAssignment,
    pub size_bytes: f64,
    pub bitops: u64,
    /// Sum of the layers' single-layer losses (output KL for classifiers; what the search
    /// optimised).
    pub predicted_kl: f64,
    pub evaluation: Evaluation,
}

/// The chosen allocation and every allocation measured on the way.
#[derive(Debug, Clone, Serialize)]
pub struct Allocation {
    pub budget: Budget,
    pub chosen: CurvePoint,
    pub config: QuantConfig,
    /// The measured frontier points, by increasing cost.
    pub curve: Vec<CurvePoint>,
}

/// The loss (output KL for classifiers) of `node` alone at `bits`, from the report of that
/// width.
fn kl_of(reports: &BTreeMap<u32, &SensitivityReport>, node: &str, bits: u32) -> Result<f64> {
    reports
        .get(&bits)
        .and_then(|r| r.layer(node))
        .map(|l| l.evaluation.loss())
        .ok_or_else(|| Error::Input {
            name: "sensitivities".into(),
            msg: format!("no {bits}-bit sensitivity for layer '{node}'"),
        })
}

/// A point of the predicted frontier: total cost, summed single-layer KL, candidate index per
/// layer.
#[derive(Debug, Clone)]
struct Predicted {
    cost: f64,
    kl: f64,
    choice: Vec<u8>,
}

/// Most frontier points kept between layers (thinned evenly by cost beyond that).
const FRONTIER_CAP: usize = 4096;

/// Keeps the points not dominated in (cost, KL), sorted by cost.
fn pareto(mut points: Vec<Predicted>) -> Vec<Predicted> {
    points.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(a.kl.total_cmp(&b.kl)));
    let mut front: Vec<Predicted> = Vec::new();
    for p in points {
        if front.last().is_none_or(|last| p.kl < last.kl) {
            front.push(p);
        }
    }
    if front.len() > FRONTIER_CAP {
        let step = front.len() as f64 / FRONTIER_CAP as f64;
        front = (0..FRONTIER_CAP)
            .filter_map(|i| front.get((i as f64 * step) as usize).cloned())
            .collect();
    }
    front
}

/// Allocation over the Pareto frontier of the sensitivities: every per-layer choice among the
/// candidate widths is scored by its cost (size or BitOps, additive over layers) and its
/// predicted output KL (the sum of the single-layer KLs from `reports`, one report per
/// candidate width); the non-dominated choices are kept layer by layer. Up to `max_points`
/// frontier points spread over the cost range, plus the best predicted ones within the
/// budget, are then measured on the data; the chosen allocation is the measured one with the
/// lowest output KL within `budget`, and the measured points form the size-vs-accuracy curve.
/// `progress(measured, to_measure)`.
#[allow(clippy::too_many_arguments)]
pub fn allocate(
    evaluator: &Evaluator<'_>,
    costs: &CostModel<'_>,
    reports: &[SensitivityReport],
    budget: Budget,
    options: &AllocationOptions,
    max_points: usize,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Allocation> {
    let candidates = options.descending();
    if candidates.is_empty() {
        return Err(Error::Input {
            name: "candidates".into(),
            msg: "no candidate bit widths".into(),
        });
    }
    let by_bits: BTreeMap<u32, &SensitivityReport> = candidates
        .iter()
        .filter_map(|&b| {
            let name = options.weights(b).scheme.to_string();
            reports.iter().find(|r| r.weights == name).map(|r| (b, r))
        })
        .collect();
    let nodes: Vec<String> = costs.layers.iter().map(|l| l.node.clone()).collect();
    let assignment = |choice: &[u8]| -> BitAssignment {
        nodes
            .iter()
            .zip(choice)
            .map(|(n, &i)| (n.clone(), candidates[i as usize]))
            .collect()
    };
    // Costs are additive: cost(all at top) plus each layer's change from the top width.
    let top: Vec<u8> = vec![0; nodes.len()];
    let top_cost = costs.cost(&budget, &assignment(&top), options)?;
    let mut frontier = vec![Predicted {
        cost: top_cost,
        kl: 0.0,
        choice: Vec::new(),
    }];
    for (l, node) in nodes.iter().enumerate() {
        let mut options_here = Vec::with_capacity(candidates.len());
        for (i, &bits) in candidates.iter().enumerate() {
            let mut lowered = top.clone();
            lowered[l] = i as u8;
            let delta = costs.cost(&budget, &assignment(&lowered), options)? - top_cost;
            options_here.push((i as u8, delta, kl_of(&by_bits, node, bits)?));
        }
        let mut next = Vec::with_capacity(frontier.len() * options_here.len());
        for p in &frontier {
            for &(i, delta, kl) in &options_here {
                let mut choice = p.choice.clone();
                choice.push(i);
                next.push(Predicted {
                    cost: p.cost + delta,
                    kl: p.kl + kl,
                    choice,
                });
            }
        }
        frontier = pareto(next);
    }
    let limit = budget.limit();
    // What to measure: points spread evenly over the cost range, and the best predicted
    // points within the budget.
    let mut picked: Vec<usize> = Vec::new();
    let n = frontier.len();
    let spread = max_points.max(2).min(n);
    for k in 0..spread {
        picked.push(k * (n - 1) / (spread - 1).max(1));
    }
    let feasible: Vec<usize> = (0..n).filter(|&i| frontier[i].cost <= limit).collect();
    if feasible.is_empty() {
        return Err(Error::Input {
            name: "budget".into(),
            msg: format!(
                "{budget:?} is below the smallest allocation reachable with {candidates:?} \
                 bits ({:.0})",
                frontier.first().map_or(0.0, |p| p.cost)
            ),
        });
    }
    // The frontier is sorted by cost with falling KL: the best within budget are the last.
    picked.extend(feasible.iter().rev().take(4));
    picked.sort_unstable();
    picked.dedup();
    let mut curve = Vec::with_capacity(picked.len());
    for (done, &i) in picked.iter().enumerate() {
        let bits = assignment(&frontier[i].choice);
        let evaluation = measure(evaluator, &config_for(&bits, options), cancel)?;
        curve.push(CurvePoint {
            size_bytes: costs.size_bytes(&bits, options),
            bitops: costs.bitops(&bits, options)?,
            predicted_kl: frontier[i].kl,
            bits,
            evaluation,
        });
        progress(done + 1, picked.len());
    }
    let within = |p: &CurvePoint| match budget {
        Budget::SizeBytes(_) => p.size_bytes <= limit,
        Budget::BitOps(_) => p.bitops as f64 <= limit,
    };
    let chosen = curve
        .iter()
        .filter(|p| within(p))
        .min_by(|a, b| a.evaluation.loss().total_cmp(&b.evaluation.loss()))
        .cloned()
        .ok_or_else(|| Error::Input {
            name: "budget".into(),
            msg: format!("no measured allocation fits {budget:?}"),
        })?;
    Ok(Allocation {
        budget,
        config: config_for(&chosen.bits, options),
        chosen,
        curve,
    })
}
