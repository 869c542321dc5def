//! Transpose as blocked 2-D transposes.
//!
//! Axes of size 1 are dropped and axes that stay neighbours are merged. If the innermost axis
//! stays innermost, the output is a sequence of contiguous row copies. Otherwise two axes
//! matter: the input's innermost (contiguous reads) and the output's innermost (contiguous
//! writes); for every position of the other axes, the plane they span is transposed in small
//! square tiles, so that reads and writes both stay within a few cache lines. Planes are split
//! over rayon by the output's outermost axis when it is one of the other axes.

use rayon::prelude::*;

use super::*;
use crate::engine::buffers::recycled;

/// Tile side of the 2-D transposes.
const TILE: usize = 16;
/// Outputs at least this large are split over rayon.
const PAR_MIN_LEN: usize = 1 << 16;

pub(super) fn transpose(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input(inputs, 0)?;
    let rank = x.shape().len();
    let perm: Vec<usize> = match ctx.node.attr_ints("perm")? {
        Some(p) => {
            let perm = normalize_axes(&p, rank);
            match perm {
                Ok(perm) if perm.len() == rank => perm,
                _ => {
                    return Err(OpError(format!(
                        "perm {p:?} is not a permutation of {rank} axes"
                    )));
                }
            }
        }
        None => (0..rank).rev().collect(),
    };
    single(each_kind!(x, a => permute(a, &perm)?))
}

/// `a` with its axes permuted (`out.shape[k] = a.shape[perm[k]]`), row-major.
pub(crate) fn permute<T: Elem>(a: &ArrayD<T>, perm: &[usize]) -> Result<ArrayD<T>, OpError> {
    let out_shape: Vec<usize> = perm.iter().map(|&p| a.shape()[p]).collect();
    let data = flat(a);
    let len = data.len();
    let (dims, perm) = simplify(a.shape(), perm);
    let mut out = recycled::<T>(len); // every element is written below
    if len > 0 {
        permute_into(&data, &dims, &perm, &mut out);
    }
    array_from(&out_shape, out)
}

/// Drops size-1 axes and merges input axes that stay adjacent and in order in the output.
/// Returns the merged input dims and the permutation over them.
fn simplify(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let kept: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
    // groups of input axes, in output order, each a run p, p+1, ... of kept axes
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for p in kept {
        match groups.last_mut() {
            Some(g) if *g.last().unwrap_or(&usize::MAX) + 1 == p => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    // an axis between two merged ones must have size 1 to be mergeable; the run check above
    // only merged consecutive input axes, so the groups are input-contiguous
    let mut by_input: Vec<(usize, usize)> =
        groups.iter().enumerate().map(|(k, g)| (g[0], k)).collect();
    by_input.sort_unstable();
    let dims: Vec<usize> = by_input
        .iter()
        .map(|&(_, k)| groups[k].iter().map(|&p| shape[p]).product())
        .collect();
    // group k (output position k) is merged input axis `rank_of[k]`
    let mut rank_of = vec![0; groups.len()];
    for (i, &(_, k)) in by_input.iter().enumerate() {
        rank_of[k] = i;
    }
    (dims, rank_of)
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// Writes the permutation of `x` (row-major over `dims`) into `out`.
fn permute_into<T: Elem>(x: &[T], dims: &[usize], perm: &[usize], out: &mut [T]) {
    let r = dims.len();
    if r <= 1 {
        out.copy_from_slice(x);
        return;
    }
    let in_strides = strides(dims);
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let out_strides = strides(&out_dims);
    // per output position: the input stride of that axis
    let read: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    // the output position of the input's innermost axis
    let q = perm.iter().position(|&p| p == r - 1).unwrap_or(r - 1);
    let plan = Plane {
        // output axis r-1 (rows of the plane as read: input stride read[r-1]) and q (contiguous)
        a_len: out_dims[r - 1],
        a_read: read[r - 1],
        b_len: out_dims[q],
        b_write: out_strides[q],
        inner_copy: q == r - 1,
    };
    // the other output positions, outermost first
    let others: Vec<usize> = (0..r).filter(|&k| k != q && k != r - 1).collect();
    if !others.is_empty() && others[0] == 0 && out.len() >= PAR_MIN_LEN && out_dims[0] > 1 {
        let rest = &others[1..];
        out.par_chunks_mut(out_strides[0])
            .enumerate()
            .for_each(|(i, o)| {
                walk(
                    x,
                    i * read[0],
                    o,
                    &plan,
                    rest,
                    &out_dims,
                    &read,
                    &out_strides,
                    0,
                );
            });
    } else {
        walk(x, 0, out, &plan, &others, &out_dims, &read, &out_strides, 0);
    }
}

/// The 2-D problem at the core: output axis r-1 (`a`, contiguous writes) against the output
/// axis holding the input's innermost axis (`b`, contiguous reads).
struct Plane {
    a_len: usize,
    a_read: usize,
    b_len: usize,
    b_write: usize,
    /// The input's innermost axis is the output's innermost: rows are plain copies.
    inner_copy: bool,
}

/// Visits every position of the output axes `others` (odometer), then transposes the plane at
/// input offset `in_base` into `out` at offset `out_base`.
#[allow(clippy::too_many_arguments)]
fn walk<T: Elem>(
    x: &[T],
    in_base: usize,
    out: &mut [T],
    plane: &Plane,
    others: &[usize],
    out_dims: &[usize],
    read: &[usize],
    out_strides: &[usize],
    out_base: usize,
) {
    match others.split_first() {
        Some((&k, rest)) => {
            for i in 0..out_dims[k] {
                walk(
                    x,
                    in_base + i * read[k],
                    out,
                    plane,
                    rest,
                    out_dims,
                    read,
                    out_strides,
                    out_base + i * out_strides[k],
                );
            }
        }
        None => transpose_plane(x, in_base, out, out_base, plane),
    }
}

fn transpose_plane<T: Elem>(x: &[T], in_base: usize, out: &mut [T], out_base: usize, p: &Plane) {
    if p.inner_copy {
        let n = p.a_len;
        out[out_base..out_base + n].copy_from_slice(&x[in_base..in_base + n]);
        return;
    }
    // out[out_base + b*b_write + a] = x[in_base + a*a_read + b]
    for b0 in (0..p.b_len).step_by(TILE) {
        let b1 = (b0 + TILE).min(p.b_len);
        for a0 in (0..p.a_len).step_by(TILE) {
            let a1 = (a0 + TILE).min(p.a_len);
            for b in b0..b1 {
                let row = &mut out[out_base + b * p.b_write + a0..out_base + b * p.b_write + a1];
                for (o, a) in row.iter_mut().zip(a0..a1) {
                    *o = x[in_base + a * p.a_read + b];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::permute;
    use crate::engine::ops::testutil::Rng;

    /// Every permutation of small shapes (with size-1 axes, mergeable neighbours, large planes
    /// and the pixel-shuffle layout) against ndarray's strided copy.
    #[test]
    fn permutations_match_the_strided_copy() {
        let shapes: [&[usize]; 7] = [
            &[5],
            &[3, 17],
            &[2, 1, 19, 33],
            &[4, 3, 5, 2],
            &[1, 1, 3, 3, 20, 21],
            &[2, 40, 70],
            &[3, 130, 1, 9],
        ];
        let mut rng = Rng::new(11);
        for shape in shapes {
            let x = rng.array(shape);
            let rank = shape.len();
            let mut perm: Vec<usize> = (0..rank).collect();
            // every permutation via Heap's algorithm
            let mut c = vec![0; rank];
            let check = |perm: &[usize]| {
                let want = x
                    .view()
                    .permuted_axes(IxDyn(perm))
                    .as_standard_layout()
                    .into_owned();
                let got = permute(&x, perm).expect("permutes");
                assert_eq!(got, want, "shape {shape:?} perm {perm:?}");
            };
            check(&perm);
            let mut i = 0;
            while i < rank {
                if c[i] < i {
                    if i % 2 == 0 {
                        perm.swap(0, i);
                    } else {
                        perm.swap(c[i], i);
                    }
                    check(&perm);
                    c[i] += 1;
                    i = 0;
                } else {
                    c[i] = 0;
                    i += 1;
                }
            }
        }
        // integers and a large parallel case
        let big = ArrayD::from_shape_fn(IxDyn(&[8, 64, 33, 9]), |i| {
            (i[0] * 100_000 + i[1] * 1000 + i[2] * 10 + i[3]) as i64
        });
        let perm = [0, 2, 3, 1];
        let want = big
            .view()
            .permuted_axes(IxDyn(&perm))
            .as_standard_layout()
            .into_owned();
        assert_eq!(permute(&big, &perm).unwrap(), want);
    }
}
