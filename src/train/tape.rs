//! The tape: a training forward pass that keeps every value the backward pass reads, and the
//! reverse sweep.
//!
//! [`TrainGraph`] resolves a graph once: nodes in the executor's order ([`Plan`]), tensor
//! names to slots, each node's forward kernel ([`kernel_for`]) and backward kernel
//! ([`grad_for`]). [`TrainGraph::forward`] runs the forward kernels in that order and keeps all
//! values (graph inputs, parameters, every node output) in a [`Tape`]; a [`TapeHook`] sees every
//! produced value and may replace it (fake quantization of activations) and may replace whole
//! layers ([`Layer`]: XNOR layers). [`TrainGraph::backward`] walks the nodes in reverse, hands
//! each slot's finished gradient to the hook (the straight-through estimator of a quantized
//! activation) before it flows into the slot's producer, and returns the gradients of the slots
//! asked for (the trainable parameters).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::ArrayD;

use crate::engine::Plan;
use crate::engine::grad::{
    GradCtx, GradFn, Grads, NON_DIFFERENTIABLE_OPS, differentiable_ops, grad_for,
};
use crate::engine::ops::{OpCtx, OpError, OpFn, kernel_for};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, Node, TensorData};

/// A node's forward and backward replaced as one unit (an XNOR layer computes its output from
/// binarized operands and scales that the plain kernels do not know).
pub trait Layer: Send + Sync {
    /// The node's outputs from its inputs (in node order).
    fn forward(
        &self,
        ctx: &OpCtx<'_>,
        inputs: &[Option<&TensorData>],
    ) -> std::result::Result<Vec<TensorData>, OpError>;
    /// The gradients of the node's inputs, as a backward kernel returns them.
    fn backward(
        &self,
        ctx: &GradCtx<'_>,
        inputs: &[Option<&TensorData>],
        outputs: &[&TensorData],
        grads: &[Option<&ArrayD<f32>>],
    ) -> std::result::Result<Grads, OpError>;
}

/// What a training run does to values and gradients as they pass.
pub trait TapeHook {
    /// A graph input or node output was produced (forward); it may be replaced in place, and
    /// consumers then see the replacement.
    fn forward_value(&mut self, _slot: usize, _value: &mut TensorData) -> Result<()> {
        Ok(())
    }
    /// The gradient of a produced value is complete (backward), before it flows into the
    /// value's producer; it may be changed in place (the STE mask of a quantized activation).
    fn backward_value(&mut self, _slot: usize, _grad: &mut ArrayD<f32>) -> Result<()> {
        Ok(())
    }
    /// A replacement of node `node_index` (index into `graph.nodes`), if any.
    fn layer(&self, _node_index: usize) -> Option<&dyn Layer> {
        None
    }
}

/// A hook that changes nothing.
pub struct NoHook;
impl TapeHook for NoHook {}

/// One node, resolved.
struct Step {
    node_index: usize,
    kernel: OpFn,
    backward: Option<GradFn>,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
}

/// A graph resolved for training: slots, order, kernels.
pub struct TrainGraph<'g> {
    graph: &'g Graph,
    steps: Vec<Step>,
    names: Vec<String>,
    slots: HashMap<String, usize>,
    constants: Vec<(usize, Arc<TensorData>)>,
    /// (slot, index in graph.inputs) of each fed input.
    feeds: Vec<(usize, usize)>,
    /// Slot of each graph output.
    fetches: Vec<usize>,
    /// Which step produces each slot (None for inputs and initializers).
    producer: Vec<Option<usize>>,
}

/// The values of one forward pass, by slot.
pub struct Tape {
    values: Vec<Option<Arc<TensorData>>>,
}

impl Tape {
    /// The value in `slot`, if it was computed.
    pub fn value(&self, slot: usize) -> Option<&TensorData> {
        self.values.get(slot).and_then(|v| v.as_deref())
    }
}

impl<'g> TrainGraph<'g> {
    /// Resolves `graph` (the executor's order and checks; errors name unsupported ops).
    pub fn new(graph: &'g Graph) -> Result<Self> {
        let plan = Plan::new(graph)?;
        let order: Vec<usize> = plan.execution_order().collect();
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut names = Vec::new();
        let mut constants = Vec::new();
        let mut feeds = Vec::new();
        let new_slot = |name: &str, names: &mut Vec<String>| {
            names.push(name.to_string());
            names.len() - 1
        };
        for (i, info) in graph.inputs.iter().enumerate() {
            let slot = new_slot(&info.name, &mut names);
            slots.insert(info.name.clone(), slot);
            feeds.push((slot, i));
        }
        for (name, tensor) in &graph.initializers {
            if slots.contains_key(name) {
                continue;
            }
            let slot = new_slot(name, &mut names);
            slots.insert(name.clone(), slot);
            constants.push((slot, Arc::new(tensor.data.clone())));
        }
        let mut steps = Vec::with_capacity(order.len());
        for &node_index in &order {
            let node = &graph.nodes[node_index];
            let inputs = node
                .inputs
                .iter()
                .map(|name| {
                    if name.is_empty() {
                        return Ok(None);
                    }
                    slots.get(name).copied().map(Some).ok_or_else(|| {
                        Error::Graph(format!(
                            "node '{}' ({}) reads '{name}', which nothing provides",
                            node.name, node.op_type
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let outputs = node
                .outputs
                .iter()
                .map(|name| {
                    let slot = new_slot(name, &mut names);
                    if !name.is_empty() {
                        slots.insert(name.clone(), slot);
                    }
                    slot
                })
                .collect();
            let kernel = kernel_for(node).ok_or_else(|| {
                Error::Graph(format!(
                    "no kernel for node '{}' ({})",
                    node.name, node.op_type
                ))
            })?;
            steps.push(Step {
                node_index,
                kernel,
                backward: grad_for(node),
                inputs,
                outputs,
            });
        }
        let fetches = graph
            .outputs
            .iter()
            .map(|o| {
                slots.get(&o.name).copied().ok_or_else(|| {
                    Error::Graph(format!("graph output '{}' is never produced", o.name))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut producer = vec![None; names.len()];
        for (s, step) in steps.iter().enumerate() {
            for &slot in &step.outputs {
                producer[slot] = Some(s);
            }
        }
        Ok(TrainGraph {
            graph,
            steps,
            names,
            slots,
            constants,
            feeds,
            fetches,
            producer,
        })
    }

    /// The graph.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// Number of slots.
    pub fn slot_count(&self) -> usize {
        self.names.len()
    }

    /// The slot of a tensor name.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.slots.get(name).copied()
    }

    /// The tensor name of a slot.
    pub fn name(&self, slot: usize) -> &str {
        &self.names[slot]
    }

    /// Slots of the graph outputs, in order.
    pub fn output_slots(&self) -> &[usize] {
        &self.fetches
    }

    /// The node producing `slot` (None for inputs and initializers).
    pub fn producer(&self, slot: usize) -> Option<&'g Node> {
        self.producer
            .get(slot)
            .copied()
            .flatten()
            .map(|s| &self.graph.nodes[self.steps[s].node_index])
    }

    /// Input slots of the node producing `slot`.
    pub fn producer_inputs(&self, slot: usize) -> Option<&[Option<usize>]> {
        self.producer
            .get(slot)
            .copied()
            .flatten()
            .map(|s| self.steps[s].inputs.as_slice())
    }

    /// Which slots carry a gradient when the slots in `sources` are trained: a node output
    /// does when any input does, except outputs of ops that never pass gradients. Errors name
    /// every node on such a path without a backward kernel (unless `hook` replaces it).
    pub fn gradient_slots(&self, sources: &[usize], hook: &dyn TapeHook) -> Result<Vec<bool>> {
        let mut needs = vec![false; self.slot_count()];
        for &s in sources {
            needs[s] = true;
        }
        let mut missing: Vec<(String, String)> = Vec::new();
        for step in &self.steps {
            let node = &self.graph.nodes[step.node_index];
            if NON_DIFFERENTIABLE_OPS.contains(&node.op_type.as_str()) {
                continue;
            }
            if step.inputs.iter().flatten().any(|&s| needs[s]) {
                if step.backward.is_none() && hook.layer(step.node_index).is_none() {
                    missing.push((node.op_type.clone(), node.name.clone()));
                }
                for &o in &step.outputs {
                    needs[o] = true;
                }
            }
        }
        if !missing.is_empty() {
            let listed: Vec<String> = missing
                .iter()
                .map(|(op, node)| format!("{op} ('{node}')"))
                .collect();
            return Err(Error::Graph(format!(
                "cannot train through {}: no backward kernel. Ops with one: {}",
                listed.join(", "),
                differentiable_ops().join(", ")
            )));
        }
        Ok(needs)
    }

    /// Runs the forward pass on `feeds` (by input name) with the slots in `overrides` replaced
    /// (quantized or latent weights), keeping every value.
    pub fn forward(
        &self,
        feeds: HashMap<String, TensorData>,
        overrides: &[(usize, Arc<TensorData>)],
        hook: &mut dyn TapeHook,
        cancel: Option<&AtomicBool>,
    ) -> Result<Tape> {
        let mut feeds = feeds;
        let mut values: Vec<Option<Arc<TensorData>>> = vec![None; self.slot_count()];
        for (slot, value) in &self.constants {
            values[*slot] = Some(Arc::clone(value));
        }
        for (slot, value) in overrides {
            values[*slot] = Some(Arc::clone(value));
        }
        for &(slot, index) in &self.feeds {
            let info = &self.graph.inputs[index];
            let mut value = match feeds.remove(&info.name) {
                Some(v) => v,
                None => match self.graph.initializers.get(&info.name) {
                    Some(t) => t.data.clone(),
                    None => {
                        return Err(Error::Input {
                            name: info.name.clone(),
                            msg: "no data given for this model input".into(),
                        });
                    }
                },
            };
            check_input(info, &value)?;
            hook.forward_value(slot, &mut value)?;
            values[slot] = Some(Arc::new(value));
        }
        if let Some(extra) = feeds.keys().next() {
            return Err(Error::Input {
                name: extra.clone(),
                msg: "the model has no such input".into(),
            });
        }
        for step in &self.steps {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let node = &self.graph.nodes[step.node_index];
            let args = self.args(step, &values, node)?;
            let ctx = OpCtx {
                node,
                opset: self.graph.opset,
            };
            let outputs = match hook.layer(step.node_index) {
                Some(layer) => layer.forward(&ctx, &args),
                None => (step.kernel)(&ctx, &args),
            }
            .map_err(|e| op_error(node, e))?;
            drop(args);
            if outputs.len() < step.outputs.len() {
                return Err(op_error(
                    node,
                    OpError(format!(
                        "produced {} outputs, the graph expects {}",
                        outputs.len(),
                        step.outputs.len()
                    )),
                ));
            }
            for (mut value, &slot) in outputs.into_iter().zip(&step.outputs) {
                hook.forward_value(slot, &mut value)?;
                values[slot] = Some(Arc::new(value));
            }
        }
        Ok(Tape { values })
    }

    fn args<'v>(
        &self,
        step: &Step,
        values: &'v [Option<Arc<TensorData>>],
        node: &Node,
    ) -> Result<Vec<Option<&'v TensorData>>> {
        step.inputs
            .iter()
            .enumerate()
            .map(|(i, slot)| match slot {
                None => Ok(None),
                Some(s) => values[*s].as_deref().map(Some).ok_or_else(|| {
                    Error::Graph(format!(
                        "node '{}' ({}) input '{}' was never computed",
                        node.name, node.op_type, node.inputs[i]
                    ))
                }),
            })
            .collect()
    }

    /// The reverse sweep from `seeds` (gradients of output-side slots), through the slots in
    /// `needs` (from [`TrainGraph::gradient_slots`]). Returns the gradient of every slot in
    /// `wanted` that received one.
    pub fn backward(
        &self,
        tape: &Tape,
        seeds: Vec<(usize, ArrayD<f32>)>,
        needs: &[bool],
        wanted: &[usize],
        hook: &mut dyn TapeHook,
    ) -> Result<HashMap<usize, ArrayD<f32>>> {
        let mut grads: Vec<Option<ArrayD<f32>>> = vec![None; self.slot_count()];
        for (slot, g) in seeds {
            accumulate(&mut grads[slot], g, &self.names[slot])?;
        }
        for step in self.steps.iter().rev() {
            let node = &self.graph.nodes[step.node_index];
            let mut out_grads: Vec<Option<ArrayD<f32>>> = Vec::with_capacity(step.outputs.len());
            for &slot in &step.outputs {
                let mut g = grads[slot].take();
                if let Some(g) = g.as_mut() {
                    hook.backward_value(slot, g)?;
                }
                out_grads.push(g);
            }
            if out_grads.iter().all(Option::is_none) {
                continue;
            }
            let wanted_inputs: Vec<bool> = step
                .inputs
                .iter()
                .map(|s| s.is_some_and(|s| needs[s]))
                .collect();
            if !wanted_inputs.iter().any(|&w| w) {
                continue;
            }
            let args = self.args(step, &tape.values, node)?;
            let outputs: Vec<&TensorData> = step
                .outputs
                .iter()
                .map(|&s| {
                    tape.values[s].as_deref().ok_or_else(|| {
                        Error::Graph(format!("output of '{}' was never computed", node.name))
                    })
                })
                .collect::<Result<_>>()?;
            let upstream: Vec<Option<&ArrayD<f32>>> =
                out_grads.iter().map(Option::as_ref).collect();
            let ctx = GradCtx {
                node,
                opset: self.graph.opset,
                wanted: &wanted_inputs,
            };
            let input_grads = match (hook.layer(step.node_index), step.backward) {
                (Some(layer), _) => layer.backward(&ctx, &args, &outputs, &upstream),
                (None, Some(backward)) => backward(&ctx, &args, &outputs, &upstream),
                (None, None) => Err(OpError(format!("{} has no backward kernel", node.op_type))),
            }
            .map_err(|e| op_error(node, e))?;
            for ((slot, g), want) in step.inputs.iter().zip(input_grads).zip(&wanted_inputs) {
                if let (Some(slot), Some(g), true) = (slot, g, want) {
                    let shape = args_shape(&tape.values, *slot);
                    if shape.as_deref() != Some(g.shape()) {
                        return Err(op_error(
                            node,
                            OpError(format!(
                                "backward gave '{}' a gradient of shape {:?}, the value has {:?}",
                                self.names[*slot],
                                g.shape(),
                                shape
                            )),
                        ));
                    }
                    accumulate(&mut grads[*slot], g, &self.names[*slot])?;
                }
            }
        }
        Ok(wanted
            .iter()
            .filter_map(|&s| grads[s].take().map(|g| (s, g)))
            .collect())
    }
}

fn args_shape(values: &[Option<Arc<TensorData>>], slot: usize) -> Option<Vec<usize>> {
    values[slot].as_deref().map(|v| v.shape().to_vec())
}

fn accumulate(target: &mut Option<ArrayD<f32>>, g: ArrayD<f32>, name: &str) -> Result<()> {
    match target {
        None => *target = Some(g),
        Some(t) => {
            if t.shape() != g.shape() {
                return Err(Error::Graph(format!(
                    "gradients of '{name}' with shapes {:?} and {:?}",
                    t.shape(),
                    g.shape()
                )));
            }
            *t += &g;
        }
    }
    Ok(())
}

fn op_error(node: &Node, e: OpError) -> Error {
    Error::Op {
        node: node.name.clone(),
        op: node.op_type.clone(),
        msg: e.0,
    }
}

/// A fed value against the declared input: kind, rank and fixed dimensions.
fn check_input(info: &crate::ir::ValueInfo, value: &TensorData) -> Result<()> {
    if let Some(dtype) = info.dtype
        && dtype.is_held_as_f32() != matches!(value, TensorData::F32(_))
    {
        return Err(Error::Input {
            name: info.name.clone(),
            msg: format!("expects {dtype} data, got {} data", value.kind_name()),
        });
    }
    if let Some(dims) = &info.shape {
        let shape = value.shape();
        let fits = dims.len() == shape.len()
            && dims.iter().zip(shape).all(|(d, &n)| match d {
                Dim::Fixed(f) => *f == n,
                _ => true,
            });
        if !fits {
            return Err(Error::Input {
                name: info.name.clone(),
                msg: format!("expects shape {}, got {:?}", info.shape_text(), shape),
            });
        }
    }
    Ok(())
}
