//! Fake quantization of the sample models end to end: calibration through the tensor hook,
//! weights quantized once, activations at the inputs of quantized layers. Improved settings must
//! beat their baselines.

mod common;

use std::collections::BTreeMap;

use common::{digit_labels, float_array, repo_path};
use ndarray::Ix2;
use quantscope::calib::{ActivationCollector, CalibrationStats, Method};
use quantscope::engine::{Plan, RunOptions};
use quantscope::ir::{Model, TensorData};
use quantscope::load::load_model;
use quantscope::metrics::top1_accuracy;
use quantscope::quant::{ActivationQuant, QuantConfig, QuantizedModel, WeightQuant, WeightScheme};

fn calibrate(model: &Model) -> BTreeMap<String, CalibrationStats> {
    let plan = Plan::new(&model.graph).unwrap();
    let mut collector = ActivationCollector::new();
    let data = float_array("sample_models/data/digits_calib_x.npy");
    collector
        .run_batches(&plan, "input", data.view(), 128)
        .unwrap();
    collector.into_stats()
}

/// Top-1 accuracy (%) of `graph` on the held-out digits, with the model's hook if given.
fn accuracy(quantized: Option<&QuantizedModel>, model: &Model) -> f64 {
    let graph = quantized.map(|q| &q.graph).unwrap_or(&model.graph);
    let plan = Plan::new(graph).unwrap();
    let feeds = [(
        "input".to_string(),
        TensorData::F32(float_array("sample_models/data/digits_test_x.npy")),
    )]
    .into();
    let mut hook = quantized.map(|q| q.hook());
    let outputs = match hook.as_mut() {
        Some(h) => plan.run(feeds, Some(h), RunOptions::default()),
        None => plan.run(feeds, None, RunOptions::default()),
    }
    .unwrap();
    let logits = outputs[0]
        .1
        .as_f32()
        .unwrap()
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap();
    100.0 * top1_accuracy(logits, digit_labels().view()).unwrap()
}

fn config(weights: &str, per_channel: bool, activations: Option<Method>) -> QuantConfig {
    QuantConfig::uniform(
        Some(WeightQuant {
            scheme: weights.parse::<WeightScheme>().unwrap(),
            per_channel,
        }),
        activations.map(|method| ActivationQuant {
            bits: 8,
            symmetric: false,
            method,
        }),
    )
}

#[test]
fn int8_per_channel_keeps_sample_cnns_within_one_point() {
    for name in ["digits_cnn", "digits_mobilenet"] {
        let model = load_model(&repo_path(&format!("sample_models/{name}.onnx"))).unwrap();
        let stats = calibrate(&model);
        let float = accuracy(None, &model);
        let q = QuantizedModel::prepare(
            &model.graph,
            &config("int8", true, Some(Method::MinMax)),
            &stats,
        )
        .unwrap();
        assert!(!q.activations.is_empty() && !q.weights.is_empty());
        let quantized = accuracy(Some(&q), &model);
        eprintln!("{name}: float {float:.2}%, int8 per-channel W + uint8 A {quantized:.2}%");
        assert!(float - quantized <= 1.0, "{name}: {float} -> {quantized}");
    }
}

#[test]
fn per_channel_beats_per_tensor_at_4_bits_on_the_sample_cnn() {
    let model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let stats = BTreeMap::new();
    let per_tensor =
        QuantizedModel::prepare(&model.graph, &config("int4", false, None), &stats).unwrap();
    let per_channel =
        QuantizedModel::prepare(&model.graph, &config("int4", true, None), &stats).unwrap();
    let mse = |q: &QuantizedModel| {
        q.weights
            .iter()
            .map(|w| w.metrics.mse * w.metrics.count as f64)
            .sum::<f64>()
    };
    assert!(
        mse(&per_channel) < mse(&per_tensor),
        "{} vs {}",
        mse(&per_channel),
        mse(&per_tensor)
    );
    for (c, t) in per_channel.weights.iter().zip(&per_tensor.weights) {
        assert!(
            c.metrics.sqnr_db >= t.metrics.sqnr_db - 1e-9,
            "{}",
            c.tensor
        );
    }
    let (acc_c, acc_t) = (
        accuracy(Some(&per_channel), &model),
        accuracy(Some(&per_tensor), &model),
    );
    eprintln!("int4 weights: per-channel {acc_c:.2}%, per-tensor {acc_t:.2}%");
    assert!(acc_c >= acc_t);
}

#[test]
fn every_weight_scheme_runs_and_more_bits_means_less_error() {
    let model = load_model(&repo_path("sample_models/digits_mlp.onnx")).unwrap();
    let stats = BTreeMap::new();
    let total_mse = |scheme: &str| {
        let q = QuantizedModel::prepare(&model.graph, &config(scheme, true, None), &stats).unwrap();
        assert_eq!(
            q.weights.len(),
            3,
            "{scheme}: the MLP has three weight tensors"
        );
        q.weights.iter().map(|w| w.metrics.mse).sum::<f64>()
    };
    let [int8, int4, kmeans4, ternary, binary_scaled, binary] = [
        "int8",
        "int4",
        "kmeans4",
        "ternary",
        "binary-scaled",
        "binary",
    ]
    .map(total_mse);
    assert!(
        int8 < int4 && int4 < ternary && ternary < binary_scaled,
        "{int8} {int4} {ternary} {binary_scaled}"
    );
    // k-means places its 16 levels where the weights are: better than a uniform 4-bit grid.
    assert!(kmeans4 < int4, "kmeans4 {kmeans4} vs int4 {int4}");
    // α = mean|W| is the least-squares scale: far better than plain ±1.
    assert!(binary_scaled < binary);
}

#[test]
fn missing_calibration_is_a_clear_error() {
    let model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let err = QuantizedModel::prepare(
        &model.graph,
        &config("int8", true, Some(Method::Kl)),
        &BTreeMap::new(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("tensor 'input': no calibration statistics"),
        "{err}"
    );
}

#[test]
fn manual_ranges_win_over_calibration() {
    let model = load_model(&repo_path("sample_models/digits_cnn.onnx")).unwrap();
    let stats = calibrate(&model);
    let mut cfg = config("int8", true, Some(Method::MinMax));
    cfg.activation_ranges.insert("input".into(), (0.0, 0.5));
    let q = QuantizedModel::prepare(&model.graph, &cfg, &stats).unwrap();
    let input = q.activations.iter().find(|a| a.tensor == "input").unwrap();
    assert!(input.manual && input.range == (0.0, 0.5));
    // Clipping the input at 0.5 loses information: accuracy drops.
    let clipped = accuracy(Some(&q), &model);
    let calibrated = accuracy(
        Some(
            &QuantizedModel::prepare(
                &model.graph,
                &config("int8", true, Some(Method::MinMax)),
                &stats,
            )
            .unwrap(),
        ),
        &model,
    );
    assert!(clipped < calibrated, "{clipped} vs {calibrated}");
}
