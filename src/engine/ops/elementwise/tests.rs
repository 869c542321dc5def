//! The elementwise kernels against closed forms: broadcasting fast paths and the strided path, every op, errors.

use super::super::testutil::*;
use crate::ir::{Attribute, TensorData};

#[test]
fn broadcast_shapes_rules() {
    assert_eq!(
        super::broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(),
        vec![2, 4, 3]
    );
    assert_eq!(super::broadcast_shapes(&[], &[3]).unwrap(), vec![3]);
    assert!(super::broadcast_shapes(&[2, 3], &[4]).is_err());
    assert_eq!(
        super::broadcast_shapes(&[0, 3], &[1, 3]).unwrap(),
        vec![0, 3]
    );
}

#[test]
fn add_broadcast_2_1_3_with_4_1() {
    let a = f(&[2, 1, 3], &[0., 1., 2., 10., 11., 12.]);
    let b = f(&[4, 1], &[100., 200., 300., 400.]);
    let mut want = Vec::new();
    for i in 0..2 {
        for j in 0..4 {
            for k in 0..3 {
                want.push((i * 10 + k) as f32 + 100.0 * (j + 1) as f32);
            }
        }
    }
    check_f("Add", 14, vec![], &[&a, &b], &[2, 4, 3], &want);
    // reversed operand order, and Sub is not commutative
    let out = run("Sub", 14, vec![], &[&b, &a]).unwrap();
    let (s, v) = fvals(&out[0]);
    assert_eq!(s, vec![2, 4, 3]);
    let neg: Vec<f32> = want
        .iter()
        .enumerate()
        .map(|(n, w)| {
            let x = w - 100.0 * ((n / 3) % 4 + 1) as f32; // a value
            100.0 * ((n / 3) % 4 + 1) as f32 - x
        })
        .collect();
    assert_close(&v, &neg, 1e-6);
}

#[test]
fn fast_paths_match_general() {
    // same shape, scalar, channel block, row block, both small sides
    let x: Vec<f32> = (0..2 * 3 * 2 * 2).map(|v| v as f32).collect();
    let a = f(&[2, 3, 2, 2], &x);
    let c = f(&[3, 1, 1], &[1., 2., 3.]);
    let out = run("Sub", 14, vec![], &[&a, &c]).unwrap();
    let want: Vec<f32> = (0..24)
        .map(|n| n as f32 - ((n / 4) % 3 + 1) as f32)
        .collect();
    assert_close(&fvals(&out[0]).1, &want, 0.0);
    let out = run("Sub", 14, vec![], &[&c, &a]).unwrap();
    let want: Vec<f32> = (0..24)
        .map(|n| ((n / 4) % 3 + 1) as f32 - n as f32)
        .collect();
    assert_close(&fvals(&out[0]).1, &want, 0.0);
    let row = f(&[2], &[10., 20.]);
    let out = run("Div", 14, vec![], &[&a, &row]).unwrap();
    let want: Vec<f32> = (0..24)
        .map(|n| n as f32 / if n % 2 == 0 { 10. } else { 20. })
        .collect();
    assert_close(&fvals(&out[0]).1, &want, 1e-7);
    let s = f(&[], &[2.]);
    let out = run("Mul", 14, vec![], &[&s, &a]).unwrap();
    let want: Vec<f32> = (0..24).map(|n| 2. * n as f32).collect();
    assert_eq!(fvals(&out[0]), (vec![2, 3, 2, 2], want));
    // scalar with higher rank than the other operand
    let s3 = f(&[1, 1, 1], &[1.]);
    let v = f(&[2], &[1., 2.]);
    let out = run("Add", 14, vec![], &[&v, &s3]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![1, 1, 2], vec![2., 3.]));
}

#[test]
fn large_parallel_paths() {
    let n = 3 * 40_000;
    let x: Vec<f32> = (0..n).map(|v| (v % 97) as f32).collect();
    let a = f(&[3, 200, 200], &x);
    let bias = f(&[3, 1, 1], &[1., 2., 3.]);
    let out = run("Add", 14, vec![], &[&a, &bias]).unwrap();
    let v = fvals(&out[0]).1;
    for (k, (&g, &xv)) in v.iter().zip(&x).enumerate() {
        assert_eq!(g, xv + (k / 40_000 + 1) as f32);
    }
    let row: Vec<f32> = (0..200).map(|v| v as f32).collect();
    let r = f(&[200], &row);
    let out = run("Mul", 14, vec![], &[&r, &a]).unwrap();
    let v = fvals(&out[0]).1;
    for (k, (&g, &xv)) in v.iter().zip(&x).enumerate() {
        assert_eq!(g, xv * (k % 200) as f32);
    }
    let out = run("Relu", 14, vec![], &[&a]).unwrap();
    assert_eq!(fvals(&out[0]).1, x);
    let out = run("Add", 14, vec![], &[&a, &a]).unwrap();
    let v = fvals(&out[0]).1;
    assert!(v.iter().zip(&x).all(|(g, x)| *g == 2. * x));
    // general path, parallel: [3,200,1] + [1,200]
    let col = f(&[3, 200, 1], &x[..600]);
    let out = run("Add", 14, vec![], &[&col, &r]).unwrap();
    let (s, v) = fvals(&out[0]);
    assert_eq!(s, vec![3, 200, 200]);
    assert_eq!(v[200 * 200 + 5 * 200 + 7], x[200 + 5] + 7.0);
}

#[test]
fn integer_arithmetic() {
    let a = i(&[4], &[7, -7, 7, -7]);
    let b = i(&[4], &[2, 2, -2, -2]);
    let out = run("Div", 14, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![3, -3, -3, 3]);
    let out = run("Add", 14, vec![], &[&a, &i(&[], &[1])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![8, -6, 8, -6]);
    let out = run("Mul", 14, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![14, -14, -14, 14]);
    let out = run("Sub", 14, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![5, -9, 9, -5]);
    assert!(run("Div", 14, vec![], &[&a, &i(&[1], &[0])]).is_err());
    let out = run("Pow", 14, vec![], &[&i(&[2], &[3, -2]), &i(&[], &[3])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![27, -8]);
}

#[test]
fn pow_float() {
    let a = f(&[3], &[2., 3., 4.]);
    check_f(
        "Pow",
        15,
        vec![],
        &[&a, &f(&[], &[2.])],
        &[3],
        &[4., 9., 16.],
    );
    check_f(
        "Pow",
        15,
        vec![],
        &[&a, &i(&[], &[3])],
        &[3],
        &[8., 27., 64.],
    );
    check_f(
        "Pow",
        15,
        vec![],
        &[&a, &f(&[3], &[0.5, -1., 0.])],
        &[3],
        &[2f32.sqrt(), 1. / 3., 1.],
    );
}

#[test]
fn variadic_min_max_sum_mean() {
    let a = f(&[3], &[1., 5., 3.]);
    let b = f(&[3], &[4., 2., 6.]);
    let c = f(&[], &[3.5]);
    check_f("Max", 13, vec![], &[&a, &b, &c], &[3], &[4., 5., 6.]);
    check_f("Min", 13, vec![], &[&a, &b, &c], &[3], &[1., 2., 3.]);
    check_f("Min", 13, vec![], &[&a], &[3], &[1., 5., 3.]);
    check_f("Sum", 13, vec![], &[&a, &b], &[3], &[5., 7., 9.]);
    check_f("Mean", 13, vec![], &[&a, &b], &[3], &[2.5, 3.5, 4.5]);
    let out = run(
        "Max",
        13,
        vec![],
        &[&i(&[2], &[1, 9]), &i(&[2, 1], &[5, 0])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]), (vec![2, 2], vec![5, 9, 1, 9]));
    let out = run(
        "Max",
        13,
        vec![],
        &[&f(&[2], &[f32::NAN, 1.]), &f(&[2], &[0., 2.])],
    )
    .unwrap();
    let v = fvals(&out[0]).1;
    assert!(v[0].is_nan() && v[1] == 2.);
}

#[test]
fn comparisons_and_where() {
    let a = f(&[3], &[1., 2., 3.]);
    let b = f(&[], &[2.]);
    let eq = run("Equal", 13, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&eq[0]).1, vec![0, 1, 0]);
    let lt = run("Less", 13, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&lt[0]).1, vec![1, 0, 0]);
    let gt = run("Greater", 13, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&gt[0]).1, vec![0, 0, 1]);
    let ge = run("GreaterOrEqual", 13, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&ge[0]).1, vec![0, 1, 1]);
    let ieq = run(
        "Equal",
        13,
        vec![],
        &[&i(&[2], &[4, 5]), &i(&[2, 1], &[4, 5])],
    )
    .unwrap();
    assert_eq!(ivals(&ieq[0]), (vec![2, 2], vec![1, 0, 0, 1]));

    let cond = i(&[2, 2], &[1, 0, 0, 1]);
    let x = f(&[2, 2], &[1., 2., 3., 4.]);
    let y = f(&[2, 2], &[-1., -2., -3., -4.]);
    check_f(
        "Where",
        16,
        vec![],
        &[&cond, &x, &y],
        &[2, 2],
        &[1., -2., -3., 4.],
    );
    let ninf = f(&[], &[f32::NEG_INFINITY]);
    check_f(
        "Where",
        16,
        vec![],
        &[&cond, &ninf, &x],
        &[2, 2],
        &[f32::NEG_INFINITY, 2., 3., f32::NEG_INFINITY],
    );
    check_f(
        "Where",
        16,
        vec![],
        &[&cond, &x, &f(&[], &[0.])],
        &[2, 2],
        &[1., 0., 0., 4.],
    );
    // broadcast condition [2] against [2,1] and [1]
    let c = i(&[2], &[1, 0]);
    let xs = f(&[2, 1], &[10., 20.]);
    let ys = f(&[1], &[0.]);
    check_f(
        "Where",
        16,
        vec![],
        &[&c, &xs, &ys],
        &[2, 2],
        &[10., 0., 20., 0.],
    );
    let out = run(
        "Where",
        16,
        vec![],
        &[&c, &i(&[2], &[1, 2]), &i(&[2], &[3, 4])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]).1, vec![1, 4]);
    assert!(run("Where", 16, vec![], &[&i(&[3], &[1, 0, 1]), &x, &y]).is_err());
    let out = run("Not", 13, vec![], &[&c]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![0, 1]);
    let out = run("And", 13, vec![], &[&c, &i(&[2], &[1, 1])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![1, 0]);
}

#[test]
fn empty_tensors_broadcast() {
    let a = f(&[2, 0], &[]);
    let b = f(&[0], &[]);
    let out = run("Add", 14, vec![], &[&a, &b]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 0], vec![]));
    let c = f(&[3, 1], &[1., 2., 3.]);
    let d = f(&[3, 0], &[]);
    let out = run("Mul", 14, vec![], &[&d, &c]).unwrap();
    assert_eq!(fvals(&out[0]).0, vec![3, 0]);
    let out = run("Relu", 14, vec![], &[&d]).unwrap();
    assert_eq!(fvals(&out[0]).0, vec![3, 0]);
}

#[test]
fn broadcast_errors() {
    let a = f(&[2, 3], &[0.; 6]);
    let b = f(&[4], &[0.; 4]);
    let err = run("Add", 14, vec![], &[&a, &b]).unwrap_err();
    assert!(err.0.contains("broadcast"), "{}", err.0);
    assert!(run("Add", 14, vec![], &[&a]).is_err());
}

#[test]
fn unary_math() {
    let x = f(&[4], &[0.25, 1., 4., 9.]);
    check_f("Sqrt", 13, vec![], &[&x], &[4], &[0.5, 1., 2., 3.]);
    check_f(
        "Reciprocal",
        13,
        vec![],
        &[&x],
        &[4],
        &[4., 1., 0.25, 1. / 9.],
    );
    check_f(
        "Log",
        13,
        vec![],
        &[&x],
        &[4],
        &[0.25f32.ln(), 0., 4f32.ln(), 9f32.ln()],
    );
    check_f(
        "Exp",
        13,
        vec![],
        &[&f(&[2], &[0., 1.])],
        &[2],
        &[1., std::f32::consts::E],
    );
    let y = f(&[3], &[-2., 0., 3.]);
    check_f("Neg", 13, vec![], &[&y], &[3], &[2., 0., -3.]);
    check_f("Abs", 13, vec![], &[&y], &[3], &[2., 0., 3.]);
    check_f("Relu", 14, vec![], &[&y], &[3], &[0., 0., 3.]);
    let out = run("Abs", 13, vec![], &[&i(&[2], &[-3, 4])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![3, 4]);
    let out = run("Neg", 13, vec![], &[&i(&[2], &[-3, 4])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![3, -4]);
}

#[test]
fn erf_accuracy() {
    // reference values of erf
    let xs = [0.0f32, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, -0.5, -2.5];
    let want = [
        0.0,
        0.112_462_916,
        0.520_499_9,
        0.842_700_8,
        0.966_105_16,
        0.995_322_3,
        0.999_977_9,
        -0.520_499_9,
        -0.999_593,
    ];
    let out = run("Erf", 13, vec![], &[&f(&[9], &xs)]).unwrap();
    assert_close(&fvals(&out[0]).1, &want, 1e-7);
}

#[test]
fn activations() {
    let x = f(&[5], &[-3., -1., 0., 1., 3.]);
    let sig: Vec<f32> = [-3f32, -1., 0., 1., 3.]
        .iter()
        .map(|v| 1. / (1. + (-v).exp()))
        .collect();
    check_f("Sigmoid", 13, vec![], &[&x], &[5], &sig);
    let th: Vec<f32> = [-3f32, -1., 0., 1., 3.].iter().map(|v| v.tanh()).collect();
    check_f("Tanh", 13, vec![], &[&x], &[5], &th);
    check_f(
        "LeakyRelu",
        16,
        vec![],
        &[&x],
        &[5],
        &[-0.03, -0.01, 0., 1., 3.],
    );
    check_f(
        "LeakyRelu",
        16,
        vec![("alpha", Attribute::Float(0.5))],
        &[&x],
        &[5],
        &[-1.5, -0.5, 0., 1., 3.],
    );
    check_f(
        "HardSigmoid",
        6,
        vec![],
        &[&x],
        &[5],
        &[0., 0.3, 0.5, 0.7, 1.],
    );
    check_f(
        "HardSwish",
        14,
        vec![],
        &[&x],
        &[5],
        &[0., -1. / 3., 0., 2. / 3., 3.],
    );
    // sigmoid far out stays finite
    let out = run("Sigmoid", 13, vec![], &[&f(&[2], &[-100., 100.])]).unwrap();
    let v = fvals(&out[0]).1;
    assert!(v[0] >= 0.0 && v[0] < 1e-30 && v[1] == 1.0, "{v:?}");
}

#[test]
fn gelu_variants() {
    let xs = [-2.0f32, -0.5, 0., 0.5, 2.];
    let x = f(&[5], &xs);
    // 0.5 x (1 + erf(x / sqrt 2)) from reference erf values
    let exact = [-0.045_500_26, -0.154_268_57, 0., 0.345_731_43, 1.954_499_7];
    check_f("Gelu", 20, vec![], &[&x], &[5], &exact);
    let k = (2.0f64 / std::f64::consts::PI).sqrt();
    let tanh: Vec<f32> = xs
        .iter()
        .map(|&v| {
            let v = v as f64;
            (0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())) as f32
        })
        .collect();
    check_f(
        "Gelu",
        20,
        vec![("approximate", Attribute::String("tanh".into()))],
        &[&x],
        &[5],
        &tanh,
    );
    assert!(
        run(
            "Gelu",
            20,
            vec![("approximate", Attribute::String("fast".into()))],
            &[&x]
        )
        .is_err()
    );
}

#[test]
fn clip_variants() {
    let x = f(&[4], &[-2., 0.5, 2., 7.]);
    check_f(
        "Clip",
        6,
        vec![("min", Attribute::Float(0.)), ("max", Attribute::Float(6.))],
        &[&x],
        &[4],
        &[0., 0.5, 2., 6.],
    );
    check_f(
        "Clip",
        6,
        vec![("max", Attribute::Float(1.))],
        &[&x],
        &[4],
        &[-2., 0.5, 1., 1.],
    );
    let lo = f(&[], &[0.]);
    let hi = f(&[], &[1.]);
    check_f(
        "Clip",
        13,
        vec![],
        &[&x, &lo, &hi],
        &[4],
        &[0., 0.5, 1., 1.],
    );
    // only max given (min omitted)
    let n = node("Clip", 3, 1, vec![]);
    let out = run_node(&n, 13, &[Some(&x), None, Some(&hi)]).unwrap();
    assert_eq!(fvals(&out[0]).1, vec![-2., 0.5, 1., 1.]);
    // no bounds at all
    check_f("Clip", 13, vec![], &[&x], &[4], &[-2., 0.5, 2., 7.]);
    // integers
    let xi = i(&[3], &[-5, 3, 10]);
    let out = run("Clip", 13, vec![], &[&xi, &i(&[], &[0]), &i(&[], &[6])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![0, 3, 6]);
    // bad bound
    assert!(run("Clip", 13, vec![], &[&x, &f(&[2], &[0., 1.])]).is_err());
    assert!(run("Clip", 13, vec![], &[&x, &i(&[], &[0])]).is_err());
}

#[test]
fn identity_and_dropout() {
    let x = f(&[2], &[1., 2.]);
    check_f("Identity", 16, vec![], &[&x], &[2], &[1., 2.]);
    check_f(
        "Dropout",
        13,
        vec![],
        &[&x, &f(&[], &[0.5])],
        &[2],
        &[1., 2.],
    );
    let n = node("Dropout", 1, 2, vec![]);
    let out = run_node(&n, 13, &[Some(&x)]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(ivals(&out[1]), (vec![2], vec![1, 1]));
    let xi: TensorData = i(&[1], &[4]);
    let out = run("Identity", 16, vec![], &[&xi]).unwrap();
    assert_eq!(out[0], xi);
}
