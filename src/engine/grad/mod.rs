//! Backward kernels: the vector–Jacobian product of each forward kernel, registered by op type
//! beside the forward registry (one module per family, as in [`crate::engine::ops`]).
//!
//! A backward kernel is a stateless function of the node (attributes), its forward inputs and
//! outputs and the gradients of the loss with respect to those outputs; it returns the
//! gradient with respect to every input that asked for one, in that input's shape (gradients
//! of broadcast operands are summed back to the operand's shape). Inputs that need no gradient
//! (shapes, indices, axes, frozen statistics) get `None`.
//!
//! Pure data-movement ops (Transpose, Slice, Gather, Concat, Split, Expand, Tile, Pad) share one
//! rule (`shape`): the forward kernel itself is run on integer positions, which tells for every
//! output element the input element it came from, and the gradient is summed back along that
//! map, so the backward pass can never disagree with the forward semantics.

use std::collections::HashMap;
use std::sync::OnceLock;

use ndarray::{ArrayD, Axis, IxDyn};

use crate::engine::ops::OpError;
use crate::ir::{Node, TensorData};

#[cfg(test)]
mod check;
mod conv;
mod elementwise;
mod linear;
mod normalization;
mod pool;
mod reduce;
mod shape;

/// What a backward kernel knows besides its tensors.
#[derive(Debug, Clone, Copy)]
pub struct GradCtx<'a> {
    pub node: &'a Node,
    /// Opset version of the default domain (as for the forward kernel).
    pub opset: i64,
    /// Which inputs need a gradient, by input position (missing positions need none).
    pub wanted: &'a [bool],
}

impl GradCtx<'_> {
    /// Whether input `i` needs a gradient.
    pub fn wants(&self, i: usize) -> bool {
        self.wanted.get(i).copied().unwrap_or(false)
    }
}

/// Gradients by input position; `None` for inputs that need or have none.
pub type Grads = Vec<Option<ArrayD<f32>>>;

/// Backward kernel result.
pub type GradResult = Result<Grads, OpError>;

/// A backward kernel: forward inputs (None where omitted), forward outputs, and the gradient
/// of the loss with respect to each output (None where no gradient reached it: treated as 0).
pub type GradFn = fn(
    ctx: &GradCtx<'_>,
    inputs: &[Option<&TensorData>],
    outputs: &[&TensorData],
    grad_outputs: &[Option<&ArrayD<f32>>],
) -> GradResult;

/// Op type → backward kernel.
#[derive(Default)]
pub struct GradRegistry {
    kernels: HashMap<&'static str, GradFn>,
}

impl GradRegistry {
    /// Registers `kernel` as the backward of `op_type` (default ONNX domain).
    pub fn add(&mut self, op_type: &'static str, kernel: GradFn) {
        self.kernels.insert(op_type, kernel);
    }

    fn build() -> GradRegistry {
        let mut registry = GradRegistry::default();
        conv::register(&mut registry);
        elementwise::register(&mut registry);
        linear::register(&mut registry);
        normalization::register(&mut registry);
        pool::register(&mut registry);
        reduce::register(&mut registry);
        shape::register(&mut registry);
        registry
    }
}

fn registry() -> &'static GradRegistry {
    static REGISTRY: OnceLock<GradRegistry> = OnceLock::new();
    REGISTRY.get_or_init(GradRegistry::build)
}

/// The backward kernel of a node, if its op has one.
pub fn grad_for(node: &Node) -> Option<GradFn> {
    if !node.in_default_domain() {
        return None;
    }
    registry().kernels.get(node.op_type.as_str()).copied()
}

/// Every op type with a backward kernel, sorted.
pub fn differentiable_ops() -> Vec<&'static str> {
    let mut ops: Vec<&'static str> = registry().kernels.keys().copied().collect();
    ops.sort_unstable();
    ops
}

/// Ops whose outputs carry no gradient (integer results, constants, comparisons): a gradient
/// never flows through them, so they need no backward kernel.
pub const NON_DIFFERENTIABLE_OPS: [&str; 24] = [
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Range",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "ArgMax",
    "ArgMin",
    "NonZero",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "IsNaN",
    "IsInf",
    "OneHot",
];

// ---- helpers shared by backward kernels ----------------------------------------------------

/// The gradient of output `k`, or an error when it is missing (ops with one output always get
/// one when their backward runs).
pub(crate) fn grad_output<'a>(
    grads: &[Option<&'a ArrayD<f32>>],
    k: usize,
) -> Result<&'a ArrayD<f32>, OpError> {
    grads
        .get(k)
        .copied()
        .flatten()
        .ok_or_else(|| OpError(format!("no gradient for output {k}")))
}

/// Forward output `k` as f32.
pub(crate) fn output_f32<'a>(
    outputs: &[&'a TensorData],
    k: usize,
) -> Result<&'a ArrayD<f32>, OpError> {
    outputs.get(k).and_then(|t| t.as_f32()).ok_or_else(|| {
        OpError(format!(
            "forward output {k} is missing or not a float tensor"
        ))
    })
}

/// Checks that a gradient has the shape of the value it belongs to.
pub(crate) fn check_shape(what: &str, grad: &ArrayD<f32>, shape: &[usize]) -> Result<(), OpError> {
    if grad.shape() == shape {
        Ok(())
    } else {
        Err(OpError(format!(
            "gradient of {what} has shape {:?}, the value has {shape:?}",
            grad.shape()
        )))
    }
}

/// Sums a gradient of a broadcast result back to the operand's `shape` (numpy broadcasting:
/// leading axes the operand lacks and axes where it has size 1 are summed).
pub fn reduce_to_shape(grad: ArrayD<f32>, shape: &[usize]) -> Result<ArrayD<f32>, OpError> {
    if grad.shape() == shape {
        return Ok(grad);
    }
    let rank = grad.ndim();
    if shape.len() > rank {
        return Err(OpError(format!(
            "gradient of shape {:?} cannot be reduced to the larger rank of {shape:?}",
            grad.shape()
        )));
    }
    let extra = rank - shape.len();
    let mut g = grad;
    for _ in 0..extra {
        g = g.sum_axis(Axis(0));
    }
    for (axis, &d) in shape.iter().enumerate() {
        if g.shape()[axis] == d {
            continue;
        }
        if d != 1 {
            return Err(OpError(format!(
                "gradient of shape {:?} does not broadcast from {shape:?}",
                g.shape()
            )));
        }
        g = g.sum_axis(Axis(axis)).insert_axis(Axis(axis));
    }
    Ok(g)
}

/// An array from a shape and row-major data.
pub(crate) fn array_of(shape: &[usize], data: Vec<f32>) -> Result<ArrayD<f32>, OpError> {
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| OpError(format!("internal error building a {shape:?} gradient: {e}")))
}

/// Row-major contiguous data of an array (the forward kernels' helper).
pub(crate) use crate::engine::ops::contiguous;
