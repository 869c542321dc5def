//! Operator kernels, registered by family (one module per family).
//!
//! Every kernel is a plain function of its node (attributes), the opset and its input tensors,
//! returning its outputs. Kernels never see protobuf types and keep no state, so a backward pass
//! can later sit beside each forward one.

use std::collections::HashMap;
use std::sync::OnceLock;

use ndarray::{ArrayD, IxDyn};

use crate::engine::geometry::WindowError;
use crate::ir::{Node, TensorData};

pub(crate) mod control;
pub mod conv;
mod detection;
mod einsum;
pub(crate) mod elementwise;
mod gather_scatter;
mod gemm;
mod grid_sample;
mod linear;
mod math;
mod normalization;
mod norms;
mod pool;
pub(crate) mod quantize;
pub use quantize::Quantizer;
mod rearrange;
mod recurrent;
mod reduce;
mod select;
mod shape;
#[cfg(test)]
pub(crate) mod testutil;

/// What a kernel knows besides its inputs.
#[derive(Debug, Clone, Copy)]
pub struct OpCtx<'a> {
    pub node: &'a Node,
    /// Opset version of the default domain (semantics of Softmax, Split, ... depend on it).
    pub opset: i64,
}

/// A kernel failure; the executor adds the node name and op type.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError(pub String);

impl<T: Into<String>> From<T> for OpError {
    fn from(msg: T) -> Self {
        OpError(msg.into())
    }
}

impl From<WindowError> for OpError {
    /// The message alone: the executor names the node.
    fn from(e: WindowError) -> Self {
        OpError(e.msg)
    }
}

/// Kernel result.
pub type OpResult = Result<Vec<TensorData>, OpError>;

/// A kernel: inputs are in node order, None where an optional input is omitted.
pub type OpFn = fn(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult;

/// A kernel that may reuse the storage of inputs the executor hands over (those whose last
/// reader is this node): Reshape keeps the buffer, Relu works in place.
pub type MovingOpFn = fn(ctx: &OpCtx<'_>, inputs: &mut Args<'_>) -> OpResult;

/// The inputs of a [`MovingOpFn`], in node order: each borrowed, handed over, or omitted.
pub struct Args<'a> {
    borrowed: Vec<Option<&'a TensorData>>,
    owned: Vec<Option<TensorData>>,
}

impl<'a> Args<'a> {
    /// Inputs given as `borrowed`, except those in `owned` (same length), which the kernel may
    /// take.
    pub fn new(borrowed: Vec<Option<&'a TensorData>>, owned: Vec<Option<TensorData>>) -> Self {
        debug_assert_eq!(borrowed.len(), owned.len());
        Args { borrowed, owned }
    }

    /// All inputs borrowed.
    pub fn borrowed(inputs: &[Option<&'a TensorData>]) -> Self {
        Args {
            borrowed: inputs.to_vec(),
            owned: inputs.iter().map(|_| None).collect(),
        }
    }

    /// Number of input positions.
    pub fn len(&self) -> usize {
        self.borrowed.len()
    }

    /// True when the node has no inputs.
    pub fn is_empty(&self) -> bool {
        self.borrowed.is_empty()
    }

    /// Input `i`, however it is held (None when omitted or taken).
    pub fn get(&self, i: usize) -> Option<&TensorData> {
        match self.owned.get(i) {
            Some(Some(t)) => Some(t),
            _ => self.borrowed.get(i).copied().flatten(),
        }
    }

    /// Input `i` if the executor handed it over (the kernel may then reuse its storage).
    pub fn take(&mut self, i: usize) -> Option<TensorData> {
        self.owned.get_mut(i).and_then(Option::take)
    }

    /// Whether input `i` was handed over and not taken yet.
    pub fn is_owned(&self, i: usize) -> bool {
        matches!(self.owned.get(i), Some(Some(_)))
    }

    /// Every input as a reference, for kernels that only read.
    pub fn refs(&self) -> Vec<Option<&TensorData>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// The handed-over inputs nobody took.
    pub fn into_leftovers(self) -> impl Iterator<Item = TensorData> {
        self.owned.into_iter().flatten()
    }
}

/// Op type → kernel.
#[derive(Default)]
pub struct Registry {
    kernels: HashMap<&'static str, OpFn>,
    moving: HashMap<&'static str, MovingOpFn>,
}

impl Registry {
    /// Registers `kernel` for `op_type` (default ONNX domain).
    pub fn add(&mut self, op_type: &'static str, kernel: OpFn) {
        self.kernels.insert(op_type, kernel);
    }

    /// Registers the storage-reusing form of an op already registered with [`Registry::add`].
    pub fn add_moving(&mut self, op_type: &'static str, kernel: MovingOpFn) {
        self.moving.insert(op_type, kernel);
    }

    fn build() -> Registry {
        let mut registry = Registry::default();
        control::register(&mut registry);
        conv::register(&mut registry);
        detection::register(&mut registry);
        einsum::register(&mut registry);
        elementwise::register(&mut registry);
        gather_scatter::register(&mut registry);
        grid_sample::register(&mut registry);
        linear::register(&mut registry);
        math::register(&mut registry);
        normalization::register(&mut registry);
        norms::register(&mut registry);
        pool::register(&mut registry);
        quantize::register(&mut registry);
        rearrange::register(&mut registry);
        recurrent::register(&mut registry);
        reduce::register(&mut registry);
        select::register(&mut registry);
        shape::register(&mut registry);
        registry
    }
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::build)
}

/// The kernel for a node, if its (domain, op type) is supported.
pub fn kernel_for(node: &Node) -> Option<OpFn> {
    if !node.in_default_domain() {
        return None;
    }
    registry().kernels.get(node.op_type.as_str()).copied()
}

/// The storage-reusing kernel for a node, if its op has one (see [`MovingOpFn`]).
pub fn moving_kernel_for(node: &Node) -> Option<MovingOpFn> {
    if !node.in_default_domain() {
        return None;
    }
    registry().moving.get(node.op_type.as_str()).copied()
}

/// Every supported op type, sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut ops: Vec<&'static str> = registry().kernels.keys().copied().collect();
    ops.sort_unstable();
    ops
}

// ---- helpers shared by kernels -------------------------------------------------------------

/// Input `i`, required.
pub fn input<'a>(inputs: &[Option<&'a TensorData>], i: usize) -> Result<&'a TensorData, OpError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError(format!("missing required input {i}")))
}

/// Input `i` as f32, required.
pub fn input_f32<'a>(
    inputs: &[Option<&'a TensorData>],
    i: usize,
) -> Result<&'a ArrayD<f32>, OpError> {
    let t = input(inputs, i)?;
    t.as_f32().ok_or_else(|| {
        OpError(format!(
            "input {i} must be a float tensor, got {}",
            t.kind_name()
        ))
    })
}

/// Input `i` as f32 of shape [N, C, ...] (rank ≥ 2), required; the error calls it X.
pub(crate) fn input_nc<'a>(
    inputs: &[Option<&'a TensorData>],
    i: usize,
) -> Result<&'a ArrayD<f32>, OpError> {
    let x = input_f32(inputs, i)?;
    if x.ndim() < 2 {
        return Err(OpError(format!(
            "X must have rank >= 2 (N, C, ...), got shape {:?}",
            x.shape()
        )));
    }
    Ok(x)
}

/// The node's integer attribute `name`, which must be positive (it has no default).
pub(crate) fn positive_attr(ctx: &OpCtx<'_>, name: &str) -> Result<usize, OpError> {
    usize::try_from(ctx.node.attr_int(name, 0)?)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| OpError(format!("{name} must be a positive integer")))
}

/// Input `i` as i64, required.
pub fn input_i64<'a>(
    inputs: &[Option<&'a TensorData>],
    i: usize,
) -> Result<&'a ArrayD<i64>, OpError> {
    let t = input(inputs, i)?;
    t.as_i64().ok_or_else(|| {
        OpError(format!(
            "input {i} must be an integer tensor, got {}",
            t.kind_name()
        ))
    })
}

/// Optional input `i` (None when omitted or beyond the given inputs).
pub fn optional<'a>(inputs: &[Option<&'a TensorData>], i: usize) -> Option<&'a TensorData> {
    inputs.get(i).copied().flatten()
}

/// Normalizes a possibly negative axis against `rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(OpError(format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Wraps a single output.
pub fn single(t: impl Into<TensorData>) -> OpResult {
    Ok(vec![t.into()])
}

/// Row-major data of an array (copied only when not already contiguous).
pub(crate) fn contiguous(x: &ArrayD<f32>) -> std::borrow::Cow<'_, [f32]> {
    match x.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    }
}

/// The values of a float input given as a tensor of any kind (8/16-bit integer tensors are held
/// as f32, integer constants may come as i64), row-major.
pub(crate) fn float_values(t: &TensorData) -> Vec<f32> {
    match t {
        TensorData::F32(a) => a.iter().copied().collect(),
        TensorData::I64(a) => a.iter().map(|&v| v as f32).collect(),
    }
}

/// Builds an array from a shape and row-major data.
fn array_from<T>(shape: &[usize], data: Vec<T>) -> Result<ArrayD<T>, OpError> {
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .map_err(|e| OpError(format!("internal error building a {shape:?} tensor: {e}")))
}

/// Largest tensor a kernel will create (elements); guards against absurd shapes.
const MAX_ELEMENTS: usize = 1 << 32;

/// Number of elements of `shape`, or an error when it overflows or exceeds [`MAX_ELEMENTS`].
fn checked_len(shape: &[usize]) -> Result<usize, OpError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| OpError(format!("shape {shape:?} is too large")))
}

/// Outputs with at least this many elements are computed in parallel (see [`go_parallel`]).
const PAR_MIN: usize = 32 * 1024;
/// The same threshold when the kernel does not run on a rayon worker thread.
const PAR_MIN_OFF_POOL: usize = 1 << 18;

/// Whether a pass over `len` elements is worth splitting over rayon. Plans normally run on a
/// rayon worker, where forking is cheap; from any other thread (hooked runs, direct calls)
/// each parallel loop wakes the pool and blocks the caller, which costs more than a small
/// pass takes, so those stay serial up to a larger size. Results do not depend on it.
fn go_parallel(len: usize) -> bool {
    len >= PAR_MIN && (len >= PAR_MIN_OFF_POOL || rayon::current_thread_index().is_some())
}
