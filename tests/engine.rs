//! The executor on hand-built graphs: ordering, the tensor hook, freeing, and clear errors for
//! unsupported ops, dangling names, cycles, wrong inputs and cancellation.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;

use ndarray::{ArrayD, IxDyn};
use quantscope::engine::{Plan, RunOptions, TensorHook, TensorSite};
use quantscope::ir::{DType, Dim, Graph, Node, Tensor, TensorData, ValueInfo};
use quantscope::{Error, Result};

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attributes: BTreeMap::new(),
    }
}

fn vector(values: &[f32]) -> TensorData {
    TensorData::F32(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap())
}

/// y = relu(x + b) * x, with nodes listed out of order.
fn small_graph() -> Graph {
    let mut g = Graph {
        name: "small".into(),
        opset: 17,
        ..Default::default()
    };
    g.inputs.push(ValueInfo {
        name: "x".into(),
        dtype: Some(DType::F32),
        shape: Some(vec![Dim::Fixed(3)]),
    });
    g.outputs.push(ValueInfo {
        name: "y".into(),
        dtype: Some(DType::F32),
        shape: None,
    });
    g.initializers.insert(
        "b".into(),
        Tensor::new("b", vector(&[1.0, -5.0, 0.5]), DType::F32),
    );
    g.nodes = vec![
        node("mul", "Mul", &["r", "x"], &["y"]),
        node("relu", "Relu", &["s"], &["r"]),
        node("add", "Add", &["x", "b"], &["s"]),
    ];
    g
}

fn feeds(values: &[f32]) -> HashMap<String, TensorData> {
    [("x".to_string(), vector(values))].into()
}

#[test]
fn runs_nodes_in_dependency_order() {
    let g = small_graph();
    let plan = Plan::new(&g).unwrap();
    let order: Vec<&str> = plan
        .execution_order()
        .map(|i| g.nodes[i].name.as_str())
        .collect();
    assert_eq!(order, ["add", "relu", "mul"]);
    let out = plan
        .run(feeds(&[1.0, 2.0, 3.0]), None, RunOptions::default())
        .unwrap();
    // relu([2, -3, 3.5]) * [1, 2, 3] = [2, 0, 10.5]
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1, vector(&[2.0, 0.0, 10.5]));
}

/// Records every tensor it sees and doubles the output of `relu`.
struct Recorder {
    seen: Vec<(String, Option<String>)>,
}

impl TensorHook for Recorder {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        self.seen
            .push((site.name.to_string(), site.producer.map(|n| n.name.clone())));
        if site.name == "r"
            && let TensorData::F32(a) = value
        {
            a.mapv_inplace(|v| 2.0 * v);
        }
        Ok(())
    }
}

#[test]
fn hook_sees_every_tensor_and_can_replace_it() {
    let g = small_graph();
    let plan = Plan::new(&g).unwrap();
    let mut hook = Recorder { seen: Vec::new() };
    let out = plan
        .run(
            feeds(&[1.0, 2.0, 3.0]),
            Some(&mut hook),
            RunOptions::default(),
        )
        .unwrap();
    let names: Vec<&str> = hook.seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x", "s", "r", "y"]);
    assert_eq!(hook.seen[0].1, None);
    assert_eq!(hook.seen[2].1.as_deref(), Some("relu"));
    assert_eq!(out[0].1, vector(&[4.0, 0.0, 21.0]));
}

struct Failing;

impl TensorHook for Failing {
    fn on_tensor(&mut self, site: TensorSite<'_>, _value: &mut TensorData) -> Result<()> {
        Err(Error::Graph(format!("hook refused {}", site.name)))
    }
}

#[test]
fn hook_errors_stop_the_run() {
    let g = small_graph();
    let plan = Plan::new(&g).unwrap();
    let err = plan
        .run(
            feeds(&[1.0, 2.0, 3.0]),
            Some(&mut Failing),
            RunOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("hook refused x"), "{err}");
}

#[test]
fn unsupported_ops_are_named_with_their_nodes() {
    let mut g = small_graph();
    g.nodes.push(node("fancy", "DFT", &["y"], &["z"]));
    let mut custom = node("mine", "MyOp", &["y"], &["w"]);
    custom.domain = "com.example".into();
    g.nodes.push(custom);
    let err = Plan::new(&g).err().expect("plan must fail");
    let text = err.to_string();
    assert!(text.contains("DFT (node 'fancy')"), "{text}");
    assert!(text.contains("com.example::MyOp (node 'mine')"), "{text}");
    assert!(
        text.contains("Supported: ") && text.contains("Conv"),
        "{text}"
    );
    assert!(text.contains("weights can still be viewed"), "{text}");
}

#[test]
fn structural_errors_name_the_tensor() {
    let mut dangling = small_graph();
    dangling.nodes[0].inputs[0] = "nowhere".into();
    let text = Plan::new(&dangling).err().unwrap().to_string();
    assert!(
        text.contains("'nowhere'") && text.contains("'mul'"),
        "{text}"
    );

    let mut cycle = small_graph();
    cycle.nodes[2].inputs[0] = "y".into(); // add reads mul's output
    let text = Plan::new(&cycle).err().unwrap().to_string();
    assert!(text.contains("cycle"), "{text}");

    let mut missing_output = small_graph();
    missing_output.outputs[0].name = "q".into();
    let text = Plan::new(&missing_output).err().unwrap().to_string();
    assert!(text.contains("'q'"), "{text}");
}

#[test]
fn wrong_inputs_are_clear_errors() {
    let g = small_graph();
    let plan = Plan::new(&g).unwrap();
    let err = plan
        .run(feeds(&[1.0, 2.0]), None, RunOptions::default())
        .unwrap_err();
    assert_eq!(err.to_string(), "input 'x': expects shape [3], got [2]");
    let err = plan
        .run(HashMap::new(), None, RunOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("no data given"), "{err}");
    let mut extra = feeds(&[1.0, 2.0, 3.0]);
    extra.insert("z".into(), vector(&[1.0]));
    let err = plan.run(extra, None, RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no such input"), "{err}");
    let ints = [("x".to_string(), TensorData::I64(ArrayD::zeros(IxDyn(&[3]))))].into();
    let err = plan.run(ints, None, RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("expects float32"), "{err}");
}

#[test]
fn op_errors_name_node_and_op() {
    let mut g = small_graph();
    g.inputs[0].shape = None;
    let plan = Plan::new(&g).unwrap();
    // [2] + [3] does not broadcast.
    let err = plan
        .run(feeds(&[1.0, 2.0]), None, RunOptions::default())
        .unwrap_err();
    assert!(err.to_string().starts_with("node 'add' (Add): "), "{err}");
}

#[test]
fn a_set_cancel_flag_stops_the_run() {
    let g = small_graph();
    let plan = Plan::new(&g).unwrap();
    let cancel = AtomicBool::new(true);
    let options = RunOptions {
        cancel: Some(&cancel),
    };
    let err = plan
        .run(feeds(&[1.0, 2.0, 3.0]), None, options)
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled));
}
