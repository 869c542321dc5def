//! Gather/scatter by index tensors against hand-worked examples (the ONNX operator docs').

use super::super::testutil::*;
use crate::ir::Attribute;

#[test]
fn gather_elements_along_each_axis() {
    let data = f(&[2, 2], &[1., 2., 3., 4.]);
    let idx = i(&[2, 2], &[0, 0, 1, 0]);
    check_f(
        "GatherElements",
        13,
        vec![("axis", Attribute::Int(1))],
        &[&data, &idx],
        &[2, 2],
        &[1., 1., 4., 3.],
    );
    let data = f(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    let idx = i(&[2, 3], &[1, 2, 0, 2, 0, -3]);
    check_f(
        "GatherElements",
        13,
        vec![],
        &[&data, &idx],
        &[2, 3],
        &[4., 8., 3., 7., 2., 3.],
    );
    let bad = i(&[1, 1], &[3]);
    assert!(run("GatherElements", 13, vec![], &[&data, &bad]).is_err());
}

#[test]
fn gather_nd_with_and_without_batch_dims() {
    let data = i(&[2, 2], &[0, 1, 2, 3]);
    let out = run("GatherND", 13, vec![], &[&data, &i(&[2, 2], &[0, 0, 1, 1])]).unwrap();
    assert_eq!(ivals(&out[0]), (vec![2], vec![0, 3]));
    let out = run("GatherND", 13, vec![], &[&data, &i(&[2, 1], &[1, 0])]).unwrap();
    assert_eq!(ivals(&out[0]), (vec![2, 2], vec![2, 3, 0, 1]));
    let data = f(&[2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    let idx = i(&[2, 1], &[1, 0]);
    check_f(
        "GatherND",
        13,
        vec![("batch_dims", Attribute::Int(1))],
        &[&data, &idx],
        &[2, 2],
        &[2., 3., 4., 5.],
    );
}

#[test]
fn scatter_elements_with_reductions() {
    let data = f(&[1, 5], &[1., 2., 3., 4., 5.]);
    let idx = i(&[1, 2], &[1, 3]);
    let upd = f(&[1, 2], &[1.1, 2.1]);
    let axis = ("axis", Attribute::Int(1));
    check_f(
        "ScatterElements",
        13,
        vec![axis.clone()],
        &[&data, &idx, &upd],
        &[1, 5],
        &[1., 1.1, 3., 2.1, 5.],
    );
    let dup = i(&[1, 2], &[1, 1]);
    check_f(
        "ScatterElements",
        18,
        vec![axis.clone(), ("reduction", Attribute::String("add".into()))],
        &[&data, &dup, &upd],
        &[1, 5],
        &[1., 5.2, 3., 4., 5.],
    );
    check_f(
        "ScatterElements",
        18,
        vec![axis.clone(), ("reduction", Attribute::String("max".into()))],
        &[&data, &dup, &upd],
        &[1, 5],
        &[1., 2.1, 3., 4., 5.],
    );
    // the deprecated Scatter is the same op
    check_f(
        "Scatter",
        9,
        vec![axis],
        &[&data, &idx, &upd],
        &[1, 5],
        &[1., 1.1, 3., 2.1, 5.],
    );
}

#[test]
fn scatter_nd_slices_and_reductions() {
    let data = f(&[8], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    let idx = i(&[4, 1], &[4, 3, 1, 7]);
    let upd = f(&[4], &[9., 10., 11., 12.]);
    check_f(
        "ScatterND",
        11,
        vec![],
        &[&data, &idx, &upd],
        &[8],
        &[1., 11., 3., 10., 9., 6., 7., 12.],
    );
    check_f(
        "ScatterND",
        16,
        vec![("reduction", Attribute::String("mul".into()))],
        &[&data, &idx, &upd],
        &[8],
        &[1., 22., 3., 40., 45., 6., 7., 96.],
    );
    // whole rows of a matrix
    let data = f(&[3, 2], &[0.; 6]);
    let idx = i(&[1, 1], &[-1]);
    let upd = f(&[1, 2], &[5., 6.]);
    check_f(
        "ScatterND",
        13,
        vec![],
        &[&data, &idx, &upd],
        &[3, 2],
        &[0., 0., 0., 0., 5., 6.],
    );
    let wrong = f(&[2], &[5., 6.]);
    assert!(run("ScatterND", 13, vec![], &[&data, &idx, &wrong]).is_err());
}
