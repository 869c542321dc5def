//! Elementwise chains fused into one step: starting from each elementwise node (the chain's
//! last), producers that are elementwise too are absorbed while every reader of their output
//! is in the chain and the output is not kept. Hard-swish written as `x·Clip(x+3, 0, 6)/6`,
//! SiLU as `x·Sigmoid(x)`, GELU as `x·(1 + Erf(x/√2))/2`, a bias Add before an activation, a
//! residual Add and its Relu: each becomes one pass. Chains of one node stay as they are (their
//! kernels already work in place).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{DOMAIN, FusedElementwise, PlannedNode, Work};
use crate::engine::ops::elementwise::{Program, is_fusable};
use crate::ir::{Node, TensorData};

/// At most this many nodes per chain (registers per program).
const MAX_CHAIN: usize = 24;

/// Whether `name` is a one-element float constant (a program reads it as an immediate).
fn is_scalar(work: &Work<'_>, name: &str) -> bool {
    matches!(work.constant(name), Some(TensorData::F32(a)) if a.len() == 1)
}

/// The tensors a chain reads from outside: every input that no member produces and that is not
/// a scalar constant or a Clip bound, in order of first use.
fn chain_inputs(work: &Work<'_>, members: &[&Node]) -> Vec<String> {
    let produced: BTreeSet<&str> = members
        .iter()
        .flat_map(|n| n.outputs.iter().map(String::as_str))
        .collect();
    let mut inputs: Vec<String> = Vec::new();
    for node in members {
        for (k, name) in node.inputs.iter().enumerate() {
            let bound = node.op_type == "Clip" && k > 0;
            if name.is_empty()
                || bound
                || produced.contains(name.as_str())
                || is_scalar(work, name)
                || inputs.contains(name)
            {
                continue;
            }
            inputs.push(name.clone());
        }
    }
    inputs
}

/// Fuses every chain of two or more elementwise nodes.
pub(super) fn fuse_elementwise(work: &mut Work<'_>) {
    let producers = work.producers();
    let readers = work.readers();
    let candidate = |work: &Work<'_>, i: usize| matches!(&work.nodes[i], Some(PlannedNode { node, fused: None }) if is_fusable(node));
    let mut taken = vec![false; work.nodes.len()];
    for sink in (0..work.nodes.len()).rev() {
        if taken[sink] || !candidate(work, sink) {
            continue;
        }
        let mut chain: BTreeSet<usize> = BTreeSet::from([sink]);
        loop {
            let mut grown = false;
            let inputs: Vec<String> = chain
                .iter()
                .filter_map(|&i| work.nodes[i].as_ref())
                .flat_map(|p| p.node.inputs.clone())
                .collect();
            for name in inputs {
                if chain.len() >= MAX_CHAIN {
                    break;
                }
                let Some(&p) = producers.get(&name) else {
                    continue;
                };
                if chain.contains(&p) || taken[p] || !candidate(work, p) || work.kept(&name) {
                    continue;
                }
                let all_readers_inside = readers
                    .get(&name)
                    .is_some_and(|r| r.iter().all(|(i, _)| chain.contains(i)));
                if all_readers_inside {
                    chain.insert(p);
                    grown = true;
                }
            }
            if !grown {
                break;
            }
        }
        if chain.len() < 2 {
            continue;
        }
        let members: Vec<&Node> = chain
            .iter()
            .filter_map(|&i| work.nodes[i].as_ref().map(|p| &p.node))
            .collect();
        let inputs = chain_inputs(work, &members);
        let Some(program) =
            Program::compile(&members, work.graph.opset, &inputs, |n| work.constant(n))
        else {
            continue;
        };
        let constants: HashMap<String, Arc<TensorData>> = members
            .iter()
            .flat_map(|n| n.inputs.iter())
            .filter_map(|name| {
                let value = work.constant(name)?;
                Some((name.clone(), Arc::new(value.clone())))
            })
            .collect();
        let sink_node = members[members.len() - 1];
        let node = Node {
            name: sink_node.name.clone(),
            op_type: "FusedElementwise".into(),
            domain: DOMAIN.into(),
            inputs: inputs.clone(),
            outputs: vec![sink_node.outputs[0].clone()],
            attributes: Default::default(),
        };
        let fused = FusedElementwise {
            program,
            members: members.iter().map(|n| (*n).clone()).collect(),
            inputs,
            constants,
        };
        for &i in &chain {
            taken[i] = true;
            work.nodes[i] = None;
        }
        work.nodes[sink] = Some(PlannedNode {
            node,
            fused: Some(Arc::new(fused)),
        });
    }
}
