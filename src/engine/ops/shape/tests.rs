//! The shape and data-movement kernels against hand-computed results and the ONNX examples.

use super::super::testutil::*;
use crate::ir::{Attribute, DType, Tensor, TensorData};

fn seq(shape: &[usize]) -> TensorData {
    let n: usize = shape.iter().product();
    f(shape, &(0..n).map(|v| v as f32).collect::<Vec<_>>())
}

fn seqi(shape: &[usize]) -> TensorData {
    let n: usize = shape.iter().product();
    i(shape, &(0..n as i64).collect::<Vec<_>>())
}

fn shape_of(t: &TensorData) -> Vec<usize> {
    t.shape().to_vec()
}

#[test]
fn flatten_axes() {
    let x = seq(&[2, 3, 4]);
    for (axis, want) in [
        (0, [1, 24]),
        (1, [2, 12]),
        (2, [6, 4]),
        (3, [24, 1]),
        (-1, [6, 4]),
        (-3, [1, 24]),
    ] {
        let out = run("Flatten", 13, vec![("axis", Attribute::Int(axis))], &[&x]).unwrap();
        assert_eq!(shape_of(&out[0]), want, "axis {axis}");
        assert_eq!(fvals(&out[0]).1, fvals(&x).1);
    }
    assert!(run("Flatten", 13, vec![("axis", Attribute::Int(4))], &[&x]).is_err());
    let out = run("Flatten", 13, vec![], &[&seqi(&[2, 2])]).unwrap();
    assert_eq!(ivals(&out[0]).0, vec![2, 2]);
}

#[test]
fn reshape_rules() {
    let x = seq(&[2, 3, 4]);
    let cases: [(&[i64], &[usize]); 4] = [
        (&[4, -1], &[4, 6]),
        (&[0, 0, -1], &[2, 3, 4]),
        (&[0, 12], &[2, 12]),
        (&[24], &[24]),
    ];
    for (spec, want) in cases {
        let s = i(&[spec.len()], spec);
        let out = run("Reshape", 14, vec![], &[&x, &s]).unwrap();
        assert_eq!(shape_of(&out[0]), want, "{spec:?}");
    }
    for bad in [&[5, -1][..], &[-1, -1], &[7, 3], &[0, 0, 0, 0], &[-2, 12]] {
        let s = i(&[bad.len()], bad);
        assert!(run("Reshape", 14, vec![], &[&x, &s]).is_err(), "{bad:?}");
    }
    // allowzero: 0 means a zero dim
    let empty = seq(&[0, 3]);
    let s = i(&[2], &[3, 0]);
    let out = run(
        "Reshape",
        14,
        vec![("allowzero", Attribute::Int(1))],
        &[&empty, &s],
    )
    .unwrap();
    assert_eq!(shape_of(&out[0]), vec![3, 0]);
    assert!(
        run(
            "Reshape",
            14,
            vec![("allowzero", Attribute::Int(1))],
            &[&x, &s]
        )
        .is_err()
    );
    // opset < 5 attribute
    let out = run(
        "Reshape",
        1,
        vec![("shape", Attribute::Ints(vec![6, 4]))],
        &[&x],
    )
    .unwrap();
    assert_eq!(shape_of(&out[0]), vec![6, 4]);
}

#[test]
fn transpose_default_and_perm() {
    let x = seq(&[2, 3]);
    let out = run("Transpose", 13, vec![], &[&x]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![3, 2], vec![0., 3., 1., 4., 2., 5.]));
    let x = seqi(&[2, 3, 4]);
    let out = run(
        "Transpose",
        13,
        vec![("perm", Attribute::Ints(vec![1, 2, 0]))],
        &[&x],
    )
    .unwrap();
    let (s, v) = ivals(&out[0]);
    assert_eq!(s, vec![3, 4, 2]);
    // out[b][c][a] = x[a][b][c] = a*12 + b*4 + c
    assert_eq!(v[(2 * 4 + 1) * 2 + 1], 12 + 2 * 4 + 1);
    for bad in [vec![0, 1], vec![0, 0, 1], vec![0, 1, 3]] {
        assert!(run("Transpose", 13, vec![("perm", Attribute::Ints(bad))], &[&x]).is_err());
    }
}

#[test]
fn squeeze_unsqueeze() {
    let x = seq(&[1, 3, 1, 2]);
    let out = run("Squeeze", 13, vec![], &[&x]).unwrap();
    assert_eq!(shape_of(&out[0]), vec![3, 2]);
    let out = run("Squeeze", 13, vec![], &[&x, &i(&[1], &[-2])]).unwrap();
    assert_eq!(shape_of(&out[0]), vec![1, 3, 2]);
    let out = run(
        "Squeeze",
        11,
        vec![("axes", Attribute::Ints(vec![0]))],
        &[&x],
    )
    .unwrap();
    assert_eq!(shape_of(&out[0]), vec![3, 1, 2]);
    assert!(run("Squeeze", 13, vec![], &[&x, &i(&[1], &[1])]).is_err());

    let y = seq(&[3, 2]);
    let out = run("Unsqueeze", 13, vec![], &[&y, &i(&[2], &[0, -1])]).unwrap();
    assert_eq!(shape_of(&out[0]), vec![1, 3, 2, 1]);
    let out = run(
        "Unsqueeze",
        11,
        vec![("axes", Attribute::Ints(vec![1, 3]))],
        &[&y],
    )
    .unwrap();
    assert_eq!(shape_of(&out[0]), vec![3, 1, 2, 1]);
    let s = f(&[], &[5.]);
    let out = run("Unsqueeze", 13, vec![], &[&s, &i(&[1], &[0])]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![1], vec![5.]));
    assert!(run("Unsqueeze", 13, vec![], &[&y, &i(&[2], &[0, 0])]).is_err());
    assert!(run("Unsqueeze", 13, vec![], &[&y, &i(&[1], &[4])]).is_err());
    assert!(run("Unsqueeze", 13, vec![], &[&y]).is_err());
}

#[test]
fn shape_and_size() {
    let x = seq(&[2, 3, 4, 5]);
    let out = run("Shape", 13, vec![], &[&x]).unwrap();
    assert_eq!(ivals(&out[0]), (vec![4], vec![2, 3, 4, 5]));
    let out = run(
        "Shape",
        15,
        vec![("start", Attribute::Int(1)), ("end", Attribute::Int(-1))],
        &[&x],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]).1, vec![3, 4]);
    let out = run("Shape", 15, vec![("start", Attribute::Int(-10))], &[&x]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![2, 3, 4, 5]);
    let out = run(
        "Shape",
        15,
        vec![("start", Attribute::Int(3)), ("end", Attribute::Int(1))],
        &[&x],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]), (vec![0], vec![]));
    let out = run("Size", 13, vec![], &[&x]).unwrap();
    assert_eq!(ivals(&out[0]), (vec![], vec![120]));
}

#[test]
fn expand_bidirectional() {
    let x = f(&[3, 1], &[1., 2., 3.]);
    let out = run("Expand", 13, vec![], &[&x, &i(&[2], &[2, 4])]);
    // [3,1] with [2,4]? incompatible (3 vs 2)
    assert!(out.is_err());
    let out = run("Expand", 13, vec![], &[&x, &i(&[3], &[2, 1, 2])]).unwrap();
    assert_eq!(
        fvals(&out[0]),
        (
            vec![2, 3, 2],
            vec![1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]
        )
    );
    // the shape may be smaller than the input
    let out = run("Expand", 13, vec![], &[&x, &i(&[1], &[1])]).unwrap();
    assert_eq!(shape_of(&out[0]), vec![3, 1]);
}

#[test]
fn concat_axes() {
    let a = seq(&[2, 2]);
    let b = f(&[2, 1], &[9., 8.]);
    let out = run("Concat", 13, vec![("axis", Attribute::Int(-1))], &[&a, &b]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 3], vec![0., 1., 9., 2., 3., 8.]));
    let c = f(&[1, 2], &[7., 7.]);
    let out = run("Concat", 13, vec![("axis", Attribute::Int(0))], &[&a, &c]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![3, 2], vec![0., 1., 2., 3., 7., 7.]));
    let out = run(
        "Concat",
        13,
        vec![("axis", Attribute::Int(0))],
        &[&i(&[1], &[1]), &i(&[0], &[]), &i(&[2], &[2, 3])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]).1, vec![1, 2, 3]);
    assert!(run("Concat", 13, vec![("axis", Attribute::Int(0))], &[&a, &b]).is_err());
    assert!(run("Concat", 13, vec![], &[&a, &a]).is_err());
    assert!(
        run(
            "Concat",
            13,
            vec![("axis", Attribute::Int(0))],
            &[&a, &seqi(&[1, 2])]
        )
        .is_err()
    );
}

type Values = (Vec<usize>, Vec<f32>);

fn split_run(
    opset: i64,
    n_out: usize,
    attrs: Vec<(&str, Attribute)>,
    inputs: &[Option<&TensorData>],
) -> Result<Vec<Values>, String> {
    let n = node("Split", inputs.len(), n_out, attrs);
    run_node(&n, opset, inputs)
        .map(|outs| outs.iter().map(fvals).collect())
        .map_err(|e| e.0)
}

#[test]
fn split_variants() {
    let x = seq(&[2, 6]);
    // equal split into the node's outputs
    let outs = split_run(13, 3, vec![("axis", Attribute::Int(1))], &[Some(&x)]).unwrap();
    assert_eq!(outs[0], (vec![2, 2], vec![0., 1., 6., 7.]));
    assert_eq!(outs[2], (vec![2, 2], vec![4., 5., 10., 11.]));
    // opset 11 attribute
    let outs = split_run(
        11,
        2,
        vec![
            ("axis", Attribute::Int(-1)),
            ("split", Attribute::Ints(vec![1, 5])),
        ],
        &[Some(&x)],
    )
    .unwrap();
    assert_eq!(outs[0], (vec![2, 1], vec![0., 6.]));
    assert_eq!(outs[1].0, vec![2, 5]);
    // opset 13 input
    let s = i(&[2], &[4, 2]);
    let outs = split_run(
        13,
        2,
        vec![("axis", Attribute::Int(1))],
        &[Some(&x), Some(&s)],
    )
    .unwrap();
    assert_eq!(outs[1], (vec![2, 2], vec![4., 5., 10., 11.]));
    // opset 18 num_outputs with a smaller last chunk: 6 -> 3 + 3? use 4 outputs: 2,2,2,0
    let y = seq(&[7]);
    let outs = split_run(18, 3, vec![("num_outputs", Attribute::Int(3))], &[Some(&y)]).unwrap();
    assert_eq!(outs[0].1, vec![0., 1., 2.]);
    assert_eq!(outs[1].1, vec![3., 4., 5.]);
    assert_eq!(outs[2].1, vec![6.]);
    // errors: bad sums, indivisible equal split before 18, num_outputs mismatch
    let bad = i(&[2], &[3, 2]);
    assert!(
        split_run(
            13,
            2,
            vec![("axis", Attribute::Int(1))],
            &[Some(&x), Some(&bad)]
        )
        .is_err()
    );
    assert!(split_run(13, 4, vec![("axis", Attribute::Int(1))], &[Some(&x)]).is_err());
    assert!(split_run(18, 2, vec![("num_outputs", Attribute::Int(3))], &[Some(&y)]).is_err());
}

fn slice10(
    x: &TensorData,
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<TensorData, String> {
    let s = i(&[starts.len()], starts);
    let e = i(&[ends.len()], ends);
    let a = axes.map(|a| i(&[a.len()], a));
    let st = steps.map(|a| i(&[a.len()], a));
    let n = node("Slice", 5, 1, vec![]);
    run_node(
        &n,
        13,
        &[Some(x), Some(&s), Some(&e), a.as_ref(), st.as_ref()],
    )
    .map(|mut o| o.remove(0))
    .map_err(|e| e.0)
}

#[test]
fn slice_variants() {
    let x = seq(&[3, 4]);
    let out = slice10(&x, &[1, 0], &[3, 3], None, None).unwrap();
    assert_eq!(fvals(&out), (vec![2, 3], vec![4., 5., 6., 8., 9., 10.]));
    // negative indices, INT_MAX end, axes
    let out = slice10(&x, &[-2], &[i64::MAX], Some(&[1]), None).unwrap();
    assert_eq!(fvals(&out), (vec![3, 2], vec![2., 3., 6., 7., 10., 11.]));
    // negative step: reverse a row
    let out = slice10(&x, &[-1], &[i64::MIN], Some(&[1]), Some(&[-1])).unwrap();
    assert_eq!(
        fvals(&out).1,
        vec![3., 2., 1., 0., 7., 6., 5., 4., 11., 10., 9., 8.]
    );
    // step -2 from 3 down to (excluding) 0: indices 3, 1
    let out = slice10(&x, &[3], &[0], Some(&[1]), Some(&[-2])).unwrap();
    assert_eq!(fvals(&out), (vec![3, 2], vec![3., 1., 7., 5., 11., 9.]));
    // start beyond the end with a negative step clamps to the last index
    let out = slice10(&x, &[10], &[-10], Some(&[0]), Some(&[-2])).unwrap();
    assert_eq!(fvals(&out).0, vec![2, 4]);
    assert_eq!(fvals(&out).1[..4], [8., 9., 10., 11.]);
    // step 2, clamped start
    let out = slice10(&x, &[-100, 1], &[100, 4], Some(&[0, 1]), Some(&[2, 2])).unwrap();
    assert_eq!(fvals(&out), (vec![2, 2], vec![1., 3., 9., 11.]));
    // empty result
    let out = slice10(&x, &[2], &[1], Some(&[0]), None).unwrap();
    assert_eq!(fvals(&out).0, vec![0, 4]);
    // errors
    assert!(slice10(&x, &[0], &[1], Some(&[0]), Some(&[0])).is_err());
    assert!(slice10(&x, &[0, 0], &[1], None, None).is_err());
    assert!(slice10(&x, &[0, 0], &[1, 1], Some(&[1, 1]), None).is_err());
    // opset 1 attributes, integer data
    let xi = seqi(&[3, 4]);
    let out = run(
        "Slice",
        9,
        vec![
            ("starts", Attribute::Ints(vec![1])),
            ("ends", Attribute::Ints(vec![-1])),
            ("axes", Attribute::Ints(vec![1])),
        ],
        &[&xi],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]), (vec![3, 2], vec![1, 2, 5, 6, 9, 10]));
}

#[test]
fn gather_cases() {
    let x = seq(&[3, 2]);
    let out = run("Gather", 13, vec![], &[&x, &i(&[2], &[2, -3])]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 2], vec![4., 5., 0., 1.]));
    // scalar index drops the axis
    let out = run(
        "Gather",
        13,
        vec![("axis", Attribute::Int(1))],
        &[&x, &i(&[], &[1])],
    )
    .unwrap();
    assert_eq!(fvals(&out[0]), (vec![3], vec![1., 3., 5.]));
    // 2-D indices on axis 1
    let idx = i(&[2, 2], &[0, 1, 1, 0]);
    let out = run(
        "Gather",
        13,
        vec![("axis", Attribute::Int(-1))],
        &[&x, &idx],
    )
    .unwrap();
    assert_eq!(
        fvals(&out[0]),
        (
            vec![3, 2, 2],
            vec![0., 1., 1., 0., 2., 3., 3., 2., 4., 5., 5., 4.]
        )
    );
    // integer data (shape gathering)
    let s = i(&[4], &[1, 3, 224, 224]);
    let out = run("Gather", 13, vec![], &[&s, &i(&[], &[0])]).unwrap();
    assert_eq!(ivals(&out[0]), (vec![], vec![1]));
    assert!(run("Gather", 13, vec![], &[&x, &i(&[1], &[3])]).is_err());
    assert!(run("Gather", 13, vec![], &[&x, &i(&[1], &[-4])]).is_err());
    assert!(
        run(
            "Gather",
            13,
            vec![("axis", Attribute::Int(2))],
            &[&x, &i(&[1], &[0])]
        )
        .is_err()
    );
}

#[test]
fn tile_repeats() {
    let x = f(&[2], &[1., 2.]);
    let out = run("Tile", 13, vec![], &[&x, &i(&[1], &[3])]).unwrap();
    assert_eq!(fvals(&out[0]).1, vec![1., 2., 1., 2., 1., 2.]);
    let x = seq(&[1, 2]);
    let out = run("Tile", 13, vec![], &[&x, &i(&[2], &[2, 1])]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 2], vec![0., 1., 0., 1.]));
    assert!(run("Tile", 13, vec![], &[&x, &i(&[1], &[2])]).is_err());
}

#[test]
fn pad_modes() {
    let x = f(&[3], &[1., 2., 3.]);
    let pads = i(&[2], &[2, 2]);
    let cases: [(&str, [f32; 7]); 4] = [
        ("constant", [0., 0., 1., 2., 3., 0., 0.]),
        ("reflect", [3., 2., 1., 2., 3., 2., 1.]),
        ("edge", [1., 1., 1., 2., 3., 3., 3.]),
        ("wrap", [2., 3., 1., 2., 3., 1., 2.]),
    ];
    for (mode, want) in cases {
        check_f(
            "Pad",
            13,
            vec![("mode", Attribute::String(mode.into()))],
            &[&x, &pads],
            &[7],
            &want,
        );
    }
    // constant value input and negative pads (crop)
    let y = seq(&[2, 3]);
    let pads = i(&[4], &[1, -1, 0, 0]);
    check_f(
        "Pad",
        13,
        vec![],
        &[&y, &pads, &f(&[], &[9.])],
        &[3, 2],
        &[9., 9., 1., 2., 4., 5.],
    );
    // opset 2 attributes
    check_f(
        "Pad",
        2,
        vec![
            ("pads", Attribute::Ints(vec![0, 1, 0, 0])),
            ("value", Attribute::Float(-1.)),
        ],
        &[&y],
        &[2, 4],
        &[-1., 0., 1., 2., -1., 3., 4., 5.],
    );
    // opset 18 axes input
    let n = node(
        "Pad",
        4,
        1,
        vec![("mode", Attribute::String("reflect".into()))],
    );
    let pads = i(&[2], &[1, 1]);
    let axes = i(&[1], &[-1]);
    let out = run_node(&n, 18, &[Some(&y), Some(&pads), None, Some(&axes)]).unwrap();
    assert_eq!(
        fvals(&out[0]),
        (vec![2, 5], vec![1., 0., 1., 2., 1., 4., 3., 4., 5., 4.])
    );
    // integer data
    let out = run(
        "Pad",
        13,
        vec![],
        &[&i(&[1], &[5]), &i(&[2], &[1, 0]), &i(&[], &[7])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]).1, vec![7, 5]);
    // errors
    assert!(run("Pad", 13, vec![], &[&x, &i(&[1], &[1])]).is_err());
    assert!(
        run(
            "Pad",
            13,
            vec![("mode", Attribute::String("mirror".into()))],
            &[&x, &i(&[2], &[1, 1])]
        )
        .is_err()
    );
    assert!(run("Pad", 13, vec![], &[&x, &i(&[2], &[-2, -2])]).is_err());
}

fn resize_sizes(x: &TensorData, sizes: &[i64], attrs: Vec<(&str, Attribute)>) -> Vec<f32> {
    let s = i(&[sizes.len()], sizes);
    let n = node("Resize", 4, 1, attrs);
    let out = run_node(&n, 13, &[Some(x), None, None, Some(&s)]).unwrap();
    fvals(&out[0]).1
}

fn resize_scales(
    x: &TensorData,
    scales: &[f32],
    attrs: Vec<(&str, Attribute)>,
) -> (Vec<usize>, Vec<f32>) {
    let s = f(&[scales.len()], scales);
    let n = node("Resize", 3, 1, attrs);
    let out = run_node(&n, 13, &[Some(x), None, Some(&s)]).unwrap();
    fvals(&out[0])
}

fn s(v: &str) -> Attribute {
    Attribute::String(v.into())
}

#[test]
fn resize_nearest_modes() {
    // onnx test: upsample scales nearest [1,1,2,2] -> [1,1,4,6] with scales 2, 3
    let x = f(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let (shape, v) = resize_scales(&x, &[1., 1., 2., 3.], vec![]);
    assert_eq!(shape, vec![1, 1, 4, 6]);
    assert_eq!(
        v,
        vec![
            1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3., 4.,
            4., 4.
        ]
    );
    // 1-D, 4 -> 8 with each nearest mode under half_pixel: x = (o + .5)/2 - .5
    // o:0..8 -> -0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25
    let x = f(&[1, 4], &[1., 2., 3., 4.]);
    let v = resize_sizes(&x, &[1, 8], vec![]);
    assert_eq!(v, vec![1., 1., 2., 2., 3., 3., 4., 4.]);
    let v = resize_sizes(&x, &[1, 8], vec![("nearest_mode", s("floor"))]);
    assert_eq!(v, vec![1., 1., 1., 2., 2., 3., 3., 4.]);
    let v = resize_sizes(&x, &[1, 8], vec![("nearest_mode", s("ceil"))]);
    assert_eq!(v, vec![1., 2., 2., 3., 3., 4., 4., 4.]);
    // asymmetric: x = o / 2 -> 0, .5, 1, 1.5, ... ties decide
    let asym = ("coordinate_transformation_mode", s("asymmetric"));
    let v = resize_sizes(&x, &[1, 8], vec![asym.clone()]);
    assert_eq!(v, vec![1., 1., 2., 2., 3., 3., 4., 4.]);
    let v = resize_sizes(
        &x,
        &[1, 8],
        vec![asym.clone(), ("nearest_mode", s("round_prefer_ceil"))],
    );
    assert_eq!(v, vec![1., 2., 2., 3., 3., 4., 4., 4.]);
    // align_corners 4 -> 7: x = o * 3/6 = o/2
    let v = resize_sizes(
        &x,
        &[1, 7],
        vec![("coordinate_transformation_mode", s("align_corners"))],
    );
    assert_eq!(v, vec![1., 1., 2., 2., 3., 3., 4.]);
    // tf_half_pixel_for_nn 4 -> 8: x = (o + .5)/2 -> .25, .75, ...
    let v = resize_sizes(
        &x,
        &[1, 8],
        vec![("coordinate_transformation_mode", s("tf_half_pixel_for_nn"))],
    );
    assert_eq!(v, vec![1., 2., 2., 3., 3., 4., 4., 4.]);
    // pytorch_half_pixel to length 1 takes index 0
    let v = resize_sizes(
        &x,
        &[1, 1],
        vec![("coordinate_transformation_mode", s("pytorch_half_pixel"))],
    );
    assert_eq!(v, vec![1.]);
    // downsample 4 -> 2 with half_pixel: x = (o + .5)*2 - .5 = .5, 2.5 -> floor ties: 0, 2
    let v = resize_sizes(&x, &[1, 2], vec![]);
    assert_eq!(v, vec![1., 3.]);
    // unknown modes are refused clearly
    let n = node("Resize", 3, 1, vec![("mode", s("area"))]);
    let sc = f(&[2], &[1., 2.]);
    let err = run_node(&n, 13, &[Some(&x), None, Some(&sc)]).unwrap_err();
    assert!(err.0.contains("nearest"), "{}", err.0);
}

#[test]
fn resize_opset10_and_upsample() {
    // onnx resize_downsample_nearest (opset 10): [[1,2,3,4],[5,6,7,8]] x 0.6 -> [[1,3]]
    let x = f(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    let sc = f(&[4], &[1., 1., 0.6, 0.6]);
    let out = run("Resize", 10, vec![], &[&x, &sc]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![1, 1, 1, 2], vec![1., 3.]));
    let x = f(&[1, 2], &[1., 2.]);
    let sc = f(&[2], &[1., 3.]);
    let out = run("Upsample", 9, vec![], &[&x, &sc]).unwrap();
    assert_eq!(fvals(&out[0]).1, vec![1., 1., 1., 2., 2., 2.]);
    let out = run(
        "Upsample",
        7,
        vec![("scales", Attribute::Floats(vec![2., 1.]))],
        &[&x],
    )
    .unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 2], vec![1., 2., 1., 2.]));
}

#[test]
fn resize_axes_and_aspect_policy() {
    let x = seq(&[2, 4]);
    let s = i(&[1], &[2]);
    let n = node("Resize", 4, 1, vec![("axes", Attribute::Ints(vec![1]))]);
    let out = run_node(&n, 18, &[Some(&x), None, None, Some(&s)]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 2], vec![0., 2., 4., 6.]));
    // not_larger: sizes [4, 4] on [2, 4] -> common scale 1 -> [2, 4]
    let s = i(&[2], &[4, 4]);
    let n = node(
        "Resize",
        4,
        1,
        vec![("keep_aspect_ratio_policy", s_attr("not_larger"))],
    );
    let out = run_node(&n, 18, &[Some(&x), None, None, Some(&s)]).unwrap();
    assert_eq!(fvals(&out[0]).0, vec![2, 4]);
    let n = node(
        "Resize",
        4,
        1,
        vec![("keep_aspect_ratio_policy", s_attr("not_smaller"))],
    );
    let out = run_node(&n, 18, &[Some(&x), None, None, Some(&s)]).unwrap();
    assert_eq!(fvals(&out[0]).0, vec![4, 8]);
    // errors: both or neither of scales and sizes
    let n = node("Resize", 4, 1, vec![]);
    assert!(run_node(&n, 13, &[Some(&x)]).is_err());
    let sc = f(&[2], &[1., 1.]);
    assert!(run_node(&n, 13, &[Some(&x), None, Some(&sc), Some(&s)]).is_err());
}

fn s_attr(v: &str) -> Attribute {
    Attribute::String(v.into())
}

#[test]
fn constants() {
    let t = Tensor::new("v", i(&[2], &[3, 4]), DType::I64);
    let out = run("Constant", 13, vec![("value", Attribute::Tensor(t))], &[]).unwrap();
    assert_eq!(ivals(&out[0]).1, vec![3, 4]);
    let out = run(
        "Constant",
        13,
        vec![("value_float", Attribute::Float(2.5))],
        &[],
    )
    .unwrap();
    assert_eq!(fvals(&out[0]), (vec![], vec![2.5]));
    let out = run(
        "Constant",
        13,
        vec![("value_ints", Attribute::Ints(vec![1, 2]))],
        &[],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]), (vec![2], vec![1, 2]));
    let out = run(
        "Constant",
        13,
        vec![("value_floats", Attribute::Floats(vec![1.]))],
        &[],
    )
    .unwrap();
    assert_eq!(fvals(&out[0]), (vec![1], vec![1.]));
    let out = run("Constant", 13, vec![("value_int", Attribute::Int(7))], &[]).unwrap();
    assert_eq!(ivals(&out[0]), (vec![], vec![7]));
    assert!(run("Constant", 13, vec![], &[]).is_err());
    assert!(
        run(
            "Constant",
            13,
            vec![("value_string", Attribute::String("a".into()))],
            &[]
        )
        .is_err()
    );

    let out = run("ConstantOfShape", 13, vec![], &[&i(&[2], &[2, 3])]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![2, 3], vec![0.; 6]));
    let v = Tensor::new("v", i(&[1], &[5]), DType::I64);
    let out = run(
        "ConstantOfShape",
        13,
        vec![("value", Attribute::Tensor(v))],
        &[&i(&[1], &[2])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]), (vec![2], vec![5, 5]));
    let out = run("ConstantOfShape", 13, vec![], &[&i(&[0], &[])]).unwrap();
    assert_eq!(fvals(&out[0]), (vec![], vec![0.]));
    assert!(run("ConstantOfShape", 13, vec![], &[&i(&[1], &[-1])]).is_err());
}

#[test]
fn range_values() {
    let out = run(
        "Range",
        11,
        vec![],
        &[&i(&[], &[3]), &i(&[], &[9]), &i(&[], &[3])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]), (vec![2], vec![3, 6]));
    let out = run(
        "Range",
        11,
        vec![],
        &[&i(&[], &[10]), &i(&[], &[4]), &i(&[], &[-3])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]).1, vec![10, 7]);
    let out = run(
        "Range",
        11,
        vec![],
        &[&i(&[], &[1]), &i(&[], &[0]), &i(&[], &[1])],
    )
    .unwrap();
    assert_eq!(ivals(&out[0]).0, vec![0]);
    let out = run(
        "Range",
        11,
        vec![],
        &[&f(&[], &[1.]), &f(&[], &[2.]), &f(&[], &[0.25])],
    )
    .unwrap();
    assert_eq!(fvals(&out[0]).1, vec![1., 1.25, 1.5, 1.75]);
    assert!(
        run(
            "Range",
            11,
            vec![],
            &[&i(&[], &[1]), &i(&[], &[5]), &i(&[], &[0])]
        )
        .is_err()
    );
    assert!(
        run(
            "Range",
            11,
            vec![],
            &[&i(&[2], &[1, 2]), &i(&[], &[5]), &i(&[], &[1])]
        )
        .is_err()
    );
}

#[test]
fn absurd_sizes_are_errors() {
    let huge = i(&[3], &[1 << 30, 1 << 30, 1 << 30]);
    assert!(run("ConstantOfShape", 13, vec![], &[&huge]).is_err());
    let x = f(&[1], &[1.]);
    assert!(run("Expand", 13, vec![], &[&x, &huge]).is_err());
    assert!(run("Tile", 13, vec![], &[&x, &i(&[1], &[i64::MAX])]).is_err());
    assert!(run("Pad", 13, vec![], &[&x, &i(&[2], &[i64::MAX, i64::MAX])]).is_err());
    let s = i(&[3], &[i64::MAX, i64::MAX, 0]);
    assert!(run("Reshape", 14, vec![], &[&x, &s]).is_err());
    // extreme slice parameters stay exact
    let y = seq(&[4]);
    let out = slice10(&y, &[i64::MAX], &[i64::MIN], None, Some(&[i64::MIN])).unwrap();
    assert_eq!(fvals(&out), (vec![1], vec![3.]));
    let out = slice10(&y, &[i64::MIN], &[i64::MAX], None, Some(&[i64::MAX])).unwrap();
    assert_eq!(fvals(&out), (vec![1], vec![0.]));
}

fn cast_to(x: &TensorData, code: i64) -> TensorData {
    run("Cast", 13, vec![("to", Attribute::Int(code))], &[x])
        .unwrap()
        .remove(0)
}

#[test]
fn cast_rules() {
    let x = f(&[5], &[-2.7, -0.5, 0.5, 2.7, 300.6]);
    // int64: truncation toward zero
    assert_eq!(ivals(&cast_to(&x, 7)).1, vec![-2, 0, 0, 2, 300]);
    // int32 held as i64
    assert_eq!(ivals(&cast_to(&x, 6)).1, vec![-2, 0, 0, 2, 300]);
    // uint8 wraps (300 -> 44) and is held as f32
    assert_eq!(fvals(&cast_to(&x, 2)).1, vec![254., 0., 0., 2., 44.]);
    // int8
    assert_eq!(fvals(&cast_to(&x, 3)).1, vec![-2., 0., 0., 2., 44.]);
    // bool
    assert_eq!(ivals(&cast_to(&x, 9)).1, vec![1, 1, 1, 1, 1]);
    assert_eq!(ivals(&cast_to(&f(&[2], &[0., f32::NAN]), 9)).1, vec![0, 1]);
    // float16 rounding: 1 + 2^-11 is a tie -> even (1.0); 1 + 3*2^-11 -> 1 + 2^-9
    let h = f(
        &[3],
        &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 70000.],
    );
    assert_eq!(
        fvals(&cast_to(&h, 10)).1,
        vec![1.0, 1.0 + 2f32.powi(-9), f32::INFINITY]
    );
    // bfloat16 keeps 8 bits of mantissa
    let b = f(&[1], &[1.0 + 2f32.powi(-9)]);
    assert_eq!(fvals(&cast_to(&b, 16)).1, vec![1.0]);
    // int to float
    assert_eq!(fvals(&cast_to(&i(&[2], &[3, -4]), 1)).1, vec![3., -4.]);
    assert_eq!(ivals(&cast_to(&i(&[2], &[3, 0]), 9)).1, vec![1, 0]);
    // unsupported target
    assert!(run("Cast", 13, vec![("to", Attribute::Int(8))], &[&x]).is_err());
    assert!(run("Cast", 13, vec![], &[&x]).is_err());
}
