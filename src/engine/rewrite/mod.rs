//! Plan-time rewriting of an inference copy of the graph: fewer nodes and passes, same values.
//!
//! The passes, in order:
//! * [`simplify`]: Identity and inference Dropout removed (readers read the input instead);
//!   nodes whose inputs are all constants evaluated once;
//! * [`quantize_pairs`]: a QuantizeLinear and the DequantizeLinear on the same grid that alone
//!   reads its codes become one step computing the de-quantized values (a QDQ file's pairs);
//! * [`fold_bn`]: BatchNormalization folded into the Gemm before it (scaled weights, shifted
//!   bias);
//! * [`fuse`]: chains of elementwise nodes (activations, bias adds, hard-swish and GELU spelled
//!   out, ...) become one fused step that evaluates them in a single pass;
//! * [`conv_epilogue`]: a BatchNormalization and then an activation after a Conv move into the
//!   convolution's epilogue (applied in its output loop).
//!
//! Every rewrite keeps the tensors in `keep` (graph outputs, and those a run's hook asks for)
//! as tensors of their own, with the values and names of the original graph: a rewrite that
//! would hide one is not applied there. The graph itself is never changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::engine::ops::elementwise::Program;
use crate::engine::ops::{self, Args, OpCtx, OpError};
use crate::error::Error;
use crate::ir::{Graph, Node, TensorData};

mod conv_epilogue;
mod fold_bn;
mod fuse;
mod quantize_pairs;
mod simplify;
#[cfg(test)]
mod tests;

/// The domain of nodes the rewrite makes (never in a model file).
pub(crate) const DOMAIN: &str = "quantscope.plan";

/// A node of the rewritten graph: an original node (possibly with new inputs), or a fused
/// elementwise chain.
#[derive(Clone)]
pub(crate) struct PlannedNode {
    pub node: Node,
    pub fused: Option<Arc<FusedElementwise>>,
}

/// Elementwise nodes run as one [`Program`]; when the program does not apply to the values of a
/// run (integer data, shapes that do not broadcast as blocks), the nodes run one by one.
pub(crate) struct FusedElementwise {
    program: Program,
    /// The original nodes, in execution order; the last one produces the result.
    members: Vec<Node>,
    /// The program inputs' names (the fused node's inputs).
    inputs: Vec<String>,
    /// Constants the members read, by name.
    constants: HashMap<String, Arc<TensorData>>,
}

impl FusedElementwise {
    /// Runs the chain on `args` (the fused node's inputs). An error names the original node
    /// that failed (the chain's last one when the single pass fails).
    pub fn run(&self, opset: i64, args: &mut Args<'_>) -> Result<Vec<TensorData>, Error> {
        let op_error = |node: Option<&Node>, e: OpError| match node {
            Some(node) => Error::Op {
                node: node.name.clone(),
                op: node.op_type.clone(),
                msg: e.0,
            },
            None => Error::Graph(format!("empty fused chain: {}", e.0)),
        };
        if let Some(result) = self.program.run(args) {
            return result
                .map(|v| vec![v])
                .map_err(|e| op_error(self.members.last(), e));
        }
        // one by one, as the original nodes
        let mut values: HashMap<&str, TensorData> = HashMap::new();
        for node in &self.members {
            let inputs: Vec<Option<&TensorData>> = node
                .inputs
                .iter()
                .map(|name| {
                    if name.is_empty() {
                        return None;
                    }
                    if let Some(v) = values.get(name.as_str()) {
                        return Some(v);
                    }
                    if let Some(k) = self.inputs.iter().position(|i| i == name) {
                        return args.get(k);
                    }
                    self.constants.get(name).map(|c| c.as_ref())
                })
                .collect();
            let kernel = ops::kernel_for(node)
                .ok_or_else(|| op_error(Some(node), OpError("no kernel".into())))?;
            let mut out =
                kernel(&OpCtx { node, opset }, &inputs).map_err(|e| op_error(Some(node), e))?;
            if out.is_empty() {
                return Err(op_error(Some(node), OpError("produced no output".into())));
            }
            values.insert(node.outputs[0].as_str(), out.swap_remove(0));
        }
        let last = self.members.last();
        last.and_then(|l| values.remove(l.outputs[0].as_str()))
            .map(|v| vec![v])
            .ok_or_else(|| op_error(last, OpError("the fused chain lost its result".into())))
    }

    /// The original nodes, in execution order.
    #[cfg(test)]
    pub fn members(&self) -> &[Node] {
        &self.members
    }
}

/// The rewritten graph: nodes in execution order and the constants the rewrite made.
pub(crate) struct Rewritten {
    pub nodes: Vec<PlannedNode>,
    /// Per node: the node of the graph it stands for (None for a fused chain).
    pub origins: Vec<Option<usize>>,
    pub constants: BTreeMap<String, Arc<TensorData>>,
}

/// The rewrite's working state.
pub(super) struct Work<'g> {
    graph: &'g Graph,
    /// Nodes in execution order; None once removed.
    nodes: Vec<Option<PlannedNode>>,
    constants: BTreeMap<String, Arc<TensorData>>,
    keep: &'g dyn Fn(&str) -> bool,
}

impl<'g> Work<'g> {
    /// The value of a constant tensor (an initializer not fed as an input, or one made here).
    fn constant(&self, name: &str) -> Option<&TensorData> {
        if let Some(c) = self.constants.get(name) {
            return Some(c);
        }
        if self.graph.inputs.iter().any(|i| i.name == name) {
            return None;
        }
        self.graph.initializers.get(name).map(|t| &t.data)
    }

    /// Whether a tensor must stay a tensor of its own.
    fn kept(&self, name: &str) -> bool {
        (self.keep)(name) || self.graph.outputs.iter().any(|o| o.name == name)
    }

    /// Readers of each tensor: (node position, input position).
    fn readers(&self) -> HashMap<String, Vec<(usize, usize)>> {
        let mut readers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, planned) in self.nodes.iter().enumerate() {
            let Some(planned) = planned else { continue };
            for (k, name) in planned.node.inputs.iter().enumerate() {
                if !name.is_empty() {
                    readers.entry(name.clone()).or_default().push((i, k));
                }
            }
        }
        readers
    }

    /// Position of the node producing each tensor.
    fn producers(&self) -> HashMap<String, usize> {
        let mut producers = HashMap::new();
        for (i, planned) in self.nodes.iter().enumerate() {
            let Some(planned) = planned else { continue };
            for name in &planned.node.outputs {
                producers.insert(name.clone(), i);
            }
        }
        producers
    }

    /// A name for a made constant, unused by the graph.
    fn fresh_name(&self, base: &str) -> String {
        let mut name = format!("{base}::plan");
        let mut n = 1;
        while self.graph.initializers.contains_key(&name) || self.constants.contains_key(&name) {
            n += 1;
            name = format!("{base}::plan{n}");
        }
        name
    }
}

/// Rewrites `graph` (nodes taken in `order`), keeping every tensor for which `keep` is true.
pub(crate) fn rewrite(graph: &Graph, order: &[usize], keep: &dyn Fn(&str) -> bool) -> Rewritten {
    let mut work = Work {
        graph,
        nodes: order
            .iter()
            .map(|&i| {
                Some(PlannedNode {
                    node: graph.nodes[i].clone(),
                    fused: None,
                })
            })
            .collect(),
        constants: BTreeMap::new(),
        keep,
    };
    simplify::remove_identities(&mut work);
    simplify::type_quantizers(&mut work);
    simplify::fold_constants(&mut work);
    quantize_pairs::fuse_quantize_pairs(&mut work);
    fold_bn::fold_batch_norms(&mut work);
    fuse::fuse_elementwise(&mut work);
    conv_epilogue::fuse_into_convs(&mut work);
    // the rewrite replaces nodes in place, so positions still follow `order`
    let (nodes, origins) = work
        .nodes
        .into_iter()
        .zip(order)
        .filter_map(|(planned, &i)| {
            let planned = planned?;
            let origin = planned.fused.is_none().then_some(i);
            Some((planned, origin))
        })
        .unzip();
    Rewritten {
        nodes,
        origins,
        constants: work.constants,
    }
}
