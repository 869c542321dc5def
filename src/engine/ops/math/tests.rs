//! The math kernels against closed forms.

use super::super::testutil::*;
use crate::ir::Attribute;

/// A unary float function to compare a kernel with.
type Reference = fn(f32) -> f32;

fn unary(op: &str, attrs: Vec<(&str, Attribute)>, x: &[f32]) -> Vec<f32> {
    let out = run(op, 18, attrs, &[&f(&[x.len()], x)]).expect("kernel ok");
    fvals(&out[0]).1
}

#[test]
fn trigonometric_and_hyperbolic_functions() {
    let x = [-0.9f32, -0.3, 0.0, 0.4, 0.8];
    let cases: [(&str, Reference); 9] = [
        ("Sin", f32::sin),
        ("Cos", f32::cos),
        ("Tan", f32::tan),
        ("Asin", f32::asin),
        ("Acos", f32::acos),
        ("Atan", f32::atan),
        ("Sinh", f32::sinh),
        ("Cosh", f32::cosh),
        ("Asinh", f32::asinh),
    ];
    for (op, func) in cases {
        let want: Vec<f32> = x.iter().map(|&v| func(v)).collect();
        assert_close(&unary(op, vec![], &x), &want, 1e-6);
    }
    assert_close(&unary("Atanh", vec![], &[0.5]), &[0.549_306_15], 1e-6);
    assert_close(&unary("Acosh", vec![], &[2.0]), &[1.316_958], 1e-6);
    // outside the domain: NaN, as in C
    assert!(unary("Asin", vec![], &[2.0])[0].is_nan());
}

#[test]
fn rounding_and_sign() {
    let x = [-2.5f32, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4, -2.6];
    assert_eq!(
        unary("Round", vec![], &x),
        vec![-2., -2., -0., 0., 2., 2., 2., -3.]
    );
    assert_eq!(
        unary("Floor", vec![], &x),
        vec![-3., -2., -1., 0., 1., 2., 2., -3.]
    );
    assert_eq!(
        unary("Ceil", vec![], &x),
        vec![-2., -1., -0., 1., 2., 3., 3., -2.]
    );
    assert_eq!(unary("Sign", vec![], &[-3., 0., 7.]), vec![-1., 0., 1.]);
    let out = run("Sign", 13, vec![], &[&i(&[3], &[-4, 0, 9])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![-1, 0, 1]);
}

#[test]
fn nan_and_inf_detection() {
    let x = f(&[4], &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
    let out = run("IsNaN", 13, vec![], &[&x]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![1, 0, 0, 0]);
    let out = run("IsInf", 13, vec![], &[&x]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![0, 1, 1, 0]);
    let out = run(
        "IsInf",
        13,
        vec![("detect_negative", Attribute::Int(0))],
        &[&x],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]).1, vec![0, 1, 0, 0]);
}

#[test]
fn parametrized_activations() {
    let x = [-2.0f32, -0.5, 0.0, 0.5, 2.0];
    let elu: Vec<f32> = x
        .iter()
        .map(|&v| if v >= 0.0 { v } else { 0.7 * (v.exp() - 1.0) })
        .collect();
    assert_close(
        &unary("Elu", vec![("alpha", Attribute::Float(0.7))], &x),
        &elu,
        1e-6,
    );
    let (a, g) = (1.673_263_2f32, 1.050_701f32);
    let selu: Vec<f32> = x
        .iter()
        .map(|&v| {
            if v > 0.0 {
                g * v
            } else {
                g * a * (v.exp() - 1.0)
            }
        })
        .collect();
    assert_close(&unary("Selu", vec![], &x), &selu, 1e-6);
    let celu: Vec<f32> = x
        .iter()
        .map(|&v| v.max(0.0) + (2.0 * ((v / 2.0).exp() - 1.0)).min(0.0))
        .collect();
    assert_close(
        &unary("Celu", vec![("alpha", Attribute::Float(2.0))], &x),
        &celu,
        1e-6,
    );
    assert_eq!(
        unary(
            "ThresholdedRelu",
            vec![("alpha", Attribute::Float(0.4))],
            &x
        ),
        vec![0., 0., 0., 0.5, 2.]
    );
    assert_eq!(
        unary(
            "Shrink",
            vec![
                ("lambd", Attribute::Float(1.0)),
                ("bias", Attribute::Float(0.25))
            ],
            &x
        ),
        vec![-1.75, 0., 0., 0., 1.75]
    );
    let softplus: Vec<f32> = x.iter().map(|&v| (1.0 + v.exp()).ln()).collect();
    assert_close(&unary("Softplus", vec![], &x), &softplus, 1e-6);
    // no overflow for large inputs
    assert_close(&unary("Softplus", vec![], &[100.0]), &[100.0], 1e-6);
    let softsign: Vec<f32> = x.iter().map(|&v| v / (1.0 + v.abs())).collect();
    assert_close(&unary("Softsign", vec![], &x), &softsign, 1e-6);
    let mish: Vec<f32> = x.iter().map(|&v| v * (1.0 + v.exp()).ln().tanh()).collect();
    assert_close(&unary("Mish", vec![], &x), &mish, 1e-6);
}

#[test]
fn prelu_broadcasts_the_slope() {
    let x = f(&[1, 2, 2], &[-1., 2., -3., 4.]);
    // per-channel slope [C, 1] broadcast over the last axis
    let slope = f(&[2, 1], &[0.5, 0.1]);
    check_f(
        "PRelu",
        16,
        vec![],
        &[&x, &slope],
        &[1, 2, 2],
        &[-0.5, 2., -0.3, 4.],
    );
    // scalar slope
    let slope = f(&[1], &[0.2]);
    check_f(
        "PRelu",
        9,
        vec![],
        &[&x, &slope],
        &[1, 2, 2],
        &[-0.2, 2., -0.6, 4.],
    );
    // opset 6: a [C] slope lines up with axis 1
    let x4 = f(&[1, 2, 1, 2], &[-1., 2., -3., 4.]);
    let slope = f(&[2], &[0.5, 0.1]);
    check_f(
        "PRelu",
        6,
        vec![],
        &[&x4, &slope],
        &[1, 2, 1, 2],
        &[-0.5, 2., -0.3, 4.],
    );
    // a slope that would grow the output is refused
    let big = f(&[3, 1, 1], &[1., 1., 1.]);
    assert!(run("PRelu", 16, vec![], &[&x, &big]).is_err());
}

#[test]
fn modulo_signs() {
    let a = i(&[4], &[7, -7, 7, -7]);
    let b = i(&[4], &[3, 3, -3, -3]);
    let out = run("Mod", 13, vec![], &[&a, &b]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![1, 2, -2, -1]);
    let out = run("Mod", 13, vec![("fmod", Attribute::Int(1))], &[&a, &b]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![1, -1, 1, -1]);
    let x = f(&[2], &[5.5, -5.5]);
    let y = f(&[1], &[2.0]);
    check_f(
        "Mod",
        13,
        vec![("fmod", Attribute::Int(1))],
        &[&x, &y],
        &[2],
        &[1.5, -1.5],
    );
    assert!(run("Mod", 13, vec![], &[&x, &y]).is_err());
    let zero = i(&[1], &[0]);
    assert!(run("Mod", 13, vec![], &[&a, &zero]).is_err());
}

#[test]
fn cast_like_follows_the_target_kind() {
    let x = f(&[2], &[2.7, -2.7]);
    let out = run("CastLike", 15, vec![], &[&x, &i(&[1], &[0])]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![2, -2]);
    let out = run("CastLike", 15, vec![], &[&i(&[1], &[3]), &x]).unwrap();
    assert_eq!(fvals(&out[0]).1, vec![3.0]);
}

#[test]
fn swish_is_x_times_sigmoid_of_alpha_x() {
    let x = [-3.0f32, -0.5, 0.0, 0.5, 3.0];
    let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
    let want: Vec<f32> = x.iter().map(|&v| v * sig(v)).collect();
    assert_close(&unary("Swish", vec![], &x), &want, 1e-6);
    let want: Vec<f32> = x.iter().map(|&v| v * sig(2.0 * v)).collect();
    assert_close(
        &unary("Swish", vec![("alpha", Attribute::Float(2.0))], &x),
        &want,
        1e-6,
    );
}
