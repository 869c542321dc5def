//! Export: the ONNX writer round-trips every sample model, QDQ models agree with onnxruntime
//! (fixtures from `scripts/check_export.py`), encodings and sessions round-trip, writes are
//! atomic, and bad imports are reported.

mod common;

use std::collections::HashMap;

use common::repo_path;
use quantscope::engine::{Plan, RunOptions};
use quantscope::export::write_onnx_model;
use quantscope::ir::TensorData;
use quantscope::load::{load_model, read_arrays};

const SAMPLES: [&str; 4] = ["mlp", "cnn", "mobilenet", "transformer"];

fn test_images() -> TensorData {
    read_arrays(&repo_path("sample_models/data/digits_test_x.npy"))
        .unwrap()
        .remove(0)
        .data
}

fn run(graph: &quantscope::ir::Graph) -> Vec<(String, TensorData)> {
    let plan = Plan::new(graph).unwrap();
    let feeds: HashMap<String, TensorData> = [("input".to_string(), test_images())].into();
    plan.run(feeds, None, RunOptions::default()).unwrap()
}

#[test]
fn written_sample_models_reload_with_identical_graphs_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    for sample in SAMPLES {
        let original =
            load_model(&repo_path(&format!("sample_models/digits_{sample}.onnx"))).unwrap();
        let path = dir.path().join(format!("{sample}.onnx"));
        write_onnx_model(&original.graph, &path).unwrap();
        let back = load_model(&path).unwrap();
        let (a, b) = (&original.graph, &back.graph);
        assert_eq!(a.opset, b.opset, "{sample}");
        assert_eq!(a.inputs, b.inputs, "{sample}");
        assert_eq!(a.outputs, b.outputs, "{sample}");
        assert_eq!(a.nodes.len(), b.nodes.len(), "{sample}");
        for (x, y) in a.nodes.iter().zip(&b.nodes) {
            assert_eq!(
                (&x.name, &x.op_type, &x.inputs, &x.outputs),
                (&y.name, &y.op_type, &y.inputs, &y.outputs),
                "{sample}"
            );
            assert_eq!(
                format!("{:?}", x.attributes),
                format!("{:?}", y.attributes),
                "{sample}: attributes of {}",
                x.name
            );
        }
        assert_eq!(
            a.initializers.keys().collect::<Vec<_>>(),
            b.initializers.keys().collect::<Vec<_>>()
        );
        for (name, t) in &a.initializers {
            let u = &b.initializers[name];
            assert_eq!(t.data, u.data, "{sample}: {name}");
            assert_eq!(t.origin_dtype, u.origin_dtype, "{sample}: {name}");
            assert_eq!(
                (t.role, t.channel_axis),
                (u.role, u.channel_axis),
                "{sample}: {name}"
            );
        }
        assert_eq!(run(a), run(b), "{sample}: outputs differ");
        // Writing the reloaded graph gives the same bytes: the writer is deterministic.
        let again = dir.path().join(format!("{sample}_again.onnx"));
        write_onnx_model(b, &again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap(),
            "{sample}"
        );
    }
}
