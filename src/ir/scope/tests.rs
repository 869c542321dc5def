use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::*;
use crate::ir::{Attribute, DType, TensorData};

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node::new(name, op, inputs, outputs)
}

fn info(name: &str) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: None,
        shape: None,
    }
}

fn graph(nodes: Vec<Node>, inputs: &[&str], outputs: &[&str]) -> Graph {
    Graph {
        name: "g".into(),
        nodes,
        inputs: inputs.iter().map(|n| info(n)).collect(),
        outputs: outputs.iter().map(|n| info(n)).collect(),
        initializers: BTreeMap::new(),
        opset: 13,
    }
}

fn weight(name: &str) -> Tensor {
    Tensor::new(
        name,
        TensorData::F32(ArrayD::from_elem(IxDyn(&[2, 2]), 1.0)),
        DType::F32,
    )
}

fn with_graph(mut n: Node, attr: &str, g: Graph) -> Node {
    n.attributes
        .insert(attr.into(), Attribute::Graph(Box::new(Subgraph::new(g))));
    n
}

/// If(c) named `name` with outputs `outputs` and these branches.
fn if_node(name: &str, outputs: &[&str], then_branch: Graph, else_branch: Graph) -> Node {
    with_graph(
        with_graph(
            node("If", name, &["c"], outputs),
            "then_branch",
            then_branch,
        ),
        "else_branch",
        else_branch,
    )
}

/// If(c) { then: MatMul(x, W) with W a branch initializer, then an inner If reading `x` and
/// the outer-branch value `m`; else: returns the top initializer `K` as it is }.
fn model() -> Graph {
    let inner_then = graph(
        vec![node("Add", "inner_add", &["m", "x"], &["ia"])],
        &[],
        &["ia"],
    );
    let inner_else = graph(
        vec![node("Neg", "inner_neg", &["x"], &["in"])],
        &[],
        &["in"],
    );
    let inner_if = if_node("inner_if", &["io"], inner_then, inner_else);
    let mut then_branch = graph(
        vec![node("MatMul", "mm", &["x", "W"], &["m"]), inner_if],
        &[],
        &["io"],
    );
    then_branch.initializers.insert("W".into(), weight("W"));
    let else_branch = graph(vec![], &[], &["K"]);
    let top_if = if_node("top_if", &["y"], then_branch, else_branch);
    let mut g = graph(vec![top_if], &["c", "x"], &["y"]);
    g.initializers.insert("K".into(), weight("K"));
    g
}

#[test]
fn branch_weights_move_to_the_top_graph_under_a_name_saying_where_they_live() {
    let mut g = model();
    close_subgraphs(&mut g);
    assert!(g.initializers.contains_key("top_if/then_branch/W"));
    assert_eq!(
        g.initializers["top_if/then_branch/W"].name,
        "top_if/then_branch/W"
    );
    let top = &g.nodes[0];
    let then_branch = top.attr_graph("then_branch").unwrap().unwrap();
    assert!(then_branch.graph.initializers.is_empty());
    assert_eq!(
        then_branch.graph.nodes[0].inputs,
        ["x", "top_if/then_branch/W"]
    );
    // The captured weight knows its type.
    let w = then_branch
        .captured()
        .iter()
        .find(|c| c.name == "top_if/then_branch/W");
    assert_eq!(w.and_then(|c| c.dtype), Some(DType::F32));
}

#[test]
fn outer_reads_become_inputs_of_the_node_at_every_depth() {
    let mut g = model();
    close_subgraphs(&mut g);
    let top = &g.nodes[0];
    // Attribute order: else_branch (reads K), then then_branch (x, W; `c` via the inner If).
    assert_eq!(
        top.captured_names(),
        ["K", "x", "top_if/then_branch/W", "c"]
    );
    assert_eq!(top.inputs, ["c", "K", "x", "top_if/then_branch/W", "c"]);
    assert_eq!(top.formal_input_count(), 1);
    let then_branch = top.attr_graph("then_branch").unwrap().unwrap();
    assert_eq!(then_branch.formal_inputs, 0);
    let inner = &then_branch.graph.nodes[1];
    // The inner If's else reads x; its then reads m (defined in the outer branch) and x.
    assert_eq!(inner.captured_names(), ["x", "m"]);
    assert_eq!(inner.inputs, ["c", "x", "m"]);
}

#[test]
fn control_nodes_need_their_subgraphs_and_matching_outputs() {
    let mut g = model();
    close_subgraphs(&mut g);
    assert_eq!(check_control(&g.nodes[0]), Ok(()));

    let mut missing = g.nodes[0].clone();
    missing.attributes.remove("else_branch");
    assert_eq!(
        check_control(&missing).unwrap_err(),
        "has no 'else_branch' subgraph"
    );

    let mut two_outputs = g.nodes[0].clone();
    two_outputs.outputs.push("z".into());
    let err = check_control(&two_outputs).unwrap_err();
    assert!(
        err.contains("returns 1 values, the node has 2 outputs"),
        "{err}"
    );

    let body = graph(vec![], &["i", "cond"], &["cond"]);
    let lp = with_graph(
        node("Loop", "lp", &["", "go", "v"], &["v_out"]),
        "body",
        body,
    );
    let err = check_control(&lp).unwrap_err();
    assert!(err.contains("the body takes 2 inputs"), "{err}");
}

#[test]
fn constants_read_by_one_subgraph_return_to_it_when_written() {
    let mut g = model();
    close_subgraphs(&mut g);
    sink_constants(&mut g);
    // W is read by the then branch only: it lives there again. K is returned as it is by the
    // else branch, so it stays an outer value.
    assert!(!g.initializers.contains_key("top_if/then_branch/W"));
    assert!(g.initializers.contains_key("K"));
    let top = &g.nodes[0];
    assert_eq!(top.captured_names(), ["K", "x", "c"]);
    assert_eq!(top.inputs, ["c", "K", "x", "c"]);
    let then_branch = top.attr_graph("then_branch").unwrap().unwrap();
    let w = &then_branch.graph.initializers["top_if/then_branch/W"];
    assert_eq!(w.name, "top_if/then_branch/W");
    assert!(then_branch.captured().iter().all(|c| c.name != w.name));
}

#[test]
fn a_node_computing_a_weight_moves_to_the_innermost_subgraph_reading_it() {
    // Top: Wd = Dequantize(Wq, s); If { then: If { then: MatMul(x, Wd) else: Neg(x) } else: x }.
    let inner_then = graph(
        vec![node("MatMul", "mm", &["x", "Wd"], &["m"])],
        &[],
        &["m"],
    );
    let inner_else = graph(vec![node("Neg", "neg", &["x"], &["n"])], &[], &["n"]);
    let inner_if = if_node("inner_if", &["io"], inner_then, inner_else);
    let then_branch = graph(vec![inner_if], &[], &["io"]);
    let else_branch = graph(vec![node("Identity", "id", &["x"], &["xi"])], &[], &["xi"]);
    let top_if = if_node("top_if", &["y"], then_branch, else_branch);
    let dq = node("DequantizeLinear", "dq", &["Wq", "s"], &["Wd"]);
    let mut g = graph(vec![dq, top_if], &["c", "x"], &["y"]);
    g.initializers.insert("Wq".into(), weight("Wq"));
    g.initializers.insert("s".into(), weight("s"));
    close_subgraphs(&mut g);
    sink_constants(&mut g);

    assert_eq!(g.nodes.len(), 1, "the DequantizeLinear left the top graph");
    assert!(g.initializers.is_empty());
    let top = &g.nodes[0];
    assert_eq!(top.inputs, ["c", "x", "c"]);
    let then_branch = top.attr_graph("then_branch").unwrap().unwrap();
    assert!(then_branch.graph.initializers.is_empty());
    let inner = &then_branch.graph.nodes[0];
    assert_eq!(inner.inputs, ["c", "x"]);
    let inner_then = inner.attr_graph("then_branch").unwrap().unwrap();
    assert_eq!(inner_then.graph.nodes[0].op_type, "DequantizeLinear");
    assert_eq!(inner_then.graph.nodes[0].outputs, ["Wd"]);
    assert_eq!(inner_then.graph.nodes[1].inputs, ["x", "Wd"]);
    let keys: Vec<&String> = inner_then.graph.initializers.keys().collect();
    assert_eq!(keys, ["Wq", "s"]);
    assert_eq!(
        inner_then.captured().len(),
        1,
        "only x is read from outside"
    );
}
