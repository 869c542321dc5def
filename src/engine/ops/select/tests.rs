//! Selection, masks and running sums against hand-worked examples.

use super::super::testutil::*;
use crate::ir::Attribute;

#[test]
fn top_k_orders_values_and_breaks_ties_by_index() {
    let x = f(&[2, 4], &[1., 3., 3., 2., 0., -1., 5., 5.]);
    let k = i(&[1], &[2]);
    let out = run_node(&node("TopK", 2, 2, vec![]), 11, &[Some(&x), Some(&k)]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 2], vec![3., 3., 5., 5.]));
    assert_eq!(ivals(&out[1]).1, vec![1, 2, 2, 3]);
    let smallest = node(
        "TopK",
        2,
        2,
        vec![("largest", Attribute::Int(0)), ("axis", Attribute::Int(0))],
    );
    let k1 = i(&[1], &[1]);
    let out = run_node(&smallest, 11, &[Some(&x), Some(&k1)]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![1, 4], vec![0., -1., 3., 2.]));
    assert_eq!(ivals(&out[1]).1, vec![1, 1, 0, 0]);
    // opset 1: k as an attribute
    let attr = node("TopK", 1, 2, vec![("k", Attribute::Int(1))]);
    let out = run_node(&attr, 9, &[Some(&x)]).unwrap();
    assert_eq!(fvals(&out[0]).1, vec![3., 5.]);
    let too_many = i(&[1], &[5]);
    assert!(
        run_node(
            &node("TopK", 2, 2, vec![]),
            11,
            &[Some(&x), Some(&too_many)]
        )
        .is_err()
    );
}

#[test]
fn non_zero_and_compress() {
    let x = f(&[2, 3], &[0., 1., 0., 2., 0., 3.]);
    let out = run("NonZero", 13, vec![], &[&x]).unwrap();
    assert_eq!(ivals(&out[0]), (vec![2, 3], vec![0, 1, 1, 1, 0, 2]));
    let cond = i(&[2], &[0, 1]);
    let out = run(
        "Compress",
        11,
        vec![("axis", Attribute::Int(1))],
        &[&x, &cond],
    )
    .unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 1], vec![1., 0.]));
    let cond = i(&[4], &[1, 1, 0, 1]);
    let out = run("Compress", 11, vec![], &[&x, &cond]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![3], vec![0., 1., 2.]));
}

#[test]
fn one_hot_axes_and_negative_indices() {
    let idx = i(&[3], &[0, -1, 5]);
    let depth = i(&[], &[3]);
    let values = f(&[2], &[0., 9.]);
    let out = run("OneHot", 11, vec![], &[&idx, &depth, &values]).unwrap();
    assert_eq!(
        fvals(&out[0]),
        (vec![3, 3], vec![9., 0., 0., 0., 0., 9., 0., 0., 0.])
    );
    let out = run(
        "OneHot",
        11,
        vec![("axis", Attribute::Int(0))],
        &[&idx, &depth, &values],
    )
    .unwrap();
    assert_eq!(
        fvals(&out[0]),
        (vec![3, 3], vec![9., 0., 0., 0., 0., 0., 0., 9., 0.])
    );
}

#[test]
fn trilu_and_eye_like() {
    let x = f(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    check_f(
        "Trilu",
        14,
        vec![],
        &[&x],
        &[3, 3],
        &[1., 2., 3., 0., 5., 6., 0., 0., 9.],
    );
    let k = i(&[], &[-1]);
    check_f(
        "Trilu",
        14,
        vec![("upper", Attribute::Int(0))],
        &[&x, &k],
        &[3, 3],
        &[0., 0., 0., 4., 0., 0., 7., 8., 0.],
    );
    let out = run(
        "EyeLike",
        9,
        vec![("k", Attribute::Int(1))],
        &[&f(&[2, 3], &[0.; 6])],
    )
    .unwrap();
    assert_eq!(fvals(&out[0]).1, vec![0., 1., 0., 0., 0., 1.]);
}

#[test]
fn cum_sum_directions() {
    let x = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let axis = i(&[], &[1]);
    check_f(
        "CumSum",
        14,
        vec![],
        &[&x, &axis],
        &[2, 3],
        &[1., 3., 6., 4., 9., 15.],
    );
    check_f(
        "CumSum",
        14,
        vec![("exclusive", Attribute::Int(1))],
        &[&x, &axis],
        &[2, 3],
        &[0., 1., 3., 0., 4., 9.],
    );
    check_f(
        "CumSum",
        14,
        vec![("reverse", Attribute::Int(1))],
        &[&x, &axis],
        &[2, 3],
        &[6., 5., 3., 15., 11., 6.],
    );
    let axis0 = i(&[1], &[-2]);
    let out = run("CumSum", 14, vec![], &[&i(&[2, 2], &[1, 2, 3, 4]), &axis0]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![1, 2, 4, 6]);
}

#[test]
fn reverse_sequence_per_batch_entry() {
    // [time 3, batch 2]
    let x = f(&[3, 2], &[0., 10., 1., 11., 2., 12.]);
    let lens = i(&[2], &[3, 2]);
    check_f(
        "ReverseSequence",
        10,
        vec![],
        &[&x, &lens],
        &[3, 2],
        &[2., 11., 1., 10., 0., 12.],
    );
    // batch-major
    let xb = f(&[2, 3], &[0., 1., 2., 10., 11., 12.]);
    check_f(
        "ReverseSequence",
        10,
        vec![
            ("time_axis", Attribute::Int(1)),
            ("batch_axis", Attribute::Int(0)),
        ],
        &[&xb, &lens],
        &[2, 3],
        &[2., 1., 0., 11., 10., 12.],
    );
}
