//! Closing subgraphs over their outer scope, once, right after loading.
//!
//! ONNX subgraphs (If's branches, Loop's and Scan's body) may read any value of the graphs
//! around them by name and may hold initializers and `Constant` weights of their own. After
//! [`close_subgraphs`]:
//!
//! - every subgraph initializer lives in the top graph's initializers under a name that says
//!   where it came from (`<node>/<attribute>/<name>`, nested paths joined the same way), and the
//!   subgraph reads it as an outer-scope value. So every consumer of initializers (summary,
//!   roles, weight views, quantization, export) sees the weights of every branch and body as
//!   ordinary parameters, and quantizing one replaces the value every subgraph reads;
//! - every value a subgraph reads from outside is one of its inputs (after the operator's own,
//!   see [`Subgraph`]), and the node holding the subgraph binds it as an extra input. Kernels
//!   stay functions of their inputs and the executor orders, frees and checks outer values like
//!   any other input.

use std::collections::{BTreeMap, HashSet};

use super::graph::{Graph, Node, Subgraph, ValueInfo};
use super::tensor::Tensor;

mod sink;
pub use sink::sink_constants;

/// Hoists subgraph initializers into `graph` (the top graph) and lifts every outer-scope read
/// of every subgraph, at any depth, to explicit inputs (see the module docs).
pub fn close_subgraphs(graph: &mut Graph) {
    if !graph.has_subgraphs() {
        return;
    }
    let mut taken = HashSet::new();
    collect_names(graph, &mut taken);
    let mut hoisted = BTreeMap::new();
    close_nodes(&mut graph.nodes, "", &mut hoisted, &mut taken);
    for (name, tensor) in hoisted {
        graph.initializers.insert(name, tensor);
    }
    declare_captures(&mut graph.nodes, &graph.initializers);
}

/// Every value and node name of `graph` and its subgraphs.
fn collect_names(graph: &Graph, taken: &mut HashSet<String>) {
    taken.extend(graph.initializers.keys().cloned());
    taken.extend(graph.inputs.iter().map(|v| v.name.clone()));
    taken.extend(graph.outputs.iter().map(|v| v.name.clone()));
    for node in &graph.nodes {
        taken.insert(node.name.clone());
        taken.extend(node.inputs.iter().cloned());
        taken.extend(node.outputs.iter().cloned());
        for (_, sub) in node.subgraphs() {
            collect_names(&sub.graph, taken);
        }
    }
}

/// Closes the subgraphs of `nodes`, whose graph sits at `prefix` (empty for the top graph).
fn close_nodes(
    nodes: &mut [Node],
    prefix: &str,
    hoisted: &mut BTreeMap<String, Tensor>,
    taken: &mut HashSet<String>,
) {
    for node in nodes.iter_mut() {
        if !node.has_subgraphs() {
            continue;
        }
        let node_name = node.name.clone();
        let mut index_in_attr: BTreeMap<String, usize> = BTreeMap::new();
        for (attr, sub) in node.subgraphs_mut() {
            let k = index_in_attr.entry(attr.to_string()).or_insert(0);
            let place = if *k == 0 {
                format!("{prefix}{node_name}/{attr}/")
            } else {
                format!("{prefix}{node_name}/{attr}/{k}/")
            };
            *k += 1;
            close_subgraph(sub, &place, hoisted, taken);
        }
        let captured: Vec<String> = node
            .captured_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        node.inputs.extend(captured);
    }
}

/// Hoists `sub`'s initializers, closes its own subgraphs, then declares what it reads from
/// outside as captured inputs.
fn close_subgraph(
    sub: &mut Subgraph,
    place: &str,
    hoisted: &mut BTreeMap<String, Tensor>,
    taken: &mut HashSet<String>,
) {
    let initializers = std::mem::take(&mut sub.graph.initializers);
    for (name, mut tensor) in initializers {
        if sub.graph.inputs.iter().any(|i| i.name == name) {
            // A default for a formal input (old files list initializers as inputs): the input
            // wins, as in the top graph.
            continue;
        }
        let new_name = unique(&format!("{place}{name}"), taken);
        rename_reads(&mut sub.graph, &name, &new_name);
        tensor.name = new_name.clone();
        hoisted.insert(new_name, tensor);
    }
    close_nodes(&mut sub.graph.nodes, place, hoisted, taken);
    sub.formal_inputs = sub.formal_inputs.min(sub.graph.inputs.len());
    sub.graph.inputs.truncate(sub.formal_inputs);
    let captured = free_names(&sub.graph);
    sub.graph
        .inputs
        .extend(captured.into_iter().map(|name| ValueInfo {
            name,
            dtype: None,
            shape: None,
        }));
}

/// What every If, Loop and Scan node must have whatever its inputs are: its subgraphs, and as
/// many subgraph inputs and outputs as the operator binds and returns.
pub(crate) fn check_control(node: &Node) -> Result<(), String> {
    let graph = |name: &str| -> Result<&Subgraph, String> {
        node.attr_graph(name)?
            .ok_or_else(|| format!("has no '{name}' subgraph"))
    };
    let formal = node.formal_input_count();
    let outputs = node.outputs.len();
    match node.op_type.as_str() {
        "If" => {
            let then_branch = graph("then_branch")?;
            let else_branch = graph("else_branch")?;
            for (name, branch) in [("then_branch", then_branch), ("else_branch", else_branch)] {
                if branch.formal_inputs != 0 {
                    return Err(format!(
                        "'{name}' declares {} inputs; If branches take none",
                        branch.formal_inputs
                    ));
                }
                if branch.graph.outputs.len() != outputs {
                    return Err(format!(
                        "'{name}' returns {} values, the node has {outputs} outputs",
                        branch.graph.outputs.len()
                    ));
                }
            }
            Ok(())
        }
        "Loop" => {
            let body = graph("body")?;
            if body.formal_inputs < 2 || body.formal_inputs != formal.max(2) {
                return Err(format!(
                    "the body takes {} inputs; with {} loop-carried values it should take {} (iteration, condition, values)",
                    body.formal_inputs,
                    formal.saturating_sub(2),
                    formal.max(2)
                ));
            }
            let carried = body.formal_inputs - 2;
            if outputs < carried || body.graph.outputs.len() != 1 + outputs {
                return Err(format!(
                    "the body returns {} values; with {carried} loop-carried values and {} outputs it should return {} (condition, values, scan outputs)",
                    body.graph.outputs.len(),
                    outputs,
                    1 + outputs
                ));
            }
            Ok(())
        }
        "Scan" => {
            let body = graph("body")?;
            let scan_inputs = node.attr_int("num_scan_inputs", 0)?;
            if scan_inputs < 1 || scan_inputs as usize > formal {
                return Err(format!(
                    "'num_scan_inputs' must be between 1 and the number of inputs ({formal}), the file has {scan_inputs}"
                ));
            }
            if body.formal_inputs != formal {
                return Err(format!(
                    "the body takes {} inputs, the node gives it {formal}",
                    body.formal_inputs
                ));
            }
            if body.graph.outputs.len() != outputs {
                return Err(format!(
                    "the body returns {} values, the node has {outputs} outputs",
                    body.graph.outputs.len()
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `hint`, or `hint_1`, `hint_2`, ... whichever is not taken yet; marks it taken.
fn unique(hint: &str, taken: &mut HashSet<String>) -> String {
    let mut name = hint.to_string();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{hint}_{k}");
        k += 1;
    }
    taken.insert(name.clone());
    name
}

/// Renames every read of `from` in `graph` (node inputs, graph outputs) and in the subgraphs
/// that see it (those that do not define a value of the same name themselves).
fn rename_reads(graph: &mut Graph, from: &str, to: &str) {
    for node in &mut graph.nodes {
        for input in &mut node.inputs {
            if input == from {
                *input = to.to_string();
            }
        }
        for (_, sub) in node.subgraphs_mut() {
            if !defines(&sub.graph, from) {
                rename_reads(&mut sub.graph, from, to);
            }
        }
    }
    for output in &mut graph.outputs {
        if output.name == from {
            output.name = to.to_string();
        }
    }
}

/// Whether `graph` itself defines a value `name` (input, initializer or node output).
fn defines(graph: &Graph, name: &str) -> bool {
    graph.inputs.iter().any(|i| i.name == name)
        || graph.initializers.contains_key(name)
        || graph
            .nodes
            .iter()
            .any(|n| n.outputs.iter().any(|o| o == name))
}

/// The names `graph` reads (node inputs, graph outputs) that it does not define, in order of
/// first reading.
pub(crate) fn free_names(graph: &Graph) -> Vec<String> {
    let mut defined: HashSet<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
    defined.extend(graph.initializers.keys().map(String::as_str));
    for node in &graph.nodes {
        defined.extend(node.outputs.iter().map(String::as_str));
    }
    let mut free: Vec<String> = Vec::new();
    let reads = graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter())
        .chain(graph.outputs.iter().map(|o| &o.name));
    for name in reads {
        if !name.is_empty() && !defined.contains(name.as_str()) && !free.contains(name) {
            free.push(name.clone());
        }
    }
    free
}

/// Gives captured inputs that name an initializer of the top graph its element type.
fn declare_captures(nodes: &mut [Node], initializers: &BTreeMap<String, Tensor>) {
    for node in nodes {
        for (_, sub) in node.subgraphs_mut() {
            let formal = sub.formal_inputs;
            for info in sub.graph.inputs.iter_mut().skip(formal) {
                if let Some(t) = initializers.get(&info.name) {
                    // The type only: a transform may change a weight's shape.
                    info.dtype = Some(t.origin_dtype);
                }
            }
            declare_captures(&mut sub.graph.nodes, initializers);
        }
    }
}

#[cfg(test)]
mod tests;
