//! A QuantizeLinear whose codes only a DequantizeLinear on the same grid reads (the pair a QDQ
//! file puts on every quantized tensor) becomes one step: the QuantizeLinear node, marked with
//! [`DEQUANTIZE_ATTR`], computes `(q − Z)·S` directly and writes the DequantizeLinear's output.
//! One pass over the tensor instead of two, and no code tensor; the values are those of the
//! two nodes run one after the other, bit for bit.
//!
//! The grids must be the same: the same scale and zero point (the same tensors, or constants
//! of equal values; both without a zero point counts as the same) and, per axis, the same
//! axis. The codes must not be kept (a hook that asks for them sees them as before).

use super::{PlannedNode, Work};
use crate::engine::ops::quantize::DEQUANTIZE_ATTR;
use crate::ir::{Attribute, Node};

/// Whether inputs `k` of `a` and of `b` hold the same values: the same tensor (or both
/// absent), or constants that are equal.
fn same_input(work: &Work<'_>, a: &Node, b: &Node, k: usize) -> bool {
    let name = |n: &Node| n.input(k).filter(|s| !s.is_empty()).map(str::to_string);
    match (name(a), name(b)) {
        (None, None) => true,
        (Some(x), Some(y)) if x == y => true,
        (Some(x), Some(y)) => {
            matches!((work.constant(&x), work.constant(&y)), (Some(p), Some(q)) if p == q)
        }
        _ => false,
    }
}

/// Whether `q` and `dq` quantize and de-quantize on the same grid.
fn same_grid(work: &Work<'_>, q: &Node, dq: &Node) -> bool {
    let int = |n: &Node, name: &str, default: i64| n.attr_int(name, default).ok();
    same_input(work, q, dq, 1)
        && same_input(work, q, dq, 2)
        && int(q, "axis", 1).is_some()
        && int(q, "axis", 1) == int(dq, "axis", 1)
        && int(q, "block_size", 0) == Some(0)
        && int(dq, "block_size", 0) == Some(0)
}

/// Marks every QuantizeLinear whose codes one DequantizeLinear on the same grid alone reads to
/// de-quantize itself, and removes the DequantizeLinear.
pub(super) fn fuse_quantize_pairs(work: &mut Work<'_>) {
    let readers = work.readers();
    let quantizers: Vec<usize> = work
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Some(PlannedNode { node, fused: None })
                if node.op_type == "QuantizeLinear"
                    && node.in_default_domain()
                    && node.outputs.len() == 1 =>
            {
                Some(i)
            }
            _ => None,
        })
        .collect();
    for i in quantizers {
        let Some(q) = work.nodes[i].as_ref().map(|p| p.node.clone()) else {
            continue;
        };
        let codes = &q.outputs[0];
        let Some([(j, 0)]) = readers.get(codes).map(Vec::as_slice) else {
            continue;
        };
        let Some(PlannedNode {
            node: dq,
            fused: None,
        }) = work.nodes[*j].as_ref()
        else {
            continue;
        };
        if dq.op_type != "DequantizeLinear"
            || !dq.in_default_domain()
            || dq.outputs.len() != 1
            || work.kept(codes)
            || !same_grid(work, &q, dq)
        {
            continue;
        }
        let mut fused = q.clone();
        fused.outputs[0] = dq.outputs[0].clone();
        fused
            .attributes
            .insert(DEQUANTIZE_ATTR.into(), Attribute::Int(1));
        work.nodes[i] = Some(PlannedNode {
            node: fused,
            fused: None,
        });
        work.nodes[*j] = None;
    }
}
