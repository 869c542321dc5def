//! LSTM (gates i, o, f, c), with peepholes and `input_forget`.
//!
//! i = f(Xᵢ + H·Rᵢ + Pᵢ⊙C + b), f = f(X_f + H·R_f + P_f⊙C + b) (or 1 − i with input_forget),
//! c̃ = g(X_c + H·R_c + b), C' = f⊙C + i⊙c̃, o = f(X_o + H·R_o + P_o⊙C' + b), H' = o⊙h(C').

use super::super::{OpCtx, OpError, OpResult, optional};
use super::Recurrence;
use crate::ir::TensorData;

const GATES: usize = 4;

/// One direction's outputs: `[seq, batch, H]` hidden states and the final H and C.
struct Run {
    y: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
}

pub(super) fn lstm(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let rec = Recurrence::read(ctx, inputs, GATES, &["Sigmoid", "Tanh", "Tanh"])?;
    let input_forget = ctx.node.attr_int("input_forget", 0)? != 0;
    let h0 = rec.initial_state(inputs, 5, "initial_h")?;
    let c0 = rec.initial_state(inputs, 6, "initial_c")?;
    let hs = rec.hidden;
    let peepholes = match optional(inputs, 7) {
        Some(t) => {
            let p = t
                .as_f32()
                .ok_or_else(|| OpError("P must be a float tensor".into()))?;
            if p.shape() != [rec.directions, 3 * hs] {
                return Err(OpError(format!(
                    "P must have shape [{}, {}], got {:?}",
                    rec.directions,
                    3 * hs,
                    p.shape()
                )));
            }
            Some(p.iter().copied().collect::<Vec<f32>>())
        }
        None => None,
    };
    let runs = rec.each_direction(|d| {
        let state = d * rec.batch * hs..(d + 1) * rec.batch * hs;
        let peep = peepholes.as_ref().map(|p| &p[d * 3 * hs..(d + 1) * 3 * hs]);
        Ok(run_direction(
            &rec,
            d,
            input_forget,
            peep,
            &h0[state.clone()],
            &c0[state],
        ))
    })?;
    let (mut ys, mut hs_final, mut cs_final) = (Vec::new(), Vec::new(), Vec::new());
    for run in runs {
        ys.push(run.y);
        hs_final.push(run.h);
        cs_final.push(run.c);
    }
    Ok(vec![
        rec.sequence_output(&ys)?,
        rec.state_output(&hs_final)?,
        rec.state_output(&cs_final)?,
    ])
}

fn run_direction(
    rec: &Recurrence<'_>,
    d: usize,
    input_forget: bool,
    peepholes: Option<&[f32]>,
    h0: &[f32],
    c0: &[f32],
) -> Run {
    let (hs, batch) = (rec.hidden, rec.batch);
    let g = GATES * hs;
    let acts = &rec.activations[d * 3..d * 3 + 3];
    let (fa, ga, ha) = (acts[0], acts[1], acts[2]);
    // Wb + Rb of every gate, in the gate order i, o, f, c.
    let bias: Vec<f32> = (0..GATES)
        .flat_map(|gate| {
            let (wb, rb) = (rec.bias(d, GATES, 0, gate), rec.bias(d, GATES, 1, gate));
            wb.into_iter()
                .zip(rb)
                .map(|(a, b)| a + b)
                .collect::<Vec<f32>>()
        })
        .collect();
    let projected = rec.project_inputs(d, GATES, &bias);
    let zero = vec![0f32; hs];
    let (pi, po, pf) = match peepholes {
        Some(p) => (&p[..hs], &p[hs..2 * hs], &p[2 * hs..]),
        None => (&zero[..], &zero[..], &zero[..]),
    };
    let mut h = h0.to_vec();
    let mut c = c0.to_vec();
    let mut y = vec![0f32; rec.seq * batch * hs];
    let mut gates = vec![0f32; batch * g];
    let (mut i_g, mut f_g, mut c_g) = (vec![0f32; hs], vec![0f32; hs], vec![0f32; hs]);
    for s in 0..rec.max_len() {
        rec.recurrent_product(d, GATES, 0, GATES, &h, &mut gates);
        for (n, &len) in rec.lens.iter().enumerate() {
            if s >= len {
                continue;
            }
            let t = rec.time_of(d, s, len);
            let x = &projected[(t * batch + n) * g..(t * batch + n + 1) * g];
            let r = &gates[n * g..(n + 1) * g];
            let hn = &mut h[n * hs..(n + 1) * hs];
            let cn = &mut c[n * hs..(n + 1) * hs];
            for k in 0..hs {
                let cp = cn[k];
                i_g[k] = fa.apply(rec.clipped(x[k] + r[k] + pi[k] * cp));
                f_g[k] = if input_forget {
                    1.0 - i_g[k]
                } else {
                    let at = 2 * hs + k;
                    fa.apply(rec.clipped(x[at] + r[at] + pf[k] * cp))
                };
                c_g[k] = ga.apply(rec.clipped(x[3 * hs + k] + r[3 * hs + k]));
                cn[k] = f_g[k] * cp + i_g[k] * c_g[k];
            }
            let out = &mut y[(t * batch + n) * hs..(t * batch + n + 1) * hs];
            for k in 0..hs {
                let at = hs + k;
                let o = fa.apply(rec.clipped(x[at] + r[at] + po[k] * cn[k]));
                hn[k] = o * ha.apply(cn[k]);
                out[k] = hn[k];
            }
        }
    }
    // Entries of length 0 end in a zero state.
    for (n, &len) in rec.lens.iter().enumerate() {
        if len == 0 {
            h[n * hs..(n + 1) * hs].fill(0.0);
            c[n * hs..(n + 1) * hs].fill(0.0);
        }
    }
    Run { y, h, c }
}
