//! Linear, cubic, antialiased and cropping resizes against hand-worked values.

use super::super::super::testutil::*;
use crate::ir::{Attribute, TensorData};

fn s(v: &str) -> Attribute {
    Attribute::String(v.into())
}

fn resize(opset: i64, x: &TensorData, sizes: &[i64], attrs: Vec<(&str, Attribute)>) -> Vec<f32> {
    let n = node("Resize", 4, 1, attrs);
    let sz = i(&[sizes.len()], sizes);
    let out = run_node(&n, opset, &[Some(x), None, None, Some(&sz)])
        .unwrap_or_else(|e| panic!("{}", e.0));
    fvals(&out[0]).1
}

#[test]
fn linear_coordinate_modes() {
    let x = f(&[1, 4], &[1., 2., 3., 4.]);
    let linear = ("mode", s("linear"));
    // half_pixel 4 -> 8: sources -0.25, 0.25, ... 3.25, clamped at the edges
    assert_close(
        &resize(13, &x, &[1, 8], vec![linear.clone()]),
        &[1., 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.],
        1e-6,
    );
    // align_corners 4 -> 7: sources o/2
    assert_close(
        &resize(
            13,
            &x,
            &[1, 7],
            vec![
                linear.clone(),
                ("coordinate_transformation_mode", s("align_corners")),
            ],
        ),
        &[1., 1.5, 2., 2.5, 3., 3.5, 4.],
        1e-6,
    );
    // asymmetric 4 -> 8: sources o/2, the last ones clamp to 4
    assert_close(
        &resize(
            13,
            &x,
            &[1, 8],
            vec![
                linear.clone(),
                ("coordinate_transformation_mode", s("asymmetric")),
            ],
        ),
        &[1., 1.5, 2., 2.5, 3., 3.5, 4., 4.],
        1e-6,
    );
    // 2-D bilinear is separable: a plane a + b·row + c·col stays a plane
    let plane: Vec<f32> = (0..3)
        .flat_map(|r| (0..3).map(move |c| 1. + 2. * r as f32 + c as f32))
        .collect();
    let x = f(&[1, 1, 3, 3], &plane);
    let out = resize(
        13,
        &x,
        &[1, 1, 5, 5],
        vec![
            linear,
            ("coordinate_transformation_mode", s("align_corners")),
        ],
    );
    let want: Vec<f32> = (0..5)
        .flat_map(|r| (0..5).map(move |c| 1. + 2. * (r as f32 / 2.) + c as f32 / 2.))
        .collect();
    assert_close(&out, &want, 1e-6);
}

#[test]
fn cubic_reproduces_lines_inside_and_excludes_outside() {
    // Keys' cubic convolution with a = -0.5 reproduces linear data where all four taps are
    // inside (other values of a, such as the default -0.75, do not)
    let x = f(&[1, 8], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    let out = resize(
        13,
        &x,
        &[1, 16],
        vec![
            ("mode", s("cubic")),
            ("cubic_coeff_a", Attribute::Float(-0.5)),
        ],
    );
    for (o, v) in out.iter().enumerate().skip(4).take(8) {
        let source = (o as f32 + 0.5) / 2.0 - 0.5;
        assert!((v - source).abs() < 1e-5, "{o}: {v} vs {source}");
    }
    // exclude_outside renormalizes the taps at the border: a constant stays constant
    let c = f(&[1, 3], &[2., 2., 2.]);
    let out = resize(
        13,
        &c,
        &[1, 7],
        vec![
            ("mode", s("cubic")),
            ("exclude_outside", Attribute::Int(1)),
            ("cubic_coeff_a", Attribute::Float(-0.5)),
        ],
    );
    assert_close(&out, &[2.; 7], 1e-6);
}

#[test]
fn antialias_widens_the_filter_when_shrinking() {
    let x = f(&[1, 4], &[1., 2., 3., 4.]);
    let out = resize(
        18,
        &x,
        &[1, 2],
        vec![("mode", s("linear")), ("antialias", Attribute::Int(1))],
    );
    // taps at -1..=2 and 1..=4 with weights 1/8, 3/8, 3/8, 1/8, edges folded in
    assert_close(&out, &[1.625, 3.375], 1e-6);
    // without antialias: plain two-tap interpolation at sources 0.5 and 2.5
    let out = resize(18, &x, &[1, 2], vec![("mode", s("linear"))]);
    assert_close(&out, &[1.5, 3.5], 1e-6);
}

#[test]
fn crop_and_resize_extrapolates_outside_the_roi() {
    let x = f(&[1, 4], &[1., 2., 3., 4.]);
    let n = node(
        "Resize",
        4,
        1,
        vec![
            ("mode", s("linear")),
            ("coordinate_transformation_mode", s("tf_crop_and_resize")),
            ("extrapolation_value", Attribute::Float(-9.0)),
        ],
    );
    // roi [0, 0.5] on the last axis, widened to [-0.5, 1.5]: sources -1.5 .. 4.5
    let roi = f(&[4], &[0., -0.5, 1., 1.5]);
    let sizes = i(&[2], &[1, 4]);
    let out = run_node(&n, 13, &[Some(&x), Some(&roi), None, Some(&sizes)]).unwrap();
    assert_close(&fvals(&out[0]).1, &[-9., 1.5, 3.5, -9.], 1e-6);
}

#[test]
fn upsample_linear_uses_asymmetric_coordinates() {
    let x = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let sc = f(&[4], &[1., 1., 2., 2.]);
    let out = run("Upsample", 9, vec![("mode", s("linear"))], &[&x, &sc]).unwrap();
    let want = [
        1., 1.5, 2., 2., 2., 2.5, 3., 3., 3., 3.5, 4., 4., 3., 3.5, 4., 4.,
    ];
    assert_eq!(fvals(&out[0]).0, vec![1, 1, 4, 4]);
    assert_close(&fvals(&out[0]).1, &want, 1e-6);
}
