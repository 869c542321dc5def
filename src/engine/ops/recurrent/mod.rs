//! Recurrent layers: LSTM, GRU and RNN, forward, reverse or bidirectional, with activation
//! lists, `clip`, sequence lengths, initial states and both layouts.
//!
//! Each direction projects the inputs of all time steps at once (one GEMM of
//! `[seq·batch, input]` by `Wᵀ`, biases folded in), then runs the recurrence one step at a time
//! with a `[batch, hidden]` by `Rᵀ` GEMM per step. A batch entry of length `L` runs steps
//! `0..L` (reverse: `L−1` down to 0); its outputs beyond `L` are zero, its final state is the
//! one after its last step (zero when `L` is 0), as in onnxruntime.

mod activation;
mod gru;
mod lstm;
mod rnn;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use ndarray::ArrayD;

use self::activation::{Activation, parse_activations};
use super::gemm::{Mat, sgemm};
use super::{OpCtx, OpError, Registry, array_from, input_f32, optional};
use crate::ir::TensorData;

pub fn register(registry: &mut Registry) {
    registry.add("LSTM", lstm::lstm);
    registry.add("GRU", gru::gru);
    registry.add("RNN", rnn::rnn);
}

/// What every recurrent op shares, read and checked once: the inputs in layout 0
/// (`[seq, batch, ·]`), the weights and the attributes.
struct Recurrence<'a> {
    pub seq: usize,
    pub batch: usize,
    pub input_size: usize,
    pub hidden: usize,
    /// 1 or 2.
    pub directions: usize,
    /// Direction 0 runs backwards (direction "reverse").
    pub reverse_only: bool,
    /// Batch-major inputs and outputs (layout 1).
    pub batch_major: bool,
    /// `[seq, batch, input]`, row-major.
    pub x: Cow<'a, [f32]>,
    /// `[D, gates·H, input]`.
    pub w: Cow<'a, [f32]>,
    /// `[D, gates·H, H]`.
    pub r: Cow<'a, [f32]>,
    /// `[D, 2·gates·H]` (Wb then Rb), None when absent.
    pub b: Option<Cow<'a, [f32]>>,
    /// Length of every batch entry's sequence.
    pub lens: Vec<usize>,
    /// Cell clip threshold applied to gate pre-activations.
    pub clip: Option<f32>,
    /// The activations of each direction, `per_direction` of them each.
    pub activations: Vec<Activation>,
}

fn contiguous(x: &ArrayD<f32>) -> Cow<'_, [f32]> {
    match x.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

/// Swaps the first two axes of a row-major `[a, b, inner]` block.
fn swap_leading(data: &[f32], a: usize, b: usize, inner: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for i in 0..a {
        for j in 0..b {
            let src = (i * b + j) * inner;
            let dst = (j * a + i) * inner;
            out[dst..dst + inner].copy_from_slice(&data[src..src + inner]);
        }
    }
    out
}

impl<'a> Recurrence<'a> {
    /// Reads inputs X, W, R, B, sequence_lens (0–4) and the shared attributes for an op with
    /// `gates` gates and `per_direction` activations (defaults `default_activations`).
    pub fn read(
        ctx: &OpCtx<'_>,
        inputs: &[Option<&'a TensorData>],
        gates: usize,
        default_activations: &[&str],
    ) -> Result<Self, OpError> {
        let node = ctx.node;
        let x = input_f32(inputs, 0)?;
        let w = input_f32(inputs, 1)?;
        let r = input_f32(inputs, 2)?;
        let batch_major = node.attr_int("layout", 0)? != 0;
        let [d0, d1, input_size] = *x.shape() else {
            return Err(OpError(format!("X must be 3-D, got shape {:?}", x.shape())));
        };
        let (seq, batch) = if batch_major { (d1, d0) } else { (d0, d1) };
        let direction = node.attr_string("direction", "forward")?;
        let directions = match direction.as_str() {
            "forward" | "reverse" => 1,
            "bidirectional" => 2,
            other => {
                return Err(OpError(format!(
                    "direction must be forward, reverse or bidirectional, got '{other}'"
                )));
            }
        };
        let hidden = match r.shape() {
            [_, _, h] => *h,
            s => return Err(OpError(format!("R must be 3-D, got shape {s:?}"))),
        };
        let declared = node.attr_int("hidden_size", hidden as i64)?;
        if declared != hidden as i64 {
            return Err(OpError(format!(
                "hidden_size is {declared} but R has shape {:?}",
                r.shape()
            )));
        }
        let g = gates * hidden;
        if w.shape() != [directions, g, input_size] {
            return Err(OpError(format!(
                "W must have shape [{directions}, {g}, {input_size}], got {:?}",
                w.shape()
            )));
        }
        if r.shape() != [directions, g, hidden] {
            return Err(OpError(format!(
                "R must have shape [{directions}, {g}, {hidden}], got {:?}",
                r.shape()
            )));
        }
        let b = match optional(inputs, 3) {
            Some(t) => {
                let b = t
                    .as_f32()
                    .ok_or_else(|| OpError("B must be a float tensor".into()))?;
                if b.shape() != [directions, 2 * g] {
                    return Err(OpError(format!(
                        "B must have shape [{directions}, {}], got {:?}",
                        2 * g,
                        b.shape()
                    )));
                }
                Some(contiguous(b))
            }
            None => None,
        };
        let lens = match optional(inputs, 4) {
            Some(t) => {
                let values: Vec<i64> = match t {
                    TensorData::I64(a) => a.iter().copied().collect(),
                    TensorData::F32(a) => a.iter().map(|&v| v as i64).collect(),
                };
                if values.len() != batch {
                    return Err(OpError(format!(
                        "sequence_lens has {} values for a batch of {batch}",
                        values.len()
                    )));
                }
                values
                    .iter()
                    .map(|&l| {
                        usize::try_from(l)
                            .ok()
                            .filter(|&l| l <= seq)
                            .ok_or_else(|| {
                                OpError(format!("sequence length {l} is not in 0..={seq}"))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => vec![seq; batch],
        };
        let clip = match node.attributes.get("clip") {
            Some(_) => {
                let c = node.attr_float("clip", 0.0)?;
                if c.is_nan() || c <= 0.0 {
                    return Err(OpError(format!("clip must be positive, got {c}")));
                }
                Some(c)
            }
            None => None,
        };
        let per_direction = default_activations.len();
        let mut names: Vec<String> = match node.attributes.get("activations") {
            Some(crate::ir::Attribute::Strings(v)) => v.clone(),
            Some(_) => return Err(OpError("activations must be a list of strings".into())),
            None => Vec::new(),
        };
        if names.is_empty() {
            for _ in 0..directions {
                names.extend(default_activations.iter().map(|s| s.to_string()));
            }
        } else if names.len() == per_direction && directions == 2 {
            names.extend_from_within(..);
        }
        if names.len() != per_direction * directions {
            return Err(OpError(format!(
                "activations lists {} functions; expected {}",
                names.len(),
                per_direction * directions
            )));
        }
        let alphas = node.attr_floats("activation_alpha")?.unwrap_or_default();
        let betas = node.attr_floats("activation_beta")?.unwrap_or_default();
        let activations = parse_activations(&names, &alphas, &betas)?;
        let xd = contiguous(x);
        let x = if batch_major {
            Cow::Owned(swap_leading(&xd, batch, seq, input_size))
        } else {
            xd
        };
        Ok(Recurrence {
            seq,
            batch,
            input_size,
            hidden,
            directions,
            reverse_only: direction == "reverse",
            batch_major,
            x,
            w: contiguous(w),
            r: contiguous(r),
            b,
            lens,
            clip,
            activations,
        })
    }

    /// Whether direction `d` runs backwards in time.
    pub fn is_reverse(&self, d: usize) -> bool {
        d == 1 || self.reverse_only
    }

    /// The time index of processing step `s` for a batch entry of length `len`.
    pub fn time_of(&self, d: usize, s: usize, len: usize) -> usize {
        if self.is_reverse(d) { len - 1 - s } else { s }
    }

    /// Longest sequence in the batch.
    pub fn max_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }

    /// Initial state input `i` (`[D, batch, H]`, or `[batch, D, H]` in layout 1) as
    /// `[D, batch, H]`, zeros when absent.
    pub fn initial_state(
        &self,
        inputs: &[Option<&TensorData>],
        i: usize,
        what: &str,
    ) -> Result<Vec<f32>, OpError> {
        let (d, b, h) = (self.directions, self.batch, self.hidden);
        let Some(t) = optional(inputs, i) else {
            return Ok(vec![0.0; d * b * h]);
        };
        let a = t
            .as_f32()
            .ok_or_else(|| OpError(format!("{what} must be a float tensor")))?;
        let want = if self.batch_major {
            [b, d, h]
        } else {
            [d, b, h]
        };
        if a.shape() != want {
            return Err(OpError(format!(
                "{what} must have shape {want:?}, got {:?}",
                a.shape()
            )));
        }
        let data = contiguous(a);
        Ok(if self.batch_major {
            swap_leading(&data, b, d, h)
        } else {
            data.into_owned()
        })
    }

    /// `X·W_dᵀ` for all time steps (`[seq·batch, gates·H]`) plus `bias` (one row of
    /// `gates·H`, added to every row).
    pub fn project_inputs(&self, d: usize, gates: usize, bias: &[f32]) -> Vec<f32> {
        let (rows, k, n) = (self.seq * self.batch, self.input_size, gates * self.hidden);
        let mut out = vec![0f32; rows * n];
        if n > 0 {
            for row in out.chunks_mut(n) {
                row.copy_from_slice(bias);
            }
        }
        let w = Mat::rows(&self.w, d * n * k, k).t();
        sgemm(
            rows,
            k,
            n,
            1.0,
            Mat::rows(&self.x, 0, k),
            w,
            1.0,
            &mut out,
            n,
        );
        out
    }

    /// `out = h·R_dᵀ` restricted to gate rows `first..first + count·H` of `R_d`
    /// (`[batch, count·H]`).
    pub fn recurrent_product(
        &self,
        d: usize,
        gates: usize,
        first_gate: usize,
        count: usize,
        h: &[f32],
        out: &mut [f32],
    ) {
        let hs = self.hidden;
        let n = count * hs;
        let offset = (d * gates + first_gate) * hs * hs;
        let r = Mat::rows(&self.r, offset, hs).t();
        sgemm(self.batch, hs, n, 1.0, Mat::rows(h, 0, hs), r, 0.0, out, n);
    }

    /// Bias `part` (0 = Wb, 1 = Rb) of gate `gate` for direction `d`, zeros without B.
    pub fn bias(&self, d: usize, gates: usize, part: usize, gate: usize) -> Vec<f32> {
        let h = self.hidden;
        match &self.b {
            Some(b) => {
                let start = d * 2 * gates * h + part * gates * h + gate * h;
                b[start..start + h].to_vec()
            }
            None => vec![0.0; h],
        }
    }

    /// Clips a pre-activation to ±clip when the layer has a clip threshold.
    #[inline]
    pub fn clipped(&self, x: f32) -> f32 {
        match self.clip {
            Some(c) => x.clamp(-c, c),
            None => x,
        }
    }

    /// Assembles `Y` (`[seq, D, batch, H]`, layout 1 `[batch, seq, D, H]`) from per-direction
    /// `[seq, batch, H]` sequences.
    pub fn sequence_output(&self, per_direction: &[Vec<f32>]) -> Result<TensorData, OpError> {
        let (s, d, b, h) = (self.seq, self.directions, self.batch, self.hidden);
        let mut y = vec![0f32; s * d * b * h];
        for (dir, ys) in per_direction.iter().enumerate() {
            for t in 0..s {
                for n in 0..b {
                    let src = (t * b + n) * h;
                    let dst = if self.batch_major {
                        ((n * s + t) * d + dir) * h
                    } else {
                        ((t * d + dir) * b + n) * h
                    };
                    y[dst..dst + h].copy_from_slice(&ys[src..src + h]);
                }
            }
        }
        let shape = if self.batch_major {
            [b, s, d, h]
        } else {
            [s, d, b, h]
        };
        Ok(array_from(&shape, y)?.into())
    }

    /// Assembles a final state (`[D, batch, H]`, layout 1 `[batch, D, H]`) from per-direction
    /// `[batch, H]` states.
    pub fn state_output(&self, per_direction: &[Vec<f32>]) -> Result<TensorData, OpError> {
        let (d, b, h) = (self.directions, self.batch, self.hidden);
        let stacked: Vec<f32> = per_direction.iter().flatten().copied().collect();
        if self.batch_major {
            Ok(array_from(&[b, d, h], swap_leading(&stacked, d, b, h))?.into())
        } else {
            Ok(array_from(&[d, b, h], stacked)?.into())
        }
    }

    /// Runs `direction` for every direction, both at once when bidirectional.
    pub fn each_direction<T: Send>(
        &self,
        direction: impl Fn(usize) -> Result<T, OpError> + Sync,
    ) -> Result<Vec<T>, OpError> {
        if self.directions == 2 {
            let (a, b) = rayon::join(|| direction(0), || direction(1));
            Ok(vec![a?, b?])
        } else {
            Ok(vec![direction(0)?])
        }
    }
}
