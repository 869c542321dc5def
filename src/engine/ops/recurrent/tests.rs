//! Recurrent layers: one step against the closed form, and the relations between directions,
//! layouts and sequence lengths that any correct implementation keeps.

use ndarray::{ArrayD, Axis, IxDyn};

use super::super::testutil::*;
use crate::ir::{Attribute, TensorData};

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn s(v: &str) -> Attribute {
    Attribute::String(v.into())
}

/// Runs `op` with `inputs` (None = omitted) and returns every output as an array.
fn run_op(
    op: &str,
    attrs: Vec<(&str, Attribute)>,
    inputs: &[Option<&TensorData>],
    n_out: usize,
) -> Vec<ArrayD<f32>> {
    let n = node(op, inputs.len(), n_out, attrs);
    let out = run_node(&n, 14, inputs).unwrap_or_else(|e| panic!("{op}: {}", e.0));
    out.iter().map(|t| t.as_f32().unwrap().clone()).collect()
}

fn t(a: ArrayD<f32>) -> TensorData {
    TensorData::F32(a)
}

#[test]
fn lstm_one_step_matches_the_closed_form() {
    // input 1, hidden 1: every gate a scalar
    let x = f(&[1, 1, 1], &[0.5]);
    // W rows i, o, f, c
    let w = f(&[1, 4, 1], &[0.1, 0.2, 0.3, 0.4]);
    let r = f(&[1, 4, 1], &[-0.1, 0.5, 0.2, -0.3]);
    let b = f(&[1, 8], &[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]);
    let h0 = f(&[1, 1, 1], &[0.3]);
    let c0 = f(&[1, 1, 1], &[-0.2]);
    let p = f(&[1, 3], &[0.7, -0.4, 0.25]); // i, o, f
    let inputs = [
        Some(&x),
        Some(&w),
        Some(&r),
        Some(&b),
        None,
        Some(&h0),
        Some(&c0),
        Some(&p),
    ];
    let out = run_op("LSTM", vec![("hidden_size", Attribute::Int(1))], &inputs, 3);
    let (xv, h, c) = (0.5f32, 0.3f32, -0.2f32);
    let i = sigmoid(xv * 0.1 + h * -0.1 + 0.7 * c + 0.01 + 0.05);
    let fg = sigmoid(xv * 0.3 + h * 0.2 + 0.25 * c + 0.03 + 0.07);
    let cc = (xv * 0.4 + h * -0.3 + 0.04 + 0.08).tanh();
    let c1 = fg * c + i * cc;
    let o = sigmoid(xv * 0.2 + h * 0.5 + -0.4 * c1 + 0.02 + 0.06);
    let h1 = o * c1.tanh();
    assert_close(&out[0].iter().copied().collect::<Vec<_>>(), &[h1], 1e-6);
    assert_close(&out[1].iter().copied().collect::<Vec<_>>(), &[h1], 1e-6);
    assert_close(&out[2].iter().copied().collect::<Vec<_>>(), &[c1], 1e-6);
    // input_forget couples f = 1 − i
    let out = run_op(
        "LSTM",
        vec![
            ("hidden_size", Attribute::Int(1)),
            ("input_forget", Attribute::Int(1)),
        ],
        &inputs,
        3,
    );
    let c1 = (1.0 - i) * c + i * cc;
    assert_close(&out[2].iter().copied().collect::<Vec<_>>(), &[c1], 1e-6);
}

#[test]
fn gru_one_step_both_reset_orders() {
    let x = f(&[1, 1, 1], &[0.5]);
    let w = f(&[1, 3, 1], &[0.1, 0.2, 0.3]); // z, r, h
    let r = f(&[1, 3, 1], &[-0.1, 0.5, 0.2]);
    let b = f(&[1, 6], &[0.01, 0.02, 0.03, 0.04, 0.05, 0.06]);
    let h0 = f(&[1, 1, 1], &[0.3]);
    let (xv, h) = (0.5f32, 0.3f32);
    let z = sigmoid(xv * 0.1 + h * -0.1 + 0.01 + 0.04);
    let rg = sigmoid(xv * 0.2 + h * 0.5 + 0.02 + 0.05);
    for lbr in [0, 1] {
        let out = run_op(
            "GRU",
            vec![("linear_before_reset", Attribute::Int(lbr))],
            &[Some(&x), Some(&w), Some(&r), Some(&b), None, Some(&h0)],
            2,
        );
        let cand = if lbr == 0 {
            (xv * 0.3 + (rg * h) * 0.2 + 0.06 + 0.03).tanh()
        } else {
            (xv * 0.3 + rg * (h * 0.2 + 0.06) + 0.03).tanh()
        };
        let h1 = (1.0 - z) * cand + z * h;
        assert_close(&out[1].iter().copied().collect::<Vec<_>>(), &[h1], 1e-6);
    }
}

#[test]
fn rnn_activations_alpha_and_clip() {
    let x = f(&[1, 1, 2], &[1.0, -2.0]);
    let w = f(&[1, 1, 2], &[0.5, 0.25]);
    let r = f(&[1, 1, 1], &[0.0]);
    // pre-activation 0.5 - 0.5 + 3 = 3: clip 2 → 2, then LeakyRelu/affine-like forms
    let b = f(&[1, 2], &[1.0, 2.0]);
    let run1 = |act: &str, alpha: Option<f32>, beta: Option<f32>, clip: Option<f32>| {
        let mut attrs = vec![("activations", Attribute::Strings(vec![act.into()]))];
        if let Some(a) = alpha {
            attrs.push(("activation_alpha", Attribute::Floats(vec![a])));
        }
        if let Some(b) = beta {
            attrs.push(("activation_beta", Attribute::Floats(vec![b])));
        }
        if let Some(c) = clip {
            attrs.push(("clip", Attribute::Float(c)));
        }
        run_op("RNN", attrs, &[Some(&x), Some(&w), Some(&r), Some(&b)], 2)[1]
            .iter()
            .copied()
            .collect::<Vec<f32>>()[0]
    };
    assert!((run1("Relu", None, None, None) - 3.0).abs() < 1e-6);
    assert!((run1("Relu", None, None, Some(2.0)) - 2.0).abs() < 1e-6);
    assert!((run1("ScaledTanh", Some(2.0), Some(0.5), None) - 2.0 * 1.5f32.tanh()).abs() < 1e-6);
    assert!((run1("Affine", Some(2.0), Some(1.0), None) - 7.0).abs() < 1e-6);
    assert!((run1("HardSigmoid", None, None, None) - 1.0).abs() < 1e-6);
    assert!((run1("ThresholdedRelu", Some(3.5), None, None)).abs() < 1e-6);
    assert!((run1("softsign", None, None, None) - 0.75).abs() < 1e-6);
}

/// A random LSTM/GRU/RNN setup: X [seq, batch, input], W, R, B, initial states.
struct Setup {
    x: ArrayD<f32>,
    w: ArrayD<f32>,
    r: ArrayD<f32>,
    b: ArrayD<f32>,
    h0: ArrayD<f32>,
}

impl Setup {
    /// X, W, R, B and the initial state as tensors, in that order.
    fn tensors(&self) -> [TensorData; 5] {
        [&self.x, &self.w, &self.r, &self.b, &self.h0].map(|a| t(a.clone()))
    }
}

fn setup(rng: &mut Rng, gates: usize, dirs: usize) -> Setup {
    let (seq, batch, input, hidden) = (5, 3, 4, 3);
    Setup {
        x: rng.array(&[seq, batch, input]),
        w: rng.array(&[dirs, gates * hidden, input]),
        r: rng.array(&[dirs, gates * hidden, hidden]),
        b: rng.array(&[dirs, 2 * gates * hidden]),
        h0: rng.array(&[dirs, batch, hidden]),
    }
}

fn reverse_time(x: &ArrayD<f32>) -> ArrayD<f32> {
    let mut y = x.clone();
    y.invert_axis(Axis(0));
    y.as_standard_layout().into_owned()
}

#[test]
fn reverse_and_bidirectional_agree_with_forward() {
    for (op, gates) in [("LSTM", 4), ("GRU", 3), ("RNN", 1)] {
        let mut rng = Rng::new(11);
        let s2 = setup(&mut rng, gates, 2);
        let [x_t, w_t, r_t, b_t, h0_t] = s2.tensors();
        let take =
            |a: &ArrayD<f32>, d: usize| a.index_axis(Axis(0), d).insert_axis(Axis(0)).to_owned();
        let n_out = if op == "LSTM" { 3 } else { 2 };
        let one = |dir: &str, x: &ArrayD<f32>, d: usize| {
            run_op(
                op,
                vec![("direction", s(dir))],
                &[
                    Some(&t(x.clone())),
                    Some(&t(take(&s2.w, d))),
                    Some(&t(take(&s2.r, d))),
                    Some(&t(take(&s2.b, d))),
                    None,
                    Some(&t(take(&s2.h0, d))),
                ],
                n_out,
            )
        };
        let fwd = one("forward", &s2.x, 0);
        let rev = one("reverse", &s2.x, 1);
        // reverse on X equals forward on the time-reversed X, outputs reversed back
        let rev_by_fwd = {
            let mut out = run_op(
                op,
                vec![],
                &[
                    Some(&t(reverse_time(&s2.x))),
                    Some(&t(take(&s2.w, 1))),
                    Some(&t(take(&s2.r, 1))),
                    Some(&t(take(&s2.b, 1))),
                    None,
                    Some(&t(take(&s2.h0, 1))),
                ],
                n_out,
            );
            out[0] = reverse_time(&out[0]);
            out
        };
        assert_arrays_close(&rev[0], &rev_by_fwd[0], 1e-6, op);
        assert_arrays_close(&rev[1], &rev_by_fwd[1], 1e-6, op);
        let bi = run_op(
            op,
            vec![("direction", s("bidirectional"))],
            &[
                Some(&x_t),
                Some(&w_t),
                Some(&r_t),
                Some(&b_t),
                None,
                Some(&h0_t),
            ],
            n_out,
        );
        // Y [seq, 2, batch, H]: direction 0 is forward, 1 is reverse
        assert_arrays_close(
            &bi[0].index_axis(Axis(1), 0).to_owned(),
            &fwd[0].index_axis(Axis(1), 0).to_owned(),
            1e-6,
            op,
        );
        assert_arrays_close(
            &bi[0].index_axis(Axis(1), 1).to_owned(),
            &rev[0].index_axis(Axis(1), 0).to_owned(),
            1e-6,
            op,
        );
        assert_arrays_close(
            &bi[1].index_axis(Axis(0), 1).to_owned(),
            &rev[1].index_axis(Axis(0), 0).to_owned(),
            1e-6,
            op,
        );
    }
}

#[test]
fn layout_1_is_the_batch_major_form_of_layout_0() {
    for (op, gates) in [("LSTM", 4), ("GRU", 3), ("RNN", 1)] {
        let mut rng = Rng::new(5);
        let st = setup(&mut rng, gates, 2);
        let [x_t, w_t, r_t, b_t, h0_t] = st.tensors();
        let n_out = if op == "LSTM" { 3 } else { 2 };
        let bi = ("direction", s("bidirectional"));
        let seq_major = run_op(
            op,
            vec![bi.clone()],
            &[
                Some(&x_t),
                Some(&w_t),
                Some(&r_t),
                Some(&b_t),
                None,
                Some(&h0_t),
            ],
            n_out,
        );
        let swap01 = |a: &ArrayD<f32>| {
            let mut v = a.view();
            v.swap_axes(0, 1);
            v.as_standard_layout().into_owned()
        };
        let batch_major = run_op(
            op,
            vec![bi, ("layout", Attribute::Int(1))],
            &[
                Some(&t(swap01(&st.x))),
                Some(&w_t),
                Some(&r_t),
                Some(&b_t),
                None,
                Some(&t(swap01(&st.h0))),
            ],
            n_out,
        );
        // Y: [seq, D, batch, H] vs [batch, seq, D, H]
        let y = seq_major[0]
            .view()
            .permuted_axes(IxDyn(&[2, 0, 1, 3]))
            .as_standard_layout()
            .into_owned();
        assert_arrays_close(&batch_major[0], &y, 1e-6, op);
        assert_arrays_close(&batch_major[1], &swap01(&seq_major[1]), 1e-6, op);
    }
}

#[test]
fn sequence_lengths_stop_each_entry() {
    for (op, gates) in [("LSTM", 4), ("GRU", 3), ("RNN", 1)] {
        for dir in ["forward", "reverse"] {
            let mut rng = Rng::new(9);
            let st = setup(&mut rng, gates, 1);
            let [x_t, w_t, r_t, b_t, h0_t] = st.tensors();
            let n_out = if op == "LSTM" { 3 } else { 2 };
            let lens = i(&[3], &[5, 2, 0]);
            let full = run_op(
                op,
                vec![("direction", s(dir))],
                &[
                    Some(&x_t),
                    Some(&w_t),
                    Some(&r_t),
                    Some(&b_t),
                    Some(&lens),
                    Some(&h0_t),
                ],
                n_out,
            );
            // entry 1 alone with its first two steps
            let x1 =
                st.x.slice(ndarray::s![0..2, 1..2, ..])
                    .to_owned()
                    .into_dyn();
            let h1 = st.h0.slice(ndarray::s![.., 1..2, ..]).to_owned().into_dyn();
            let alone = run_op(
                op,
                vec![("direction", s(dir))],
                &[
                    Some(&t(x1)),
                    Some(&w_t),
                    Some(&r_t),
                    Some(&b_t),
                    None,
                    Some(&t(h1)),
                ],
                n_out,
            );
            let y = &full[0];
            for step in 0..5 {
                let got = y.slice(ndarray::s![step, 0, 1, ..]).to_owned().into_dyn();
                if step < 2 {
                    let want = alone[0]
                        .slice(ndarray::s![step, 0, 0, ..])
                        .to_owned()
                        .into_dyn();
                    assert_arrays_close(&got, &want, 1e-6, op);
                } else {
                    assert!(
                        got.iter().all(|&v| v == 0.0),
                        "{op} {dir}: output past the length"
                    );
                }
                // entry 2 has length 0: all zero, final state zero
                assert!(
                    y.slice(ndarray::s![step, 0, 2, ..])
                        .iter()
                        .all(|&v| v == 0.0)
                );
            }
            let hfin = full[1].slice(ndarray::s![0, 1, ..]).to_owned().into_dyn();
            let want = alone[1].slice(ndarray::s![0, 0, ..]).to_owned().into_dyn();
            assert_arrays_close(&hfin, &want, 1e-6, op);
            assert!(
                full[1]
                    .slice(ndarray::s![0, 2, ..])
                    .iter()
                    .all(|&v| v == 0.0)
            );
        }
    }
}

#[test]
fn bad_shapes_and_attributes_are_named() {
    let mut rng = Rng::new(1);
    let st = setup(&mut rng, 4, 1);
    let [x_t, w_t, r_t, _, _] = st.tensors();
    let bad_w = rng.array(&[1, 8, 4]);
    let err = run_node(
        &node("LSTM", 3, 1, vec![]),
        14,
        &[Some(&x_t), Some(&t(bad_w)), Some(&r_t)],
    )
    .unwrap_err();
    assert!(err.0.contains("W must have shape [1, 12, 4]"), "{}", err.0);
    let err = run_node(
        &node("LSTM", 3, 1, vec![("direction", s("sideways"))]),
        14,
        &[Some(&x_t), Some(&w_t), Some(&r_t)],
    )
    .unwrap_err();
    assert!(err.0.contains("sideways"), "{}", err.0);
    let err = run_node(
        &node(
            "LSTM",
            3,
            1,
            vec![(
                "activations",
                Attribute::Strings(vec!["Sigmoid".into(), "Gelu".into(), "Tanh".into()]),
            )],
        ),
        14,
        &[Some(&x_t), Some(&w_t), Some(&r_t)],
    )
    .unwrap_err();
    assert!(err.0.contains("Gelu"), "{}", err.0);
    let lens = i(&[3], &[1, 9, 1]);
    let err = run_node(
        &node("LSTM", 5, 1, vec![]),
        14,
        &[Some(&x_t), Some(&w_t), Some(&r_t), None, Some(&lens)],
    )
    .unwrap_err();
    assert!(err.0.contains("sequence length 9"), "{}", err.0);
}
