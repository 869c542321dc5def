//! Fused elementwise programs: a chain of float elementwise nodes (hard-swish spelled as
//! Add/Clip/Div/Mul, GELU as Div/Erf/Add/Mul/Mul, a bias Add and its activation, ...) compiled
//! at plan time into register instructions and run in one pass over the output, a few hundred
//! elements at a time so that every intermediate stays in L1.
//!
//! A program reads its inputs at the output's shape (an input that covers a block of the
//! output's dimensions, such as a per-channel vector, is broadcast chunk by chunk) and writes
//! into a handed-over input of the output's shape when there is one. Elementwise functions
//! commute with broadcasting, so computing every intermediate at the output's shape gives the
//! same values as the nodes one by one.

use ndarray::ArrayD;
use rayon::prelude::*;

use super::unary::UnaryOp;
use super::{Block, CHUNK, block_of, broadcast_shapes, math};
use crate::engine::buffers::recycled;
use crate::engine::ops::{Args, OpError, array_from, go_parallel};
use crate::ir::{Node, TensorData};

/// Elements per evaluation step (each register holds this many).
const STEP: usize = 512;

/// A float function of two values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
}

impl BinaryOp {
    /// The op of a two-input node, if it is one of these.
    pub fn of_node(node: &Node) -> Option<BinaryOp> {
        if node.inputs.len() != 2 {
            return None;
        }
        Some(match node.op_type.as_str() {
            "Add" => BinaryOp::Add,
            "Sub" => BinaryOp::Sub,
            "Mul" => BinaryOp::Mul,
            "Div" => BinaryOp::Div,
            "Pow" => BinaryOp::Pow,
            "Min" => BinaryOp::Min,
            "Max" => BinaryOp::Max,
            _ => return None,
        })
    }

    #[inline(always)]
    fn at(self, x: f32, y: f32) -> f32 {
        match self {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Pow => x.powf(y),
            // NaN-propagating, as the Min and Max kernels
            BinaryOp::Min => {
                if x.is_nan() || x < y {
                    x
                } else {
                    y
                }
            }
            BinaryOp::Max => {
                if x.is_nan() || x > y {
                    x
                } else {
                    y
                }
            }
        }
    }
}

/// Where an instruction operand comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Src {
    /// A register (an earlier instruction's result).
    Reg(usize),
    /// The program's input `k` (the step's input `k`).
    Input(usize),
    /// A one-element constant.
    Scalar(f32),
}

#[derive(Debug, Clone, PartialEq)]
enum Instr {
    Unary {
        op: UnaryOp,
        src: Src,
        dst: usize,
    },
    Binary {
        op: BinaryOp,
        a: Src,
        b: Src,
        dst: usize,
    },
}

/// Compiled elementwise nodes with one result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Program {
    inputs: usize,
    regs: usize,
    instrs: Vec<Instr>,
    result: Src,
}

/// Whether `node` can be part of a program (a float unary op or a two-input arithmetic op).
pub(crate) fn is_fusable(node: &Node) -> bool {
    node.in_default_domain()
        && node.outputs.len() == 1
        && (BinaryOp::of_node(node).is_some()
            || matches!(
                node.op_type.as_str(),
                "Relu"
                    | "LeakyRelu"
                    | "Clip"
                    | "Sigmoid"
                    | "HardSigmoid"
                    | "HardSwish"
                    | "Tanh"
                    | "Erf"
                    | "Exp"
                    | "Log"
                    | "Sqrt"
                    | "Neg"
                    | "Abs"
                    | "Reciprocal"
                    | "Gelu"
            ))
}

impl Program {
    /// Compiles `nodes` (in execution order; the last one's output is the result). Tensors
    /// named in `inputs` are the program's inputs; `constant` gives the value of any other
    /// tensor a node reads (initializers), of which only one-element floats are accepted.
    /// None when a node cannot be compiled.
    pub fn compile<'a>(
        nodes: &[&Node],
        opset: i64,
        inputs: &[String],
        constant: impl Fn(&str) -> Option<&'a TensorData>,
    ) -> Option<Program> {
        let last = nodes.last()?;
        // how many reads each node output still has inside the program
        let mut reads = std::collections::HashMap::<&str, usize>::new();
        for node in nodes {
            for name in &node.inputs {
                *reads.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut value_of = std::collections::HashMap::<&str, Src>::new();
        let mut free: Vec<usize> = Vec::new();
        let mut regs = 0usize;
        let mut instrs = Vec::with_capacity(nodes.len());
        let scalar = |name: &str| -> Option<f32> {
            match constant(name)? {
                TensorData::F32(a) if a.len() == 1 => a.iter().next().copied(),
                _ => None,
            }
        };
        for node in nodes {
            if !is_fusable(node) {
                return None;
            }
            let src = |name: &str| -> Option<Src> {
                if let Some(&s) = value_of.get(name) {
                    return Some(s);
                }
                if let Some(k) = inputs.iter().position(|i| i == name) {
                    return Some(Src::Input(k));
                }
                scalar(name).map(Src::Scalar)
            };
            let dst = free.pop().unwrap_or_else(|| {
                regs += 1;
                regs - 1
            });
            let instr = if let Some(op) = BinaryOp::of_node(node) {
                Instr::Binary {
                    op,
                    a: src(&node.inputs[0])?,
                    b: src(&node.inputs[1])?,
                    dst,
                }
            } else {
                // Clip's bounds must be constants; other unary ops read input 0 only.
                let bounds: Vec<Option<&TensorData>> = node
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(k, name)| if k == 0 { None } else { constant(name) })
                    .collect();
                if node
                    .inputs
                    .iter()
                    .skip(1)
                    .zip(bounds.iter().skip(1))
                    .any(|(name, bound)| !name.is_empty() && bound.is_none())
                {
                    return None;
                }
                let op = UnaryOp::of_node(node, opset, &Args::borrowed(&bounds)).ok()??;
                Instr::Unary {
                    op,
                    src: src(node.inputs.first()?)?,
                    dst,
                }
            };
            // registers whose value has no read left are free again (after `dst` was taken,
            // so that no instruction writes a register it reads)
            for name in &node.inputs {
                let left = reads.get_mut(name.as_str())?;
                *left -= 1;
                if *left == 0
                    && let Some(Src::Reg(r)) = value_of.get(name.as_str())
                {
                    free.push(*r);
                }
            }
            value_of.insert(node.outputs[0].as_str(), Src::Reg(dst));
            instrs.push(instr);
        }
        Some(Program {
            inputs: inputs.len(),
            regs,
            instrs,
            result: *value_of.get(last.outputs[0].as_str())?,
        })
    }

    /// Runs the program on `args` (one per program input). None when an input is not a float
    /// tensor or its shape does not broadcast to the output as a block: the caller then runs
    /// the nodes one by one.
    pub fn run(&self, args: &mut Args<'_>) -> Option<Result<TensorData, OpError>> {
        if args.len() != self.inputs {
            return None;
        }
        let mut shape: Vec<usize> = Vec::new();
        for k in 0..self.inputs {
            let a = args.get(k)?.as_f32()?;
            shape = broadcast_shapes(&shape, a.shape()).ok()?;
        }
        let len: usize = shape.iter().product();
        let mut kinds = Vec::with_capacity(self.inputs);
        for k in 0..self.inputs {
            let a = args.get(k)?.as_f32()?;
            a.as_slice()?;
            kinds.push(if a.shape() == shape.as_slice() {
                None
            } else {
                Some(block_of(a.shape(), &shape)?)
            });
        }
        // the output goes into a handed-over input of the output's shape, if any
        let reuse = (0..self.inputs).find(|&k| kinds[k].is_none() && args.is_owned(k));
        let mut out: ArrayD<f32> = match reuse.and_then(|k| args.take(k)) {
            Some(TensorData::F32(a)) => a,
            _ => match array_from(&shape, recycled::<f32>(len)) {
                Ok(a) => a,
                Err(e) => return Some(Err(e)),
            },
        };
        {
            let inputs: Vec<Option<&[f32]>> = (0..self.inputs)
                .map(|k| match reuse {
                    Some(r) if r == k => None,
                    _ => args.get(k).and_then(TensorData::as_f32)?.as_slice(),
                })
                .collect();
            let out_slice = out.as_slice_mut()?;
            let task = |start: usize, o: &mut [f32]| {
                let mut scratch = vec![0.0f32; (self.regs + self.inputs) * STEP];
                let mut offset = 0;
                for part in o.chunks_mut(STEP) {
                    self.step(start + offset, part, &inputs, &kinds, reuse, &mut scratch);
                    offset += part.len();
                }
            };
            if go_parallel(len) {
                out_slice
                    .par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(c, o)| task(c * CHUNK, o));
            } else {
                task(0, out_slice);
            }
        }
        Some(Ok(TensorData::F32(out)))
    }

    /// Evaluates output elements `start..start + out.len()` into `out`.
    fn step(
        &self,
        start: usize,
        out: &mut [f32],
        inputs: &[Option<&[f32]>],
        kinds: &[Option<Block>],
        reuse: Option<usize>,
        scratch: &mut [f32],
    ) {
        let n = out.len();
        let (regs, spread) = scratch.split_at_mut(self.regs * STEP);
        // broadcast inputs, spread to this part's elements
        for (k, kind) in kinds.iter().enumerate() {
            if let (Some(block), Some(small)) = (kind, inputs[k]) {
                spread_block(small, block, start, &mut spread[k * STEP..k * STEP + n]);
            }
        }
        {
            let views: Vec<&[f32]> = (0..self.inputs)
                .map(|k| match (reuse, &kinds[k], inputs[k]) {
                    (Some(r), _, _) if r == k => &out[..],
                    (_, Some(_), _) => &spread[k * STEP..k * STEP + n],
                    (_, None, Some(full)) => &full[start..start + n],
                    (_, None, None) => &[][..],
                })
                .collect();
            for instr in &self.instrs {
                match *instr {
                    Instr::Unary { op, src, dst } => {
                        let (before, d, after) = split_reg(regs, dst, n);
                        match value(src, before, after, dst, &views) {
                            Value::Slice(x) => op.map_into(x, d),
                            Value::Scalar(x) => d.fill(op.at(x)),
                        }
                    }
                    Instr::Binary { op, a, b, dst } => {
                        let (before, d, after) = split_reg(regs, dst, n);
                        let a = value(a, before, after, dst, &views);
                        let b = value(b, before, after, dst, &views);
                        binary(op, a, b, d);
                    }
                }
            }
        }
        match self.result {
            Src::Reg(r) => out.copy_from_slice(&regs[r * STEP..r * STEP + n]),
            Src::Input(k) if reuse != Some(k) => {
                if let Some(full) = inputs[k].filter(|_| kinds[k].is_none()) {
                    out.copy_from_slice(&full[start..start + n]);
                } else {
                    out.copy_from_slice(&spread[k * STEP..k * STEP + n]);
                }
            }
            Src::Input(_) => {}
            Src::Scalar(v) => out.fill(v),
        }
    }
}

/// `dst[j] = small[block index of start + j]`.
fn spread_block(small: &[f32], block: &Block, start: usize, dst: &mut [f32]) {
    if small.len() == 1 {
        dst.fill(small[0]);
        return;
    }
    let (mid, inner) = (block.mid, block.inner);
    let mut run = start / inner;
    let mut at = start % inner;
    let mut j = 0;
    while j < dst.len() {
        let take = (inner - at).min(dst.len() - j);
        dst[j..j + take].fill(small[run % mid]);
        j += take;
        run += 1;
        at = 0;
    }
}

/// Register `d` (first `n` elements) and the registers before and after it.
fn split_reg(regs: &mut [f32], d: usize, n: usize) -> (&[f32], &mut [f32], &[f32]) {
    let (before, rest) = regs.split_at_mut(d * STEP);
    let (dst, after) = rest.split_at_mut(STEP);
    (before, &mut dst[..n], after)
}

enum Value<'a> {
    Slice(&'a [f32]),
    Scalar(f32),
}

fn value<'a>(
    src: Src,
    before: &'a [f32],
    after: &'a [f32],
    dst: usize,
    views: &[&'a [f32]],
) -> Value<'a> {
    match src {
        Src::Reg(r) if r < dst => Value::Slice(&before[r * STEP..(r + 1) * STEP]),
        // the compiler never lets an instruction read the register it writes
        Src::Reg(r) => {
            let at = (r - dst - 1) * STEP;
            Value::Slice(&after[at..at + STEP])
        }
        Src::Input(k) => Value::Slice(views[k]),
        Src::Scalar(v) => Value::Scalar(v),
    }
}

fn binary(op: BinaryOp, a: Value<'_>, b: Value<'_>, d: &mut [f32]) {
    macro_rules! each {
        ($f:ident) => {
            match (a, b) {
                (Value::Slice(x), Value::Slice(y)) => math::zip_into(x, y, d, $f),
                (Value::Slice(x), Value::Scalar(y)) => math::map_into(x, d, move |v| $f(v, y)),
                (Value::Scalar(x), Value::Slice(y)) => math::map_into(y, d, move |v| $f(x, v)),
                (Value::Scalar(x), Value::Scalar(y)) => d.fill($f(x, y)),
            }
        };
    }
    let add = |x: f32, y: f32| x + y;
    let sub = |x: f32, y: f32| x - y;
    let mul = |x: f32, y: f32| x * y;
    let div = |x: f32, y: f32| x / y;
    let pow = |x: f32, y: f32| BinaryOp::Pow.at(x, y);
    let min = |x: f32, y: f32| BinaryOp::Min.at(x, y);
    let max = |x: f32, y: f32| BinaryOp::Max.at(x, y);
    match op {
        BinaryOp::Add => each!(add),
        BinaryOp::Sub => each!(sub),
        BinaryOp::Mul => each!(mul),
        BinaryOp::Div => each!(div),
        BinaryOp::Pow => each!(pow),
        BinaryOp::Min => each!(min),
        BinaryOp::Max => each!(max),
    }
}
