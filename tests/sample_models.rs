//! The bundled sample models: outputs match onnxruntime's, float accuracy on the held-out
//! digits equals what sample_models/metrics.json (and the README) states, and parameter roles
//! account for exactly the trainable parameters.

mod common;

use common::{compare, read_named, repo_path, run_model};
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{ParamRole, TensorData};
use quantscope::load::{load_model, read_arrays};

const MODELS: [&str; 4] = [
    "digits_mlp",
    "digits_cnn",
    "digits_mobilenet",
    "digits_transformer",
];

fn metrics() -> serde_json::Value {
    let text = std::fs::read_to_string(repo_path("sample_models/metrics.json")).expect("metrics");
    serde_json::from_str(&text).expect("metrics.json is JSON")
}

#[test]
fn sample_model_outputs_match_onnxruntime() {
    for model in MODELS {
        let reference = repo_path(&format!("tests/fixtures/reference/{model}"));
        let outputs = run_model(
            &repo_path(&format!("sample_models/{model}.onnx")),
            &reference.with_extension("inputs.npz"),
        )
        .unwrap_or_else(|e| panic!("{model}: {e}"));
        let expected = read_named(&reference.with_extension("outputs.npz"));
        let worst = compare(
            &format!("{model}/logits"),
            &outputs["logits"],
            &expected["logits"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(worst < 1e-4, "{model}: worst |err| {worst}");
    }
}

#[test]
fn sample_model_accuracy_equals_the_stated_figure() {
    let metrics = metrics();
    let images = read_arrays(&repo_path("sample_models/data/digits_test_x.npy")).expect("images");
    let labels = read_arrays(&repo_path("sample_models/data/digits_test_y.npy")).expect("labels");
    let TensorData::I64(labels) = &labels[0].data else {
        panic!("labels are int64")
    };
    for model_name in MODELS {
        let model = load_model(&repo_path(&format!("sample_models/{model_name}.onnx")))
            .expect("model loads");
        let plan = Plan::new(&model.graph).expect("model is runnable");
        let feeds = [("input".to_string(), images[0].data.clone())].into();
        let outputs = plan.run(feeds, None, RunOptions::default()).expect("runs");
        let logits = outputs[0].1.as_f32().expect("float logits");
        let correct = logits
            .outer_iter()
            .zip(labels.iter())
            .filter(|(row, label)| {
                let best = (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .expect("10 classes");
                best as i64 == **label
            })
            .count();
        let stated = metrics[model_name]["correct"].as_u64().expect("correct") as usize;
        assert_eq!(
            correct, stated,
            "{model_name}: top-1 count differs from metrics.json"
        );
        assert_eq!(logits.shape(), &[labels.len(), 10]);
    }
}

#[test]
fn roles_account_for_every_trainable_parameter() {
    let metrics = metrics();
    for model_name in MODELS {
        let model = load_model(&repo_path(&format!("sample_models/{model_name}.onnx")))
            .expect("model loads");
        let trainable: usize = model
            .graph
            .initializers
            .values()
            .filter(|t| {
                !matches!(
                    t.role,
                    ParamRole::BnMean | ParamRole::BnVar | ParamRole::Constant
                )
            })
            .map(|t| t.data.len())
            .sum();
        let stated = metrics[model_name]["params"].as_u64().expect("params") as usize;
        assert_eq!(trainable, stated, "{model_name}: trainable parameter count");
        // Every conv/gemm weight knows its channel axis.
        for t in model.graph.initializers.values() {
            if t.role == ParamRole::Weight {
                assert!(
                    t.channel_axis.is_some(),
                    "{model_name}: {} has no channel axis",
                    t.name
                );
            }
        }
        assert_eq!(model.graph.inputs.len(), 1, "{model_name}: one real input");
    }
}
