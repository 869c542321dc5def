//! The simple RNN: H' = f(X·Wᵀ + H·Rᵀ + Wb + Rb).

use super::super::{OpCtx, OpResult};
use super::Recurrence;
use crate::ir::TensorData;

pub(super) fn rnn(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let rec = Recurrence::read(ctx, inputs, 1, &["Tanh"])?;
    let h0 = rec.initial_state(inputs, 5, "initial_h")?;
    let hs = rec.hidden;
    let runs = rec.each_direction(|d| {
        let state = d * rec.batch * hs..(d + 1) * rec.batch * hs;
        Ok(run_direction(&rec, d, &h0[state]))
    })?;
    let (ys, finals): (Vec<Vec<f32>>, Vec<Vec<f32>>) = runs.into_iter().unzip();
    Ok(vec![rec.sequence_output(&ys)?, rec.state_output(&finals)?])
}

fn run_direction(rec: &Recurrence<'_>, d: usize, h0: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (hs, batch) = (rec.hidden, rec.batch);
    let f = rec.activations[d];
    let bias: Vec<f32> = rec
        .bias(d, 1, 0, 0)
        .into_iter()
        .zip(rec.bias(d, 1, 1, 0))
        .map(|(a, b)| a + b)
        .collect();
    let projected = rec.project_inputs(d, 1, &bias);
    let mut h = h0.to_vec();
    let mut y = vec![0f32; rec.seq * batch * hs];
    let mut rh = vec![0f32; batch * hs];
    for s in 0..rec.max_len() {
        rec.recurrent_product(d, 1, 0, 1, &h, &mut rh);
        for (n, &len) in rec.lens.iter().enumerate() {
            if s >= len {
                continue;
            }
            let t = rec.time_of(d, s, len);
            let row = (t * batch + n) * hs;
            for k in 0..hs {
                let v = f.apply(rec.clipped(projected[row + k] + rh[n * hs + k]));
                h[n * hs + k] = v;
                y[row + k] = v;
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
