//! BatchNorm, InstanceNorm, LayerNorm and Softmax against closed forms and naive references.

use super::super::testutil::*;
use crate::ir::Attribute;

#[test]
fn batch_norm_4d_and_2d() {
    let x = f(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
    let scale = f(&[2], &[1., 2.]);
    let b = f(&[2], &[0., 1.]);
    let mean = f(&[2], &[1., 3.]);
    let var = f(&[2], &[4., 1.]);
    let eps = 1e-5f32;
    let want = [
        (1. - 1.) / (4. + eps).sqrt(),
        (2. - 1.) / (4. + eps).sqrt(),
        2. * (3. - 3.) / (1. + eps).sqrt() + 1.,
        2. * (4. - 3.) / (1. + eps).sqrt() + 1.,
    ];
    check_f(
        "BatchNormalization",
        15,
        vec![],
        &[&x, &scale, &b, &mean, &var],
        &[1, 2, 1, 2],
        &want,
    );
    let x2 = f(&[2, 2], &[1., 3., 2., 4.]);
    check_f(
        "BatchNormalization",
        9,
        vec![("epsilon", Attribute::Float(0.0))],
        &[&x2, &scale, &b, &mean, &var],
        &[2, 2],
        &[0., 1., 0.5, 3.],
    );
    // errors: wrong channel count, training mode, rank 1
    let bad = f(&[3], &[1., 1., 1.]);
    assert!(
        run(
            "BatchNormalization",
            15,
            vec![],
            &[&x, &bad, &b, &mean, &var]
        )
        .is_err()
    );
    assert!(
        run(
            "BatchNormalization",
            15,
            vec![("training_mode", Attribute::Int(1))],
            &[&x, &scale, &b, &mean, &var]
        )
        .is_err()
    );
    let x1 = f(&[2], &[1., 2.]);
    assert!(
        run(
            "BatchNormalization",
            15,
            vec![],
            &[&x1, &scale, &b, &mean, &var]
        )
        .is_err()
    );
}

#[test]
fn batch_norm_small_planes() {
    // Small planes take the per-image path (sequential and parallel sizes).
    for (n, h, w) in [(3, 2, 3), (80, 9, 10)] {
        let c = 5;
        let len = n * c * h * w;
        let xs: Vec<f32> = (0..len).map(|v| (v % 17) as f32 * 0.37 - 2.0).collect();
        let x = f(&[n, c, h, w], &xs);
        let scale = [1., 2., -0.5, 0.25, 3.];
        let bias = [0.5, 0., -1., 2., 0.1];
        let mean = [0.1, -0.2, 0.3, 0., 1.];
        let var = [1., 0.5, 2., 4., 0.1];
        let out = run(
            "BatchNormalization",
            15,
            vec![],
            &[
                &x,
                &f(&[c], &scale),
                &f(&[c], &bias),
                &f(&[c], &mean),
                &f(&[c], &var),
            ],
        )
        .unwrap();
        let v = fvals(&out[0]).1;
        for (k, (&g, &xv)) in v.iter().zip(&xs).enumerate() {
            let ch = (k / (h * w)) % c;
            let m = scale[ch] / (var[ch] + 1e-5f32).sqrt();
            let a = bias[ch] - mean[ch] * m;
            assert_eq!(g, xv * m + a, "{n}x{c}x{h}x{w} at {k}");
        }
    }
}

#[test]
fn batch_norm_large_parallel() {
    let n = 2 * 3 * 100 * 100;
    let xs: Vec<f32> = (0..n).map(|v| (v % 13) as f32).collect();
    let x = f(&[2, 3, 100, 100], &xs);
    let scale = f(&[3], &[1., 2., 3.]);
    let b = f(&[3], &[0.5, 0., -1.]);
    let mean = f(&[3], &[0., 0., 0.]);
    let var = f(&[3], &[1., 1., 1.]);
    let out = run(
        "BatchNormalization",
        15,
        vec![("epsilon", Attribute::Float(0.))],
        &[&x, &scale, &b, &mean, &var],
    )
    .unwrap();
    let v = fvals(&out[0]).1;
    for (k, (&g, &xv)) in v.iter().zip(&xs).enumerate() {
        let ch = (k / 10_000) % 3;
        let want = xv * [1., 2., 3.][ch] + [0.5, 0., -1.][ch];
        assert_eq!(g, want, "at {k}");
    }
}

#[test]
fn instance_norm() {
    let x = f(&[1, 2, 2], &[1., 3., 2., 2.]);
    let scale = f(&[2], &[1., 1.]);
    let b = f(&[2], &[0., 5.]);
    let inv = 1.0 / (1.0f32 + 1e-5).sqrt();
    check_f(
        "InstanceNormalization",
        6,
        vec![],
        &[&x, &scale, &b],
        &[1, 2, 2],
        &[-inv, inv, 5., 5.],
    );
}

#[test]
fn layer_norm_last_axis() {
    let x = f(&[2, 3], &[1., 2., 3., 2., 4., 6.]);
    let scale = f(&[3], &[1., 2., 1.]);
    let b = f(&[3], &[0., 0., 1.]);
    let eps = 1e-5f32;
    let inv0 = 1. / (2. / 3. + eps).sqrt();
    let inv1 = 1. / (8. / 3. + eps).sqrt();
    let want = [-inv0, 0., inv0 + 1., -2. * inv1, 0., 2. * inv1 + 1.];
    check_f(
        "LayerNormalization",
        17,
        vec![],
        &[&x, &scale, &b],
        &[2, 3],
        &want,
    );
    // without bias, with stats
    let n = node("LayerNormalization", 2, 3, vec![]);
    let out = run_node(&n, 17, &[Some(&x), Some(&scale)]).unwrap();
    assert_eq!(out.len(), 3);
    assert_close(
        &fvals(&out[0]).1,
        &[-inv0, 0., inv0, -2. * inv1, 0., 2. * inv1],
        1e-6,
    );
    assert_eq!(fvals(&out[1]), (vec![2, 1], vec![2., 4.]));
    let (s, v) = fvals(&out[2]);
    assert_eq!(s, vec![2, 1]);
    assert_close(&v, &[inv0, inv1], 1e-6);
}

#[test]
fn layer_norm_axis_1_of_3d() {
    // normalize over the last two dims
    let x = f(&[1, 2, 2], &[0., 2., 4., 6.]);
    let scale = f(&[2, 2], &[1., 1., 1., 1.]);
    let var = 5.0f32;
    let inv = 1. / (var + 1e-5).sqrt();
    check_f(
        "LayerNormalization",
        17,
        vec![("axis", Attribute::Int(1))],
        &[&x, &scale],
        &[1, 2, 2],
        &[-3. * inv, -inv, inv, 3. * inv],
    );
    // scale broadcasting from [2] to [2, 2]
    let s2 = f(&[2], &[1., 2.]);
    check_f(
        "LayerNormalization",
        17,
        vec![("axis", Attribute::Int(-2))],
        &[&x, &s2],
        &[1, 2, 2],
        &[-3. * inv, -2. * inv, inv, 6. * inv],
    );
    let bad = f(&[3], &[1., 1., 1.]);
    assert!(run("LayerNormalization", 17, vec![], &[&x, &bad]).is_err());
    assert!(
        run(
            "LayerNormalization",
            17,
            vec![("axis", Attribute::Int(3))],
            &[&x, &scale]
        )
        .is_err()
    );
}

fn softmax_ref(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn softmax_opset_11_vs_13_on_3d() {
    let xs: Vec<f32> = (0..12).map(|v| (v as f32) * 0.3 - 1.0).collect();
    let x = f(&[2, 2, 3], &xs);
    // opset 11, default axis 1: each batch's 6 values form one distribution
    let mut want11 = softmax_ref(&xs[..6]);
    want11.extend(softmax_ref(&xs[6..]));
    check_f("Softmax", 11, vec![], &[&x], &[2, 2, 3], &want11);
    // opset 13, default axis -1: rows of 3
    let want13: Vec<f32> = xs.chunks(3).flat_map(softmax_ref).collect();
    check_f("Softmax", 13, vec![], &[&x], &[2, 2, 3], &want13);
    // opset 13, axis 1: pairs (b, 0, k) and (b, 1, k)
    let mut want_ax1 = vec![0f32; 12];
    for b in 0..2 {
        for k in 0..3 {
            let i0 = b * 6 + k;
            let i1 = b * 6 + 3 + k;
            let s = softmax_ref(&[xs[i0], xs[i1]]);
            want_ax1[i0] = s[0];
            want_ax1[i1] = s[1];
        }
    }
    check_f(
        "Softmax",
        13,
        vec![("axis", Attribute::Int(1))],
        &[&x],
        &[2, 2, 3],
        &want_ax1,
    );
    // opset 11, axis 2 equals opset 13 axis -1
    check_f(
        "Softmax",
        11,
        vec![("axis", Attribute::Int(2))],
        &[&x],
        &[2, 2, 3],
        &want13,
    );
    // log-softmax both ways
    let log13: Vec<f32> = want13.iter().map(|v| v.ln()).collect();
    check_f("LogSoftmax", 13, vec![], &[&x], &[2, 2, 3], &log13);
    let log_ax1: Vec<f32> = want_ax1.iter().map(|v| v.ln()).collect();
    check_f(
        "LogSoftmax",
        13,
        vec![("axis", Attribute::Int(1))],
        &[&x],
        &[2, 2, 3],
        &log_ax1,
    );
    let log11: Vec<f32> = want11.iter().map(|v| v.ln()).collect();
    check_f("LogSoftmax", 11, vec![], &[&x], &[2, 2, 3], &log11);
}

#[test]
fn softmax_stable_and_errors() {
    let x = f(&[3], &[1000., 1000., f32::NEG_INFINITY]);
    check_f("Softmax", 13, vec![], &[&x], &[3], &[0.5, 0.5, 0.]);
    check_f(
        "LogSoftmax",
        13,
        vec![],
        &[&x],
        &[3],
        &[-(2f32.ln()), -(2f32.ln()), f32::NEG_INFINITY],
    );
    assert!(run("Softmax", 13, vec![("axis", Attribute::Int(1))], &[&x]).is_err());
    assert!(run("Softmax", 13, vec![], &[&f(&[], &[1.])]).is_err());
}

#[test]
fn softmax_large_parallel() {
    let xs: Vec<f32> = (0..64 * 1024).map(|v| ((v % 17) as f32) * 0.1).collect();
    let x = f(&[64, 1024], &xs);
    let out = run("Softmax", 13, vec![], &[&x]).unwrap();
    let v = fvals(&out[0]).1;
    for r in [0usize, 31, 63] {
        let want = softmax_ref(&xs[r * 1024..(r + 1) * 1024]);
        assert_close(&v[r * 1024..(r + 1) * 1024], &want, 1e-6);
    }
}
