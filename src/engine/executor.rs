//! Execution plan and the run loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::buffers::recycle;
use super::hook::{TensorHook, TensorSite};
use super::ops::control::{self, NestedPlans};
use super::ops::{self, OpCtx, OpFn};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, TensorData};

/// One node, resolved: its kernel and the slots it reads and writes.
struct Step {
    node_index: usize,
    kernel: OpFn,
    /// Slot per input; None for omitted optional inputs.
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    /// Slots whose last reader is this step (freed after it runs).
    frees: Vec<usize>,
}

/// A graph prepared to run: nodes in dependency order, names resolved to slots, kernels looked
/// up. Building a plan fails (naming every unsupported op) before anything runs.
pub struct Plan<'g> {
    graph: &'g Graph,
    steps: Vec<Step>,
    slot_count: usize,
    /// (slot, value) of every initializer, shared between runs.
    constants: Vec<(usize, Arc<TensorData>)>,
    /// (slot, input index in graph.inputs) for each fed input.
    feeds: Vec<(usize, usize)>,
    /// (slot, output name) for each graph output.
    fetches: Vec<(usize, String)>,
    /// The plans of the subgraphs of control-flow nodes, by node index, built once.
    nested: HashMap<usize, NestedPlans<'g>>,
}

/// Options for one run.
#[derive(Default, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Checked between nodes; when set, the run stops with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

impl<'g> Plan<'g> {
    /// Orders and resolves `graph`. Errors name every unsupported op and any dangling tensor.
    pub fn new(graph: &'g Graph) -> Result<Self> {
        if !graph.is_runnable() {
            return Err(Error::Graph("the graph has no nodes to run".into()));
        }
        Self::build(graph)
    }

    /// The plan of a subgraph (which may have no nodes: a branch returning outer values).
    pub(crate) fn for_subgraph(graph: &'g Graph) -> Result<Self> {
        Self::build(graph)
    }

    fn build(graph: &'g Graph) -> Result<Self> {
        let unsupported: Vec<(String, String)> = graph
            .nodes_recursive()
            .into_iter()
            .filter(|n| ops::kernel_for(n).is_none())
            .map(|n| {
                let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
                    n.op_type.clone()
                } else {
                    format!("{}::{}", n.domain, n.op_type)
                };
                (op, n.name.clone())
            })
            .collect();
        if !unsupported.is_empty() {
            return Err(Error::UnsupportedOps {
                ops: unsupported,
                supported: ops::supported_ops(),
            });
        }

        let mut slots: HashMap<&str, usize> = HashMap::new();
        let mut constants = Vec::new();
        let mut feeds = Vec::new();
        let mut next_slot = 0usize;
        for (i, info) in graph.inputs.iter().enumerate() {
            let slot = next_slot;
            next_slot += 1;
            slots.insert(&info.name, slot);
            feeds.push((slot, i));
        }
        for (name, tensor) in &graph.initializers {
            if slots.contains_key(name.as_str()) {
                continue; // a fed input of the same name overrides the default
            }
            let slot = next_slot;
            next_slot += 1;
            slots.insert(name, slot);
            constants.push((slot, Arc::new(tensor.data.clone())));
        }

        let order = topological_order(graph, &slots)?;
        let mut steps = Vec::with_capacity(order.len());
        for &node_index in &order {
            let node = &graph.nodes[node_index];
            let mut inputs = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    inputs.push(None);
                    continue;
                }
                let slot = *slots.get(name.as_str()).ok_or_else(|| {
                    Error::Graph(format!(
                        "node '{}' ({}) reads '{name}', which no node, input or initializer provides",
                        node.name, node.op_type
                    ))
                })?;
                inputs.push(Some(slot));
            }
            let mut outputs = Vec::with_capacity(node.outputs.len());
            for name in &node.outputs {
                // Outputs with empty names are unused optional outputs; they get a private slot.
                let slot = next_slot;
                next_slot += 1;
                if !name.is_empty() {
                    slots.insert(name, slot);
                }
                outputs.push(slot);
            }
            let kernel = ops::kernel_for(node).ok_or_else(|| {
                Error::Graph(format!(
                    "no kernel for node '{}' ({})",
                    node.name, node.op_type
                ))
            })?;
            steps.push(Step {
                node_index,
                kernel,
                inputs,
                outputs,
                frees: Vec::new(),
            });
        }
        let slot_count = next_slot;

        let mut fetches = Vec::new();
        for out in &graph.outputs {
            let slot = *slots.get(out.name.as_str()).ok_or_else(|| {
                Error::Graph(format!("graph output '{}' is never produced", out.name))
            })?;
            fetches.push((slot, out.name.clone()));
        }

        // Free every intermediate after its last reader, except graph outputs.
        let mut last_reader: HashMap<usize, usize> = HashMap::new();
        for (step_index, step) in steps.iter().enumerate() {
            for slot in step.inputs.iter().flatten() {
                last_reader.insert(*slot, step_index);
            }
        }
        let kept: std::collections::HashSet<usize> = fetches.iter().map(|(s, _)| *s).collect();
        let constant_slots: std::collections::HashSet<usize> =
            constants.iter().map(|(s, _)| *s).collect();
        for (slot, step_index) in last_reader {
            if !kept.contains(&slot) && !constant_slots.contains(&slot) {
                steps[step_index].frees.push(slot);
            }
        }

        let mut nested = HashMap::new();
        for step in &steps {
            if let Some(plans) = control::plans_for(&graph.nodes[step.node_index])? {
                nested.insert(step.node_index, plans);
            }
        }

        Ok(Plan {
            graph,
            steps,
            slot_count,
            constants,
            feeds,
            fetches,
            nested,
        })
    }

    /// The graph this plan runs.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// Node indices (into `graph.nodes`) in execution order.
    pub fn execution_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.steps.iter().map(|s| s.node_index)
    }

    /// Runs the graph on `inputs` (by input name). Returns the graph outputs by name, in the
    /// graph's output order.
    pub fn run(
        &self,
        inputs: HashMap<String, TensorData>,
        hook: Option<&mut dyn TensorHook>,
        options: RunOptions<'_>,
    ) -> Result<Vec<(String, TensorData)>> {
        match hook {
            // Without a hook the whole run happens on a rayon worker thread: the kernels'
            // parallel loops then start as local jobs, instead of each one waking the pool and
            // blocking the calling thread until it is done. (Hooks are called on the caller's
            // thread, so hooked runs stay here.)
            None => rayon::scope(|_| self.run_here(inputs, None, options)),
            Some(hook) => self.run_here(inputs, Some(hook), options),
        }
    }

    /// [`Plan::run`] on the current thread.
    fn run_here(
        &self,
        inputs: HashMap<String, TensorData>,
        mut hook: Option<&mut dyn TensorHook>,
        options: RunOptions<'_>,
    ) -> Result<Vec<(String, TensorData)>> {
        let mut inputs = inputs;
        let mut values: Vec<Option<Arc<TensorData>>> = vec![None; self.slot_count];
        for (slot, value) in &self.constants {
            values[*slot] = Some(Arc::clone(value));
        }
        for &(slot, input_index) in &self.feeds {
            let info = &self.graph.inputs[input_index];
            let mut value = match inputs.remove(&info.name) {
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
            if let Some(h) = hook.as_deref_mut() {
                let site = TensorSite {
                    name: &info.name,
                    producer: None,
                    step: None,
                };
                h.on_tensor(site, &mut value)?;
            }
            values[slot] = Some(Arc::new(value));
        }
        if let Some(extra) = inputs.keys().next() {
            let known: Vec<&str> = self.graph.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::Input {
                name: extra.clone(),
                msg: format!("the model has no such input (inputs: {})", known.join(", ")),
            });
        }
        self.execute(values, hook, options)
    }

    /// Runs a subgraph's plan on shared values, one per input of the subgraph in order,
    /// without a hook. Returns the outputs in order.
    pub(crate) fn run_nested(
        &self,
        feeds: Vec<Arc<TensorData>>,
        options: RunOptions<'_>,
    ) -> Result<Vec<TensorData>> {
        let mut values: Vec<Option<Arc<TensorData>>> = vec![None; self.slot_count];
        for (slot, value) in &self.constants {
            values[*slot] = Some(Arc::clone(value));
        }
        if feeds.len() != self.graph.inputs.len() {
            return Err(Error::Graph(format!(
                "subgraph '{}' takes {} inputs, {} were given",
                self.graph.name,
                self.graph.inputs.len(),
                feeds.len()
            )));
        }
        let mut feeds: Vec<Option<Arc<TensorData>>> = feeds.into_iter().map(Some).collect();
        for &(slot, input_index) in &self.feeds {
            let value = feeds[input_index].take();
            if let Some(value) = &value {
                check_input(&self.graph.inputs[input_index], value)?;
            }
            values[slot] = value;
        }
        let outputs = self.execute(values, None, options)?;
        Ok(outputs.into_iter().map(|(_, value)| value).collect())
    }

    /// Runs every step on `values` (inputs and constants in their slots).
    fn execute(
        &self,
        mut values: Vec<Option<Arc<TensorData>>>,
        mut hook: Option<&mut dyn TensorHook>,
        options: RunOptions<'_>,
    ) -> Result<Vec<(String, TensorData)>> {
        for (step_index, step) in self.steps.iter().enumerate() {
            if let Some(flag) = options.cancel
                && flag.load(Ordering::Relaxed)
            {
                return Err(Error::Cancelled);
            }
            let node = &self.graph.nodes[step.node_index];
            let args: Vec<Option<&TensorData>> = step
                .inputs
                .iter()
                .map(|slot| slot.and_then(|s| values[s].as_deref()))
                .collect();
            if let Some(missing) = step
                .inputs
                .iter()
                .zip(&args)
                .position(|(slot, arg)| slot.is_some() && arg.is_none())
            {
                return Err(Error::Graph(format!(
                    "node '{}' ({}) input '{}' was freed or never computed",
                    node.name, node.op_type, node.inputs[missing]
                )));
            }
            let ctx = OpCtx {
                node,
                opset: self.graph.opset,
            };
            let outputs = match self.nested.get(&step.node_index) {
                Some(plans) => {
                    drop(args);
                    let shared: Vec<Option<Arc<TensorData>>> = step
                        .inputs
                        .iter()
                        .map(|slot| slot.and_then(|s| values[s].clone()))
                        .collect();
                    control::run(&ctx, plans, &shared, options)?
                }
                None => {
                    let outputs = (step.kernel)(&ctx, &args).map_err(|e| Error::Op {
                        node: node.name.clone(),
                        op: node.op_type.clone(),
                        msg: e.0,
                    })?;
                    drop(args);
                    outputs
                }
            };
            if outputs.len() < step.outputs.len() {
                return Err(Error::Op {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    msg: format!(
                        "produced {} outputs, the graph expects {}",
                        outputs.len(),
                        step.outputs.len()
                    ),
                });
            }
            for (k, (mut value, &slot)) in outputs.into_iter().zip(&step.outputs).enumerate() {
                if let Some(h) = hook.as_deref_mut() {
                    let site = TensorSite {
                        name: &node.outputs[k],
                        producer: Some(node),
                        step: Some(step_index),
                    };
                    h.on_tensor(site, &mut value)?;
                }
                values[slot] = Some(Arc::new(value));
            }
            for &slot in &step.frees {
                if let Some(value) = values[slot].take() {
                    recycle(value);
                }
            }
        }

        let mut results = Vec::with_capacity(self.fetches.len());
        for (slot, name) in &self.fetches {
            let value = values[*slot]
                .take()
                .ok_or_else(|| Error::Graph(format!("graph output '{name}' was not computed")))?;
            let value = Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone());
            results.push((name.clone(), value));
        }
        Ok(results)
    }
}

/// Checks a fed value against the declared input: kind, rank and every fixed dimension.
fn check_input(info: &crate::ir::ValueInfo, value: &TensorData) -> Result<()> {
    if let Some(dtype) = info.dtype
        && dtype.is_held_as_f32() != matches!(value, TensorData::F32(_))
    {
        return Err(Error::Input {
            name: info.name.clone(),
            msg: format!("expects {dtype} data, got {} data", value.kind_name()),
        });
    }
    let Some(dims) = &info.shape else {
        return Ok(());
    };
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
    Ok(())
}

/// Node indices in an order where every node runs after the producers of its inputs.
/// Keeps the file's order where it is already valid. Errors on cycles.
fn topological_order(graph: &Graph, available: &HashMap<&str, usize>) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for out in node.outputs.iter().filter(|o| !o.is_empty()) {
            if let Some(previous) = producer.insert(out.as_str(), i) {
                return Err(Error::Graph(format!(
                    "tensor '{out}' is produced by both '{}' and '{}'",
                    graph.nodes[previous].name, node.name
                )));
            }
        }
    }
    // 0 = not visited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; graph.nodes.len()];
    let mut order = Vec::with_capacity(graph.nodes.len());
    for start in 0..graph.nodes.len() {
        if state[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next input position to look at).
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some(&mut (node_index, ref mut next)) = stack.last_mut() {
            let node = &graph.nodes[node_index];
            if let Some(name) = node.inputs.get(*next) {
                *next += 1;
                if name.is_empty() || available.contains_key(name.as_str()) {
                    continue;
                }
                if let Some(&dep) = producer.get(name.as_str()) {
                    match state[dep] {
                        0 => {
                            state[dep] = 1;
                            stack.push((dep, 0));
                        }
                        1 => {
                            return Err(Error::Graph(format!(
                                "cycle through node '{}' ({})",
                                graph.nodes[dep].name, graph.nodes[dep].op_type
                            )));
                        }
                        _ => {}
                    }
                }
            } else {
                state[node_index] = 2;
                order.push(node_index);
                stack.pop();
            }
        }
    }
    Ok(order)
}
