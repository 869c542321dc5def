//! A rewritten graph resolved to slots and kernels: the form of a [`Plan`](super::Plan) that
//! runs, one per set of tensors kept for a hook; and the nodes' execution order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::engine::ops::control::NestedPlans;
use crate::engine::ops::{self, MovingOpFn, OpFn};
use crate::engine::rewrite::{self, FusedElementwise, PlannedNode};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};

/// How a step computes.
pub(super) enum Kernel {
    Op {
        kernel: OpFn,
        /// The storage-reusing form of the kernel, if the op has one.
        moving: Option<MovingOpFn>,
    },
    Fused(Arc<FusedElementwise>),
    /// A control-flow node (If, Loop, Scan): its subgraphs' plans are the plan's `nested`
    /// entry of this node of the graph.
    Control(usize),
}

/// One node of the rewritten graph, resolved: its kernel and the slots it reads and writes.
pub(super) struct Step {
    pub(super) kernel: Kernel,
    /// Slot per input; None for omitted optional inputs.
    pub(super) inputs: Vec<Option<usize>>,
    /// Per input: whether this step is its last reader and reads it once, so that the value
    /// can be handed to the kernel (when nothing else holds it).
    pub(super) movable: Vec<bool>,
    pub(super) outputs: Vec<usize>,
    /// Per output: the producing node (index into the graph) when the hook sees it.
    pub(super) report: Vec<Option<usize>>,
    /// Slots whose last reader is this step (freed after it runs).
    pub(super) frees: Vec<usize>,
}

/// Where a constant's value is.
pub(super) enum Constant {
    /// An initializer of the graph, by name.
    Initializer(String),
    /// A value the rewrite made.
    Made(Arc<TensorData>),
}

/// A rewritten graph resolved to slots and kernels.
pub(super) struct Compiled {
    pub(super) nodes: Vec<PlannedNode>,
    pub(super) steps: Vec<Step>,
    pub(super) slot_count: usize,
    pub(super) constants: Vec<(usize, Constant)>,
    /// (slot, input index in graph.inputs, shown to the hook) for each fed input.
    pub(super) feeds: Vec<(usize, usize, bool)>,
    /// (slot, output name) for each graph output.
    pub(super) fetches: Vec<(usize, String)>,
}
/// Rewrites `graph` keeping the tensors in `keep`, and resolves the result to slots.
pub(super) fn compile(
    graph: &Graph,
    order: &[usize],
    producers: &HashMap<&str, usize>,
    nested: &HashMap<usize, NestedPlans<'_>>,
    keep: &HashSet<&str>,
) -> Result<Compiled> {
    let rewritten = rewrite::rewrite(graph, order, &|name| keep.contains(name));
    // control-flow steps, by their node of the graph; the constants they read are held shared
    let control: Vec<Option<usize>> = rewritten
        .origins
        .iter()
        .map(|origin| origin.filter(|o| nested.contains_key(o)))
        .collect();
    let read_by_control: HashSet<&str> = rewritten
        .nodes
        .iter()
        .zip(&control)
        .filter(|(_, c)| c.is_some())
        .flat_map(|(p, _)| p.node.inputs.iter().map(String::as_str))
        .collect();
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut constants = Vec::new();
    let mut feeds = Vec::new();
    let mut next_slot = 0usize;
    for (i, info) in graph.inputs.iter().enumerate() {
        slots.insert(info.name.clone(), next_slot);
        feeds.push((next_slot, i, keep.contains(info.name.as_str())));
        next_slot += 1;
    }
    // the constants that are read or fetched
    let mut wanted: Vec<&str> = rewritten
        .nodes
        .iter()
        .flat_map(|p| p.node.inputs.iter())
        .map(String::as_str)
        .collect();
    wanted.extend(graph.outputs.iter().map(|o| o.name.as_str()));
    for name in wanted {
        if name.is_empty() || slots.contains_key(name) {
            continue;
        }
        let constant = if let Some(value) = rewritten.constants.get(name) {
            Constant::Made(Arc::clone(value))
        } else if let Some(tensor) = graph.initializers.get(name) {
            if read_by_control.contains(name) {
                Constant::Made(Arc::new(tensor.data.clone()))
            } else {
                Constant::Initializer(name.to_string())
            }
        } else {
            continue;
        };
        slots.insert(name.to_string(), next_slot);
        constants.push((next_slot, constant));
        next_slot += 1;
    }

    let mut steps = Vec::with_capacity(rewritten.nodes.len());
    for (planned, control) in rewritten.nodes.iter().zip(&control) {
        let node = &planned.node;
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
        let mut report = Vec::with_capacity(node.outputs.len());
        for name in &node.outputs {
            // Outputs with empty names are unused optional outputs; they get a private slot.
            let slot = next_slot;
            next_slot += 1;
            if !name.is_empty() {
                slots.insert(name.clone(), slot);
            }
            outputs.push(slot);
            report.push(
                keep.contains(name.as_str())
                    .then(|| producers.get(name.as_str()).copied())
                    .flatten(),
            );
        }
        let kernel = match (&planned.fused, control) {
            (_, Some(origin)) => Kernel::Control(*origin),
            (Some(fused), None) => Kernel::Fused(Arc::clone(fused)),
            (None, None) => Kernel::Op {
                kernel: ops::kernel_for(node).ok_or_else(|| {
                    Error::Graph(format!(
                        "no kernel for node '{}' ({})",
                        node.name, node.op_type
                    ))
                })?,
                moving: ops::moving_kernel_for(node),
            },
        };
        steps.push(Step {
            kernel,
            movable: vec![false; inputs.len()],
            inputs,
            outputs,
            report,
            frees: Vec::new(),
        });
    }

    let mut fetches = Vec::new();
    for out in &graph.outputs {
        let slot = *slots.get(out.name.as_str()).ok_or_else(|| {
            Error::Graph(format!("graph output '{}' is never produced", out.name))
        })?;
        fetches.push((slot, out.name.clone()));
    }

    // Free every intermediate after its last reader, except graph outputs and constants.
    let mut last_reader: HashMap<usize, usize> = HashMap::new();
    for (step_index, step) in steps.iter().enumerate() {
        for slot in step.inputs.iter().flatten() {
            last_reader.insert(*slot, step_index);
        }
    }
    let kept: HashSet<usize> = fetches.iter().map(|(s, _)| *s).collect();
    let constant_slots: HashSet<usize> = constants.iter().map(|(s, _)| *s).collect();
    for (slot, step_index) in last_reader {
        if !kept.contains(&slot) && !constant_slots.contains(&slot) {
            steps[step_index].frees.push(slot);
        }
    }
    for step in &mut steps {
        for (k, slot) in step.inputs.iter().enumerate() {
            step.movable[k] = slot.is_some_and(|s| {
                step.frees.contains(&s)
                    && step.inputs.iter().filter(|i| **i == Some(s)).count() == 1
            });
        }
    }

    Ok(Compiled {
        nodes: rewritten.nodes,
        steps,
        slot_count: next_slot,
        constants,
        feeds,
        fetches,
    })
}

/// Node indices in an order where every node runs after the producers of its inputs.
/// Keeps the file's order where it is already valid. Errors on cycles.
pub(super) fn topological_order(
    graph: &Graph,
    available: &HashMap<&str, usize>,
) -> Result<Vec<usize>> {
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
