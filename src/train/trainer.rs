//! [`Trainer`]: one model under training. It owns the latent (float) parameters, the weight
//! and activation quantizers, the optimizer state and the tape, and runs optimizer steps,
//! evaluations and the export of the trained model.
//!
//! Which weights are quantized and which activations, with which ranges, follows
//! [`crate::quant::QuantizedModel::prepare`] exactly (Conv/ConvTranspose/Gemm/MatMul weights
//! with the Weight role, read first by that layer; the data inputs of quantized layers; manual
//! ranges first, else the calibration method on the calibration statistics), so an evaluation
//! before the first step is the PTQ model, and the exported graph and configuration give the
//! trained model back through `prepare`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

use super::config::{QatConfig, QatOptions};
use super::fake_quant::{ActivationQuantizer, ActivationRule};
use super::loss::{LossOutput, argmax, nll_of_log_probs, softmax_cross_entropy};
use super::optim::Optimizer;
use super::schemes::WeightQuantizer;
use super::schemes::xnor::{XnorLayer, XnorMode};
use super::tape::{Layer, TapeHook, TrainGraph};
use crate::calib::CalibrationStats;
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, ParamRole, TensorData};
use crate::quant::config::{LayerQuant, QUANTIZABLE_OPS, WeightQuant, WeightScheme};
use crate::quant::grid::IntGrid;

/// One trained tensor.
struct Param {
    name: String,
    slot: usize,
    /// The float ("latent") values, standard layout.
    latent: ArrayD<f32>,
    /// Index into the weight quantizers, when the tensor is quantized.
    quantizer: Option<usize>,
    /// Weight decay applies (layer weights only).
    decay: bool,
    /// Latent values clipped to [−1, 1] after each update (XNOR layers).
    clip_unit: bool,
}

/// What the graph's first output is, for the loss.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Head {
    /// Logits in this slot (the output itself, or the input of a final Softmax).
    Logits(usize),
    /// Log-probabilities (a final LogSoftmax).
    LogProbs(usize),
}

impl Head {
    fn slot(self) -> usize {
        match self {
            Head::Logits(s) | Head::LogProbs(s) => s,
        }
    }
}

/// The tape hook of a training run: activation quantizers by slot, XNOR layers by node.
struct QatHook {
    activations: HashMap<usize, ActivationQuantizer>,
    layers: HashMap<usize, XnorLayer>,
    training: bool,
}

impl TapeHook for QatHook {
    fn forward_value(&mut self, slot: usize, value: &mut TensorData) -> Result<()> {
        if let Some(q) = self.activations.get_mut(&slot)
            && let TensorData::F32(x) = value
        {
            q.forward(x, self.training)?;
        }
        Ok(())
    }

    fn backward_value(&mut self, slot: usize, grad: &mut ArrayD<f32>) -> Result<()> {
        if let Some(q) = self.activations.get_mut(&slot) {
            q.backward(grad)?;
        }
        Ok(())
    }

    fn layer(&self, node_index: usize) -> Option<&dyn Layer> {
        self.layers.get(&node_index).map(|l| l as &dyn Layer)
    }
}

/// Loss and accuracy counts of some samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    pub loss_sum: f64,
    pub correct: usize,
    pub samples: usize,
}

/// A model under quantization-aware training.
pub struct Trainer<'g> {
    tape: TrainGraph<'g>,
    config: QatConfig,
    options: QatOptions,
    input: String,
    head: Head,
    params: Vec<Param>,
    weights: Vec<WeightQuantizer>,
    hook: QatHook,
    needs: Vec<bool>,
    optimizer: Optimizer,
    /// Samples per forward pass (the model's fixed batch size, or the whole batch).
    micro_batch: Option<usize>,
    steps_done: u64,
}

fn quant_error(tensor: &str, msg: impl Into<String>) -> Error {
    Error::Quant {
        tensor: tensor.to_string(),
        msg: msg.into(),
    }
}

impl<'g> Trainer<'g> {
    /// Sets up training of `graph` for `config`, with calibration statistics `stats` for the
    /// activations whose range is not set by hand.
    pub fn new(
        graph: &'g Graph,
        config: &QatConfig,
        stats: &BTreeMap<String, CalibrationStats>,
        options: &QatOptions,
    ) -> Result<Self> {
        options.check()?;
        let tape = TrainGraph::new(graph)?;
        let [input] = graph.inputs.as_slice() else {
            return Err(Error::Input {
                name: "model".into(),
                msg: format!(
                    "training needs a model with one input; this one has {}",
                    graph.inputs.len()
                ),
            });
        };
        let head = find_head(&tape)?;
        for name in &config.xnor_layers {
            match graph.nodes.iter().find(|n| &n.name == name) {
                Some(n) if matches!(n.op_type.as_str(), "Conv" | "Gemm") => {}
                Some(n) => {
                    return Err(Error::Input {
                        name: name.clone(),
                        msg: format!("XNOR layers are Conv or Gemm nodes, this is {}", n.op_type),
                    });
                }
                None => {
                    return Err(Error::Input {
                        name: name.clone(),
                        msg: "no node of this name (XNOR layer)".into(),
                    });
                }
            }
        }

        // Weight quantizers and activation quantizers, as QuantizedModel::prepare picks them.
        let mut weights: Vec<WeightQuantizer> = Vec::new();
        let mut activations: HashMap<usize, ActivationQuantizer> = HashMap::new();
        let mut layers = HashMap::new();
        for (node_index, node) in graph.nodes.iter().enumerate() {
            if config.xnor_layers.contains(&node.name) {
                layers.insert(
                    node_index,
                    XnorLayer {
                        node: node.name.clone(),
                        mode: XnorMode::FloatSimulation,
                    },
                );
                continue;
            }
            if !QUANTIZABLE_OPS.contains(&node.op_type.as_str()) {
                continue;
            }
            let layer = config.quant.layer(&node.name);
            if let Some(weight_quant) = &layer.weights
                && let Some(name) = node.input(1)
                && let Some(tensor) = graph.initializers.get(name)
                && tensor.role == ParamRole::Weight
                && !weights.iter().any(|w| w.tensor == name)
            {
                let manual = config.quant.weight_ranges.get(name).copied();
                weights.push(WeightQuantizer::new(
                    tensor,
                    &node.name,
                    weight_quant,
                    manual,
                    options.ttq_threshold,
                )?);
            }
            let Some(act) = &layer.activations else {
                continue;
            };
            let mut data_inputs = vec![node.input(0)];
            if node.op_type == "MatMul"
                && !graph.initializers.contains_key(node.input(1).unwrap_or(""))
            {
                data_inputs.push(node.input(1));
            }
            for name in data_inputs.into_iter().flatten() {
                let Some(slot) = tape.slot(name) else {
                    continue;
                };
                if activations.contains_key(&slot) {
                    continue;
                }
                let q = if act.bits == 1 {
                    ActivationQuantizer::new(
                        name,
                        ActivationRule::Binary,
                        (0.0, 0.0),
                        false,
                        options.ranges,
                    )?
                } else {
                    let grid = IntGrid::new(act.bits, act.symmetric, false)
                        .map_err(|e| quant_error(name, e.0))?;
                    let (range, manual) = match config.quant.activation_ranges.get(name) {
                        Some(&r) => (r, true),
                        None => {
                            let s = stats.get(name).ok_or_else(|| {
                                quant_error(
                                    name,
                                    "no calibration statistics (calibrate with data first)",
                                )
                            })?;
                            let r = act
                                .method
                                .range(s, act.bits)
                                .map_err(|e| quant_error(name, e.to_string()))?;
                            (r, false)
                        }
                    };
                    let rule = ActivationRule::Linear {
                        grid,
                        symmetric: act.symmetric,
                    };
                    ActivationQuantizer::new(name, rule, range, manual, options.ranges)?
                };
                activations.insert(slot, q);
            }
        }

        // Trained tensors: layer weights and biases (and embeddings), norm parameters on request.
        let xnor_weights: Vec<&str> = graph
            .nodes
            .iter()
            .filter(|n| config.xnor_layers.contains(&n.name))
            .filter_map(|n| n.input(1))
            .collect();
        let mut params = Vec::new();
        for (name, tensor) in &graph.initializers {
            let TensorData::F32(values) = &tensor.data else {
                continue;
            };
            let trained = match tensor.role {
                ParamRole::Weight | ParamRole::Bias | ParamRole::Embedding => true,
                ParamRole::BnScale | ParamRole::BnBias | ParamRole::NormParam => options.train_norm,
                _ => false,
            };
            let Some(slot) = tape.slot(name) else {
                continue;
            };
            if !trained || graph.inputs.iter().any(|i| &i.name == name) {
                continue;
            }
            let quantizer = weights.iter().position(|w| &w.tensor == name);
            params.push(Param {
                name: name.clone(),
                slot,
                latent: values.as_standard_layout().into_owned(),
                quantizer,
                decay: tensor.role == ParamRole::Weight,
                clip_unit: xnor_weights.contains(&name.as_str()),
            });
        }
        if params.is_empty() {
            return Err(Error::Input {
                name: "model".into(),
                msg: "has no trainable parameters (no Conv, Gemm or MatMul weights)".into(),
            });
        }
        let hook = QatHook {
            activations,
            layers,
            training: false,
        };
        let sources: Vec<usize> = params.iter().map(|p| p.slot).collect();
        let needs = tape.gradient_slots(&sources, &hook)?;
        let micro_batch = match input.shape.as_ref().and_then(|d| d.first()) {
            Some(Dim::Fixed(n)) => Some((*n).max(1)),
            _ => None,
        };
        Ok(Trainer {
            tape,
            config: config.clone(),
            options: *options,
            input: input.name.clone(),
            head,
            params,
            weights,
            hook,
            needs,
            optimizer: Optimizer::new(options.optimizer, options.weight_decay),
            micro_batch,
            steps_done: 0,
        })
    }

    /// The graph input's name.
    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// The weight quantizers (one per quantized weight tensor).
    pub fn weight_quantizers(&self) -> &[WeightQuantizer] {
        &self.weights
    }

    /// The activation quantizers, by tensor name.
    pub fn activation_quantizers(&self) -> Vec<&ActivationQuantizer> {
        let mut v: Vec<&ActivationQuantizer> = self.hook.activations.values().collect();
        v.sort_by(|a, b| a.tensor.cmp(&b.tensor));
        v
    }

    /// Names of the trained tensors.
    pub fn param_names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }

    /// How XNOR layers compute (float simulation or popcount).
    pub fn set_xnor_mode(&mut self, mode: XnorMode) {
        for layer in self.hook.layers.values_mut() {
            layer.mode = mode;
        }
    }

    /// Decides the forward pass size from a sample batch: the model's fixed batch size, else
    /// the whole batch when two samples run through at once, else one sample at a time
    /// (models exported with the batch size baked into Reshape constants).
    pub fn probe(&mut self, x: ArrayViewD<'_, f32>) -> Result<()> {
        if self.micro_batch.is_some() {
            return Ok(());
        }
        let n = x.len_of(Axis(0)).min(2);
        let batched = n >= 2
            && self
                .forward_logits(x.slice_axis(Axis(0), Slice::from(0..2)), None)
                .is_ok_and(|l| l.len_of(Axis(0)) == 2);
        self.micro_batch = if batched { None } else { Some(1) };
        if !batched {
            self.forward_logits(x.slice_axis(Axis(0), Slice::from(0..1)), None)?;
        }
        Ok(())
    }

    fn chunk(&self, total: usize) -> usize {
        self.micro_batch.unwrap_or(total).clamp(1, total.max(1))
    }

    /// The overrides of the trained slots: quantized values (training: kept for backward).
    fn weight_values(
        &mut self,
        training: bool,
        seed: Option<u64>,
    ) -> Result<Vec<(usize, Arc<TensorData>)>> {
        let mut out = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let value = match p.quantizer {
                Some(q) => self.weights[q].quantize(&p.latent, training, seed)?,
                None => p.latent.clone(),
            };
            out.push((p.slot, Arc::new(TensorData::F32(value))));
        }
        Ok(out)
    }

    /// Logits of `x` in evaluation mode (or with `overrides` already computed).
    fn forward_logits(
        &mut self,
        x: ArrayViewD<'_, f32>,
        overrides: Option<&[(usize, Arc<TensorData>)]>,
    ) -> Result<ArrayD<f32>> {
        self.hook.training = false;
        let owned;
        let overrides = match overrides {
            Some(o) => o,
            None => {
                owned = self.weight_values(false, None)?;
                &owned
            }
        };
        let feeds = HashMap::from([(self.input.clone(), TensorData::F32(x.to_owned()))]);
        let tape = self.tape.forward(feeds, overrides, &mut self.hook, None)?;
        match tape.value(self.head.slot()) {
            Some(TensorData::F32(a)) => Ok(a.clone()),
            _ => Err(Error::Graph(
                "the model output is not a float tensor".into(),
            )),
        }
    }

    /// The model's outputs (the head: logits or log-probabilities) for `x`, in evaluation
    /// mode, run in forward passes of at most `batch` samples.
    pub fn logits(&mut self, x: ArrayViewD<'_, f32>, batch: usize) -> Result<ArrayD<f32>> {
        let total = x.len_of(Axis(0));
        let step = self.chunk(batch.max(1)).min(batch.max(1));
        let overrides = self.weight_values(false, None)?;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < total {
            let end = (start + step).min(total);
            let part = self.forward_logits(
                x.slice_axis(Axis(0), Slice::from(start..end)),
                Some(&overrides),
            )?;
            parts.push(as_rows(part, end - start)?);
            start = end;
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Graph(e.to_string()))
    }

    /// Loss and accuracy of `x` against `labels` in evaluation mode.
    pub fn evaluate(
        &mut self,
        x: ArrayViewD<'_, f32>,
        labels: &[i64],
        batch: usize,
    ) -> Result<BatchStats> {
        let logits = self.logits(x, batch)?;
        let out = self.loss(&logits, labels, labels.len())?;
        Ok(BatchStats {
            loss_sum: out.loss_sum,
            correct: out.correct,
            samples: labels.len(),
        })
    }

    fn loss(&self, head: &ArrayD<f32>, labels: &[i64], total: usize) -> Result<LossOutput> {
        let rows = as_rows(head.clone(), labels.len())?;
        let rows = rows
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|e| Error::Graph(e.to_string()))?;
        match self.head {
            Head::Logits(_) => softmax_cross_entropy(rows, labels, total),
            Head::LogProbs(_) => nll_of_log_probs(rows, labels, total),
        }
    }

    /// One optimizer step on the batch `x`, `labels` at learning rate `lr`.
    pub fn train_step(
        &mut self,
        x: ArrayViewD<'_, f32>,
        labels: &[i64],
        lr: f32,
        cancel: Option<&AtomicBool>,
    ) -> Result<BatchStats> {
        let total = labels.len();
        if x.len_of(Axis(0)) != total || total == 0 {
            return Err(Error::Input {
                name: self.input.clone(),
                msg: format!("{} samples with {total} labels", x.len_of(Axis(0))),
            });
        }
        let seed = self
            .options
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(self.steps_done);
        let chunk = self.chunk(total);
        let slots: Vec<usize> = self.params.iter().map(|p| p.slot).collect();
        let mut latent_grads: Vec<Option<ArrayD<f32>>> = vec![None; self.params.len()];
        let mut own_grads: Vec<Vec<f32>> = vec![Vec::new(); self.weights.len()];
        let mut stats = BatchStats::default();
        let mut start = 0;
        while start < total {
            let end = (start + chunk).min(total);
            let overrides = self.weight_values(true, Some(seed))?;
            self.hook.training = true;
            let feeds = HashMap::from([(
                self.input.clone(),
                TensorData::F32(x.slice_axis(Axis(0), Slice::from(start..end)).to_owned()),
            )]);
            let tape = self
                .tape
                .forward(feeds, &overrides, &mut self.hook, cancel)?;
            let head = match tape.value(self.head.slot()) {
                Some(TensorData::F32(a)) => a.clone(),
                _ => {
                    return Err(Error::Graph(
                        "the model output is not a float tensor".into(),
                    ));
                }
            };
            let out = self.loss(&head, &labels[start..end], total)?;
            stats.loss_sum += out.loss_sum;
            stats.correct += out.correct;
            stats.samples += end - start;
            let seed_grad = out
                .grad
                .into_shape_with_order(IxDyn(head.shape()))
                .map_err(|e| Error::Graph(e.to_string()))?;
            let grads = self.tape.backward(
                &tape,
                vec![(self.head.slot(), seed_grad)],
                &self.needs,
                &slots,
                &mut self.hook,
            )?;
            drop(tape);
            for (i, p) in self.params.iter().enumerate() {
                let Some(g) = grads.get(&p.slot) else {
                    continue;
                };
                let (latent, own) = match p.quantizer {
                    Some(q) => {
                        let wg = self.weights[q].backward(&p.latent, g)?;
                        (wg.latent, Some((q, wg.own)))
                    }
                    None => (Some(g.as_standard_layout().into_owned()), None),
                };
                if let Some(l) = latent {
                    add_into(&mut latent_grads[i], l);
                }
                if let Some((q, own)) = own {
                    if own_grads[q].is_empty() {
                        own_grads[q] = own;
                    } else {
                        for (a, b) in own_grads[q].iter_mut().zip(own) {
                            *a += b;
                        }
                    }
                }
            }
            start = end;
        }
        // The updates.
        for (p, g) in self.params.iter_mut().zip(latent_grads) {
            let Some(g) = g else { continue };
            if let Some(q) = p.quantizer
                && !self.weights[q].trains_latent()
            {
                continue;
            }
            let (Some(w), Some(gs)) = (p.latent.as_slice_mut(), g.as_slice()) else {
                return Err(quant_error(&p.name, "parameter not contiguous"));
            };
            self.optimizer.update(&p.name, w, gs, lr, p.decay);
            if let Some(q) = p.quantizer {
                self.weights[q].clamp_latent(&mut p.latent);
            }
            if p.clip_unit {
                p.latent.mapv_inplace(|v| v.clamp(-1.0, 1.0));
            }
        }
        for (q, g) in self.weights.iter_mut().zip(own_grads) {
            if g.is_empty() {
                continue;
            }
            let mut values = q.own_params();
            if values.len() == g.len() {
                self.optimizer
                    .update(&format!("{}#scheme", q.tensor), &mut values, &g, lr, false);
                q.set_own_params(&values);
            }
        }
        for q in self.hook.activations.values_mut() {
            if let Some(v) = q.learned_value() {
                let mut values = [v];
                let g = [q.range_grad];
                self.optimizer
                    .update(&format!("{}#range", q.tensor), &mut values, &g, lr, false);
                q.set_learned_value(values[0]);
            }
        }
        self.steps_done += 1;
        Ok(stats)
    }

    /// The trained graph: quantized weights de-quantized (XNOR weights as α·sign(W)), other
    /// trained tensors as trained.
    pub fn trained_graph(&mut self) -> Result<Graph> {
        let mut graph = self.tape.graph().clone();
        let values = self.weight_values(false, None)?;
        for (p, (_, v)) in self.params.iter().zip(values) {
            let mut value = (*v).clone();
            if p.clip_unit {
                value = xnor_weights(self.tape.graph(), &p.name, &p.latent)?;
            }
            if let Some(t) = graph.initializers.get_mut(&p.name) {
                t.data = value;
            }
        }
        Ok(graph)
    }

    /// The configuration that gives the trained model back through `QuantizedModel::prepare`
    /// on [`Trainer::trained_graph`]: trained activation ranges as manual ranges, per-tensor
    /// weight ranges pinned, stochastic binarization as the deterministic sign, XNOR layers as
    /// per-channel scaled binary weights. Binary activations have no PTQ setting: their layers'
    /// activations are left in float (listed by [`Trainer::binary_activations`]).
    pub fn trained_config(&self) -> Result<crate::quant::QuantConfig> {
        let graph = self.tape.graph();
        let mut config = self.config.quant.clone();
        let mut set_layer = |node: &str, f: &dyn Fn(&mut LayerQuant)| {
            let mut layer = *config.layer(node);
            f(&mut layer);
            config.layers.insert(node.to_string(), layer);
        };
        for node in graph.nodes.iter() {
            let layer = self.config.quant.layer(&node.name);
            if self.config.xnor_layers.contains(&node.name) {
                set_layer(&node.name, &|l| {
                    l.weights = Some(WeightQuant {
                        scheme: WeightScheme::Binary {
                            scaled: true,
                            stochastic: false,
                        },
                        per_channel: true,
                    });
                    l.activations = None;
                });
            } else if layer.activations.is_some_and(|a| a.bits == 1) {
                set_layer(&node.name, &|l| l.activations = None);
            }
        }
        for q in &self.weights {
            let result = q.result_quant();
            if Some(result) != self.config.quant.layer(&q.node).weights {
                set_layer(&q.node, &|l| l.weights = Some(result));
            }
        }
        for q in self.hook.activations.values() {
            if let ActivationRule::Linear { symmetric, grid } = q.rule {
                let range = match (q.learned_value(), symmetric) {
                    // LSQ's step on a symmetric grid: ±q⁺·S rebuilds S.
                    (Some(s), true)
                        if matches!(q.learning, super::fake_quant::RangeLearning::Lsq) =>
                    {
                        let top = grid.qmax() as f32 * s;
                        (-top, top)
                    }
                    _ => q.final_range()?,
                };
                config.activation_ranges.insert(q.tensor.clone(), range);
            }
        }
        // Per-tensor linear weights: pin the clip range of the latent weights.
        for p in &self.params {
            let Some(qi) = p.quantizer else { continue };
            let q = &self.weights[qi];
            if !q.quant.scheme.is_linear() || q.quant.per_channel {
                continue;
            }
            let range = match q.manual_range() {
                Some(r) => r,
                None => {
                    let (lo, hi) = p
                        .latent
                        .iter()
                        .filter(|v| v.is_finite())
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                            (a.min(v), b.max(v))
                        });
                    (lo, hi)
                }
            };
            config.weight_ranges.insert(q.tensor.clone(), range);
        }
        Ok(config)
    }

    /// Tensors quantized to binary (sign) activations.
    pub fn binary_activations(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .hook
            .activations
            .values()
            .filter(|q| q.rule == ActivationRule::Binary)
            .map(|q| q.tensor.clone())
            .collect();
        v.sort();
        v
    }

    /// Whether `QuantizedModel::prepare` can express the configuration (no XNOR layers, no
    /// binary activations).
    pub fn is_ptq_expressible(&self) -> bool {
        self.config.xnor_layers.is_empty() && self.binary_activations().is_empty()
    }
}

/// α·sign(W) with α = mean|W| per output channel: the stored weights of an XNOR layer.
fn xnor_weights(graph: &Graph, tensor: &str, latent: &ArrayD<f32>) -> Result<TensorData> {
    let axis = graph
        .initializers
        .get(tensor)
        .and_then(|t| t.channel_axis)
        .unwrap_or(0);
    let config = crate::quant::binary::BinaryConfig {
        granularity: crate::quant::channels::Granularity::PerChannel { axis },
        scaled: true,
        mode: crate::quant::binary::Binarization::Deterministic,
    };
    let b = crate::quant::binary::binarize(latent.view(), &config)
        .map_err(|e| quant_error(tensor, e.0))?;
    Ok(TensorData::F32(
        b.dequantize().map_err(|e| quant_error(tensor, e.0))?,
    ))
}

fn add_into(target: &mut Option<ArrayD<f32>>, g: ArrayD<f32>) {
    match target {
        None => *target = Some(g),
        Some(t) => *t += &g,
    }
}

/// `head` as [samples, classes].
fn as_rows(head: ArrayD<f32>, samples: usize) -> Result<ArrayD<f32>> {
    let len = head.len();
    if samples == 0 || !len.is_multiple_of(samples) {
        return Err(Error::Graph(format!(
            "the model output of shape {:?} does not hold {samples} samples",
            head.shape()
        )));
    }
    head.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[samples, len / samples]))
        .map_err(|e| Error::Graph(e.to_string()))
}

/// The loss head: output 0, or the input of a final Softmax (the loss fuses it), or a final
/// LogSoftmax's log-probabilities.
fn find_head(tape: &TrainGraph<'_>) -> Result<Head> {
    let out = *tape
        .output_slots()
        .first()
        .ok_or_else(|| Error::Graph("the model has no output".into()))?;
    Ok(match tape.producer(out).map(|n| n.op_type.as_str()) {
        Some("Softmax") => match tape
            .producer_inputs(out)
            .and_then(|i| i.first().copied().flatten())
        {
            Some(logits) => Head::Logits(logits),
            None => Head::Logits(out),
        },
        Some("LogSoftmax") => Head::LogProbs(out),
        _ => Head::Logits(out),
    })
}

/// Index of the first largest value of each row.
pub fn predictions(head: &ArrayD<f32>, samples: usize) -> Result<Vec<usize>> {
    let rows = as_rows(head.clone(), samples)?;
    Ok(rows
        .outer_iter()
        .map(|r| argmax(r.iter().copied()))
        .collect())
}
