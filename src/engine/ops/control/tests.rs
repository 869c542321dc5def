use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, IxDyn};

use crate::engine::{Plan, RunOptions};
use crate::ir::{self, Attribute, DType, Graph, Node, Subgraph, TensorData, ValueInfo};

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attributes: BTreeMap::new(),
    }
}

fn info(name: &str, dtype: Option<DType>) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype,
        shape: None,
    }
}

fn graph(nodes: Vec<Node>, inputs: Vec<ValueInfo>, outputs: &[&str]) -> Graph {
    Graph {
        name: "g".into(),
        nodes,
        inputs,
        outputs: outputs.iter().map(|n| info(n, None)).collect(),
        initializers: BTreeMap::new(),
        opset: 13,
    }
}

fn with_graph(mut n: Node, attr: &str, g: Graph) -> Node {
    n.attributes
        .insert(attr.into(), Attribute::Graph(Box::new(Subgraph::new(g))));
    n
}

fn scalar_bool(v: bool) -> TensorData {
    TensorData::I64(ArrayD::from_elem(IxDyn(&[]), i64::from(v)))
}

fn floats(values: &[f32]) -> TensorData {
    TensorData::F32(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap())
}

/// y = If(c) { Relu(x) } else { Neg(x) }, closed over `x`.
fn if_model() -> Graph {
    let then_branch = graph(vec![node("Relu", "relu", &["x"], &["r"])], vec![], &["r"]);
    let else_branch = graph(vec![node("Neg", "neg", &["x"], &["n"])], vec![], &["n"]);
    let iff = with_graph(
        with_graph(node("If", "if", &["c"], &["y"]), "then_branch", then_branch),
        "else_branch",
        else_branch,
    );
    let mut g = graph(
        vec![iff],
        vec![info("c", Some(DType::Bool)), info("x", Some(DType::F32))],
        &["y"],
    );
    ir::close_subgraphs(&mut g);
    g
}

fn run(plan: &Plan<'_>, feeds: Vec<(&str, TensorData)>) -> crate::error::Result<Vec<f32>> {
    let feeds: HashMap<String, TensorData> =
        feeds.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let out = plan.run(feeds, None, RunOptions::default())?;
    Ok(out[0].1.to_f32().iter().copied().collect())
}

#[test]
fn one_plan_runs_either_branch_again_and_again() {
    let g = if_model();
    let plan = Plan::new(&g).unwrap();
    for _ in 0..2 {
        let y = run(
            &plan,
            vec![("c", scalar_bool(true)), ("x", floats(&[-1.0, 2.0]))],
        )
        .unwrap();
        assert_eq!(y, [0.0, 2.0]);
        let y = run(
            &plan,
            vec![("c", scalar_bool(false)), ("x", floats(&[-1.0, 2.0]))],
        )
        .unwrap();
        assert_eq!(y, [1.0, -2.0]);
    }
}

#[test]
fn a_condition_of_several_values_is_refused_naming_the_node() {
    let g = if_model();
    let plan = Plan::new(&g).unwrap();
    let two = TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1, 0]).unwrap());
    let err = run(&plan, vec![("c", two), ("x", floats(&[1.0]))])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'if'") && err.contains("condition must hold one value"),
        "{err}"
    );
}

#[test]
fn a_cycle_through_the_outer_scope_is_an_error_naming_a_node() {
    // The branch reads `z`, which is computed from the If's own output.
    let then_branch = graph(vec![node("Relu", "relu", &["z"], &["r"])], vec![], &["r"]);
    let else_branch = graph(vec![], vec![], &["x"]);
    let iff = with_graph(
        with_graph(node("If", "if", &["c"], &["y"]), "then_branch", then_branch),
        "else_branch",
        else_branch,
    );
    let mut g = graph(
        vec![iff, node("Neg", "neg", &["y"], &["z"])],
        vec![info("c", Some(DType::Bool)), info("x", Some(DType::F32))],
        &["z"],
    );
    ir::close_subgraphs(&mut g);
    let err = Plan::new(&g).err().expect("a cycle").to_string();
    assert!(err.contains("cycle through node"), "{err}");
}

#[test]
fn a_missing_branch_is_an_error_naming_the_node() {
    let then_branch = graph(vec![], vec![], &["x"]);
    let iff = with_graph(node("If", "if", &["c"], &["y"]), "then_branch", then_branch);
    let mut g = graph(
        vec![iff],
        vec![info("c", Some(DType::Bool)), info("x", Some(DType::F32))],
        &["y"],
    );
    ir::close_subgraphs(&mut g);
    let err = Plan::new(&g).err().expect("no else branch").to_string();
    assert!(
        err.contains("'if'") && err.contains("no 'else_branch' subgraph"),
        "{err}"
    );
    let finding = ir::check_runnable(&g).unwrap_err().to_string();
    assert!(finding.contains("no 'else_branch' subgraph"), "{finding}");
}

#[test]
fn a_loop_that_could_never_end_is_refused() {
    let body = graph(
        vec![node("Identity", "keep", &["cond"], &["cond_out"])],
        vec![
            info("i", Some(DType::I64)),
            info("cond", Some(DType::Bool)),
            info("v", Some(DType::F32)),
        ],
        &["cond_out", "v"],
    );
    let lp = with_graph(node("Loop", "lp", &["", "", "x"], &["y"]), "body", body);
    let mut g = graph(vec![lp], vec![info("x", Some(DType::F32))], &["y"]);
    ir::close_subgraphs(&mut g);
    let plan = Plan::new(&g).unwrap();
    let err = run(&plan, vec![("x", floats(&[1.0]))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("'lp'") && err.contains("never end"), "{err}");
}

#[test]
fn a_loop_of_zero_iterations_returns_its_initial_values_and_empty_scans() {
    let body = graph(
        vec![
            node("Identity", "keep", &["cond"], &["cond_out"]),
            node("Neg", "neg", &["v"], &["v_out"]),
            node("Identity", "scan", &["v"], &["s"]),
        ],
        vec![
            info("i", Some(DType::I64)),
            info("cond", Some(DType::Bool)),
            info("v", Some(DType::F32)),
        ],
        &["cond_out", "v_out", "s"],
    );
    let lp = with_graph(
        node("Loop", "lp", &["m", "", "x"], &["y", "ys"]),
        "body",
        body,
    );
    let mut g = graph(
        vec![lp],
        vec![info("m", Some(DType::I64)), info("x", Some(DType::F32))],
        &["y", "ys"],
    );
    ir::close_subgraphs(&mut g);
    let plan = Plan::new(&g).unwrap();
    let m = TensorData::I64(ArrayD::from_elem(IxDyn(&[]), 0));
    let feeds: HashMap<String, TensorData> = [("m", m), ("x", floats(&[3.0, 4.0]))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let out = plan.run(feeds, None, RunOptions::default()).unwrap();
    assert_eq!(out[0].1, floats(&[3.0, 4.0]));
    assert_eq!(out[1].1.shape(), &[0]);
    // Three iterations negate three times and stack three rows.
    let m = TensorData::I64(ArrayD::from_elem(IxDyn(&[]), 3));
    let feeds: HashMap<String, TensorData> = [("m", m), ("x", floats(&[3.0, 4.0]))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let out = plan.run(feeds, None, RunOptions::default()).unwrap();
    assert_eq!(out[0].1, floats(&[-3.0, -4.0]));
    assert_eq!(out[1].1.shape(), &[3, 2]);
    assert_eq!(
        out[1].1.to_f32().iter().copied().collect::<Vec<_>>(),
        [3.0, 4.0, -3.0, -4.0, 3.0, 4.0]
    );
}
