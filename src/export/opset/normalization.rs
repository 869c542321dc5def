//! BatchNormalization and GroupNormalization.
//!
//! BatchNormalization lost `spatial` at opset 9 (only the spatial form, statistics per
//! channel, remains), and at 14 its optional outputs became the running statistics of
//! training mode (before: running and saved statistics). Inference graphs do not read them,
//! so unread extra outputs are dropped; read ones cannot be lifted.
//!
//! GroupNormalization's `scale` and `bias` hold one value per group at opset 18 and one per
//! channel from 21: each value is repeated for the channels of its group, computed in the
//! graph from the input's channel count (`Shape` → `Div` by the group count → `Expand`).

use super::rewriter::Rewriter;
use crate::error::Result;
use crate::ir::{Attribute, Node};

pub(super) fn handles(op: &str) -> bool {
    matches!(op, "BatchNormalization" | "GroupNormalization")
}

pub(super) fn lift(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    match node.op_type.as_str() {
        "BatchNormalization" => lift_batch_norm(rw, &mut node)?,
        "GroupNormalization" if rw.crosses(21) => {
            return lift_group_norm(rw, node);
        }
        _ => {}
    }
    rw.emit(node);
    Ok(())
}

fn lift_batch_norm(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    if rw.crosses(9)
        && let Some(spatial) = rw.take_int(node, "spatial")?
        && spatial == 0
    {
        return Err(rw.error(
            node,
            "spatial = 0 (statistics per activation) was removed at opset 9",
        ));
    }
    if rw.crosses(14) {
        if let Some(read) = node.outputs.iter().skip(1).find(|o| rw.is_consumed(o)) {
            return Err(rw.error(
                node,
                format!(
                    "its training output '{read}' is read, and the training outputs changed meaning at opset 14"
                ),
            ));
        }
        node.outputs.truncate(1);
    }
    Ok(())
}

fn lift_group_norm(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    let groups = rw.int_attr(&node, "num_groups", 0)?;
    if groups <= 0 {
        return Err(rw.error(&node, "attribute 'num_groups' is missing or not positive"));
    }
    let (Some(x), Some(scale), Some(bias)) = (node.input(0), node.input(1), node.input(2)) else {
        return Err(rw.error(&node, "it needs the inputs X, scale and bias"));
    };
    let (x, scale, bias) = (x.to_string(), scale.to_string(), bias.to_string());
    let base = node.name.clone();
    let channels = rw.fresh(&format!("{base}_channels"));
    let shape = rw.node(
        "Shape",
        &format!("{base}_channel_count"),
        vec![x],
        vec![channels.clone()],
        vec![("start", Attribute::Int(1)), ("end", Attribute::Int(2))],
    );
    let group_count = rw.const_i64(&format!("{base}_groups"), &[1], vec![groups])?;
    let per_group = rw.fresh(&format!("{base}_channels_per_group"));
    let div = rw.node(
        "Div",
        &format!("{base}_per_group"),
        vec![channels, group_count],
        vec![per_group.clone()],
        vec![],
    );
    let one = rw.const_i64(&format!("{base}_one"), &[1], vec![1])?;
    let expand_shape = rw.fresh(&format!("{base}_repeat_shape"));
    let concat = rw.node(
        "Concat",
        &format!("{base}_repeat"),
        vec![one, per_group],
        vec![expand_shape.clone()],
        vec![("axis", Attribute::Int(0))],
    );
    let column = rw.const_i64(&format!("{base}_column"), &[2], vec![-1, 1])?;
    let flat = rw.const_i64(&format!("{base}_flat"), &[1], vec![-1])?;
    rw.emit(shape);
    rw.emit(div);
    rw.emit(concat);
    for (i, values) in [(1, scale), (2, bias)] {
        let what = if i == 1 { "scale" } else { "bias" };
        let as_column = rw.fresh(&format!("{base}_{what}_column"));
        let repeated = rw.fresh(&format!("{base}_{what}_repeated"));
        let per_channel = rw.fresh(&format!("{base}_{what}_per_channel"));
        let nodes = [
            rw.node(
                "Reshape",
                &format!("{base}_{what}_to_column"),
                vec![values, column.clone()],
                vec![as_column.clone()],
                vec![],
            ),
            rw.node(
                "Expand",
                &format!("{base}_{what}_expand"),
                vec![as_column, expand_shape.clone()],
                vec![repeated.clone()],
                vec![],
            ),
            rw.node(
                "Reshape",
                &format!("{base}_{what}_to_channels"),
                vec![repeated, flat.clone()],
                vec![per_channel.clone()],
                vec![],
            ),
        ];
        for n in nodes {
            rw.emit(n);
        }
        node.inputs[i] = per_channel;
    }
    rw.emit(node);
    Ok(())
}
