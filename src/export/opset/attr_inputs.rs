//! Attributes that became inputs: the values move into new constants read by the node.
//!
//! | op | opset | change |
//! | --- | --- | --- |
//! | Slice | 10 | `starts`, `ends`, `axes` → inputs 1–3 (int64) |
//! | TopK | 10 | `k` → input 1 (int64 `[1]`) |
//! | Pad | 11 | `pads` → input 1 (int64), `value` → input 2 (scalar of the data type) |
//! | Clip | 11 | `min`, `max` → inputs 1–2 (scalars of the data type) |
//! | Dropout | 10 / 12 | the mask output becomes bool; `ratio` → input 1 (float scalar) |
//! | Squeeze, Unsqueeze, ReduceSum | 13 | `axes` → input 1 (int64) |
//! | Split | 13 / 18 | `split` → input 1; without it, `num_outputs` is required |
//! | other Reduce* | 18 | `axes` → input 1 (int64) |
//! | DFT | 20 | `axis` → input 2 (int64 scalar; its default moved from 1 to −2) |

use super::rewriter::{Rewriter, set_input, trim_optional};
use crate::error::Result;
use crate::ir::{Attribute, DType, Node};

/// The reductions whose `axes` moved at opset 18 (ReduceSum moved at 13).
const REDUCE_18: [&str; 9] = [
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

/// Whether this family rewrites `op`.
pub(super) fn handles(op: &str) -> bool {
    matches!(
        op,
        "Slice"
            | "TopK"
            | "Pad"
            | "Clip"
            | "Dropout"
            | "Squeeze"
            | "Unsqueeze"
            | "ReduceSum"
            | "Split"
            | "DFT"
    ) || REDUCE_18.contains(&op)
}

pub(super) fn lift(rw: &mut Rewriter<'_>, mut node: Node) -> Result<()> {
    let op = node.op_type.clone();
    match op.as_str() {
        "Slice" if rw.crosses(10) => {
            for (i, attr) in [(1, "starts"), (2, "ends"), (3, "axes")] {
                if let Some(values) = rw.take_ints(&mut node, attr)? {
                    ints_to_input(rw, &mut node, attr, i, values)?;
                } else if attr != "axes" {
                    return Err(rw.error(&node, format!("attribute '{attr}' is missing")));
                }
            }
        }
        "TopK" if rw.crosses(10) => {
            let Some(k) = rw.take_int(&mut node, "k")? else {
                return Err(rw.error(&node, "attribute 'k' is missing"));
            };
            let name = rw.const_i64(&format!("{}_k", node.name), &[1], vec![k])?;
            set_input(&mut node, 1, name);
        }
        "Pad" if rw.crosses(11) => lift_pad(rw, &mut node)?,
        "Clip" if rw.crosses(11) => {
            for (i, attr) in [(1, "min"), (2, "max")] {
                if let Some(v) = rw.take_float(&mut node, attr)? {
                    let dtype = rw.float_type_of_input(&node, 0)?;
                    let name =
                        rw.const_real(&format!("{}_{attr}", node.name), &[], vec![v], dtype)?;
                    set_input(&mut node, i, name);
                }
            }
        }
        "Dropout" => lift_dropout(rw, &mut node)?,
        "Squeeze" | "Unsqueeze" | "ReduceSum" if rw.crosses(13) => {
            if let Some(axes) = rw.take_ints(&mut node, "axes")? {
                ints_to_input(rw, &mut node, "axes", 1, axes)?;
            } else if op == "Unsqueeze" {
                return Err(rw.error(&node, "attribute 'axes' is missing"));
            }
        }
        "Split" => {
            if rw.crosses(13)
                && let Some(split) = rw.take_ints(&mut node, "split")?
            {
                ints_to_input(rw, &mut node, "split", 1, split)?;
            }
            if rw.crosses(18) && node.input(1).is_none() {
                let count = node.outputs.len() as i64;
                node.attributes
                    .insert("num_outputs".into(), Attribute::Int(count));
            }
        }
        "DFT" if rw.crosses(20) => {
            let axis = rw.take_int(&mut node, "axis")?.unwrap_or(1);
            let name = rw.const_i64(&format!("{}_axis", node.name), &[], vec![axis])?;
            set_input(&mut node, 2, name);
        }
        _ if REDUCE_18.contains(&op.as_str()) && rw.crosses(18) => {
            if let Some(axes) = rw.take_ints(&mut node, "axes")? {
                ints_to_input(rw, &mut node, "axes", 1, axes)?;
            }
        }
        _ => {}
    }
    trim_optional(&mut node);
    rw.emit(node);
    Ok(())
}

/// Stores `values` as a 1-D int64 constant read as input `i`.
fn ints_to_input(
    rw: &mut Rewriter<'_>,
    node: &mut Node,
    attr: &str,
    i: usize,
    values: Vec<i64>,
) -> Result<()> {
    let name = rw.const_i64(&format!("{}_{attr}", node.name), &[values.len()], values)?;
    set_input(node, i, name);
    Ok(())
}

fn lift_pad(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    let Some(pads) = rw.take_ints(node, "pads")? else {
        return Err(rw.error(node, "attribute 'pads' is missing"));
    };
    ints_to_input(rw, node, "pads", 1, pads)?;
    let value = rw.take_float(node, "value")?.unwrap_or(0.0);
    let mode = rw.string_attr(node, "mode", "constant")?;
    if mode == "constant" && value != 0.0 {
        let dtype = rw.float_type_of_input(node, 0)?;
        let name = rw.const_real(&format!("{}_value", node.name), &[], vec![value], dtype)?;
        set_input(node, 2, name);
    }
    Ok(())
}

/// Dropout's mask output is of the data type before opset 10 and bool from 10 on; a mask that
/// something reads would change type, so only an unread mask is dropped. The ratio became an
/// input at opset 12.
fn lift_dropout(rw: &mut Rewriter<'_>, node: &mut Node) -> Result<()> {
    if rw.crosses(10) && node.outputs.len() > 1 {
        if rw.is_consumed(&node.outputs[1]) {
            return Err(rw.error(
                node,
                format!(
                    "its mask output '{}' is read, and the mask changes from the data type to bool at opset 10",
                    node.outputs[1]
                ),
            ));
        }
        node.outputs.truncate(1);
    }
    if rw.crosses(12)
        && let Some(ratio) = rw.take_float(node, "ratio")?
    {
        let name = rw.const_real(
            &format!("{}_ratio", node.name),
            &[],
            vec![ratio],
            DType::F32,
        )?;
        set_input(node, 1, name);
    }
    Ok(())
}
