//! AdaRound (Nagel et al. 2020): instead of rounding every weight to the nearest grid point,
//! learn per weight whether to round up or down so that each layer's output on calibration data
//! changes least. Per layer (Conv, Gemm, MatMul; linear grid, per tensor or per channel):
//! W̃ = S·(clamp(⌊W/S⌋ + h(V) + Z, qmin, qmax) − Z) with the rectified sigmoid h, minimising
//! ‖W·x − W̃·x‖² (summed over a sample's outputs, averaged over samples, from the float
//! model's activations) + λ·Σ(1 − |2h − 1|^β), β annealed 20 → 2 after a warm start without
//! the regulariser, by Adam from h = frac(W/S). The result is a hard choice per weight.
//!
//! Each layer rounds onto the grid [`crate::quant::QuantizedModel::prepare`] uses for its weight
//! (manual clip ranges and weight calibration included). [`adaround_model`] is the background
//! job: progress per iteration, a cancel flag, and the input [`QuantConfig`] with every layer's
//! decisions as a [`LearnedRounding`] in `adaround`, which `prepare` (hence evaluation and
//! every export) then uses instead of round-to-nearest.

mod layer;
pub mod rounding;

use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{Array2, ArrayD, ArrayViewD, Axis, Slice, linalg::general_mat_mul};
use serde::Serialize;

pub use layer::{Gram, GramCollector, LinearLayer};
use rounding::{Adam, BetaSchedule, initial_v, rectified_sigmoid, rectified_sigmoid_grad};

use crate::engine::Plan;
use crate::error::{Error, Result};
use crate::ir::{Graph, ParamRole, Tensor};
use crate::quant::config::{QuantConfig, WeightQuant, WeightScheme};
use crate::quant::fake::linear_weight_grid;
use crate::quant::grid::LinearParams;
use crate::quant::learned_rounding::{LearnedRounding, pack_bits, weights_fingerprint};
use crate::quant::linear::{self, Granularity};
use crate::workflow::{RunControl, Samples, choose_batch, for_each_chunk};

/// Settings of the optimisation (the paper's values where it gives them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AdaRoundOptions {
    pub iterations: usize,
    pub learning_rate: f64,
    /// Weight λ of the rounding regulariser.
    pub lambda: f64,
    pub beta_start: f64,
    pub beta_end: f64,
    /// Fraction of the iterations without the regulariser.
    pub warm_start: f64,
    /// Input rows (patches) kept per layer; larger inputs are subsampled evenly.
    pub max_rows: usize,
    /// Most samples per float run while collecting the inputs (the graph's own limit wins).
    pub batch_size: usize,
    /// A loss point is recorded (and progress reported) every this many iterations.
    pub report_every: usize,
}

impl Default for AdaRoundOptions {
    fn default() -> Self {
        AdaRoundOptions {
            iterations: 1000,
            learning_rate: 1e-2,
            lambda: 0.01,
            beta_start: 20.0,
            beta_end: 2.0,
            warm_start: 0.2,
            max_rows: 65_536,
            batch_size: 128,
            report_every: 10,
        }
    }
}

impl AdaRoundOptions {
    fn schedule(&self) -> BetaSchedule {
        BetaSchedule {
            iterations: self.iterations,
            warm_start: self.warm_start,
            start: self.beta_start,
            end: self.beta_end,
        }
    }

    fn check(&self) -> Result<()> {
        let ok = self.iterations > 0
            && self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.lambda.is_finite()
            && self.lambda >= 0.0
            && self.beta_start.is_finite()
            && self.beta_end.is_finite()
            && self.beta_end > 0.0
            && (0.0..=1.0).contains(&self.warm_start)
            && self.max_rows > 0
            && self.batch_size > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::Input {
                name: "AdaRound options".into(),
                msg: format!("invalid settings {self:?}"),
            })
        }
    }
}

/// One point of a layer's loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LossPoint {
    pub iteration: usize,
    /// ‖W·x − W̃·x‖² per sample, with the current soft rounding.
    pub reconstruction: f64,
    /// λ·Σ(1 − |2h − 1|^β); 0 during the warm start.
    pub regularizer: f64,
    /// None during the warm start.
    pub beta: Option<f64>,
}

/// What the job reports while it runs.
#[derive(Debug, Clone, Copy)]
pub struct AdaRoundProgress<'a> {
    /// Index of the layer being optimised and how many there are.
    pub layer_index: usize,
    pub layer_count: usize,
    pub node: &'a str,
    pub point: LossPoint,
}

/// One layer's rounding problem: its weight as a `[Cout, K]` matrix, the grid of each row and
/// the second moments of its inputs.
#[derive(Debug, Clone)]
pub struct LayerProblem {
    pub layer: LinearLayer,
    weight_shape: Vec<usize>,
    weights: Array2<f64>,
    /// Linear parameters of each output channel (the same for all rows per tensor).
    row_params: Vec<LinearParams>,
    /// The clip ranges and parameters as `quant::linear` returns them (one per tensor).
    ranges: Vec<(f32, f32)>,
    params: Vec<LinearParams>,
    granularity: Granularity,
    grams: Vec<Array2<f64>>,
    /// What the result is tied to (its `round_up` is filled in by [`LayerProblem::optimize`]).
    tied_to: LearnedRounding,
}

/// One layer's result.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRounding {
    pub node: String,
    pub op_type: String,
    pub tensor: String,
    pub per_channel: bool,
    pub ranges: Vec<(f32, f32)>,
    pub params: Vec<LinearParams>,
    /// The de-quantized AdaRound weights in the tensor's layout.
    #[serde(skip)]
    pub values: ArrayD<f32>,
    /// ‖(W̃ − W)·x‖² per sample on the calibration inputs: round-to-nearest and AdaRound.
    pub nearest_error: f64,
    pub adaround_error: f64,
    /// Weights rounded the other way than round-to-nearest, out of `weights`.
    pub flipped: usize,
    pub weights: usize,
    pub curve: Vec<LossPoint>,
    /// The decisions as the quantizer uses them (see [`QuantConfig::adaround`]).
    #[serde(skip)]
    pub learned: LearnedRounding,
}

fn quant_error(tensor: &str, msg: impl Into<String>) -> Error {
    Error::Quant {
        tensor: tensor.to_string(),
        msg: msg.into(),
    }
}

impl LayerProblem {
    /// The problem for `layer` whose stored weight is `weight`, quantized as `quant` (a linear
    /// scheme) on the grid `config` gives it (its manual clip ranges and weight calibration),
    /// with the input moments `gram`.
    pub fn new(
        layer: LinearLayer,
        weight: &Tensor,
        quant: &WeightQuant,
        config: &QuantConfig,
        gram: &Gram,
    ) -> Result<Self> {
        let name = weight.name.as_str();
        let WeightScheme::Linear { .. } = quant.scheme else {
            return Err(quant_error(
                name,
                format!("AdaRound rounds onto linear grids, not {}", quant.scheme),
            ));
        };
        let values = weight
            .data
            .as_f32()
            .ok_or_else(|| quant_error(name, "integer tensors are not quantized"))?;
        linear::check_finite(values.view()).map_err(|e| quant_error(name, e.0))?;
        if gram.samples == 0 {
            return Err(quant_error(
                name,
                format!("no calibration inputs reached layer '{}'", layer.node),
            ));
        }
        let (granularity, ranges, params) = linear_weight_grid(weight, quant, config)?
            .ok_or_else(|| quant_error(name, "AdaRound rounds onto linear grids"))?;
        let row_params = match granularity {
            Granularity::PerTensor => vec![params[0]; layer.out_channels],
            Granularity::PerChannel { axis }
                if axis == layer.out_axis() && params.len() == layer.out_channels =>
            {
                params.clone()
            }
            Granularity::PerChannel { axis } => {
                return Err(quant_error(
                    name,
                    format!(
                        "per-channel grid along axis {axis}, but layer '{}' has its output \
                         channels on axis {}",
                        layer.node,
                        layer.out_axis()
                    ),
                ));
            }
        };
        let tied_to = LearnedRounding {
            node: layer.node.clone(),
            quant: *quant,
            manual_range: config.weight_ranges.get(name).copied(),
            manual_channels: config
                .weight_channel_ranges
                .get(name)
                .cloned()
                .unwrap_or_default(),
            weight_calib: config.weight_calib,
            ranges: ranges.clone(),
            weights_sha256: weights_fingerprint(values.view()),
            count: values.len(),
            round_up: Vec::new(),
        };
        Ok(LayerProblem {
            weights: layer.to_matrix(values.view())?,
            weight_shape: values.shape().to_vec(),
            layer,
            row_params,
            ranges,
            params,
            granularity,
            grams: gram.normalized(),
            tied_to,
        })
    }

    /// Σ over groups of tr(D·G·Dᵀ) for D = `candidate` − W, and 2·D·G (its gradient) in `grad`.
    fn reconstruction(&self, candidate: &Array2<f64>, grad: &mut Array2<f64>) -> f64 {
        let diff = candidate - &self.weights;
        let cpg = self.layer.channels_per_group();
        let mut total = 0.0;
        for (g, gram) in self.grams.iter().enumerate() {
            let rows = Slice::from(g * cpg..(g + 1) * cpg);
            let d = diff.slice_axis(Axis(0), rows);
            let mut out = grad.slice_axis_mut(Axis(0), rows);
            general_mat_mul(2.0, &d, gram, 0.0, &mut out);
            total += 0.5 * (&d * &out).sum();
        }
        total
    }

    /// Reconstruction error of a hard rounding given as de-quantized weights.
    fn error_of(&self, candidate: &Array2<f64>) -> f64 {
        let mut scratch = Array2::zeros(candidate.raw_dim());
        self.reconstruction(candidate, &mut scratch)
    }

    /// ⌊W/S⌋ (as the quantizer divides, in f32) and the fraction W/S − ⌊W/S⌋ of every weight.
    fn floors(&self) -> (Vec<f64>, Vec<f64>) {
        let k = self.layer.k;
        self.weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let ratio = w as f32 / self.row_params[i / k].scale;
                let floor = ratio.floor();
                (f64::from(floor), f64::from(ratio - floor))
            })
            .unzip()
    }

    /// The de-quantized weight of integer offset `offset` (⌊W/S⌋ + up) at flat index `i`.
    fn dequantized(&self, i: usize, offset: f64) -> f32 {
        let p = &self.row_params[i / self.layer.k];
        let code = (offset + f64::from(p.zero_point))
            .clamp(f64::from(p.grid.qmin()), f64::from(p.grid.qmax())) as i32;
        p.dequantize(code)
    }

    /// Runs AdaRound; `progress` gets a loss point every `options.report_every` iterations.
    pub fn optimize(
        &self,
        options: &AdaRoundOptions,
        progress: &mut dyn FnMut(LossPoint),
        cancel: &AtomicBool,
    ) -> Result<LayerRounding> {
        options.check()?;
        let name = self.layer.weight.as_str();
        let (floors, fractions) = self.floors();
        let mut v: Vec<f64> = fractions.iter().map(|&f| initial_v(f)).collect();
        let mut adam = Adam::new(v.len(), options.learning_rate);
        let schedule = options.schedule();
        let shape = self.weights.raw_dim();
        let k = self.layer.k;
        let mut soft = Array2::<f64>::zeros(shape);
        let mut grad_w = Array2::<f64>::zeros(shape);
        let mut grad_v = vec![0.0; v.len()];
        let mut inside = vec![false; v.len()];
        let mut curve = Vec::new();
        for iteration in 0..options.iterations {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            for (i, value) in soft.iter_mut().enumerate() {
                let p = &self.row_params[i / k];
                let code = floors[i] + rectified_sigmoid(v[i]) + f64::from(p.zero_point);
                let (lo, hi) = (f64::from(p.grid.qmin()), f64::from(p.grid.qmax()));
                inside[i] = code > lo && code < hi;
                *value = f64::from(p.scale) * (code.clamp(lo, hi) - f64::from(p.zero_point));
            }
            let reconstruction = self.reconstruction(&soft, &mut grad_w);
            if !reconstruction.is_finite() {
                return Err(quant_error(
                    name,
                    format!("AdaRound diverged at iteration {iteration} (non-finite loss)"),
                ));
            }
            let beta = schedule.beta(iteration);
            let mut regularizer = 0.0;
            for (i, g) in grad_v.iter_mut().enumerate() {
                let h = rectified_sigmoid(v[i]);
                let scale = f64::from(self.row_params[i / k].scale);
                let mut grad_h = if inside[i] {
                    grad_w.as_slice().map_or(0.0, |s| s[i]) * scale
                } else {
                    0.0
                };
                if let Some(beta) = beta {
                    regularizer += options.lambda * rounding::regularizer(h, beta);
                    grad_h += options.lambda * rounding::regularizer_grad(h, beta);
                }
                *g = grad_h * rectified_sigmoid_grad(v[i]);
            }
            if iteration % options.report_every.max(1) == 0 || iteration + 1 == options.iterations {
                let point = LossPoint {
                    iteration,
                    reconstruction,
                    regularizer,
                    beta,
                };
                curve.push(point);
                progress(point);
            }
            adam.step(&mut v, &grad_v);
        }
        // Hard decisions, and round-to-nearest for comparison.
        let mut hard = Array2::<f32>::zeros(shape);
        let mut nearest = Array2::<f64>::zeros(shape);
        let mut up_flags = Array2::<f32>::zeros(shape);
        let mut flipped = 0;
        for (i, (value, near)) in hard.iter_mut().zip(nearest.iter_mut()).enumerate() {
            let up = rectified_sigmoid(v[i]) >= 0.5;
            if let Some(flag) = up_flags.as_slice_mut().and_then(|f| f.get_mut(i)) {
                *flag = f32::from(u8::from(up));
            }
            *value = self.dequantized(i, floors[i] + f64::from(u8::from(up)));
            let p = &self.row_params[i / k];
            let nearest_value =
                p.fake_quantize(self.weights.as_slice().map_or(0.0, |s| s[i]) as f32);
            *near = f64::from(nearest_value);
            flipped += usize::from(*value != nearest_value);
        }
        let adaround_error = self.error_of(&hard.mapv(f64::from));
        let nearest_error = self.error_of(&nearest);
        let up_in_layout = self.layer.from_matrix(&up_flags, &self.weight_shape)?;
        let learned = LearnedRounding {
            round_up: pack_bits(up_in_layout.iter().map(|&f| f > 0.5)),
            ..self.tied_to.clone()
        };
        Ok(LayerRounding {
            node: self.layer.node.clone(),
            op_type: self.layer.op_type.clone(),
            tensor: name.to_string(),
            per_channel: matches!(self.granularity, Granularity::PerChannel { .. }),
            ranges: self.ranges.clone(),
            params: self.params.clone(),
            values: self.layer.from_matrix(&hard, &self.weight_shape)?,
            nearest_error,
            adaround_error,
            flipped,
            weights: self.weights.len(),
            curve,
            learned,
        })
    }

    /// Reconstruction error per sample of the given de-quantized weights (tensor layout).
    pub fn reconstruction_error(&self, values: ArrayViewD<'_, f32>) -> Result<f64> {
        Ok(self.error_of(&self.layer.to_matrix(values)?))
    }
}

/// The outcome of [`adaround_model`].
#[derive(Debug, Clone)]
pub struct AdaRoundModel {
    /// The input config with every layer's learned rounding in `adaround` (replacing any it
    /// had): `QuantizedModel::prepare(graph, &config, ..)` rounds those weights as learned.
    pub config: QuantConfig,
    pub layers: Vec<LayerRounding>,
}

/// Builds the rounding problem of every layer with a linear weight setting in `config`:
/// collects the layers' inputs from float runs of `graph` over the `calibration` samples, in
/// order, in chunks of at most `options.batch_size` the graph accepts.
pub fn layer_problems(
    graph: &Graph,
    config: &QuantConfig,
    calibration: &Samples,
    options: &AdaRoundOptions,
    cancel: &AtomicBool,
) -> Result<Vec<LayerProblem>> {
    options.check()?;
    let mut layers = Vec::new();
    let mut quants = Vec::new();
    for node in &graph.nodes {
        if !["Conv", "Gemm", "MatMul"].contains(&node.op_type.as_str()) {
            continue;
        }
        let Some(quant) = config.layer(&node.name).weights else {
            continue;
        };
        let Some(tensor) = node.input(1).and_then(|n| graph.initializers.get(n)) else {
            continue;
        };
        if tensor.role != ParamRole::Weight
            || !matches!(quant.scheme, WeightScheme::Linear { .. })
            || layers.iter().any(|l: &LinearLayer| l.weight == tensor.name)
        {
            continue;
        }
        layers.push(LinearLayer::of(graph, node)?);
        quants.push(quant);
    }
    if layers.is_empty() {
        return Err(Error::Input {
            name: "AdaRound".into(),
            msg: "no Conv, Gemm or MatMul layer has linear weight quantization in the config \
                  (nothing to round)"
                .into(),
        });
    }
    let samples = calibration.count();
    if samples == 0 {
        return Err(Error::Input {
            name: "calibration data".into(),
            msg: "AdaRound needs calibration samples".into(),
        });
    }
    calibration.check(graph)?;
    let mut collector = GramCollector::new(layers, samples, options.max_rows);
    let plan = Plan::new(graph)?;
    let control = RunControl::cancel(cancel);
    let batch = choose_batch(
        &plan,
        calibration,
        Some(options.batch_size),
        control.options(),
    )?;
    for_each_chunk(calibration, batch.size, &control, |_, feeds| {
        plan.run(feeds, Some(&mut collector), control.options())?;
        Ok(())
    })?;
    let GramCollector { layers, grams, .. } = collector;
    layers
        .into_iter()
        .zip(grams)
        .zip(quants)
        .map(|((layer, gram), quant)| {
            let tensor = graph
                .initializers
                .get(&layer.weight)
                .ok_or_else(|| quant_error(&layer.weight, "weight disappeared"))?;
            LayerProblem::new(layer, tensor, &quant, config, &gram)
        })
        .collect()
}

/// AdaRound over every layer of `graph` with a linear weight setting in `config`, as a
/// background job: `progress` is called every `options.report_every` iterations of each layer,
/// `cancel` stops the job with [`Error::Cancelled`].
pub fn adaround_model(
    graph: &Graph,
    config: &QuantConfig,
    calibration: &Samples,
    options: &AdaRoundOptions,
    progress: &mut dyn FnMut(&AdaRoundProgress<'_>),
    cancel: &AtomicBool,
) -> Result<AdaRoundModel> {
    let problems = layer_problems(graph, config, calibration, options, cancel)?;
    let mut new_config = config.clone();
    new_config.adaround.clear();
    let mut layers = Vec::with_capacity(problems.len());
    let count = problems.len();
    for (index, problem) in problems.iter().enumerate() {
        let node = problem.layer.node.as_str();
        let result = problem.optimize(
            options,
            &mut |point| {
                progress(&AdaRoundProgress {
                    layer_index: index,
                    layer_count: count,
                    node,
                    point,
                })
            },
            cancel,
        )?;
        new_config
            .adaround
            .insert(result.tensor.clone(), result.learned.clone());
        layers.push(result);
    }
    Ok(AdaRoundModel {
        config: new_config,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, Node, TensorData};
    use ndarray::IxDyn;
    use rand::{RngExt, SeedableRng};
    use rand_pcg::Pcg64;

    /// A Gemm y = x·Wᵀ with random W and a Gram from random correlated inputs.
    fn gemm_problem(bits: u32, per_channel: bool) -> LayerProblem {
        let (out, k) = (6, 10);
        let mut rng = Pcg64::seed_from_u64(7);
        let w = ArrayD::from_shape_fn(IxDyn(&[out, k]), |_| rng.random::<f32>() - 0.5);
        let mut graph = Graph::default();
        let mut tensor = Tensor::new("w", TensorData::F32(w), DType::F32);
        tensor.role = ParamRole::Weight;
        tensor.channel_axis = Some(0);
        graph.initializers.insert("w".into(), tensor.clone());
        let node = Node {
            name: "fc".into(),
            op_type: "Gemm".into(),
            domain: String::new(),
            inputs: vec!["x".into(), "w".into()],
            outputs: vec!["y".into()],
            attributes: [("transB".to_string(), crate::ir::Attribute::Int(1))].into(),
        };
        let layer = LinearLayer::of(&graph, &node).unwrap();
        let mut collector = GramCollector::new(vec![layer.clone()], 64, usize::MAX);
        let x = ArrayD::from_shape_fn(IxDyn(&[64, k]), |i| {
            let shared = ((i[0] * 31) % 17) as f32 / 17.0;
            shared + 0.3 * rng.random::<f32>() * (i[1] as f32 + 1.0) / k as f32
        });
        let mut value = TensorData::F32(x);
        use crate::engine::TensorHook;
        collector
            .on_tensor(
                crate::engine::TensorSite {
                    name: "x",
                    producer: None,
                    step: None,
                },
                &mut value,
            )
            .unwrap();
        let quant = WeightQuant {
            scheme: WeightScheme::Linear {
                bits,
                symmetric: true,
            },
            per_channel,
        };
        LayerProblem::new(
            layer,
            &tensor,
            &quant,
            &QuantConfig::default(),
            &collector.grams[0],
        )
        .unwrap()
    }

    #[test]
    fn reconstruction_gradient_matches_finite_differences() {
        let problem = gemm_problem(4, false);
        let candidate = problem.weights.mapv(|w| w + 0.01 * (w * 7.0).sin());
        let mut grad = Array2::zeros(candidate.raw_dim());
        let base = problem.reconstruction(&candidate, &mut grad);
        let eps = 1e-6;
        for idx in [(0, 0), (2, 5), (5, 9)] {
            let mut plus = candidate.clone();
            plus[idx] += eps;
            let mut minus = candidate.clone();
            minus[idx] -= eps;
            let numeric = (problem.error_of(&plus) - problem.error_of(&minus)) / (2.0 * eps);
            assert!(
                (grad[idx] - numeric).abs() < 1e-5 * (1.0 + numeric.abs()),
                "{idx:?}: {} vs {numeric}",
                grad[idx]
            );
        }
        assert!(base > 0.0);
    }

    #[test]
    fn adaround_beats_nearest_on_a_small_gemm_and_decides_every_weight() {
        for per_channel in [false, true] {
            let problem = gemm_problem(3, per_channel);
            let mut points = 0;
            let result = problem
                .optimize(
                    &AdaRoundOptions::default(),
                    &mut |_| points += 1,
                    &AtomicBool::new(false),
                )
                .unwrap();
            assert!(
                result.adaround_error < result.nearest_error,
                "per_channel {per_channel}: {} vs {}",
                result.adaround_error,
                result.nearest_error
            );
            assert_eq!(points, result.curve.len());
            // Every value is a grid point of its channel: S·(q − Z) for an integer q in range.
            for (i, &v) in result.values.iter().enumerate() {
                let p = problem.row_params[i / problem.layer.k];
                assert_eq!(p.fake_quantize(v), v);
            }
            // The regulariser has pushed h to 0/1: at the end it is near zero.
            let last = result.curve.last().unwrap();
            assert!(last.regularizer < 0.01 * problem.weights.len() as f64 * 0.05);
        }
    }

    #[test]
    fn cancel_stops_the_optimisation() {
        let problem = gemm_problem(4, false);
        let cancel = AtomicBool::new(true);
        let err = problem
            .optimize(&AdaRoundOptions::default(), &mut |_| {}, &cancel)
            .unwrap_err();
        assert!(matches!(err, Error::Cancelled));
    }
}
