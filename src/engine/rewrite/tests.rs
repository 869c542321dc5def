//! The rewrites on hand-built graphs: what they fuse, fold and keep, and that the rewritten
//! plan computes what the original nodes compute.

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};

use super::rewrite;
use crate::engine::ops::conv::{Activation, ConvEpilogue};
use crate::engine::ops::testutil::Rng;
use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
use crate::error::Result;
use crate::ir::{Attribute, DType, Graph, Node, Tensor, TensorData, ValueInfo};

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node::new(name, op, inputs, outputs)
}

fn constant(name: &str, shape: &[usize], values: Vec<f32>) -> (String, Tensor) {
    let data = ArrayD::from_shape_vec(IxDyn(shape), values).expect("shape");
    (
        name.to_string(),
        Tensor::new(name, TensorData::F32(data), DType::F32),
    )
}

fn graph(nodes: Vec<Node>, initializers: Vec<(String, Tensor)>, output: &str) -> Graph {
    Graph {
        name: "test".into(),
        nodes,
        inputs: vec![ValueInfo {
            name: "x".into(),
            dtype: None,
            shape: None,
        }],
        outputs: vec![ValueInfo {
            name: output.into(),
            dtype: None,
            shape: None,
        }],
        initializers: initializers.into_iter().collect(),
        opset: 17,
    }
}

/// x·Clip(x + 3, 0, 6) / 6, as exporters spell hard-swish.
fn hard_swish_graph() -> Graph {
    graph(
        vec![
            node("add", "Add", &["x", "three"], &["a"]),
            node("clip", "Clip", &["a", "zero", "six"], &["c"]),
            node("mul", "Mul", &["x", "c"], &["m"]),
            node("div", "Div", &["m", "six"], &["y"]),
        ],
        vec![
            constant("three", &[], vec![3.0]),
            constant("zero", &[], vec![0.0]),
            constant("six", &[], vec![6.0]),
        ],
        "y",
    )
}

/// Wants every tensor: the plan then runs the original nodes one by one.
struct All(Vec<String>);

impl TensorHook for All {
    fn on_tensor(&mut self, site: TensorSite<'_>, _: &mut TensorData) -> Result<()> {
        self.0.push(site.name.to_string());
        Ok(())
    }
}

fn input(shape: &[usize], seed: u64) -> HashMap<String, TensorData> {
    let x = Rng::new(seed).array(shape).mapv(|v| v * 8.0);
    [("x".to_string(), TensorData::F32(x))].into()
}

fn output(out: Vec<(String, TensorData)>) -> ArrayD<f32> {
    out.into_iter()
        .next()
        .and_then(|(_, v)| v.as_f32().cloned())
        .expect("float output")
}

fn op_types(graph: &Graph, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
    let order: Vec<usize> = (0..graph.nodes.len()).collect();
    rewrite(graph, &order, keep)
        .nodes
        .iter()
        .map(|p| p.node.op_type.clone())
        .collect()
}

#[test]
fn hard_swish_chain_becomes_one_step_with_the_same_values() {
    let g = hard_swish_graph();
    assert_eq!(op_types(&g, &|_| false), vec!["FusedElementwise"]);
    let plan = Plan::new(&g).expect("plan");
    for shape in [vec![3, 5], vec![2, 8, 40, 40]] {
        let fused = output(
            plan.run(input(&shape, 1), None, RunOptions::default())
                .unwrap(),
        );
        let mut all = All(Vec::new());
        let plain = output(
            plan.run(input(&shape, 1), Some(&mut all), RunOptions::default())
                .unwrap(),
        );
        assert_eq!(all.0, vec!["x", "a", "c", "m", "y"], "every tensor shown");
        for (f, p) in fused.iter().zip(plain.iter()) {
            assert!((f - p).abs() <= 1e-6 * p.abs().max(1.0), "{f} vs {p}");
        }
        // the closed form
        let x = input(&shape, 1)["x"].as_f32().unwrap().clone();
        for (f, x) in fused.iter().zip(x.iter()) {
            let want = x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
            assert!((f - want).abs() <= 1e-6 * want.abs().max(1.0));
        }
    }
}

#[test]
fn kept_tensors_stop_a_chain() {
    let g = hard_swish_graph();
    // the Clip output is wanted: Add+Clip stay apart from Mul+Div
    let types = op_types(&g, &|n| n == "c");
    assert_eq!(types, vec!["FusedElementwise", "FusedElementwise"]);
    // a tensor read outside the chain stops it too
    let mut g = hard_swish_graph();
    g.nodes.push(node("extra", "Softmax", &["a"], &["r"]));
    g.nodes.push(node("sum", "Add", &["y", "r"], &["z"]));
    g.outputs[0].name = "z".into();
    let order: Vec<usize> = (0..g.nodes.len()).collect();
    let rewritten = rewrite(&g, &order, &|_| false);
    let fused: Vec<Vec<String>> = rewritten
        .nodes
        .iter()
        .filter_map(|p| p.fused.as_ref())
        .map(|f| f.members().iter().map(|n| n.name.clone()).collect())
        .collect();
    assert_eq!(
        fused,
        vec![vec!["clip", "mul", "div", "sum"]],
        "'a' is read by Softmax and Clip, so Add stays out"
    );
}

/// Conv → BatchNormalization → `activation` nodes.
fn conv_bn_graph(activation: Vec<Node>) -> Graph {
    let mut rng = Rng::new(7);
    let w: Vec<f32> = (0..4 * 3 * 3 * 3).map(|_| rng.f32()).collect();
    let mut conv = node("conv", "Conv", &["x", "w", "b"], &["c"]);
    conv.attributes
        .insert("pads".into(), Attribute::Ints(vec![1, 1, 1, 1]));
    let mut nodes = vec![
        conv,
        node(
            "bn",
            "BatchNormalization",
            &["c", "g", "beta", "m", "v"],
            &["n"],
        ),
    ];
    nodes.extend(activation);
    graph(
        nodes,
        vec![
            constant("w", &[4, 3, 3, 3], w),
            constant("b", &[4], vec![0.1, -0.2, 0.3, 0.0]),
            constant("g", &[4], vec![1.5, 0.5, -2.0, 1.0]),
            constant("beta", &[4], vec![0.0, 1.0, -1.0, 0.5]),
            constant("m", &[4], vec![0.2, -0.1, 0.0, 1.0]),
            constant("v", &[4], vec![0.5, 2.0, 0.1, 1.0]),
            constant("three", &[], vec![3.0]),
            constant("zero", &[], vec![0.0]),
            constant("six", &[], vec![6.0]),
        ],
        "y",
    )
}

/// The rewritten plan's output against the node-by-node one (a hook keeping every tensor).
fn same_as_unfused(g: &Graph, shape: &[usize]) {
    let plan = Plan::new(g).expect("plan");
    let feeds = || input(shape, 3);
    let rewritten = output(plan.run(feeds(), None, RunOptions::default()).unwrap());
    let plain = output(
        plan.run(feeds(), Some(&mut All(Vec::new())), RunOptions::default())
            .unwrap(),
    );
    let scale = plain.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (f, p) in rewritten.iter().zip(plain.iter()) {
        assert!((f - p).abs() <= 1e-5 * scale, "{f} vs {p}");
    }
}

/// The epilogue a rewritten Conv carries.
fn conv_epilogue(g: &Graph) -> ConvEpilogue {
    let order: Vec<usize> = (0..g.nodes.len()).collect();
    let rewritten = rewrite(g, &order, &|_| false);
    let conv = rewritten
        .nodes
        .iter()
        .find(|p| p.node.op_type == "Conv")
        .expect("a Conv");
    ConvEpilogue::from_node(&conv.node)
        .expect("valid")
        .expect("an epilogue")
}

/// Conv → BatchNormalization → Relu: BN and Relu go into the Conv's epilogue, values stay.
#[test]
fn batch_norm_and_relu_go_into_the_conv() {
    let g = conv_bn_graph(vec![node("relu", "Relu", &["n"], &["y"])]);
    assert_eq!(op_types(&g, &|_| false), vec!["Conv"]);
    assert_eq!(conv_epilogue(&g).activation, Some(Activation::Relu));
    assert_eq!(
        op_types(&g, &|n| n == "c"),
        vec!["Conv", "BatchNormalization", "Relu"],
        "a wanted Conv output is not folded away"
    );
    assert_eq!(
        op_types(&g, &|n| n == "n"),
        vec!["Conv", "Relu"],
        "BN folds, the wanted BN output stays"
    );
    same_as_unfused(&g, &[2, 3, 6, 6]);
}

/// Hard-swish spelled as Add/Clip/Mul/Div after Conv + BN is recognised as the epilogue's.
#[test]
fn spelled_out_hard_swish_goes_into_the_conv() {
    let g = conv_bn_graph(vec![
        node("add", "Add", &["n", "three"], &["a"]),
        node("clip", "Clip", &["a", "zero", "six"], &["c6"]),
        node("mul", "Mul", &["n", "c6"], &["p"]),
        node("div", "Div", &["p", "six"], &["y"]),
    ]);
    assert_eq!(op_types(&g, &|_| false), vec!["Conv"]);
    assert_eq!(conv_epilogue(&g).activation, Some(Activation::HardSwish));
    same_as_unfused(&g, &[2, 3, 6, 6]);
    // SiLU stays a fused chain (vector loops)
    let g = conv_bn_graph(vec![
        node("sig", "Sigmoid", &["n"], &["s"]),
        node("mul", "Mul", &["n", "s"], &["y"]),
    ]);
    assert_eq!(op_types(&g, &|_| false), vec!["Conv", "FusedElementwise"]);
    same_as_unfused(&g, &[2, 3, 6, 6]);
}

#[test]
fn identities_go_and_constants_fold() {
    let g = graph(
        vec![
            node("id", "Identity", &["x"], &["i"]),
            node("k", "Mul", &["two", "three"], &["six"]),
            node("drop", "Dropout", &["i"], &["d"]),
            node("scale", "Mul", &["d", "six"], &["y"]),
        ],
        vec![
            constant("two", &[], vec![2.0]),
            constant("three", &[], vec![3.0]),
        ],
        "y",
    );
    assert_eq!(op_types(&g, &|_| false), vec!["Mul"]);
    let plan = Plan::new(&g).expect("plan");
    let y = output(
        plan.run(input(&[4], 2), None, RunOptions::default())
            .unwrap(),
    );
    let x = input(&[4], 2)["x"].as_f32().unwrap().clone();
    assert_eq!(y, x.mapv(|v| v * 6.0));
}

/// A fused chain on integer data falls back to the nodes one by one.
#[test]
fn fused_chains_fall_back_on_integers() {
    let g = graph(
        vec![
            node("add", "Add", &["x", "one"], &["a"]),
            node("mul", "Mul", &["a", "x"], &["y"]),
        ],
        vec![(
            "one".into(),
            Tensor::new(
                "one",
                TensorData::I64(ArrayD::from_elem(IxDyn(&[]), 1)),
                DType::I64,
            ),
        )],
        "y",
    );
    let plan = Plan::new(&g).expect("plan");
    let x = TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1, 2, 3]).unwrap());
    let out = plan
        .run([("x".to_string(), x)].into(), None, RunOptions::default())
        .unwrap();
    assert_eq!(out[0].1.as_i64().unwrap().as_slice().unwrap(), &[2, 6, 12]);
}

/// x → QuantizeLinear(scale, zero point) → DequantizeLinear(`dq_scale`, zero point) → y, with
/// `channels` scales along axis 1 (one scale, per tensor, when 0).
fn quantize_pair_graph(channels: usize, dq_scale: &str) -> Graph {
    let n = channels.max(1);
    let scales: Vec<f32> = (0..n).map(|c| 0.05 + 0.03 * c as f32).collect();
    let shape: &[usize] = if channels == 0 { &[] } else { &[channels] };
    let zero_points = Tensor::new(
        "z",
        TensorData::F32(ArrayD::from_shape_vec(IxDyn(shape), vec![-3.0; n]).expect("shape")),
        DType::I8,
    );
    let mut q = node("q", "QuantizeLinear", &["x", "s", "z"], &["codes"]);
    let mut dq = node("dq", "DequantizeLinear", &["codes", dq_scale, "z"], &["y"]);
    for n in [&mut q, &mut dq] {
        n.attributes.insert("axis".into(), Attribute::Int(1));
    }
    let mut g = graph(
        vec![q, dq],
        vec![
            constant("s", shape, scales.clone()),
            constant("s_copy", shape, scales.clone()),
            constant("other", shape, scales.iter().map(|s| s * 2.0).collect()),
        ],
        "y",
    );
    g.initializers.insert("z".into(), zero_points);
    g
}

#[test]
fn a_quantize_dequantize_pair_becomes_one_step_with_the_same_values() {
    for channels in [0, 4] {
        for scale in ["s", "s_copy"] {
            let g = quantize_pair_graph(channels, scale);
            assert_eq!(op_types(&g, &|_| false), vec!["QuantizeLinear"], "{scale}");
            let plan = Plan::new(&g).expect("plan");
            let mut feeds = input(&[2, 4, 5, 3], 7);
            if let Some(TensorData::F32(x)) = feeds.get_mut("x") {
                let x = x.as_slice_mut().expect("contiguous");
                x[0] = f32::NAN;
                x[1] = 1e9;
                x[2] = -0.025; // a tie at scale 0.05
            }
            let fused = output(
                plan.run(feeds.clone(), None, RunOptions::default())
                    .unwrap(),
            );
            let mut all = All(Vec::new());
            let pair = output(
                plan.run(feeds, Some(&mut all), RunOptions::default())
                    .unwrap(),
            );
            assert_eq!(
                all.0,
                vec!["x", "codes", "y"],
                "the codes shown when asked for"
            );
            assert!(fused[[0, 0, 0, 0]].is_nan() && pair[[0, 0, 0, 0]].is_nan());
            let bits = |a: &ArrayD<f32>| a.iter().skip(1).map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&fused),
                bits(&pair),
                "bit for bit, {channels} channels"
            );
            assert_eq!(fused[[0, 0, 0, 1]], (127.0 + 3.0) * 0.05, "saturated");
        }
    }
}

#[test]
fn pairs_on_different_grids_or_with_shared_codes_stay_apart() {
    let g = quantize_pair_graph(0, "other");
    assert_eq!(
        op_types(&g, &|_| false),
        vec!["QuantizeLinear", "DequantizeLinear"]
    );
    let mut g = quantize_pair_graph(0, "s");
    g.nodes.push(node(
        "twice",
        "DequantizeLinear",
        &["codes", "s", "z"],
        &["y2"],
    ));
    g.nodes.push(node("sum", "Add", &["y", "y2"], &["out"]));
    g.outputs[0].name = "out".into();
    let types = op_types(&g, &|_| false);
    assert_eq!(types.iter().filter(|t| *t == "DequantizeLinear").count(), 2);
}

/// Conv → BN → Relu → QuantizeLinear → DequantizeLinear (uint8, per tensor): everything goes
/// into the Conv's epilogue, the round trip last, with the values of the node-by-node run.
#[test]
fn a_quantize_dequantize_pair_after_a_conv_goes_into_its_epilogue() {
    let mut g = conv_bn_graph(vec![
        node("relu", "Relu", &["n"], &["r"]),
        node("q", "QuantizeLinear", &["r", "qs", "qz"], &["codes"]),
        node("dq", "DequantizeLinear", &["codes", "qs", "qz"], &["y"]),
    ]);
    g.initializers.extend([constant("qs", &[], vec![0.02])]);
    g.initializers.insert(
        "qz".into(),
        Tensor::new(
            "qz",
            TensorData::F32(ArrayD::from_elem(IxDyn(&[]), 10.0)),
            DType::U8,
        ),
    );
    assert_eq!(op_types(&g, &|_| false), vec!["Conv"]);
    let epilogue = conv_epilogue(&g);
    assert_eq!(epilogue.activation, Some(Activation::Relu));
    let grid = epilogue
        .round_trip
        .expect("the pair in the epilogue")
        .to_array();
    assert_eq!(grid, [0.02, 10.0, 0.0, 255.0]);
    assert_eq!(
        op_types(&g, &|n| n == "codes"),
        vec!["Conv", "QuantizeLinear", "DequantizeLinear"],
        "wanted codes keep the pair apart"
    );
    let plan = Plan::new(&g).expect("plan");
    let feeds = || input(&[2, 3, 6, 6], 3);
    let fused = output(plan.run(feeds(), None, RunOptions::default()).unwrap());
    let plain = output(
        plan.run(feeds(), Some(&mut All(Vec::new())), RunOptions::default())
            .unwrap(),
    );
    assert!(
        fused
            .iter()
            .all(|v| ((v / 0.02).round() - v / 0.02).abs() < 1e-3)
    );
    let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&fused), bits(&plain), "bit for bit");
}
