//! Einsum: the equation parsed into labels (letters, and one label per ellipsis axis),
//! repeated labels within an operand reduced to their diagonal, labels nobody else needs
//! summed out early, then the operands contracted left to right, each pair as a permutation to
//! `[batch, free, contracted]` and a batched GEMM.
//!
//! The implicit output (no `->`) holds the ellipsis axes, then the letters that occur exactly
//! once, in ASCII order. Size-1 axes broadcast against the other operands.

use rayon::prelude::*;

use ndarray::ArrayD;

use super::gather_scatter::strides;
use super::gemm::{Mat, gemm_is_threaded, sgemm};
use super::{OpCtx, OpError, OpResult, Registry, array_from, checked_len, input_f32, single};
use crate::ir::TensorData;

#[cfg(test)]
mod tests;

pub fn register(registry: &mut Registry) {
    registry.add("Einsum", einsum_op);
}

/// Labels of letters are their ASCII codes; ellipsis axes get labels from here on.
const ELLIPSIS_BASE: usize = 128;

/// One operand's subscripts: labels per axis (ellipsis axes already expanded).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Equation {
    pub inputs: Vec<Vec<usize>>,
    pub output: Vec<usize>,
}

/// A term split into letters before the ellipsis, whether it has one, and letters after.
fn split_term(term: &str, equation: &str) -> Result<(Vec<usize>, bool, Vec<usize>), OpError> {
    let bad = |why: &str| OpError(format!("equation '{equation}': {why}"));
    let (head, tail, ellipsis) = match term.find("...") {
        Some(p) => (&term[..p], &term[p + 3..], true),
        None => (term, "", false),
    };
    let letters = |s: &str| -> Result<Vec<usize>, OpError> {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    Ok(c as usize)
                } else {
                    Err(bad(&format!("'{c}' is not a subscript letter")))
                }
            })
            .collect()
    };
    Ok((letters(head)?, ellipsis, letters(tail)?))
}

/// Parses `equation` for operands of the given ranks.
pub(super) fn parse(equation: &str, ranks: &[usize]) -> Result<Equation, OpError> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let bad = |why: String| OpError(format!("equation '{equation}': {why}"));
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(bad(format!(
            "{} terms for {} inputs",
            terms.len(),
            ranks.len()
        )));
    }
    let mut ellipsis_rank = 0;
    let mut parsed = Vec::with_capacity(terms.len());
    for (term, &rank) in terms.iter().zip(ranks) {
        let (head, has_ellipsis, tail) = split_term(term, equation)?;
        let named = head.len() + tail.len();
        let covered = if has_ellipsis {
            rank.checked_sub(named)
        } else {
            (rank == named).then_some(0)
        }
        .ok_or_else(|| {
            bad(format!(
                "term '{term}' does not fit an input of rank {rank}"
            ))
        })?;
        ellipsis_rank = ellipsis_rank.max(covered);
        parsed.push((head, covered, tail));
    }
    // Ellipsis axes align from the right: an operand covering e of E axes uses the last e.
    let ellipsis_labels =
        |covered: usize| (ellipsis_rank - covered..ellipsis_rank).map(|k| ELLIPSIS_BASE + k);
    let inputs: Vec<Vec<usize>> = parsed
        .iter()
        .map(|(head, covered, tail)| {
            head.iter()
                .copied()
                .chain(ellipsis_labels(*covered))
                .chain(tail.iter().copied())
                .collect()
        })
        .collect();
    let output = match rhs {
        Some(rhs) => {
            let (head, has_ellipsis, tail) = split_term(rhs, equation)?;
            let mut out: Vec<usize> = head;
            if has_ellipsis {
                out.extend(ellipsis_labels(ellipsis_rank));
            }
            out.extend(tail);
            for (k, l) in out.iter().enumerate() {
                if out[..k].contains(l) {
                    return Err(bad("a subscript repeats in the output".into()));
                }
                if !inputs.iter().any(|t| t.contains(l)) {
                    return Err(bad(format!(
                        "output subscript '{}' appears in no input",
                        char::from(*l as u8)
                    )));
                }
            }
            out
        }
        None => {
            let mut letters: Vec<usize> = (0..ELLIPSIS_BASE)
                .filter(|l| inputs.iter().flatten().filter(|&&x| x == *l).count() == 1)
                .collect();
            letters.sort_unstable();
            ellipsis_labels(ellipsis_rank).chain(letters).collect()
        }
    };
    Ok(Equation { inputs, output })
}

/// A tensor whose axes carry labels (each label once).
struct Labeled {
    labels: Vec<usize>,
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Reads `data` through per-axis element strides into a new row-major array of `shape`.
fn gather(data: &[f32], shape: &[usize], strides: &[usize]) -> Vec<f32> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    if shape.is_empty() {
        out.push(data[0]);
        return out;
    }
    let rank = shape.len();
    let (last, last_stride) = (shape[rank - 1], strides[rank - 1]);
    let mut index = vec![0usize; rank - 1];
    let mut base = 0usize;
    loop {
        if last_stride == 1 {
            out.extend_from_slice(&data[base..base + last]);
        } else {
            out.extend((0..last).map(|j| data[base + j * last_stride]));
        }
        let mut k = rank - 1;
        loop {
            if k == 0 {
                return out;
            }
            k -= 1;
            index[k] += 1;
            base += strides[k];
            if index[k] < shape[k] {
                break;
            }
            base -= strides[k] * shape[k];
            index[k] = 0;
        }
    }
}

impl Labeled {
    /// An operand with its diagonals taken for repeated labels.
    fn new(x: &ArrayD<f32>, labels: &[usize]) -> Result<Labeled, OpError> {
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout");
        let in_strides = strides(x.shape());
        let mut unique: Vec<usize> = Vec::new();
        let mut shape: Vec<usize> = Vec::new();
        let mut strides: Vec<usize> = Vec::new();
        for (axis, &l) in labels.iter().enumerate() {
            let d = x.shape()[axis];
            match unique.iter().position(|&u| u == l) {
                Some(k) => {
                    if shape[k] != d {
                        return Err(OpError(format!(
                            "a repeated subscript spans axes of sizes {} and {d}",
                            shape[k]
                        )));
                    }
                    strides[k] += in_strides[axis];
                }
                None => {
                    unique.push(l);
                    shape.push(d);
                    strides.push(in_strides[axis]);
                }
            }
        }
        let data = if unique.len() == labels.len() {
            data.to_vec()
        } else {
            gather(data, &shape, &strides)
        };
        Ok(Labeled {
            labels: unique,
            shape,
            data,
        })
    }

    fn size_of(&self, label: usize) -> Option<usize> {
        self.labels
            .iter()
            .position(|&l| l == label)
            .map(|k| self.shape[k])
    }

    /// The axes in the order of `labels` (each present here), with axes of size 1 broadcast
    /// to `sizes`.
    fn arranged(&self, labels: &[usize], sizes: &[usize]) -> Vec<f32> {
        let own = strides(&self.shape);
        let strides: Vec<usize> = labels
            .iter()
            .zip(sizes)
            .map(|(l, &size)| {
                let k = self
                    .labels
                    .iter()
                    .position(|x| x == l)
                    .expect("label present");
                if self.shape[k] == 1 && size != 1 {
                    0
                } else {
                    own[k]
                }
            })
            .collect();
        gather(&self.data, sizes, &strides)
    }

    /// Sums out every label not in `keep`.
    fn sum_except(self, keep: &[usize]) -> Labeled {
        let (kept, summed): (Vec<usize>, Vec<usize>) =
            self.labels.iter().partition(|l| keep.contains(l));
        if summed.is_empty() {
            return self;
        }
        let order: Vec<usize> = kept.iter().chain(&summed).copied().collect();
        let sizes: Vec<usize> = order
            .iter()
            .map(|&l| self.size_of(l).unwrap_or(1))
            .collect();
        let data = self.arranged(&order, &sizes);
        let block: usize = sizes[kept.len()..].iter().product();
        let kept_shape = sizes[..kept.len()].to_vec();
        let data = if block == 0 {
            vec![0.0; kept_shape.iter().product()]
        } else {
            data.chunks(block).map(|c| c.iter().sum()).collect()
        };
        Labeled {
            labels: kept,
            shape: kept_shape,
            data,
        }
    }
}

/// The size of `label` across two operands (1 broadcasts).
fn joint_size(a: &Labeled, b: &Labeled, label: usize) -> Result<usize, OpError> {
    match (a.size_of(label), b.size_of(label)) {
        (Some(x), Some(y)) if x == y || y == 1 => Ok(x),
        (Some(1), Some(y)) => Ok(y),
        (Some(x), Some(y)) => Err(OpError(format!(
            "subscript '{}' has sizes {x} and {y}",
            label_name(label)
        ))),
        (Some(x), None) | (None, Some(x)) => Ok(x),
        (None, None) => Ok(1),
    }
}

fn label_name(label: usize) -> String {
    if label < ELLIPSIS_BASE {
        char::from(label as u8).to_string()
    } else {
        format!("...[{}]", label - ELLIPSIS_BASE)
    }
}

/// Contracts two operands, keeping the labels in `keep`.
fn contract(a: Labeled, b: Labeled, keep: &[usize]) -> Result<Labeled, OpError> {
    // Labels only one side has and nobody needs are summed out first.
    let a_needed: Vec<usize> = keep.iter().chain(&b.labels).copied().collect();
    let b_needed: Vec<usize> = keep.iter().chain(&a.labels).copied().collect();
    let (a, b) = (a.sum_except(&a_needed), b.sum_except(&b_needed));
    let shared = |l: &usize| b.labels.contains(l);
    let batch: Vec<usize> = a
        .labels
        .iter()
        .filter(|l| shared(l) && keep.contains(l))
        .copied()
        .collect();
    let summed: Vec<usize> = a
        .labels
        .iter()
        .filter(|l| shared(l) && !keep.contains(l))
        .copied()
        .collect();
    let a_free: Vec<usize> = a.labels.iter().filter(|l| !shared(l)).copied().collect();
    let b_free: Vec<usize> = b
        .labels
        .iter()
        .filter(|l| !a.labels.contains(l))
        .copied()
        .collect();
    let sizes = |labels: &[usize]| -> Result<Vec<usize>, OpError> {
        labels.iter().map(|&l| joint_size(&a, &b, l)).collect()
    };
    let (bs, ms, ks, ns) = (
        sizes(&batch)?,
        sizes(&a_free)?,
        sizes(&summed)?,
        sizes(&b_free)?,
    );
    let (nb, m, k, n) = (
        bs.iter().product::<usize>(),
        ms.iter().product::<usize>(),
        ks.iter().product::<usize>(),
        ns.iter().product::<usize>(),
    );
    let mut out_shape: Vec<usize> = bs.iter().chain(&ms).chain(&ns).copied().collect();
    checked_len(&out_shape)?;
    let a_order: Vec<usize> = batch
        .iter()
        .chain(&a_free)
        .chain(&summed)
        .copied()
        .collect();
    let b_order: Vec<usize> = batch
        .iter()
        .chain(&summed)
        .chain(&b_free)
        .copied()
        .collect();
    let a_sizes: Vec<usize> = bs.iter().chain(&ms).chain(&ks).copied().collect();
    let b_sizes: Vec<usize> = bs.iter().chain(&ks).chain(&ns).copied().collect();
    let ad = a.arranged(&a_order, &a_sizes);
    let bd = b.arranged(&b_order, &b_sizes);
    let mut out = vec![0f32; nb * m * n];
    let product = |i: usize, c: &mut [f32]| {
        let am = Mat::rows(&ad, i * m * k, k);
        let bm = Mat::rows(&bd, i * k * n, n);
        sgemm(m, k, n, 1.0, am, bm, 0.0, c, n);
    };
    if m * n > 0 {
        if nb > 1 && !gemm_is_threaded(m, k, n) && nb * m * n * k.max(1) >= 1 << 15 {
            out.par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, c)| product(i, c));
        } else {
            for (i, c) in out.chunks_mut(m * n).enumerate() {
                product(i, c);
            }
        }
    }
    let labels: Vec<usize> = batch.into_iter().chain(a_free).chain(b_free).collect();
    if labels.is_empty() {
        out_shape.clear();
    }
    Ok(Labeled {
        labels,
        shape: out_shape,
        data: out,
    })
}

fn einsum_op(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let equation = ctx.node.attr_string("equation", "")?;
    if inputs.is_empty() {
        return Err(OpError("expects at least one input".into()));
    }
    let arrays: Vec<&ArrayD<f32>> = (0..inputs.len())
        .map(|i| input_f32(inputs, i))
        .collect::<Result<_, _>>()?;
    let ranks: Vec<usize> = arrays.iter().map(|a| a.ndim()).collect();
    let eq = parse(&equation, &ranks)?;
    let mut operands: Vec<Labeled> = arrays
        .iter()
        .zip(&eq.inputs)
        .map(|(a, l)| Labeled::new(a, l))
        .collect::<Result<_, _>>()?;
    // Labels each operand must keep: the output's and any other operand's.
    let needed_after = |operands: &[Labeled], from: usize| -> Vec<usize> {
        eq.output
            .iter()
            .chain(operands[from..].iter().flat_map(|o| o.labels.iter()))
            .copied()
            .collect()
    };
    let first = operands.remove(0);
    let mut acc = first.sum_except(&needed_after(&operands, 0));
    while !operands.is_empty() {
        let next = operands.remove(0);
        let keep = needed_after(&operands, 0);
        acc = contract(acc, next, &keep)?;
    }
    let acc = acc.sum_except(&eq.output);
    let sizes: Vec<usize> = eq
        .output
        .iter()
        .map(|&l| acc.size_of(l).unwrap_or(1))
        .collect();
    let data = acc.arranged(&eq.output, &sizes);
    single(array_from(&sizes, data)?)
}
