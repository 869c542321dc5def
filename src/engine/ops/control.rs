//! Control flow: If, Loop and Scan (opset 9+ semantics), each running its subgraphs through
//! their own [`Plan`], built once when the enclosing plan is built and reused for every call and
//! iteration.
//!
//! A subgraph's inputs are the operator's formal inputs followed by its captures (the outer
//! values it reads, see [`crate::ir::Subgraph`]); the node binds the captures as extra inputs,
//! so the values arrive here like any other input and are handed to the subgraph shared, not
//! copied.

use std::sync::Arc;

use ndarray::{ArrayD, ArrayViewD, Axis};

use super::{OpCtx, OpResult, Registry, normalize_axis};
use crate::engine::executor::{Plan, RunOptions};
use crate::error::{Error, Result};
use crate::ir::{Node, Subgraph, TensorData};

/// The operators with subgraphs this module runs.
const CONTROL_OPS: [&str; 3] = ["If", "Loop", "Scan"];

/// Registers the control-flow ops, so plans accept them; the executor runs them through
/// [`run`], never through the registered kernel.
pub(super) fn register(registry: &mut Registry) {
    for op in CONTROL_OPS {
        registry.add(op, outside_a_plan);
    }
}

/// The registered kernel: control flow needs its subgraphs' plans, which only a plan has.
fn outside_a_plan(ctx: &OpCtx<'_>, _: &[Option<&TensorData>]) -> OpResult {
    Err(format!(
        "{} runs its subgraphs through the plan of the graph holding it, not as a lone kernel",
        ctx.node.op_type
    )
    .into())
}

/// The plans of one control-flow node's subgraphs.
pub(crate) struct NestedPlans<'g> {
    /// (attribute, subgraph, plan, where each of the subgraph's captures is in `captured`),
    /// in attribute-name order.
    plans: Vec<(&'g str, &'g Subgraph, Plan<'g>, Vec<Option<usize>>)>,
    /// The node's captured names (see [`Node::captured_names`]).
    captured: Vec<&'g str>,
}

impl<'g> NestedPlans<'g> {
    fn get(&self, attr: &str) -> Option<(&'g Subgraph, &Plan<'g>, &[Option<usize>])> {
        self.plans
            .iter()
            .find(|(name, ..)| *name == attr)
            .map(|(_, sub, plan, sources)| (*sub, plan, sources.as_slice()))
    }
}

fn node_error(node: &Node, msg: impl Into<String>) -> Error {
    Error::Op {
        node: node.name.clone(),
        op: node.op_type.clone(),
        msg: msg.into(),
    }
}

/// The subgraph plans of `node` when it is a control-flow node (None otherwise). Errors name
/// the node and the subgraph.
pub(crate) fn plans_for(node: &Node) -> Result<Option<NestedPlans<'_>>> {
    if !node.in_default_domain() || !CONTROL_OPS.contains(&node.op_type.as_str()) {
        return Ok(None);
    }
    let required: &[&str] = match node.op_type.as_str() {
        "If" => &["then_branch", "else_branch"],
        _ => &["body"],
    };
    for attr in required {
        node.attr_graph(attr)
            .map_err(|msg| node_error(node, msg))?
            .ok_or_else(|| node_error(node, format!("has no '{attr}' subgraph")))?;
    }
    let captured = node.captured_names();
    let mut plans = Vec::new();
    for (attr, sub) in node.subgraphs() {
        let plan = Plan::for_subgraph(&sub.graph).map_err(|e| match e {
            Error::UnsupportedOps { .. } | Error::Op { .. } => e,
            other => node_error(node, format!("subgraph '{attr}': {other}")),
        })?;
        // Resolved once here rather than by name on every run.
        let sources = sub
            .captured()
            .iter()
            .map(|info| captured.iter().position(|c| *c == info.name))
            .collect();
        plans.push((attr, sub, plan, sources));
    }
    Ok(Some(NestedPlans { plans, captured }))
}

/// Runs control-flow node `ctx.node` on its inputs (formal inputs, then the values bound to its
/// subgraphs' captures).
pub(crate) fn run(
    ctx: &OpCtx<'_>,
    plans: &NestedPlans<'_>,
    inputs: &[Option<Arc<TensorData>>],
    options: RunOptions<'_>,
) -> Result<Vec<TensorData>> {
    let node = ctx.node;
    let formal = inputs.len().saturating_sub(plans.captured.len());
    let call = Call {
        node,
        plans,
        formal: &inputs[..formal],
        captured: &inputs[formal..],
        options,
    };
    let outputs = match node.op_type.as_str() {
        "If" => call.run_if(),
        "Loop" => call.run_loop(),
        "Scan" if ctx.opset < 9 => Err(node_error(
            node,
            format!(
                "Scan of opset {} (batched, with sequence_lens) is not supported; opset 9 and newer are",
                ctx.opset
            ),
        )),
        "Scan" => call.run_scan(),
        other => Err(node_error(
            node,
            format!("{other} is not a control-flow op"),
        )),
    }?;
    if outputs.len() < node.outputs.len() {
        return Err(node_error(
            node,
            format!(
                "produced {} outputs, the node has {}",
                outputs.len(),
                node.outputs.len()
            ),
        ));
    }
    Ok(outputs)
}

/// One execution of a control-flow node.
struct Call<'a, 'g> {
    node: &'a Node,
    plans: &'a NestedPlans<'g>,
    formal: &'a [Option<Arc<TensorData>>],
    captured: &'a [Option<Arc<TensorData>>],
    options: RunOptions<'a>,
}

impl Call<'_, '_> {
    fn error(&self, msg: impl Into<String>) -> Error {
        node_error(self.node, msg)
    }

    fn plan(&self, attr: &str) -> Result<(&Subgraph, &Plan<'_>, &[Option<usize>])> {
        self.plans
            .get(attr)
            .ok_or_else(|| self.error(format!("has no '{attr}' subgraph")))
    }

    fn formal_input(&self, i: usize) -> Option<&Arc<TensorData>> {
        self.formal.get(i).and_then(Option::as_ref)
    }

    /// Runs subgraph `attr` with `bound` as its formal inputs and the node's captured values.
    fn run_subgraph(&self, attr: &str, bound: Vec<Arc<TensorData>>) -> Result<Vec<TensorData>> {
        let (sub, plan, sources) = self.plan(attr)?;
        if bound.len() != sub.formal_inputs {
            return Err(self.error(format!(
                "subgraph '{attr}' takes {} inputs, the node gives it {}",
                sub.formal_inputs,
                bound.len()
            )));
        }
        let mut feeds = bound;
        for (info, source) in sub.captured().iter().zip(sources) {
            let value = source
                .and_then(|k| self.captured.get(k))
                .and_then(Option::as_ref)
                .ok_or_else(|| {
                    self.error(format!(
                        "subgraph '{attr}' reads '{}' from the enclosing graph, which is not available",
                        info.name
                    ))
                })?;
            feeds.push(Arc::clone(value));
        }
        let outputs = plan.run_nested(feeds, self.options)?;
        if outputs.len() != plan.graph().outputs.len() {
            return Err(self.error(format!("subgraph '{attr}' returned too few outputs")));
        }
        Ok(outputs)
    }

    fn run_if(&self) -> Result<Vec<TensorData>> {
        let cond = self
            .formal_input(0)
            .ok_or_else(|| self.error("missing the condition input"))?;
        let branch = if truth(cond).map_err(|m| self.error(format!("condition {m}")))? {
            "then_branch"
        } else {
            "else_branch"
        };
        let outputs = self.run_subgraph(branch, Vec::new())?;
        if outputs.len() != self.node.outputs.len() {
            return Err(self.error(format!(
                "'{branch}' returns {} values, the node has {} outputs",
                outputs.len(),
                self.node.outputs.len()
            )));
        }
        Ok(outputs)
    }

    fn run_loop(&self) -> Result<Vec<TensorData>> {
        let trip_count = match self.formal_input(0) {
            Some(m) => Some(scalar_i64(m).map_err(|e| self.error(format!("trip count {e}")))?),
            None => None,
        };
        let mut cond = match self.formal_input(1) {
            Some(c) => truth(c).map_err(|e| self.error(format!("condition {e}")))?,
            None => true,
        };
        if trip_count.is_none() && self.formal_input(1).is_none() {
            return Err(
                self.error("has neither a trip count nor a condition, so it would never end")
            );
        }
        let carried_count = self.formal.len().saturating_sub(2);
        let mut carried = Vec::with_capacity(carried_count);
        for i in 0..carried_count {
            let value = self
                .formal_input(2 + i)
                .ok_or_else(|| self.error(format!("loop-carried input {} is missing", 2 + i)))?;
            carried.push(Arc::clone(value));
        }
        let scan_count = self.node.outputs.len().saturating_sub(carried_count);
        let mut scans: Vec<Vec<TensorData>> = vec![Vec::new(); scan_count];
        let mut iteration = 0i64;
        while cond && trip_count.is_none_or(|m| iteration < m) {
            let mut bound = Vec::with_capacity(2 + carried_count);
            bound.push(Arc::new(TensorData::I64(ArrayD::from_elem(
                ndarray::IxDyn(&[]),
                iteration,
            ))));
            bound.push(Arc::new(TensorData::I64(ArrayD::from_elem(
                ndarray::IxDyn(&[]),
                1,
            ))));
            bound.extend(carried.iter().cloned());
            let outputs = self.run_subgraph("body", bound)?;
            if outputs.len() != 1 + carried_count + scan_count {
                return Err(self.error(format!(
                    "the body returns {} values; with {carried_count} loop-carried values and {scan_count} scan outputs it should return {}",
                    outputs.len(),
                    1 + carried_count + scan_count
                )));
            }
            let mut outputs = outputs.into_iter();
            if let Some(c) = outputs.next() {
                cond = truth(&c).map_err(|e| self.error(format!("body condition {e}")))?;
            }
            carried = outputs.by_ref().take(carried_count).map(Arc::new).collect();
            for (k, value) in outputs.enumerate() {
                scans[k].push(value);
            }
            iteration += 1;
        }
        let mut results: Vec<TensorData> = carried
            .into_iter()
            .map(|v| Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone()))
            .collect();
        let (body, ..) = self.plan("body")?;
        for (k, values) in scans.into_iter().enumerate() {
            let declared = body.graph.outputs.get(1 + carried_count + k);
            let stacked = stack(&values, 0, declared)
                .map_err(|e| self.error(format!("scan output {k}: {e}")))?;
            results.push(stacked);
        }
        Ok(results)
    }

    fn run_scan(&self) -> Result<Vec<TensorData>> {
        let node = self.node;
        let scan_inputs = node
            .attr_int("num_scan_inputs", -1)
            .map_err(|e| self.error(e))?;
        let scan_inputs = usize::try_from(scan_inputs)
            .ok()
            .filter(|&m| m >= 1 && m <= self.formal.len())
            .ok_or_else(|| {
                self.error(format!(
                    "num_scan_inputs must be between 1 and the number of inputs ({}), got {scan_inputs}",
                    self.formal.len()
                ))
            })?;
        let state_count = self.formal.len() - scan_inputs;
        let scan_outputs = node.outputs.len().saturating_sub(state_count);
        let list = |name: &str, len: usize| -> Result<Vec<i64>> {
            let values = node
                .attr_ints(name)
                .map_err(|e| self.error(e))?
                .unwrap_or_else(|| vec![0; len]);
            if values.len() != len {
                return Err(self.error(format!(
                    "'{name}' has {} entries, there are {len}",
                    values.len()
                )));
            }
            Ok(values)
        };
        let input_axes = list("scan_input_axes", scan_inputs)?;
        let input_directions = list("scan_input_directions", scan_inputs)?;
        let output_axes = list("scan_output_axes", scan_outputs)?;
        let output_directions = list("scan_output_directions", scan_outputs)?;

        let mut states = Vec::with_capacity(state_count);
        for i in 0..state_count {
            let value = self
                .formal_input(i)
                .ok_or_else(|| self.error(format!("initial state {i} is missing")))?;
            states.push(Arc::clone(value));
        }
        let mut sequences = Vec::with_capacity(scan_inputs);
        let mut length = None;
        for j in 0..scan_inputs {
            let value = self
                .formal_input(state_count + j)
                .ok_or_else(|| self.error(format!("scan input {j} is missing")))?;
            let axis = normalize_axis(input_axes[j], value.shape().len())
                .map_err(|e| self.error(format!("scan input {j}: {}", e.0)))?;
            let len = value.shape()[axis];
            if length.is_some_and(|l| l != len) {
                return Err(self.error(format!(
                    "scan inputs have different lengths ({} and {len})",
                    length.unwrap_or_default()
                )));
            }
            length = Some(len);
            sequences.push((value, axis, input_directions[j] != 0));
        }
        let length = length.unwrap_or(0);
        let mut scans: Vec<Vec<TensorData>> = vec![Vec::new(); scan_outputs];
        for t in 0..length {
            let mut bound = states.clone();
            for (value, axis, reverse) in &sequences {
                let index = if *reverse { length - 1 - t } else { t };
                bound.push(Arc::new(slice_at(value, *axis, index)));
            }
            let outputs = self.run_subgraph("body", bound)?;
            if outputs.len() != state_count + scan_outputs {
                return Err(self.error(format!(
                    "the body returns {} values; with {state_count} states and {scan_outputs} scan outputs it should return {}",
                    outputs.len(),
                    state_count + scan_outputs
                )));
            }
            let mut outputs = outputs.into_iter();
            states = outputs.by_ref().take(state_count).map(Arc::new).collect();
            for (k, value) in outputs.enumerate() {
                scans[k].push(value);
            }
        }
        let mut results: Vec<TensorData> = states
            .into_iter()
            .map(|v| Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone()))
            .collect();
        let (body, ..) = self.plan("body")?;
        for (k, mut values) in scans.into_iter().enumerate() {
            if output_directions[k] != 0 {
                values.reverse();
            }
            let rank = values.first().map_or(0, |v| v.shape().len());
            let axis = normalize_axis(output_axes[k], rank + 1)
                .map_err(|e| self.error(format!("scan output {k}: {}", e.0)))?;
            let declared = body.graph.outputs.get(state_count + k);
            let stacked = stack(&values, axis, declared)
                .map_err(|e| self.error(format!("scan output {k}: {e}")))?;
            results.push(stacked);
        }
        Ok(results)
    }
}

/// The truth of a one-element condition tensor.
fn truth(value: &TensorData) -> std::result::Result<bool, String> {
    if value.len() != 1 {
        return Err(format!(
            "must hold one value, it has shape {:?}",
            value.shape()
        ));
    }
    Ok(match value {
        TensorData::I64(a) => a.iter().next().is_some_and(|&v| v != 0),
        TensorData::F32(a) => a.iter().next().is_some_and(|&v| v != 0.0),
    })
}

/// A one-element integer tensor's value.
fn scalar_i64(value: &TensorData) -> std::result::Result<i64, String> {
    match value {
        TensorData::I64(a) if a.len() == 1 => Ok(a.iter().next().copied().unwrap_or_default()),
        _ => Err(format!(
            "must be one integer, got a {} tensor of shape {:?}",
            value.kind_name(),
            value.shape()
        )),
    }
}

/// `value` at `index` along `axis`, that axis removed.
fn slice_at(value: &TensorData, axis: usize, index: usize) -> TensorData {
    match value {
        TensorData::F32(a) => TensorData::F32(a.index_axis(Axis(axis), index).to_owned()),
        TensorData::I64(a) => TensorData::I64(a.index_axis(Axis(axis), index).to_owned()),
    }
}

/// The per-iteration values stacked along a new `axis`. With no iteration, an empty tensor
/// whose other dimensions come from the body's declared output where it fixes them.
fn stack(
    values: &[TensorData],
    axis: usize,
    declared: Option<&crate::ir::ValueInfo>,
) -> std::result::Result<TensorData, String> {
    let Some(first) = values.first() else {
        let mut shape = vec![0usize];
        if let Some(dims) = declared.and_then(|d| d.shape.as_ref()) {
            for d in dims {
                match d {
                    crate::ir::Dim::Fixed(n) => shape.push(*n),
                    _ => return Ok(empty_like(declared, &[0])),
                }
            }
        }
        return Ok(empty_like(declared, &shape));
    };
    if let Some(other) = values.iter().find(|v| v.shape() != first.shape()) {
        return Err(format!(
            "iterations return different shapes ({:?} and {:?})",
            first.shape(),
            other.shape()
        ));
    }
    let stacked = match first {
        TensorData::F32(_) => {
            let views: Vec<ArrayViewD<f32>> = values
                .iter()
                .map(|v| v.as_f32().map(|a| a.view()))
                .collect::<Option<_>>()
                .ok_or("iterations return different element types")?;
            TensorData::F32(ndarray::stack(Axis(axis), &views).map_err(|e| e.to_string())?)
        }
        TensorData::I64(_) => {
            let views: Vec<ArrayViewD<i64>> = values
                .iter()
                .map(|v| v.as_i64().map(|a| a.view()))
                .collect::<Option<_>>()
                .ok_or("iterations return different element types")?;
            TensorData::I64(ndarray::stack(Axis(axis), &views).map_err(|e| e.to_string())?)
        }
    };
    Ok(stacked)
}

/// An empty tensor of `shape` of the declared element type (float when not declared).
fn empty_like(declared: Option<&crate::ir::ValueInfo>, shape: &[usize]) -> TensorData {
    let dims = ndarray::IxDyn(shape);
    match declared.and_then(|d| d.dtype) {
        Some(dtype) if !dtype.is_held_as_f32() => TensorData::I64(ArrayD::zeros(dims)),
        _ => TensorData::F32(ArrayD::zeros(dims)),
    }
}

#[cfg(test)]
mod tests;
