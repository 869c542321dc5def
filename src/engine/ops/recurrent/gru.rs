//! GRU (gates z, r, h), with `linear_before_reset`.
//!
//! z = f(X_z + H·R_z + b), r = f(X_r + H·R_r + b),
//! h̃ = g(X_h + (r⊙H)·R_h + Rb_h + Wb_h), or with linear_before_reset
//! h̃ = g(X_h + r⊙(H·R_h + Rb_h) + Wb_h); H' = (1 − z)⊙h̃ + z⊙H.

use super::super::{OpCtx, OpResult};
use super::Recurrence;
use crate::ir::TensorData;

const GATES: usize = 3;

pub(super) fn gru(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let rec = Recurrence::read(ctx, inputs, GATES, &["Sigmoid", "Tanh"])?;
    let linear_before_reset = ctx.node.attr_int("linear_before_reset", 0)? != 0;
    let h0 = rec.initial_state(inputs, 5, "initial_h")?;
    let hs = rec.hidden;
    let runs = rec.each_direction(|d| {
        let state = d * rec.batch * hs..(d + 1) * rec.batch * hs;
        Ok(run_direction(&rec, d, linear_before_reset, &h0[state]))
    })?;
    let (ys, finals): (Vec<Vec<f32>>, Vec<Vec<f32>>) = runs.into_iter().unzip();
    Ok(vec![rec.sequence_output(&ys)?, rec.state_output(&finals)?])
}

/// One direction: the `[seq, batch, H]` hidden states and the final state.
fn run_direction(
    rec: &Recurrence<'_>,
    d: usize,
    linear_before_reset: bool,
    h0: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (hs, batch) = (rec.hidden, rec.batch);
    let g = GATES * hs;
    let (fa, ga) = (rec.activations[d * 2], rec.activations[d * 2 + 1]);
    // Biases folded into the projected inputs: Wb + Rb for z and r; for h, Wb alone with
    // linear_before_reset (Rb_h goes inside the reset product), else Wb + Rb.
    let rb_h = rec.bias(d, GATES, 1, 2);
    let bias: Vec<f32> = (0..GATES)
        .flat_map(|gate| {
            let wb = rec.bias(d, GATES, 0, gate);
            let rb = if gate == 2 && linear_before_reset {
                vec![0.0; hs]
            } else {
                rec.bias(d, GATES, 1, gate)
            };
            wb.into_iter()
                .zip(rb)
                .map(|(a, b)| a + b)
                .collect::<Vec<f32>>()
        })
        .collect();
    let projected = rec.project_inputs(d, GATES, &bias);
    let mut h = h0.to_vec();
    let mut y = vec![0f32; rec.seq * batch * hs];
    let mut zr = vec![0f32; batch * 2 * hs];
    let mut hh = vec![0f32; batch * hs];
    let mut reset_h = vec![0f32; batch * hs];
    let mut r_gate = vec![0f32; batch * hs];
    for s in 0..rec.max_len() {
        rec.recurrent_product(d, GATES, 0, 2, &h, &mut zr);
        let active = |n: usize| s < rec.lens[n];
        let x_row = |n: usize| {
            let t = rec.time_of(d, s, rec.lens[n]);
            &projected[(t * batch + n) * g..(t * batch + n + 1) * g]
        };
        for n in (0..batch).filter(|&n| active(n)) {
            let x = x_row(n);
            for k in 0..hs {
                r_gate[n * hs + k] = fa.apply(rec.clipped(x[hs + k] + zr[n * 2 * hs + hs + k]));
            }
        }
        if linear_before_reset {
            // H·R_hᵀ + Rb_h, then scaled by r
            rec.recurrent_product(d, GATES, 2, 1, &h, &mut hh);
            for (hh_row, r_row) in hh.chunks_mut(hs).zip(r_gate.chunks(hs)) {
                for ((v, r), b) in hh_row.iter_mut().zip(r_row).zip(&rb_h) {
                    *v = r * (*v + b);
                }
            }
        } else {
            // (r⊙H)·R_hᵀ
            for (o, (r, hv)) in reset_h.iter_mut().zip(r_gate.iter().zip(&h)) {
                *o = r * hv;
            }
            rec.recurrent_product(d, GATES, 2, 1, &reset_h, &mut hh);
        }
        for n in (0..batch).filter(|&n| active(n)) {
            let x = x_row(n);
            let t = rec.time_of(d, s, rec.lens[n]);
            let out = &mut y[(t * batch + n) * hs..(t * batch + n + 1) * hs];
            for k in 0..hs {
                let z = fa.apply(rec.clipped(x[k] + zr[n * 2 * hs + k]));
                let cand = ga.apply(rec.clipped(x[2 * hs + k] + hh[n * hs + k]));
                let prev = h[n * hs + k];
                let new = (1.0 - z) * cand + z * prev;
                out[k] = new;
                h[n * hs + k] = new;
            }
        }
    }
    for (n, &len) in rec.lens.iter().enumerate() {
        if len == 0 {
            h[n * hs..(n + 1) * hs].fill(0.0);
        }
    }
    (y, h)
}
