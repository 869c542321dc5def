//! Backward of the shape and data-movement kernels.
//!
//! Reshape, Flatten, Squeeze and Unsqueeze keep the elements in order: the gradient is the
//! output gradient in the input's shape.
//!
//! Transpose, Slice, Gather, Concat, Split, Expand, Tile, Pad and nearest Resize/Upsample only
//! move, repeat or drop elements. Their backward runs the forward kernel once more on integer
//! positions (element j of data input k holds `base_k + j`, bases counted from 1 so that 0 marks
//! padding): each output element then names its source, and the output gradient is summed into
//! that source. The index rules (negative indices, steps, clamping, broadcasting, padding
//! modes) are therefore exactly the forward's.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::{GradCtx, GradRegistry, GradResult, Grads, array_of, check_shape, grad_output};
use crate::engine::ops::{OpCtx, OpError, input, kernel_for};
use crate::ir::{Attribute, Node, TensorData};

pub fn register(registry: &mut GradRegistry) {
    for op in ["Reshape", "Flatten", "Squeeze", "Unsqueeze"] {
        registry.add(op, reshape);
    }
    registry.add("Transpose", first_input_routed);
    registry.add("Slice", first_input_routed);
    registry.add("Gather", first_input_routed);
    registry.add("Split", first_input_routed);
    registry.add("Expand", first_input_routed);
    registry.add("Tile", first_input_routed);
    registry.add("Pad", pad);
    registry.add("Resize", nearest_resize);
    registry.add("Upsample", nearest_resize);
    registry.add("Concat", concat);
}

/// The gradient of an order-keeping reshape: the output gradient in the input's shape.
fn reshape(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let mut out: Grads = vec![None; inputs.len().max(1)];
    if !ctx.wants(0) {
        return Ok(out);
    }
    let x = input(inputs, 0)?;
    let g = grad_output(grads, 0)?;
    if g.len() != x.len() {
        return Err(OpError(format!(
            "gradient of {} elements for an input of shape {:?}",
            g.len(),
            x.shape()
        )));
    }
    out[0] = Some(
        g.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(x.shape()))
            .map_err(|e| OpError(e.to_string()))?,
    );
    Ok(out)
}

/// Runs `node`'s forward kernel with data inputs `data` replaced by their positions and sums
/// the output gradients into those inputs.
fn route(
    node: &Node,
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    grads: &[Option<&ArrayD<f32>>],
    data: &[usize],
    replacements: &[(usize, TensorData)],
) -> GradResult {
    let mut out: Grads = vec![None; inputs.len().max(1)];
    if !data.iter().any(|&i| ctx.wants(i)) {
        return Ok(out);
    }
    let kernel = kernel_for(node)
        .ok_or_else(|| OpError(format!("no forward kernel for {}", node.op_type)))?;
    // Positions: element j of data input k holds bases[k] + j.
    let mut bases = Vec::with_capacity(data.len());
    let mut next = 1i64;
    let mut owned: BTreeMap<usize, TensorData> = BTreeMap::new();
    for &i in data {
        let x = input(inputs, i)?;
        bases.push(next);
        let n = x.len() as i64;
        let positions: Vec<i64> = (next..next + n).collect();
        owned.insert(
            i,
            TensorData::I64(
                ArrayD::from_shape_vec(IxDyn(x.shape()), positions)
                    .map_err(|e| OpError(e.to_string()))?,
            ),
        );
        next += n;
    }
    for (i, t) in replacements {
        owned.insert(*i, t.clone());
    }
    let args: Vec<Option<&TensorData>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| owned.get(&i).or(*t))
        .collect();
    let ctx_fwd = OpCtx {
        node,
        opset: ctx.opset,
    };
    let maps = kernel(&ctx_fwd, &args)?;
    let mut sums: Vec<Vec<f32>> = data
        .iter()
        .map(|&i| {
            vec![
                0.0f32;
                if ctx.wants(i) {
                    inputs[i].map_or(0, |t| t.len())
                } else {
                    0
                }
            ]
        })
        .collect();
    for (k, map) in maps.iter().enumerate() {
        let Some(g) = grads.get(k).copied().flatten() else {
            continue;
        };
        let TensorData::I64(map) = map else {
            return Err(OpError("position map is not an integer tensor".into()));
        };
        check_shape(&format!("output {k}"), g, map.shape())?;
        let g = g.as_standard_layout();
        let map = map.as_standard_layout();
        for (&pos, &gv) in map.iter().zip(g.iter()) {
            // The data input whose position range holds pos (0: padding, no source).
            let Some(d) = bases.iter().rposition(|&b| b <= pos) else {
                continue;
            };
            let j = (pos - bases[d]) as usize;
            if let Some(slot) = sums[d].get_mut(j) {
                *slot += gv;
            }
        }
    }
    for (d, &i) in data.iter().enumerate() {
        if ctx.wants(i) {
            let shape = input(inputs, i)?.shape().to_vec();
            out[i] = Some(array_of(&shape, std::mem::take(&mut sums[d]))?);
        }
    }
    Ok(out)
}

fn first_input_routed(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    route(ctx.node, ctx, inputs, grads, &[0], &[])
}

fn concat(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let data: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].is_some()).collect();
    route(ctx.node, ctx, inputs, grads, &data, &[])
}

/// Pad: the fill value becomes 0 (no source), whatever the model pads with.
fn pad(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let mut node = ctx.node.clone();
    if node.attributes.contains_key("value") {
        node.attributes
            .insert("value".into(), Attribute::Float(0.0));
    }
    let mut replacements = Vec::new();
    if inputs.get(2).copied().flatten().is_some() {
        replacements.push((2, TensorData::I64(ArrayD::from_elem(IxDyn(&[]), 0))));
    }
    route(&node, ctx, inputs, grads, &[0], &replacements)
}

/// Resize and Upsample in nearest mode move elements; other modes interpolate and have no
/// backward kernel.
fn nearest_resize(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    _outputs: &[&TensorData],
    grads: &[Option<&ArrayD<f32>>],
) -> GradResult {
    let mode = ctx.node.attr_string("mode", "nearest")?;
    if mode != "nearest" {
        return Err(OpError(format!(
            "{} in mode '{mode}' has no backward kernel (only 'nearest')",
            ctx.node.op_type
        )));
    }
    route(ctx.node, ctx, inputs, grads, &[0], &[])
}

#[cfg(test)]
mod tests {
    use super::super::check::{Case, check, ints, random};

    #[test]
    fn reshapes_keep_the_order() {
        let x = random(&[2, 3, 4], 1, -1.0, 1.0);
        check(
            &Case::new("Reshape")
                .input(x.clone())
                .constant(ints(&[4, -1])),
            2e-3,
        );
        check(
            &Case::new("Flatten").attr_int("axis", 2).input(x.clone()),
            2e-3,
        );
        check(
            &Case::new("Unsqueeze")
                .input(x.clone())
                .constant(ints(&[0, 3])),
            2e-3,
        );
        let y = random(&[2, 1, 4, 1], 2, -1.0, 1.0);
        check(&Case::new("Squeeze").input(y).constant(ints(&[1])), 2e-3);
    }

    #[test]
    fn routed_ops_match_finite_differences() {
        let x = random(&[2, 3, 4], 3, -1.0, 1.0);
        check(
            &Case::new("Transpose")
                .attr_ints("perm", &[2, 0, 1])
                .input(x.clone()),
            2e-3,
        );
        check(&Case::new("Transpose").input(x.clone()), 2e-3);
        // Slice with negative starts, a step of 2 and a negative step.
        let slice = Case::new("Slice")
            .input(x.clone())
            .constant(ints(&[-3, 0]))
            .constant(ints(&[4, 100]))
            .constant(ints(&[2, 0]))
            .constant(ints(&[1, 2]));
        check(&slice, 2e-3);
        let reverse = Case::new("Slice")
            .input(x.clone())
            .constant(ints(&[-1]))
            .constant(ints(&[-100]))
            .constant(ints(&[1]))
            .constant(ints(&[-1]));
        check(&reverse, 2e-3);
        // Gather with repeated and negative indices (gradients add up).
        let gather = Case::new("Gather")
            .attr_int("axis", 1)
            .input(x.clone())
            .constant(super::super::check::ints(&[2, -1, 0, 2]));
        check(&gather, 2e-3);
        let concat = Case::new("Concat")
            .attr_int("axis", 1)
            .input(random(&[2, 1, 4], 4, -1.0, 1.0))
            .input(x.clone())
            .input(random(&[2, 2, 4], 5, -1.0, 1.0));
        check(&concat, 2e-3);
        let split = Case::new("Split")
            .attr_int("axis", 2)
            .outputs(2)
            .input(x.clone())
            .constant(ints(&[1, 3]));
        check(&split, 2e-3);
        let expand = Case::new("Expand")
            .input(random(&[3, 1], 6, -1.0, 1.0))
            .constant(ints(&[2, 3, 4]));
        check(&expand, 2e-3);
        let tile = Case::new("Tile")
            .input(x.clone())
            .constant(ints(&[1, 2, 2]));
        check(&tile, 2e-3);
        for mode in ["constant", "reflect", "edge"] {
            let pad = Case::new("Pad")
                .attr_str("mode", mode)
                .input(x.clone())
                .constant(ints(&[0, 1, 2, 0, 1, 1]));
            check(&pad, 2e-3);
        }
        let pad_value = Case::new("Pad")
            .input(x.clone())
            .constant(ints(&[0, 1, 2, 0, 1, 1]))
            .constant(super::super::check::scalar(-5.0));
        check(&pad_value, 2e-3);
        let resize = Case::new("Resize")
            .input(random(&[1, 2, 3, 3], 7, -1.0, 1.0))
            .omitted()
            .constant(super::super::check::floats(&[1.0, 1.0, 2.0, 1.5]));
        check(&resize, 2e-3);
    }
}
