//! The rewrites on hand-built graphs: exact constants and attributes as the ONNX changelog
//! defines them, fresh names, and the refusals.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::*;
use crate::ir::{Attribute, DType, Dim, Subgraph, Tensor, TensorData, ValueInfo};

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<(&str, Attribute)>,
) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

fn value(name: &str, dtype: DType, rank: usize) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: Some(dtype),
        shape: Some(vec![Dim::Fixed(2); rank]),
    }
}

fn graph(opset: i64, nodes: Vec<Node>, inputs: Vec<ValueInfo>, outputs: &[&str]) -> Graph {
    Graph {
        name: "g".into(),
        nodes,
        inputs,
        outputs: outputs
            .iter()
            .map(|o| ValueInfo {
                name: o.to_string(),
                dtype: None,
                shape: None,
            })
            .collect(),
        initializers: BTreeMap::new(),
        opset,
    }
}

fn floats(name: &str, shape: &[usize], values: Vec<f32>) -> Tensor {
    let data = ArrayD::from_shape_vec(IxDyn(shape), values).unwrap();
    Tensor::new(name, TensorData::F32(data), DType::F32)
}

fn ints_of(g: &Graph, name: &str) -> Vec<i64> {
    g.initializers[name]
        .data
        .as_i64()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn floats_of(g: &Graph, name: &str) -> Vec<f32> {
    g.initializers[name]
        .data
        .as_f32()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn string(n: &Node, attr: &str) -> String {
    n.attr_string(attr, "<absent>").unwrap()
}

#[test]
fn slice_attributes_become_int64_inputs_in_order() {
    let slice = node(
        "Slice",
        "s",
        &["x"],
        &["y"],
        vec![
            ("starts", Attribute::Ints(vec![1, -3])),
            ("ends", Attribute::Ints(vec![i64::MAX, -1])),
            ("axes", Attribute::Ints(vec![0, 2])),
        ],
    );
    let mut g = graph(9, vec![slice], vec![value("x", DType::F32, 3)], &["y"]);
    upgrade_opset(&mut g, 13).unwrap();
    let s = &g.nodes[0];
    assert!(s.attributes.is_empty());
    assert_eq!(s.inputs, ["x", "s_starts", "s_ends", "s_axes"]);
    assert_eq!(ints_of(&g, "s_starts"), [1, -3]);
    assert_eq!(ints_of(&g, "s_ends"), [i64::MAX, -1]);
    assert_eq!(ints_of(&g, "s_axes"), [0, 2]);
    assert_eq!(g.opset, 13);
}

#[test]
fn new_names_never_collide_with_existing_tensors() {
    let slice = node(
        "Slice",
        "s",
        &["s_starts"],
        &["y"],
        vec![
            ("starts", Attribute::Ints(vec![0])),
            ("ends", Attribute::Ints(vec![1])),
        ],
    );
    let mut g = graph(
        7,
        vec![slice],
        vec![value("s_starts", DType::F32, 1)],
        &["y"],
    );
    upgrade_opset(&mut g, 13).unwrap();
    assert_eq!(g.nodes[0].inputs, ["s_starts", "s_starts_1", "s_ends"]);
}

#[test]
fn clip_bounds_take_the_clipped_tensors_type_and_omit_absent_ones() {
    let clip = node(
        "Clip",
        "c",
        &["x"],
        &["y"],
        vec![("max", Attribute::Float(6.0))],
    );
    let mut g = graph(7, vec![clip], vec![value("x", DType::F16, 4)], &["y"]);
    upgrade_opset(&mut g, 13).unwrap();
    let c = &g.nodes[0];
    assert_eq!(c.inputs, ["x", "", "c_max"]);
    let max = &g.initializers["c_max"];
    assert_eq!(max.origin_dtype, DType::F16);
    assert_eq!(max.shape(), &[] as &[usize]);
    assert_eq!(floats_of(&g, "c_max"), [6.0]);
    // The output's type and rank are declared from the graph.
    assert_eq!(g.outputs[0].dtype, Some(DType::F16));
    assert_eq!(g.outputs[0].shape.as_ref().map(Vec::len), Some(4));
}

#[test]
fn pad_value_becomes_an_input_only_when_it_matters() {
    let pads = vec![0, 1, 0, 2];
    let constant = node(
        "Pad",
        "p",
        &["x"],
        &["y"],
        vec![
            ("pads", Attribute::Ints(pads.clone())),
            ("value", Attribute::Float(1.5)),
        ],
    );
    let reflect = node(
        "Pad",
        "r",
        &["y"],
        &["z"],
        vec![
            ("pads", Attribute::Ints(pads.clone())),
            ("mode", Attribute::String("reflect".into())),
            ("value", Attribute::Float(3.0)),
        ],
    );
    let mut g = graph(
        9,
        vec![constant, reflect],
        vec![value("x", DType::F32, 2)],
        &["z"],
    );
    upgrade_opset(&mut g, 11).unwrap();
    assert_eq!(g.nodes[0].inputs, ["x", "p_pads", "p_value"]);
    assert_eq!(ints_of(&g, "p_pads"), pads);
    assert_eq!(floats_of(&g, "p_value"), [1.5]);
    assert_eq!(g.nodes[1].inputs, ["y", "r_pads"]);
    assert_eq!(string(&g.nodes[1], "mode"), "reflect");
}

#[test]
fn topk_k_is_a_one_element_input_and_dropout_ratio_a_scalar() {
    let topk = node(
        "TopK",
        "t",
        &["x"],
        &["v", "i"],
        vec![("k", Attribute::Int(3))],
    );
    let drop = node(
        "Dropout",
        "d",
        &["v"],
        &["y", "mask"],
        vec![("ratio", Attribute::Float(0.25))],
    );
    let mut g = graph(
        7,
        vec![topk, drop],
        vec![value("x", DType::F32, 2)],
        &["y", "i"],
    );
    upgrade_opset(&mut g, 13).unwrap();
    assert_eq!(g.nodes[0].inputs, ["x", "t_k"]);
    assert_eq!(g.initializers["t_k"].shape(), &[1]);
    assert_eq!(ints_of(&g, "t_k"), [3]);
    // The unread mask output is dropped (its type changes at 10); the ratio is an input.
    assert_eq!(g.nodes[1].outputs, ["y"]);
    assert_eq!(g.nodes[1].inputs, ["v", "d_ratio"]);
    assert_eq!(floats_of(&g, "d_ratio"), [0.25]);
    assert_eq!(g.outputs[1].dtype, Some(DType::I64));
}

#[test]
fn a_read_dropout_mask_is_refused_naming_the_node() {
    let drop = node("Dropout", "d", &["x"], &["y", "mask"], vec![]);
    let mut g = graph(
        7,
        vec![drop],
        vec![value("x", DType::F32, 2)],
        &["y", "mask"],
    );
    let err = upgrade_opset(&mut g, 13).unwrap_err().to_string();
    assert!(
        err.starts_with("node 'd' (Dropout): cannot be lifted from opset 7 to 13"),
        "{err}"
    );
    assert!(err.contains("'mask'"), "{err}");
}

#[test]
fn axes_move_at_13_for_squeeze_and_reducesum_and_at_18_for_other_reductions() {
    let squeeze = node(
        "Squeeze",
        "sq",
        &["x"],
        &["a"],
        vec![("axes", Attribute::Ints(vec![1]))],
    );
    let sum = node(
        "ReduceSum",
        "rs",
        &["a"],
        &["b"],
        vec![("axes", Attribute::Ints(vec![0]))],
    );
    let mean = node(
        "ReduceMean",
        "rm",
        &["b"],
        &["c"],
        vec![("axes", Attribute::Ints(vec![-1]))],
    );
    let all = node("ReduceMax", "rx", &["c"], &["d"], vec![]);
    let nodes = vec![squeeze, sum, mean, all];
    let mut g13 = graph(11, nodes.clone(), vec![value("x", DType::F32, 4)], &["d"]);
    upgrade_opset(&mut g13, 13).unwrap();
    assert_eq!(g13.nodes[0].inputs, ["x", "sq_axes"]);
    assert_eq!(g13.nodes[1].inputs, ["a", "rs_axes"]);
    assert_eq!(g13.nodes[2].attr_ints("axes").unwrap(), Some(vec![-1]));
    let mut g18 = graph(11, nodes, vec![value("x", DType::F32, 4)], &["d"]);
    upgrade_opset(&mut g18, 18).unwrap();
    assert_eq!(g18.nodes[2].inputs, ["b", "rm_axes"]);
    assert_eq!(ints_of(&g18, "rm_axes"), [-1]);
    // No axes: still every axis, with no input.
    assert_eq!(g18.nodes[3].inputs, ["c"]);
}

#[test]
fn split_gets_its_split_input_at_13_and_num_outputs_at_18() {
    let uneven = node(
        "Split",
        "u",
        &["x"],
        &["a", "b"],
        vec![("split", Attribute::Ints(vec![1, 3]))],
    );
    let equal = node(
        "Split",
        "e",
        &["x"],
        &["c", "d", "f"],
        vec![("axis", Attribute::Int(1))],
    );
    let mut g = graph(
        11,
        vec![uneven, equal],
        vec![value("x", DType::F32, 2)],
        &["a"],
    );
    upgrade_opset(&mut g, 18).unwrap();
    assert_eq!(g.nodes[0].inputs, ["x", "u_split"]);
    assert!(!g.nodes[0].attributes.contains_key("num_outputs"));
    assert_eq!(g.nodes[1].attr_int("num_outputs", 0).unwrap(), 3);
}

#[test]
fn upsample_becomes_resize_with_the_old_coordinates() {
    let up = node(
        "Upsample",
        "u",
        &["x"],
        &["y"],
        vec![
            ("scales", Attribute::Floats(vec![1.0, 1.0, 2.0, 3.0])),
            ("mode", Attribute::String("nearest".into())),
        ],
    );
    // To 10: Resize-10 takes (X, scales) and has only `mode`.
    let mut g10 = graph(7, vec![up.clone()], vec![value("x", DType::F32, 4)], &["y"]);
    upgrade_opset(&mut g10, 10).unwrap();
    let r = &g10.nodes[0];
    assert_eq!((r.op_type.as_str(), r.inputs.len()), ("Resize", 2));
    assert_eq!(floats_of(&g10, &r.inputs[1]), [1.0, 1.0, 2.0, 3.0]);
    assert_eq!(r.attributes.len(), 1);
    // To 11 and 12: roi is a required input (empty), asymmetric coordinates, floor rounding.
    let mut g11 = graph(7, vec![up.clone()], vec![value("x", DType::F32, 4)], &["y"]);
    upgrade_opset(&mut g11, 11).unwrap();
    let r = &g11.nodes[0];
    assert_eq!(r.inputs, ["x", "u_roi", "u_scales"]);
    assert_eq!(g11.initializers["u_roi"].shape(), &[0]);
    assert_eq!(string(r, "coordinate_transformation_mode"), "asymmetric");
    assert_eq!(string(r, "nearest_mode"), "floor");
    // From 13 roi may be omitted.
    let mut g13 = graph(7, vec![up], vec![value("x", DType::F32, 4)], &["y"]);
    upgrade_opset(&mut g13, 13).unwrap();
    assert_eq!(g13.nodes[0].inputs, ["x", "", "u_scales"]);
}

#[test]
fn resize_10_rounds_down_when_enlarging_and_up_when_shrinking() {
    let resize = |scales: Vec<f32>| {
        let mut g = graph(
            10,
            vec![node("Resize", "r", &["x", "s"], &["y"], vec![])],
            vec![value("x", DType::F32, 4)],
            &["y"],
        );
        g.initializers.insert("s".into(), floats("s", &[4], scales));
        upgrade_opset(&mut g, 13).map(|()| string(&g.nodes[0], "nearest_mode"))
    };
    assert_eq!(resize(vec![1.0, 1.0, 2.0, 1.5]).unwrap(), "floor");
    assert_eq!(resize(vec![1.0, 1.0, 0.5, 1.0]).unwrap(), "ceil");
    assert_eq!(resize(vec![1.0; 4]).unwrap(), "floor");
    let err = resize(vec![1.0, 1.0, 2.0, 0.5]).unwrap_err().to_string();
    assert!(
        err.contains("node 'r' (Resize)") && err.contains("enlarge some axes"),
        "{err}"
    );
}

#[test]
fn tf_half_pixel_for_nn_becomes_half_pixel_with_shifted_rounding() {
    let resize = |rounding: &str| {
        let attrs = vec![
            (
                "coordinate_transformation_mode",
                Attribute::String("tf_half_pixel_for_nn".into()),
            ),
            ("mode", Attribute::String("nearest".into())),
            ("nearest_mode", Attribute::String(rounding.into())),
        ];
        let r = node("Resize", "r", &["x", "roi", "s"], &["y"], attrs);
        let mut g = graph(11, vec![r], vec![value("x", DType::F32, 4)], &["y"]);
        upgrade_opset(&mut g, 13).map(|()| {
            let n = &g.nodes[0];
            (
                string(n, "coordinate_transformation_mode"),
                string(n, "nearest_mode"),
            )
        })
    };
    assert_eq!(
        resize("floor").unwrap(),
        ("half_pixel".into(), "round_prefer_ceil".into())
    );
    assert_eq!(
        resize("round_prefer_floor").unwrap(),
        ("half_pixel".into(), "ceil".into())
    );
    assert!(
        resize("ceil")
            .unwrap_err()
            .to_string()
            .contains("no exact equivalent")
    );
}

#[test]
fn softmax_keeps_the_old_meaning_with_flatten_and_reshape() {
    // Last axis (known rank): only the attribute changes.
    let last = node(
        "Softmax",
        "last",
        &["x"],
        &["a"],
        vec![("axis", Attribute::Int(2))],
    );
    // Axis 1 of a rank-3 input: the old op ran over axes 1 and 2 together.
    let old = node("LogSoftmax", "old", &["a"], &["b"], vec![]);
    let mut g = graph(11, vec![last, old], vec![value("x", DType::F32, 3)], &["b"]);
    upgrade_opset(&mut g, 13).unwrap();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        ops,
        ["Softmax", "Shape", "Flatten", "LogSoftmax", "Reshape"]
    );
    assert_eq!(g.nodes[0].attr_int("axis", 0).unwrap(), -1);
    assert_eq!(g.nodes[2].attr_int("axis", 0).unwrap(), 1);
    assert_eq!(g.nodes[3].attr_int("axis", 0).unwrap(), -1);
    let reshape = &g.nodes[4];
    assert_eq!(reshape.outputs, ["b"]);
    assert_eq!(
        reshape.inputs,
        [g.nodes[3].outputs[0].clone(), g.nodes[1].outputs[0].clone()]
    );
}

#[test]
fn batch_norm_loses_spatial_and_unread_training_outputs() {
    let bn = node(
        "BatchNormalization",
        "bn",
        &["x", "s", "b", "m", "v"],
        &["y", "mean", "var"],
        vec![("spatial", Attribute::Int(1))],
    );
    let mut g = graph(7, vec![bn.clone()], vec![value("x", DType::F32, 4)], &["y"]);
    upgrade_opset(&mut g, 14).unwrap();
    assert!(g.nodes[0].attributes.is_empty());
    assert_eq!(g.nodes[0].outputs, ["y"]);
    let mut spatial0 = bn.clone();
    spatial0
        .attributes
        .insert("spatial".into(), Attribute::Int(0));
    let mut g = graph(7, vec![spatial0], vec![value("x", DType::F32, 4)], &["y"]);
    assert!(
        upgrade_opset(&mut g, 13)
            .unwrap_err()
            .to_string()
            .contains("spatial = 0")
    );
    let mut g = graph(7, vec![bn], vec![value("x", DType::F32, 4)], &["y", "mean"]);
    let err = upgrade_opset(&mut g, 14).unwrap_err().to_string();
    assert!(err.contains("training output 'mean' is read"), "{err}");
}

#[test]
fn renamed_and_removed_operators() {
    let nodes = vec![
        node("Scatter", "sc", &["x", "i", "u"], &["a"], vec![]),
        node(
            "ImageScaler",
            "is",
            &["a"],
            &["b"],
            vec![
                ("scale", Attribute::Float(0.5)),
                ("bias", Attribute::Floats(vec![1.0, 2.0])),
            ],
        ),
    ];
    let mut g = graph(9, nodes, vec![value("x", DType::F32, 4)], &["b"]);
    upgrade_opset(&mut g, 13).unwrap();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["ScatterElements", "Mul", "Add"]);
    let add = &g.nodes[2];
    assert_eq!(add.outputs, ["b"]);
    assert_eq!(g.initializers[&add.inputs[1]].shape(), &[2, 1, 1]);
    assert_eq!(floats_of(&g, &g.nodes[1].inputs[1]), [0.5]);

    let grid = node(
        "GridSample",
        "gs",
        &["x", "g"],
        &["y"],
        vec![("mode", Attribute::String("bicubic".into()))],
    );
    let roi = node("RoiAlign", "ra", &["y", "r", "b"], &["z"], vec![]);
    let mut g = graph(16, vec![grid, roi], vec![value("x", DType::F32, 4)], &["z"]);
    upgrade_opset(&mut g, 21).unwrap();
    assert_eq!(string(&g.nodes[0], "mode"), "cubic");
    // RoiAlign was lifted past 16 already (the graph is at 16): untouched.
    assert_eq!(
        string(&g.nodes[1], "coordinate_transformation_mode"),
        "<absent>"
    );
    let roi = node("RoiAlign", "ra", &["x", "r", "b"], &["z"], vec![]);
    let mut g = graph(10, vec![roi], vec![value("x", DType::F32, 4)], &["z"]);
    upgrade_opset(&mut g, 16).unwrap();
    assert_eq!(
        string(&g.nodes[0], "coordinate_transformation_mode"),
        "output_half_pixel"
    );

    let crop = node("Crop", "cr", &["x"], &["y"], vec![]);
    let mut g = graph(8, vec![crop], vec![value("x", DType::F32, 4)], &["y"]);
    let err = upgrade_opset(&mut g, 13).unwrap_err().to_string();
    assert!(
        err.starts_with("node 'cr' (Crop)") && err.contains("experimental"),
        "{err}"
    );
}

#[test]
fn group_norm_scale_and_bias_are_repeated_per_channel_in_the_graph() {
    let gn = node(
        "GroupNormalization",
        "gn",
        &["x", "s", "b"],
        &["y"],
        vec![("num_groups", Attribute::Int(3))],
    );
    let mut g = graph(18, vec![gn], vec![value("x", DType::F32, 4)], &["y"]);
    upgrade_opset(&mut g, 21).unwrap();
    let last = g.nodes.last().unwrap();
    assert_eq!(last.op_type, "GroupNormalization");
    assert_eq!(
        last.inputs,
        ["x", "gn_scale_per_channel", "gn_bias_per_channel"]
    );
    assert_eq!(ints_of(&g, "gn_groups"), [3]);
    let shape = g.nodes.iter().find(|n| n.op_type == "Shape").unwrap();
    assert_eq!(
        (
            shape.attr_int("start", 0).unwrap(),
            shape.attr_int("end", 0).unwrap()
        ),
        (1, 2)
    );
}

#[test]
fn dft_axis_becomes_an_explicit_input_since_its_default_changed() {
    let dft = node("DFT", "f", &["x"], &["y"], vec![]);
    let mut g = graph(17, vec![dft], vec![value("x", DType::F32, 3)], &["y"]);
    upgrade_opset(&mut g, 20).unwrap();
    assert_eq!(g.nodes[0].inputs, ["x", "", "f_axis"]);
    assert_eq!(ints_of(&g, "f_axis"), [1]);
    assert_eq!(g.initializers["f_axis"].shape(), &[] as &[usize]);
}

#[test]
fn out_of_range_opsets_and_batched_scan_are_refused() {
    let relu = node("Relu", "r", &["x"], &["y"], vec![]);
    let mut old = graph(
        6,
        vec![relu.clone()],
        vec![value("x", DType::F32, 2)],
        &["y"],
    );
    let err = upgrade_opset(&mut old, 13).unwrap_err().to_string();
    assert!(
        err.contains("opset 6") && err.contains("7 and newer"),
        "{err}"
    );
    let mut new = graph(
        13,
        vec![relu.clone()],
        vec![value("x", DType::F32, 2)],
        &["y"],
    );
    assert!(
        upgrade_opset(&mut new, 22)
            .unwrap_err()
            .to_string()
            .contains("newest")
    );
    // Scan-8 (batched) has no rewrite to Scan-9.
    let body = graph(8, vec![], vec![], &[]);
    let scan = node(
        "Scan",
        "scan",
        &["", "s", "x"],
        &["t", "y"],
        vec![("body", Attribute::Graph(Box::new(Subgraph::new(body))))],
    );
    let mut g = graph(8, vec![scan], vec![value("x", DType::F32, 3)], &["y"]);
    let err = upgrade_opset(&mut g, 13).unwrap_err().to_string();
    assert!(
        err.starts_with("node 'scan' (Scan)") && err.contains("Scan-8"),
        "{err}"
    );
    // Already there: nothing changes.
    let mut same = graph(13, vec![relu], vec![value("x", DType::F32, 2)], &["y"]);
    upgrade_opset(&mut same, 13).unwrap();
    assert_eq!(same.nodes.len(), 1);
    assert_eq!(same.opset, 13);
}

#[test]
fn stale_forms_name_each_node_and_the_opset_that_removed_the_form() {
    let slice = node(
        "Slice",
        "s",
        &["x"],
        &["y"],
        vec![("starts", Attribute::Ints(vec![0]))],
    );
    let up = node("Upsample", "u", &["y", "sc"], &["z"], vec![]);
    let g = graph(13, vec![slice, up], vec![value("x", DType::F32, 2)], &["z"]);
    let stale = stale_forms(&g);
    assert!(
        stale.contains(&"node 's' (Slice): attribute 'starts' was removed at opset 10".to_string()),
        "{stale:?}"
    );
    assert!(
        stale.contains(&"node 'u' (Upsample): the operator was removed at opset 10".to_string()),
        "{stale:?}"
    );
    let mut clean = g.clone();
    clean.opset = 9;
    clean.nodes[1].inputs.truncate(1);
    assert!(stale_forms(&clean).iter().all(|s| !s.contains("'s'")));
}

#[test]
fn an_untold_type_is_float32_only_when_the_graph_has_no_other_real_type() {
    let mut custom = node("MyOp", "m", &["x"], &["a"], vec![]);
    custom.domain = "com.example".into();
    let clip = node(
        "Clip",
        "c",
        &["a"],
        &["y"],
        vec![("min", Attribute::Float(0.0))],
    );
    let nodes = vec![custom, clip];
    let mut g = graph(9, nodes.clone(), vec![value("x", DType::F32, 2)], &["y"]);
    upgrade_opset(&mut g, 13).unwrap();
    assert_eq!(g.initializers["c_min"].origin_dtype, DType::F32);
    let mut g = graph(9, nodes, vec![value("x", DType::F16, 2)], &["y"]);
    let err = upgrade_opset(&mut g, 13).unwrap_err().to_string();
    assert!(
        err.starts_with("node 'c' (Clip)") && err.contains("element type of input 'a'"),
        "{err}"
    );
}

#[test]
fn subgraphs_are_lifted_with_the_graph_holding_them() {
    // An opset-9 Slice (attributes) inside an If branch, reading the outer input `x`.
    let slice = node(
        "Slice",
        "inner_slice",
        &["x"],
        &["sliced"],
        vec![
            ("starts", Attribute::Ints(vec![1])),
            ("ends", Attribute::Ints(vec![2])),
            ("axes", Attribute::Ints(vec![0])),
        ],
    );
    let mut branch = graph(9, vec![slice], vec![], &["sliced"]);
    branch.inputs.push(value("x", DType::F32, 2)); // the capture of `x`
    let branch = Subgraph {
        graph: branch,
        formal_inputs: 0,
    };
    let other = Subgraph {
        graph: {
            let mut g = graph(9, vec![], vec![], &["x"]);
            g.inputs.push(value("x", DType::F32, 2));
            g
        },
        formal_inputs: 0,
    };
    let branch_node = node(
        "If",
        "if",
        &["c", "x"],
        &["y"],
        vec![
            ("then_branch", Attribute::Graph(Box::new(branch))),
            ("else_branch", Attribute::Graph(Box::new(other))),
        ],
    );
    let mut g = graph(
        9,
        vec![branch_node],
        vec![value("c", DType::Bool, 0), value("x", DType::F32, 2)],
        &["y"],
    );
    upgrade_opset(&mut g, 13).unwrap();
    let then_branch = g.nodes[0].attr_graph("then_branch").unwrap().unwrap();
    assert_eq!(then_branch.graph.opset, 13);
    let lifted = &then_branch.graph.nodes[0];
    assert!(lifted.attributes.is_empty(), "{:?}", lifted.attributes);
    assert_eq!(lifted.inputs.len(), 4);
    assert_eq!(ints_of(&then_branch.graph, &lifted.inputs[1]), [1]);
    assert_eq!(ints_of(&then_branch.graph, &lifted.inputs[2]), [2]);
    // The node still binds the capture after its condition.
    assert_eq!(g.nodes[0].inputs, ["c", "x"]);
    assert!(stale_forms(&then_branch.graph).is_empty());
}
