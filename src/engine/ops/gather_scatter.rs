//! Indexing by index tensors: GatherElements, GatherND, ScatterElements (and the deprecated
//! Scatter), ScatterND, with the scatter reductions (none, add, mul, max, min).
//!
//! Kernels work on float and integer data alike; indices may be negative (counted from the end)
//! and are checked against the dimension they index.

use std::borrow::Cow;

use ndarray::ArrayD;

use super::{OpCtx, OpError, OpResult, Registry, array_from, input, normalize_axis};
use crate::ir::TensorData;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("GatherElements", gather_elements);
    registry.add("GatherND", gather_nd);
    registry.add("ScatterElements", scatter_elements);
    registry.add("Scatter", scatter_elements);
    registry.add("ScatterND", scatter_nd);
}

/// Row-major data (borrowed when already contiguous).
pub(super) fn flat<T: Copy>(x: &ArrayD<T>) -> Cow<'_, [T]> {
    match x.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

/// Values of an index tensor (float tensors holding whole numbers are accepted).
pub(super) fn index_values(t: &TensorData, what: &str) -> Result<Vec<i64>, OpError> {
    match t {
        TensorData::I64(a) => Ok(flat(a).into_owned()),
        TensorData::F32(a) if a.iter().all(|v| v.fract() == 0.0) => {
            Ok(a.iter().map(|&v| v as i64).collect())
        }
        TensorData::F32(_) => Err(OpError(format!("{what} must be an integer tensor"))),
    }
}

/// An index into a dimension of size `dim` (negative counts from the end).
pub(super) fn resolve(i: i64, dim: usize, what: &str) -> Result<usize, OpError> {
    let j = if i < 0 { i + dim as i64 } else { i };
    if j < 0 || j >= dim as i64 {
        return Err(OpError(format!(
            "{what} {i} is out of range for a dimension of size {dim}"
        )));
    }
    Ok(j as usize)
}

/// The flat data offset of every element of an indices tensor of shape `ishape` that indexes
/// `shape` along `axis` (GatherElements, ScatterElements): the index value on `axis`, the
/// element's own position on every other axis.
fn element_offsets(
    shape: &[usize],
    ishape: &[usize],
    axis: usize,
    indices: &[i64],
) -> Result<Vec<usize>, OpError> {
    let (ds, is) = (strides(shape), strides(ishape));
    let mut offsets = Vec::with_capacity(indices.len());
    for (n, &raw) in indices.iter().enumerate() {
        let mut off = 0;
        for k in 0..shape.len() {
            let i = (n / is[k]) % ishape[k];
            let i = if k == axis {
                resolve(raw, shape[k], "index")?
            } else if i < shape[k] {
                i
            } else {
                return Err(OpError(format!(
                    "indices shape {ishape:?} exceeds data shape {shape:?} on axis {k}"
                )));
            };
            off += i * ds[k];
        }
        offsets.push(off);
    }
    Ok(offsets)
}

pub(super) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// Element types the kernels move around.
trait Elem: Copy + Default + PartialOrd + Send + Sync + 'static {
    fn add(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
}
impl Elem for f32 {
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn mul(self, other: Self) -> Self {
        self * other
    }
}
impl Elem for i64 {
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    fn mul(self, other: Self) -> Self {
        self.wrapping_mul(other)
    }
}

/// How a scatter combines an update with the value already there.
#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl Reduction {
    fn parse(ctx: &OpCtx<'_>) -> Result<Self, OpError> {
        Ok(match ctx.node.attr_string("reduction", "none")?.as_str() {
            "none" => Reduction::None,
            "add" => Reduction::Add,
            "mul" => Reduction::Mul,
            "max" => Reduction::Max,
            "min" => Reduction::Min,
            other => return Err(OpError(format!("unknown reduction '{other}'"))),
        })
    }

    fn apply<T: Elem>(self, old: T, new: T) -> T {
        match self {
            Reduction::None => new,
            Reduction::Add => old.add(new),
            Reduction::Mul => old.mul(new),
            Reduction::Max => {
                if new > old {
                    new
                } else {
                    old
                }
            }
            Reduction::Min => {
                if new < old {
                    new
                } else {
                    old
                }
            }
        }
    }
}

/// Data and updates of one kind (integers meeting floats are promoted).
enum Pair<'a> {
    F(Box<FloatPair<'a>>),
    I(&'a ArrayD<i64>, &'a ArrayD<i64>),
}

/// Float data and updates, borrowed or promoted from integers.
struct FloatPair<'a>(Cow<'a, ArrayD<f32>>, Cow<'a, ArrayD<f32>>);

fn pair<'a>(a: &'a TensorData, b: &'a TensorData) -> Pair<'a> {
    let f = |t: &'a TensorData| match t {
        TensorData::F32(x) => Cow::Borrowed(x),
        TensorData::I64(x) => Cow::Owned(x.mapv(|v| v as f32)),
    };
    match (a, b) {
        (TensorData::I64(x), TensorData::I64(y)) => Pair::I(x, y),
        _ => Pair::F(Box::new(FloatPair(f(a), f(b)))),
    }
}

// ---- GatherElements ---------------------------------------------------------------------------

fn gather_elements(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let data = input(inputs, 0)?;
    let indices_t = input(inputs, 1)?;
    let shape = data.shape().to_vec();
    let ishape = indices_t.shape().to_vec();
    if shape.is_empty() || ishape.len() != shape.len() {
        return Err(OpError(format!(
            "data {shape:?} and indices {ishape:?} must have the same rank >= 1"
        )));
    }
    let axis = normalize_axis(ctx.node.attr_int("axis", 0)?, shape.len())?;
    let indices = index_values(indices_t, "index")?;
    let offsets = element_offsets(&shape, &ishape, axis, &indices)?;
    fn take<T: Copy>(a: &ArrayD<T>, offsets: &[usize], shape: &[usize]) -> OpResult
    where
        ArrayD<T>: Into<TensorData>,
    {
        let d = flat(a);
        let v: Vec<T> = offsets.iter().map(|&o| d[o]).collect();
        Ok(vec![array_from(shape, v)?.into()])
    }
    match data {
        TensorData::F32(a) => take(a, &offsets, &ishape),
        TensorData::I64(a) => take(a, &offsets, &ishape),
    }
}

// ---- GatherND ---------------------------------------------------------------------------------

/// For GatherND/ScatterND: the flat offset of every index tuple (last axis of `indices`) into
/// `shape`, after `batch_dims` leading batch axes; returns (offsets, slice length).
fn nd_offsets(
    shape: &[usize],
    indices: &TensorData,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize), OpError> {
    let ishape = indices.shape();
    let k = *ishape
        .last()
        .ok_or_else(|| OpError("indices must have rank >= 1".into()))?;
    if batch_dims >= ishape.len() || batch_dims + k > shape.len() {
        return Err(OpError(format!(
            "indices shape {ishape:?} does not fit data shape {shape:?} with batch_dims {batch_dims}"
        )));
    }
    if shape[..batch_dims] != ishape[..batch_dims] {
        return Err(OpError(format!(
            "batch dimensions differ: data {shape:?}, indices {ishape:?}"
        )));
    }
    let values = index_values(indices, "index")?;
    let ds = strides(shape);
    let slice: usize = shape[batch_dims + k..].iter().product();
    let batch_stride: usize = shape[batch_dims..].iter().product();
    let per_batch: usize = ishape[batch_dims..ishape.len() - 1].iter().product();
    let tuples = values
        .len()
        .checked_div(k)
        .unwrap_or_else(|| ishape[..ishape.len() - 1].iter().product());
    let mut offsets = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let batch = t / per_batch.max(1);
        let mut off = batch * batch_stride;
        for j in 0..k {
            let axis = batch_dims + j;
            off += resolve(values[t * k + j], shape[axis], "index")? * ds[axis];
        }
        offsets.push(off);
    }
    Ok((offsets, slice))
}

fn gather_nd(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let data = input(inputs, 0)?;
    let indices = input(inputs, 1)?;
    let batch_dims = usize::try_from(ctx.node.attr_int("batch_dims", 0)?)
        .map_err(|_| OpError("batch_dims must be >= 0".into()))?;
    let shape = data.shape().to_vec();
    let (offsets, slice) = nd_offsets(&shape, indices, batch_dims)?;
    let ishape = indices.shape();
    let k = ishape[ishape.len() - 1];
    let mut out_shape = ishape[..ishape.len() - 1].to_vec();
    out_shape.extend_from_slice(&shape[batch_dims + k..]);
    fn take<T: Copy>(a: &ArrayD<T>, offsets: &[usize], slice: usize, shape: &[usize]) -> OpResult
    where
        ArrayD<T>: Into<TensorData>,
    {
        let d = flat(a);
        let mut v = Vec::with_capacity(offsets.len() * slice);
        for &o in offsets {
            v.extend_from_slice(&d[o..o + slice]);
        }
        Ok(vec![array_from(shape, v)?.into()])
    }
    match data {
        TensorData::F32(a) => take(a, &offsets, slice, &out_shape),
        TensorData::I64(a) => take(a, &offsets, slice, &out_shape),
    }
}

// ---- ScatterElements / Scatter --------------------------------------------------------------

fn scatter_elements(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let data = input(inputs, 0)?;
    let indices_t = input(inputs, 1)?;
    let updates = input(inputs, 2)?;
    let shape = data.shape().to_vec();
    let ishape = indices_t.shape().to_vec();
    if updates.shape() != ishape.as_slice() || ishape.len() != shape.len() {
        return Err(OpError(format!(
            "indices {ishape:?} and updates {:?} must have the same shape and data's rank ({})",
            updates.shape(),
            shape.len()
        )));
    }
    if shape.is_empty() {
        return Err(OpError("data must have rank >= 1".into()));
    }
    let axis = normalize_axis(ctx.node.attr_int("axis", 0)?, shape.len())?;
    let reduction = Reduction::parse(ctx)?;
    let indices = index_values(indices_t, "index")?;
    let offsets = element_offsets(&shape, &ishape, axis, &indices)?;
    fn put<T: Elem>(
        a: &ArrayD<T>,
        u: &ArrayD<T>,
        offsets: &[usize],
        reduction: Reduction,
    ) -> OpResult
    where
        ArrayD<T>: Into<TensorData>,
    {
        let mut d = flat(a).into_owned();
        for (&o, &v) in offsets.iter().zip(flat(u).iter()) {
            d[o] = reduction.apply(d[o], v);
        }
        Ok(vec![array_from(a.shape(), d)?.into()])
    }
    match pair(data, updates) {
        Pair::F(p) => put(&p.0, &p.1, &offsets, reduction),
        Pair::I(a, u) => put(a, u, &offsets, reduction),
    }
}

// ---- ScatterND --------------------------------------------------------------------------------

fn scatter_nd(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let data = input(inputs, 0)?;
    let indices = input(inputs, 1)?;
    let updates = input(inputs, 2)?;
    let reduction = Reduction::parse(ctx)?;
    let shape = data.shape().to_vec();
    let (offsets, slice) = nd_offsets(&shape, indices, 0)?;
    let ishape = indices.shape();
    let k = ishape[ishape.len() - 1];
    let mut want = ishape[..ishape.len() - 1].to_vec();
    want.extend_from_slice(&shape[k..]);
    if updates.shape() != want.as_slice() {
        return Err(OpError(format!(
            "updates have shape {:?}, expected {want:?}",
            updates.shape()
        )));
    }
    fn put<T: Elem>(
        a: &ArrayD<T>,
        u: &ArrayD<T>,
        offsets: &[usize],
        slice: usize,
        reduction: Reduction,
    ) -> OpResult
    where
        ArrayD<T>: Into<TensorData>,
    {
        let mut d = flat(a).into_owned();
        let u = flat(u);
        for (n, &o) in offsets.iter().enumerate() {
            for j in 0..slice {
                d[o + j] = reduction.apply(d[o + j], u[n * slice + j]);
            }
        }
        Ok(vec![array_from(a.shape(), d)?.into()])
    }
    match pair(data, updates) {
        Pair::F(p) => put(&p.0, &p.1, &offsets, slice, reduction),
        Pair::I(a, u) => put(a, u, &offsets, slice, reduction),
    }
}
