//! Softmax, LogSoftmax and Hardmax at opset 13. Before 13 the input was coerced to 2-D at
//! `axis` (default 1): `[d0·…·d(axis−1), d(axis)·…·d(n−1)]`, and the function ran over the
//! second dimension, i.e. over all trailing axes together. From 13 it runs over the one axis
//! `axis` (default −1). The two agree when the axis is the last one; otherwise the old meaning
//! is kept with `Flatten(axis)` → op over axis −1 → `Reshape` back to the input's shape.

use super::rewriter::Rewriter;
use crate::error::Result;
use crate::ir::{Attribute, Node};

pub(super) fn handles(op: &str) -> bool {
    matches!(op, "Softmax" | "LogSoftmax" | "Hardmax")
}

pub(super) fn lift(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    if !rw.crosses(13) {
        rw.emit(node);
        return Ok(());
    }
    let axis = rw.int_attr(&node, "axis", 1)?;
    let Some(input) = node.input(0).map(str::to_string) else {
        return Err(rw.error(&node, "it has no input"));
    };
    let is_last = axis == -1 || rw.facts.rank(&input).is_some_and(|r| axis == r as i64 - 1);
    if is_last {
        node.attributes.insert("axis".into(), Attribute::Int(-1));
        rw.emit(node);
        return Ok(());
    }
    let Some(output) = node.outputs.first().cloned() else {
        return Err(rw.error(&node, "it has no output"));
    };
    let base = node.name.clone();
    let shape_out = rw.fresh(&format!("{base}_input_shape"));
    let shape = rw.node(
        "Shape",
        &format!("{base}_shape"),
        vec![input.clone()],
        vec![shape_out.clone()],
        vec![],
    );
    let flat_out = rw.fresh(&format!("{base}_2d"));
    let flatten = rw.node(
        "Flatten",
        &format!("{base}_flatten"),
        vec![input],
        vec![flat_out.clone()],
        vec![("axis", Attribute::Int(axis))],
    );
    let op_out = rw.fresh(&format!("{base}_2d_out"));
    node.inputs[0] = flat_out;
    node.outputs = vec![op_out.clone()];
    node.attributes.insert("axis".into(), Attribute::Int(-1));
    let reshape = rw.node(
        "Reshape",
        &format!("{base}_reshape"),
        vec![op_out, shape_out],
        vec![output],
        vec![],
    );
    rw.emit(shape);
    rw.emit(flatten);
    rw.emit(node);
    rw.emit(reshape);
    Ok(())
}
